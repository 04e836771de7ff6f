"""Frame bodies: a JSON array of one-key objects, ``[{"PingRoutingCommand": {...}}]``.

Bodies of COMPRESS_THRESHOLD bytes or more are sent zlib-compressed (RFC 1950, level 1: the CPU matters
more than the bytes on a LAN) with the COMPRESSED flag. Inflating is bounded, so a small frame cannot
expand into an unbounded body.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any, NamedTuple

import orjson

from .errors import RemoteProtocolError
from .frame import COMPRESS_THRESHOLD
from .messages import Answer, Command, decode_answer, decode_command
from .messages.base import MalformedCommand, UnknownAnswer, UnknownCommand

CommandItem = Command | UnknownCommand | MalformedCommand
AnswerItem = Answer | UnknownAnswer

_dumps = orjson.dumps
_loads = orjson.loads


def encode_body(items: Sequence[Command | Answer], compress_threshold: int = COMPRESS_THRESHOLD) -> tuple[
        bytes, bool]:
    """Serialize messages; returns the body and whether it was compressed."""
    data = _dumps([{type(m).__name__: m} for m in items])
    if len(data) >= compress_threshold:
        return zlib.compress(data, 1), True
    return data, False


class Prepared(NamedTuple):
    """Messages serialized once to be sent many times: a fan-out's command to every host, the answer
    to every steady-state ping. Connections take it wherever they take a sequence of messages."""

    items: tuple[Command, ...] | tuple[Answer, ...]
    body: bytes
    compressed: bool


def prepare(items: Sequence[Command] | Sequence[Answer],
            compress_threshold: int = COMPRESS_THRESHOLD) -> Prepared:
    """``items`` serialized once, for ``Connection.prepare_request`` or ``prepare_response``."""
    body, compressed = encode_body(items, compress_threshold)
    return Prepared(tuple(items), body, compressed)  # type: ignore[arg-type]


def inflate(data: bytes | memoryview, limit: int) -> bytes:
    """Decompress a zlib body of at most ``limit`` bytes, or raise RemoteProtocolError."""
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, limit + 1)
    except zlib.error as e:
        raise RemoteProtocolError(f"compressed body is not valid zlib data: {e}") from None
    if len(out) > limit:
        raise RemoteProtocolError(f"compressed body inflates beyond the {limit}-byte limit")
    if not d.eof:
        raise RemoteProtocolError("compressed body is truncated")
    if d.unused_data:
        raise RemoteProtocolError("compressed body has trailing bytes after the zlib stream")
    return out


def _items(data: bytes | memoryview) -> list[tuple[str, Any]]:
    try:
        doc = _loads(data)
    except orjson.JSONDecodeError as e:
        raise RemoteProtocolError(f"malformed JSON body: {e}") from None
    if type(doc) is not list or not doc:
        raise RemoteProtocolError("body must be a non-empty JSON array of one-key objects")
    items = []
    for i, item in enumerate(doc):
        if type(item) is not dict or len(item) != 1:
            raise RemoteProtocolError(f"body item {i} must be an object with exactly one key (the type)")
        items.append(next(iter(item.items())))
    return items


def decode_commands(data: bytes | memoryview) -> tuple[CommandItem, ...]:
    """The commands of a request body (unknown or malformed ones as values, not errors)."""
    return tuple([decode_command(name, value) for name, value in _items(data)])


def decode_answers(data: bytes | memoryview) -> tuple[AnswerItem, ...]:
    """The answers of a response body."""
    return tuple([decode_answer(name, value) for name, value in _items(data)])
