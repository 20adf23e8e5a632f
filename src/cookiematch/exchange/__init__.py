"""The exchange role: the Cookie Matching Service."""
