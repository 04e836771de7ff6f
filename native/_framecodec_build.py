"""cffi build script for the native frame codec (out-of-line API mode).

Built by ``pip install`` through ``cffi_modules`` in setup.py. Set ``CUMULO_NATIVE_SANITIZE=1`` to build
with AddressSanitizer and UndefinedBehaviorSanitizer (``-O1 -g``), ``CUMULO_NATIVE_DEBUG=1`` for ``-O0 -g``.
"""

from __future__ import annotations

import os
from pathlib import Path

from cffi import FFI

# Paths relative to the project root: setuptools builds from there and refuses absolute sources.
HERE = Path("native")

CDEF = """
size_t cumulo_scan(const uint8_t *buf, size_t len, size_t start, uint32_t max_body, uint64_t *records,
                   size_t max_frames, size_t *consumed, size_t *next_size, int *error);
size_t cumulo_encode(uint8_t *out, size_t out_len, const uint64_t *fields, size_t n,
                     const uint8_t *bodies, size_t bodies_len, uint32_t max_body, int *error);
"""


def compile_args() -> tuple[list[str], list[str]]:
    """Compiler and linker flags chosen by the build switches."""
    if os.environ.get("CUMULO_NATIVE_SANITIZE") == "1":
        flags = ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
                 "-fno-sanitize-recover=undefined"]
        return flags, ["-fsanitize=address,undefined"]
    if os.environ.get("CUMULO_NATIVE_DEBUG") == "1":
        return ["-O0", "-g"], []
    return ["-O2", "-std=c11", "-Wall", "-Wextra"], []


ffibuilder = FFI()
ffibuilder.cdef(CDEF)
_cflags, _ldflags = compile_args()
ffibuilder.set_source(
    "native._framecodec",
    '#include "framecodec.h"',
    sources=[str(HERE / "framecodec.c")],
    include_dirs=[str(HERE)],
    extra_compile_args=_cflags,
    extra_link_args=_ldflags,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
