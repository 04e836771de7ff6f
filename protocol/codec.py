"""Codec selection: ``CUMULO_CODEC=python|native`` (native by default).

Both codecs have the interface of ``protocol._pycodec.PythonCodec``: ``scan(buf, max_body, start=0)``
returns a ``ScanResult`` whose records are valid until the next ``scan`` on the same thread (the C codec
reuses its array and releases the old view), ``encode(frames, max_body)`` returns the frames' bytes.
The native codec must be present after ``pip install``; asking for it when it is missing is an error,
never a silent fallback.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Protocol

from .frame import Buffer, FrameSpec, ScanResult


class Codec(Protocol):
    name: str

    def scan(self, buf: bytes | bytearray | memoryview, max_body: int, start: int = 0) -> ScanResult: ...

    def encode(self, frames: Sequence[FrameSpec], max_body: int) -> Buffer: ...


def get_codec(name: str | None = None) -> Codec:
    """The codec called ``name``, or the one ``CUMULO_CODEC`` selects (default ``native``).

    One instance per name and process: codecs keep no per-connection state (the C codec's scratch
    buffers are per thread), and thousands of connections must not each carry their own buffers.
    """
    return _codec(name or os.environ.get("CUMULO_CODEC", "native"))


@functools.cache
def _codec(name: str) -> Codec:
    if name == "python":
        from ._pycodec import PythonCodec

        return PythonCodec()
    if name == "native":
        from ._nativecodec import NativeCodec

        return NativeCodec()
    raise ValueError(f"CUMULO_CODEC must be 'python' or 'native', not {name!r}")
