"""Host registration and status transitions in batches (one transaction for many agents), and the
group-commit writer that forms those batches; on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import pytest
import sqlalchemy as sa
import trio
import trio.testing
from sqlalchemy.engine import Connection

from mgmt import bootstrap
from mgmt.agents import registry
from mgmt.agents.host_status import Event, Status
from mgmt.agents.registry import Change, Startup
from mgmt.db.batching import Batcher
from mgmt.db.database import Database
from mgmt.db.schema import host_capacity, hosts, storage_pools
from protocol.messages import StartupRoutingCommand, StartupStorageCommand

ZONE = Path(__file__).parents[2] / "docs" / "examples" / "zone.toml"
MSID = 7


@pytest.fixture
def zoned(database: Database) -> Database:
    with database.engine.begin() as conn:
        bootstrap.apply(conn, bootstrap.load(str(ZONE)))
    return database


def startup(guid: str, *, cluster: str = "pod1-cluster1", cpus: int = 8, pool: bool = True) -> Startup:
    pod = cluster.split("-")[0]
    routing = StartupRoutingCommand(guid=guid, name=f"host-{guid}", zone="zone1", pod=pod, cluster=cluster,
                                    hypervisor_type="Simulator", cpus=cpus, cpu_speed_mhz=2000,
                                    memory_bytes=cpus * 2**30, private_ip="10.0.0.1")
    storage = StartupStorageCommand(guid=guid, pool_uuid=f"pool-{guid}", path=f"/pool/{guid}",
                                    capacity_bytes=10**12, available_bytes=10**12) if pool else None
    return Startup(routing, storage, MSID)


def row(db: Database, guid: str) -> sa.Row:
    with db.engine.connect() as conn:
        return conn.execute(sa.select(hosts).where(hosts.c.guid == guid)).one()


def test_a_batch_registers_new_and_known_hosts_and_refuses_unknown_places(zoned: Database) -> None:
    with zoned.engine.begin() as conn:
        [old] = registry.register_many(conn, [startup("old", cpus=4)])
    with zoned.engine.begin() as conn:
        regs = registry.register_many(conn, [
            startup("new1"), startup("old", cpus=32, cluster="pod2-cluster1"), startup("lost", cluster="x-y"),
            startup("new2", cluster="pod1-cluster2", pool=False)])
    assert [r.reject_reason for r in regs] == ["", "", "unknown pod 'x' in zone 'zone1'", ""]
    assert regs[1].host_id == old.host_id  # the same row, moved to its new cluster
    assert len({r.host_id for r in regs if r.host_id}) == 3
    with zoned.engine.connect() as conn:
        caps = {r.host_id: r.cpu_cores for r in conn.execute(sa.select(host_capacity))}
        pools = {r.host_id for r in conn.execute(sa.select(storage_pools.c.host_id)
                                                 .where(storage_pools.c.scope == "HOST"))}
    assert caps == {regs[0].host_id: 8, old.host_id: 32, regs[3].host_id: 8}
    assert pools == {regs[0].host_id, old.host_id}
    moved = row(zoned, "old")
    assert (moved.status, moved.update_count, moved.cluster_id) == ("Connecting", 2, regs[1].cluster_id)
    assert row(zoned, "new1").status == "Connecting"


def test_a_guid_twice_in_one_batch_is_registered_in_order(zoned: Database) -> None:
    with zoned.engine.begin() as conn:
        first, second = registry.register_many(conn, [startup("twice", cpus=4), startup("twice", cpus=12)])
    assert first.host_id == second.host_id != 0
    with zoned.engine.connect() as conn:
        assert conn.scalar(sa.select(host_capacity.c.cpu_cores)) == 12
    assert row(zoned, "twice").update_count == 2


def test_a_removed_host_is_refused(zoned: Database) -> None:
    with zoned.engine.begin() as conn:
        [reg] = registry.register_many(conn, [startup("gone")])
        conn.execute(hosts.update().where(hosts.c.id == reg.host_id).values(status=Status.REMOVED))
        [again] = registry.register_many(conn, [startup("gone")])
    assert again.reject_reason == "this host was removed"


def test_transitions_in_a_batch_follow_the_table_in_order(zoned: Database) -> None:
    with zoned.engine.begin() as conn:
        a, b = (r.host_id for r in registry.register_many(conn, [startup("a"), startup("b")]))
    with zoned.engine.begin() as conn:
        result = registry.transition_many(conn, [
            Change(a, Event.READY, MSID), Change(b, Event.PING), Change(a, Event.AGENT_DISCONNECTED),
            Change(999, Event.READY)])
    assert result == [Status.UP, None, Status.ALERT, None]  # Connecting takes no Ping; 999 does not exist
    after = row(zoned, "a")
    assert (after.status, after.update_count) == ("Alert", 3)  # two transitions, counted as two
    assert after.last_ping is not None  # Ready stamped it
    assert row(zoned, "b").update_count == 1


def test_a_transition_that_lost_a_race_reports_none(zoned: Database) -> None:
    with zoned.engine.begin() as conn:
        a, b = (r.host_id for r in registry.register_many(conn, [startup("a"), startup("b")]))

    def racing(conn: Connection, changes: Sequence[Change]) -> list[Status | None]:
        # Another writer moves b between the read and the conditional write of this batch.
        original = conn.execute

        def execute(statement: object, *args: object, **kwargs: object) -> object:
            if isinstance(statement, sa.Update) and args and isinstance(args[0], list):
                original(hosts.update().where(hosts.c.id == b).values(update_count=hosts.c.update_count + 1))
            return original(statement, *args, **kwargs)

        conn.execute = execute  # type: ignore[method-assign]
        return registry.transition_many(conn, changes)

    with zoned.engine.begin() as conn:
        assert racing(conn, [Change(a, Event.READY), Change(b, Event.READY)]) == [Status.UP, None]
    assert row(zoned, "a").status == "Up" and row(zoned, "b").status == "Connecting"


def test_a_restart_releases_the_hosts_the_last_run_held(zoned: Database) -> None:
    with zoned.engine.begin() as conn:
        a, b = (r.host_id for r in registry.register_many(conn, [startup("a"), startup("b")]))
        registry.transition_many(conn, [Change(a, Event.READY, MSID)])
        conn.execute(hosts.update().where(hosts.c.id == b).values(mgmt_server_id=MSID + 1))
    with zoned.engine.begin() as conn:
        assert registry.release_hosts(conn, MSID) == 1
    assert row(zoned, "a").status == "Disconnected"
    assert row(zoned, "b").status == "Connecting"  # another server's host is not ours to release


# --- the group-commit writer ---------------------------------------------------------------------

def _double(conn: Connection, items: Sequence[int]) -> list[int]:
    if 13 in items:
        raise ValueError("unlucky batch")
    return [2 * i for i in items]


async def test_concurrent_submissions_share_transactions(database: Database) -> None:
    batcher = Batcher(database, _double, max_batch=50)
    results: dict[int, int] = {}

    async def one(i: int) -> None:
        results[i] = await batcher.submit(i)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(batcher.run)
        await trio.testing.wait_all_tasks_blocked()
        async with trio.open_nursery() as callers:
            for i in range(200):
                if i != 13:
                    callers.start_soon(one, i)
        nursery.cancel_scope.cancel()
    assert results == {i: 2 * i for i in range(200) if i != 13}
    assert batcher.items == 199 and batcher.batches < 199
    assert batcher.batches >= 4  # max_batch bounds a transaction


async def test_a_failed_batch_fails_each_of_its_callers(database: Database) -> None:
    batcher = Batcher(database, _double)
    errors: list[str] = []

    async def one(i: int) -> None:
        try:
            await batcher.submit(i)
        except ValueError as e:
            errors.append(str(e))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(batcher.run)
        await trio.testing.wait_all_tasks_blocked()
        async with trio.open_nursery() as callers:
            for i in (12, 13, 14):  # queued together, before the writer wakes: one batch
                callers.start_soon(one, i)
        nursery.cancel_scope.cancel()
    assert errors == ["unlucky batch"] * 3
    assert batcher.batches == 0


async def test_a_stopping_writer_writes_what_is_queued_and_later_items_still_run(database: Database) -> None:
    batcher = Batcher(database, _double)
    got: list[int] = []

    async def one(i: int) -> None:
        with trio.CancelScope(shield=True):  # as a closing connection's last status write
            got.append(await batcher.submit(i))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(batcher.run)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(one, 1)
        nursery.start_soon(one, 2)
        nursery.cancel_scope.cancel()  # the writer is cancelled with the two items queued
    assert sorted(got) == [2, 4]
    assert not batcher.running
    assert await batcher.submit(5) == 10  # no writer: a transaction of its own


async def test_a_batch_cancelled_before_its_transaction_is_still_written(database: Database) -> None:
    batcher = Batcher(database, _double)
    got: list[int] = []

    async def one(i: int) -> None:
        with trio.CancelScope(shield=True):
            got.append(await batcher.submit(i))

    await database.limiter.acquire_on_behalf_of("test")  # every worker thread busy: the writer must wait
    for _ in range(int(database.limiter.total_tokens) - 1):
        await database.limiter.acquire_on_behalf_of(object())
    with trio.fail_after(10):
        await _cancel_while_waiting_for_a_thread(batcher, database, one)
    assert got == [6]


async def _cancel_while_waiting_for_a_thread(batcher: Batcher[int, int], database: Database,
                                             one: Callable[[int], Awaitable[None]]) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(batcher.run)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(one, 3)
        await trio.testing.wait_all_tasks_blocked()  # the writer took the batch and waits for a thread
        nursery.cancel_scope.cancel()
        database.limiter.release_on_behalf_of("test")  # a thread frees up for the shielded drain
