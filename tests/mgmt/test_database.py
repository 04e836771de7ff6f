"""The database layer on SQLite and PostgreSQL: migrations, settings, and work off the event loop."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
import trio
import trio.testing
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from mgmt import settings
from mgmt.db.database import Database, sqlite_url
from mgmt.db.schema import configuration, metadata, zones
from mgmt.planner.deltas import HostEnabled, record


def test_migrations_build_exactly_the_declared_schema(database: Database) -> None:
    with database.engine.connect() as conn:
        assert database.revision(conn) == database.head() == "0018"
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
    assert database.migrate() == "0018"  # running again changes nothing


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    db = Database(sqlite_url(tmp_path))
    db.migrate()
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    assert (tmp_path / "cumulo.db").exists()
    db.dispose()


def test_settings_are_seeded_once_and_admin_values_survive(database: Database) -> None:
    with database.engine.begin() as conn:
        assert settings.seed(conn) == len(settings.SETTINGS)
        conn.execute(configuration.update().where(configuration.c.name == "ping.interval").values(value="30"))
        assert settings.seed(conn) == 0
        values = settings.current(conn)
    assert values["ping.interval"] == 30 and values["ping.timeout"] == 2.5
    assert values["vm.allocation.algorithm"] == "random"
    assert values["cluster.cpu.allocated.capacity.disablethreshold"] == 0.85


async def test_database_work_runs_off_the_event_loop(database: Database) -> None:
    loop_thread = threading.get_ident()

    def insert(conn: sa.Connection) -> tuple[int, int]:
        conn.execute(zones.insert().values(uuid="7e1c0000-0000-4000-8000-000000000001", name="z1",
                                           network_type="Advanced", allocation_state="Enabled",
                                           created=sa.func.now()))
        return threading.get_ident(), conn.execute(sa.select(sa.func.count()).select_from(zones)).scalar_one()

    thread, count = await database.run(insert)
    assert thread != loop_thread and count == 1


async def test_a_failed_transaction_leaves_nothing(database: Database) -> None:
    def half_done(conn: sa.Connection) -> None:
        conn.execute(zones.insert().values(uuid="7e1c0000-0000-4000-8000-000000000002", name="z2",
                                           network_type="Advanced", allocation_state="Enabled",
                                           created=sa.func.now()))
        raise RuntimeError("crash in the middle")

    with pytest.raises(RuntimeError, match="crash in the middle"):
        await database.run(half_done)
    count = await database.run(lambda c: c.execute(sa.select(sa.func.count()).select_from(zones)).scalar())
    assert count == 0


def _zone(conn: sa.Connection, name: str) -> None:
    conn.execute(zones.insert().values(uuid=f"7e1c0000-0000-4000-8000-{abs(hash(name)) % 10**12:012d}",
                                       name=name, network_type="Advanced", allocation_state="Enabled",
                                       created=sa.func.now()))


def _zone_names(conn: sa.Connection) -> set[str]:
    return set(conn.scalars(sa.select(zones.c.name)))


async def _behind_a_held_write(database: Database, writes: list, results: list) -> None:
    """Submit ``writes`` while the writer is busy with another one, so that they wait for it and go
    into the next transaction together (in no set order); each one's outcome (result or exception)
    into ``results``."""
    started, release = threading.Event(), threading.Event()

    def held(conn: sa.Connection) -> None:
        started.set()
        release.wait(30)

    async def one(i: int, fn: object) -> None:
        try:
            results[i] = await database.run(fn)  # type: ignore[arg-type]
        except Exception as e:
            results[i] = e

    async with trio.open_nursery() as nursery:
        nursery.start_soon(database.run, held)
        await trio.to_thread.run_sync(started.wait)  # the writer is inside it
        for i, fn in enumerate(writes):
            nursery.start_soon(one, i, fn)
        await trio.testing.wait_all_tasks_blocked()
        release.set()


async def test_writes_submitted_together_commit_together(database: Database) -> None:
    writer = database.writer
    await database.run(lambda c: None)  # the writer thread is running
    before = writer.batches
    results: list = [None] * 20
    await _behind_a_held_write(database, [lambda c, i=i: _zone(c, f"z{i}") for i in range(20)], results)
    assert writer.batches - before == 2  # the held write alone, then the twenty at once
    assert await database.read(_zone_names) == {f"z{i}" for i in range(20)}


async def test_a_failing_write_fails_alone_in_its_batch(database: Database) -> None:
    def fails(conn: sa.Connection) -> None:
        _zone(conn, "half-written")
        raise RuntimeError("this one fails")

    results: list = [None] * 5
    writes = [lambda c: _zone(c, "a"), lambda c: _zone(c, "b"), fails, lambda c: _zone(c, "c"),
              lambda c: _zone(c, "a")]  # the last one breaks the unique name: fails on its own too
    before = database.writer.retried
    await _behind_a_held_write(database, writes, results)
    assert isinstance(results[2], RuntimeError) and str(results[2]) == "this one fails"
    # The two "a": whichever ran second (tasks start in no set order) breaks the unique name.
    assert sorted(type(r).__name__ for r in (results[0], results[4])) == ["IntegrityError", "NoneType"]
    assert results[1] is None and results[3] is None
    assert await database.read(_zone_names) == {"a", "b", "c"}
    assert database.writer.retried > before


async def test_commit_numbers_reach_the_listeners_in_order_and_only_for_commits(database: Database) -> None:
    seen: list[tuple[int, list]] = []
    database.commit_listeners.append(lambda seq, deltas: seen.append((seq, deltas)))

    def enable(host_id: int, fail: bool = False):  # type: ignore[no-untyped-def]
        def write(conn: sa.Connection) -> None:
            record(conn, HostEnabled(host_id, True))
            if fail:
                raise RuntimeError("rolled back")
        return write

    for host_id in (1, 2):
        await database.run(enable(host_id))
    with pytest.raises(RuntimeError):
        await database.run(enable(3, fail=True))
    results: list = [None] * 3
    await _behind_a_held_write(database, [enable(4), enable(5, fail=True), enable(6)], results)
    hosts = [sorted(d.host_id for d in deltas) for _seq, deltas in seen]
    assert hosts == [[1], [2], [4, 6]]  # 3 and 5 rolled back; 4 and 6 went in one commit
    seqs = [seq for seq, _deltas in seen]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3


async def test_a_failed_commit_fails_its_whole_batch_and_the_writer_goes_on(tmp_path: Path) -> None:
    db = Database(sqlite_url(tmp_path))
    db.migrate()
    try:
        def breaks_at_commit(conn: sa.Connection) -> None:
            # A foreign key checked only at COMMIT: the statement succeeds, the commit does not.
            conn.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
            conn.exec_driver_sql("INSERT INTO pods (uuid, name, zone_id, allocation_state, created) "
                                 "VALUES ('p', 'p', 999, 'Enabled', CURRENT_TIMESTAMP)")

        results: list = [None] * 2
        await _behind_a_held_write(db, [breaks_at_commit, lambda c: _zone(c, "innocent")], results)
        assert all(isinstance(r, sa.exc.IntegrityError) for r in results), results
        assert await db.read(_zone_names) == set()
        await db.run(_zone, "after")
        assert await db.read(_zone_names) == {"after"}
    finally:
        db.dispose()


def _filler(table: sa.Table) -> dict[str, object]:
    """A row for ``table`` with every required column set (references: the row with id 1)."""
    values: dict[str, object] = {}
    for column in table.columns:
        if (column.nullable and not column.primary_key) or column.server_default is not None:
            continue
        kind = column.type
        if isinstance(kind, sa.Integer):
            values[column.name] = 1
        elif isinstance(kind, sa.DateTime):
            values[column.name] = datetime.now(UTC)
        elif isinstance(kind, sa.Boolean):
            values[column.name] = False
        elif isinstance(kind, sa.Float | sa.Numeric):
            values[column.name] = 0
        else:
            length = getattr(kind, "length", None) or 64
            values[column.name] = f"{table.name[:20]}-{column.name[:10]}"[:length]
    return values


def test_an_upgrade_keeps_every_row_other_rows_point_at(database: Database) -> None:
    """Migrations that rebuild a table (SQLite's batch mode: copy, drop, rename) on a database that has
    rows in every table, each pointing at the others: nothing is refused, nothing lost. (Down to the
    revision before the newest migrations that rebuild tables, then up again.)"""
    with database.engine.begin() as conn:
        command.downgrade(database.alembic_config(conn), "0008")
    with database.engine.begin() as conn:
        reflected = sa.MetaData()
        reflected.reflect(conn)
        for table in reflected.sorted_tables:
            if table.name != "alembic_version":
                conn.execute(table.insert().values(**_filler(table)))
        counts = {t.name: conn.scalar(sa.select(sa.func.count()).select_from(t))
                  for t in reflected.sorted_tables}
    assert database.migrate() == database.head()
    with database.engine.connect() as conn:
        added = {"disk_offerings": 1}  # 0015 adds CloudStack's "Custom" disk offering
        for name, count in counts.items():
            assert conn.scalar(sa.text(f"SELECT count(*) FROM {name}")) == count + added.get(name, 0), name


def test_a_deadlock_with_another_server_runs_the_batch_again(postgres_url: str) -> None:
    """Two transactions that lock two rows in opposite orders: PostgreSQL ends one with a deadlock (here
    the writer's, which looks for deadlocks first). The writer runs a batch that lost so again, whole,
    instead of failing its callers."""
    from mgmt.db.writer import transient

    db = Database(postgres_url)
    with db.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS lockpair")
        conn.exec_driver_sql("CREATE TABLE lockpair (id int primary key, v int)")
        conn.exec_driver_sql("INSERT INTO lockpair VALUES (1, 0), (2, 0)")
    mine_locked, other_locked = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def other() -> None:  # another server: row 2, then row 1
        with db.engine.begin() as conn:
            conn.exec_driver_sql("SET LOCAL deadlock_timeout = '30s'")
            conn.exec_driver_sql("UPDATE lockpair SET v = v + 1 WHERE id = 2")
            other_locked.set()
            mine_locked.wait(10)
            conn.exec_driver_sql("UPDATE lockpair SET v = v + 1 WHERE id = 1")

    def item(conn: sa.Connection) -> int:  # this server: row 1, then row 2
        conn.exec_driver_sql("SET LOCAL deadlock_timeout = '100ms'")
        conn.exec_driver_sql("UPDATE lockpair SET v = v + 10 WHERE id = 1")
        if not mine_locked.is_set():  # the first time: make the cycle
            other_locked.wait(10)
            mine_locked.set()
        try:
            conn.exec_driver_sql("UPDATE lockpair SET v = v + 10 WHERE id = 2")
        except sa.exc.OperationalError as e:
            errors.append(e)
            raise
        return 1

    thread = threading.Thread(target=other)
    thread.start()
    assert trio.run(db.run, item) == 1
    thread.join()
    with db.engine.begin() as conn:
        values = dict(conn.exec_driver_sql("SELECT id, v FROM lockpair").all())
        conn.exec_driver_sql("DROP TABLE lockpair")
    assert len(errors) == 1 and transient(errors[0])  # it lost once ...
    assert db.writer.transient_retries == 1
    assert values == {1: 11, 2: 11}  # ... and both transactions' writes are there, each once
    db.dispose()
