"""VM power reports from pings, applied to the ``vms`` table in batches and only when they changed.

The agent manager keeps each host's last report in memory and queues a host only when its report
differs; a flusher writes every queued report in one transaction. A VM named in a report gets that
power state; a VM this host runs (``vms.host_id``) that its report no longer names is PowerOff. Rows
already in the reported state are not written. VM *state* transitions (Running -> Stopped when a VM
was powered off behind the server's back) belong to orchestration, which reads these power states.
"""

from __future__ import annotations

from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from protocol.messages import PowerState

from ..db.schema import vms
from .registry import now


def apply_reports(conn: Connection, reports: Mapping[int, Mapping[str, PowerState]]) -> int:
    """Write the power states of ``{host_id: {instance name: state}}``; returns the rows changed."""
    stamp = now()
    named = [{"b_name": name, "b_power": str(state), "b_stamp": stamp}
             for report in reports.values() for name, state in report.items()]
    changed = 0
    if named:
        update = (vms.update()
                  .where(vms.c.instance_name == sa.bindparam("b_name"), vms.c.removed.is_(None),
                         vms.c.power_state != sa.bindparam("b_power"))
                  .values(power_state=sa.bindparam("b_power"), power_state_updated=sa.bindparam("b_stamp")))
        changed += conn.execute(update, named).rowcount
    for host_id, report in reports.items():
        missing = conn.execute(
            vms.update()
            .where(vms.c.host_id == host_id, vms.c.removed.is_(None),
                   vms.c.instance_name.not_in(list(report)), vms.c.power_state != str(PowerState.OFF))
            .values(power_state=str(PowerState.OFF), power_state_updated=stamp))
        changed += missing.rowcount
    return changed
