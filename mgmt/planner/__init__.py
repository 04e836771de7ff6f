"""The deployment planner: filters and weighers over an in-memory capacity index (Cython kernel, with a
pure-Python reference), storage pool choice, and capacity reservations the database arbitrates."""
