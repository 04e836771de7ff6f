"""Tenancy benchmark: ``listVirtualMachines listall=true`` for a domain admin over a domain tree.

    python -m benchmarks.tenancy --domains 100 --vms 10000 --calls 200 --json FILE [--db postgresql]

The management server runs in this process, on SQLite or a private PostgreSQL (fsync on). The tree:
``--domains`` domains, ten under ROOT and the rest spread under those; an account in each; ``--vms`` VMs
spread over the accounts, written straight into the database (Stopped: a list reads rows, and a deploy
benchmark measures deploys). A domain admin of the first top domain lists with the real ``cs`` client
(signed requests) one 500-row page at a time; the root admin the same for comparison.

Output keys: ``domains, vms, visible_to_domain_admin, p50_ms, p99_ms`` (the domain admin's 500-row
pages), ``root_p50_ms, root_p99_ms``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import trio

from benchmarks.deploy import ZONE, percentile
from benchmarks.postgres import private_postgres
from mgmt import logs
from mgmt.db.schema import accounts, domains, service_offerings, templates, vms, zones
from mgmt.process import tune_gc
from mgmt.server import ServerConfig, serve
from mgmt.services import Services


def populate(conn: Any, n_domains: int, n_vms: int) -> None:
    now = datetime.now(UTC)
    root = conn.scalar(sa.select(domains.c.id).where(domains.c.path == "/"))
    tops = max(1, min(10, n_domains))
    made: list[tuple[int, str]] = []
    for i in range(n_domains):
        if i < tops:
            parent, path = root, f"/d{i}/"
        else:
            top_id, top_path = made[i % tops]
            parent, path = top_id, f"{top_path}d{i}/"
        did = conn.execute(domains.insert().values(uuid=str(uuid.uuid4()), name=f"d{i}", path=path,
                                                   parent_id=parent, created=now)).inserted_primary_key[0]
        made.append((did, path))
    account_ids = [conn.execute(accounts.insert().values(
        uuid=str(uuid.uuid4()), name=f"acct{i}", domain_id=did, type=0, state="enabled", created=now)
    ).inserted_primary_key[0] for i, (did, _p) in enumerate(made)]
    zone = conn.scalar(sa.select(zones.c.id))
    offering = conn.scalar(sa.select(service_offerings.c.id))
    template = conn.scalar(sa.select(templates.c.id))
    rows = [{"uuid": str(uuid.uuid4()), "name": f"vm-{i}", "instance_name": f"i-{i}-VM",
             "display_name": f"vm-{i}", "state": "Stopped", "update_count": 0, "power_state": "PowerOff",
             "zone_id": zone, "service_offering_id": offering, "template_id": template,
             "account_id": account_ids[i % len(account_ids)], "ha_enabled": False, "keypairs": "",
             "ssh_public_keys": "", "created": now} for i in range(n_vms)]
    for start in range(0, len(rows), 2000):
        conn.execute(vms.insert(), rows[start:start + 2000])


def timed(cs: Any, calls: int) -> tuple[list[float], int]:
    times, count = [], 0
    for i in range(calls):
        started = time.perf_counter()
        answer = cs.listVirtualMachines(listall=True, page=i % 2 + 1, pagesize=500)
        times.append((time.perf_counter() - started) * 1000)
        count = int(answer.get("count", 0))
    return times, count


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    from cs import CloudStack

    data = Path(tempfile.mkdtemp(prefix="cumulo-tenancy-"))
    zone_file = data / "zone.toml"
    zone_file.write_text(ZONE)
    config = ServerConfig(data_dir=str(data), agent_port=0, api_port=0, peer_port=0, bind="127.0.0.1",
                          zone_config=str(zone_file), db=args.db_url)
    async with trio.open_nursery() as nursery:
        services: Services = await nursery.start(serve, config)
        with services.db.engine.begin() as conn:
            populate(conn, args.domains, args.vms)
        if services.db.dialect == "postgresql":  # statistics, as autovacuum keeps them in a running cloud
            with services.db.engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
        creds = json.loads((data / "admin-credentials.json").read_text())
        root = CloudStack(endpoint=services.api_url, key=creds["apikey"], secret=creds["secretkey"],
                          timeout=60)
        top = (await trio.to_thread.run_sync(lambda: root.listDomains(name="d0")))["domain"][0]
        made = await trio.to_thread.run_sync(lambda: root.createAccount(
            username="d0admin", password="a-long-enough-password", email="a@x", firstname="a", lastname="b",
            accounttype=2, domainid=top["id"]))
        keys = (await trio.to_thread.run_sync(lambda: root.registerUserKeys(
            id=made["account"]["user"][0]["id"])))["userkeys"]
        admin = CloudStack(endpoint=services.api_url, key=keys["apikey"], secret=keys["secretkey"],
                           timeout=60)
        await trio.to_thread.run_sync(timed, admin, 5)  # warm
        times, visible = await trio.to_thread.run_sync(timed, admin, args.calls)
        root_times, total = await trio.to_thread.run_sync(timed, root, args.calls)
        nursery.cancel_scope.cancel()
    return {"domains": args.domains, "vms": args.vms, "database": args.db, "calls": args.calls,
            "visible_to_domain_admin": visible, "visible_to_root_admin": total,
            "p50_ms": round(percentile(times, 0.5), 1), "p99_ms": round(percentile(times, 0.99), 1),
            "root_p50_ms": round(percentile(root_times, 0.5), 1),
            "root_p99_ms": round(percentile(root_times, 0.99), 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tenancy",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--domains", type=int, default=100)
    parser.add_argument("--vms", type=int, default=10000)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    logs.configure("WARNING")
    tune_gc()  # as python -m mgmt serve does
    if args.db == "postgresql":
        with private_postgres(fsync=True) as url:
            args.db_url = url
            result = trio.run(bench, args)
    else:
        args.db_url = ""
        result = trio.run(bench, args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
