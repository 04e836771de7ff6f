"""Capacity reservations on SQLite and PostgreSQL: the database arbitrates, so concurrent deploys
planned from stale indexes never over-commit a host or break an anti-affinity group, and the capacity
columns always equal the sums of the reservation rows. Also the planner's indexes loaded from the
database."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import trio

from mgmt import bootstrap
from mgmt.agents import registry
from mgmt.agents.host_status import Event
from mgmt.agents.registry import Change, Startup
from mgmt.db.database import DELTAS, Database
from mgmt.db.schema import (
    affinity_group_vms,
    affinity_groups,
    capacity_reservations,
    clusters,
    host_capacity,
    hosts,
    service_offerings,
    storage_pools,
    templates,
    vms,
    zones,
)
from mgmt.planner import capacity
from mgmt.planner.capacity import Ask, Limits, ReservationLost
from mgmt.planner.kernel import get_kernel
from mgmt.planner.loader import load_index, load_pools
from mgmt.planner.model import Avoid, DeploymentPlan, NoDestination, VmProfile
from mgmt.planner.planner import Planner, PlannerSettings
from protocol.messages import StartupRoutingCommand

ZONE = Path(__file__).parents[2] / "docs" / "examples" / "zone.toml"
GiB = 2**30
NOW = datetime(2026, 11, 22, tzinfo=UTC)


def inventory(db: Database, n_hosts: int = 4) -> tuple[list[int], int]:
    """The example zone and ``n_hosts`` Up hosts (8 x 2,000 MHz, 32 GiB) in pod1-cluster1; their ids
    and the zone id."""
    with db.engine.begin() as conn:
        bootstrap.apply(conn, bootstrap.load(str(ZONE)))
        regs = registry.register_many(
            conn,
            [
                Startup(
                    StartupRoutingCommand(
                        guid=f"h{i}",
                        name=f"h{i}",
                        zone="zone1",
                        pod="pod1",
                        cluster="pod1-cluster1",
                        cpus=8,
                        cpu_speed_mhz=2000,
                        memory_bytes=32 * GiB,
                        hypervisor_type="Simulator",
                    ),
                    None,
                    1,
                )
                for i in range(n_hosts)
            ],
        )
        ids = [r.host_id for r in regs]
        registry.transition_many(conn, [Change(h, Event.READY) for h in ids])
        return ids, conn.scalar(sa.select(zones.c.id))


def new_vms(db: Database, n: int) -> list[int]:
    with db.engine.begin() as conn:
        zone, offering, template = (
            conn.scalar(sa.select(t.c.id)) for t in (zones, service_offerings, templates)
        )
        ids = []
        for _ in range(n):
            name = f"i-{uuid.uuid4().hex[:12]}"
            ids.append(
                conn.execute(
                    vms.insert().values(
                        uuid=str(uuid.uuid4()),
                        instance_name=name,
                        display_name=name,
                        state="Stopped",
                        zone_id=zone,
                        service_offering_id=offering,
                        template_id=template,
                        account_id=2,
                        created=NOW,
                    )
                ).inserted_primary_key[0]
            )
        return ids


def totals_are_exact(db: Database) -> None:
    with db.engine.connect() as conn:
        assert capacity.check_totals(conn) == []
        for hc in conn.execute(sa.select(host_capacity)):
            assert hc.cpu_mhz_used + hc.cpu_mhz_reserved <= hc.cpu_mhz_total
            assert hc.memory_used + hc.memory_reserved <= hc.memory_total


def test_reserve_hold_release_keep_the_columns_equal_to_the_rows(database: Database) -> None:
    (h1, h2, *_), _zone = inventory(database)
    vm1, vm2 = new_vms(database, 2)
    with database.engine.connect() as conn:
        pool = conn.scalar(sa.select(storage_pools.c.id).where(storage_pools.c.scope == "CLUSTER"))
    with database.engine.begin() as conn:
        capacity.reserve(conn, Ask(vm1, h1, 4000, 2, 8 * GiB, pool, 20 * GiB), Limits(), NOW)
        capacity.reserve(conn, Ask(vm2, h1, 12000, 6, 24 * GiB), Limits(), NOW)
    totals_are_exact(database)
    with pytest.raises(ReservationLost) as lost, database.engine.begin() as conn:
        capacity.reserve(conn, Ask(vm2, h1, 12001, 1, GiB), Limits(), NOW)  # the host is full
    assert lost.value.kind == "host"
    with database.engine.connect() as conn:  # the failed attempt rolled back whole: vm2 still holds h1
        assert (
            conn.scalar(
                sa.select(capacity_reservations.c.cpu_mhz).where(capacity_reservations.c.vm_id == vm2)
            )
            == 12000
        )
    with database.engine.begin() as conn:
        assert capacity.hold(conn, vm1, NOW + timedelta(hours=1))
        hc = conn.execute(sa.select(host_capacity).where(host_capacity.c.host_id == h1)).one()
        assert (hc.cpu_mhz_used, hc.cpu_mhz_reserved) == (12000, 4000)
        capacity.reserve(conn, Ask(vm1, h2, 4000, 2, 8 * GiB), Limits(), NOW)  # restarted elsewhere
    totals_are_exact(database)
    with database.engine.begin() as conn:
        assert capacity.hold(conn, vm1, NOW + timedelta(hours=1))
        assert capacity.release_expired_holds(conn, NOW) == []
        assert [r.vm_id for r in capacity.release_expired_holds(conn, NOW + timedelta(hours=2))] == [vm1]
        capacity.release_compute(conn, vm2)
        assert capacity.release_compute(conn, vm2) is None  # twice: nothing more to give back
    totals_are_exact(database)
    with database.engine.begin() as conn:
        assert capacity.release_storage(conn, vm1) is not None
        assert conn.scalar(sa.select(storage_pools.c.used_bytes).where(storage_pools.c.id == pool)) == 0
        assert conn.scalar(sa.select(sa.func.count()).select_from(capacity_reservations)) == 1
    totals_are_exact(database)


def test_a_new_vms_lost_reservation_leaves_nothing_behind_in_its_transaction(database: Database) -> None:
    """Admit reserves without a savepoint: a new VM's reservation that loses on the pool (after its
    host's share was added) takes that share back, and the transaction goes on and commits."""
    (h1, *_), _zone = inventory(database)
    (vm,) = new_vms(database, 1)
    with database.engine.connect() as conn:
        pool, size = conn.execute(sa.select(storage_pools.c.id, storage_pools.c.capacity_bytes)
                                  .where(storage_pools.c.scope == "CLUSTER")).one()
    deltas: list = []

    def lose(conn: sa.Connection) -> str:
        conn.info[DELTAS] = deltas
        try:
            capacity.reserve(conn, Ask(vm, h1, 4000, 2, 8 * GiB, pool, 3 * size), Limits(), NOW, new=True)
        except ReservationLost as e:
            return e.kind
        finally:
            del conn.info[DELTAS]
        return "reserved"

    with database.engine.begin() as conn:  # committed, with whatever the lost reservation left
        assert lose(conn) == "pool"
    with database.engine.connect() as conn:
        hc = conn.execute(sa.select(host_capacity).where(host_capacity.c.host_id == h1)).one()
        assert (hc.cpu_mhz_used, hc.memory_used, hc.cores_used) == (0, 0, 0)
        assert conn.scalar(sa.select(sa.func.count()).select_from(capacity_reservations)) == 0
    assert sum(d.cpu_mhz for d in deltas) == sum(d.memory for d in deltas) == 0  # the index nets zero
    totals_are_exact(database)


async def test_concurrent_deploys_from_stale_indexes_never_overcommit(database: Database) -> None:
    """200 deploys of 1 vCPU x 1,000 MHz / 1 GiB on 4 hosts of 16,000 MHz: 64 fit. Four planners (as
    four management servers) load their index once and never refresh it except for a host they lost."""
    host_ids, zone = inventory(database)
    vm_ids = new_vms(database, 200)
    profile = VmProfile(1, 1000, GiB)
    settings = PlannerSettings(algorithm="random", cpu_threshold=1.0, mem_threshold=1.0)
    with database.engine.connect() as conn:
        planners = [
            Planner(
                load_index(conn, 1.0, 1.0),
                load_pools(conn),
                settings,
                kernel=get_kernel(kernel),
                rng=random.Random(k),
            )
            for k, kernel in enumerate(["native", "python"] * 2)
        ]
    placed: dict[int, int] = {}
    refused: list[int] = []
    races = 0

    async def deploy(vm_id: int) -> None:
        nonlocal races
        planner = planners[vm_id % len(planners)]
        avoid = Avoid()
        while True:
            try:
                dest = planner.plan(profile, DeploymentPlan(zone), avoid)
            except NoDestination:
                refused.append(vm_id)
                return
            ask = Ask(vm_id, dest.host_id, profile.cpu_mhz, profile.cpus, profile.memory_bytes)
            try:
                await database.run(capacity.reserve, ask, Limits(), NOW)
            except ReservationLost:
                races += 1
                avoid.hosts.add(dest.host_id)
                continue
            planner.index.allocate(dest.host_id, profile.cpu_mhz, profile.memory_bytes)
            placed[vm_id] = dest.host_id
            return

    async with trio.open_nursery() as nursery:
        for vm_id in vm_ids:
            nursery.start_soon(deploy, vm_id)
    assert len(placed) == 64 and len(refused) == 136
    assert races > 0  # the indexes were stale: the database had to refuse some
    assert sorted(list(placed.values()).count(h) for h in host_ids) == [16, 16, 16, 16]
    totals_are_exact(database)


async def test_an_anti_affinity_group_is_kept_under_concurrency(database: Database) -> None:
    host_ids, zone = inventory(database)
    members = new_vms(database, 8)
    with database.engine.begin() as conn:
        group = conn.execute(
            affinity_groups.insert().values(
                uuid=str(uuid.uuid4()),
                name="spread",
                type="host anti-affinity",
                description="",
                account_id=2,
                created=NOW,
            )
        ).inserted_primary_key[0]
        conn.execute(affinity_group_vms.insert(), [{"group_id": group, "vm_id": v} for v in members])
        planners = [
            Planner(load_index(conn, 1.0, 1.0), load_pools(conn), PlannerSettings(), rng=random.Random(k))
            for k in range(4)
        ]
    placed: dict[int, int] = {}

    async def deploy(vm_id: int) -> None:
        planner, avoid = planners[vm_id % 4], Avoid()
        while True:
            # Each planner knows only where its own earlier members went (stale, as across servers).
            taken = frozenset(h for v, h in placed.items() if v % 4 == vm_id % 4)
            try:
                dest = planner.plan(
                    VmProfile(1, 500, GiB, anti_affinity_hosts=taken), DeploymentPlan(zone), avoid
                )
            except NoDestination:
                return
            try:
                await database.run(
                    capacity.reserve,
                    Ask(vm_id, dest.host_id, 500, 1, GiB, anti_affinity_groups=(group,)),
                    Limits(),
                    NOW,
                )
            except ReservationLost as e:
                avoid.hosts.add(e.ident)
                continue
            placed[vm_id] = dest.host_id
            return

    async with trio.open_nursery() as nursery:
        for vm_id in members:
            nursery.start_soon(deploy, vm_id)
    assert sorted(placed.values()) == sorted(host_ids)  # four members, one per host; four refused
    totals_are_exact(database)


def test_the_indexes_load_what_the_database_says(database: Database) -> None:
    host_ids, _zone = inventory(database, 3)
    with database.engine.begin() as conn:
        conn.execute(hosts.update().where(hosts.c.id == host_ids[1]).values(status="Alert"))
        conn.execute(hosts.update().where(hosts.c.id == host_ids[2]).values(host_tags="ssd,gpu"))
        conn.execute(
            host_capacity.update()
            .where(host_capacity.c.host_id == host_ids[0])
            .values(cpu_mhz_used=1000, cpu_mhz_reserved=500, memory_reserved=GiB)
        )
        conn.execute(clusters.update().where(clusters.c.name == "pod1-cluster1").values(cpu_overcommit=3.0))
        ix = load_index(conn, 2.0, 1.5)
        pools = load_pools(conn)
    i0, i1, i2 = (ix.position[h] for h in host_ids)
    assert (ix.cpu_alloc[i0], ix.mem_alloc[i0], ix.speed[i0], ix.cores[i0]) == (1500, GiB, 2000, 8)
    assert ix.flags[i1] & 1 == 0 and ix.flags[i0] & 7 == 7
    assert ix.tags[i2] == ix.tag_mask(frozenset({"ssd", "gpu"}))
    c = ix.cluster_ix[i0]
    assert (ix.c_cpu_factor[c], ix.c_mem_factor[c]) == (3.0, 1.5)  # the cluster's override, the default
    assert {p.scope for p in pools.pools.values()} >= {"CLUSTER"}
    planner = Planner(ix, pools, PlannerSettings())
    assert (
        planner.plan(VmProfile(1, 1000, GiB, host_tags=frozenset({"gpu"})), DeploymentPlan(0)).host_id
        == host_ids[2]
    )
