"""A fused pure-Python kernel: what a good engineer writes without Cython — every filter and weigher in
one loop over the index's arrays, bound to locals, no call per host. The honest baseline for the Cython
kernel's speed-up (the reference ``_pykernel`` keeps a function per filter, for clarity). Same interface
and the same answers as both: the expressions are the native kernel's, in its order.
"""

from __future__ import annotations

from array import array

from .filters import (
    affinity,
    avoid,
    cluster_threshold,
    cpu,
    cpu_cores,
    hypervisor,
    memory,
    scope,
    status,
    tags,
)
from .index import READY, CapacityIndex
from .query import WEIGHERS, Query
from .weighers.random_spread import M64, mix

NAME = "python_fused"
F_SCOPE, F_AVOID, F_AFFINITY, F_STATUS, F_HYPERVISOR = (
    m.FILTER.code for m in (scope, avoid, affinity, status, hypervisor))
F_TAGS, F_CORES, F_CPU, F_MEMORY, F_CLUSTER = (
    m.FILTER.code for m in (tags, cpu_cores, cpu, memory, cluster_threshold))
_UNIT = 1.0 / 9007199254740992.0


def bind(ix: CapacityIndex) -> CapacityIndex:
    return ix


def evaluate(ix: CapacityIndex, n: int, q: Query, reasons: bytearray, scores: array[float],
             counts: array[int]) -> int:
    zone_id, pod_id, cluster_id, host_id = q.zone_id, q.pod_id, q.cluster_id, q.host_id
    hyp, want_tags, cpus, speed = q.hypervisor, q.tags, q.cpus, q.speed
    cpu_mhz, memory, cpu_threshold, mem_threshold = q.cpu_mhz, q.memory, q.cpu_threshold, q.mem_threshold
    filters, blocked = q.filters, q.blocked
    en_scope, en_avoid = filters & (1 << F_SCOPE), filters & (1 << F_AVOID) and blocked is not None
    en_affinity = filters & (1 << F_AFFINITY) and blocked is not None
    en_status, en_hypervisor = filters & (1 << F_STATUS), filters & (1 << F_HYPERVISOR) and hyp >= 0
    en_tags, en_cores = filters & (1 << F_TAGS), filters & (1 << F_CORES)
    en_cpu, en_memory = filters & (1 << F_CPU), filters & (1 << F_MEMORY)
    en_cluster = filters & (1 << F_CLUSTER)
    scoped = en_scope and (zone_id or pod_id or cluster_id or host_id)
    h_id, h_zone, h_pod, h_cluster = ix.host_id, ix.zone_id, ix.pod_id, ix.cluster_id
    h_cores, h_speed, h_flags, h_hyp, h_tags = ix.cores, ix.speed, ix.flags, ix.hypervisor, ix.tags
    h_cpu_total, h_cpu_alloc = ix.cpu_total, ix.cpu_alloc
    h_mem_total, h_mem_alloc = ix.mem_total, ix.mem_alloc
    h_cix = ix.cluster_ix
    c_cpu_total, c_cpu_alloc, c_mem_total, c_mem_alloc = ix.c_cpu_total, ix.c_cpu_alloc, ix.c_mem_total, \
        ix.c_mem_alloc
    c_cpu_factor, c_mem_factor = ix.c_cpu_factor, ix.c_mem_factor
    cand: list[int] = []
    add = cand.append
    for i in range(n):
        c = h_cix[i]
        reason = 0
        if scoped and not ((zone_id == 0 or h_zone[i] == zone_id) and (pod_id == 0 or h_pod[i] == pod_id)
                           and (cluster_id == 0 or h_cluster[i] == cluster_id)
                           and (host_id == 0 or h_id[i] == host_id)):
            reason = F_SCOPE
        elif en_avoid and blocked[i] == F_AVOID:  # type: ignore[index]
            reason = F_AVOID
        elif en_affinity and blocked[i] == F_AFFINITY:  # type: ignore[index]
            reason = F_AFFINITY
        elif en_status and h_flags[i] & READY != READY:
            reason = F_STATUS
        elif en_hypervisor and h_hyp[i] != hyp:
            reason = F_HYPERVISOR
        elif en_tags and h_tags[i] & want_tags != want_tags:
            reason = F_TAGS
        elif en_cores and not (h_cores[i] >= cpus and h_speed[i] >= speed):
            reason = F_CORES
        elif en_cpu and not (h_cpu_alloc[i] + cpu_mhz <= h_cpu_total[i] * c_cpu_factor[c]):
            reason = F_CPU
        elif en_memory and not (h_mem_alloc[i] + memory <= h_mem_total[i] * c_mem_factor[c]):
            reason = F_MEMORY
        elif en_cluster:
            cpu_cap = c_cpu_total[c] * c_cpu_factor[c]
            mem_cap = c_mem_total[c] * c_mem_factor[c]
            fcpu = (c_cpu_alloc[c] + cpu_mhz) / cpu_cap if cpu_cap > 0 else 2.0
            fmem = (c_mem_alloc[c] + memory) / mem_cap if mem_cap > 0 else 2.0
            if not (fcpu <= cpu_threshold and fmem <= mem_threshold):
                reason = F_CLUSTER
        reasons[i] = reason
        if reason:
            counts[reason] += 1
        else:
            add(i)
    if not cand:
        return -1
    py_weights = q.weights
    active = [(w, py_weights[w]) for w in range(WEIGHERS) if py_weights is not None and py_weights[w] != 0.0]
    columns: list[tuple[float, list[float]]] = []
    for w, weight in active:
        if w == 0:
            cw = q.cluster_cpu_weight
            raw = []
            for i in cand:
                c = h_cix[i]
                cpu_cap = c_cpu_total[c] * c_cpu_factor[c]
                mem_cap = c_mem_total[c] * c_mem_factor[c]
                fcpu = c_cpu_alloc[c] / cpu_cap if cpu_cap > 0 else 1.0
                fmem = c_mem_alloc[c] / mem_cap if mem_cap > 0 else 1.0
                raw.append(-(cw * fcpu + (1.0 - cw) * fmem))
        elif w == 1:
            raw = []
            for i in cand:
                c = h_cix[i]
                cpu_cap = h_cpu_total[i] * c_cpu_factor[c]
                mem_cap = h_mem_total[i] * c_mem_factor[c]
                fcpu = (cpu_cap - h_cpu_alloc[i]) / cpu_cap if cpu_cap > 0 else 0.0
                fmem = (mem_cap - h_mem_alloc[i]) / mem_cap if mem_cap > 0 else 0.0
                raw.append((fcpu + fmem) * 0.5)
        elif w == 2:
            raw = [-float(i) for i in cand]
        elif w == 3:
            seed = q.seed
            raw = [(mix((seed ^ h_id[i]) & M64) >> 11) * _UNIT for i in cand]
        elif w == 4:
            account = q.account_vms
            raw = [-account[i] for i in cand] if account is not None else [0.0] * len(cand)
        else:
            pods, h_pix = q.pod_vms, ix.pod_ix
            raw = [pods[h_pix[i]] for i in cand] if pods is not None else [0.0] * len(cand)
        columns.append((weight, raw))
    spans = [(weight, raw, min(raw), max(raw)) for weight, raw in columns]
    best, best_score = -1, 0.0
    for j, i in enumerate(cand):
        score = 0.0
        for weight, raw, lo, hi in spans:
            if hi > lo:
                score += weight * ((raw[j] - lo) / (hi - lo))
        scores[i] = score
        if best < 0 or score > best_score:
            best, best_score = i, score
    return best
