"""Cluster benchmark: several management servers on one PostgreSQL, a simulated fleet spread over them.

    python -m benchmarks.cluster --servers 3 --agents 3000 --json FILE [--vms 1500] [--concurrency 48]

A private PostgreSQL (fsync on) is started for the run. Each server is ``python -m mgmt serve`` in a
process of its own, on loopback; the fleet is ``python -m agent.fleet`` with every server in its list
(each host starts at a different one), with certificates from the cloud's CA. Then:

1. **deploys**: ``--vms`` VMs through the servers' APIs, a third each (client processes with the real
   ``cs`` client, as ``benchmarks.deploy``): ``deploys_per_s`` across them, p50/p99.
2. **forwarding**: ``getVirtualMachineConsoleLog`` (a synchronous call that reaches the VM's host) sent
   to a server that does not hold the host: ``forward_rtt_p50_ms``/``p99`` (and ``local_rtt_*`` to the
   holder itself, for comparison).
3. **takeover**: deploys keep coming through every server; the last server is killed with SIGKILL in
   the middle. ``takeover_s``: from the kill until every host it held is Up on another server;
   ``declared_down_s``: until a peer declared it down (and settled its jobs). ``jobs_lost``: jobs any
   API accepted that are still pending once the takeover is done (none may be). Capacity and addresses
   are checked at the end (``capacity_mismatches``, ``duplicate_ips``).

With ``--servers 1`` only the deploys run (the single-server figure on the same PostgreSQL).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from agent.fleet import FleetPlan, placement
from agent.tls import Credentials
from benchmarks.deploy import ZONE, _ids, inventory, percentile
from benchmarks.postgres import private_postgres
from mgmt.db.database import Database
from mgmt.db.schema import async_jobs, configuration, hosts, management_servers, vms
from mgmt.security.ca import CertificateAuthority
from mgmt.server import ServerConfig, prepare

SETTINGS = {"ping.interval": "30", "cluster.agent.rebalance.rate": "100"}


class Server:
    def __init__(self, n: int, url: str, root: Path) -> None:
        self.n, self.url, self.data = n, url, root / f"mgmt{n}"
        self.data.mkdir()
        self.log = self.data / "mgmt.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.api = ""
        self.agent_port = 0

    def start(self) -> None:
        args = [sys.executable, "-m", "mgmt", "serve", "--db", self.url, "--data-dir", str(self.data),
                "--agent-port", "0", "--api-port", "0", "--peer-port", "0", "--bind", "127.0.0.1",
                "--log-level", "INFO"]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=out)

    def wait_started(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-3000:]
            row = self._row()
            if row is not None and row.state == "Up" and row.agent_port:
                self.agent_port = row.agent_port
                break
            time.sleep(0.1)
        else:
            raise TimeoutError(f"server {self.n} did not start: {self.log.read_text()[-2000:]}")
        while not self.api:  # its API port (the row does not hold it)
            match = re.search(r"Running on (http://127\.0\.0\.1:\d+)", self.log.read_text())
            if match:
                self.api = match.group(1) + "/client/api"
            else:
                time.sleep(0.05)

    @property
    def msid(self) -> int:
        return int(json.loads((self.data / "mgmt-state.json").read_text())["msid"])

    def _row(self) -> Any:
        db = Database(self.url)
        try:
            with db.engine.connect() as conn:
                return conn.execute(sa.select(management_servers)
                                    .where(management_servers.c.msid == self.msid)).first()
        except (OSError, ValueError, KeyError, sa.exc.DBAPIError):  # not made yet
            return None
        finally:
            db.dispose()


def deployers(url: str, key: str, secret: str, ids: dict[str, str], vms: int, concurrency: int,
              others: list[str], out: Any) -> None:
    """Deploy ``vms`` VMs through ``url`` from ``concurrency`` threads; every accepted job is polled to
    its end, through another server when this one stops answering. Sends (latencies, failures, wall,
    accepted job ids, jobs whose end was never seen)."""
    from cs import CloudStack

    next_vm = iter(range(vms))
    lock = threading.Lock()
    latencies: list[float] = []
    failures: Counter[str] = Counter()
    accepted: list[str] = []
    unseen: list[str] = []

    def worker() -> None:
        endpoints = [url, *others]
        cs = [CloudStack(endpoint=e, key=key, secret=secret, timeout=60, fetch_result=False)
              for e in endpoints]
        while True:
            with lock:
                n = next(next_vm, None)
            if n is None:
                return
            started = time.perf_counter()
            try:
                job = cs[0].deployVirtualMachine(zoneid=ids["zone"], serviceofferingid=ids["offering"],
                                                 templateid=ids["template"], name=f"vm-{os.getpid()}-{n}")
            except Exception as e:
                with lock:
                    failures[f"not accepted: {type(e).__name__}"] += 1
                continue
            with lock:
                accepted.append(job["jobid"])
            delay, which, status = 0.01, 0, None
            give_up = time.monotonic() + 180
            while time.monotonic() < give_up:
                time.sleep(delay)  # polling the job, as clients do
                try:
                    status = cs[which].queryAsyncJobResult(jobid=job["jobid"])
                except Exception:
                    which = (which + 1) % len(cs)  # that server is gone: ask another
                    continue
                if status["jobstatus"] != 0:
                    break
                delay = min(0.1, delay * 1.5)
            with lock:
                if status is None or status["jobstatus"] == 0:
                    unseen.append(job["jobid"])
                elif status["jobstatus"] == 1:
                    latencies.append(time.perf_counter() - started)
                else:
                    failures[str(status["jobresult"].get("errortext", ""))[:80]] += 1

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.send((latencies, dict(failures), time.perf_counter() - started, accepted, unseen))


def run_deploys(servers: list[Server], creds: dict[str, str], ids: dict[str, str], vms: int,
                concurrency: int) -> tuple[list[Any], list[Any]]:
    ctx = mp.get_context("spawn")
    procs, pipes = [], []
    for i, s in enumerate(servers):
        parent, child = ctx.Pipe(duplex=False)
        others = [o.api for o in servers if o is not s]
        share = vms // len(servers) + (1 if i < vms % len(servers) else 0)
        p = ctx.Process(target=deployers, args=(s.api, creds["apikey"], creds["secretkey"], ids, share,
                                                max(1, concurrency // len(servers)), others, child))
        p.start()
        child.close()
        procs.append(p)
        pipes.append(parent)
    return procs, pipes


def collect(procs: list[Any], pipes: list[Any]) -> dict[str, Any]:
    results = [p.recv() for p in pipes]
    for p in procs:
        p.join()
    latencies = [x for r in results for x in r[0]]
    failures: Counter[str] = Counter()
    for r in results:
        failures.update(r[1])
    wall = max(r[2] for r in results)
    ms = [x * 1000 for x in latencies]
    return {"deployed": len(latencies), "failures": dict(failures), "wall_s": round(wall, 2),
            "deploys_per_s": round(len(latencies) / wall, 1) if wall else 0.0,
            "p50_ms": round(percentile(ms, 0.5), 1), "p99_ms": round(percentile(ms, 0.99), 1),
            "accepted": [j for r in results for j in r[3]], "unseen": [j for r in results for j in r[4]]}


def cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by this machine's processes, by kind: the management servers, the
    fleet, PostgreSQL, and everything else (the client processes among it), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    kinds: dict[str, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        kind = ("servers" if "-m mgmt serve" in cmdline else "fleet" if "agent.fleet" in cmdline
                else "postgresql" if cmdline.startswith("postgres") else "other")
        kinds[kind] = kinds.get(kind, 0.0) + used
    return kinds


def holders(url: str) -> dict[int, int]:
    db = Database(url)
    with db.engine.connect() as conn:
        rows = conn.execute(sa.select(hosts.c.id, hosts.c.mgmt_server_id).where(hosts.c.status == "Up")).all()
    db.dispose()
    return {r.id: r.mgmt_server_id for r in rows}


def forward_rtts(url: str, servers: list[Server], creds: dict[str, str], calls: int) -> dict[str, Any]:
    """getVirtualMachineConsoleLog through a server that does not hold the VM's host, and through the one
    that does."""
    from cs import CloudStack

    db = Database(url)
    with db.engine.connect() as conn:
        running = conn.execute(sa.select(vms.c.uuid, hosts.c.mgmt_server_id)
                               .join(hosts, hosts.c.id == vms.c.host_id)
                               .where(vms.c.state == "Running", hosts.c.status == "Up")).all()
    db.dispose()
    by_msid = {s.msid: s for s in servers}
    clients = {s.msid: CloudStack(endpoint=s.api, key=creds["apikey"], secret=creds["secretkey"], timeout=30)
               for s in servers}
    rng = random.Random(1)
    forwarded: list[float] = []
    local: list[float] = []
    errors: Counter[str] = Counter()
    for i in range(2 * calls):
        vm, holder = rng.choice(running)
        if holder not in by_msid:
            continue
        via = holder if i % 2 else rng.choice([m for m in by_msid if m != holder])
        started = time.perf_counter()
        try:
            clients[via].getVirtualMachineConsoleLog(id=vm, lines=10)
        except Exception as e:
            errors[f"{type(e).__name__}: {e}"[:100]] += 1
            continue
        (local if via == holder else forwarded).append((time.perf_counter() - started) * 1000)
    return {"forward_calls": len(forwarded), "forward_rtt_p50_ms": round(percentile(forwarded, 0.5), 2),
            "forward_rtt_p99_ms": round(percentile(forwarded, 0.99), 2),
            "local_rtt_p50_ms": round(percentile(local, 0.5), 2),
            "local_rtt_p99_ms": round(percentile(local, 0.99), 2), "forward_errors": dict(errors)}


def issue_fleet(ca_dir: Path, n: int, tls_dir: Path) -> None:
    ca = CertificateAuthority.load_or_create(ca_dir)
    import datetime as dt

    for i in range(n):
        guid = placement(FleetPlan("", n), i).guid
        key, issued = ca.issue_host(guid, dt.timedelta(days=1))
        Credentials.store(tls_dir / guid, key, issued.pem, ca.pem)


def bench(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="cumulo-cluster-"))
    zone = root / "zone.toml"
    zone.write_text(ZONE)
    result: dict[str, Any] = {"servers": args.servers, "agents": args.agents, "vms": args.vms,
                              "concurrency": args.concurrency, "settings": SETTINGS}
    with private_postgres(fsync=True) as url:
        servers = [Server(i, url, root) for i in range(args.servers)]
        # The schema, the zone and the settings first, as an operator would set them before the servers run.
        db, _msid, _values = prepare(ServerConfig(data_dir=str(servers[0].data), db=url,
                                                  zone_config=str(zone)))
        with db.engine.begin() as conn:
            for name, value in SETTINGS.items():
                conn.execute(configuration.update().where(configuration.c.name == name).values(value=value))
        servers[0].start()
        servers[0].wait_started()  # (it makes the admin, whose keys land in its data directory)
        for s in servers[1:]:
            s.start()
        for s in servers[1:]:
            s.wait_started()
        issue_fleet(servers[0].data / "ca", args.agents, root / "tls")
        mgmt = ",".join(f"127.0.0.1:{s.agent_port}" for s in servers)
        fleet = subprocess.Popen([sys.executable, "-m", "agent.fleet", "--mgmt", mgmt, "--hosts",
                                  str(args.agents), "--processes", str(args.fleet_processes), "--tls-dir",
                                  str(root / "tls"), "--spread"],
                                 stdout=subprocess.DEVNULL, stderr=(root / "fleet.log").open("wb"))
        try:
            began = time.monotonic()
            while True:  # every host Up, and none moving any more (the servers' shares steady)
                held = holders(url)
                shares = Counter(held.values())
                if len(held) == args.agents:
                    time.sleep(3)
                    if Counter(holders(url).values()) == shares:
                        break
                if time.monotonic() - began > 600:
                    raise TimeoutError(f"the fleet did not come Up: {len(held)} of {args.agents}")
                time.sleep(0.5)
            result["fleet_up_s"] = round(time.monotonic() - began, 1)
            result["hosts_per_server"] = sorted(shares.values())
            creds = json.loads((servers[0].data / "admin-credentials.json").read_text())
            ids = _ids(servers[0].api, creds)
            before = cpu_seconds()
            procs, pipes = run_deploys(servers, creds, ids, args.vms, args.concurrency)
            deployed = collect(procs, pipes)
            after = cpu_seconds()  # (the client processes have ended: their CPU is not counted)
            result.update({k: v for k, v in deployed.items() if k not in ("accepted", "unseen")})
            result["deploy_cpu_s"] = {k: round(after.get(k, 0) - before.get(k, 0), 1)
                                      for k in ("servers", "postgresql", "fleet")}
            if args.servers > 1:
                result.update(forward_rtts(url, servers, creds, args.forward_calls))
                result.update(takeover(url, servers, creds, ids, args))
            with db.engine.connect() as conn:
                result.update(inventory(conn))
        finally:
            fleet.send_signal(signal.SIGTERM)
            try:
                fleet.wait(30)
            except subprocess.TimeoutExpired:
                fleet.kill()
            for s in servers:
                if s.proc is not None and s.proc.poll() is None:
                    s.proc.send_signal(signal.SIGTERM)
            for s in servers:
                if s.proc is not None:
                    try:
                        s.proc.wait(30)
                    except subprocess.TimeoutExpired:
                        s.proc.kill()
            db.dispose()
    return result


def takeover(url: str, servers: list[Server], creds: dict[str, str], ids: dict[str, str],
             args: argparse.Namespace) -> dict[str, Any]:
    victim = servers[-1]
    survivors = {s.msid for s in servers[:-1]}
    procs, pipes = run_deploys(servers, creds, ids, args.takeover_vms, args.concurrency)
    db = Database(url)

    def pending_on_victim() -> int:
        with db.engine.connect() as conn:
            return int(conn.scalar(sa.select(sa.func.count()).select_from(async_jobs).where(
                async_jobs.c.mgmt_server_id == victim.msid, async_jobs.c.status == 0)) or 0)

    deadline = time.monotonic() + 60
    while pending_on_victim() < 3 and time.monotonic() < deadline:
        time.sleep(0.02)  # the victim has jobs in flight
    held_by_victim = [h for h, m in holders(url).items() if m == victim.msid]
    in_flight = pending_on_victim()
    assert victim.proc is not None
    killed = time.monotonic()
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait()
    takeover_s = declared_s = None
    while time.monotonic() - killed < 120 and (takeover_s is None or declared_s is None):
        now = holders(url)
        if takeover_s is None and all(now.get(h) in survivors for h in held_by_victim):
            takeover_s = time.monotonic() - killed
        if declared_s is None:
            with db.engine.connect() as conn:
                state = conn.scalar(sa.select(management_servers.c.state)
                                    .where(management_servers.c.msid == victim.msid))
            if state == "Down":
                declared_s = time.monotonic() - killed
        time.sleep(0.1)
    deployed = collect(procs, pipes)
    with db.engine.connect() as conn:
        pending = set(conn.scalars(sa.select(async_jobs.c.uuid).where(async_jobs.c.status == 0)))
        known = set(conn.scalars(sa.select(async_jobs.c.uuid)))
    db.dispose()
    accepted = set(deployed["accepted"])
    return {"victim_hosts": len(held_by_victim), "victim_jobs_in_flight": in_flight,
            "takeover_s": round(takeover_s, 2) if takeover_s is not None else None,
            "declared_down_s": round(declared_s, 2) if declared_s is not None else None,
            "takeover_deploys": deployed["deployed"], "takeover_failures": deployed["failures"],
            "jobs_accepted": len(accepted), "jobs_lost": len(accepted & pending) + len(accepted - known),
            "jobs_unseen_by_clients": len(deployed["unseen"])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cluster",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=int, default=3)
    parser.add_argument("--agents", type=int, default=3000)
    parser.add_argument("--vms", type=int, default=1500)
    parser.add_argument("--takeover-vms", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=48)
    parser.add_argument("--forward-calls", type=int, default=300)
    parser.add_argument("--fleet-processes", type=int, default=1)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    result = bench(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
