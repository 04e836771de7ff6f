"""The catalog follows what commits: a committed write to one of its tables (through the writer or
not) is seen by the next request, a rolled-back one costs nothing, and a snapshot read while a change
committed is not kept."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from mgmt.catalog import Catalog
from mgmt.db.database import Database
from mgmt.db.schema import zones


def _zone(conn: sa.Connection, name: str, fail: bool = False) -> None:
    conn.execute(zones.insert().values(uuid=str(uuid.uuid4()), name=name, network_type="Advanced",
                                       allocation_state="Enabled", created=datetime.now(UTC)))
    if fail:
        raise RuntimeError("rolled back")


def _names(catalog_zones: object) -> set[str]:
    return {row.name for row in catalog_zones.by_uuid.values()}  # type: ignore[attr-defined]


async def test_the_catalog_follows_committed_writes(database: Database) -> None:
    catalog = Catalog(database)
    first = await catalog.current()
    assert _names(first.zones) == set() and await catalog.current() is first  # kept until a change
    await database.run(_zone, "z1")
    second = await catalog.current()
    assert _names(second.zones) == {"z1"} and catalog.loads == 2
    with pytest.raises(RuntimeError):
        await database.run(_zone, "z2", True)
    assert await catalog.current() is second  # nothing committed: nothing to load
    await database.run(lambda conn: conn.execute(sa.select(zones)).all())  # reading changes nothing
    assert await catalog.current() is second
    with database.engine.begin() as conn:  # a tool writing behind the writer's back
        conn.execute(zones.update().values(removed=datetime.now(UTC)))
    assert _names((await catalog.current()).zones) == set()  # removed rows are not in it


async def test_a_snapshot_read_while_a_change_commits_is_not_kept(database: Database) -> None:
    catalog = Catalog(database)
    read = database.read
    raced = []

    async def racing_read(fn, *args):  # type: ignore[no-untyped-def]
        result = await read(fn, *args)
        if not raced:  # the first load: a change commits after it read, before it is kept
            raced.append(True)
            await database.run(_zone, "late")
        return result

    database.read = racing_read  # type: ignore[method-assign]
    stale = await catalog.current()
    assert _names(stale.zones) == set()  # served to the request that asked for it ...
    fresh = await catalog.current()  # ... but not kept: the next request reads again
    assert fresh is not stale and _names(fresh.zones) == {"late"}
