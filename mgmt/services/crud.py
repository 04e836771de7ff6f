"""Resources declared once: a ``Kind`` says a resource's table, the query that joins its parents' names,
the filters its list takes, what blocks its deletion and whether its changes reach placement. One list,
get, create and delete serve every kind (infrastructure, offerings); a create is a typed spec with
the kind's own insert, registered with ``creates``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..errors import ResourceInUse
from .caller import Caller
from .queries import fetch, find, keyword, matching, now, sort_order

if TYPE_CHECKING:
    from ..db.database import Database
    from ..planner.service import Placement

Row = sa.Row[Any]
Filters = Mapping[str, Any]  # a list's arguments: filter name -> value, keyword, page and pagesize
S = TypeVar("S")


@dataclass(frozen=True)
class Kind:
    """One resource, declared once."""

    name: str  # as errors and events name it: "zone", "storage pool"
    table: sa.Table
    query: Callable[[], sa.Select[Any]]  # its rows with their parents' uuids and names
    filters: Callable[[], dict[str, Any]]  # list filter name -> column
    # what blocks a delete: (table, its column naming this one, the error ("{name}": this one's name))
    children: tuple[tuple[sa.Table, str, str], ...] = ()
    placement: bool = False  # creates and deletes change what the planner sees
    removable: Callable[[Row], None] | None = None  # raises when this row may never be deleted here
    # further list conditions from the arguments (beyond equality on ``filters`` and the keyword)
    conditions: Callable[[Filters], list[Any]] | None = None


_CREATES: dict[type, tuple[Kind, Callable[[Connection, Caller, Any], int]]] = {}
# kind name -> what an update changes: (conn, the row, the update's arguments) -> column values
_UPDATES: dict[str, Callable[[Connection, Row, Filters], dict[str, Any]]] = {}


def creates(spec: type[S], kind: Kind) -> Callable[[Callable[[Connection, Caller, S], int]],
                                                    Callable[[Connection, Caller, S], int]]:
    """Declare ``insert(conn, caller, spec) -> id`` as how a ``spec`` makes a ``kind``."""

    def register(insert: Callable[[Connection, Caller, S], int]) -> Callable[[Connection, Caller, S], int]:
        assert spec not in _CREATES, f"{spec.__name__} declared twice"
        _CREATES[spec] = (kind, insert)
        return insert

    return register


def updates(kind: Kind) -> Callable[[Callable[[Connection, Row, Filters], dict[str, Any]]],
                                    Callable[[Connection, Row, Filters], dict[str, Any]]]:
    """Declare ``changes(conn, row, args) -> column values`` as what an update of ``kind`` writes (it
    checks the arguments; keys it does not know are not in ``args``)."""
    def register(changes: Callable[[Connection, Row, Filters], dict[str, Any]]
                 ) -> Callable[[Connection, Row, Filters], dict[str, Any]]:
        assert kind.name not in _UPDATES, f"updates of {kind.name} declared twice"
        _UPDATES[kind.name] = changes
        return changes
    return register


def kind_of(spec: object) -> Kind:
    """The kind a create spec makes."""
    return _CREATES[type(spec)][0]


def _list(conn: Connection, kind: Kind, args: Filters) -> tuple[list[Row], int]:
    table = kind.table
    where = [table.c.removed.is_(None), *keyword(table.c.name, args), *matching(args, kind.filters())]
    if kind.conditions is not None:
        where += kind.conditions(args)
    return fetch(conn, kind.query().where(*where), sort_order(conn, table), args)


def _create(conn: Connection, caller: Caller, spec: object) -> Row:
    kind, insert = _CREATES[type(spec)]
    row_id = insert(conn, caller, spec)
    return conn.execute(kind.query().where(kind.table.c.id == row_id)).one()


def _delete(conn: Connection, caller: Caller, kind: Kind, ident: str) -> str:
    row = find(conn, caller, kind.table, ident, kind.name)
    if kind.removable is not None:
        kind.removable(row)
    for table, column, error in kind.children:
        if conn.scalar(sa.select(table.c.id).where(table.c[column] == row.id, table.c.removed.is_(None))):
            raise ResourceInUse(error.format(name=row.name))
    conn.execute(kind.table.update().where(kind.table.c.id == row.id).values(removed=now()))
    return str(row.name)


def _update(conn: Connection, caller: Caller, kind: Kind, ident: str, args: Filters) -> tuple[Row, list[str]]:
    row = find(conn, caller, kind.table, ident, kind.name)
    values = _UPDATES[kind.name](conn, row, {**args, "_caller": caller})
    if values:
        conn.execute(kind.table.update().where(kind.table.c.id == row.id).values(**values))
    return conn.execute(kind.query().where(kind.table.c.id == row.id)).one(), sorted(values)


def _one(conn: Connection, kind: Kind, ident: str) -> Row:
    return conn.execute(kind.query().where(kind.table.c.uuid == ident)).one()


class Resources:
    """Lists, creates and deletes declared kinds; a change that reaches placement reloads it."""

    def __init__(self, db: Database, placement: Placement) -> None:
        self.db, self.placement = db, placement

    async def list(self, kind: Kind, args: Filters) -> tuple[list[Row], int]:
        """One page of the kind's live rows matching ``args``, and the total over every page."""
        return await self.db.read(_list, kind, args)

    async def get(self, kind: Kind, ident: str) -> Row:
        return await self.db.read(_one, kind, ident)

    async def create(self, caller: Caller, spec: object) -> Row:
        """The new resource's row (as ``list`` shows it); ``spec``'s type says which kind it makes."""
        row = await self.db.run(_create, caller, spec)
        if _CREATES[type(spec)][0].placement:
            await self.placement.inventory_changed()
        return row

    async def update(self, caller: Caller, kind: Kind, ident: str,
                     args: Filters) -> tuple[Row, Sequence[str]]:
        """Change a resource as ``args`` asks (what the kind's ``updates`` declares); its row (as
        ``list`` shows it) and the columns changed."""
        row, changed = await self.db.run(_update, caller, kind, ident, args)
        if kind.placement and changed:
            await self.placement.inventory_changed()
        return row, changed

    async def delete(self, caller: Caller, kind: Kind, ident: str) -> str:
        """Remove a resource that nothing depends on any more (marked removed; what was made from it
        keeps it); its name."""
        name = await self.db.run(_delete, caller, kind, ident)
        if kind.placement:
            await self.placement.inventory_changed()
        return name
