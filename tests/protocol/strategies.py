"""Hypothesis strategies for frames and messages that can go on the wire."""

from __future__ import annotations

import itertools

from hypothesis import strategies as st

from protocol.frame import KNOWN_FLAGS, FrameSpec
from protocol.messages import ANSWERS, COMMANDS

u64 = st.integers(0, 2**64 - 1)
json_ints = st.integers(-(2**63), 2**63 - 1)
json_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
json_floats = st.floats(allow_nan=False, allow_infinity=False)

# Only JSON-representable values: orjson refuses ints beyond 64 bits and lone surrogates.
st.register_type_strategy(int, json_ints)
st.register_type_strategy(str, json_text)
st.register_type_strategy(float, json_floats)

valid_flags = st.integers(0, 0xFFFF).map(lambda f: f & KNOWN_FLAGS)
bodies = st.binary(min_size=2, max_size=300)
frame_specs = st.builds(FrameSpec, valid_flags, u64, u64, u64, u64, bodies)
frame_lists = st.lists(frame_specs, max_size=20)

commands = st.sampled_from(sorted(COMMANDS.values(), key=lambda c: c.__name__)).flatmap(st.builds)
answers = st.sampled_from(sorted(ANSWERS.values(), key=lambda c: c.__name__)).flatmap(st.builds)


def split_points(data: bytes) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(0, len(data)), max_size=12).map(sorted)


def chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]
