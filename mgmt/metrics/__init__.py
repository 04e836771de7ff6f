"""Figures about the cloud: the VM statistics the hosts report (``collector``), and the server's own
figures with them in Prometheus' text format (``exporter``)."""
