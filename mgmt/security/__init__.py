"""Trust: the cloud's certificate authority, agent registration tokens, and revocation."""
