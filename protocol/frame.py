"""The frame: a fixed 40-byte big-endian header followed by a JSON body.

Layout (offsets in bytes): version u8 @0, reserved u8 @1 (sent as 0, ignored), flags u16 @2,
sequence u64 @4, body length on the wire u32 @12, management-server id u64 @16, agent id u64 @24,
via u64 @32. The codecs (``protocol.codec``) scan and encode frames in batches; this module holds the
constants they share and the one place where their error codes become messages.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from typing import Final, NamedTuple

from .errors import FrameError

HEADER: Final = struct.Struct(">BBHQIQQQ")
HEADER_SIZE: Final = 40
VERSION: Final = 1
MIN_BODY: Final = 2  # "[]", the shortest JSON array
DEFAULT_MAX_FRAME_SIZE: Final = 16 * 1024 * 1024
COMPRESS_THRESHOLD: Final = 8192
RECORD_WORDS: Final = 8  # version, flags, seq, mgmt id, agent id, via, body offset, body length

assert HEADER.size == HEADER_SIZE


class Flag(enum.IntFlag):
    """Header flags, with CloudStack's values. A frame without REQUEST is a response."""

    REQUEST = 0x01
    STOP_ON_ERROR = 0x02
    IN_SEQUENCE = 0x04
    FROM_SERVER = 0x20
    CONTROL = 0x40
    COMPRESSED = 0x80


KNOWN_FLAGS: Final = int(
    Flag.REQUEST | Flag.STOP_ON_ERROR | Flag.IN_SEQUENCE | Flag.FROM_SERVER | Flag.CONTROL | Flag.COMPRESSED
)


class FrameErrorCode(enum.IntEnum):
    """Error codes shared by the C codec and the Python reference (native/framecodec.h)."""

    OK = 0
    VERSION = 1
    FLAGS = 2
    TOO_LARGE = 3
    TOO_SMALL = 4
    NO_ROOM = 5


Buffer = bytes | bytearray  # what encoders return: ready to write to a socket


class FrameSpec(NamedTuple):
    """One frame to encode: header fields and the body already serialized."""

    flags: int
    seq: int
    mgmt_id: int
    agent_id: int
    via: int
    body: bytes


class ScanResult(NamedTuple):
    """What a codec's ``scan`` found in a receive buffer.

    ``records`` is flat: RECORD_WORDS integers for each of the ``nframes`` complete frames (a list from
    the Python codec, a memoryview of unsigned 64-bit words from the C codec).
    ``consumed`` is the offset after the last complete frame, or of the frame whose header is bad when
    ``error`` is set. ``next_size`` is the full size of the first incomplete frame (HEADER_SIZE while its
    header is incomplete), 0 if none.
    """

    nframes: int
    consumed: int
    next_size: int
    error: int
    records: Sequence[int]


def max_body_size(max_frame_size: int) -> int:
    """The largest body a frame of ``max_frame_size`` bytes can carry (the header counts)."""
    if not HEADER_SIZE + MIN_BODY <= max_frame_size <= HEADER_SIZE + 0xFFFFFFFF:
        raise ValueError(f"max frame size must be between {HEADER_SIZE + MIN_BODY} and 2**32+39 bytes")
    return max_frame_size - HEADER_SIZE


def frame_error(code: int, data: bytes | bytearray | memoryview, offset: int, max_body: int) -> FrameError:
    """Turn a codec error code at ``offset`` of ``data`` into an exception with a precise message."""
    version, _reserved, flags, seq, length, _m, _a, _v = HEADER.unpack_from(data, offset)
    if code == FrameErrorCode.VERSION:
        text = f"unsupported protocol version {version} (expected {VERSION})"
    elif code == FrameErrorCode.FLAGS:
        text = f"unknown flag bits 0x{flags & ~KNOWN_FLAGS & 0xFFFF:04x} in frame seq {seq}"
    elif code == FrameErrorCode.TOO_LARGE:
        text = f"frame seq {seq} announces a {length}-byte body; the limit is {max_body} bytes"
    elif code == FrameErrorCode.TOO_SMALL:
        text = f"frame seq {seq} announces a {length}-byte body; a body is at least {MIN_BODY} bytes"
    else:
        text = f"frame error {code} at offset {offset}"
    return FrameError(code, text)


def field_range_error() -> ValueError:
    """A header field (sequence, ids, flags) that does not fit its unsigned width."""
    return ValueError("cannot encode frame: a header field is outside its unsigned range")


def encode_error(code: int) -> ValueError:
    """An error for a frame we were asked to encode (our own bug, not the peer's)."""
    reasons = {
        FrameErrorCode.FLAGS: "unknown flag bits",
        FrameErrorCode.TOO_LARGE: "body larger than the maximum frame size",
        FrameErrorCode.TOO_SMALL: "body shorter than 2 bytes",
        FrameErrorCode.NO_ROOM: "output buffer too small",
    }
    return ValueError(f"cannot encode frame: {reasons.get(FrameErrorCode(code), code)}")
