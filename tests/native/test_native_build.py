"""The native package: built by pip install, self-contained, and faithful to its header constants."""

from __future__ import annotations

import re
from pathlib import Path

import native
from native._framecodec import ffi, lib
from protocol import frame

HEADER_FILE = Path(native.__file__).parent / "framecodec.h"


def test_compiled_module_is_importable_and_exposes_the_api() -> None:
    assert callable(lib.cumulo_scan)
    assert callable(lib.cumulo_encode)
    assert ffi.sizeof("uint64_t") == 8


def test_c_constants_match_the_python_reference() -> None:
    text = HEADER_FILE.read_text()
    defines = dict(re.findall(r"#define (CUMULO_\w+) (0x[0-9A-Fa-f]+|\d+)", text))
    assert int(defines["CUMULO_HEADER_SIZE"], 0) == frame.HEADER_SIZE
    assert int(defines["CUMULO_RECORD_WORDS"], 0) == frame.RECORD_WORDS
    assert int(defines["CUMULO_VERSION"], 0) == frame.VERSION
    assert int(defines["CUMULO_KNOWN_FLAGS"], 0) == frame.KNOWN_FLAGS
    assert int(defines["CUMULO_MIN_BODY"], 0) == frame.MIN_BODY
    codes = dict(re.findall(r"CUMULO_(E_\w+|OK) = (\d+)", text))
    assert {k.removeprefix("E_"): int(v) for k, v in codes.items()} == {
        c.name: c.value for c in frame.FrameErrorCode
    }


def test_native_imports_nothing_of_ours() -> None:
    for path in Path(native.__file__).parent.glob("*.py"):
        source = path.read_text()
        assert not re.search(r"^\s*(from|import)\s+(protocol|agent|mgmt|benchmarks)\b", source, re.M), path
