"""Discovery and sessions: listApis, listCapabilities, login, logout."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..fields import ASYNC_FIELDS, field, fields_of
from ..registry import COMMANDS, Command, Param, command
from .common import listing

if TYPE_CHECKING:
    from ..app import Context


def response_fields(c: Command) -> list[dict[str, Any]]:
    """The fields of what ``c`` answers (``success`` for commands that answer only that), with the job's
    fields for an async command."""
    schema = c.schema or c.response or "success"
    found = fields_of(schema)
    if c.is_async:
        found += [field(schema, n) for n in ASYNC_FIELDS]
    return found


@command(
    "listApis",
    "Lists the API commands this caller may use, with their parameters.",
    Param("name", description="one command, by name"),
    response="api",
)
async def list_apis(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    found = [
        c
        for c in COMMANDS.values()
        if c.allowed(ctx.caller)
        and ("name" not in args or c.name.lower() == args["name"].lower())
    ]
    items = [
        {
            "name": c.name,
            "description": c.description,
            "isasync": c.is_async,
            "since": c.since,
            "related": "",
            "response": response_fields(c),
            "params": [
                {
                    "name": p.name,
                    "description": p.description,
                    "type": p.type,
                    "required": p.required,
                    "length": p.length,
                    "since": c.since,
                    "related": "",
                }
                for p in c.accepted
            ],
        }
        for c in found
    ]
    return listing("api", sorted(items, key=lambda i: i["name"]), len(items))


@command("listCapabilities", "Lists the cloud's capabilities.", response="capability")
async def list_capabilities(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return {
        "capability": {
            "cloudstackversion": "4.19.0.0-cumulo",
            "securitygroupsenabled": False,
            "apilimitmax": 0,
            "apilimitinterval": 0,
            "allowusercreateprojects": False,
            "userpublictemplateenabled": False,
            "kvmsnapshotenabled": False,
            "supportELB": "false",
            "projectinviterequired": False,
            "customdiskofferingmaxsize": 1024,
            "customdiskofferingminsize": 1,
            "dynamicrolesenabled": False,
        }
    }


async def _handled_by_the_endpoint(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    raise AssertionError("login and logout are answered by Api._session_command")


command(
    "login",
    "Logs a user in (HTTP POST): answers a session key and sets the JSESSIONID and sessionkey cookies; "
    "later calls send the cookie and sessionkey instead of a signature.",
    Param("username", required=True, description="the user's name"),
    Param("password", required=True, description="the user's password"),
    Param("domain", description="the user's domain path (default /, ROOT)"),
    Param("domainId", "uuid", description="the user's domain id"),
    response="login",
)(_handled_by_the_endpoint)
command("logout", "Ends the caller's login session.", response="logout")(_handled_by_the_endpoint)
