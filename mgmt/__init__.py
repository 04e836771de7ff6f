"""The Cumulo management server: inventory, agents, persistence (and later the API and orchestration)."""
