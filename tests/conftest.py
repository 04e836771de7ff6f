"""Shared fixtures: every codec-dependent test runs against the C codec and the Python reference."""

from __future__ import annotations

import pytest

from protocol.codec import Codec, get_codec

CODECS = ("native", "python")


@pytest.fixture(params=CODECS)
def codec(request: pytest.FixtureRequest) -> Codec:
    return get_codec(request.param)
