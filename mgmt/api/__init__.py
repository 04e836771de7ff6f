"""The CloudStack-compatible HTTP API (in progress: see docs/api.md for what exists)."""
