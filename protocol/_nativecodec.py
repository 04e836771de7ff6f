"""The C frame codec (``native._framecodec``, built by cffi) behind the codec interface."""

from __future__ import annotations

import threading
from array import array
from collections.abc import Sequence
from typing import Any

from native._framecodec import ffi, lib

from .frame import HEADER_SIZE, RECORD_WORDS, FrameSpec, ScanResult, encode_error

_BATCH = 512  # frames per C call; the records scratch buffer is _BATCH * 64 bytes per thread


class _Scratch(threading.local):
    """Per-thread output buffers: cffi releases the GIL during C calls, so threads must not share them."""

    def __init__(self) -> None:
        self.records: Any = ffi.new("uint64_t[]", _BATCH * RECORD_WORDS)
        self.view = memoryview(ffi.buffer(self.records)).cast("B").cast("Q")
        self.consumed: Any = ffi.new("size_t *")
        self.next_size: Any = ffi.new("size_t *")
        self.error: Any = ffi.new("int *")


class NativeCodec:
    """Frame scanning and encoding in C, many frames per call."""

    name = "native"

    def __init__(self) -> None:
        self._scratch = _Scratch()

    def scan(self, buf: bytes | bytearray | memoryview, max_body: int, start: int = 0) -> ScanResult:
        s = self._scratch
        src = ffi.from_buffer("uint8_t[]", buf)
        size = len(buf)
        records: list[int] = []
        count = 0
        while True:
            n = lib.cumulo_scan(src, size, start, max_body, s.records, _BATCH, s.consumed, s.next_size,
                                s.error)
            if n:
                records += s.view[: n * RECORD_WORDS].tolist()
                count += n
            start = s.consumed[0]
            if n < _BATCH or s.error[0]:
                return ScanResult(count, start, s.next_size[0], s.error[0], records)

    def encode(self, frames: Sequence[FrameSpec], max_body: int) -> bytes:
        fields = array("Q")
        bodies = []
        for flags, seq, mgmt_id, agent_id, via, body in frames:
            fields.extend((flags, seq, mgmt_id, agent_id, via, len(body)))
            bodies.append(body)
        joined = b"".join(bodies)
        out = bytearray(len(frames) * HEADER_SIZE + len(joined))
        s = self._scratch
        written = lib.cumulo_encode(ffi.from_buffer("uint8_t[]", out), len(out),
                                    ffi.from_buffer("uint64_t[]", fields), len(frames),
                                    joined, len(joined), max_body, s.error)
        if s.error[0]:
            raise encode_error(s.error[0])
        assert written == len(out)
        return bytes(out)
