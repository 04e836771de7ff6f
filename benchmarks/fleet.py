"""Fleet benchmark: one management server holding thousands of simulated agents over real TCP.

    python -m benchmarks.fleet --agents 10000 --json FILE [--processes 2] [--ping-seconds 30]
                               [--transport tls|tcp]

The management server runs in this process (so its memory and its agent manager can be measured
directly); the agents run in ``python -m agent.fleet`` processes, each agent on its own TCP connection.
``ping.interval`` is set so the fleet pings 1,000 times a second in all (10 s for 10,000 agents).
Measured, in order:

- ``all_up_s``: from the first agent's connection until every host is Up (cold start, empty database);
- ``rss_per_agent_kb``: the server's resident memory once all are Up, less before any connected, per agent;
- ``ping_p50_ms`` / ``ping_p99_ms``: ping round trips as the agents time them, over ``--ping-seconds``
  of steady state once all are Up;
- ``server_cpu_us_per_ping``: the server process's CPU time over that window per ping it answered
  (everything the server does at steady state, which is mostly pings);
- ``fanout_s``: wall time to send CheckHealthCommand to every host at once and collect every answer;
- ``restart_all_up_s``: the server stopped cleanly (SIGTERM) and started again on the same database:
  from the moment it listens again until every host is Up again (agents reconnect with their backoff);
  ``restart_first_connect_to_all_up_s`` measures from the first reconnect instead;
- ``false_alerts``: hosts that went to Alert at any time (none should: no agent failed).

- ``cold_server_cpu_ms_per_agent``: the server process's CPU time during the cold storm, per agent
  (with ``--transport tls`` it includes each agent's TLS handshake; the difference to a ``tcp`` run is
  the handshake's cost).

``--transport tls`` (the default) gives every host a certificate from the server's CA before the
fleet starts (as provisioned hosts have) and connects with mutual TLS 1.3; ``tcp`` runs the server
permissive (``ca.plugin.root.auth.strictness=false``) and the agents on plain sockets. The JSON
says which (``transport``). It also carries the Up counts over time for both storms (``storms``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import trio

from agent.fleet import FleetPlan, placement
from agent.process import tune_gc
from agent.tls import Credentials
from mgmt import logs
from mgmt.agents.host_status import Status
from mgmt.db.database import Database, sqlite_url
from mgmt.db.schema import configuration, hosts
from mgmt.server import ServerConfig, prepare, serve
from mgmt.services import Services
from protocol.messages import CheckHealthCommand

ZONE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "zone.toml"
PINGS_PER_S = 1000


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def fleet_credentials(services: Services, n: int, tls_dir: Path) -> list[str]:
    """Certificates from the server's CA for the fleet's n hosts, as provisioned hosts have them; the
    fleet's arguments that use them."""
    issued = await services.trust.issue_many([placement(FleetPlan("", n), i).guid for i in range(n)])
    for guid, (key, cert) in issued.items():
        Credentials.store(tls_dir / guid, key, cert.pem, services.trust.ca.pem)
    return ["--tls-dir", str(tls_dir)]


class Watch:
    """Up counts over time and every Alert, from the running server's agent manager."""

    def __init__(self) -> None:
        self.alerts: set[int] = set()
        self.series: list[tuple[float, int]] = []

    def attach(self, services: Services) -> None:
        services.agents.status_listeners.append(self.changed)

    def changed(self, host_id: int, status: Status) -> None:
        if status is Status.ALERT:
            self.alerts.add(host_id)

    async def until_all_up(self, services: Services, n: int, timeout: float) -> tuple[float, float]:
        """(time of the first connection, time all were Up), by trio's clock; polled every 50 ms."""
        first = None
        started = trio.current_time()
        with trio.fail_after(timeout):
            while True:
                status = services.agents.status
                up = sum(1 for s in status.values() if s is Status.UP)
                now = trio.current_time()
                if first is None and status:
                    first = now
                self.series.append((now - started, up))
                if up >= n:
                    return first if first is not None else now, now
                await trio.sleep(0.05)  # sampling the count for the timeline


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    n = args.agents
    data = Path(tempfile.mkdtemp(prefix="cumulo-fleet-"))
    config = ServerConfig(
        data_dir=str(data), agent_port=free_port(), api_port=0, bind="127.0.0.1", zone_config=str(ZONE)
    )
    interval = max(1, round(n / PINGS_PER_S))
    db, _msid, _values = prepare(config)
    with db.engine.begin() as conn:
        conn.execute(
            configuration.update().where(configuration.c.name == "ping.interval").values(value=str(interval))
        )
        if args.transport == "tcp":
            strictness = configuration.c.name == "ca.plugin.root.auth.strictness"
            conn.execute(configuration.update().where(strictness).values(value="false"))
    db.dispose()
    stats_file = data / "fleet-stats.json"
    result: dict[str, Any] = {"agents": n, "ping_interval_s": interval, "fleet_processes": args.processes,
                              "transport": args.transport, "sources": args.sources}
    watch = Watch()

    stopped = trio.Event()

    async def server(task_status: trio.TaskStatus[Services] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal stopped
        stopped = trio.Event()
        try:
            await serve(config, task_status=task_status)
        finally:
            stopped.set()

    async with trio.open_nursery() as nursery:
        services: Services = await nursery.start(server)
        watch.attach(services)
        tls_args = await fleet_credentials(services, n, data / "hosts") if args.transport == "tls" else []
        gc.collect()
        rss_before = rss_bytes()
        cpu_before = time.process_time()
        fleet = await trio.lowlevel.open_process(
            [
                sys.executable,
                "-m",
                "agent.fleet",
                "--mgmt",
                f"127.0.0.1:{config.agent_port}",
                "--hosts",
                str(n),
                "--processes",
                str(args.processes),
                "--stats",
                str(stats_file),
                "--sources",
                str(args.sources),
                *tls_args,
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            first, all_up = await watch.until_all_up(services, n, args.timeout)
            result["cold_server_cpu_ms_per_agent"] = round((time.process_time() - cpu_before) * 1000 / n, 3)
            result["all_up_s"] = round(all_up - first, 2)
            cold = list(watch.series)
            gc.collect()
            result["rss_per_agent_kb"] = round((rss_bytes() - rss_before) / n / 1024, 2)
            result["server_rss_mb"] = round(rss_bytes() / 2**20, 1)
            print(f"cold start: all {n} Up {result['all_up_s']} s after the first connect", file=sys.stderr)

            await trio.sleep(interval)  # every agent has pinged once since the storm
            ping_from = time.time()
            pings_before, cpu_before = services.agents.pings, time.process_time()
            await trio.sleep(args.ping_seconds)
            ping_to = time.time()
            # this process is the server; the benchmark itself only sleeps meanwhile
            served = services.agents.pings - pings_before
            result["server_pings"] = served
            cpu_us = (time.process_time() - cpu_before) * 1e6
            result["server_cpu_us_per_ping"] = round(cpu_us / max(1, served), 2)

            host_ids = [h for h, s in services.agents.status.items() if s is Status.UP]
            started = time.perf_counter()
            answers = await services.agents.fan_out(host_ids, [CheckHealthCommand()], timeout=60)
            result["fanout_s"] = round(time.perf_counter() - started, 3)
            failures = sum(1 for a in answers.values() if isinstance(a, Exception) or not a[0].result)
            result["fanout_failures"] = failures
            print(
                f"fan-out: CheckHealth to {len(host_ids)} hosts answered in {result['fanout_s']} s",
                file=sys.stderr,
            )

            # a clean restart, as an operator does it: SIGTERM, then start it again on the same data
            os.kill(os.getpid(), signal.SIGTERM)
            with trio.fail_after(60):
                await stopped.wait()  # it closed every connection and marked its hosts
            watch.series = []
            services = await nursery.start(server)
            watch.attach(services)
            listening = trio.current_time()
            first, all_up = await watch.until_all_up(services, n, args.timeout)
            result["restart_all_up_s"] = round(all_up - listening, 2)
            result["restart_first_connect_to_all_up_s"] = round(all_up - first, 2)
            print(
                f"restart: all {n} Up again {result['restart_all_up_s']} s after it listened", file=sys.stderr
            )
            result["false_alerts"] = len(watch.alerts)
            result["storms"] = {"cold": cold, "restart": watch.series}
        finally:
            fleet.send_signal(signal.SIGTERM)
            with trio.move_on_after(30):
                await fleet.wait()
            nursery.cancel_scope.cancel()

    stats = json.loads(stats_file.read_text()) if stats_file.exists() else {"rtts": []}
    rtts = [rtt * 1000 for t, rtt in stats["rtts"] if ping_from <= t <= ping_to]
    result["ping_samples"] = len(rtts)
    result["ping_rate_per_s"] = round(len(rtts) / (ping_to - ping_from), 1)
    result["ping_p50_ms"] = round(percentile(rtts, 0.50), 3)
    result["ping_p99_ms"] = round(percentile(rtts, 0.99), 3)
    result["ping_mean_ms"] = round(statistics.fmean(rtts), 3) if rtts else None
    result["hosts_in_database"] = hosts_registered(config)
    return result


def hosts_registered(config: ServerConfig) -> int:
    """How many host rows the run left (a check that every agent registered once, and only once)."""
    db = Database(sqlite_url(config.data_dir))
    try:
        with db.engine.connect() as conn:
            return int(conn.scalar(sa.select(sa.func.count()).select_from(hosts)) or 0)
    finally:
        db.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fleet", description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=10000)
    parser.add_argument("--processes", type=int, default=2, help="agent fleet processes")
    parser.add_argument("--ping-seconds", type=float, default=30.0, help="steady-state ping window")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds allowed for each storm")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--sources", type=int, default=100,
                        help="loopback source addresses the hosts connect from (real hosts have their own)")
    parser.add_argument("--transport", choices=["tls", "tcp"], default="tls",
                        help="mutual TLS with the cloud's CA (default), or plain TCP (server permissive)")
    args = parser.parse_args(argv)
    logs.configure("WARNING")
    tune_gc()  # as the server's own entry point does
    result = trio.run(bench, args)
    brief = {k: v for k, v in result.items() if k != "storms"}
    print(json.dumps(brief, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
