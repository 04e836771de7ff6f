"""Several management servers on one database (PostgreSQL): who is up, taking a dead one over, where
agents go, and forwarding a command to the server that holds the host.

- ``members``: the ``management_servers`` rows: heartbeats, declaring a silent peer down (one peer wins,
  by a conditional update) and settling what it left (its jobs, its HA work, its hosts), the schema and
  version checks at start-up.
- ``peers``: the running loop: heartbeat, watch the peers, take over, read the change journal
  (``db.journal``) and tell the rest of the server.
- ``balance``: the list of management servers each agent is given (Ready) and the gentle moves when a
  server joins.
- ``forward``: the peer port (the agents' framed protocol, mutual TLS with the cloud's CA) and the
  links this server opens to its peers to send a command to a host another server holds.
"""
