# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The planner's scoring kernel: every filter and weigher for all hosts in one call, over the capacity
index's arrays, with no Python object per host.

Same interface and same answers as the reference ``mgmt.planner._pykernel``: ``bind(index)`` takes
typed views of the index's arrays once (again when ``index.generation`` changes); ``evaluate(bound, n,
query, reasons, scores, counts)`` fills each host's reason code and each candidate's score, adds the
dropped hosts to ``counts[code]`` and returns the best position or -1. Floating-point expressions are
written in the reference's order (and built with -ffp-contract=off) so the two agree bit for bit.
Filter codes and weigher codes are those of ``mgmt/planner/filters`` and ``mgmt/planner/weighers``.
"""

from libc.math cimport INFINITY
from libc.stdlib cimport free, malloc

NAME = "native"

DEF NWEIGHERS = 6
DEF UP_ENABLED = 7  # UP | ENABLED | CLUSTER_ENABLED

cdef enum:
    F_SCOPE = 1
    F_AVOID = 2
    F_AFFINITY = 3
    F_STATUS = 4
    F_HYPERVISOR = 5
    F_TAGS = 6
    F_CORES = 7
    F_CPU = 8
    F_MEMORY = 9
    F_CLUSTER = 10


cdef class Bound:
    cdef const long long[::1] host_id, zone_id, pod_id, cluster_id, cores, speed
    cdef const long long[::1] cpu_total, cpu_alloc, mem_total, mem_alloc
    cdef const int[::1] cluster_ix, pod_ix
    cdef const unsigned char[::1] flags
    cdef const signed char[::1] hypervisor
    cdef const unsigned long long[::1] tags
    cdef const long long[::1] c_cpu_total, c_cpu_alloc, c_mem_total, c_mem_alloc
    cdef const double[::1] c_cpu_factor, c_mem_factor
    cdef readonly object generation


def bind(ix):
    cdef Bound b = Bound()
    b.host_id, b.zone_id, b.pod_id, b.cluster_id = ix.host_id, ix.zone_id, ix.pod_id, ix.cluster_id
    b.cores, b.speed = ix.cores, ix.speed
    b.cpu_total, b.cpu_alloc, b.mem_total, b.mem_alloc = ix.cpu_total, ix.cpu_alloc, ix.mem_total, ix.mem_alloc
    b.cluster_ix, b.pod_ix, b.flags, b.hypervisor, b.tags = ix.cluster_ix, ix.pod_ix, ix.flags, ix.hypervisor, ix.tags
    b.c_cpu_total, b.c_cpu_alloc = ix.c_cpu_total, ix.c_cpu_alloc
    b.c_mem_total, b.c_mem_alloc = ix.c_mem_total, ix.c_mem_alloc
    b.c_cpu_factor, b.c_mem_factor = ix.c_cpu_factor, ix.c_mem_factor
    b.generation = ix.generation
    return b


cdef inline unsigned long long mix(unsigned long long x) nogil:
    cdef unsigned long long z = x + 0x9E3779B97F4A7C15ULL
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    return z ^ (z >> 31)


def evaluate(Bound b, Py_ssize_t n, q, unsigned char[::1] reasons, double[::1] scores, long long[::1] counts):
    cdef long long zone_id = q.zone_id, pod_id = q.pod_id, cluster_id = q.cluster_id, host_id = q.host_id
    cdef int hypervisor = q.hypervisor
    cdef unsigned long long tags = q.tags
    cdef long long cpus = q.cpus, speed = q.speed, cpu_mhz = q.cpu_mhz, memory = q.memory
    cdef double cpu_threshold = q.cpu_threshold, mem_threshold = q.mem_threshold
    cdef double cpu_weight = q.cluster_cpu_weight
    cdef unsigned long long seed = q.seed
    cdef long long filters = q.filters
    cdef const unsigned char[::1] blocked
    cdef const double[::1] account_vms
    cdef const double[::1] pod_vms
    cdef bint has_blocked = q.blocked is not None
    cdef bint has_account = q.account_vms is not None
    cdef bint has_pod = q.pod_vms is not None
    if has_blocked:
        blocked = q.blocked
    if has_account:
        account_vms = q.account_vms
    if has_pod:
        pod_vms = q.pod_vms
    cdef double weights[NWEIGHERS]
    cdef int active[NWEIGHERS]
    cdef int nactive = 0, k, w
    py_weights = q.weights
    for w in range(NWEIGHERS):
        weights[w] = py_weights[w] if py_weights is not None else 0.0
        if weights[w] != 0.0:
            active[nactive] = w
            nactive += 1
    cdef bint en_scope = filters & (1 << F_SCOPE), en_avoid = filters & (1 << F_AVOID)
    cdef bint en_affinity = filters & (1 << F_AFFINITY), en_status = filters & (1 << F_STATUS)
    cdef bint en_hypervisor = filters & (1 << F_HYPERVISOR), en_tags = filters & (1 << F_TAGS)
    cdef bint en_cores = filters & (1 << F_CORES), en_cpu = filters & (1 << F_CPU)
    cdef bint en_memory = filters & (1 << F_MEMORY), en_cluster = filters & (1 << F_CLUSTER)

    if n == 0:
        return -1
    # Plain pointers in locals: the compiler keeps them in registers through the loop.
    cdef const long long *h_id = &b.host_id[0]
    cdef const long long *h_zone = &b.zone_id[0]
    cdef const long long *h_pod = &b.pod_id[0]
    cdef const long long *h_cluster = &b.cluster_id[0]
    cdef const long long *h_cores = &b.cores[0]
    cdef const long long *h_speed = &b.speed[0]
    cdef const long long *h_cpu_total = &b.cpu_total[0]
    cdef const long long *h_cpu_alloc = &b.cpu_alloc[0]
    cdef const long long *h_mem_total = &b.mem_total[0]
    cdef const long long *h_mem_alloc = &b.mem_alloc[0]
    cdef const int *h_cix = &b.cluster_ix[0]
    cdef const int *h_pix = &b.pod_ix[0]
    cdef const unsigned char *h_flags = &b.flags[0]
    cdef const signed char *h_hyp = &b.hypervisor[0]
    cdef const unsigned long long *h_tags = &b.tags[0]
    cdef const long long *c_cpu_total = &b.c_cpu_total[0]
    cdef const long long *c_cpu_alloc = &b.c_cpu_alloc[0]
    cdef const long long *c_mem_total = &b.c_mem_total[0]
    cdef const long long *c_mem_alloc = &b.c_mem_alloc[0]
    cdef const double *c_cpu_factor = &b.c_cpu_factor[0]
    cdef const double *c_mem_factor = &b.c_mem_factor[0]
    cdef const unsigned char *p_blocked = &blocked[0] if has_blocked else NULL
    cdef const double *p_account = &account_vms[0] if has_account else NULL
    cdef const double *p_pod = &pod_vms[0] if has_pod else NULL
    cdef unsigned char *p_reasons = &reasons[0]
    cdef double *p_scores = &scores[0]
    cdef long long *p_counts = &counts[0]
    cdef Py_ssize_t i, j, ncand = 0
    cdef int reason, c
    cdef double v, cpu_cap, mem_cap, fcpu, fmem, score, best_score = 0.0, lo, hi
    cdef double lows[NWEIGHERS]
    cdef double highs[NWEIGHERS]
    cdef Py_ssize_t best = -1
    cdef Py_ssize_t *cand = <Py_ssize_t *> malloc(max(n, 1) * sizeof(Py_ssize_t))
    cdef double *raw = <double *> malloc(max(n * nactive, 1) * sizeof(double))
    if cand == NULL or raw == NULL:
        free(cand)
        free(raw)
        raise MemoryError()
    try:
        with nogil:
            for i in range(n):
                c = h_cix[i]
                reason = 0
                if en_scope and not ((zone_id == 0 or h_zone[i] == zone_id)
                                     and (pod_id == 0 or h_pod[i] == pod_id)
                                     and (cluster_id == 0 or h_cluster[i] == cluster_id)
                                     and (host_id == 0 or h_id[i] == host_id)):
                    reason = F_SCOPE
                elif en_avoid and has_blocked and p_blocked[i] == F_AVOID:
                    reason = F_AVOID
                elif en_affinity and has_blocked and p_blocked[i] == F_AFFINITY:
                    reason = F_AFFINITY
                elif en_status and (h_flags[i] & UP_ENABLED) != UP_ENABLED:
                    reason = F_STATUS
                elif en_hypervisor and hypervisor >= 0 and h_hyp[i] != hypervisor:
                    reason = F_HYPERVISOR
                elif en_tags and (h_tags[i] & tags) != tags:
                    reason = F_TAGS
                elif en_cores and not (h_cores[i] >= cpus and h_speed[i] >= speed):
                    reason = F_CORES
                elif en_cpu and not (<double> (h_cpu_alloc[i] + cpu_mhz) <= h_cpu_total[i] * c_cpu_factor[c]):
                    reason = F_CPU
                elif en_memory and not (<double> (h_mem_alloc[i] + memory) <= h_mem_total[i] * c_mem_factor[c]):
                    reason = F_MEMORY
                elif en_cluster:
                    cpu_cap = c_cpu_total[c] * c_cpu_factor[c]
                    mem_cap = c_mem_total[c] * c_mem_factor[c]
                    fcpu = (c_cpu_alloc[c] + cpu_mhz) / cpu_cap if cpu_cap > 0 else 2.0
                    fmem = (c_mem_alloc[c] + memory) / mem_cap if mem_cap > 0 else 2.0
                    if not (fcpu <= cpu_threshold and fmem <= mem_threshold):
                        reason = F_CLUSTER
                p_reasons[i] = reason
                if reason:
                    p_counts[reason] += 1
                    continue
                cand[ncand] = i
                ncand += 1
            # Each active weigher in a tight loop of its own over the candidates.
            for k in range(nactive):
                w = active[k]
                lo = INFINITY
                hi = -INFINITY
                for j in range(ncand):
                    i = cand[j]
                    if w == 0:
                        c = h_cix[i]
                        cpu_cap = c_cpu_total[c] * c_cpu_factor[c]
                        mem_cap = c_mem_total[c] * c_mem_factor[c]
                        fcpu = c_cpu_alloc[c] / cpu_cap if cpu_cap > 0 else 1.0
                        fmem = c_mem_alloc[c] / mem_cap if mem_cap > 0 else 1.0
                        v = -(cpu_weight * fcpu + (1.0 - cpu_weight) * fmem)
                    elif w == 1:
                        c = h_cix[i]
                        cpu_cap = h_cpu_total[i] * c_cpu_factor[c]
                        mem_cap = h_mem_total[i] * c_mem_factor[c]
                        fcpu = (cpu_cap - h_cpu_alloc[i]) / cpu_cap if cpu_cap > 0 else 0.0
                        fmem = (mem_cap - h_mem_alloc[i]) / mem_cap if mem_cap > 0 else 0.0
                        v = (fcpu + fmem) * 0.5
                    elif w == 2:
                        v = -(<double> i)
                    elif w == 3:
                        v = (mix(seed ^ <unsigned long long> h_id[i]) >> 11) * (1.0 / 9007199254740992.0)
                    elif w == 4:
                        v = -p_account[i] if has_account else 0.0
                    else:
                        v = p_pod[h_pix[i]] if has_pod else 0.0
                    raw[k * n + j] = v
                    lo = v if v < lo else lo
                    hi = v if v > hi else hi
                lows[k] = lo
                highs[k] = hi
            for j in range(ncand):
                score = 0.0
                for k in range(nactive):
                    lo = lows[k]
                    hi = highs[k]
                    if hi > lo:
                        score += weights[active[k]] * ((raw[k * n + j] - lo) / (hi - lo))
                i = cand[j]
                p_scores[i] = score
                if best < 0 or score > best_score:
                    best = i
                    best_score = score
    finally:
        free(cand)
        free(raw)
    return best
