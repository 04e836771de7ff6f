"""The floor under the fleet benchmark: what trio alone costs per connection, with no protocol at all.

    python -m benchmarks.trio_floor --connections 10000 --json FILE [--processes 2] [--ping-seconds 10]

The server here is the least a trio server holding N persistent TCP connections can be: one task per
connection that reads 16-byte messages and answers a ping with ``send_all`` (no frames, no JSON, no
state machine, no database). The clients (``--client``, in separate processes, as the fleet's agents
are) ping at a fixed rate, 1,000 pings/s in all, and answer the server's messages. Measured in the
server process, with the same definitions as ``benchmarks.fleet``:

- ``rss_per_connection_kb``: resident memory once all are connected, less before, per connection;
- ``server_cpu_us_per_ping``: the process's CPU time over ``--ping-seconds`` per ping answered;
- ``fanout_s``: one message to every connection (``send_all`` in a loop) until every answer is read.

What this costs is what any management server built on trio pays before it does anything useful; the
fleet benchmark's figures are this floor plus Cumulo's work.
"""

from __future__ import annotations

import argparse
import gc
import json
import signal
import subprocess
import sys
import time
from functools import partial
from typing import Any

import trio

from agent.process import tune_gc
from benchmarks.fleet import percentile, rss_bytes

SIZE = 16
PINGS_PER_S = 1000


class Floor:
    def __init__(self, expected: int) -> None:
        self.streams: list[trio.SocketStream] = []
        self.expected = expected
        self.connected = trio.Event()
        self.pings = 0
        self.replies = 0
        self.wanted = 0
        self.all_replied = trio.Event()

    async def handle(self, stream: trio.SocketStream) -> None:
        self.streams.append(stream)
        if len(self.streams) >= self.expected:
            self.connected.set()
        pending = b""
        while True:
            data = await stream.receive_some(4096)
            if not data:
                return
            pending += data
            while len(pending) >= SIZE:
                message, pending = pending[:SIZE], pending[SIZE:]
                if message[:1] == b"P":
                    self.pings += 1
                    await stream.send_all(b"A" + message[1:])
                else:
                    self.replies += 1
                    if self.replies >= self.wanted:
                        self.all_replied.set()


async def serve(args: argparse.Namespace) -> dict[str, Any]:
    tune_gc()
    n = args.connections
    floor = Floor(n)
    result: dict[str, Any] = {"connections": n}
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, floor.handle, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        gc.collect()
        rss_before = rss_bytes()
        per = [n // args.processes + (1 if i < n % args.processes else 0) for i in range(args.processes)]
        interval = n / PINGS_PER_S
        clients = [
            subprocess.Popen(
                [sys.executable, "-m", "benchmarks.trio_floor", "--client", "--port", str(port),
                 "--connections", str(k), "--interval", str(interval)],
                stdout=subprocess.PIPE,
            )
            for k in per
        ]
        try:
            with trio.fail_after(300):
                await floor.connected.wait()
            await trio.sleep(interval)  # every client has pinged once
            gc.collect()
            result["rss_per_connection_kb"] = round((rss_bytes() - rss_before) / n / 1024, 2)
            pings_before, cpu_before = floor.pings, time.process_time()
            await trio.sleep(args.ping_seconds)
            served = floor.pings - pings_before
            result["server_pings"] = served
            cpu_us = (time.process_time() - cpu_before) * 1e6
            result["server_cpu_us_per_ping"] = round(cpu_us / max(1, served), 2)

            floor.wanted, floor.replies, floor.all_replied = n, 0, trio.Event()
            started = time.perf_counter()
            cpu_before = time.process_time()
            message = b"C" * SIZE
            for stream in list(floor.streams):
                await stream.send_all(message)
            with trio.fail_after(120):
                await floor.all_replied.wait()
            result["fanout_s"] = round(time.perf_counter() - started, 3)
            result["fanout_server_cpu_s"] = round(time.process_time() - cpu_before, 3)
        finally:
            for client in clients:
                client.terminate()
            rtts: list[float] = []
            for client in clients:
                out, _ = client.communicate(timeout=60)
                if out.strip():
                    rtts.extend(json.loads(out))
            nursery.cancel_scope.cancel()
    result["ping_samples"] = len(rtts)
    result["ping_p50_ms"] = round(percentile(rtts, 0.5), 3)
    result["ping_p99_ms"] = round(percentile(rtts, 0.99), 3)
    return result


async def client(args: argparse.Namespace) -> None:
    """k connections, each pinging every ``interval`` seconds at a fixed rate and answering the server."""
    tune_gc()
    rtts: list[float] = []
    limit = trio.CapacityLimiter(64)

    async def one(index: int) -> None:
        async with limit:
            stream = await trio.open_tcp_stream("127.0.0.1", args.port)
        sending = trio.Lock()  # the pinger and the answers share the stream

        async def send(data: bytes) -> None:
            async with sending:
                await stream.send_all(data)

        async with trio.open_nursery() as nursery:

            async def pinger() -> None:
                due = trio.current_time() + args.interval * index / args.connections
                while True:
                    await trio.sleep_until(due)
                    due += args.interval
                    await send(b"P" + repr(time.perf_counter()).encode().ljust(SIZE - 1))

            nursery.start_soon(pinger)
            pending = b""
            while True:
                data = await stream.receive_some(4096)
                if not data:
                    nursery.cancel_scope.cancel()
                    return
                pending += data
                while len(pending) >= SIZE:
                    message, pending = pending[:SIZE], pending[SIZE:]
                    if message[:1] == b"A":
                        rtts.append((time.perf_counter() - float(message[1:])) * 1000)
                    else:
                        await send(b"R" * SIZE)

    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            for i in range(args.connections):
                nursery.start_soon(one, i)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break
    sys.stdout.write(json.dumps(rtts))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.trio_floor", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--connections", type=int, default=10000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--ping-seconds", type=float, default=10.0)
    parser.add_argument("--json", help="write the figures here too")
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--interval", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        trio.run(client, args)
        return 0
    result = trio.run(serve, args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
