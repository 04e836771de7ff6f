"""Async jobs: queryAsyncJobResult (what clients poll) and listAsyncJobs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from ...errors import InvalidParameter, PermissionDenied
from ...services.async_jobs import PENDING
from ..registry import Param, command
from ..signing import parse_expires
from .common import OWNER, PAGING, date, listing

if TYPE_CHECKING:
    from ..app import Context

LONG_POLL = 0.2  # seconds a query about a running job waits for it to end


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


@command(
    "queryAsyncJobResult",
    "The state of an async job and, once it ended, its result (jobstatus 0 pending, 1 succeeded, 2 failed).",
    Param("jobid", "uuid", required=True, description="the job's id"),
    schema="asyncjobs",
)
async def query_async_job_result(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    jobid = args["jobid"]
    running = ctx.api.pending_jobs.get(jobid)
    if running is not None and (ctx.caller.is_admin or running["_account"] == ctx.caller.account_id):
        # A long poll: a job that ends within LONG_POLL seconds is answered with its result, so that a
        # client polling every few milliseconds makes a few requests per job, not hundreds.
        await ctx.services.async_jobs.wait_briefly(running.get("_job_id", 0), LONG_POLL)
        if jobid in ctx.api.pending_jobs:
            return {k: v for k, v in running.items() if not k.startswith("_")}
    ended = ctx.api.ended_jobs.get(jobid)  # ended here lately: as its row says, without reading it
    if ended is not None and (ctx.caller.is_admin or ended["_account"] == ctx.caller.account_id):
        return {k: v for k, v in ended.items() if not k.startswith("_")}
    job = await ctx.services.async_jobs.find(ctx.caller, jobid)
    return job_view(job.row, job.instance_uuid)


@command(
    "listAsyncJobs",
    "Lists async jobs, newest first: the caller's own (admins: every account's with listall=true).",
    Param("startdate", description="jobs created since (2026-01-01T00:00:00+0000)"),
    Param("managementserverid", "uuid", description="the jobs run by this management server (admins)"),
    *OWNER,
    *PAGING,
    response="asyncjobs",
)
async def list_async_jobs(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    if "managementserverid" in args:
        if not ctx.caller.is_admin:
            raise PermissionDenied("only admins may list jobs by management server")
        servers = {s.uuid: s.msid for s in await ctx.services.management_servers.list()}
        if args["managementserverid"] not in servers:
            raise InvalidParameter(f"unable to find management server {args['managementserverid']}")
        args = {**args, "msid": servers[args["managementserverid"]]}
    since = None
    if "startdate" in args:
        try:
            since = parse_expires(args["startdate"])
        except ValueError:
            raise InvalidParameter("startdate must be a date like 2026-01-01T00:00:00+0000") from None
    found, total = await ctx.services.async_jobs.matching(ctx.caller, args, since)
    return listing("asyncjobs", [job_view(j.row, j.instance_uuid) for j in found], total)
