"""The pure-Python reference frame codec: the same interface and results as the C codec.

Used when ``CUMULO_CODEC=python`` and, in the tests, as the oracle the C codec is checked against.
Header checks run in the same order as ``native/framecodec.c`` so both report the same error.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from .frame import (
    HEADER,
    HEADER_SIZE,
    KNOWN_FLAGS,
    MIN_BODY,
    VERSION,
    Buffer,
    FrameErrorCode,
    FrameSpec,
    ScanResult,
    encode_error,
    field_range_error,
)

_unpack_header = HEADER.unpack_from
_pack_header = HEADER.pack


class PythonCodec:
    """Frame scanning and encoding in plain Python with ``struct``."""

    name = "python"

    def scan(self, buf: bytes | bytearray | memoryview, max_body: int, start: int = 0) -> ScanResult:
        records: list[int] = []
        size = len(buf)
        off = min(start, size)
        count = 0
        next_size = 0
        error = FrameErrorCode.OK
        while True:
            left = size - off
            if left < HEADER_SIZE:
                if left:
                    next_size = HEADER_SIZE
                break
            version, _reserved, flags, seq, length, mgmt_id, agent_id, via = _unpack_header(buf, off)
            if version != VERSION:
                error = FrameErrorCode.VERSION
            elif flags & ~KNOWN_FLAGS:
                error = FrameErrorCode.FLAGS
            elif length > max_body:
                error = FrameErrorCode.TOO_LARGE
            elif length < MIN_BODY:
                error = FrameErrorCode.TOO_SMALL
            if error:
                break
            total = HEADER_SIZE + length
            if left < total:
                next_size = total
                break
            records += (version, flags, seq, mgmt_id, agent_id, via, off + HEADER_SIZE, length)
            off += total
            count += 1
        return ScanResult(count, off, next_size, int(error), records)

    def encode(self, frames: Sequence[FrameSpec], max_body: int) -> Buffer:
        parts: list[bytes] = []
        for flags, seq, mgmt_id, agent_id, via, body in frames:
            length = len(body)
            if flags < 0:
                raise field_range_error()
            if flags & ~KNOWN_FLAGS or flags > 0xFFFF:
                raise encode_error(FrameErrorCode.FLAGS)
            if length > max_body:
                raise encode_error(FrameErrorCode.TOO_LARGE)
            if length < MIN_BODY:
                raise encode_error(FrameErrorCode.TOO_SMALL)
            try:
                parts.append(_pack_header(VERSION, 0, flags, seq, length, mgmt_id, agent_id, via))
            except struct.error:
                raise field_range_error() from None
            parts.append(body)
        return b"".join(parts)
