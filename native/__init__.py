"""Native parts of Cumulo: the C frame codec (cffi) and the Cython planner kernel.

Nothing here imports other Cumulo packages. Each native piece has a pure-Python reference elsewhere with
the same interface; the switch between them lives with the reference (``protocol.codec``,
``mgmt.planner.kernel``).
"""
