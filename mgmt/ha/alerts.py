"""Alerts for operators (``listAlerts``): a row per event that needs a person, with CloudStack's alert
type numbers and names."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.engine import Connection

from ..db.schema import alerts

# CloudStack's alert types (the numbers its clients filter on) and their names
MEMORY, CPU, STORAGE, STORAGE_ALLOCATED, HOST, USERVM = 0, 1, 2, 3, 7, 8
NAMES = {
    MEMORY: "ALERT.MEMORY",
    CPU: "ALERT.CPU",
    STORAGE: "ALERT.STORAGE",
    STORAGE_ALLOCATED: "ALERT.STORAGE.ALLOCATED",
    HOST: "ALERT.HOST",
    USERVM: "ALERT.USERVM",
}


def raise_alert(conn: Connection, type_: int, description: str, *, now: datetime, zone_id: int | None = None,
                pod_id: int | None = None, cluster_id: int | None = None) -> None:
    conn.execute(alerts.insert().values(
        uuid=str(uuid.uuid4()), type=type_, name=NAMES.get(type_, f"ALERT.{type_}"),
        description=description[:1024], zone_id=zone_id, pod_id=pod_id, cluster_id=cluster_id,
        archived=False, created=now,
    ))
