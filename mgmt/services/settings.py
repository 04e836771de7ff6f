"""The cloud's settings as operators change them (CloudStack's names, kinds and defaults: see
``mgmt/settings.py``); a change applies when the management server restarts."""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..db.schema import configuration
from ..errors import InvalidParameter
from ..settings import KIND_NAMES, SETTINGS
from .crud import Filters, Row
from .queries import fetch, keyword, matching

if TYPE_CHECKING:
    from ..db.database import Database


def _list(conn: Connection, args: Filters) -> tuple[list[Row], int]:
    where = [*keyword(configuration.c.name, args)]
    where += matching(args, {"name": configuration.c.name, "category": configuration.c.category})
    return fetch(conn, sa.select(configuration).where(*where), configuration.c.name, args)


def _update(conn: Connection, name: str, value: str | None) -> Row:
    conn.execute(configuration.update().where(configuration.c.name == name).values(value=value))
    return conn.execute(sa.select(configuration).where(configuration.c.name == name)).one()


class Settings:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def matching(self, args: Filters) -> tuple[list[Row], int]:
        return await self.db.read(_list, args)

    async def update(self, name: str, value: str | None) -> Row:
        """Set a setting (checked against its kind); None resets it to its default. Its row."""
        setting = SETTINGS.get(name)
        if setting is None:
            raise InvalidParameter(f"there is no setting named {name!r} (see listConfigurations)")
        if value is not None:
            try:
                parsed = setting.kind(value)
            except ValueError:
                kind = KIND_NAMES.get(setting.kind, "text")
                raise InvalidParameter(f"{setting.name} must be {kind}, not {value[:64]!r}") from None
            if isinstance(parsed, int | float) and not isinstance(parsed, bool) and parsed < 0:
                raise InvalidParameter(f"{setting.name} must not be negative")
        return await self.db.run(_update, setting.name, value)
