"""``python -m agent.fleet``: many simulated agents, each on its own TCP connection, over several processes.

    python -m agent.fleet --mgmt HOST:PORT --hosts N [--processes K] [--faults FILE]
                          [--zone Z] [--pods P] [--clusters-per-pod C] [--ramp SECONDS] [--stats FILE]
                          [--tls-dir DIR [--token TOKEN]]

Host i gets the guid ``fleet-<i>``, the name ``sim-<i>``, pod ``pod<p>`` and cluster ``pod<p>-cluster<c>``
(spread round-robin), and one of a few host sizes. Every process runs its share of agents in one trio
loop and reports its counts each second; the parent prints ``connected/up`` until Ctrl-C (or SIGTERM),
then stops every process cleanly. SIGHUP makes every process reload the fault file. With ``--stats``
the agents time each ping's round trip, and at exit a JSON file gets every round trip and the
connected/Up counts over time (for the fleet benchmark). With ``--tls-dir`` each agent connects with
TLS and the certificate in ``DIR/<guid>``, enrolling for one with ``--token`` when it has none.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import signal
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection as Pipe
from pathlib import Path

import trio

from agent.process import tune_gc

from .config import parse_servers
from .faults import FaultTable
from .resource import Placement
from .shell import Agent, AgentSettings
from .simulator import HostSpec, SimulatorResource
from .tls import Credentials

GIB = 1024**3
SIZES = (HostSpec(16, 2400, 64 * GIB, 2048 * GIB), HostSpec(32, 2600, 128 * GIB, 4096 * GIB),
         HostSpec(8, 2000, 32 * GIB, 1024 * GIB), HostSpec(64, 2200, 256 * GIB, 8192 * GIB))


@dataclass(frozen=True)
class FleetPlan:
    mgmt: str
    hosts: int
    processes: int = 1
    zone: str = "zone1"
    pods: int = 2
    clusters_per_pod: int = 2
    faults: str = ""
    ramp: float = 0.0  # seconds over which to spread the first connects
    ping_retries: int = 5
    stats: str = ""  # a JSON file written at exit: every ping's round trip and the Up counts over time
    tls_dir: str = ""  # TLS: host i's credentials in TLS_DIR/<guid>; empty: plain TCP
    token: str = ""  # registration token for hosts without credentials there yet
    sources: int = 0  # host i connects from 127.0.<k // 250>.<k % 250 + 1>, k = i % sources (0: any)
    sim_storage: str = ""  # the directory standing for the shared pools (heartbeats); empty: none
    spread: bool = False  # host i starts at server i mod n of the list (else all at the first)


def placement(plan: FleetPlan, i: int) -> Placement:
    pod = i % plan.pods + 1
    cluster = (i // plan.pods) % plan.clusters_per_pod + 1
    return Placement(guid=f"fleet-{i:06d}", name=f"sim-{i:06d}", zone=plan.zone, pod=f"pod{pod}",
                     cluster=f"pod{pod}-cluster{cluster}",
                     private_ip=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")


def raise_fd_limit() -> int:
    """Allow as many open files as the hard limit: every agent holds a socket."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def run_share(plan: FleetPlan, indexes: range, report: Pipe | None) -> None:
    """Run this process's agents until SIGTERM/SIGINT, reporting counts each second."""
    servers = parse_servers(plan.mgmt)
    faults = FaultTable.load(plan.faults) if plan.faults else FaultTable()
    agents = []
    for i in indexes:
        where = placement(plan, i)
        credentials = Credentials(Path(plan.tls_dir) / where.guid) if plan.tls_dir else None
        source = f"127.0.{i % plan.sources // 250}.{i % plan.sources % 250 + 1}" if plan.sources else None
        mine = servers[i % len(servers):] + servers[:i % len(servers)] if plan.spread else servers
        settings = AgentSettings(mgmt=mine, placement=where, ping_retries=plan.ping_retries,
                                 drain_seconds=5, credentials=credentials, token=plan.token,
                                 local_address=source)
        agent = Agent(settings, SimulatorResource(SIZES[i % len(SIZES)], faults, f"/sim/{i}",
                                                  storage_root=plan.sim_storage))
        if plan.stats:
            agent.ping_rtts = []
        agents.append(agent)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:
            step = plan.ramp / max(len(agents), 1)
            for agent in agents:
                nursery.start_soon(agent.run)
                if step:
                    await trio.sleep(step)  # spreading the connects is the point

            async def stop() -> None:
                async for signum in signals:
                    if signum == signal.SIGHUP:
                        if plan.faults:  # every host shares the table: reload it in place
                            faults.replace_with(FaultTable.load(plan.faults))
                        continue
                    async with trio.open_nursery() as drains:  # every agent finishes within 5 s
                        for agent in agents:
                            drains.start_soon(agent.drain, 5.0)
                    nursery.cancel_scope.cancel()

            nursery.start_soon(stop)
            while True:
                if report is not None:
                    up = sum(a.status == "up" for a in agents)
                    connected = sum(a.status in ("connected", "up") for a in agents)
                    rtts: list[tuple[float, float]] = []
                    for agent in agents:
                        if agent.ping_rtts:
                            rtts.extend(agent.ping_rtts)
                            agent.ping_rtts.clear()
                    report.send((connected, up, rtts))
                await trio.sleep(1 if not plan.stats else 0.25)  # the reporting period


def _child(plan: FleetPlan, indexes: range, report: Pipe) -> None:
    raise_fd_limit()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until trio's receiver takes it over
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent turns Ctrl-C into SIGTERM for us
    tune_gc()
    trio.run(run_share, plan, indexes, report)


class _Stop(Exception):
    """SIGINT or SIGTERM reached the parent."""


def _stop(signum: int, _frame: object) -> None:
    raise _Stop(signal.Signals(signum).name)


def run_fleet(plan: FleetPlan, *, out: object = sys.stdout, until_up: bool = False) -> int:
    """Start the processes and print counts; return when interrupted (or when all are Up, if asked)."""
    raise_fd_limit()
    # Both signals stop the fleet cleanly, even when the shell started us with SIGINT ignored.
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    ctx = mp.get_context("spawn")
    shares = [range(k, plan.hosts, plan.processes) for k in range(plan.processes)]
    pipes, procs = [], []
    for share in shares:
        parent_end, child_end = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, args=(plan, share, child_end), daemon=True)
        proc.start()
        child_end.close()
        pipes.append(parent_end)
        procs.append(proc)

    def forward_sighup(_signum: int, _frame: object) -> None:
        for proc in procs:
            if proc.pid is not None and proc.is_alive():
                os.kill(proc.pid, signal.SIGHUP)

    signal.signal(signal.SIGHUP, forward_sighup)
    counts = [(0, 0)] * len(procs)
    started = time.monotonic()
    rtts: list[tuple[float, float]] = []
    timeline: list[tuple[float, int, int]] = []
    printed = 0.0
    try:
        while True:
            for k, pipe in enumerate(pipes):
                while pipe.poll():
                    connected, up, batch = pipe.recv()
                    counts[k] = (connected, up)
                    rtts.extend(batch)
            connected, up = (sum(c[0] for c in counts), sum(c[1] for c in counts))
            timeline.append((time.time(), connected, up))
            if time.monotonic() - printed >= 1:
                printed = time.monotonic()
                print(f"[{time.monotonic() - started:6.1f}s] agents: {connected}/{plan.hosts} connected, "
                      f"{up}/{plan.hosts} up", file=out, flush=True)  # type: ignore[call-overload]
            if until_up and up == plan.hosts:
                return 0
            if not any(p.is_alive() for p in procs):
                return 1
            mp.connection.wait(pipes, timeout=1)
    except _Stop:
        return 0
    finally:
        if plan.stats:
            with open(plan.stats, "w") as f:
                json.dump({"rtts": rtts, "timeline": timeline}, f)
        for proc in procs:
            if proc.is_alive():
                proc.terminate()  # SIGTERM: the child drains and exits
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.fleet", description=__doc__.split("\n\n")[0])
    parser.add_argument("--mgmt", required=True, help="HOST:PORT[,HOST:PORT...]")
    parser.add_argument("--spread", action="store_true",
                        help="with several servers, host i starts at the (i mod n)th (else all at the first)")
    parser.add_argument("--hosts", type=int, required=True)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--faults", default="", help="fault rules (TOML) for every host")
    parser.add_argument("--zone", default="zone1")
    parser.add_argument("--pods", type=int, default=2)
    parser.add_argument("--clusters-per-pod", type=int, default=2)
    parser.add_argument("--ramp", type=float, default=0.0, help="seconds to spread the first connects over")
    parser.add_argument("--until-up", action="store_true", help="exit 0 once every agent is Up")
    parser.add_argument("--stats", default="", help="JSON file written at exit: ping round trips, Up counts")
    parser.add_argument("--tls-dir", default="", help="TLS: each host's credentials in DIR/<guid>")
    parser.add_argument("--sim-storage", default="",
                        help="a directory standing for the shared pools: hosts heartbeat there (HA)")
    parser.add_argument("--token", default="", help="registration token for hosts without credentials yet")
    parser.add_argument("--sources", type=int, default=0,
                        help="spread the hosts over this many loopback source addresses, as real hosts "
                             "have addresses of their own (the server's per-address limits see them apart)")
    args = parser.parse_args(argv)
    if not 0 <= args.sources <= 250 * 256:
        parser.error("--sources is 0 to 64000")
    if args.hosts < 1 or not 1 <= args.processes <= args.hosts or args.pods < 1 or args.clusters_per_pod < 1:
        parser.error("--hosts, --pods and --clusters-per-pod must be positive; 1 <= --processes <= --hosts")
    try:
        parse_servers(args.mgmt)
    except ValueError as e:
        parser.error(str(e))
    plan = FleetPlan(args.mgmt, args.hosts, args.processes, args.zone, args.pods, args.clusters_per_pod,
                     args.faults, args.ramp, stats=args.stats, tls_dir=args.tls_dir, token=args.token,
                     sources=args.sources, sim_storage=args.sim_storage, spread=args.spread)
    return run_fleet(plan, until_up=args.until_up)


if __name__ == "__main__":
    sys.exit(main())
