"""The database layer on SQLite and PostgreSQL: migrations, settings, and work off the event loop."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from mgmt import settings
from mgmt.db.database import Database, sqlite_url
from mgmt.db.schema import configuration, metadata, zones


def test_migrations_build_exactly_the_declared_schema(database: Database) -> None:
    with database.engine.connect() as conn:
        assert database.revision(conn) == database.head() == "0007"
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
    assert database.migrate() == "0007"  # running again changes nothing


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


async def test_database_work_runs_in_worker_threads(database: Database) -> None:
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
