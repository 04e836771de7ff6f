"""``/metrics`` on the API port: the cloud's and this management server's figures in Prometheus' text
format (prometheus_client renders them). The VMs' figures are their latest statistics (as
listVirtualMachinesMetrics shows them); the server's are its agents, pings, API calls, jobs and how long
deploys take. Only the addresses in ``prometheus.exporter.allowed.ips`` may read it (default: this
machine); ``prometheus.exporter.enable=false`` turns it off."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

if TYPE_CHECKING:
    from .app import Api

_VM_LABELS = ["vm", "name", "instance"]


def allowed_networks(text: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """``prometheus.exporter.allowed.ips``: comma-separated addresses or networks (bad ones are left out)."""
    out = []
    for part in text.split(","):
        try:
            out.append(ipaddress.ip_network(part.strip(), strict=False))
        except ValueError:
            continue
    return out


class _Snapshot:
    """A collector of families made beforehand (the database is read before rendering, off the
    renderer's synchronous path)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


async def families(api: Api) -> list[Metric]:
    services = api.services
    out: list[Metric] = []

    def gauge(name: str, doc: str, value: float) -> None:
        out.append(GaugeMetricFamily(name, doc, value=value))

    def counter(name: str, doc: str, value: float) -> None:
        out.append(CounterMetricFamily(name, doc, value=value))

    agents = services.agents
    gauge("cumulo_agents_connected", "Hosts whose agents this server holds", len(agents.hosts))
    gauge("cumulo_agent_connections", "Open agent connections on this server", agents.connections)
    counter("cumulo_agent_pings", "Agent pings this server answered", agents.pings)
    counter("cumulo_api_requests", "API requests this server answered", api.requests)
    gauge("cumulo_jobs_running", "Async jobs running (or waiting their turn) on this server",
          len(services.jobs.done))
    ended = CounterMetricFamily("cumulo_jobs_ended", "Async jobs this server ended", labels=["status"])
    for status, name in ((1, "succeeded"), (2, "failed")):
        ended.add_metric([name], services.jobs.ended.get(status, 0))
    out.append(ended)
    latency = services.vms.deploy_latency
    buckets, running = [], 0
    for bound, count in zip((*latency.bounds, float("inf")), latency.counts, strict=True):
        running += count
        buckets.append(("+Inf" if bound == float("inf") else str(bound), running))
    out.append(HistogramMetricFamily("cumulo_deploy_seconds", "From a deploy's job start to its VM running",
                                     buckets=buckets, sum_value=latency.total))
    collector = services.stats_collector
    counter("cumulo_vm_stats_rounds", "VM statistics collections this server made",
            collector.rounds if collector is not None else 0)

    counts = await services.metrics.counts()
    vms = GaugeMetricFamily("cumulo_vms", "VMs by state (not expunged)", labels=["state"])
    for state, n in sorted(counts["vms"].items()):
        vms.add_metric([state], n)
    hosts = GaugeMetricFamily("cumulo_hosts", "Hosts by status", labels=["status"])
    for state, n in sorted(counts["hosts"].items()):
        hosts.add_metric([state], n)
    out += [vms, hosts]

    per_vm: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
        "cpu": GaugeMetricFamily("cumulo_vm_cpu_used_percent", "A VM's CPU use, percent of its vCPUs",
                                 labels=_VM_LABELS),
        "cpu_time": CounterMetricFamily("cumulo_vm_cpu_seconds", "A VM's CPU time since it started",
                                        labels=_VM_LABELS),
        "memory": GaugeMetricFamily("cumulo_vm_memory_bytes", "A VM's memory", labels=_VM_LABELS),
        "free": GaugeMetricFamily("cumulo_vm_memory_free_bytes", "Memory unused inside a VM (its balloon "
                                  "driver's figure)", labels=_VM_LABELS),
        "disk_read": CounterMetricFamily("cumulo_vm_disk_read_bytes", "Bytes a VM read from its disks",
                                         labels=_VM_LABELS),
        "disk_write": CounterMetricFamily("cumulo_vm_disk_written_bytes", "Bytes a VM wrote to its disks",
                                          labels=_VM_LABELS),
        "disk_ops": CounterMetricFamily("cumulo_vm_disk_operations", "A VM's disk reads and writes",
                                        labels=[*_VM_LABELS, "op"]),
        "rx": CounterMetricFamily("cumulo_vm_network_receive_bytes", "Bytes a VM received",
                                  labels=_VM_LABELS),
        "tx": CounterMetricFamily("cumulo_vm_network_transmit_bytes", "Bytes a VM sent",
                                  labels=_VM_LABELS),
    }
    for r in await services.metrics.vm_figures():
        labels = [r.uuid, r.display_name, r.instance_name]
        per_vm["cpu"].add_metric(labels, r.cpu_utilization)
        per_vm["cpu_time"].add_metric(labels, r.cpu_time_ns / 1e9)
        per_vm["memory"].add_metric(labels, r.memory_kbs * 1024)
        per_vm["free"].add_metric(labels, r.memory_free_kbs * 1024)
        per_vm["disk_read"].add_metric(labels, r.disk_read_bytes)
        per_vm["disk_write"].add_metric(labels, r.disk_write_bytes)
        per_vm["disk_ops"].add_metric([*labels, "read"], r.disk_read_ios)
        per_vm["disk_ops"].add_metric([*labels, "write"], r.disk_write_ios)
        per_vm["rx"].add_metric(labels, r.net_rx_bytes)
        per_vm["tx"].add_metric(labels, r.net_tx_bytes)
    out += list(per_vm.values())
    return out


async def endpoint(api: Api, request: Request) -> Response:
    values = api.services.values
    if not bool(values.get("prometheus.exporter.enable", True)):
        return PlainTextResponse("the Prometheus exporter is off (prometheus.exporter.enable)", 404)
    client = request.client.host if request.client is not None else ""
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        address = None
    allowed = allowed_networks(str(values.get("prometheus.exporter.allowed.ips", "127.0.0.1,::1")))
    if address is None or not any(address in net for net in allowed):
        return PlainTextResponse("this address may not read the metrics (prometheus.exporter.allowed.ips)",
                                 403)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(await families(api)))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def route(api: Api) -> Any:
    async def handler(request: Request) -> Response:
        return await endpoint(api, request)

    return handler
