"""Volumes and template copies: the rows the storage side of orchestration keeps.

Volume states: Allocated (a row, nothing on any pool yet), Creating, Ready (on ``pool_id`` at
``path``), Destroy (its VM was destroyed; still on the pool until expunged), Expunged (gone; ``removed``
set). A template's copy on a pool is recorded in ``template_copies`` once an agent made it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ..db.database import inserted_id
from ..db.schema import storage_pools, template_copies, volumes
from ..planner import deltas

ALLOCATED, CREATING, READY, DESTROY, EXPUNGED = "Allocated", "Creating", "Ready", "Destroy", "Expunged"


def allocate(
    conn: Connection,
    vm_id: int,
    name: str,
    kind: str,
    size_bytes: int,
    account_id: int,
    now: datetime,
    *,
    template_id: int | None = None,
    disk_offering_id: int | None = None,
    device_id: int = 0,
    volume_uuid: str = "",
    provisioning_type: str = "thin",
    cache_mode: str = "none",
    iotune: str = "{}",
) -> int:
    return int(
        inserted_id(conn.execute(_INSERT, {
            "uuid": volume_uuid or str(uuid.uuid4()),
            "name": name,
            "vm_id": vm_id,
            "type": kind,
            "state": ALLOCATED,
            "update_count": 0,
            "size_bytes": size_bytes,
            "path": "",
            "device_id": device_id,
            "template_id": template_id,
            "disk_offering_id": disk_offering_id,
            "account_id": account_id,
            "provisioning_type": provisioning_type,
            "cache_mode": cache_mode,
            "iotune": iotune,
            "created": now,
        }))
    )


# Statements built once, values passed at execution (see services/events.py).
_INSERT = volumes.insert()
_SET_STATE = volumes.update().where(volumes.c.id == sa.bindparam("volume")).values(
    update_count=volumes.c.update_count + 1)
_SET_STATES = volumes.update().where(volumes.c.id.in_(sa.bindparam("volumes", expanding=True))).values(
    update_count=volumes.c.update_count + 1)
_COPY = sa.select(template_copies.c.install_path).where(
    template_copies.c.template_id == sa.bindparam("template"),
    template_copies.c.pool_id == sa.bindparam("pool"),
    template_copies.c.state == "Ready")


def of_vm(conn: Connection, vm_id: int) -> list[sa.Row[Any]]:
    """The VM's volumes that still exist, root first, with their pools' uuid and path."""
    return list(
        conn.execute(
            sa.select(
                volumes,
                storage_pools.c.uuid.label("pool_uuid"),
                storage_pools.c.path.label("pool_path"),
                storage_pools.c.scope.label("pool_scope"),
                storage_pools.c.cluster_id.label("pool_cluster"),
                storage_pools.c.host_id.label("pool_host"),
            )
            .outerjoin(storage_pools, storage_pools.c.id == volumes.c.pool_id)
            .where(volumes.c.vm_id == vm_id, volumes.c.removed.is_(None))
            .order_by(volumes.c.device_id)
        )
    )


def set_state(conn: Connection, /, volume_id: int, state: str, **values: object) -> None:
    conn.execute(_SET_STATE, {"volume": volume_id, "state": state, **values})


def set_states(conn: Connection, /, volume_ids: list[int], state: str, **values: object) -> None:
    """``set_state`` for several volumes, in one statement."""
    conn.execute(_SET_STATES, {"volumes": volume_ids, "state": state, **values})


def template_copy(conn: Connection, template_id: int, pool_id: int) -> str | None:
    """The install path of the template's Ready copy on the pool, or None."""
    return conn.scalar(_COPY, {"template": template_id, "pool": pool_id})


def record_template_copy(conn: Connection, template_id: int, pool_id: int, path: str, size: int) -> None:
    """Record the template's copy on the pool; a new copy's bytes count in the pool's used space.

    Concurrent deploys may copy the same template to the same pool at once: the primary key lets one
    insert win (inside a savepoint, so the loser's transaction goes on) and counts its bytes once.
    """
    try:
        with conn.begin_nested():
            conn.execute(template_copies.insert().values(template_id=template_id, pool_id=pool_id,
                                                         install_path=path, size_bytes=size, state="Ready"))
    except IntegrityError:
        key = (template_copies.c.template_id == template_id) & (template_copies.c.pool_id == pool_id)
        conn.execute(template_copies.update().where(key).values(install_path=path, state="Ready"))
        return
    conn.execute(storage_pools.update().where(storage_pools.c.id == pool_id)
                 .values(used_bytes=storage_pools.c.used_bytes + size))
    deltas.record(conn, deltas.TemplateCopied(pool_id, template_id, size))
