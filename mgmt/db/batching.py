"""Bulk writes: many callers' small writes of one kind done by one task, as one item of the writer.

Under a storm (thousands of agents starting up at once) a statement per host spends its time in
per-statement overhead. A ``Batcher`` queues each caller's item; its task takes everything queued so
far (up to ``max_batch``), runs ``fn(connection, items)`` once (one ``Database.run``: an item of the
writer's next transaction, ``db.writer``), which writes them with bulk statements, and hands each
caller its own result. With no load a batch is one item.

A caller cancelled while waiting leaves its item in the batch (the write may still happen); callers
must be ready for that, as they would be for a cancelled ``Database.run``. When the writer task is
cancelled (the server is stopping) it first writes what is queued, shielded, so that the last words of
closing connections are not lost; items submitted after that run in a transaction of their own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import trio
from sqlalchemy.engine import Connection

from .database import Database

I = TypeVar("I")  # noqa: E741 - the item type
O = TypeVar("O")  # noqa: E741 - the result type

log = logging.getLogger(__name__)


class _Slot(Generic[O]):
    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.result: O | None = None
        self.error: BaseException | None = None


class Batcher(Generic[I, O]):
    def __init__(self, db: Database, fn: Callable[[Connection, Sequence[I]], Sequence[O]], *,
                 max_batch: int = 1000, name: str = "") -> None:
        self.db = db
        self.fn = fn
        self.max_batch = max_batch
        self.name = name or fn.__name__
        self._queue: list[tuple[I, _Slot[O]]] = []
        self._queued = trio.Event()
        self.running = False
        self.batches = 0  # transactions run (for tests and metrics)
        self.items = 0

    async def submit(self, item: I) -> O:
        """Queue ``item`` and wait for its result (or the exception its batch raised)."""
        if not self.running:  # no writer (not started, or stopped): a transaction of its own
            return (await self.db.run(self.fn, [item]))[0]
        slot: _Slot[O] = _Slot()
        self._queue.append((item, slot))
        self._queued.set()
        await slot.done.wait()
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]

    async def run(self) -> None:
        """The writer task: one transaction per batch until cancelled, then it writes what is queued."""
        self.running = True
        try:
            while True:
                await self._queued.wait()
                await self._write_batch()
        finally:
            with trio.CancelScope(shield=True):
                while self._queue:
                    await self._write_batch()
            self.running = False

    async def _write_batch(self) -> None:
        batch, self._queue = self._queue[:self.max_batch], self._queue[self.max_batch:]
        if not self._queue:
            self._queued = trio.Event()
        items = [item for item, _slot in batch]
        try:
            results = await self.db.run(self.fn, items)
        except trio.Cancelled:
            # Cancelled before the transaction started (waiting for a worker thread): the batch goes
            # back to the front of the queue, for the shielded drain in run() to write.
            self._queue[:0] = batch
            raise
        except Exception as e:  # the whole batch failed: each caller sees the error
            log.warning("batched %s failed for %d items: %r", self.name, len(items), e)
            for _item, slot in batch:
                slot.error = e
                slot.done.set()
            return
        self.batches += 1
        self.items += len(items)
        for (_item, slot), result in zip(batch, results, strict=True):
            slot.result = result
            slot.done.set()
