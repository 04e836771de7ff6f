"""VM power reports from pings, applied to the ``vms`` table in batches and only when they changed.

The agent manager keeps each host's last report in memory and queues a host only when its report
differs; a flusher writes every queued report in one transaction. A VM named in a report gets that
power state; a VM this host runs (``vms.host_id``) that its report no longer names is PowerOff. Rows
already in the reported state are not written. VM *state* transitions (Running -> Stopped when a VM
was powered off behind the server's back) belong to orchestration, which reads these power states.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from protocol.messages import PowerState

from ..db.schema import vms
from .registry import now

CHUNK = 500  # ids in one IN list (SQLite's variable limit is far above, and stays so)


def apply_reports(conn: Connection, reports: Mapping[int, Mapping[str, PowerState]],
                  taken: Mapping[int, datetime] | None = None) -> int:
    """Write the power states of ``{host_id: {instance name: state}}``; returns the rows changed.

    A host speaks only for the VMs the database places there: those whose ``host_id`` is that host, or,
    for a VM no host runs, whose last host it was. A name it reports that belongs to a VM elsewhere (or
    to nobody) changes nothing. ``taken``: when each report arrived; a VM whose power state was written
    after that (a start that settled while the report waited to be written) is not changed by it.
    Statements are bounded whatever the reports' sizes.
    """
    stamp = now()
    taken = taken or {}
    here: sa.BindParameter[int] = sa.bindparam("b_host")
    named = [{"b_host": host_id, "b_name": name, "b_power": str(state), "b_stamp": stamp,
              "b_taken": taken.get(host_id, stamp)}
             for host_id, report in reports.items() for name, state in report.items()]
    changed = 0
    if named:
        update = (vms.update()
                  .where(vms.c.instance_name == sa.bindparam("b_name"), vms.c.removed.is_(None),
                         sa.or_(vms.c.host_id == here,
                                vms.c.host_id.is_(None) & (vms.c.last_host_id == here)),
                         vms.c.power_state != sa.bindparam("b_power"),
                         sa.or_(vms.c.power_state_updated.is_(None),
                                vms.c.power_state_updated <= sa.bindparam("b_taken")))
                  .values(power_state=sa.bindparam("b_power"), power_state_updated=sa.bindparam("b_stamp")))
        changed += conn.execute(update, named).rowcount
    off = str(PowerState.OFF)
    for host_id, report in reports.items():
        rows = conn.execute(sa.select(vms.c.id, vms.c.instance_name).where(
            vms.c.host_id == host_id, vms.c.removed.is_(None), vms.c.power_state != off,
            sa.or_(vms.c.power_state_updated.is_(None),
                   vms.c.power_state_updated <= taken.get(host_id, stamp)))).all()
        gone = [r.id for r in rows if r.instance_name not in report]
        for i in range(0, len(gone), CHUNK):
            changed += conn.execute(vms.update().where(vms.c.id.in_(gone[i:i + CHUNK]))
                                    .values(power_state=off, power_state_updated=stamp)).rowcount
    return changed
