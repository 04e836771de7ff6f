"""Async jobs as callers see them: one by uuid (waiting a little for one that is about to end), and the
caller's jobs, newest first, each with the uuid of what it worked on."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import trio
from sqlalchemy.engine import Connection

from ..db.schema import accounts, async_jobs, hosts, networks, users, vms, volumes
from ..errors import PermissionDenied
from ..jobs.runner import FAILED, PENDING, SUCCEEDED, JobOwner
from . import events
from .caller import Caller
from .crud import Filters, Row
from .queries import fetch, keyword, owner_filter, owns

if TYPE_CHECKING:
    from ..db.database import Database
    from ..jobs.runner import JobRunner

__all__ = ["FAILED", "PENDING", "SUCCEEDED", "AsyncJobs", "Job", "Prepare"]

# Makes a job's instance in the transaction that records the job (a deploy's VM): its id.
Prepare = Callable[[Connection], int]

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
    if row is None or not owns(conn, caller, row.account_id):
        raise PermissionDenied(f"unable to find or access job {job_uuid}")
    return _with_instances(conn, [row])[0]


def _list(conn: Connection, caller: Caller, args: Filters, since: datetime | None) -> tuple[list[Job], int]:
    where = owner_filter(conn, caller, args, async_jobs.c.account_id)
    if since is not None:
        where.append(async_jobs.c.created >= since)
    where += keyword(async_jobs.c.command, args)
    if "msid" in args:  # (the API's managementserverid, as the server's msid)
        where.append(async_jobs.c.mgmt_server_id == args["msid"])
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

    async def submit(
        self,
        caller: Caller,
        command: str,
        work: Callable[[], Awaitable[dict[str, Any]]],
        *,
        event: str = "",
        description: str = "",
        job_uuid: str = "",
        instance_type: str = "",
        instance_id: int = 0,
        instance_uuid: str = "",
        prepare: Prepare | None = None,
        on_ended: Callable[[int | None, dict[str, Any], datetime], None] | None = None,
    ) -> int:
        """Run ``work`` as the caller's async job (see ``JobRunner.submit`` for ``prepare`` and
        ``on_ended``); its id. With ``event``, the job's Scheduled event is written with its row and
        its Completed (or Error) event with its end: no transactions of their own."""
        resource = instance_uuid or None

        def scheduled(conn: Connection, job_id: int) -> None:
            events.insert(conn, caller, event, description, "Scheduled", instance_type, resource, job_id)

        def ended(conn: Connection, job_id: int, error: str | None) -> None:
            text = description if error is None else f"{description} failed: {error}"
            events.insert(conn, caller, event, text, "Completed" if error is None else "Error",
                          instance_type, resource, job_id)

        return await self.runner.submit(
            command, work, owner=JobOwner(account_id=caller.account_id, user_id=caller.user_id),
            instance_type=instance_type, instance_id=instance_id, job_uuid=job_uuid,
            on_insert=scheduled if event else None, on_finish=ended if event else None,
            prepare=prepare, on_ended=on_ended,
        )

    async def wait_briefly(self, job_id: int, seconds: float) -> None:
        """Return when the job (running here) ends, or after ``seconds``."""
        done = self.runner.done.get(job_id)
        if done is not None:
            with trio.move_on_after(seconds):
                await done.wait()
