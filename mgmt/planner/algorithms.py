"""vm.allocation.algorithm as weigher weights. Large ratios make one weigher order and the next break
its ties (normalized values lie in [0, 1], so 1000:1 is lexicographic up to a 0.1% difference)."""

from __future__ import annotations

ALGORITHMS: dict[str, dict[str, float]] = {
    "random": {"random": 1.0},
    "firstfit": {"cluster_fill": 1000.0, "first_fit": 1.0},
    "firstfitleastconsumed": {"cluster_fill": 1000.0, "free_capacity": 1.0},
    "userdispersing": {"account_dispersion": 1000.0, "cluster_fill": 1.0},
    "userconcentratedpod_random": {"pod_concentration": 1000.0, "random": 1.0},
    "userconcentratedpod_firstfit": {"pod_concentration": 1000.0, "first_fit": 1.0},
}
