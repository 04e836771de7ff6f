"""The one writer: every write transaction of this server runs on one thread with one connection, and
what callers submit while a transaction runs goes into the next one together (group commit).

SQLite has a single write lock. Writers on several threads each took it in turn (``BEGIN IMMEDIATE``),
and a writer that found it taken slept in SQLite's busy handler (1 ms, 2 ms, 5 ms ... 100 ms steps)
while its thread held a pool slot; under load a deploy's dozen small transactions spent most of their
time waiting there. Here a single thread owns the write connection: it takes every item queued so far
(up to ``max_batch``), runs them in order in one transaction, and commits once.

An item is ``fn(conn, *args)``, as for ``Database.run``; its result or exception goes back to the
caller alone. The batch runs optimistically, without savepoints; when an item raises, the transaction
is rolled back, that item gets its exception, and the rest run again, each in a savepoint of its own
this time, so that one failing item never fails the others nor loses their writes. Items must
therefore be plain database work (no side effects outside the connection), as ``Database.run``'s
always were. A failed COMMIT (disk full, I/O error) fails every item of the batch with its error. A
batch that lost a deadlock or a serialization conflict (another server's transaction on PostgreSQL) runs
again whole, up to ``TRANSIENT_RETRIES`` times: that failure says nothing about its items.

The capacity deltas items record (``planner.deltas``) are numbered with the commit sequence under the
write lock before the COMMIT, and handed to the commit listeners on the event loop after it, in commit
order, before the callers wake up.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import trio

from . import journal

if TYPE_CHECKING:
    from .database import Database

log = logging.getLogger(__name__)
DELTAS = "cumulo.deltas"  # where a transaction's deltas collect, in conn.info (planner.deltas.record)


TRANSIENT_RETRIES = 5
_TRANSIENT_STATES = {"40P01", "40001"}  # PostgreSQL: deadlock detected, serialization failure


def transient(error: BaseException | None) -> bool:
    """Whether a failed statement is worth running again as it was (its transaction lost a deadlock or
    a serialization conflict with another server's)."""
    orig = getattr(error, "orig", None)
    return getattr(orig, "sqlstate", None) in _TRANSIENT_STATES


@dataclass(slots=True, eq=False)
class _Item:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    token: trio.lowlevel.TrioToken
    done: trio.Event = field(default_factory=trio.Event)
    result: Any = None
    error: BaseException | None = None
    deltas: list[Any] = field(default_factory=list)  # what it recorded (planner.deltas)


class Writer:
    """The write thread of one ``Database`` (started on the first write, stopped by ``close``)."""

    def __init__(self, db: Database, *, max_batch: int = 512) -> None:
        self.db = db
        self.max_batch = max_batch
        self._queue: deque[_Item] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closing = False
        self.batches = 0  # transactions committed (for tests and metrics)
        self.items = 0
        self.retried = 0  # batches run a second time, item by item, because one item failed
        self.transient_retries = 0  # batches run again whole after a deadlock or serialization failure
        self._committed: tuple[int, list[Any]] = (0, [])  # the last batch's commit number and deltas

    async def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(conn, *args, **kwargs)`` in the next transaction; its result (or its exception).

        Like a worker thread, the write is not abandoned when the caller is cancelled: the caller waits
        for it (shielded) and sees the cancellation at its next checkpoint."""
        item = _Item(fn, args, kwargs, trio.lowlevel.current_trio_token())
        with self._cond:
            if self._closing:
                raise RuntimeError("the database is being closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="cumulo-db-writer", daemon=True)
                self._thread.start()
            self._queue.append(item)
            self._cond.notify()
        with trio.CancelScope(shield=True):
            await item.done.wait()
        if item.error is not None:
            raise item.error
        return item.result

    def close(self) -> None:
        """Write what is queued, then end the thread (blocking)."""
        with self._cond:
            self._closing = True
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        with self._cond:  # a later write starts a new thread (the engine, too, can be used again)
            self._closing, self._thread = False, None

    # --- the thread ------------------------------------------------------------------------------------

    def _loop(self) -> None:
        conn = None
        try:
            while True:
                with self._cond:
                    while not self._queue and not self._closing:
                        self._cond.wait()
                    if not self._queue:
                        return
                    batch = [self._queue.popleft() for _ in range(min(len(self._queue), self.max_batch))]
                if conn is None or conn.closed or conn.invalidated:
                    if conn is not None:
                        conn.close()
                    conn = self._connect(batch)
                    if conn is None:
                        continue
                try:
                    self._write(conn, batch)
                except Exception as e:  # a bug here must not leave callers waiting for ever
                    log.exception("the database writer failed on a batch")
                    self._deliver([item for item in batch if not item.done.is_set()], e)
        finally:
            if conn is not None:
                conn.close()

    def _connect(self, batch: list[_Item]) -> Any:
        try:
            return self.db.engine.connect()
        except Exception as e:  # the database is unreachable: this batch fails, the next one tries again
            log.warning("the database writer could not connect: %r", e)
            self._deliver(batch, e)
            return None

    def _write(self, conn: Any, batch: list[_Item]) -> None:
        self._committed = (0, [])
        try:
            failed = self._attempt(conn, batch, savepoints=False)
            tries = 0
            while failed is not None and tries < TRANSIENT_RETRIES and transient(failed.error):
                # A deadlock or serialization failure (several servers on PostgreSQL) says nothing about
                # the item: the whole batch runs again, after a short pause.
                tries += 1
                self.transient_retries += 1
                time.sleep(0.005 * tries)  # (the writer's own thread)
                failed = self._attempt(conn, batch, savepoints=False)
            if failed is not None:
                self.retried += 1
                self._attempt(conn, [item for item in batch if item is not failed], savepoints=True)
        except BaseException as e:  # BEGIN or COMMIT failed: nothing of this batch was written
            with_items = [item for item in batch if item.error is None]
            log.warning("a write transaction of %d items failed: %r", len(with_items), e)
            for item in with_items:
                item.error = e
            self._committed = (0, [])
            # A failed COMMIT can leave the connection inside its transaction (SQLite keeps it open
            # when a deferred constraint fails): the connection is dropped, the next batch connects.
            with contextlib.suppress(Exception):
                conn.rollback()
            conn.invalidate()
        self._deliver(batch, committed=self._committed)

    def _attempt(self, conn: Any, batch: list[_Item], *, savepoints: bool) -> _Item | None:
        """Run the batch in one transaction and commit it; without savepoints, the first item that
        raises rolls everything back and is returned (the caller runs the others again)."""
        conn.begin()
        for item in batch:
            item.deltas = []
            item.error = None
            conn.info[DELTAS] = item.deltas
            try:
                if savepoints:
                    with conn.begin_nested():
                        item.result = item.fn(conn, *item.args, **item.kwargs)
                else:
                    item.result = item.fn(conn, *item.args, **item.kwargs)
            except Exception as e:
                item.error, item.deltas = e, []
                if not savepoints:
                    del conn.info[DELTAS]
                    conn.rollback()
                    return item
            finally:
                conn.info.pop(DELTAS, None)
        deltas = [d for item in batch if item.error is None for d in item.deltas]
        if deltas and self.db.journal_msid is not None:  # several servers: the peers learn of them
            body = journal.encode(deltas)
            if body is not None:
                journal.append(conn, self.db.journal_msid, body, datetime.now(UTC))
        seq = self.db._next_seq() if deltas else 0
        conn.commit()
        self.batches += 1
        self.items += len(batch)
        self._committed = (seq, deltas)
        return None

    def _deliver(self, batch: list[_Item], error: BaseException | None = None,
                 committed: tuple[int, list[Any]] = (0, [])) -> None:
        """Wake the callers on their event loops; the commit's deltas go to the listeners first (on
        the first caller's loop: the listeners belong to the server, which runs on one)."""
        by_token: dict[trio.lowlevel.TrioToken, list[_Item]] = {}
        for item in batch:
            if error is not None:
                item.error = error
            by_token.setdefault(item.token, []).append(item)
        for token, items in by_token.items():
            with contextlib.suppress(trio.RunFinishedError):  # that event loop has ended
                token.run_sync_soon(self._wake, items, committed)
            committed = (0, [])

    def _wake(self, items: list[_Item], committed: tuple[int, list[Any]]) -> None:
        seq, deltas = committed
        if deltas:
            for listener in self.db.commit_listeners:
                try:
                    listener(seq, deltas)
                except Exception:
                    log.exception("a commit listener failed")
        for item in items:
            item.done.set()
