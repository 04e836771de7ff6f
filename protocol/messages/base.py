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


def decode_struct(cls: type[T], value: Any) -> T:
    """Build ``cls`` (a message or transfer-object dataclass) from its wire dict, checking types."""
    decoder = _DECODERS.get(cls)
    if decoder is None:
        decoder = _DECODERS[cls] = _make_struct_decoder(cls)
    result: T = decoder(value)
    return result


def _make_struct_decoder(cls: type[T]) -> Callable[[Any], T]:
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
