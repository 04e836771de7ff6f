"""Data volumes made on their own: attach to a stopped VM (made at its next start), to a running one
(made and plugged in at once), failures of each step, detach, delete. Space stays exact throughout
(``capacity.check_totals`` after each step)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
import trio

from mgmt.db.schema import storage_pools, volumes
from mgmt.errors import InsufficientCapacity, InvalidParameter
from mgmt.orchestration import disks
from mgmt.orchestration.engine import OperationFailed

from .test_orchestration import Cloud, start_cloud

GIB = 2**30


@pytest.fixture
async def cloud(nursery: trio.Nursery, tmp_path: Path) -> Cloud:
    return await start_cloud(nursery, tmp_path, **{"ping.interval": "1"})


def new_volume(cloud: Cloud, size_gb: int = 10) -> int:
    with cloud.services.db.engine.begin() as conn:
        return int(
            conn.execute(
                volumes.insert().values(
                    uuid=f"00000000-0000-4000-8000-{size_gb:012d}",
                    name=f"data-{size_gb}",
                    zone_id=cloud.zone,
                    type="DATADISK",
                    state="Allocated",
                    size_bytes=size_gb * GIB,
                    account_id=2,
                    created=datetime.now(UTC),
                )
            ).inserted_primary_key[0]
        )


def volume(cloud: Cloud, volume_id: int) -> sa.Row:
    with cloud.services.db.engine.connect() as conn:
        return conn.execute(sa.select(volumes).where(volumes.c.id == volume_id)).one()


def pool_used(cloud: Cloud, pool_id: int) -> int:
    with cloud.services.db.engine.connect() as conn:
        return int(conn.scalar(sa.select(storage_pools.c.used_bytes).where(storage_pools.c.id == pool_id)))


def root_pool(cloud: Cloud, vm_id: int) -> int:
    with cloud.services.db.engine.connect() as conn:
        return int(
            conn.scalar(
                sa.select(volumes.c.pool_id).where(volumes.c.vm_id == vm_id, volumes.c.type == "ROOT")
            )
        )


async def test_attach_to_a_stopped_vm_is_made_at_its_next_start(cloud: Cloud) -> None:
    vm_id = await cloud.orch.deploy(cloud.spec())
    await cloud.orch.stop(vm_id)
    pool = root_pool(cloud, vm_id)
    before = pool_used(cloud, pool)
    data = new_volume(cloud)
    await disks.attach(cloud.orch, data, vm_id)
    row = volume(cloud, data)
    assert (row.vm_id, row.state, row.pool_id, row.device_id) == (vm_id, "Allocated", None, 1)
    assert pool_used(cloud, pool) == before  # nothing made yet, nothing counted
    cloud.exact()

    # a start that fails gives the data disk's space back and keeps the root volume's
    host = cloud.vm(vm_id).last_host_id
    rule = cloud.faults[cloud.guid_of(host)].add("StartCommand", "fail", count=1)
    with pytest.raises(InsufficientCapacity):
        await cloud.orch.start(vm_id, host_id=host)
    row = volume(cloud, data)
    assert rule.matched == 1 and (row.vm_id, row.state, row.pool_id) == (vm_id, "Allocated", None)
    assert pool_used(cloud, pool) == before
    cloud.exact()

    await cloud.orch.start(vm_id)
    row = volume(cloud, data)
    assert (row.state, row.pool_id) == ("Ready", pool)
    assert pool_used(cloud, pool) == before + 10 * GIB
    disks_seen = (
        cloud.sim(cloud.guid_of(cloud.vm(vm_id).host_id)).host.vms[cloud.vm(vm_id).instance_name].to.disks
    )
    assert [d.type for d in disks_seen] == ["ROOT", "DATADISK"]
    cloud.exact()


async def test_attach_to_a_running_vm_and_its_failures(cloud: Cloud) -> None:
    vm_id = await cloud.orch.deploy(cloud.spec())
    pool = root_pool(cloud, vm_id)
    before = pool_used(cloud, pool)
    guid = cloud.guid_of(cloud.vm(vm_id).host_id)
    name = cloud.vm(vm_id).instance_name

    data = new_volume(cloud)
    plug = cloud.faults[guid].add("AttachCommand", "fail", details="no free slot", count=1)
    with pytest.raises(OperationFailed, match="no free slot"):
        await disks.attach(cloud.orch, data, vm_id)
    row = volume(cloud, data)
    assert plug.matched == 1 and (row.vm_id, row.state, row.pool_id, row.path) == (
        None,
        "Allocated",
        None,
        "",
    )
    assert pool_used(cloud, pool) == before and not any(row.uuid in p for p in cloud.sim(guid).host.volumes)
    cloud.exact()

    cloud.faults[guid].add("CreateCommand", "fail", details="disk full", count=1)
    with pytest.raises(OperationFailed, match="disk full"):
        await disks.attach(cloud.orch, data, vm_id)
    assert volume(cloud, data).vm_id is None and pool_used(cloud, pool) == before
    cloud.exact()

    await disks.attach(cloud.orch, data, vm_id)
    assert volume(cloud, data).state == "Ready" and pool_used(cloud, pool) == before + 10 * GIB
    assert [d.type for d in cloud.sim(guid).host.vms[name].to.disks] == ["ROOT", "DATADISK"]
    cloud.exact()
    with pytest.raises(InvalidParameter, match="detached data disk"):
        await disks.attach(cloud.orch, data, vm_id)

    await disks.detach(cloud.orch, data)
    assert [d.type for d in cloud.sim(guid).host.vms[name].to.disks] == ["ROOT"]
    assert pool_used(cloud, pool) == before + 10 * GIB  # still on the pool, counted on its own
    cloud.exact()

    # a detached volume goes back only to a VM whose volumes are on its pool
    other = await cloud.orch.deploy(cloud.spec())
    if root_pool(cloud, other) != pool:
        with pytest.raises(InvalidParameter, match="another storage pool"):
            await disks.attach(cloud.orch, data, other)

    with_it = pool_used(cloud, pool)  # (the other VM's root volume may be on this pool too)
    await disks.delete(cloud.orch, data)
    assert pool_used(cloud, pool) == with_it - 10 * GIB
    assert volume(cloud, data).state == "Expunged"
    cloud.exact()


async def test_attach_to_a_full_pool_is_refused_and_leaves_nothing(cloud: Cloud) -> None:
    vm_id = await cloud.orch.deploy(cloud.spec())
    pool = root_pool(cloud, vm_id)
    with cloud.services.db.engine.begin() as conn:
        capacity = conn.scalar(sa.select(storage_pools.c.capacity_bytes).where(storage_pools.c.id == pool))
    huge = new_volume(cloud, size_gb=int(capacity * 2 // GIB) + 1)  # past even the thin over-provisioning
    with pytest.raises(InsufficientCapacity):
        await disks.attach(cloud.orch, huge, vm_id)
    assert volume(cloud, huge).vm_id is None
    cloud.exact()


async def test_an_attached_data_disk_is_expunged_with_its_vm(cloud: Cloud) -> None:
    vm_id = await cloud.orch.deploy(cloud.spec())
    pool = root_pool(cloud, vm_id)
    data = new_volume(cloud)
    await disks.attach(cloud.orch, data, vm_id)
    await cloud.orch.destroy(vm_id, expunge=True)
    assert volume(cloud, data).state == "Expunged"
    with cloud.services.db.engine.connect() as conn:
        copies = conn.scalar(
            sa.text("select coalesce(sum(size_bytes), 0) from template_copies where pool_id = :p"),
            {"p": pool},
        )
    assert pool_used(cloud, pool) == copies  # only the template's copy is left on the pool
    cloud.exact()
