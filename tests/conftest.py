"""Shared fixtures: every codec-dependent test runs against the C codec and the Python reference."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

from protocol.codec import Codec, get_codec

# Timing is for benchmarks, not pass/fail: on a loaded 2-core CI machine, neither the per-example
# deadline nor Hypothesis's "generation is slow" check says anything about correctness.
settings.register_profile("cumulo", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("cumulo")

CODECS = ("native", "python")


@pytest.fixture(params=CODECS)
def codec(request: pytest.FixtureRequest) -> Codec:
    return get_codec(request.param)
