"""Process settings for the programs at either end of the protocol (management server, agents, fleet).

Both hold thousands of long-lived connection objects (a connection state machine, a socket, a task,
locks and buffers per peer) and allocate many short-lived ones per message. CPython's default
young-generation threshold (700 allocations) then runs collections so often that, with a large heap,
garbage collection took most of a fleet process's CPU during a 10,000-host fan-out (py-spy; see
docs/benchmarks.md). A higher threshold keeps young collections rare; what start-up built is frozen
out of the collector's view.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000  # allocations between young-generation collections (CPython's default: 700)


def tune_gc(*, freeze: bool = True) -> None:
    """Collect less often; with ``freeze``, move everything allocated so far (imports, start-up state)
    out of the collector's view. Call once at start-up, from the program's entry point."""
    gc.set_threshold(YOUNG_THRESHOLD, 20, 20)
    if freeze:
        gc.collect()
        gc.freeze()
