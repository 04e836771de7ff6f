"""Placement owns the index: deltas from commits are applied once each, whatever the order in which a
reload's snapshot and the commits' hand-overs arrive (issue 15: one owner for placement state)."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from mgmt.agents.host_status import Status
from mgmt.planner.deltas import HostAllocated, HostEnabled
from mgmt.planner.index import ENABLED, CapacityIndex
from mgmt.planner.pools import PoolIndex
from mgmt.planner.service import Placement

from .conftest import host


class ControlledDb:
    """Snapshots that wait until the test says which commits they saw."""

    def __init__(self) -> None:
        self.commit_listeners: list[Any] = []
        self.remote_listeners: list[Any] = []
        self.journal_msid: int | None = None
        self.release = trio.Event()
        self.seq = 0

    async def snapshot(self, fn: Any, *args: Any) -> tuple[int, Any]:
        await self.release.wait()
        self.release = trio.Event()
        return self.seq, fn(None, *args)


def index_with(cpu_alloc: int) -> CapacityIndex:
    index = CapacityIndex()
    index.set_host(host(1, cpu_alloc=cpu_alloc))
    return index


def alloc(placement: Placement) -> int:
    index = placement.planner.index
    return int(index.cpu_alloc[index.position[1]])


async def test_deltas_around_a_reload_count_once(nursery: trio.Nursery) -> None:
    db = ControlledDb()
    placement = Placement(db, {})  # type: ignore[arg-type]
    snapshots = iter([index_with(0), index_with(7)])
    placement._load = lambda conn: (next(snapshots), PoolIndex(), 0)  # type: ignore[method-assign]
    db.release.set()
    await placement.load()  # at commit 0: nothing allocated
    assert alloc(placement) == 0

    nursery.start_soon(placement.load)  # a reload whose snapshot will say "up to commit 4"
    await trio.testing.wait_all_tasks_blocked()
    placement.apply(5, [HostAllocated(1, 100, 0)])  # committed after the snapshot, applied before it lands
    assert alloc(placement) == 100  # the index in use has it at once
    db.seq = 4
    db.release.set()
    await trio.testing.wait_all_tasks_blocked()
    # The new index: 7 from the snapshot (commits 1-4), plus commit 5 laid over it.
    assert alloc(placement) == 107
    placement.apply(3, [HostAllocated(1, 7, 0)])  # commit 3's hand-over, late: the snapshot has it
    assert alloc(placement) == 107
    placement.apply(6, [HostAllocated(1, -50, 0), HostEnabled(1, False)])
    index = placement.planner.index
    assert alloc(placement) == 57 and not index.flags[index.position[1]] & ENABLED


async def test_status_reported_during_a_reload_wins(nursery: trio.Nursery) -> None:
    db = ControlledDb()
    placement = Placement(db, {})  # type: ignore[arg-type]
    placement._load = lambda conn: (index_with(0), PoolIndex(), 0)  # type: ignore[method-assign]
    nursery.start_soon(placement.load)
    await trio.testing.wait_all_tasks_blocked()
    placement.host_changed(1, Status.ALERT)  # the agent manager's word, while the database is read
    db.release.set()
    await trio.testing.wait_all_tasks_blocked()
    index = placement.planner.index
    assert not index.flags[index.position[1]] & 1  # not Up, whatever the snapshot said


async def test_a_peers_deltas_count_once_around_a_reload(nursery: trio.Nursery) -> None:
    """Several servers: a peer's deltas (by change-journal row) are laid over the index unless the read
    that filled it saw their row (its mark), during a reload too."""
    db = ControlledDb()
    placement = Placement(db, {})  # type: ignore[arg-type]
    snapshots = iter([(index_with(10), 5), (index_with(30), 8)])

    def load(_conn: Any) -> tuple[CapacityIndex, PoolIndex, int]:
        index, mark = next(snapshots)
        return index, PoolIndex(), mark

    placement._load = load  # type: ignore[method-assign]
    db.release.set()
    await placement.load()  # saw journal rows up to 5
    assert alloc(placement) == 10
    for listener in db.remote_listeners:
        listener(4, [HostAllocated(1, 1000, 0)])  # row 4: in the snapshot already
    assert alloc(placement) == 10
    placement.apply_remote(6, [HostAllocated(1, 20, 0)])  # row 6: new
    assert alloc(placement) == 30
    nursery.start_soon(placement.load)  # a reload that will have seen rows up to 8
    await trio.testing.wait_all_tasks_blocked()
    placement.apply_remote(7, [HostAllocated(1, 100, 0)])  # in that reload's snapshot
    placement.apply_remote(9, [HostAllocated(1, 5, 0)])  # after it: laid over the new index again
    assert alloc(placement) == 135
    db.release.set()
    await trio.testing.wait_all_tasks_blocked()
    assert alloc(placement) == 30 + 5  # as read (rows up to 8, so 6 and 7 are in it), and row 9 again
    assert placement.remote_applied == 4
