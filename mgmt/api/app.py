"""The HTTP side of the API: ``/client/api`` on GET and POST (Starlette, served by hypercorn's trio
worker inside the management server's nursery), authentication (signed requests or a login session),
dispatch to the declared commands, and CloudStack's response and error shapes."""

from __future__ import annotations

import functools
import logging
import secrets
import urllib.parse
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import CumuloError, InvalidParameter
from ..services.accounts import KeysChanged
from ..services.async_jobs import SUCCEEDED, Prepare
from ..services.caller import Caller
from ..services.passwords import hash_password, verify_password
from . import prometheus
from .limits import LoginGuard, Throttle
from .registry import COMMANDS, Command, parse
from .signing import expiry_problem, signature_matches

if TYPE_CHECKING:
    from ..services import Services

log = logging.getLogger(__name__)
JSON = "application/json; charset=UTF-8"
MAX_BODY = 1 << 20  # the largest POST body taken (userdata, the biggest parameter, is 43,690 characters)
# A body past MAX_BODY is read and dropped up to DRAIN_BODY (so that an ordinary client, which sends its
# whole body before it reads, gets the refusal instead of a broken pipe); past that the answer comes at
# once and the connection closes. Either way memory stays bounded, chunked bodies included.
DRAIN_BODY = 8 << 20
BODY_SECONDS = 60.0  # a request body must arrive within this (slow clients hold no connection for ever)
ENDED_KEPT = 4096  # ended jobs whose results polls are answered with from memory
CALLER_CACHE_SECONDS = 5.0  # a disabled user or account is refused at most this long after


def reply(command: str, body: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps({f"{command.lower()}response": body}), status_code=status, media_type=JSON)


def error(command: str, code: int, text: str, cs_code: int = 4250) -> Response:
    answer = reply(
        command, {"uuidList": [], "errorcode": code, "cserrorcode": cs_code, "errortext": text}, code
    )
    answer.headers["X-Description"] = text.encode("ascii", "replace").decode()[:1024]
    return answer


class Api:
    """The CloudStack API front end: sessions, the callers of API keys, the jobs it answers from memory;
    handlers reach the domain through ``services``."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.sessions = services.sessions  # in the database: every management server knows them
        self.pending_jobs: dict[str, dict[str, Any]] = {}  # job uuid -> its pending view, while it runs
        # job uuid -> its final view, for the jobs this server ended lately (the last ENDED_KEPT): the
        # poll that finds a job done is answered without reading its row
        self.ended_jobs: OrderedDict[str, dict[str, Any]] = OrderedDict()
        # API key -> (caller, when it was read): one database read per key every few seconds, not one
        # per request; registerUserKeys empties it at once
        self.callers: dict[str, tuple[Caller, float]] = {}
        self.signature_forms: dict[str, int] = {}  # API key -> the signing form its client used last
        self.requests = 0  # requests answered (for benchmarks and metrics)
        values = services.values
        self.throttle = Throttle(bool(values.get("api.throttling.enabled", False)),
                                 float(values.get("api.throttling.interval", 1)),
                                 int(values.get("api.throttling.max", 25)))
        self.logins = LoginGuard(int(values.get("incorrect.login.attempts.allowed", 5)))
        services.db.remote_listeners.append(self._peer_changed)

    def _peer_changed(self, _jid: int, deltas: list[Any]) -> None:
        """Another management server changed API keys: the callers kept here are read again."""
        if any(isinstance(d, KeysChanged) for d in deltas):
            self.callers.clear()

    def job_ended(self, job_uuid: str, view: dict[str, Any]) -> None:
        """Keep the final view of a job that ended here (the oldest one goes beyond ENDED_KEPT)."""
        self.ended_jobs[job_uuid] = view
        while len(self.ended_jobs) > ENDED_KEPT:
            self.ended_jobs.popitem(last=False)

    async def _body(self, request: Request) -> tuple[str, Response | None]:
        """The POST body as text, or the error to answer instead (too large, too slow, unreadable)."""
        declared = request.headers.get("content-length")
        too_large = error("error", 431, f"the request body is larger than {MAX_BODY} bytes", 4350)
        if declared is not None and (not declared.isdigit() or int(declared) > DRAIN_BODY):
            return "", too_large
        chunks: list[bytes] = []
        total = 0
        with trio.move_on_after(BODY_SECONDS) as slow:
            async for chunk in request.stream():
                total += len(chunk)
                if total <= MAX_BODY:
                    chunks.append(chunk)
                elif total > DRAIN_BODY:
                    break
        if slow.cancelled_caught:
            return "", error("error", 408, f"the request body did not arrive within {BODY_SECONDS:g} s", 4350)
        if total > MAX_BODY:
            return "", too_large
        return b"".join(chunks).decode("utf-8", errors="replace"), None

    async def endpoint(self, request: Request) -> Response:
        self.requests += 1
        params: dict[str, str] = dict(request.query_params)
        if request.method == "POST":
            body, refused = await self._body(request)
            if refused is not None:
                return refused
            # application/x-www-form-urlencoded, as every CloudStack client sends ('+' is a space)
            params.update(urllib.parse.parse_qsl(body, keep_blank_values=True))
        name = next((v for k, v in params.items() if k.lower() == "command"), "")
        cmd = COMMANDS.get(name.lower())
        if cmd is not None and cmd.name in ("login", "logout"):
            return await self._session_command(cmd, request, params)
        caller = await self._authenticate(request, params)
        if caller is None:
            return error(name or "error", 401, "unable to verify user credentials and/or request signature")
        if cmd is None or not cmd.allowed(caller):
            return error(
                "error", 401, f"the command {name!r} is unknown or not available to this account", 4365
            )
        if not self.throttle.allow(caller.user_uuid, trio.current_time()):
            return error(cmd.name, 429, "there are too many API calls from this user; try again later", 4350)
        return await self.dispatch(cmd, caller, params)

    async def dispatch(self, cmd: Command, caller: Caller, params: dict[str, str]) -> Response:
        if log.isEnabledFor(logging.DEBUG):
            known = {p.name.lower() for p in cmd.params} | _GENERAL
            unknown = sorted(k for k in params if k.lower() not in known and "[" not in k)
            if unknown:
                log.debug("%s: ignoring unknown parameters %s", cmd.name, unknown)
        ctx = Context(self, caller, cmd)
        try:
            args = parse(cmd, params)
            body = await cmd.handler(ctx, args)
        except CumuloError as e:
            if cmd.event and not cmd.is_async:
                await ctx.event(cmd.event, f"{cmd.name} failed: {e}", state="Error")
            return error(cmd.name, e.error_code, str(e), e.cs_error_code)
        except Exception:
            log.exception("API command %s failed", cmd.name)
            return error(cmd.name, 530, f"internal error in {cmd.name}; the server log has the details")
        return reply(cmd.name, body)

    async def _authenticate(self, request: Request, params: dict[str, str]) -> Caller | None:
        lowered = {k.lower(): v for k, v in params.items()}
        api_key = lowered.get("apikey", "")
        if not api_key:
            jsessionid = request.cookies.get("JSESSIONID", "")
            key = lowered.get("sessionkey", "")
            return await self.sessions.find(jsessionid, key)
        caller = await self._caller(api_key)
        if caller is None:
            return None
        form = signature_matches(params, caller.secret_key, self.signature_forms.get(api_key, 0))
        if form is None:
            return None
        if len(self.signature_forms) > 10_000:
            self.signature_forms.clear()
        self.signature_forms[api_key] = form
        problem = expiry_problem(params, datetime.now(UTC))
        if problem:
            log.info("signed request refused: %s", problem)
            return None
        return caller

    async def _caller(self, api_key: str) -> Caller | None:
        known = self.callers.get(api_key)
        now = trio.current_time()
        if known is not None and now - known[1] < CALLER_CACHE_SECONDS:
            return known[0]
        caller = await self.services.accounts.caller_by_key(api_key)
        if caller is None:
            self.callers.pop(api_key, None)
            return None
        if len(self.callers) > 10_000:
            self.callers.clear()
        self.callers[api_key] = (caller, now)
        return caller

    async def _session_command(self, cmd: Command, request: Request, params: dict[str, str]) -> Response:
        if cmd.name == "logout":
            await self.sessions.close(request.cookies.get("JSESSIONID", ""))
            answer = reply("logout", {"description": "success"})
            answer.delete_cookie("JSESSIONID", path="/client")
            answer.delete_cookie("sessionkey", path="/client")
            return answer
        if request.method != "POST":
            return error("login", 431, "use HTTP POST to log in (a password does not belong in a URL)", 4350)
        try:
            args = parse(cmd, params)
        except InvalidParameter as e:
            return error("login", 431, str(e), 4350)
        domain = args.get("domainId") or args.get("domain", "/")
        who = f"{args['username']}@{domain}"
        address = request.client.host if request.client is not None else ""
        if self.logins.locked(who, address, trio.current_time()):
            return error("login", 429, "too many failed logins for this user or from this address; try "
                                       "again in a few minutes", 4365)
        found = await self.services.accounts.login_candidate(args["username"], domain)
        # PBKDF2 takes a while on purpose: in a worker thread, outside any transaction; an unknown user
        # is checked against a stand-in hash, so the time taken does not tell whether the user exists
        stored = found[1] if found is not None else _stand_in_hash()
        matched = await trio.to_thread.run_sync(verify_password, args["password"], stored)
        caller = found[0] if found is not None and matched else None
        if caller is None:
            self.logins.failed(who, address, trio.current_time())
            log.warning("failed login for %r from %s", who[:300], address)
            return error(
                "login", 531, "failed to authenticate user: check the user name, password and domain", 4365
            )
        self.logins.succeeded(who)
        session = await self.sessions.open(caller)
        answer = reply(
            "login",
            {
                "timeout": int(self.sessions.timeout),
                "username": caller.username,
                "userid": caller.user_uuid,
                "domainid": caller.domain_uuid,
                "type": caller.account_type,
                "account": caller.account_name,
                "firstname": caller.username,
                "lastname": "",
                "timezone": "UTC",
                "sessionkey": session.key,
                "registered": "false",
            },
        )
        answer.set_cookie("JSESSIONID", session.jsessionid, path="/client", httponly=True, samesite="strict")
        answer.set_cookie("sessionkey", session.key, path="/client", samesite="strict")
        await self.services.events.record(
            caller,
            "USER.LOGIN",
            f"user {caller.username} logged in",
            resource_type="User",
            resource_uuid=caller.user_uuid,
        )
        return answer


@functools.cache
def _stand_in_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


_GENERAL = {"command", "response", "apikey", "signature", "signatureversion", "expires", "sessionkey", "_"}


class Context:
    """One call: who made it, what it is, and the helpers handlers share."""

    def __init__(self, api: Api, caller: Caller, cmd: Command) -> None:
        self.api, self.caller, self.cmd = api, caller, cmd
        self.services = api.services

    async def event(
        self,
        type_: str,
        description: str,
        *,
        state: str = "Completed",
        resource_type: str = "",
        resource_uuid: str | None = None,
        job_id: int | None = None,
    ) -> None:
        await self.services.events.record(
            self.caller,
            type_,
            description,
            state=state,
            resource_type=resource_type,
            resource_uuid=resource_uuid,
            job_id=job_id,
        )

    async def submit(
        self,
        work: Callable[[], Awaitable[dict[str, Any]]],
        *,
        description: str,
        instance_type: str = "",
        instance_id: int = 0,
        instance_uuid: str = "",
        prepare: Prepare | None = None,
    ) -> str:
        """Run ``work`` as an async job recording the command's events; the job's uuid. ``prepare``
        makes the job's instance in the job's own transaction (see ``JobRunner.submit``)."""
        cmd, caller = self.cmd, self.caller

        def finished(status: int | None, result: dict[str, Any], completed: datetime) -> None:
            # Its row says how it ended; so does this, for the polls to come (see Api.ended_jobs).
            view = self.api.pending_jobs.pop(job_uuid, None)
            if view is not None and status is not None:
                self.api.job_ended(job_uuid, {
                    **view, "jobstatus": status,
                    "jobresultcode": 0 if status == SUCCEEDED else result.get("errorcode", 530),
                    "jobresulttype": "object",
                    "jobresult": orjson.loads(orjson.dumps(result, default=str)),
                    "completed": completed.strftime("%Y-%m-%dT%H:%M:%S+0000"),
                })

        job_uuid = str(uuid.uuid4())
        # While it runs, queryAsyncJobResult answers from here, not from the database (clients poll)
        self.api.pending_jobs[job_uuid] = {
            "jobid": job_uuid,
            "accountid": self.caller.account_uuid,
            "userid": self.caller.user_uuid,
            "cmd": cmd.name,
            "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000"),
            "jobstatus": 0,
            "jobprocstatus": 0,
            "jobresultcode": 0,
            **({"jobinstancetype": instance_type} if instance_type else {}),
            **({"jobinstanceid": instance_uuid} if instance_uuid else {}),
            "_account": self.caller.account_id,
        }
        try:
            job_id = await self.services.async_jobs.submit(
                caller, cmd.name, work, event=cmd.event, description=description, job_uuid=job_uuid,
                instance_type=instance_type, instance_id=instance_id, instance_uuid=instance_uuid,
                prepare=prepare, on_ended=finished,
            )
            self.api.pending_jobs.get(job_uuid, {})["_job_id"] = job_id
        except BaseException:
            self.api.pending_jobs.pop(job_uuid, None)
            raise
        return job_uuid


def make_app(api: Api) -> Starlette:
    from . import commands  # noqa: F401 - registers every command

    return Starlette(routes=[Route("/client/api", api.endpoint, methods=["GET", "POST"]),
                             Route("/metrics", prometheus.route(api), methods=["GET"])])


async def serve_api(api: Api, host: str, port: int, *, certfile: str = "", keyfile: str = "",
                    task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """The API on ``host:port``: HTTPS (TLS 1.2 or newer) when a certificate and key are given."""
    config = Config()
    config.bind = [f"{host}:{port}"]
    if certfile:
        config.certfile, config.keyfile = certfile, keyfile
    config.read_timeout = 30  # seconds a connection may send nothing while a request is due
    config.keep_alive_timeout = 20
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    await hypercorn_serve(make_app(api), config, task_status=task_status)  # type: ignore[arg-type]
