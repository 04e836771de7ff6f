"""The reference kernel: the filters' and weighers' own Python functions, host by host. The Cython
kernel (``native/plannerkernel.pyx``) has the same interface and must give the same answers.

``evaluate(state, n, q, reasons, scores, counts)`` fills, for the first ``n`` hosts, ``reasons[i]``
(0 for a candidate, else the code of the first filter that dropped it) and ``scores[i]`` (candidates
only), adds the number of hosts each filter dropped to ``counts[code]`` and returns the best
candidate's position, or -1.
"""

from __future__ import annotations

from array import array

from .filters import FILTERS
from .index import CapacityIndex
from .query import WEIGHERS, Query
from .weighers import WEIGHER_LIST

NAME = "python"


def bind(ix: CapacityIndex) -> CapacityIndex:
    """What ``evaluate`` reads (the native kernel binds typed views here; the reference reads the index)."""
    return ix


def evaluate(ix: CapacityIndex, n: int, q: Query, reasons: bytearray, scores: array[float],
             counts: array[int]) -> int:
    filters = [f for f in FILTERS if q.enabled(f.code)]
    weights = q.weights if q.weights is not None else array("d", [0.0] * WEIGHERS)
    weighers = [(w, weights[w.code]) for w in WEIGHER_LIST if weights[w.code] != 0.0]
    candidates: list[int] = []
    raws: list[list[float]] = [[] for _ in weighers]
    for i in range(n):
        reason = 0
        for f in filters:
            if not f.passes(ix, i, q):
                reason = f.code
                break
        reasons[i] = reason
        if reason:
            counts[reason] += 1
            continue
        candidates.append(i)
        for k, (w, _weight) in enumerate(weighers):
            raws[k].append(w.raw(ix, i, q))
    lows = [min(r) if r else 0.0 for r in raws]
    highs = [max(r) if r else 0.0 for r in raws]
    best, best_score = -1, 0.0
    for j, i in enumerate(candidates):
        score = 0.0
        for k, (_w, weight) in enumerate(weighers):
            lo, hi = lows[k], highs[k]
            if hi > lo:
                score += weight * ((raws[k][j] - lo) / (hi - lo))
        scores[i] = score
        if best < 0 or score > best_score:
            best, best_score = i, score
    return best
