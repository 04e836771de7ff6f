"""The Cumulo management server: inventory, agents, persistence, planner, orchestration, jobs and the API."""
