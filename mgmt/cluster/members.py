"""The management servers' rows, and what happens to a server's work when it dies.

A server writes its heartbeat (the database's clock, so that the servers' clocks do not matter) every
``cluster.heartbeat.interval``. A peer whose heartbeat is older than ``cluster.heartbeat.threshold`` is
declared down by whichever server's conditional update gets there first (``state = 'Up'`` and the old
heartbeat in the WHERE clause); that server settles what the dead one left in the same transaction
(``settle``): its pending jobs fail, the VMs they were moving are settled as after a crash, its HA work is
pending again, and its hosts are released (Disconnected, held by the taker until their agents come back
elsewhere). A server that finds itself declared down stops (its work was settled by another).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..agents import registry
from ..db.schema import ha_work, management_servers
from ..ha import work as ha
from ..jobs import runner as jobs
from ..orchestration import reconcile

M = management_servers


@dataclass(frozen=True)
class Member:
    msid: int
    name: str
    address: str
    agent_port: int
    peer_port: int
    version: str
    schema_revision: str
    state: str
    last_heartbeat: datetime
    fresh: bool  # its heartbeat is within the threshold (by the database's clock)
    age: float = 0.0  # seconds since its heartbeat, when read


def db_now(conn: Connection) -> datetime:
    value = conn.scalar(sa.select(sa.func.now()))
    if isinstance(value, str):  # SQLite's CURRENT_TIMESTAMP
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value


def _aware(stamp: datetime, like: datetime) -> datetime:
    """``stamp`` comparable with ``like`` (SQLite's stamps have no offset; they are UTC)."""
    if stamp.tzinfo is None and like.tzinfo is not None:
        return stamp.replace(tzinfo=UTC).astimezone(like.tzinfo)
    if stamp.tzinfo is not None and like.tzinfo is None:
        return stamp.astimezone(UTC).replace(tzinfo=None)
    return stamp


def members(conn: Connection, threshold: float) -> list[Member]:
    """Every server's row, with whether its heartbeat is fresh."""
    now = db_now(conn)
    out = []
    for r in conn.execute(sa.select(M)):
        beat = _aware(r.last_heartbeat, now)
        age = (now - beat).total_seconds()
        fresh = r.state == "Up" and r.agent_port > 0 and age < threshold
        out.append(Member(r.msid, r.name, r.address, r.agent_port, r.peer_port, r.version, r.schema_revision,
                          r.state, beat, fresh, age))
    return out


def live_peers(conn: Connection, msid: int, threshold: float) -> list[Member]:
    return [m for m in members(conn, threshold) if m.fresh and m.msid != msid]


def register(conn: Connection, msid: int, row: dict[str, Any], *, state: str = "Up") -> None:
    """This server's row at start-up, with a fresh heartbeat."""
    now = sa.func.now()
    values = {**row, "state": state, "last_heartbeat": now, "started": now, "down_since": None,
              "taken_over_by": None}
    if conn.execute(M.update().where(M.c.msid == msid).values(**values)).rowcount == 0:
        conn.execute(M.insert().values(msid=msid, **values))


def started(conn: Connection, msid: int, agent_port: int, peer_port: int) -> None:
    """The server's ports are open: it is Up for its peers (agents are given it, commands forwarded)."""
    conn.execute(M.update().where(M.c.msid == msid).values(agent_port=agent_port, peer_port=peer_port,
                                                           state="Up", last_heartbeat=sa.func.now()))


def stopped(conn: Connection, msid: int) -> None:
    conn.execute(M.update().where(M.c.msid == msid).values(state="Down", down_since=sa.func.now()))


def heartbeat(conn: Connection, msid: int) -> str:
    """Write this server's heartbeat; "" or, when peers declared it down, which one did."""
    row = conn.execute(sa.select(M.c.state, M.c.taken_over_by).where(M.c.msid == msid)).first()
    if row is not None and row.state == "Down" and row.taken_over_by is not None:
        return f"management server {row.taken_over_by} declared this one down and took its work over"
    conn.execute(M.update().where(M.c.msid == msid).values(last_heartbeat=sa.func.now(), state="Up"))
    return ""


def declare_down(conn: Connection, dead: int, me: int, threshold: float) -> dict[str, int] | None:
    """Declare ``dead`` down if its heartbeat is still stale and nobody did it first; then settle its
    work (``settle``). What was settled, or None when another server won or it came back."""
    now = db_now(conn)
    cutoff = now - timedelta(seconds=threshold)
    won = conn.execute(M.update().where(M.c.msid == dead, M.c.state == "Up", M.c.last_heartbeat < cutoff)
                       .values(state="Down", down_since=sa.func.now(), taken_over_by=me)).rowcount == 1
    if not won:
        return None
    return settle(conn, dead, alone=False, to=me)


def settle(conn: Connection, msid: int, *, alone: bool, to: int | None = None) -> dict[str, int]:
    """What server ``msid`` left when it stopped without finishing: its pending jobs fail, the VMs
    they (and its HA work) were moving are settled as after a crash, its HA work is pending again, its
    hosts are released (to ``to`` when a peer takes them over). ``alone``: no other server runs (at a
    single server's start-up): every VM left in the middle of an operation is settled, and jobs of no
    server too."""
    released = registry.release_hosts(conn, msid, to=to)
    orphans = jobs.fail_orphans(conn, msid, unowned=alone)
    ha_vms = set(conn.scalars(sa.select(ha_work.c.vm_id).where(ha_work.c.state == ha.RUNNING,
                                                                ha_work.c.msid == msid)))
    resumed = ha.release_after_restart(conn, msid)
    deploys = {j.instance_id for j in orphans if j.command == "deployVirtualMachine" and j.instance_id}
    scope: Collection[int] | None = None
    if not alone:
        scope = {j.instance_id for j in orphans if j.instance_type == "VirtualMachine" and j.instance_id}
        scope |= ha_vms
    settled = reconcile.after_restart(conn, deploys, only=scope)
    return {"hosts": released, "jobs": len(orphans), "ha_items": resumed, **settled}
