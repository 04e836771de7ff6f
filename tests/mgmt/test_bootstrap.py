"""The zone file creates the inventory, idempotently, and names what is wrong in a bad one."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from mgmt import bootstrap
from mgmt.db.database import Database
from mgmt.db.schema import clusters, ip_ranges, networks, pods, service_offerings, storage_pools, zones

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "zone.toml"


def count(conn: sa.Connection, table: sa.Table) -> int:
    return int(conn.scalar(sa.select(sa.func.count()).select_from(table)) or 0)


def test_the_documented_example_applies_and_reapplies(database: Database) -> None:
    doc = bootstrap.load(EXAMPLE)
    with database.engine.begin() as conn:
        counts = bootstrap.apply(conn, doc)
        assert counts == {"zones": 1, "pods": 2, "clusters": 4, "pools": 2, "networks": 1, "templates": 1,
                          "service_offerings": 2, "disk_offerings": 1}
        ids = conn.execute(sa.select(clusters.c.name, clusters.c.uuid)).all()
    doc["service_offering"][0]["memory_mb"] = 2048
    with database.engine.begin() as conn:
        bootstrap.apply(conn, doc)
        tables = (zones, pods, clusters, storage_pools, networks, ip_ranges)
        assert [count(conn, t) for t in tables] == [1, 2, 4, 2, 1, 1]
        assert conn.execute(sa.select(clusters.c.name, clusters.c.uuid)).all() == ids  # same rows, same uuids
        small = sa.select(service_offerings.c.memory_mb).where(service_offerings.c.name == "small")
        assert conn.scalar(small) == 2048
        scoped = conn.execute(sa.select(storage_pools.c.scope, storage_pools.c.cluster_id)
                              .where(storage_pools.c.name == "primary2")).one()
        assert scoped[0] == "CLUSTER" and scoped[1] is not None


@pytest.mark.parametrize(("text", "message"), [
    ('[[zone]]\ndns1 = "x"\n', "zone 1: 'name' is required"),
    ('[[zone]]\nname = "z"\n[[zone.storage_pool]]\nname = "p"\ncluster = "nope"\npath = "/p"\n'
     'capacity_gb = 1\n', "no cluster named 'nope' in zone z"),
    ('[[zone]]\nname = "z"\n[[zone.network]]\nname = "n"\ncidr = "10.0.0.0/24"\ngateway = "10.9.0.1"\n',
     "the gateway and every IP range must lie inside 10.0.0.0/24"),
    ('[[zone]]\nname = "z"\n[[zone.network]]\nname = "n"\ncidr = "10.0.0.0/33"\ngateway = "10.0.0.1"\n',
     "zone z, network 1"),
    ("[[zone]\n", "zone.toml"),
])
def test_bad_zone_files_say_where(database: Database, tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "zone.toml"
    path.write_text(text)
    with pytest.raises(bootstrap.ZoneFileError, match=message), database.engine.begin() as conn:
        bootstrap.apply(conn, bootstrap.load(path))
    with database.engine.connect() as conn:
        assert count(conn, zones) == 0  # nothing half-applied
