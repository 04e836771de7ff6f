"""The fleet runner as a process: distinct hosts spread over pods and clusters, and a clean stop."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import trio

from agent.fleet import FleetPlan, placement
from protocol.messages import StartupRoutingCommand

from .fake_server import FakeServer


def test_placement_spreads_hosts_over_pods_and_clusters() -> None:
    plan = FleetPlan("m:1", hosts=8, pods=2, clusters_per_pod=2)
    spots = [placement(plan, i) for i in range(8)]
    assert len({p.guid for p in spots}) == 8
    assert {(p.pod, p.cluster) for p in spots} == {("pod1", "pod1-cluster1"), ("pod1", "pod1-cluster2"),
                                                   ("pod2", "pod2-cluster1"), ("pod2", "pod2-cluster2")}


async def test_fleet_brings_every_agent_up_and_stops_on_sigint(nursery: trio.Nursery, tmp_path: Path) -> None:
    server = FakeServer(ping_interval=0.5)
    await nursery.start(server.serve)
    hosts = 40
    with (tmp_path / "fleet.log").open("wb") as out:
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "agent.fleet", "--mgmt", f"127.0.0.1:{server.port}", "--hosts", str(hosts),
             "--processes", "2"], stdout=out, stderr=subprocess.STDOUT)
    links = await server.wait_for(lambda: len(server.ready_links()) == hosts and server.ready_links(), 60)
    startups = [lk.startups[0][0] for lk in links]
    assert all(isinstance(s, StartupRoutingCommand) for s in startups)
    assert len({s.guid for s in startups}) == hosts  # type: ignore[attr-defined]
    assert len({s.memory_bytes for s in startups}) > 1  # type: ignore[attr-defined]
    await server.wait_for(lambda: f"{hosts}/{hosts} up" in (tmp_path / "fleet.log").read_text(), 30)
    proc.send_signal(signal.SIGINT)
    with trio.fail_after(30):
        assert await proc.wait() == 0
    await server.wait_for(lambda: not server.ready_links(), 30)
    await server.stop()
