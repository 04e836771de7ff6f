"""Async jobs: queryAsyncJobResult (what clients poll) and listAsyncJobs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa
import trio
from sqlalchemy.engine import Connection

from ...db.schema import accounts, async_jobs, hosts, networks, users, vms, volumes
from ...errors import InvalidParameter, PermissionDenied
from ...jobs.runner import PENDING
from ..registry import Param, command
from ..signing import parse_expires
from .common import OWNER, PAGING, date, fetch, listing, owner_filter

if TYPE_CHECKING:
    from ..app import Context

INSTANCES = {"VirtualMachine": vms, "Volume": volumes, "Host": hosts, "Network": networks}
LONG_POLL = 0.2  # seconds a query about a running job waits for it to end


def _query() -> sa.Select[Any]:
    return (
        sa.select(async_jobs, accounts.c.uuid.label("account_uuid"), users.c.uuid.label("user_uuid"))
        .outerjoin(accounts, accounts.c.id == async_jobs.c.account_id)
        .outerjoin(users, users.c.id == async_jobs.c.user_id)
    )


def _instance_uuids(conn: Connection, rows: list[Any]) -> dict[tuple[str, int], str]:
    wanted: dict[str, set[int]] = {}
    for r in rows:
        if r.instance_type in INSTANCES and r.instance_id:
            wanted.setdefault(r.instance_type, set()).add(r.instance_id)
    found = {}
    for kind, ids in wanted.items():
        table = INSTANCES[kind]
        for row_id, ident in conn.execute(sa.select(table.c.id, table.c.uuid).where(table.c.id.in_(ids))):
            found[(kind, row_id)] = ident
    return found


def job_view(r: Any, instance_uuid: str | None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "jobid": r.uuid,
        "accountid": r.account_uuid,
        "userid": r.user_uuid,
        "cmd": r.command,
        "created": date(r.created),
        "jobstatus": r.status,
        "jobprocstatus": r.process_status,
        "jobresultcode": r.result_code,
    }
    if r.instance_type:
        view["jobinstancetype"] = r.instance_type
    if instance_uuid:
        view["jobinstanceid"] = instance_uuid
    if r.status != PENDING:
        view["jobresulttype"] = "object"
        view["jobresult"] = orjson.loads(r.result) if r.result else {}
        view["completed"] = date(r.completed)
    return view


def _one(conn: Connection, caller: Any, job_uuid: str) -> dict[str, Any]:
    row = conn.execute(_query().where(async_jobs.c.uuid == job_uuid)).first()
    if row is None or (not caller.is_admin and row.account_id != caller.account_id):
        raise PermissionDenied(f"unable to find or access job {job_uuid}")
    return job_view(row, _instance_uuids(conn, [row]).get((row.instance_type, row.instance_id)))


@command(
    "queryAsyncJobResult",
    "The state of an async job and, once it ended, its result (jobstatus 0 pending, 1 succeeded, 2 failed).",
    Param("jobid", "uuid", required=True, description="the job's id"),
)
async def query_async_job_result(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    jobid = args["jobid"]
    running = ctx.api.pending_jobs.get(jobid)
    if running is not None and (ctx.caller.is_admin or running["_account"] == ctx.caller.account_id):
        # A long poll: a job that ends within LONG_POLL seconds is answered with its result, so that a
        # client polling every few milliseconds makes a few requests per job, not hundreds.
        done = ctx.services.jobs.done.get(running.get("_job_id", 0))
        if done is not None:
            with trio.move_on_after(LONG_POLL):
                await done.wait()
        if jobid in ctx.api.pending_jobs:
            return {k: v for k, v in running.items() if not k.startswith("_")}
    ended = ctx.api.ended_jobs.get(jobid)  # ended here lately: as its row says, without reading it
    if ended is not None and (ctx.caller.is_admin or ended["_account"] == ctx.caller.account_id):
        return {k: v for k, v in ended.items() if not k.startswith("_")}
    result: dict[str, Any] = await ctx.read(_one, ctx.caller, jobid)
    return result


def _list(conn: Connection, caller: Any, args: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    where = owner_filter(conn, caller, args, async_jobs.c.account_id)
    if "startdate" in args:
        try:
            where.append(async_jobs.c.created >= parse_expires(args["startdate"]))
        except ValueError:
            raise InvalidParameter("startdate must be a date like 2026-01-01T00:00:00+0000") from None
    rows, total = fetch(conn, _query().where(*where), async_jobs.c.id.desc(), args)
    uuids = _instance_uuids(conn, rows)
    return [job_view(r, uuids.get((r.instance_type, r.instance_id))) for r in rows], total


@command(
    "listAsyncJobs",
    "Lists async jobs, newest first: the caller's own (admins: every account's with listall=true).",
    Param("startdate", description="jobs created since (2026-01-01T00:00:00+0000)"),
    *OWNER,
    *PAGING,
    response="asyncjobs",
)
async def list_async_jobs(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    items, total = await ctx.read(_list, ctx.caller, args)
    return listing("asyncjobs", items, total)
