"""API commands as declarations: one per command drives parsing, validation, ``listApis`` and the docs.

A handler is ``async def handler(ctx, args) -> dict`` (``ctx``: the API, the caller and the request's
helpers, see ``app.Context``) and returns the body of ``<command lowercased>response``. Parameter values
arrive as strings and are parsed by type here; a missing required parameter or a value of the wrong
type is error 431 with a message naming it. Map parameters arrive flattened (``details[0].key=v``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidParameter

TYPES = ("string", "uuid", "integer", "long", "boolean", "list", "map", "date")
_MAP_KEY = re.compile(r"^([A-Za-z0-9_]+)\[(\d{1,4})\]\.([A-Za-z0-9_.-]{1,255})$")
MAX_MAP_ENTRIES = 256  # the entries a map parameter may have
INT_RANGE = {"integer": 2**31, "long": 2**63}  # Java's int and long: what CloudStack accepts
# maps whose keys are the caller's own (kept as given: details[0].cpuNumber); other maps' keys are
# CloudStack's field names, in any case
FREE_KEY_MAPS = frozenset({"details", "userdatadetails", "serviceofferingdetails"})


@dataclass(frozen=True)
class Param:
    name: str
    type: str = "string"
    required: bool = False
    description: str = ""
    length: int = 255  # the longest string value accepted
    # Not empty: CloudStack's parameter, refused here (error 431 naming it, with this reason) when given
    # a value other than those in ``harmless``: it does not apply to this cloud (VMware, OVM3, projects,
    # IPv6...), and ignoring it would do something else than asked. listApis does not list it.
    refused: str = ""
    harmless: tuple[str, ...] = ()
    applies: bool = False  # (refused) it would apply here, but Cumulo lacks it yet: a gap, not a mismatch


@dataclass(frozen=True)
class Command:
    name: str
    description: str
    handler: Callable[..., Awaitable[dict[str, Any]]]
    params: tuple[Param, ...] = ()
    admin: bool = False
    is_async: bool = False
    event: str = ""  # the audit event type a call records (e.g. VM.CREATE); empty: none (reads)
    response: str = ""  # the item key of what it answers (for listApis and the docs)
    since: str = "4.0"
    domain_admin: bool = False  # (with admin) domain admins may call it too, within their subtree
    schema: str = ""  # the fields.OBJECTS entry its items follow (default: ``response``'s)

    def allowed(self, caller: Any) -> bool:
        """Whether the caller's role may call it (the handler then checks what it touches)."""
        if not self.admin:
            return True
        return bool(caller.is_admin or (self.domain_admin and caller.is_domain_admin))

    @property
    def accepted(self) -> tuple[Param, ...]:
        """The parameters it takes (not the refused ones): what listApis and the docs show."""
        return tuple(p for p in self.params if not p.refused)

    @property
    def area(self) -> str:
        """The module that declares it (discovery, vms, volumes...), for the docs' sections."""
        return self.handler.__module__.rsplit(".", 1)[-1]


COMMANDS: dict[str, Command] = {}


def command(
    name: str,
    description: str,
    *params: Param,
    admin: bool = False,
    is_async: bool = False,
    event: str = "",
    response: str = "",
    domain_admin: bool = False,
    schema: str = "",
) -> Callable[[Callable[..., Awaitable[dict[str, Any]]]], Any]:
    seen: set[str] = set()
    for p in params:
        assert p.type in TYPES, f"{name}: parameter {p.name} has unknown type {p.type}"
        assert p.name.lower() not in seen, f"{name}: parameter {p.name} declared twice"
        seen.add(p.name.lower())

    def register(handler: Callable[..., Awaitable[dict[str, Any]]]) -> Any:
        assert name.lower() not in COMMANDS, f"{name} declared twice"
        COMMANDS[name.lower()] = Command(name, description, handler, params, admin, is_async, event, response,
                                         domain_admin=domain_admin, schema=schema)
        return handler

    return register


def refuse(reason: str, *names: str, harmless: tuple[str, ...] = (), applies: bool = False
           ) -> tuple[Param, ...]:
    """CloudStack's parameters ``names``, refused here for ``reason`` (see ``Param.refused``)."""
    return tuple(Param(n, refused=reason, harmless=harmless, applies=applies) for n in names)


def parse(cmd: Command, raw: Mapping[str, str]) -> dict[str, Any]:
    """The command's parameters, typed. A name the command does not declare is ignored, as CloudStack
    ignores names it does not know; a declared but refused one is error 431."""
    lowered = {k.lower(): v for k, v in raw.items()}
    args: dict[str, Any] = {}
    for p in cmd.params:
        if p.refused:
            given = lowered.get(p.name.lower())
            if given is None and any(k.startswith(p.name.lower() + "[") for k in lowered):
                given = "(a map)"
            if given not in (None, "") and given.lower() not in p.harmless:
                raise InvalidParameter(
                    f"Unable to execute API command {cmd.name.lower()}: parameter {p.name} is not "
                    f"supported by this cloud ({p.refused})"
                )
            continue
        if p.type == "map":
            entries = _map(p, raw)
            if entries:
                args[p.name] = entries
            elif p.required:
                raise InvalidParameter(f"missing parameter {p.name} (give {p.name}[0].key=value)")
            continue
        value = lowered.get(p.name.lower())
        if value is None or value == "":
            if p.required:
                raise InvalidParameter(
                    f"Unable to execute API command {cmd.name.lower()} due to missing parameter {p.name}"
                )
            continue
        args[p.name] = _typed(cmd, p, value)
    return args


def _map(p: Param, raw: Mapping[str, str]) -> list[dict[str, str]]:
    """``name[0].key=v&name[0].value=w&name[1].key=...`` as a list of dicts, by index. The parameter's
    name matches in any case; the keys keep theirs (``details[0].cpuNumber``)."""
    entries: dict[int, dict[str, str]] = {}
    for key, value in raw.items():
        m = _MAP_KEY.match(key)
        if m and m.group(1).lower() == p.name.lower():
            sub = m.group(3)
            if p.name.lower() not in FREE_KEY_MAPS or sub.lower() in ("key", "value"):
                sub = sub.lower()
            entries.setdefault(int(m.group(2)), {})[sub] = value
            if len(entries) > MAX_MAP_ENTRIES:
                raise InvalidParameter(f"parameter {p.name} has more than {MAX_MAP_ENTRIES} entries")
    for entry in entries.values():
        for sub, value in entry.items():
            if len(value) > p.length * 16:
                raise InvalidParameter(f"parameter {p.name}: the value of {sub} is too long")
    return [entries[i] for i in sorted(entries)]


def _typed(cmd: Command, p: Param, value: str) -> Any:
    what = {"integer": "an integer", "long": "an integer", "boolean": "true or false", "uuid": "a UUID"}
    try:
        if p.type in ("integer", "long"):
            number = int(value)
            if not -INT_RANGE[p.type] <= number < INT_RANGE[p.type]:
                raise ValueError(value)
            return number
        if p.type == "boolean":
            if value.lower() not in ("true", "false"):
                raise ValueError(value)
            return value.lower() == "true"
        if p.type == "uuid":
            return str(uuid.UUID(value))
        if p.type == "list":
            items = [v.strip() for v in value.split(",") if v.strip()]
            return items
    except ValueError:
        shown = value if len(value) <= 64 else value[:61] + "..."
        raise InvalidParameter(
            f"Unable to execute API command {cmd.name.lower()} due to invalid value {shown!r} for "
            f"parameter {p.name}: it must be {what.get(p.type, 'a ' + p.type)}"
        ) from None
    if len(value) > p.length:
        raise InvalidParameter(f"parameter {p.name} is longer than {p.length} characters")
    return value
