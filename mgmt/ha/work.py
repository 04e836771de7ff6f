"""The HA work queue in the database (``ha_work``): one item per VM to restart elsewhere or mark
Stopped, worked until done or out of attempts. It survives a management-server restart: items a
stopped server was working go back to Pending at its next start.

Everything here is one function per transaction step; ``HaManager`` (``manager.py``) runs them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..db.schema import ha_work, hosts, vms
from ..orchestration import vms as vm_rows
from ..orchestration.vm_state import Event, State
from ..planner import capacity
from .alerts import HOST, raise_alert

RESTART, STOP = "Restart", "Stop"
PENDING, RUNNING, DONE, FAILED = "Pending", "Running", "Done", "Failed"
OPEN = (PENDING, RUNNING)
LIVE = (State.RUNNING, State.STARTING, State.STOPPING, State.MIGRATING, State.UNKNOWN)  # on a host


def _open_for(conn: Connection, vm_ids: list[int]) -> set[int]:
    if not vm_ids:
        return set()
    return set(conn.scalars(sa.select(ha_work.c.vm_id).where(
        ha_work.c.vm_id.in_(vm_ids), ha_work.c.state.in_(OPEN))))


def _insert(conn: Connection, vm_id: int, host_id: int | None, kind: str, reason: str, now: datetime) -> None:
    conn.execute(ha_work.insert().values(
        vm_id=vm_id, host_id=host_id, kind=kind, reason=reason[:255], state=PENDING, attempts=0,
        next_attempt=now, last_error="", created=now, updated=now,
    ))


def enqueue_host(conn: Connection, host_id: int, now: datetime) -> tuple[int, int]:
    """Work for every VM on a host that went Down: HA VMs restart, others stop. (restarts, stops).
    A new incident: the host must be fenced again before any of it runs elsewhere."""
    clear_fenced(conn, host_id)
    host = conn.execute(sa.select(hosts).where(hosts.c.id == host_id)).first()
    rows = conn.execute(sa.select(vms.c.id, vms.c.ha_enabled).where(
        vms.c.host_id == host_id, vms.c.removed.is_(None), vms.c.state.in_(list(LIVE)))).all()
    taken = _open_for(conn, [r.id for r in rows])
    restarts = stops = 0
    for vm_id, ha_enabled in rows:
        if vm_id in taken:
            continue
        kind = RESTART if ha_enabled else STOP
        _insert(conn, vm_id, host_id, kind, f"host {host.name if host else host_id} is down", now)
        restarts, stops = (restarts + 1, stops) if kind == RESTART else (restarts, stops + 1)
    if host is not None:
        raise_alert(conn, HOST, f"Host {host.name} ({host.private_ip or host.guid}) is down: "
                    f"{restarts} HA VM(s) to restart, {stops} other VM(s) to stop",
                    zone_id=host.zone_id, pod_id=host.pod_id, cluster_id=host.cluster_id, now=now)
    return restarts, stops


def enqueue_vm(conn: Connection, vm_id: int, reason: str, now: datetime, *,
               host_id: int | None = None) -> bool:
    """A restart for one HA VM (powered off behind the server's back); False when one is open."""
    if _open_for(conn, [vm_id]):
        return False
    _insert(conn, vm_id, host_id, RESTART, reason, now)
    return True


def due(conn: Connection, now: datetime, limit: int) -> list[sa.Row[Any]]:
    return list(conn.execute(
        sa.select(ha_work).where(ha_work.c.state == PENDING, ha_work.c.next_attempt <= now)
        .order_by(ha_work.c.next_attempt, ha_work.c.id).limit(limit)))


def next_due(conn: Connection) -> datetime | None:
    found: datetime | None = conn.scalar(
        sa.select(sa.func.min(ha_work.c.next_attempt)).where(ha_work.c.state == PENDING))
    return found


def claim(conn: Connection, item_id: int, msid: int, now: datetime) -> bool:
    return conn.execute(ha_work.update().where(ha_work.c.id == item_id, ha_work.c.state == PENDING)
                        .values(state=RUNNING, msid=msid, updated=now)).rowcount == 1


def finish(conn: Connection, item_id: int, state: str, error: str, now: datetime, *,
           attempts: int | None = None) -> None:
    more = {} if attempts is None else {"attempts": attempts}
    conn.execute(ha_work.update().where(ha_work.c.id == item_id).values(
        state=state, last_error=error[:1024], msid=None, updated=now, **more))


def retry(conn: Connection, item_id: int, attempts: int, delay: float, error: str, now: datetime) -> None:
    conn.execute(ha_work.update().where(ha_work.c.id == item_id).values(
        state=PENDING, attempts=attempts, next_attempt=now + timedelta(seconds=delay), msid=None,
        last_error=error[:1024], updated=now))


def release_after_restart(conn: Connection, msid: int) -> int:
    """Items this server was working when it stopped go back to Pending; how many."""
    return conn.execute(ha_work.update().where(ha_work.c.state == RUNNING, ha_work.c.msid == msid)
                        .values(state=PENDING, msid=None)).rowcount


def host_state(conn: Connection, host_id: int) -> tuple[str, datetime | None] | None:
    """(status, fenced) of the host, or None when it is gone."""
    row = conn.execute(sa.select(hosts.c.status, hosts.c.fenced).where(hosts.c.id == host_id)).first()
    return None if row is None else (row.status, row.fenced)


def unreachable_hosts(conn: Connection, /, before: datetime, msid: int | None = None) -> list[int]:
    """Hosts in Alert or Disconnected since before ``before`` (a previous run of a server left them so,
    or they never came back): investigated, so that a host that died meanwhile goes Down. With
    ``msid``, those that server holds (several servers: each looks after its own and those of the
    dead servers it took over)."""
    return list(conn.scalars(sa.select(hosts.c.id).where(
        hosts.c.removed.is_(None), hosts.c.status.in_(("Alert", "Disconnected")),
        hosts.c.status_changed < before,
        sa.or_(hosts.c.mgmt_server_id == msid, hosts.c.mgmt_server_id.is_(None)) if msid is not None
        else sa.true())))


def host_facts(conn: Connection, /, host_id: int) -> tuple[str, int, int, str] | None:
    """(guid, cluster id, zone id, private IP) of the host, or None when it is gone."""
    row = conn.execute(sa.select(hosts.c.guid, hosts.c.cluster_id, hosts.c.zone_id, hosts.c.private_ip)
                       .where(hosts.c.id == host_id)).first()
    return None if row is None else (row.guid, row.cluster_id, row.zone_id, row.private_ip)


def mark_fenced(conn: Connection, host_id: int, now: datetime) -> None:
    conn.execute(hosts.update().where(hosts.c.id == host_id).values(fenced=now))


def clear_fenced(conn: Connection, host_id: int) -> None:
    conn.execute(hosts.update().where(hosts.c.id == host_id, hosts.c.fenced.is_not(None)).values(fenced=None))


def stop_on_dead_host(conn: Connection, vm_id: int, host_id: int | None) -> bool:
    """The VM no longer runs where it ran (its host is fenced, or it reported it off): Stopped, its
    compute on that host given back. False when it is not (any more) in a state that says it runs
    there (a user stopped or destroyed it meanwhile)."""
    row = conn.execute(sa.select(vms.c.state, vms.c.host_id)
                       .where(vms.c.id == vm_id, vms.c.removed.is_(None))).first()
    if row is None or row.state not in LIVE:
        return False
    if host_id is not None and row.host_id != host_id:
        return False
    if row.state == State.MIGRATING:
        capacity.finish_migration(conn, vm_id, False)
    capacity.release_compute(conn, vm_id)
    event = Event.OPERATION_SUCCEEDED if row.state == State.STOPPING else Event.AGENT_REPORT_STOPPED
    vm_rows.transition(conn, vm_id, event, host_id=None, last_host_id=row.host_id, power_state="PowerOff")
    return True


def vm_uuid(conn: Connection, /, vm_id: int) -> str | None:
    found: str | None = conn.scalar(sa.select(vms.c.uuid).where(vms.c.id == vm_id))
    return found


def vm_state(conn: Connection, /, vm_id: int) -> tuple[str, int | None, bool] | None:
    """(state, host, HA enabled) of the live VM, or None when it was expunged."""
    row = conn.execute(sa.select(vms.c.state, vms.c.host_id, vms.c.ha_enabled)
                       .where(vms.c.id == vm_id, vms.c.removed.is_(None))).first()
    return None if row is None else (row.state, row.host_id, bool(row.ha_enabled))
