"""The management servers as operators list them (``listManagementServers``)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..cluster import members
from ..db.database import Database
from ..db.schema import management_servers

_NAMESPACE = uuid.UUID("5c1f3d0e-8a47-4b9e-9f4e-2d6a1c7b3e90")


def server_uuid(msid: int) -> str:
    """A server's id in the API: made from its msid, the same on every server and every run."""
    return str(uuid.uuid5(_NAMESPACE, str(msid)))


@dataclass(frozen=True)
class ManagementServer:
    uuid: str
    msid: int
    name: str
    address: str
    state: str  # Up (heartbeat fresh), Starting, or Down (stopped, declared down, or silent)
    version: str
    started: datetime
    stopped: datetime | None


def _list(conn: Connection, threshold: float) -> list[ManagementServer]:
    M = management_servers
    times = {r.msid: (r.started, r.down_since) for r in conn.execute(sa.select(M.c.msid, M.c.started,
                                                                               M.c.down_since))}
    out = []
    for m in members.members(conn, threshold):
        state = "Up" if m.fresh else ("Starting" if m.state == "Starting" else "Down")
        started, stopped = times[m.msid]
        out.append(ManagementServer(server_uuid(m.msid), m.msid, m.name, m.address, state, m.version,
                                    started, stopped))
    return sorted(out, key=lambda s: s.msid)


class ManagementServers:
    def __init__(self, db: Database, threshold: float) -> None:
        self.db = db
        self.threshold = threshold

    async def list(self) -> list[ManagementServer]:
        return await self.db.read(_list, self.threshold)
