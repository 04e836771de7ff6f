"""What the command modules share: list shapes, paging parameters, dates; and, from the services, the
queries handlers still make themselves."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ...services.queries import (
    MAX_PAGE,
    fetch,
    find,
    keyword,
    matching,
    new_uuid,
    now,
    owner_filter,
    page,
    uuids,
)
from ..registry import Param

__all__ = [
    "MAX_PAGE", "OWNER", "PAGING", "date", "fetch", "find", "keyword", "listing", "matching", "new_uuid",
    "now", "owner_filter", "page", "success", "uuids",
]


def listing(key: str, items: list[dict[str, Any]], total: int) -> dict[str, Any]:
    """CloudStack's list shape: ``{"count": total over all pages, key: [...]}``, or ``{}`` when empty."""
    return {"count": total, key: items} if items else {}


PAGING = (
    Param("page", "integer", description="the page to list, from 1 (with pagesize)"),
    Param("pagesize", "integer", description=f"items per page, up to {MAX_PAGE}; -1: all (with page)"),
    Param("keyword", description="a part of the name to match"),
)
OWNER = (
    Param("listall", "boolean", description="admins: every account's items, not only their own"),
    Param("account", description="with domainid: the account whose items to list (admins)"),
    Param("domainid", "uuid", description="the domain of account"),
    Param("projectid", description="accepted for compatibility; -1 (every project) is the only value"),
)


def date(dt: datetime | None) -> str | None:
    """CloudStack's date format, in UTC: ``2026-05-01T12:00:00+0000``."""
    if dt is None:
        return None
    if dt.tzinfo is None:  # SQLite keeps no offset: every stamp is written in UTC
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def success(text: str = "") -> dict[str, Any]:
    body: dict[str, Any] = {"success": True}
    if text:
        body["displaytext"] = text
    return body


