"""Making the database agree with the hosts: after a crash, and continuously from power reports.

``after_restart`` (at start-up, after the orphaned jobs are failed): a VM left Starting by its deploy
ends as a failed deploy does, in Error with its compute, addresses and storage released (its last
host recorded, so that the expunge task cleans up there if the start got through); any other VM left
Starting is Stopped with its compute released (a volume left half-made is made again at the next
start, under the same uuid); Stopping goes back to Running, holding its capacity until a power report
says otherwise; Migrating is settled as failed (Running on the source, the destination's share released);
Expunging stays for the expunge task.

``power_off_followers`` lists Running VMs whose host, Up and reporting, has reported them off for 1.5
ping intervals (so a report taken before a start, read after it, says nothing), not held by a job:
they become Stopped (and HA VMs start again). ``stray`` lists Stopped VMs a host reports running:
they are adopted there (CloudStack's FollowAgentPowerOnReport) when the host has room, else stopped
on that host. ``misplaced`` lists VMs a host reports running that belong on another host: that copy
is stopped.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from protocol.messages import PowerState

from ..db.schema import async_jobs, ha_work, hosts, vms
from ..network import nics
from ..planner import capacity
from . import vms as vm_rows
from .vm_state import Event, State
from .vms import now


def after_restart(conn: Connection, deploys: Collection[int] = (), *,
                  only: Collection[int] | None = None) -> dict[str, int]:
    """Settle the VMs a stopped server left in the middle of an operation; counts by what was done.
    ``deploys``: the VMs whose deploy job the stop interrupted. ``only``: settle those VMs alone (other
    servers run, and the VMs they are moving are theirs); None: every VM left so."""
    pending = sa.select(async_jobs.c.instance_id).where(
        async_jobs.c.status == 0, async_jobs.c.instance_type == "VirtualMachine"
    )
    rows = conn.execute(
        sa.select(vms.c.id, vms.c.state).where(
            vms.c.removed.is_(None),
            vms.c.state.in_([State.STARTING, State.STOPPING, State.MIGRATING]),
            vms.c.id.not_in(pending),
            vms.c.id.in_(list(only)) if only is not None else sa.true(),
        )
    ).all()
    counts = {"starting": 0, "stopping": 0, "migrating": 0, "deploys": 0}
    for vm_id, state in rows:
        if state == State.STARTING and vm_id in deploys:
            tried = conn.scalar(sa.select(capacity.R.c.host_id).where(capacity.R.c.vm_id == vm_id))
            capacity.release_storage(conn, vm_id)
            nics.release(conn, vm_id)
            values = {"host_id": None} if tried is None else {"host_id": None, "last_host_id": tried}
            vm_rows.transition(conn, vm_id, Event.OPERATION_FAILED_TO_ERROR, **values)
            counts["deploys"] += 1
        elif state == State.STARTING:
            capacity.release_compute(conn, vm_id)
            vm_rows.transition(conn, vm_id, Event.OPERATION_FAILED, host_id=None)
            counts["starting"] += 1
        elif state == State.STOPPING:
            vm_rows.transition(conn, vm_id, Event.OPERATION_FAILED)
            counts["stopping"] += 1
        else:
            capacity.finish_migration(conn, vm_id, False)
            vm_rows.transition(conn, vm_id, Event.OPERATION_FAILED)
            counts["migrating"] += 1
    return counts


_HA_OPEN = sa.select(ha_work.c.vm_id).where(ha_work.c.state.in_(("Pending", "Running")))
# VMs a pending job of any management server is working on (``busy`` lists this server's, without a read)
_JOB_OPEN = sa.select(async_jobs.c.instance_id).where(async_jobs.c.status == 0,
                                                      async_jobs.c.instance_type == "VirtualMachine",
                                                      async_jobs.c.instance_id.is_not(None))


def power_off_followers(conn: Connection, ping_interval: float, busy: Collection[int],
                        holder: int | None = None) -> list[int]:
    """Running VMs their host has reported off for 1.5 ping intervals, no job holding them; with
    ``holder``, on the hosts that server holds (several servers: each follows its own hosts' reports).

    A start writes PowerOn; a report sampled before the start but read after it can write PowerOff,
    and the next report (one interval later) puts PowerOn back. Off for longer than that is real.
    """
    settled = now() - timedelta(seconds=1.5 * ping_interval)
    rows = conn.execute(
        sa.select(vms.c.id, vms.c.power_state_updated).join(hosts, hosts.c.id == vms.c.host_id).where(
            vms.c.removed.is_(None),
            vms.c.state == State.RUNNING,
            vms.c.power_state == str(PowerState.OFF),
            # Only a host that still reports speaks: one in Alert or Down sends no report that would
            # correct a stale Off (a report sampled before a start, written after it).
            hosts.c.status == "Up",
            vms.c.id.not_in(_HA_OPEN),
            vms.c.id.not_in(_JOB_OPEN),
            hosts.c.mgmt_server_id == holder if holder is not None else sa.true(),
        )
    ).all()
    return [
        r.id
        for r in rows
        if r.id not in busy and r.power_state_updated is not None and _aware(r.power_state_updated) <= settled
    ]


def follow_power_off(conn: Connection, vm_id: int, hold_until: datetime) -> bool | None:
    """The VM was powered off behind the server's back: Stopped, its compute held on its last host.
    Whether it has HA (to start again), or None when it was not Running (nothing done)."""
    row = conn.execute(sa.select(vms.c.state, vms.c.ha_enabled).where(vms.c.id == vm_id)).first()
    if row is None or row.state != State.RUNNING:
        return None
    vm_rows.transition(conn, vm_id, Event.FOLLOW_AGENT_POWER_OFF_REPORT, host_id=None)
    capacity.hold(conn, vm_id, hold_until)
    return bool(row.ha_enabled)


def misplaced(conn: Connection, reports: Mapping[int, Mapping[str, PowerState]]) -> list[tuple[int, str]]:
    """(host id, name) of VMs a host reports running while they run, start or stop on another host
    (a host that was fenced and came back, or a start that timed out there and went elsewhere): the
    copy on the reporting host must go. Migrating VMs run on two hosts by design and are left out."""
    running = [(host, name) for host, report in reports.items() for name, s in report.items()
               if s is PowerState.ON]
    if not running:
        return []
    names = list({name for _, name in running})
    placed = {r.instance_name: r.host_id for i in range(0, len(names), 500) for r in conn.execute(
        sa.select(vms.c.instance_name, vms.c.host_id).where(
            vms.c.removed.is_(None), vms.c.instance_name.in_(names[i:i + 500]),
            vms.c.state.in_([State.RUNNING, State.STARTING, State.STOPPING]), vms.c.host_id.is_not(None)))}
    return [(host, name) for host, name in running if name in placed and placed[name] != host]


def stray(
    conn: Connection, reports: Mapping[int, Mapping[str, PowerState]], busy: Collection[int]
) -> list[Any]:
    """Stopped VMs that their last host reports running: (vm id, host id, name) each. A report from any
    other host about a VM is not evidence about it (a host speaks for the VMs placed there)."""
    running = {
        name: host for host, report in reports.items() for name, s in report.items() if s is PowerState.ON
    }
    if not running:
        return []
    names = list(running)
    rows = [row for i in range(0, len(names), 500) for row in conn.execute(
        sa.select(vms.c.id, vms.c.instance_name, vms.c.last_host_id).where(
            vms.c.removed.is_(None), vms.c.state == State.STOPPED, vms.c.instance_name.in_(names[i:i + 500]),
            vms.c.id.not_in(_HA_OPEN),  # HA handles it (its host was fenced): not adopted back there
            vms.c.id.not_in(_JOB_OPEN),
        )
    )]
    return [(r.id, running[r.instance_name], r.instance_name) for r in rows
            if r.id not in busy and r.last_host_id == running[r.instance_name]]


def adopt(conn: Connection, vm_id: int, host_id: int, limits: capacity.Limits) -> None:
    """A Stopped VM found running on a host: Running there, its compute reserved (or ReservationLost)."""
    vm = vm_rows.load(conn, vm_id)
    ask = capacity.Ask(
        vm_id,
        host_id,
        vm.offering.cpus * vm.offering.cpu_speed_mhz,
        vm.offering.cpus,
        vm.offering.memory_mb * 2**20,
        anti_affinity_groups=vm.anti_affinity_groups,
    )
    capacity.reserve(conn, ask, limits, now())
    vm_rows.transition(
        conn,
        vm_id,
        Event.FOLLOW_AGENT_POWER_ON_REPORT,
        host_id=host_id,
        last_host_id=host_id,
        power_state=str(PowerState.ON),
    )


def _aware(stamp: datetime) -> datetime:
    """SQLite hands back naive datetimes (stored in UTC); compare them as UTC."""
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)
