"""The CloudStack-compatible HTTP API (issue 7; in progress: request signing and password hashing so far)."""
