"""The isolated network state machine: Allocated (made) → Implemented (a VM of it starts: it takes a VXLAN
id from its zone's range) → Shutdown (no VM of it runs any more: the id goes back) → Implemented again.

Shared networks are always Setup and have no VXLAN id. The ids are unique per zone (a constraint of the
table, so two servers implementing at once cannot take the same one); the hosts make and remove their
bridges for a network as its VMs come and go (``agent/kvm/vxlan.py``), so Shutdown asks nothing of them.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ..db.schema import networks, nics, vms, zones
from ..errors import InsufficientCapacity

ISOLATED = "Isolated"
IMPLEMENTED, SHUTDOWN, ALLOCATED = "Implemented", "Shutdown", "Allocated"
# A VM in one of these states may run (or is about to) on a host: its networks stay implemented.
ACTIVE_VM_STATES = ("Starting", "Running", "Stopping", "Migrating")


def _free_vni(conn: Connection, zone_id: int) -> int:
    zone = conn.execute(sa.select(zones.c.vni_start, zones.c.vni_end).where(zones.c.id == zone_id)).one()
    used = set(conn.scalars(
        sa.select(networks.c.vni).where(networks.c.zone_id == zone_id, networks.c.vni.is_not(None))
    ))
    for vni in range(zone.vni_start, zone.vni_end + 1):
        if vni not in used:
            return vni
    raise InsufficientCapacity(
        f"zone {zone_id} has no free VXLAN id left ({zone.vni_start} to {zone.vni_end} are all in use)"
    )


def implement(conn: Connection, network_ids: list[int]) -> dict[int, int]:
    """Make sure these networks are implemented (isolated ones take a VXLAN id); their ids by network
    (isolated networks only)."""
    vnis: dict[int, int] = {}
    if not network_ids:
        return vnis
    rows = conn.execute(
        sa.select(networks.c.id, networks.c.zone_id, networks.c.guest_type)
        .where(networks.c.id.in_(network_ids), networks.c.guest_type == ISOLATED)
    ).all()
    for row in rows:
        # Counted as a use whether or not it was implemented: a shutdown deciding meanwhile (it read the
        # count before this start) finds the count moved and leaves the network alone.
        conn.execute(networks.update().where(networks.c.id == row.id)
                     .values(update_count=networks.c.update_count + 1))
        for _ in range(100):  # another server may take the same id first: the constraint says so
            vni = conn.scalar(sa.select(networks.c.vni).where(networks.c.id == row.id))
            if vni is not None:
                vnis[row.id] = int(vni)
                break
            vni = _free_vni(conn, row.zone_id)
            try:
                with conn.begin_nested():
                    conn.execute(networks.update().where(networks.c.id == row.id, networks.c.vni.is_(None))
                                 .values(vni=vni, state=IMPLEMENTED))
            except IntegrityError:
                continue
        else:
            raise InsufficientCapacity(f"could not take a VXLAN id for network {row.id}")
    return vnis


def implement_for_vm(conn: Connection, vm_id: int) -> dict[int, int]:
    ids = list(conn.scalars(
        sa.select(nics.c.network_id).where(nics.c.vm_id == vm_id, nics.c.state != "Released")
    ))
    return implement(conn, ids)


def shutdown_idle(conn: Connection) -> list[Any]:
    """Shut down every implemented isolated network no active VM uses (its VXLAN id goes back); the
    networks shut down (id, uuid, the id they had)."""
    active = (
        sa.select(nics.c.network_id)
        .join(vms, vms.c.id == nics.c.vm_id)
        .where(nics.c.state != "Released", vms.c.removed.is_(None), vms.c.state.in_(ACTIVE_VM_STATES))
    )
    idle = conn.execute(
        sa.select(networks.c.id, networks.c.uuid, networks.c.vni, networks.c.update_count).where(
            networks.c.guest_type == ISOLATED, networks.c.vni.is_not(None), networks.c.id.not_in(active)
        )
    ).all()
    done = []
    for row in idle:
        if conn.execute(networks.update().where(networks.c.id == row.id,
                                                networks.c.update_count == row.update_count)
                        .values(vni=None, state=SHUTDOWN)).rowcount == 1:
            done.append(row)
    return done
