"""Alerts as operators list and clear them: listAlerts, archiveAlerts (kept, hidden from lists),
deleteAlerts (gone). What raises them: HA (``mgmt/ha/``) and the capacity checker."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..db.schema import alerts
from ..errors import InvalidParameter
from .crud import Filters, Row
from .queries import fetch, keyword, matching

if TYPE_CHECKING:
    from ..db.database import Database


def _list(conn: Connection, args: Filters) -> tuple[list[Row], int]:
    where = [alerts.c.archived.is_(False), *keyword(alerts.c.description, args)]
    where += matching(args, {"id": alerts.c.uuid, "name": alerts.c.name})
    if "type" in args:
        where.append(alerts.c.type == _type(args["type"]))
    return fetch(conn, sa.select(alerts).where(*where), alerts.c.id.desc(), args)


def _type(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InvalidParameter(f"type must be an alert type number, not {str(value)[:32]!r}") from None


def _chosen(ids: list[str], type_: str | None, since: datetime | None, until: datetime | None) -> list[Any]:
    if not ids and type_ is None and since is None and until is None:
        raise InvalidParameter("give ids, type, startdate or enddate: which alerts")
    where: list[Any] = []
    if ids:
        where.append(alerts.c.uuid.in_(ids))
    if type_ is not None:
        where.append(alerts.c.type == _type(type_))
    if since is not None:
        where.append(alerts.c.created >= since)
    if until is not None:
        where.append(alerts.c.created <= until)
    return where


def _archive(conn: Connection, where: list[Any]) -> int:
    live = alerts.c.archived.is_(False)
    return conn.execute(alerts.update().where(*where, live).values(archived=True)).rowcount


def _delete(conn: Connection, where: list[Any]) -> int:
    return conn.execute(alerts.delete().where(*where)).rowcount


class Alerts:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def matching(self, args: Filters) -> tuple[list[Row], int]:
        """One page of the alerts not archived, newest first, and the total."""
        return await self.db.read(_list, args)

    async def archive(self, ids: list[str], type_: str | None = None, since: datetime | None = None,
                      until: datetime | None = None) -> int:
        return await self.db.run(_archive, _chosen(ids, type_, since, until))

    async def delete(self, ids: list[str], type_: str | None = None, since: datetime | None = None,
                     until: datetime | None = None) -> int:
        return await self.db.run(_delete, _chosen(ids, type_, since, until))
