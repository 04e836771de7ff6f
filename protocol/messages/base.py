"""Message base classes, the registry by name, and decoding of wire dicts into typed messages.

A message is a frozen, slotted dataclass; its class name is its name on the wire, and its fields are
the JSON object's keys. orjson serializes these classes natively, so encoding builds no dicts.
Decoding checks every field's type against the class's annotations (a converter per field, built
once per class) and ignores keys it does not know, so newer peers can add fields.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar, TypeVar

from ..errors import MessageError

Converter = Callable[[Any], Any]
T = TypeVar("T")

COMMANDS: dict[str, type[Command]] = {}
ANSWERS: dict[str, type[Answer]] = {}


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    """A request from one side to the other; ``wait`` is the sender's timeout in seconds (0 = default)."""

    control: ClassVar[bool] = False  # sent with the CONTROL flag (startup, ping, ready)
    wait: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """The reply to one command: ``result`` says whether it succeeded, ``details`` why not."""

    result: bool = True
    details: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class UnsupportedAnswer(Answer):
    """The answer to a command the receiver does not know."""

    result: bool = False


@dataclass(frozen=True, slots=True)
class UnknownCommand:
    """A request item naming a type this side does not know. Answer it with ``UnsupportedAnswer``."""

    name: str
    body: dict[str, Any]

    def unsupported(self) -> UnsupportedAnswer:
        return UnsupportedAnswer(details=f"unsupported command: {self.name}")


@dataclass(frozen=True, slots=True)
class MalformedCommand:
    """A request item of a known type whose fields are wrong. Answer it with a failed ``Answer``."""

    name: str
    reason: str

    def failure(self) -> Answer:
        return Answer(result=False, details=f"malformed {self.name}: {self.reason}")


@dataclass(frozen=True, slots=True)
class UnknownAnswer:
    """A response item of a type this side does not know, or of a known type with wrong fields."""

    name: str
    result: bool
    details: str
    body: dict[str, Any]


C = TypeVar("C", bound=type[Command])
A = TypeVar("A", bound=type[Answer])


def command(cls: C) -> C:
    """Register a command class under its name."""
    COMMANDS[cls.__name__] = cls
    return cls


def answer(cls: A) -> A:
    """Register an answer class under its name."""
    ANSWERS[cls.__name__] = cls
    return cls


answer(Answer)
answer(UnsupportedAnswer)


# --- decoding -------------------------------------------------------------------------------------

_DECODERS: dict[type[Any], Callable[[Any], Any]] = {}
_MISSING = object()
_PRIMITIVES = {bool: "bool", int: "int", str: "str"}


def decode_struct(cls: type[T], value: Any) -> T:
    """Build ``cls`` (a message or transfer-object dataclass) from its wire dict, checking types."""
    decoder = _DECODERS.get(cls)
    if decoder is None:
        decoder = _DECODERS[cls] = _make_fast_decoder(cls, _make_struct_decoder(cls))
    result: T = decoder(value)
    return result


def _make_struct_decoder(cls: type[T]) -> Callable[[Any], T]:
    """The reference decoder: a converter per field; the source of every decoding error message."""
    hints = typing.get_type_hints(cls)
    specs: list[tuple[str, Converter | None, bool]] = []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if not f.init:
            continue
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        specs.append((f.name, _converter(hints[f.name], f"{cls.__name__}.{f.name}"), required))
    name = cls.__name__

    def decode(value: Any) -> T:
        if type(value) is not dict:
            raise MessageError(f"{name} must be a JSON object, not {_json_type(value)}")
        kwargs = {}
        for key, convert, required in specs:
            if key in value:
                v = value[key]
                kwargs[key] = convert(v) if convert is not None else v
            elif required:
                raise MessageError(f"{name} is missing the field {key!r}")
        return cls(**kwargs)

    return decode


def _make_fast_decoder(cls: type[T], slow: Callable[[Any], T]) -> Callable[[Any], T]:
    """A decoder generated as straight-line code for ``cls`` (as dataclasses generates ``__init__``).

    It checks the common shapes inline and fills the instance through its slot descriptors, skipping
    the frozen ``__setattr__``. Anything it does not accept goes to ``slow``, the reference decoder,
    which raises the precise error (or builds the value, where the fast checks are stricter).
    """
    hints = typing.get_type_hints(cls)
    env: dict[str, Any] = {"cls": cls, "new": object.__new__, "MISSING": _MISSING, "slow": slow}
    lines = ["def decode(v):", "    if type(v) is not dict:", "        return slow(v)", "    o = new(cls)"]
    for i, f in enumerate(dataclasses.fields(cls)):  # type: ignore[arg-type]
        env[f"set{i}"] = getattr(cls, f.name).__set__
        lines.append(f"    x = v.get({f.name!r}, MISSING)")
        lines.append("    if x is MISSING:")
        if f.default_factory is not dataclasses.MISSING:
            env[f"default{i}"] = f.default_factory
            lines.append(f"        x = default{i}()")
        elif f.default is not dataclasses.MISSING:
            env[f"default{i}"] = f.default
            lines.append(f"        x = default{i}")
        else:
            lines.append("        return slow(v)")
        check = _fast_check(hints[f.name], f"{cls.__name__}.{f.name}", str(i), env)
        if check:
            lines.append("    else:")
            lines += ["        " + line for line in check]
        lines.append(f"    set{i}(o, x)")
    lines.append("    return o")
    exec("\n".join(lines), env)
    decoder: Callable[[Any], T] = env["decode"]
    return decoder


def _fast_expr(hint: Any, key: str, env: dict[str, Any]) -> str | None:
    """An expression converting ``y`` for container items that need no separate check, if any.

    Enum lookups raise KeyError/TypeError (the caller falls back to the reference decoder); nested
    structs raise their own precise MessageError.
    """
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        env[f"members{key}"] = {m.value: m for m in hint}
        return f"members{key}[y]"
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        env[f"struct{key}"] = partial(decode_struct, hint)
        return f"struct{key}(y)"
    return None


def _fast_check(hint: Any, label: str, key: str, env: dict[str, Any]) -> list[str]:
    """Lines that check (and convert) ``x`` for ``hint``, or ``return slow(v)``."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return []
    if hint in _PRIMITIVES:
        return [f"if type(x) is not {_PRIMITIVES[hint]}:", "    return slow(v)"]
    if hint is float:
        return ["if type(x) is not float:", "    if type(x) is not int:", "        return slow(v)",
                "    x = float(x)"]
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        env[f"members{key}"] = {m.value: m for m in hint}
        return ["try:", f"    x = members{key}[x]", "except (KeyError, TypeError):", "    return slow(v)"]
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        env[f"struct{key}"] = partial(decode_struct, hint)
        return [f"x = struct{key}(x)"]
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        expr = _fast_expr(args[0], key + "i", env)
        if expr is not None:
            return ["if type(x) is not list:", "    return slow(v)", "try:",
                    f"    x = tuple([{expr} for y in x])", "except (KeyError, TypeError):",
                    "    return slow(v)"]
        item = _fast_check(args[0], label, key + "i", env)
        loop = ["for x in items:", *["    " + line for line in item], "    converted.append(x)"]
        return ["if type(x) is not list:", "    return slow(v)", "items = x", "converted = []", *loop,
                "x = tuple(converted)"]
    if origin is dict and args[0] is str:
        expr = _fast_expr(args[1], key + "v", env)
        if expr is not None:
            return ["if type(x) is not dict:", "    return slow(v)", "try:",
                    f"    x = {{k: {expr} for k, y in x.items()}}", "except (KeyError, TypeError):",
                    "    return slow(v)"]
        item = _fast_check(args[1], label, key + "v", env)
        loop = ["for k, x in items.items():", *["    " + line for line in item], "    converted[k] = x"]
        return ["if type(x) is not dict:", "    return slow(v)", "items = x", "converted = {}", *loop,
                "x = converted"]
    if origin is types.UnionType or origin is typing.Union:
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            inner = _fast_check(options[0], label, key, env)
            return ["if x is not None:", *["    " + line for line in inner]]
    env[f"convert{key}"] = _converter(hint, label)  # anything rarer: the reference converter
    return [f"x = convert{key}(x)"] if env[f"convert{key}"] is not None else []


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _expect(kind: type[Any], label: str, what: str) -> Converter:
    def check(v: Any) -> Any:
        if type(v) is not kind:
            raise MessageError(f"{label} must be {what}, not {_json_type(v)}")
        return v

    return check


def _converter(hint: Any, label: str) -> Converter | None:
    """A function checking and converting a wire value to ``hint``."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return None
    if hint is bool:
        return _expect(bool, label, "a boolean")
    if hint is str:
        return _expect(str, label, "a string")
    if hint is int:
        return _expect(int, label, "an integer")
    if hint is float:

        def to_float(v: Any) -> float:
            if type(v) is float or type(v) is int:
                return float(v)
            raise MessageError(f"{label} must be a number, not {_json_type(v)}")

        return to_float
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        members = {m.value: m for m in hint}

        def to_enum(v: Any) -> Any:
            try:
                return members[v]
            except (KeyError, TypeError):
                raise MessageError(f"{label} must be one of {sorted(members)}, not {v!r}") from None

        return to_enum
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        struct_cls = hint
        return lambda v: decode_struct(struct_cls, v)
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"{label}: only tuple[X, ...] is supported on the wire")
        item = _converter(args[0], f"{label}[]")

        def to_tuple(v: Any) -> tuple[Any, ...]:
            if type(v) is not list:
                raise MessageError(f"{label} must be an array, not {_json_type(v)}")
            return tuple(v) if item is None else tuple(item(x) for x in v)

        return to_tuple
    if origin is dict:
        key_hint, value_hint = typing.get_args(hint)
        if key_hint is not str:
            raise TypeError(f"{label}: JSON object keys are strings")
        value = _converter(value_hint, f"{label}{{}}")

        def to_dict(v: Any) -> dict[str, Any]:
            if type(v) is not dict:
                raise MessageError(f"{label} must be an object, not {_json_type(v)}")
            return v if value is None else {k: value(x) for k, x in v.items()}

        return to_dict
    if origin is types.UnionType or origin is typing.Union:
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(options) != 1:
            raise TypeError(f"{label}: only X | None unions are supported on the wire")
        inner = _converter(options[0], label)
        if inner is None:
            return None
        return lambda v: None if v is None else inner(v)
    raise TypeError(f"{label}: no wire converter for {hint!r}")


def decode_command(name: str, body: Any) -> Command | UnknownCommand | MalformedCommand:
    """One request item: a registered command, or the value that says why it is not one."""
    cls = COMMANDS.get(name)
    if cls is None:
        return UnknownCommand(name, body if type(body) is dict else {})
    try:
        return decode_struct(cls, body)
    except MessageError as e:
        return MalformedCommand(name, str(e))


def decode_answer(name: str, body: Any) -> Answer | UnknownAnswer:
    """One response item: a registered answer, or an ``UnknownAnswer`` keeping result and details."""
    cls = ANSWERS.get(name)
    reason = ""
    if cls is not None:
        try:
            return decode_struct(cls, body)
        except MessageError as e:
            reason = f"malformed {name}: {e}"
    raw = body if type(body) is dict else {}
    details = raw.get("details")
    text = details if type(details) is str else ""
    result = raw.get("result") is True and not reason
    return UnknownAnswer(name, result, f"{reason}; {text}" if reason and text else reason or text, raw)
