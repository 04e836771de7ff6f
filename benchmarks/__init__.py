"""Benchmarks: each module runs alone as ``python -m benchmarks.NAME --json FILE``."""
