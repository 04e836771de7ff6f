"""VM statistics from the hosts, CloudStack's metrics commands and the Prometheus endpoint, on simulated
hosts (whose guests' counters grow with the time they run)."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import trio

from .conftest import ApiCloud, start_api


async def next_rounds(api: ApiCloud, n: int = 2) -> None:
    """Wait for ``n`` more collections of VM statistics (the collector signals each one)."""
    collector = api.cloud.services.stats_collector
    assert collector is not None
    for _ in range(n):
        await collector.collected.wait()


async def deploy(api: ApiCloud) -> dict[str, Any]:
    cs = api.client()
    zone = (await api.call(lambda: cs.listZones()))["zone"][0]
    offering = (await api.call(lambda: cs.listServiceOfferings(name="small")))["serviceoffering"][0]
    template = (await api.call(lambda: cs.listTemplates(templatefilter="all")))["template"][0]
    vm: dict[str, Any] = (await api.call(lambda: cs.deployVirtualMachine(
        zoneid=zone["id"], serviceofferingid=offering["id"], templateid=template["id"], fetch_result=True,
    )))["virtualmachine"]
    return vm


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


async def test_the_metrics_commands_answer_from_the_hosts_statistics(nursery: trio.Nursery,
                                                                     tmp_path: Path) -> None:
    api = await start_api(nursery, tmp_path, **{"vm.stats.interval": "100"})
    cs = api.client()
    vm = await deploy(api)
    await next_rounds(api)
    first = (await api.call(lambda: cs.listVirtualMachinesMetrics(id=vm["id"])))["virtualmachine"][0]
    await next_rounds(api)
    later = (await api.call(lambda: cs.listVirtualMachinesMetrics(id=vm["id"])))["virtualmachine"][0]
    assert first["cpuused"].endswith("%") and float(first["cpuused"][:-1]) > 0
    assert later["diskkbsread"] >= first["diskkbsread"] > 0 and later["memorykbs"] == 1024 * 1024
    assert later["cputotal"] == f"{vm['cpunumber'] * vm['cpuspeed'] / 1000:.2f} Ghz"
    assert later["memorytotal"] == "1.00 GB"
    assert later["diskiopstotal"] == later["diskioread"] + later["diskiowrite"]
    assert later["ipaddress"] == vm["nic"][0]["ipaddress"]
    # listVirtualMachines shows the statistics too, unless details leaves them out
    plain = (await api.call(lambda: cs.listVirtualMachines(id=vm["id"])))["virtualmachine"][0]
    assert "cpuused" in plain and "cputotal" not in plain
    trimmed = (await api.call(lambda: cs.listVirtualMachines(id=vm["id"], details="min")))
    trimmed = trimmed["virtualmachine"][0]
    assert "cpuused" not in trimmed and "nic" not in trimmed

    host = (await api.call(lambda: cs.listHostsMetrics(id=later["hostid"])))["host"][0]
    assert host["instances"] == "1 / 1" and host["cpuusedghz"] != "0.00 Ghz"
    assert host["cputhreshold"] is False and host["memorytotalgb"].endswith(" GB")
    cluster = (await api.call(lambda: cs.listClustersMetrics()))["cluster"]
    assert any(c["cpuused"] != "0.00 Ghz" for c in cluster) and all("/" in c["hosts"] for c in cluster)
    zone = (await api.call(lambda: cs.listZonesMetrics()))["zone"][0]
    assert zone["cputotal"].endswith(" Ghz") and zone["clusters"] == "4"
    pools = (await api.call(lambda: cs.listStoragePoolsMetrics()))["storagepool"]
    assert all(p["disksizetotalgb"].endswith(" GB") for p in pools)
    volumes = (await api.call(lambda: cs.listVolumesMetrics(virtualmachineid=vm["id"])))["volume"]
    assert volumes[0]["sizegb"] == "2.00 GB"
    infra = (await api.call(lambda: cs.listInfrastructure()))["infrastructure"]
    assert (infra["zones"], infra["hosts"], infra["managementservers"], infra["routers"]) == (1, 4, 1, 0)
    server = (await api.call(lambda: cs.listManagementServersMetrics()))["managementserver"][0]
    assert server["agentcount"] == 4 and server["availableprocessors"] >= 1
    db = (await api.call(lambda: cs.listDbMetrics()))["dbMetrics"]
    assert db["version"].startswith("SQLite")

    # a stopped VM has no statistics to show
    await api.call(lambda: cs.stopVirtualMachine(id=vm["id"], fetch_result=True))
    stopped = (await api.call(lambda: cs.listVirtualMachinesMetrics(id=vm["id"])))["virtualmachine"][0]
    assert "cpuused" not in stopped


async def test_prometheus_reads_the_same_figures_from_allowed_addresses_only(nursery: trio.Nursery,
                                                                             tmp_path: Path) -> None:
    api = await start_api(nursery, tmp_path, **{"vm.stats.interval": "100"})
    vm = await deploy(api)
    await next_rounds(api)
    url = api.url.replace("/client/api", "/metrics")
    status, text = await api.call(lambda: get(url))
    assert status == 200
    lines = text.splitlines()
    assert "cumulo_agents_connected 4.0" in lines
    assert 'cumulo_vms{state="Running"} 1.0' in lines
    assert any(line.startswith("cumulo_deploy_seconds_count 1.0") for line in lines)
    cpu = [line for line in lines if line.startswith("cumulo_vm_cpu_seconds_total{") and vm["id"] in line]
    assert cpu and float(cpu[0].rsplit(" ", 1)[1]) > 0
    assert any(line.startswith("cumulo_api_requests_total ") for line in lines)
    values = api.cloud.services.values
    values["prometheus.exporter.allowed.ips"] = "10.0.0.0/8"  # (read at each request)
    assert (await api.call(lambda: get(url)))[0] == 403
    values["prometheus.exporter.enable"] = False
    assert (await api.call(lambda: get(url)))[0] == 404
