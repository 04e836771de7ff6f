"""Data volumes made on their own (createVolume) and plugged into VMs: attach, detach, delete.

Space is exact on every path. A volume that was never created on a pool (Allocated) holds nothing;
attached to a VM whose volumes are on a pool while it runs, it is created there at once, its bytes
added to the VM's reservation (``capacity.add_disk``) and plugged in (``AttachCommand``); attached to
a stopped VM, it is created at the VM's next start, which reserves its bytes. A detached volume that
exists on a pool keeps its bytes used there, counted as a volume of its own, until ``delete``
removes it from the pool. A detached volume is attached again only to a VM whose volumes are on the
same pool: volumes are not moved between pools.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from protocol.messages import (
    AttachCommand,
    CreateAnswer,
    CreateCommand,
    DestroyCommand,
    DettachCommand,
    DiskTO,
)

from ..db.schema import capacity_reservations, storage_pools, vms, volumes
from ..errors import AgentUnavailable, CumuloError, InvalidParameter, OperationTimedOut
from ..planner import capacity
from ..storage import tuning
from ..storage import volumes as volume_rows
from .engine import OperationFailed, Orchestrator, hosts_reaching
from .vm_state import State
from .vms import now

log = logging.getLogger(__name__)
MAX_DEVICES = 26  # vda..vdz


def _vm_and_volume(conn: Connection, volume_id: int, vm_id: int) -> tuple[Any, Any, Any]:
    volume = conn.execute(
        sa.select(volumes).where(volumes.c.id == volume_id, volumes.c.removed.is_(None))
    ).one()
    vm = conn.execute(sa.select(vms).where(vms.c.id == vm_id, vms.c.removed.is_(None))).one()
    held = conn.execute(
        sa.select(capacity_reservations).where(capacity_reservations.c.vm_id == vm_id)
    ).first()
    return volume, vm, held


def _next_device(conn: Connection, vm_id: int, wanted: int | None = None) -> int:
    """The device id a disk attached to the VM takes: ``wanted`` when it is free, else the first free."""
    taken = set(
        conn.scalars(
            sa.select(volumes.c.device_id).where(volumes.c.vm_id == vm_id, volumes.c.removed.is_(None))
        )
    )
    if wanted is not None:
        if not 1 <= wanted < MAX_DEVICES:
            raise InvalidParameter(f"deviceid must be between 1 and {MAX_DEVICES - 1} (0 is the root disk)")
        if wanted in taken:
            raise InvalidParameter(f"device {wanted} of the VM holds another volume")
        return wanted
    for device in range(1, MAX_DEVICES):
        if device not in taken:
            return device
    raise InvalidParameter(f"the VM has {MAX_DEVICES} disks already")


def _claim(
    conn: Connection,
    volume: Any,
    vm_id: int,
    state: str,
    pool_id: int | None,
    add_bytes: int,
    limits: capacity.Limits | None,
    wanted: int | None = None,
) -> int:
    """The volume becomes the VM's (conditionally: nobody attached it meanwhile); its device id.
    ``add_bytes`` are reserved on the VM's pool (a new volume), or, with no limits, moved from the
    detached volume's own count into the VM's reservation."""
    device = _next_device(conn, vm_id, wanted)
    changed = conn.execute(
        volumes.update()
        .where(
            volumes.c.id == volume.id,
            volumes.c.vm_id.is_(None),
            volumes.c.update_count == volume.update_count,
        )
        .values(
            vm_id=vm_id,
            device_id=device,
            state=state,
            pool_id=pool_id,
            update_count=volumes.c.update_count + 1,
        )
    ).rowcount
    if changed != 1:
        raise InvalidParameter(f"volume {volume.name} changed while this request ran; try again")
    if add_bytes and limits is not None:
        capacity.add_disk(conn, vm_id, add_bytes, limits)
    elif add_bytes:
        conn.execute(
            capacity_reservations.update()
            .where(capacity_reservations.c.vm_id == vm_id)
            .values(disk_bytes=capacity_reservations.c.disk_bytes + add_bytes)
        )
    return device


def _unclaim(conn: Connection, volume_id: int, vm_id: int, on_pool: bool, nbytes: int) -> None:
    """The volume leaves the VM: a volume on a pool keeps its bytes there, counted on its own."""
    if on_pool:
        capacity.detach_disk(conn, vm_id, nbytes)
    conn.execute(
        volumes.update()
        .where(volumes.c.id == volume_id)
        .values(vm_id=None, device_id=None, update_count=volumes.c.update_count + 1)
    )


def _undo_new(conn: Connection, volume_id: int, vm_id: int, nbytes: int) -> None:
    """An attach that created a volume failed: it is Allocated again, detached, its bytes given back."""
    capacity.release_disk(conn, vm_id, nbytes)
    conn.execute(
        volumes.update()
        .where(volumes.c.id == volume_id)
        .values(
            vm_id=None,
            device_id=None,
            pool_id=None,
            path="",
            state=volume_rows.ALLOCATED,
            update_count=volumes.c.update_count + 1,
        )
    )


def _disk(volume: Any, pool: Any, device: int) -> DiskTO:
    return DiskTO(
        volume_uuid=volume.uuid,
        type="DATADISK",
        device_id=device,
        path=volume.path,
        pool_uuid=pool.uuid,
        pool_path=pool.path,
        size_bytes=volume.size_bytes,
        **tuning.disk_args(volume),
    )


def _pool(conn: Connection, pool_id: int) -> Any:
    return conn.execute(sa.select(storage_pools).where(storage_pools.c.id == pool_id)).one()


def _volume(conn: Connection, volume_id: int) -> Any:
    return conn.execute(sa.select(volumes).where(volumes.c.id == volume_id)).one()


async def attach(orch: Orchestrator, volume_id: int, vm_id: int, device_id: int | None = None) -> None:
    volume, vm, held = await orch.db.read(_vm_and_volume, volume_id, vm_id)
    if volume.type != "DATADISK" or volume.vm_id is not None:
        raise InvalidParameter(f"volume {volume.name} is not a detached data disk")
    if vm.state not in (State.RUNNING, State.STOPPED):
        raise InvalidParameter(f"VM {vm.instance_name} is {vm.state}; attach to a Running or Stopped VM")
    vm_pool = held.pool_id if held is not None and held.pool_id else None
    if volume.state == volume_rows.READY:  # made on a pool earlier, then detached
        if volume.pool_id != vm_pool:
            raise InvalidParameter(
                f"volume {volume.name} is on another storage pool than VM {vm.instance_name}'s volumes; "
                "volumes are not moved between pools"
            )
        device = await orch.db.run(
            _claim, volume, vm_id, volume_rows.READY, volume.pool_id, volume.size_bytes, None, device_id
        )
        if vm.state == State.RUNNING:
            pool = await orch.db.read(_pool, volume.pool_id)
            reason = await _plug(
                orch, vm, AttachCommand(vm_name=vm.instance_name, disk=_disk(volume, pool, device))
            )
            if reason:
                await orch.db.run(_unclaim, volume_id, vm_id, True, volume.size_bytes)
                raise OperationFailed(f"could not attach volume {volume.name}: {reason}")
        return
    if volume.state != volume_rows.ALLOCATED:
        raise InvalidParameter(f"volume {volume.name} is {volume.state}")
    if vm.state == State.STOPPED or vm_pool is None:
        # Made on the VM's pool when it next starts (the start reserves its bytes).
        await orch.db.run(_claim, volume, vm_id, volume_rows.ALLOCATED, None, 0, None, device_id)
        return
    limits = orch.placement.limits(vm.host_id)
    device = await orch.db.run(
        _claim, volume, vm_id, volume_rows.CREATING, vm_pool, volume.size_bytes, limits, device_id
    )
    pool = await orch.db.read(_pool, vm_pool)
    created = await _create(orch, vm.host_id, volume, pool)
    reason = created[1]
    if not reason:
        await orch.db.run(volume_rows.set_state, volume_id, volume_rows.READY, path=created[0])
        volume = await orch.db.read(_volume, volume_id)
        reason = await _plug(
            orch, vm, AttachCommand(vm_name=vm.instance_name, disk=_disk(volume, pool, device))
        )
    if reason:
        if created[0]:
            await _destroy_on(orch, [vm.host_id], volume.uuid, pool.uuid, created[0])
        await orch.db.run(_undo_new, volume_id, vm_id, volume.size_bytes)
        raise OperationFailed(f"could not attach volume {volume.name}: {reason}")


async def _create(orch: Orchestrator, host_id: int, volume: Any, pool: Any) -> tuple[str, str]:
    """(path, "") once the host made the volume on the pool, or ("", reason)."""
    try:
        answer = await orch._send(
            host_id,
            CreateCommand(
                volume_uuid=volume.uuid,
                pool_uuid=pool.uuid,
                pool_path=pool.path,
                size_bytes=volume.size_bytes,
                preallocation=tuning.preallocation(volume),
            ),
        )
    except (AgentUnavailable, OperationTimedOut) as e:
        return "", str(e)
    if not answer.result or not isinstance(answer, CreateAnswer):
        return "", answer.details or "the host could not create it"
    return answer.path, ""


async def _plug(orch: Orchestrator, vm: Any, command: Any) -> str:
    """Why the VM's host did not plug the disk in or out ("" when it did)."""
    try:
        answer = await orch._send(vm.host_id, command, timeout=120)
    except (AgentUnavailable, OperationTimedOut) as e:
        return str(e)
    return "" if answer.result else answer.details or "the host refused"


async def detach(orch: Orchestrator, volume_id: int) -> None:
    volume = await orch.db.read(_volume, volume_id)
    if volume.type != "DATADISK" or volume.vm_id is None:
        raise InvalidParameter(f"volume {volume.name} is not an attached data disk")
    _volume_row, vm, _held = await orch.db.read(_vm_and_volume, volume_id, volume.vm_id)
    if vm.state not in (State.RUNNING, State.STOPPED):
        raise InvalidParameter(f"VM {vm.instance_name} is {vm.state}; detach from a Running or Stopped VM")
    on_pool = volume.pool_id is not None and volume.state == volume_rows.READY
    if vm.state == State.RUNNING and on_pool:
        pool = await orch.db.read(_pool, volume.pool_id)
        reason = await _plug(
            orch,
            vm,
            DettachCommand(vm_name=vm.instance_name, disk=_disk(volume, pool, volume.device_id or 0)),
        )
        if reason:
            raise OperationFailed(f"could not detach volume {volume.name}: {reason}")
    await orch.db.run(_unclaim, volume_id, vm.id, on_pool, volume.size_bytes)


async def delete(orch: Orchestrator, volume_id: int) -> None:
    volume = await orch.db.run(_begin_delete, volume_id)
    if volume.pool_id is not None and volume.path:
        pool = await orch.db.read(_pool, volume.pool_id)
        hosts = await orch.db.read(hosts_reaching, volume.pool_id)
        if not await _destroy_on(orch, hosts, volume.uuid, pool.uuid, volume.path):
            await orch.db.run(volume_rows.set_state, volume_id, volume.state)
            raise OperationFailed(
                f"no host could delete volume {volume.name} from pool {pool.name}; try again"
            )
    await orch.db.run(_deleted, volume_id)


def _begin_delete(conn: Connection, volume_id: int) -> Any:
    """Mark a detached volume Destroy (so no attach takes it meanwhile); the row as it was."""
    volume = _volume(conn, volume_id)
    if volume.vm_id is not None:
        raise InvalidParameter(f"volume {volume.name} is attached to a VM; detach it first")
    changed = conn.execute(
        volumes.update()
        .where(
            volumes.c.id == volume_id,
            volumes.c.vm_id.is_(None),
            volumes.c.update_count == volume.update_count,
            volumes.c.removed.is_(None),
        )
        .values(state=volume_rows.DESTROY, update_count=volumes.c.update_count + 1)
    ).rowcount
    if changed != 1:
        raise InvalidParameter(f"volume {volume.name} changed while this request ran; try again")
    return volume


async def _destroy_on(
    orch: Orchestrator, host_ids: list[int], volume_uuid: str, pool_uuid: str, path: str
) -> bool:
    for host_id in host_ids:
        try:
            answer = await orch._send(
                host_id, DestroyCommand(volume_uuid=volume_uuid, pool_uuid=pool_uuid, path=path), timeout=60
            )
        except CumuloError:
            continue
        if answer.result:
            return True
        log.warning("host %d could not delete volume %s: %s", host_id, volume_uuid, answer.details)
    return False


def _deleted(conn: Connection, volume_id: int) -> None:
    volume = _volume(conn, volume_id)
    if volume.pool_id is not None and volume.path:
        capacity.release_volume(conn, volume.pool_id, volume.size_bytes)
    volume_rows.set_state(conn, volume_id, volume_rows.EXPUNGED, removed=now())
