"""Deploy benchmark: VMs from ``deployVirtualMachine`` to Running through the HTTP API, many at once.

    python -m benchmarks.deploy --hosts 1000 --vms 2000 --concurrency 64 --json FILE [--db postgresql]

The management server runs in this process (its database statements are counted with an SQLAlchemy
event), on SQLite or on a private PostgreSQL the benchmark starts (fsync on); ``--hosts`` simulated
hosts run in ``python -m agent.fleet`` processes over real TCP, with certificates from the server's
CA; the clients run in another process: ``--concurrency`` threads, each with the real ``cs`` client (signed
requests, HTTP keep-alive), each deploying a VM and polling ``queryAsyncJobResult`` (every 10 ms at
first, backing off to 100 ms) until it is Running, then the next. A deploy's latency is from the call
until the poll that sees it done.

Output keys: ``hosts, vms, deploys_per_s, p50_ms, p99_ms, db_statements_per_deploy, overcommits,
duplicate_ips`` and more: failures, the statements split into the deploy's own transactions and the
reads (authentication and polls), and where each host's capacity stands.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import trio

from benchmarks.fleet import fleet_credentials
from benchmarks.postgres import private_postgres
from mgmt import logs
from mgmt.agents.host_status import Status
from mgmt.db.schema import clusters, configuration, host_capacity, hosts, nics
from mgmt.planner import capacity
from mgmt.process import tune_gc
from mgmt.server import ServerConfig, prepare, serve
from mgmt.services import Services

ZONE = """
[[zone]]
name = "zone1"
dns1 = "10.0.0.2"
  [[zone.pod]]
  name = "pod1"
    [[zone.pod.cluster]]
    name = "pod1-cluster1"
    [[zone.pod.cluster]]
    name = "pod1-cluster2"
  [[zone.pod]]
  name = "pod2"
    [[zone.pod.cluster]]
    name = "pod2-cluster1"
    [[zone.pod.cluster]]
    name = "pod2-cluster2"
  [[zone.storage_pool]]
  name = "primary"
  path = "/export/primary"
  capacity_gb = 10485760
  [[zone.network]]
  name = "guest"
  cidr = "10.64.0.0/10"
  gateway = "10.64.0.1"
  ip_ranges = [["10.64.0.10", "10.127.255.250"]]

[[template]]
name = "tiny"
url = "file:///var/lib/cumulo/templates/tiny.qcow2"
hypervisor = "Simulator"
size_gb = 1

[[service_offering]]
name = "small"
cpus = 1
cpu_speed_mhz = 500
memory_mb = 512
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# --- the client process ----------------------------------------------------------------------------------


def clients(
    url: str, key: str, secret: str, ids: dict[str, str], vms: int, concurrency: int, out: Any
) -> None:
    """Deploy ``vms`` VMs from ``concurrency`` threads; sends (latencies, failures, wall seconds)."""
    from cs import CloudStack

    next_vm = iter(range(vms))
    lock = threading.Lock()
    latencies: list[float] = []
    failures: Counter[str] = Counter()

    def worker() -> None:
        cs = CloudStack(endpoint=url, key=key, secret=secret, timeout=120, fetch_result=False)
        while True:
            with lock:
                n = next(next_vm, None)
            if n is None:
                return
            started = time.perf_counter()
            try:
                extra = ({"networkids": ids["network"], "securitygroupnames": "bench"} if "network" in ids
                         else {})
                job = cs.deployVirtualMachine(
                    zoneid=ids["zone"],
                    serviceofferingid=ids["offering"],
                    templateid=ids["template"],
                    name=f"vm-{n}",
                    **extra,
                )
                delay = 0.01
                while True:
                    time.sleep(delay)  # polling the job, as clients do
                    status = cs.queryAsyncJobResult(jobid=job["jobid"])
                    if status["jobstatus"] != 0:
                        break
                    delay = min(0.1, delay * 1.5)
            except Exception as e:
                with lock:
                    failures[f"{type(e).__name__}: {e}"[:160]] += 1
                continue
            with lock:
                if status["jobstatus"] == 1:
                    latencies.append(time.perf_counter() - started)
                else:
                    failures[str(status["jobresult"].get("errortext", ""))[:80]] += 1

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.send((latencies, dict(failures), time.perf_counter() - started))


# --- the run -------------------------------------------------------------------------------------------


class Statements:
    """Statements the server ran, split into read-only snapshots (authentication, polls, lists) and the
    rest (the deploys' own transactions)."""

    def __init__(self) -> None:
        self.reads = 0
        self.writes = 0
        self.counting = False

    def __call__(self, conn: Any, *_args: Any) -> None:
        if self.counting:
            if conn.get_execution_options().get("cumulo_read_only"):
                self.reads += 1
            else:
                self.writes += 1


def inventory(conn: Any) -> dict[str, Any]:
    rows = conn.execute(
        sa.select(host_capacity, clusters.c.cpu_overcommit, clusters.c.mem_overcommit)
        .join(hosts, hosts.c.id == host_capacity.c.host_id)
        .join(clusters, clusters.c.id == hosts.c.cluster_id)
    ).all()
    over = sum(
        1
        for r in rows
        if r.cpu_mhz_used + r.cpu_mhz_reserved > r.cpu_mhz_total * (r.cpu_overcommit or 1.0)
        or r.memory_used + r.memory_reserved > r.memory_total * (r.mem_overcommit or 1.0)
    )
    ips = list(conn.scalars(sa.select(nics.c.ip_address).where(nics.c.ip_address.is_not(None))))
    return {
        "overcommits": over,
        "capacity_mismatches": len(capacity.check_totals(conn)),
        "duplicate_ips": len(ips) - len(set(ips)),
        "hosts_used": sum(1 for r in rows if r.cpu_mhz_used > 0),
    }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    data = Path(tempfile.mkdtemp(prefix="cumulo-deploy-"))
    zone_file = data / "zone.toml"
    zone_file.write_text(ZONE)
    config = ServerConfig(
        data_dir=str(data), agent_port=free_port(), api_port=0, bind="127.0.0.1", zone_config=str(zone_file),
        db=args.db_url, peer_port=0,
    )
    db, _msid, _values = prepare(config)
    with db.engine.begin() as conn:
        conn.execute(configuration.update().where(configuration.c.name == "ping.interval").values(value="60"))
    db.dispose()
    result: dict[str, Any] = {
        "hosts": args.hosts,
        "vms": args.vms,
        "concurrency": args.concurrency,
        "codec": os.environ.get("CUMULO_CODEC", "native"),
        "planner": os.environ.get("CUMULO_PLANNER", "native"),
        "database": args.db,
    }
    statements = Statements()
    async with trio.open_nursery() as nursery:
        services: Services = await nursery.start(serve, config)
        tls_args = await fleet_credentials(services, args.hosts, data / "hosts")
        sa.event.listen(services.db.engine, "before_cursor_execute", statements)
        fleet = await trio.lowlevel.open_process(
            [
                sys.executable,
                "-m",
                "agent.fleet",
                "--mgmt",
                f"127.0.0.1:{config.agent_port}",
                "--hosts",
                str(args.hosts),
                "--processes",
                str(args.fleet_processes),
                *tls_args,
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            with trio.fail_after(300):
                while (
                    sum(1 for s in services.agents.status.values() if s is Status.UP) < args.hosts
                    or services.placement.planner.index.n < args.hosts
                ):
                    await trio.sleep(0.1)  # waiting for the fleet to come Up
            await trio.sleep(1)
            creds = json.loads((data / "admin-credentials.json").read_text())
            ids = await trio.to_thread.run_sync(_ids, services.api_url, creds, args.security_groups)
            ctx = mp.get_context("spawn")
            parent, child = ctx.Pipe(duplex=False)
            proc = ctx.Process(
                target=clients,
                args=(
                    services.api_url,
                    creds["apikey"],
                    creds["secretkey"],
                    ids,
                    args.vms,
                    args.concurrency,
                    child,
                ),
            )
            statements.counting = True
            if args.profile:
                import yappi

                yappi.set_clock_type("cpu")
                yappi.start(builtins=True)
            cpu_before = time.process_time()
            requests_before = services.api.requests if services.api is not None else 0
            proc.start()
            child.close()
            latencies, failures, wall = await trio.to_thread.run_sync(parent.recv)
            server_cpu = time.process_time() - cpu_before  # every thread of this (the server's) process
            if args.profile:
                yappi.stop()
                _write_profile(yappi, args.profile)
            requests = (services.api.requests if services.api is not None else 0) - requests_before
            statements.counting = False
            await trio.to_thread.run_sync(proc.join)
        finally:
            fleet.send_signal(signal.SIGTERM)
            with trio.move_on_after(30):
                await fleet.wait()
            checked = await services.db.read(inventory)
            nursery.cancel_scope.cancel()
    done = len(latencies)
    ms = [x * 1000 for x in latencies]
    result.update(
        {
            "deployed": done,
            "failures": failures,
            "wall_s": round(wall, 2),
            "deploys_per_s": round(done / wall, 1) if wall else 0.0,
            "server_cpu_ms_per_deploy": round(server_cpu * 1000 / max(done, 1), 1),
            "server_cpu_utilisation": round(server_cpu / wall, 2) if wall else 0.0,
            "api_requests_per_deploy": round(requests / max(done, 1), 1),
            "latencies_ms": [round(x, 1) for x in ms],
            "p50_ms": round(percentile(ms, 0.50), 1),
            "p99_ms": round(percentile(ms, 0.99), 1),
            "db_statements_per_deploy": round((statements.reads + statements.writes) / max(done, 1), 1),
            "db_write_transaction_statements_per_deploy": round(statements.writes / max(done, 1), 1),
            "db_read_statements_per_deploy": round(statements.reads / max(done, 1), 1),
            **checked,
        }
    )
    return result


def _write_profile(yappi: Any, path: str) -> None:
    """The server's CPU by function over the deploys (every thread), and by thread, as text."""
    import io

    out = io.StringIO()
    stats = yappi.get_func_stats()
    stats.sort("tsub")
    stats.print_all(out=out, columns={0: ("name", 90), 1: ("ncall", 10), 2: ("tsub", 8), 3: ("ttot", 8)})
    out.write("\n")
    yappi.get_thread_stats().print_all(out=out)
    Path(path).write_text(out.getvalue())
    stats.save(path + ".pstat", type="pstat")


def _ids(url: str, creds: dict[str, str], security_groups: bool = False) -> dict[str, str]:
    from cs import CloudStack

    cs = CloudStack(endpoint=url, key=creds["apikey"], secret=creds["secretkey"])
    ids = {
        "zone": cs.listZones()["zone"][0]["id"],
        "offering": cs.listServiceOfferings(name="small")["serviceoffering"][0]["id"],
        "template": cs.listTemplates(templatefilter="all", name="tiny")["template"][0]["id"],
    }
    if security_groups:  # the VMs on a network with security groups, in a group with rules
        offering = cs.listNetworkOfferings(
            name="DefaultSharedNetworkOfferingWithSGService")["networkoffering"][0]
        ids["network"] = cs.createNetwork(
            zoneid=ids["zone"], name="sg-bench", networkofferingid=offering["id"], gateway="10.200.0.1",
            netmask="255.255.0.0", startip="10.200.0.10", endip="10.200.255.250")["network"]["id"]
        group = cs.createSecurityGroup(name="bench")["securitygroup"]
        cs.authorizeSecurityGroupIngress(securitygroupid=group["id"], protocol="tcp", startport=22,
                                         endport=22, cidrlist="0.0.0.0/0", fetch_result=True)
        cs.authorizeSecurityGroupIngress(securitygroupid=group["id"], protocol="icmp",
                                         cidrlist="10.200.0.0/16", fetch_result=True)
    return ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.deploy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--vms", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--fleet-processes", type=int, default=1)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--security-groups", action="store_true",
                        help="deploy on a network with security groups, in a group with two rules")
    parser.add_argument("--profile", help="profile the server (yappi, CPU time, every thread) into this file")
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite",
                        help="the embedded SQLite, or a private PostgreSQL (fsync on) started for the run")
    args = parser.parse_args(argv)
    logs.configure("WARNING")
    tune_gc()  # as the server's own entry point does
    with contextlib.ExitStack() as stack:
        args.db_url = stack.enter_context(private_postgres()) if args.db == "postgresql" else ""
        result = trio.run(bench, args)
    print(json.dumps({k: v for k, v in result.items() if k != "latencies_ms"}, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
