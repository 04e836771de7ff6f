"""The commands built so far: discovery (listApis, listCapabilities) and listZones."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..db.schema import zones
from ..errors import InvalidParameter
from .registry import COMMANDS, Param, command

MAX_PAGE = 500


def page(args: dict[str, Any]) -> tuple[int, int | None]:
    """(offset, limit) from page and pagesize, which come together (pagesize -1: everything)."""
    if ("page" in args) != ("pagesize" in args):
        raise InvalidParameter("page and pagesize must be given together")
    if "page" not in args:
        return 0, MAX_PAGE
    number, size = args["page"], args["pagesize"]
    if number < 1 or size == 0 or size < -1 or size > MAX_PAGE:
        raise InvalidParameter(f"page must be at least 1 and pagesize -1 or 1 to {MAX_PAGE}")
    return (0, None) if size == -1 else ((number - 1) * size, size)


def listing(key: str, items: list[dict[str, Any]], total: int) -> dict[str, Any]:
    return {"count": total, key: items} if items else {}


PAGING = (
    Param("page", "integer", description="page number, from 1"),
    Param("pagesize", "integer", description="items per page (-1: all)"),
    Param("keyword", description="part of the name"),
)


@command("listApis", "Lists the API commands and their parameters.", Param("name", description="one command"))
async def list_apis(api: Any, caller: Any, args: dict[str, Any]) -> dict[str, Any]:
    found = [
        c
        for c in COMMANDS.values()
        if (caller.is_admin or not c.admin) and ("name" not in args or c.name.lower() == args["name"].lower())
    ]
    items = [
        {
            "name": c.name,
            "description": c.description,
            "isasync": c.is_async,
            "since": "4.0",
            "related": "",
            "response": [],
            "params": [
                {
                    "name": p.name,
                    "description": p.description,
                    "type": p.type,
                    "required": p.required,
                    "length": 255,
                    "since": "4.0",
                    "related": "",
                }
                for p in c.params
            ],
        }
        for c in found
    ]
    return listing("api", sorted(items, key=lambda i: i["name"]), len(items))


@command("listCapabilities", "Lists the cloud's capabilities.")
async def list_capabilities(api: Any, caller: Any, args: dict[str, Any]) -> dict[str, Any]:
    return {
        "capability": {
            "cloudstackversion": "4.19.0.0-cumulo",
            "apilimitmax": 0,
            "apilimitinterval": 0,
            "allowusercreateprojects": False,
            "userpublictemplateenabled": False,
            "kvmsnapshotenabled": False,
            "customdiskofferingmaxsize": 1024,
        }
    }


def _zones(conn: Connection, args: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    where = [zones.c.removed.is_(None)]
    if "id" in args:
        where.append(zones.c.uuid == args["id"])
    if "name" in args:
        where.append(zones.c.name == args["name"])
    if "keyword" in args:
        where.append(zones.c.name.contains(args["keyword"]))
    total = conn.scalar(sa.select(sa.func.count()).select_from(zones).where(*where)) or 0
    offset, limit = page(args)
    rows = conn.execute(sa.select(zones).where(*where).order_by(zones.c.id).offset(offset).limit(limit))
    return [
        {
            "id": r.uuid,
            "name": r.name,
            "networktype": r.network_type,
            "allocationstate": r.allocation_state,
            "dns1": r.dns1 or "",
            "dns2": r.dns2 or "",
            "securitygroupsenabled": False,
            "localstorageenabled": True,
        }
        for r in rows
    ], total


@command(
    "listZones",
    "Lists zones.",
    Param("id", "uuid", description="the zone's id"),
    Param("name", description="the zone's name"),
    *PAGING,
)
async def list_zones(api: Any, caller: Any, args: dict[str, Any]) -> dict[str, Any]:
    items, total = await api.db.run(_zones, args)
    return listing("zone", items, total)
