"""Process settings of the management server's programs (``python -m mgmt``, ``mgmt local``).

The server holds thousands of long-lived agent connections (a protocol state machine, a socket, a task,
locks and buffers per peer) and allocates many short-lived objects per message and per API call.
CPython's default young-generation threshold (700 allocations) then collects so often that, with a large
heap, garbage collection took most of the CPU of a 10,000-host fan-out (py-spy; docs/benchmarks.md). A
higher threshold keeps young collections rare; what start-up built is frozen out of the collector's view.
The agent programs have their own (``agent.process``): each program owns its process settings.
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
