"""Frame codecs: the C codec and the Python reference give identical results on any input."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.codec import Codec, get_codec
from protocol.frame import (
    HEADER,
    HEADER_SIZE,
    RECORD_WORDS,
    VERSION,
    FrameErrorCode,
    FrameSpec,
    ScanResult,
    frame_error,
)

from .strategies import chunks, frame_lists, split_points

MAX_BODY = 4096
native, python = get_codec("native"), get_codec("python")


def header(version: int = VERSION, flags: int = 1, seq: int = 7, length: int = 2) -> bytes:
    return HEADER.pack(version, 0, flags, seq, length, 1, 2, 3)


def same(a: ScanResult, b: ScanResult) -> bool:
    """Scan results are equal (records compare as lists: the C codec returns a memoryview)."""
    return a[:4] == b[:4] and list(a.records) == list(b.records)


def scan_stream(codec: Codec, pieces: list[bytes]) -> tuple[list[tuple[int, ...]], int]:
    """Feed pieces as a receiver would; return every frame's header fields and body, and the error."""
    buf = bytearray()
    frames: list[tuple[int, ...]] = []
    for piece in pieces:
        buf += piece
        r = codec.scan(buf, MAX_BODY)
        for i in range(r.nframes):
            v, flags, seq, m, a, via, off, length = r.records[i * RECORD_WORDS : (i + 1) * RECORD_WORDS]
            frames.append((v, flags, seq, m, a, via, *bytes(buf[off : off + length])))
        if r.error:
            return frames, r.error
        del buf[: r.consumed]
    return frames, 0


def test_native_codec_is_the_default_and_compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUMULO_CODEC", raising=False)
    assert get_codec().name == "native"
    monkeypatch.setenv("CUMULO_CODEC", "python")
    assert get_codec().name == "python"
    monkeypatch.setenv("CUMULO_CODEC", "rust")
    with pytest.raises(ValueError, match="CUMULO_CODEC"):
        get_codec()


@given(frame_lists)
def test_encode_is_identical_and_scans_back(frames: list[FrameSpec]) -> None:
    data = native.encode(frames, MAX_BODY)
    assert data == python.encode(frames, MAX_BODY)
    for codec in (native, python):
        r = codec.scan(data, MAX_BODY)
        assert (r.nframes, r.consumed, r.next_size, r.error) == (len(frames), len(data), 0, 0)
        for i, f in enumerate(frames):
            v, flags, seq, m, a, via, off, length = r.records[i * RECORD_WORDS : (i + 1) * RECORD_WORDS]
            assert (v, flags, seq, m, a, via) == (VERSION, f.flags, f.seq, f.mgmt_id, f.agent_id, f.via)
            assert data[off : off + length] == f.body


@given(frame_lists.flatmap(lambda fs: st.tuples(st.just(fs), split_points(python.encode(fs, MAX_BODY)))))
def test_split_streams_decode_identically(case: tuple[list[FrameSpec], list[int]]) -> None:
    frames, cuts = case
    data = python.encode(frames, MAX_BODY)
    expected = [(VERSION, f.flags, f.seq, f.mgmt_id, f.agent_id, f.via, *f.body) for f in frames]
    assert scan_stream(native, chunks(data, cuts)) == (expected, 0)
    assert scan_stream(python, chunks(data, cuts)) == (expected, 0)


@settings(max_examples=30)
@given(frame_lists)
def test_one_byte_at_a_time(frames: list[FrameSpec]) -> None:
    data = python.encode(frames, MAX_BODY)
    pieces = [data[i : i + 1] for i in range(len(data))]
    assert scan_stream(native, pieces) == scan_stream(python, pieces)
    assert len(scan_stream(native, pieces)[0]) == len(frames)


@settings(max_examples=500)
@given(st.binary(max_size=400), st.integers(0, 64))
def test_any_bytes_give_the_same_result_from_both(data: bytes, start: int) -> None:
    a, b = native.scan(data, 64, start), python.scan(data, 64, start)
    assert same(a, b)
    assert 0 <= a.consumed <= len(data)


@given(frame_lists, st.binary(min_size=1, max_size=80), st.integers(0, 200))
def test_corruption_after_good_frames(frames: list[FrameSpec], garbage: bytes, flip: int) -> None:
    data = bytearray(python.encode(frames, MAX_BODY) + garbage)
    data[min(flip, len(data) - 1)] ^= 0xFF
    assert same(native.scan(bytes(data), MAX_BODY), python.scan(bytes(data), MAX_BODY))


@pytest.mark.parametrize(
    ("frame", "code", "message"),
    [
        (header(version=2), FrameErrorCode.VERSION, "unsupported protocol version 2 (expected 1)"),
        (header(version=0), FrameErrorCode.VERSION, "unsupported protocol version 0"),
        (header(flags=0x08), FrameErrorCode.FLAGS, "unknown flag bits 0x0008 in frame seq 7"),
        (header(flags=0x8100), FrameErrorCode.FLAGS, "unknown flag bits 0x8100"),
        (header(length=MAX_BODY + 1), FrameErrorCode.TOO_LARGE, "4097-byte body; the limit is 4096"),
        (header(length=0xFFFFFFFF), FrameErrorCode.TOO_LARGE, "4294967295-byte body"),
        (header(length=1), FrameErrorCode.TOO_SMALL, "a body is at least 2 bytes"),
        (b"GET / HTTP/1.1\r\nHost: cumulo\r\n\r\n" + b"x" * 10, FrameErrorCode.VERSION, "version 71"),
    ],
)
def test_bad_headers_are_rejected_before_the_body_arrives(codec: Codec, frame: bytes, code: int,
                                                          message: str) -> None:
    good = python.encode([FrameSpec(1, 1, 0, 0, 0, b"[]")], MAX_BODY)
    r = codec.scan(good + frame, MAX_BODY)  # the bad frame's body has not arrived: the header suffices
    assert (r.nframes, r.consumed, r.error) == (1, len(good), code)
    assert message in str(frame_error(r.error, good + frame, r.consumed, MAX_BODY))


def test_incomplete_frames_report_what_they_need(codec: Codec) -> None:
    frame = python.encode([FrameSpec(1, 1, 0, 0, 0, b"[1,2,3]")], MAX_BODY)
    assert same(codec.scan(frame[:10], MAX_BODY), ScanResult(0, 0, HEADER_SIZE, 0, []))
    assert same(codec.scan(frame[:-1], MAX_BODY), ScanResult(0, 0, len(frame), 0, []))
    assert same(codec.scan(b"", MAX_BODY), ScanResult(0, 0, 0, 0, []))


def test_many_frames_in_one_buffer_cross_the_native_batch_size(codec: Codec) -> None:
    frames = [FrameSpec(1, i, 0, 0, 0, b"[%d]" % i) for i in range(1500)]
    data = codec.encode(frames, MAX_BODY)
    r = codec.scan(data + data[:30], MAX_BODY)  # and a header cut short
    assert (r.nframes, r.consumed, r.next_size, r.error) == (1500, len(data), HEADER_SIZE, 0)
    assert [r.records[RECORD_WORDS * i + 2] for i in range(1500)] == list(range(1500))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (FrameSpec(0x08, 1, 0, 0, 0, b"[]"), "unknown flag bits"),
        (FrameSpec(0x10001, 1, 0, 0, 0, b"[]"), "unknown flag bits"),
        (FrameSpec(1, 1, 0, 0, 0, b"x" * (MAX_BODY + 1)), "larger than the maximum"),
        (FrameSpec(1, 1, 0, 0, 0, b"["), "shorter than 2 bytes"),
        (FrameSpec(-1, 1, 0, 0, 0, b"[]"), "outside its unsigned range"),
        (FrameSpec(1, -1, 0, 0, 0, b"[]"), "outside its unsigned range"),
        (FrameSpec(1, 1, 2**64, 0, 0, b"[]"), "outside its unsigned range"),
    ],
)
def test_encoding_an_invalid_frame_is_refused(codec: Codec, spec: FrameSpec, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        codec.encode([spec], MAX_BODY)


def test_header_layout_is_big_endian_40_bytes() -> None:
    data = native.encode([FrameSpec(0x81, 0x0102030405060708, 9, 10, 11, b"[]")], MAX_BODY)
    assert data[:HEADER_SIZE] == struct.pack(">BBHQIQQQ", 1, 0, 0x81, 0x0102030405060708, 2, 9, 10, 11)
    assert data[HEADER_SIZE:] == b"[]"


near_valid_headers = st.builds(
    lambda v, f, s, n, tail: HEADER.pack(v, 0, f, s, n, 0, 0, 0) + tail,
    st.sampled_from([0, 1, 1, 1, 2, 255]),
    st.one_of(st.integers(0, 0xFFFF), st.sampled_from([0, 1, 0x81, 0xE7])),
    st.integers(0, 2**64 - 1),
    st.one_of(st.integers(0, 80), st.sampled_from([0, 1, 2, 63, 64, 65, 2**32 - 1])),
    st.binary(max_size=90),
)


@settings(max_examples=500)
@given(st.lists(near_valid_headers, min_size=1, max_size=6).map(b"".join))
def test_near_valid_headers_give_the_same_result_from_both(data: bytes) -> None:
    assert same(native.scan(data, 64), python.scan(data, 64))
