"""High availability: the HA work queue, fencing, restarts and alerts (see ``manager.py``)."""
