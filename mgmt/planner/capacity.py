"""Capacity reservations: the database decides who gets the last of a host or a pool.

``reserve`` adds a VM's CPU and memory to its host's ``*_used`` and its disks to its pool's
``used_bytes`` with conditional UPDATEs that fail when the limit (total x over-commit factor) would be
passed, checks its anti-affinity groups against VMs already placed on the host, and records the
reservation row; any failure raises ``ReservationLost`` and the caller's transaction rolls back, so
nothing is half-reserved. The caller adds what was lost (the host, or the pool) to the avoid set and
plans again. ``reserve_migration`` adds the running VM's compute to a migration's destination as
well, and ``finish_migration`` takes it off the host the VM left (or, on failure, the destination).
``hold`` moves a stopped VM's compute from used to reserved on its last host (kept for
``capacity.skipcounting.hours``), ``release_compute`` and ``release_storage`` give capacity back, and
``release_expired_holds`` ends holds whose time is up. Each function runs in the caller's transaction;
the host and pool columns always equal the sums of the reservation rows (and, for pools, of the
template copies on them; ``check_totals`` says where they do not).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..db.schema import (
    affinity_group_vms,
    capacity_reservations,
    host_capacity,
    storage_pools,
    template_copies,
    volumes,
)
from ..errors import InsufficientCapacity
from .deltas import HostAllocated, PoolAllocated, record
from .pools import THIN

ALLOCATED, HELD = "Allocated", "Held"
R, HC, SP = capacity_reservations, host_capacity, storage_pools


@dataclass(frozen=True)
class Ask:
    vm_id: int
    host_id: int
    cpu_mhz: int
    cores: int
    memory_bytes: int
    pool_id: int = 0
    disk_bytes: int = 0
    anti_affinity_groups: tuple[int, ...] = ()


@dataclass(frozen=True)
class Limits:
    cpu_factor: float = 1.0  # the host's cluster's effective cpu.overprovisioning.factor
    mem_factor: float = 1.0
    storage_factor: float = 2.0  # storage.overprovisioning.factor (thin pools)


class ReservationLost(InsufficientCapacity):
    """Another reservation took what this one needed: ``kind`` is host, pool or affinity."""

    def __init__(self, kind: str, ident: int, message: str) -> None:
        super().__init__(message)
        self.kind, self.ident = kind, ident


def reserve(conn: Connection, ask: Ask, limits: Limits, now: datetime, *, new: bool = False) -> None:
    """Reserve compute on ``ask.host_id`` and space on ``ask.pool_id`` for the VM, or raise ReservationLost.

    A VM that holds compute already (a Held reservation on its last host, or one left by a failed
    start) gives it back first, in the same transaction; ``new``: the VM was made in this transaction
    and holds nothing, and a lost reservation leaves nothing written (no savepoint needed: the host's
    share is added only when it fits, and taken back when the pool's then does not).
    """
    if ask.anti_affinity_groups:
        _check_anti_affinity(conn, ask)
    previous = None if new else conn.execute(_R_OF, {"vm": ask.vm_id}).first()
    if previous is not None and previous.state is not None:
        _release_compute(conn, previous)
    if not _add_used(conn, ask.host_id, ask.cpu_mhz, ask.memory_bytes, ask.cores, limits):
        raise ReservationLost("host", ask.host_id, f"host {ask.host_id} no longer has {ask.cpu_mhz} MHz and "
                                                   f"{ask.memory_bytes // 2**20} MiB free")
    # A VM whose volumes are on a pool already keeps that pool; new volumes (a data disk attached while
    # it was stopped) are added to it.
    kept = previous if previous is not None and previous.pool_id else None
    pool_id = kept.pool_id if kept is not None else ask.pool_id or None
    disk = (kept.disk_bytes if kept is not None else 0) + ask.disk_bytes
    if pool_id and ask.disk_bytes and not _add_pool_used(conn, pool_id, ask.disk_bytes, limits):
        if new:  # take the host's share back: the caller's transaction goes on
            _add_used(conn, ask.host_id, -ask.cpu_mhz, -ask.memory_bytes, -ask.cores, None)
        raise ReservationLost("pool", pool_id, f"storage pool {pool_id} no longer has "
                                               f"{ask.disk_bytes // 2**30} GiB free")
    row = {"host_id": ask.host_id, "state": ALLOCATED, "held_until": None, "cpu_mhz": ask.cpu_mhz,
           "cores": ask.cores, "memory_bytes": ask.memory_bytes, "pool_id": pool_id, "disk_bytes": disk}
    if previous is None:
        conn.execute(_R_INSERT, {"vm_id": ask.vm_id, "created": now, **row})
    else:
        conn.execute(R.update().where(R.c.vm_id == ask.vm_id).values(**row))


# The hot statements, built once; values are passed at execution (see services/events.py).
_B = sa.bindparam
_POOL_ADD = SP.update().where(
    SP.c.id == _B("pool"),
    SP.c.used_bytes + SP.c.reserved_bytes + _B("n", type_=sa.BigInteger) <= SP.c.capacity_bytes * sa.case(
        (SP.c.pool_type.in_(THIN) & (SP.c.scope != "HOST"), _B("factor", type_=sa.Float)), else_=1.0),
).values(used_bytes=SP.c.used_bytes + _B("n", type_=sa.BigInteger), update_count=SP.c.update_count + 1)
_HOST_ADD_VALUES = {"cpu_mhz_used": HC.c.cpu_mhz_used + _B("cpu", type_=sa.BigInteger),
                    "memory_used": HC.c.memory_used + _B("mem", type_=sa.BigInteger),
                    "cores_used": HC.c.cores_used + _B("cores", type_=sa.Integer),
                    "update_count": HC.c.update_count + 1}
_HOST_ADD_WITHIN = HC.update().where(
    HC.c.host_id == _B("host"),
    HC.c.cpu_mhz_used + HC.c.cpu_mhz_reserved + _B("cpu", type_=sa.BigInteger)
    <= HC.c.cpu_mhz_total * _B("cpu_factor", type_=sa.Float),
    HC.c.memory_used + HC.c.memory_reserved + _B("mem", type_=sa.BigInteger)
    <= HC.c.memory_total * _B("mem_factor", type_=sa.Float),
).values(**_HOST_ADD_VALUES)
_HOST_ADD = HC.update().where(HC.c.host_id == _B("host")).values(**_HOST_ADD_VALUES)
_R_INSERT = R.insert()
_R_OF = sa.select(R).where(R.c.vm_id == _B("vm"))


def _add_pool_used(conn: Connection, pool_id: int, nbytes: int, limits: Limits) -> bool:
    done = conn.execute(_POOL_ADD, {"pool": pool_id, "n": nbytes,
                                    "factor": limits.storage_factor}).rowcount == 1
    if done:
        record(conn, PoolAllocated(pool_id, nbytes))
    return done


def _pool_release(conn: Connection, pool_id: int, nbytes: int) -> None:
    conn.execute(SP.update().where(SP.c.id == pool_id).values(
        used_bytes=SP.c.used_bytes - nbytes, update_count=SP.c.update_count + 1))
    record(conn, PoolAllocated(pool_id, -nbytes))


def add_disk(conn: Connection, vm_id: int, nbytes: int, limits: Limits) -> int:
    """Reserve ``nbytes`` more on the pool of the VM's volumes (a data disk made for it while it has a
    reservation); the pool's id. Raises ReservationLost when the pool is full."""
    row = conn.execute(sa.select(R).where(R.c.vm_id == vm_id)).first()
    if row is None or not row.pool_id:
        raise ReservationLost("vm", vm_id, f"VM {vm_id} has no volumes on a pool yet")
    if not _add_pool_used(conn, row.pool_id, nbytes, limits):
        raise ReservationLost("pool", row.pool_id, f"storage pool {row.pool_id} does not have "
                                                   f"{nbytes // 2**30} GiB free")
    conn.execute(R.update().where(R.c.vm_id == vm_id).values(disk_bytes=R.c.disk_bytes + nbytes))
    return int(row.pool_id)


def release_disk(conn: Connection, vm_id: int, nbytes: int) -> sa.Row[Any] | None:
    """Give back ``nbytes`` of the VM's pool space (volumes made by a failed start); a reservation left
    with nothing goes. The row as it was, or None."""
    row = conn.execute(sa.select(R).where(R.c.vm_id == vm_id)).first()
    if row is None or not row.pool_id or not nbytes:
        return row
    _pool_release(conn, row.pool_id, nbytes)
    if row.disk_bytes - nbytes <= 0 and row.state is None:
        conn.execute(R.delete().where(R.c.vm_id == vm_id))
    else:
        conn.execute(R.update().where(R.c.vm_id == vm_id).values(disk_bytes=R.c.disk_bytes - nbytes))
    return row


def detach_disk(conn: Connection, vm_id: int, nbytes: int) -> None:
    """A data disk on the VM's pool leaves the VM: its bytes stay used on the pool, counted from now on
    as a volume of its own (``check_totals`` counts detached volumes), not in the VM's reservation."""
    conn.execute(R.update().where(R.c.vm_id == vm_id).values(disk_bytes=R.c.disk_bytes - nbytes))


def release_volume(conn: Connection, pool_id: int, nbytes: int) -> None:
    """A detached volume was deleted from its pool: its bytes go back."""
    _pool_release(conn, pool_id, nbytes)


def _check_anti_affinity(conn: Connection, ask: Ask) -> None:
    groups = list(ask.anti_affinity_groups)
    # PostgreSQL: lock the group's membership rows so two placements in one group go one at a time
    # (SQLite's BEGIN IMMEDIATE already serializes writers; FOR UPDATE is dropped there).
    conn.execute(sa.select(affinity_group_vms.c.vm_id).where(affinity_group_vms.c.group_id.in_(groups))
                 .with_for_update()).all()
    member = sa.select(affinity_group_vms.c.vm_id).where(affinity_group_vms.c.group_id.in_(groups))
    clash = conn.scalar(sa.select(R.c.vm_id).where(
        R.c.host_id == ask.host_id, R.c.state == ALLOCATED, R.c.vm_id != ask.vm_id, R.c.vm_id.in_(member),
    ).limit(1))
    if clash is not None:
        raise ReservationLost("affinity", ask.host_id,
                              f"VM {clash} of the same anti-affinity group was placed on host {ask.host_id}")


def _release_compute(conn: Connection, row: sa.Row[Any]) -> None:
    if row.migrating_to is not None:  # a migration in flight: its destination's share goes too
        finish_migration(conn, row.vm_id, False)
    used = row.state == ALLOCATED
    cpu_col, mem_col = (HC.c.cpu_mhz_used, HC.c.memory_used) if used else \
        (HC.c.cpu_mhz_reserved, HC.c.memory_reserved)
    values = {cpu_col.name: cpu_col - row.cpu_mhz, mem_col.name: mem_col - row.memory_bytes,
              "update_count": HC.c.update_count + 1}
    if used:
        values["cores_used"] = HC.c.cores_used - row.cores
    conn.execute(HC.update().where(HC.c.host_id == row.host_id).values(**values))
    record(conn, HostAllocated(row.host_id, -row.cpu_mhz, -row.memory_bytes))
    conn.execute(R.update().where(R.c.vm_id == row.vm_id).values(state=None, held_until=None))


def _add_used(conn: Connection, host_id: int, cpu_mhz: int, memory: int, cores: int,
              limits: Limits | None) -> bool:
    """Add to a host's used columns: conditionally (within ``limits``) or, with None, unconditionally."""
    params: dict[str, float] = {"host": host_id, "cpu": cpu_mhz, "mem": memory, "cores": cores}
    if limits is not None:
        params.update(cpu_factor=limits.cpu_factor, mem_factor=limits.mem_factor)
    done = conn.execute(_HOST_ADD if limits is None else _HOST_ADD_WITHIN, params).rowcount == 1
    if done:
        record(conn, HostAllocated(host_id, cpu_mhz, memory))
    return done


def reserve_migration(conn: Connection, vm_id: int, dest_host_id: int, limits: Limits) -> sa.Row[Any]:
    """Reserve the running VM's compute on a migration's destination too (the source keeps its share
    until ``finish_migration``); raises ReservationLost when the destination is full."""
    row = conn.execute(sa.select(R).where(R.c.vm_id == vm_id)).first()
    if row is None or row.state != ALLOCATED:
        raise ReservationLost("vm", vm_id, f"VM {vm_id} holds no running capacity to migrate")
    if not _add_used(conn, dest_host_id, row.cpu_mhz, row.memory_bytes, row.cores, limits):
        raise ReservationLost("host", dest_host_id, f"host {dest_host_id} no longer has room for VM {vm_id}")
    conn.execute(R.update().where(R.c.vm_id == vm_id).values(migrating_to=dest_host_id))
    return row


def finish_migration(conn: Connection, vm_id: int, succeeded: bool) -> int | None:
    """Settle a migration: the destination keeps the compute (succeeded) or gives it back; the host
    the VM is now on, or None when no migration was pending."""
    row = conn.execute(sa.select(R).where(R.c.vm_id == vm_id)).first()
    if row is None or row.migrating_to is None:
        return None
    gone_from = row.host_id if succeeded else row.migrating_to
    conn.execute(HC.update().where(HC.c.host_id == gone_from).values(
        cpu_mhz_used=HC.c.cpu_mhz_used - row.cpu_mhz, memory_used=HC.c.memory_used - row.memory_bytes,
        cores_used=HC.c.cores_used - row.cores, update_count=HC.c.update_count + 1))
    record(conn, HostAllocated(gone_from, -row.cpu_mhz, -row.memory_bytes))
    now_on = row.migrating_to if succeeded else row.host_id
    conn.execute(R.update().where(R.c.vm_id == vm_id).values(host_id=now_on, migrating_to=None))
    return int(now_on)


def release_compute(conn: Connection, vm_id: int) -> sa.Row[Any] | None:
    """Give back the VM's CPU and memory (stop, failed start, destroy); the released row, or None."""
    row = conn.execute(sa.select(R).where(R.c.vm_id == vm_id)).first()
    if row is None or row.state is None:
        return None
    _release_compute(conn, row)
    return row


def hold(conn: Connection, vm_id: int, until: datetime) -> bool:
    """A stopped VM keeps its compute on its last host until ``until``: moved from used to reserved."""
    row = conn.execute(sa.select(R).where(R.c.vm_id == vm_id)).first()
    if row is None or row.state != ALLOCATED:
        return False
    conn.execute(HC.update().where(HC.c.host_id == row.host_id).values(
        cpu_mhz_used=HC.c.cpu_mhz_used - row.cpu_mhz, memory_used=HC.c.memory_used - row.memory_bytes,
        cores_used=HC.c.cores_used - row.cores, cpu_mhz_reserved=HC.c.cpu_mhz_reserved + row.cpu_mhz,
        memory_reserved=HC.c.memory_reserved + row.memory_bytes, update_count=HC.c.update_count + 1))
    conn.execute(R.update().where(R.c.vm_id == vm_id).values(state=HELD, held_until=until))
    return True


def release_storage(conn: Connection, vm_id: int) -> sa.Row[Any] | None:
    """Give back the VM's pool space (its volumes are expunged) and, with it, the whole reservation."""
    row = conn.execute(sa.select(R).where(R.c.vm_id == vm_id)).first()
    if row is None:
        return None
    if row.state is not None:
        _release_compute(conn, row)
    if row.pool_id and row.disk_bytes:
        _pool_release(conn, row.pool_id, row.disk_bytes)
    conn.execute(R.delete().where(R.c.vm_id == vm_id))
    return row


def release_expired_holds(conn: Connection, now: datetime) -> list[sa.Row[Any]]:
    """End the holds whose ``held_until`` has passed; the rows released."""
    rows = conn.execute(sa.select(R).where(R.c.state == HELD, R.c.held_until <= now)).all()
    for row in rows:
        _release_compute(conn, row)
    return list(rows)


def check_totals(conn: Connection) -> list[str]:
    """Where the host and pool columns differ from the sums of the reservation rows (empty: exact)."""
    problems = []
    sums: dict[int, list[int]] = {}
    for row in conn.execute(sa.select(R.c.host_id, R.c.migrating_to, R.c.state, R.c.cpu_mhz,
                                      R.c.memory_bytes, R.c.cores).where(R.c.state.is_not(None))):
        for host_id in (row.host_id, row.migrating_to):
            if host_id is None:
                continue
            s = sums.setdefault(host_id, [0, 0, 0, 0, 0])
            k = 0 if row.state == ALLOCATED else 2
            s[k] += row.cpu_mhz
            s[k + 1] += row.memory_bytes
            if row.state == ALLOCATED:
                s[4] += row.cores
    for hc in conn.execute(sa.select(HC)):
        want = sums.get(hc.host_id, [0, 0, 0, 0, 0])
        have = [hc.cpu_mhz_used, hc.memory_used, hc.cpu_mhz_reserved, hc.memory_reserved, hc.cores_used]
        if have != want:
            problems.append(f"host {hc.host_id}: columns {have} but reservations {want}")
    pool_sums: dict[int, int] = {}
    held = sa.select(R.c.pool_id, R.c.disk_bytes).where(R.c.pool_id.is_not(None))
    for pool_id, disk_bytes in conn.execute(held):
        pool_sums[pool_id] = pool_sums.get(pool_id, 0) + disk_bytes
    for pool_id, size in conn.execute(sa.select(template_copies.c.pool_id, template_copies.c.size_bytes)):
        pool_sums[pool_id] = pool_sums.get(pool_id, 0) + size  # template copies take pool space too
    for pool_id, size in conn.execute(sa.select(volumes.c.pool_id, volumes.c.size_bytes).where(
            volumes.c.vm_id.is_(None), volumes.c.pool_id.is_not(None), volumes.c.removed.is_(None))):
        pool_sums[pool_id] = pool_sums.get(pool_id, 0) + size  # and detached volumes
    for pool in conn.execute(sa.select(SP.c.id, SP.c.used_bytes)):
        want_bytes = pool_sums.get(pool.id, 0)
        if pool.used_bytes != want_bytes:
            problems.append(f"pool {pool.id}: used {pool.used_bytes} but reservations {want_bytes}")
    return problems
