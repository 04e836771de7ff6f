"""Frame codec benchmark: the C codec against the pure-Python reference on realistic streams.

    python -m benchmarks.codec --json FILE [--frames N] [--repeat R]

Streams: (a) ~300-byte pings, (b) ~2.5 KB StartCommands, (c) a 90/10 mix. For each codec it times
``scan`` (headers and body offsets only; the stream arrives in 64 KiB reads and only the scans are
timed), full ``decode`` (scan, inflate, JSON, typed messages) and
``encode`` (typed messages to one buffer). Figures are frames per second, best of R runs; every run's
output is compared between the codecs and the benchmark fails if they differ.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import orjson

from protocol.body import decode_commands, encode_body, inflate
from protocol.codec import Codec, get_codec
from protocol.examples import ping, start
from protocol.frame import DEFAULT_MAX_FRAME_SIZE, RECORD_WORDS, Flag, FrameSpec, max_body_size
from protocol.messages import Command

MAX_BODY = max_body_size(DEFAULT_MAX_FRAME_SIZE)


def messages(kind: str, n: int) -> list[Command]:
    if kind == "ping":
        return [ping(i) for i in range(n)]
    if kind == "start":
        return [start(i) for i in range(n)]
    return [start(i) if i % 10 == 9 else ping(i) for i in range(n)]


def frames_of(msgs: Sequence[Command]) -> list[FrameSpec]:
    out = []
    for seq, m in enumerate(msgs):
        body, compressed = encode_body([m])
        flags = Flag.REQUEST | (Flag.COMPRESSED if compressed else 0)
        out.append(FrameSpec(int(flags), seq, 1, 1000 + seq, 0, body))
    return out


READ_SIZE = 65536  # the stream arrives as a receiver reads it


class TimedScan:
    """Scan a stream read by read, as a connection does, timing only the scans.

    Each read is copied into a reused receive buffer first (what ``recv_into`` does, outside the timed
    window), so the codec sees freshly received bytes, as it does in a server. Records are valid only
    until the next scan, so the check that both codecs agree copies them out (``keep``).
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.buf = bytearray(2 * READ_SIZE + len(data) // 4)

    def __call__(self, codec: Codec, keep: bool = False) -> tuple[float, list[Any]]:
        data, buf = self.data, self.buf
        view = memoryview(buf)
        results: list[Any] = []
        spent = 0.0
        filled = pos = 0
        while pos < len(data):
            chunk = data[pos : pos + READ_SIZE]
            pos += len(chunk)
            buf[filled : filled + len(chunk)] = chunk
            filled += len(chunk)
            t0 = time.perf_counter()
            r = codec.scan(view[:filled], MAX_BODY)
            spent += time.perf_counter() - t0
            results.append((*r[:4], list(r.records)) if keep else r.nframes)
            rest = filled - r.consumed  # move the incomplete tail to the front, as a receiver does
            buf[:rest] = buf[r.consumed : filled]
            filled = rest
        return spent, results


def decode(codec: Codec, data: bytes) -> list[tuple[int, tuple[Any, ...]]]:
    r = codec.scan(data, MAX_BODY)
    rec = r.records
    out = []
    view = memoryview(data)
    for i in range(0, r.nframes * RECORD_WORDS, RECORD_WORDS):
        flags, seq = rec[i + 1], rec[i + 2]
        off, length = rec[i + 6], rec[i + 7]
        body = view[off : off + length]
        if flags & Flag.COMPRESSED:
            body = inflate(body, MAX_BODY)  # type: ignore[assignment]
        out.append((seq, decode_commands(body)))
    return out


def encode(codec: Codec, msgs: Sequence[Command]) -> bytes:
    return bytes(codec.encode(frames_of(msgs), MAX_BODY))


def best_rate(fn: Callable[[], Any], items: int, repeat: int) -> tuple[float, Any]:
    """Frames per second of the fastest of ``repeat`` runs after a warm-up, and the last run's result.

    As timeit does, the garbage collector is off while timing: a collection walks the whole heap and
    evicts the caches, which says more about the heap than about the codec."""
    result = fn()  # warm-up
    best = float("inf")
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeat):
            result = None  # free the previous run's output outside the timed window
            t0 = time.perf_counter()
            result = fn()
            best = min(best, time.perf_counter() - t0)
    finally:
        gc.enable()
    return items / best, result


def best_scan_rate(scan: TimedScan, codec: Codec, items: int, repeat: int) -> float:
    """Frames per second of the fastest of ``repeat`` read-by-read scans (scan time only)."""
    scan(codec)
    gc.collect()
    gc.disable()
    try:
        return items / min(scan(codec)[0] for _ in range(repeat))
    finally:
        gc.enable()


def run(frames: int, repeat: int) -> dict[str, Any]:
    codecs = {"native": get_codec("native"), "python": get_codec("python")}
    report: dict[str, Any] = {}
    sizes = {"ping": frames, "start": max(frames // 8, 100), "mix": frames}
    for kind, n in sizes.items():
        msgs = messages(kind, n)
        data = bytes(codecs["python"].encode(frames_of(msgs), MAX_BODY))
        entry: dict[str, Any] = {"frames": n, "frame_bytes": round(len(data) / n)}
        timed_scan = TimedScan(data)
        for op in ("scan", "decode", "encode"):
            rates: dict[str, float] = {}
            results: dict[str, Any] = {}
            for name, codec in codecs.items():
                if op == "scan":
                    rates[name] = best_scan_rate(timed_scan, codec, n, repeat)
                    results[name] = timed_scan(codec, keep=True)[1]
                elif op == "decode":
                    rates[name], results[name] = best_rate(partial(decode, codec, data), n, repeat)
                else:
                    rates[name], results[name] = best_rate(partial(encode, codec, msgs), n, repeat)
            if results["native"] != results["python"]:
                raise SystemExit(f"{kind}/{op}: the native and python codecs disagree")
            if op == "encode" and results["native"] != data:
                raise SystemExit(f"{kind}/encode: output differs from the reference stream")
            entry[op] = {k: round(v) for k, v in rates.items()}
            entry[op]["ratio"] = round(rates["native"] / rates["python"], 2)
        entry["scan_native_GBps"] = round(entry["scan"]["native"] * len(data) / n / 1e9, 2)
        report[kind] = entry
    report["machine"] = f"{platform.machine()} {os.cpu_count()} cpus, {platform.python_implementation()} " \
                        f"{platform.python_version()}, orjson {orjson.__version__}, {platform.platform()}"
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", metavar="FILE", help="write the report here")
    parser.add_argument("--frames", type=int, default=40_000, help="ping and mix stream length")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    report = run(args.frames, args.repeat)
    text = orjson.dumps(report, option=orjson.OPT_INDENT_2).decode()
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
