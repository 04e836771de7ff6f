"""The HTTP side of the API: ``/client/api`` on GET and POST (Starlette, served by hypercorn's trio
worker inside the management server's nursery), request signatures, dispatch to the declared commands,
and CloudStack's response and error shapes."""

from __future__ import annotations

import logging
import urllib.parse
from datetime import UTC, datetime
from typing import Any

import orjson
import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..db.database import Database
from ..errors import CumuloError
from . import accounts, commands  # noqa: F401 - commands registers the handlers
from .registry import COMMANDS, parse
from .signing import expiry_problem, signature_matches

log = logging.getLogger(__name__)
JSON = "application/json; charset=UTF-8"


def reply(command: str, body: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps({f"{command.lower()}response": body}), status_code=status, media_type=JSON)


def error(command: str, code: int, text: str, cs_code: int = 4250) -> Response:
    return reply(
        command, {"uuidList": [], "errorcode": code, "cserrorcode": cs_code, "errortext": text}, code
    )


class Api:
    """What handlers reach: the database and the running server's parts."""

    def __init__(self, db: Database, services: Any = None) -> None:
        self.db = db
        self.services = services

    async def endpoint(self, request: Request) -> Response:
        params: dict[str, str] = dict(request.query_params)
        if request.method == "POST":
            # application/x-www-form-urlencoded, as every CloudStack client sends ('+' is a space)
            body = (await request.body()).decode("utf-8", errors="replace")
            params.update(urllib.parse.parse_qsl(body, keep_blank_values=True))
        name = next((v for k, v in params.items() if k.lower() == "command"), "")
        cmd = COMMANDS.get(name.lower())
        caller = await self._authenticate(params)
        if caller is None:
            return error(name or "error", 401, "unable to verify user credentials and/or request signature")
        if cmd is None or (cmd.admin and not caller.is_admin):
            return error(
                name or "error", 432, "The given command does not exist or it is not available for user"
            )
        try:
            args = parse(cmd, params)
            body = await cmd.handler(self, caller, args)
        except CumuloError as e:
            return error(cmd.name, e.error_code, str(e), e.cs_error_code)
        except Exception:
            log.exception("API command %s failed", cmd.name)
            return error(cmd.name, 530, f"internal error in {cmd.name}")
        return reply(cmd.name, body)

    async def _authenticate(self, params: dict[str, str]) -> accounts.Caller | None:
        api_key = next((v for k, v in params.items() if k.lower() == "apikey"), "")
        if not api_key:
            return None
        caller = await self.db.run(accounts.caller_by_key, api_key)
        if caller is None or not signature_matches(params, caller.secret_key):
            return None
        problem = expiry_problem(params, datetime.now(UTC))
        if problem:
            log.info("signed request refused: %s", problem)
            return None
        return caller


def make_app(api: Api) -> Starlette:
    return Starlette(routes=[Route("/client/api", api.endpoint, methods=["GET", "POST"])])


async def serve_api(api: Api, host: str, port: int, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")  # type: ignore[assignment]
    await hypercorn_serve(make_app(api), config, task_status=task_status)  # type: ignore[arg-type]
