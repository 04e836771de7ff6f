"""The change journal between management servers sharing one database.

Each server keeps things in memory that other servers' transactions change: the planner's capacity
index, the catalog, the callers of API keys, the revoked certificates. A transaction records what it
changed as typed deltas (``planner.deltas``, ``catalog.CatalogChanged``, ...); with several servers, the
writer also writes the deltas of a registered type, in the same transaction, as one ``cluster_journal``
row (``encode``). Every server reads the rows the others wrote since it last looked (``read_since``) and
hands their deltas to its listeners (``Database.remote_listeners``), so a peer's change reaches it within
one poll, without reading everything again.

A journal row is written by a peer, so it is checked like any input: ``decode`` drops an item of an
unknown type or with fields that do not fit (logged), never the rest.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .schema import cluster_journal

log = logging.getLogger(__name__)

KINDS: dict[str, type[Any]] = {}
T = TypeVar("T")


def journaled(cls: type[T]) -> type[T]:
    """Register a delta type (a dataclass of ints, strings, bools and lists of them) as one that other
    servers learn of."""
    KINDS[cls.__name__] = cls
    return cls


def encode(deltas: Sequence[Any]) -> bytes | None:
    """The journal body for a transaction's deltas: those of registered types; None when none are."""
    items = [[type(d).__name__, *dataclasses.astuple(d)] for d in deltas if type(d).__name__ in KINDS]
    return orjson.dumps(items) if items else None


def decode(body: bytes) -> list[Any]:
    try:
        items = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        log.error("a journal row is not JSON (%s); skipped", e)
        return []
    if not isinstance(items, list):
        return []
    out = []
    for item in items:
        cls = KINDS.get(item[0]) if isinstance(item, list) and item and isinstance(item[0], str) else None
        if cls is None:
            log.warning("a journal item of an unknown kind is skipped: %.80r", item)
            continue
        try:
            delta = cls(*[tuple(v) if isinstance(v, list) else v for v in item[1:]])
            for f in dataclasses.fields(delta):  # types as declared (the annotations are strings)
                value = getattr(delta, f.name)
                if not isinstance(value, _TYPES.get(str(f.type), object)) or isinstance(value, bool) != (
                        str(f.type) == "bool"):
                    raise TypeError(f"{f.name} is {type(value).__name__}")
        except TypeError as e:
            log.warning("a journal item of kind %s does not fit (%s); skipped", item[0], e)
            continue
        out.append(delta)
    return out


_TYPES: dict[str, type | tuple[type, ...]] = {"int": int, "str": str, "bool": bool,
                                              "tuple[str, ...]": tuple, "tuple[int, ...]": tuple}


def append(conn: Connection, msid: int, body: bytes, now: datetime) -> None:
    conn.execute(cluster_journal.insert().values(msid=msid, created=now, body=body))


def mark(conn: Connection) -> int:
    """The newest journal row this transaction sees."""
    return int(conn.scalar(sa.select(sa.func.max(cluster_journal.c.id))) or 0)


def read_since(conn: Connection, after: int, msid: int, limit: int = 2000, *,
               gaps: Sequence[int] = ()) -> list[tuple[int, list[Any]]]:
    """The rows after ``after`` (and those of ``gaps``, numbers skipped earlier that may have come
    since), oldest first: (row id, deltas), the deltas decoded for other servers' rows."""
    where = cluster_journal.c.id > after
    if gaps:
        where = sa.or_(where, cluster_journal.c.id.in_(list(gaps)))
    rows = conn.execute(sa.select(cluster_journal.c.id, cluster_journal.c.msid, cluster_journal.c.body)
                        .where(where).order_by(cluster_journal.c.id).limit(limit))
    return [(r.id, decode(r.body) if r.msid != msid else []) for r in rows]


def prune(conn: Connection, before: datetime) -> int:
    return conn.execute(cluster_journal.delete().where(cluster_journal.c.created < before)).rowcount
