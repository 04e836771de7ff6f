"""Agents: the connections to hosts, their handshake and liveness, and host status."""
