"""The Cumulo host agent (built by a later issue)."""
