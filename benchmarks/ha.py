"""HA benchmark: hosts die, their HA VMs come back elsewhere; hosts cut off from the server stay put.

    python -m benchmarks.ha --hosts 100 --vms 1000 --kill 10 [--partition 5] --json FILE

The management server runs in this process on SQLite with ``make run``'s HA defaults (ping.interval,
ha.heartbeat.*: see docs/ha.md); ``--hosts`` simulated hosts run in this process too, over real TCP
and TLS, each writing its heartbeat on a real directory standing for the zone's shared pool. ``--vms``
HA-enabled VMs are deployed and spread over the hosts. Then, at one moment, ``--kill`` hosts die (their
agents end: connection closed, heartbeat stopped) and ``--partition`` other hosts lose their link to
the server while still writing their heartbeat.

Output keys: ``detect_s`` (a kill to that host Down: the slowest), ``recover_s`` (the kills to the last
of their VMs Running on another host), ``restarted``, ``lost`` (VMs of killed hosts not Running
elsewhere by the deadline), ``duplicates`` (VMs running on two live hosts at the end), ``false_downs``
(partitioned hosts marked Down), and more: each host's detection, the alerts raised.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import trio

from agent.faults import FaultTable
from agent.resource import Placement
from agent.shell import Agent, AgentSettings
from agent.simulator import HostSpec, SimulatorResource
from benchmarks.deploy import ZONE, free_port
from mgmt import logs
from mgmt.agents.host_status import Status
from mgmt.db.schema import alerts, hosts, networks, service_offerings, templates, vms, zones
from mgmt.local import host_credentials
from mgmt.orchestration.vms import DeploySpec
from mgmt.planner import capacity
from mgmt.process import tune_gc
from mgmt.server import ServerConfig, serve
from mgmt.services import Services

CLUSTERS = ("pod1-cluster1", "pod1-cluster2", "pod2-cluster1", "pod2-cluster2")
SPEC = HostSpec(cpus=64, cpu_speed_mhz=2000, memory_bytes=256 * 2**30)


def _state(conn: Any) -> dict[int, tuple[str, int | None, str]]:
    return {r.id: (r.state, r.host_id, r.instance_name)
            for r in conn.execute(sa.select(vms.c.id, vms.c.state, vms.c.host_id, vms.c.instance_name)
                                  .where(vms.c.removed.is_(None)))}


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    data = Path(tempfile.mkdtemp(prefix="cumulo-ha-"))
    storage = data / "shared"
    (data / "zone.toml").write_text(ZONE)
    config = ServerConfig(data_dir=str(data), agent_port=free_port(), api_port=0, bind="127.0.0.1",
                          zone_config=str(data / "zone.toml"))
    rng = random.Random(args.seed)
    result: dict[str, Any] = {"hosts": args.hosts, "vms": args.vms, "kill": args.kill,
                              "partition": args.partition}
    try:
        async with trio.open_nursery() as nursery:
            services: Services = await nursery.start(serve, config)
            manager = services.agents
            guids = [f"ha-host-{i:04d}" for i in range(args.hosts)]
            creds = await host_credentials(services, guids, data / "hosts")
            faults = {g: FaultTable() for g in guids}
            scopes = {g: trio.CancelScope() for g in guids}
            sims: dict[str, SimulatorResource] = {}

            async def run(guid: str, i: int) -> None:
                cluster = CLUSTERS[i % len(CLUSTERS)]
                settings = AgentSettings(
                    mgmt=[("127.0.0.1", config.agent_port)], credentials=creds[guid],
                    placement=Placement(guid, guid, "zone1", cluster.split("-")[0], cluster,
                                        private_ip=f"10.1.{i // 250}.{i % 250 + 1}"))
                sims[guid] = SimulatorResource(SPEC, faults[guid], f"/local/{guid}",
                                               storage_root=str(storage))
                with scopes[guid]:
                    await Agent(settings, sims[guid], rng=random.Random(i)).run()

            for i, guid in enumerate(guids):
                nursery.start_soon(run, guid, i)
            with trio.fail_after(300):
                while (sum(1 for s in manager.status.values() if s is Status.UP) < args.hosts
                       or services.placement.planner.index.n < args.hosts):
                    await trio.sleep(0.1)  # the hosts come Up
            with services.db.engine.connect() as conn:
                ids = [int(conn.scalar(sa.select(t.c.id)) or 0)
                       for t in (zones, service_offerings, templates, networks)]
                host_ids = dict(conn.execute(sa.select(hosts.c.guid, hosts.c.id)).all())
            spec = DeploySpec(ids[0], ids[1], ids[2], (ids[3],), ha_enabled=True)
            started = time.monotonic()
            sem = trio.Semaphore(args.concurrency)

            async def deploy() -> None:
                async with sem:
                    await services.orchestrator.deploy(spec)

            async with trio.open_nursery() as deploys:
                for _ in range(args.vms):
                    deploys.start_soon(deploy)
            result["deploy_s"] = round(time.monotonic() - started, 1)
            await trio.sleep(2 * services.agents.ping_interval)  # the hosts' reports settle first

            victims = rng.sample(guids, args.kill)
            cut = rng.sample([g for g in guids if g not in victims], args.partition)
            with services.db.engine.connect() as conn:
                before = _state(conn)
            dead_ids = {host_ids[g] for g in victims}
            affected = {v for v, (s, h, _) in before.items() if h in dead_ids and s == "Running"}
            result["vms_on_killed_hosts"] = len(affected)
            t0 = time.monotonic()
            for g in victims:
                scopes[g].cancel()  # the host dies: connection closed, heartbeat stopped
            for g in cut:
                faults[g].partitioned = True  # cut off from the server; storage still written
            detected: dict[str, float] = {}
            recovered_at = None
            with trio.move_on_after(args.deadline):
                while True:
                    now = time.monotonic() - t0
                    for g in victims:
                        if g not in detected and manager.status.get(host_ids[g]) is Status.DOWN:
                            detected[g] = round(now, 2)
                    with services.db.engine.connect() as conn:
                        state = _state(conn)
                    back = [v for v in affected if state.get(v, ("", None, ""))[0] == "Running"
                            and state[v][1] not in dead_ids]
                    if len(back) == len(affected) and len(detected) == len(victims):
                        recovered_at = now
                        break
                    await trio.sleep(0.1)  # sampling the outcome
            # partitions keep going a while longer: a false Down would show now
            await trio.sleep(args.watch)
            with services.db.engine.connect() as conn:
                state = _state(conn)
                statuses = dict(conn.execute(sa.select(hosts.c.guid, hosts.c.status)).all())
                raised = Counter(r.name for r in conn.execute(sa.select(alerts.c.name)))
                leaks = capacity.check_totals(conn)
            live = [g for g in guids if g not in victims]
            copies = Counter(name for g in live for name, vm in sims[g].host.vms.items()
                             if vm.state.value == "PowerOn")
            result.update(
                detect_s=max(detected.values()) if len(detected) == len(victims) else None,
                recover_s=round(recovered_at, 2) if recovered_at is not None else None,
                restarted=sum(1 for v in affected if state.get(v, ("", None, ""))[0] == "Running"
                              and state[v][1] not in dead_ids),
                lost=sum(1 for v in affected if state.get(v, ("", None, ""))[0] != "Running"
                         or state[v][1] in dead_ids),
                duplicates=sum(1 for n in copies.values() if n > 1),
                false_downs=sum(1 for g in cut if statuses.get(g) == "Down"),
                partitioned_alert=sum(1 for g in cut if statuses.get(g) == "Alert"),
                detect_each_s=sorted(detected.values()),
                alerts=dict(raised),
                capacity_problems=len(leaks),
                ha_restarts=services.ha.restarted if services.ha else 0,
            )
            nursery.cancel_scope.cancel()
    finally:
        shutil.rmtree(data, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ha", description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--vms", type=int, default=1000)
    parser.add_argument("--kill", type=int, default=10)
    parser.add_argument("--partition", type=int, default=5, help="hosts cut off from the server")
    parser.add_argument("--concurrency", type=int, default=32, help="deploys at once while filling")
    parser.add_argument("--deadline", type=float, default=180.0, help="seconds to wait for recovery")
    parser.add_argument("--watch", type=float, default=20.0,
                        help="seconds the partitions go on after recovery (false Downs would show)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", default="", help="write the result here too")
    args = parser.parse_args(argv)
    if args.kill + args.partition >= args.hosts:
        parser.error("--kill and --partition must leave hosts to run the VMs")
    logs.configure("WARNING")
    tune_gc()
    result = trio.run(bench, args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
