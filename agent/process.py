"""Process settings of the agent programs (``python -m agent``, the simulated fleet).

A fleet process holds thousands of connections to the management server, and every agent allocates
many short-lived objects per message. With CPython's default young-generation threshold (700
allocations) collections took most of a fleet process's CPU during a 10,000-host fan-out (py-spy;
docs/benchmarks.md); a higher one keeps them rare, and what start-up built is frozen out of the
collector's view. The management server has its own (``mgmt.process``).
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000  # allocations between young-generation collections (CPython's default: 700)


def tune_gc(*, freeze: bool = True) -> None:
    """Collect less often; with ``freeze``, also take what start-up allocated out of the collector's
    view. Call once, from the program's entry point."""
    gc.set_threshold(YOUNG_THRESHOLD, 20, 20)
    if freeze:
        gc.collect()
        gc.freeze()
