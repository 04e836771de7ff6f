"""API commands as declarations: one per command drives parsing, validation and ``listApis``.

A handler is ``async def handler(api, caller, args) -> dict`` and returns the body of
``<command lowercased>response``. Parameter values arrive as strings and are parsed by type here; a
missing required parameter or a value of the wrong type is error 431 with a message naming it.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidParameter


@dataclass(frozen=True)
class Param:
    name: str
    type: str = "string"  # string, uuid, integer, long, boolean, list
    required: bool = False
    description: str = ""


@dataclass(frozen=True)
class Command:
    name: str
    description: str
    handler: Callable[..., Awaitable[dict[str, Any]]]
    params: tuple[Param, ...] = ()
    admin: bool = False
    is_async: bool = False


COMMANDS: dict[str, Command] = {}


def command(
    name: str, description: str, *params: Param, admin: bool = False, is_async: bool = False
) -> Callable[[Callable[..., Awaitable[dict[str, Any]]]], Any]:
    def register(handler: Callable[..., Awaitable[dict[str, Any]]]) -> Any:
        COMMANDS[name.lower()] = Command(name, description, handler, params, admin, is_async)
        return handler

    return register


def parse(cmd: Command, raw: Mapping[str, str]) -> dict[str, Any]:
    """The command's parameters, typed; unknown ones are ignored (as CloudStack does)."""
    lowered = {k.lower(): v for k, v in raw.items()}
    args: dict[str, Any] = {}
    for p in cmd.params:
        value = lowered.get(p.name.lower())
        if value is None or value == "":
            if p.required:
                raise InvalidParameter(
                    f"Unable to execute API command {cmd.name.lower()} due to missing parameter {p.name}"
                )
            continue
        args[p.name] = _typed(p, value)
    return args


def _typed(p: Param, value: str) -> Any:
    try:
        if p.type in ("integer", "long"):
            return int(value)
        if p.type == "boolean":
            if value.lower() not in ("true", "false"):
                raise ValueError(value)
            return value.lower() == "true"
        if p.type == "uuid":
            return str(uuid.UUID(value))
        if p.type == "list":
            return [v for v in value.split(",") if v]
    except ValueError:
        raise InvalidParameter(
            f"Unable to execute API command due to invalid value {value!r} for parameter "
            f"{p.name}: not a valid {p.type}"
        ) from None
    return value
