"""Async jobs as callers see them: one by uuid (waiting a little for one that is about to end), and the
caller's jobs, newest first, each with the uuid of what it worked on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import trio
from sqlalchemy.engine import Connection

from ..db.schema import accounts, async_jobs, hosts, networks, users, vms, volumes
from ..errors import PermissionDenied
from .caller import Caller
from .crud import Filters, Row
from .queries import fetch, owner_filter

if TYPE_CHECKING:
    from ..db.database import Database
    from ..jobs.runner import JobRunner

INSTANCES = {"VirtualMachine": vms, "Volume": volumes, "Host": hosts, "Network": networks}


@dataclass(frozen=True)
class Job:
    """A job's row (with its account's and user's uuids) and the uuid of its instance, if it has one."""

    row: Row
    instance_uuid: str | None


def _query() -> sa.Select[Any]:
    return (
        sa.select(async_jobs, accounts.c.uuid.label("account_uuid"), users.c.uuid.label("user_uuid"))
        .outerjoin(accounts, accounts.c.id == async_jobs.c.account_id)
        .outerjoin(users, users.c.id == async_jobs.c.user_id)
    )


def _with_instances(conn: Connection, rows: list[Row]) -> list[Job]:
    wanted: dict[str, set[int]] = {}
    for r in rows:
        if r.instance_type in INSTANCES and r.instance_id:
            wanted.setdefault(r.instance_type, set()).add(r.instance_id)
    found: dict[tuple[str, int], str] = {}
    for kind, ids in wanted.items():
        table = INSTANCES[kind]
        for row_id, ident in conn.execute(sa.select(table.c.id, table.c.uuid).where(table.c.id.in_(ids))):
            found[(kind, row_id)] = ident
    return [Job(r, found.get((r.instance_type, r.instance_id))) for r in rows]


def _one(conn: Connection, caller: Caller, job_uuid: str) -> Job:
    row = conn.execute(_query().where(async_jobs.c.uuid == job_uuid)).first()
    if row is None or (not caller.is_admin and row.account_id != caller.account_id):
        raise PermissionDenied(f"unable to find or access job {job_uuid}")
    return _with_instances(conn, [row])[0]


def _list(conn: Connection, caller: Caller, args: Filters, since: datetime | None) -> tuple[list[Job], int]:
    where = owner_filter(conn, caller, args, async_jobs.c.account_id)
    if since is not None:
        where.append(async_jobs.c.created >= since)
    rows, total = fetch(conn, _query().where(*where), async_jobs.c.id.desc(), args)
    return _with_instances(conn, rows), total


class AsyncJobs:
    def __init__(self, db: Database, runner: JobRunner) -> None:
        self.db, self.runner = db, runner

    async def find(self, caller: Caller, job_uuid: str) -> Job:
        """The job, when the caller may see it (another account's is like a missing one)."""
        return await self.db.read(_one, caller, job_uuid)

    async def matching(self, caller: Caller, args: Filters,
                       since: datetime | None = None) -> tuple[list[Job], int]:
        """One page of the caller's jobs (created since ``since``), newest first, and the total."""
        return await self.db.read(_list, caller, args, since)

    async def wait_briefly(self, job_id: int, seconds: float) -> None:
        """Return when the job (running here) ends, or after ``seconds``."""
        done = self.runner.done.get(job_id)
        if done is not None:
            with trio.move_on_after(seconds):
                await done.wait()
