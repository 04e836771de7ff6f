"""The C frame codec (``native._framecodec``, built by cffi) behind the codec interface."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from native._framecodec import ffi, lib

from .frame import HEADER_SIZE, RECORD_WORDS, Buffer, FrameSpec, ScanResult, encode_error, field_range_error

_new_uninitialized = ffi.new_allocator(should_clear_after_alloc=False)  # C fills what we read
_INITIAL_RECORDS = 64  # capacity of a thread's records array at first; it doubles when a scan fills it


class _Scratch(threading.local):
    """Per-thread buffers, reused by every scan: cffi releases the GIL during C calls, so threads must
    not share them, and reusing them spares an allocation (and fresh page faults) per receive."""

    def __init__(self) -> None:
        self.consumed: Any = ffi.new("size_t *")
        self.next_size: Any = ffi.new("size_t *")
        self.error: Any = ffi.new("int *")
        self.capacity = _INITIAL_RECORDS
        self.records: Any = _new_uninitialized("uint64_t[]", self.capacity * RECORD_WORDS)
        self.view: memoryview | None = None


class NativeCodec:
    """Frame scanning and encoding in C, many frames per call.

    ``scan`` returns its records as a memoryview of this thread's records array: no Python object is
    made per frame. The records are valid until the next ``scan`` on the same thread, which releases
    the view, so reading stale records raises ValueError instead of returning wrong numbers.
    """

    name = "native"

    def __init__(self) -> None:
        self._scratch = _Scratch()

    def scan(self, buf: bytes | bytearray | memoryview, max_body: int, start: int = 0) -> ScanResult:
        s = self._scratch
        if s.view is not None:
            s.view.release()
        size = len(buf)
        start = min(start, size)
        records, capacity = s.records, s.capacity
        consumed, next_size, error = s.consumed, s.next_size, s.error
        src = ffi.from_buffer("uint8_t[]", buf)
        count = lib.cumulo_scan(src, size, start, max_body, records, capacity, consumed, next_size, error)
        while count == capacity and not error[0]:
            # Full: double the array, keep what was found, scan on from where it stopped.
            grown = _new_uninitialized("uint64_t[]", 2 * capacity * RECORD_WORDS)
            ffi.memmove(grown, records, count * RECORD_WORDS * 8)
            records, capacity = s.records, s.capacity = grown, 2 * capacity
            count += lib.cumulo_scan(src, size, consumed[0], max_body, records + count * RECORD_WORDS,
                                     capacity - count, consumed, next_size, error)
        s.view = view = memoryview(ffi.buffer(records, count * RECORD_WORDS * 8)).cast("Q")
        return ScanResult(count, consumed[0], next_size[0], error[0], view)

    def encode(self, frames: Sequence[FrameSpec], max_body: int) -> Buffer:
        fields: list[int] = []
        bodies = []
        for flags, seq, mgmt_id, agent_id, via, body in frames:
            fields += (flags, seq, mgmt_id, agent_id, via, len(body))
            bodies.append(body)
        joined = b"".join(bodies)
        out = bytearray(len(frames) * HEADER_SIZE + len(joined))
        s = self._scratch
        try:  # cffi turns the list into a temporary uint64_t array in C
            written = lib.cumulo_encode(ffi.from_buffer("uint8_t[]", out), len(out), fields, len(frames),
                                        joined, len(joined), max_body, s.error)
        except OverflowError:
            raise field_range_error() from None
        if s.error[0]:
            raise encode_error(s.error[0])
        assert written == len(out)
        return out  # a bytearray: copying it into bytes would cost a second pass over the output
