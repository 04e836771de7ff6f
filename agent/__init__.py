"""The Cumulo host agent: the trio shell, the libvirt and simulator resources, the fleet runner."""
