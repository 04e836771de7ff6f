"""The Cumulo management server (built by a later issue)."""
