"""Helpers shared by test modules (configuration files for real server processes)."""
