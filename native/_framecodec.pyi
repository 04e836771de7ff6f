# Stub for the cffi-built frame codec (native/_framecodec_build.py); see framecodec.h for the contract.
from typing import Any

class _Lib:
    def cumulo_scan(self, buf: Any, len: int, start: int, max_body: int, records: Any, max_frames: int,
                    consumed: Any, next_size: Any, error: Any) -> int: ...
    def cumulo_encode(self, out: Any, out_len: int, fields: Any, n: int, bodies: bytes, bodies_len: int,
                      max_body: int, error: Any) -> int: ...

lib: _Lib
ffi: Any
