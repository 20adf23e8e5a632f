"""The DMP's online half: container tag decisions, partner sync fan-out, callbacks, impression
events, audience look-up and the sync funnel. Use cases return values; no HTTP types here."""
