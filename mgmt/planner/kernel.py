"""Kernel selection: ``CUMULO_PLANNER=python|native`` (native by default, never a silent fallback).

Both have the interface of ``mgmt.planner._pykernel``: ``NAME``, ``bind(index)``, ``evaluate(bound, n,
query, reasons, scores, counts) -> position``.
"""

from __future__ import annotations

import functools
import os
from array import array
from types import ModuleType
from typing import Any, Protocol

from .index import CapacityIndex
from .query import Query


class Kernel(Protocol):
    NAME: str

    def bind(self, ix: CapacityIndex) -> Any: ...

    def evaluate(self, bound: Any, n: int, q: Query, reasons: bytearray, scores: array[float],
                 counts: array[int]) -> int: ...


def get_kernel(name: str | None = None) -> Kernel:
    return _kernel(name or os.environ.get("CUMULO_PLANNER", "native"))


@functools.cache
def _kernel(name: str) -> Kernel:
    module: ModuleType
    if name == "python":
        from . import _pykernel as module
    elif name == "python_fused":  # the fused pure-Python baseline (benchmarks; same answers)
        from . import _fusedkernel as module
    elif name == "native":
        try:
            from native import _plannerkernel as module  # type: ignore[attr-defined, no-redef]
        except ImportError as e:
            raise RuntimeError("the native planner kernel is not built; reinstall with "
                               "`pip install -e .` (or set CUMULO_PLANNER=python)") from e
    else:
        raise ValueError(f"CUMULO_PLANNER must be python, python_fused or native, not {name!r}")
    return module
