"""Background tasks that cannot take the server down: ``supervised`` logs a task's failure and starts
it again after a pause, so one bad input (a host row, a report, a database hiccup) costs that task a
restart, never the process its nursery belongs to."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

log = logging.getLogger(__name__)


async def supervised(name: str, fn: Callable[[], Awaitable[object]], *, pause: float = 1.0,
                     max_pause: float = 30.0) -> None:
    """Run ``fn`` until it returns; after each exception, log it and run it again (backing off)."""
    delay = pause
    while True:
        started = trio.current_time()
        try:
            await fn()
            return
        except Exception:
            log.exception("background task %s failed; it starts again in %g s", name, delay)
        await trio.sleep(delay)
        # A task that ran a good while before failing starts again at the short pause.
        delay = pause if trio.current_time() - started > 10 * max_pause else min(delay * 2, max_pause)
