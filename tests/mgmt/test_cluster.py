"""Three management servers on one PostgreSQL: agents spread over them, every VM operation through each
server's API reaches VMs on hosts the others hold, ``kill -9`` of one moves its agents to the others and
settles its jobs with nothing leaked, a restarted server gets agents back without a storm, and a login
session outlives the server it was made on.

Servers A and B run in this process (their parts are looked at directly); C is a real process, so that
it can be killed with SIGKILL. The hosts are simulated agents in this process over real TLS connections.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
import trio
from cs import CloudStack

from agent.faults import FaultTable
from mgmt.cluster import balance
from mgmt.db.database import Database
from mgmt.db.schema import async_jobs, configuration, hosts, management_servers, nics, vms
from mgmt.planner import capacity
from mgmt.server import ServerConfig, prepare, serve
from mgmt.services import Services
from tests.mgmt.test_agent_manager import TRUST, make_agent

ZONE = Path(__file__).parents[2] / "docs" / "examples" / "zone.toml"
GUIDS = [f"c{i}" for i in range(6)]
# (a peer is declared dead after 6 s without a heartbeat: a loaded test machine can stall a heartbeat for
# seconds, and a live server declared dead fences itself)
SETTINGS = {"cluster.heartbeat.interval": "250", "cluster.heartbeat.threshold": "6000", "ping.interval": "1",
            "cluster.agent.rebalance.rate": "50"}


def held(db: Database) -> dict[str, int | None]:
    with db.engine.connect() as conn:
        return {r.guid: r.mgmt_server_id for r in conn.execute(
            sa.select(hosts.c.guid, hosts.c.mgmt_server_id, hosts.c.status)) if r.status == "Up"}


async def wait_until(what: str, check: Any, timeout: float = 60, last: dict[str, Any] | None = None) -> Any:
    with trio.move_on_after(timeout):
        while not (found := await trio.to_thread.run_sync(check)):
            await trio.sleep(0.1)  # polling the database: the servers are in other tasks and a process
        return found
    raise AssertionError(f"not within {timeout:g} s: {what} {last or ''}")


class Process:
    """Server C: ``python -m mgmt serve`` in a process of its own."""

    def __init__(self, url: str, data: Path) -> None:
        self.url, self.data, self.log = url, data, data / "mgmt.log"
        self.proc: trio.Process | None = None

    async def start(self) -> str:
        self.data.mkdir(exist_ok=True)
        start = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = await trio.lowlevel.open_process(
                [sys.executable, "-m", "mgmt", "serve", "--db", self.url, "--data-dir", str(self.data),
                 "--agent-port", "0", "--api-port", "0", "--peer-port", "0", "--bind", "127.0.0.1"],
                stdout=subprocess.DEVNULL, stderr=out)
        with trio.fail_after(60):
            while (m := re.search(r"the API at (\S+/client/api)", self.log.read_text()[start:])) is None:
                assert self.proc.poll() is None, self.log.read_text()[-3000:]
                await trio.sleep(0.05)  # polling its log: there is no event to wait on
        return m.group(1)

    def msid(self) -> int:
        return int(json.loads((self.data / "mgmt-state.json").read_text())["msid"])

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()


async def start_in_process(nursery: trio.Nursery, config: ServerConfig) -> tuple[Services, trio.CancelScope]:
    scope = trio.CancelScope()

    async def run(task_status: trio.TaskStatus[Services] = trio.TASK_STATUS_IGNORED) -> None:
        with scope:
            await serve(config, task_status=task_status)

    services: Services = await nursery.start(run)
    TRUST[services.agents.port] = services.trust
    return services, scope


def client(url: str, creds: dict[str, str]) -> CloudStack:
    return CloudStack(endpoint=url, key=creds["apikey"], secret=creds["secretkey"], poll_interval=0.05,
                      job_timeout=60, timeout=30)


@pytest.mark.skipif(os.environ.get("CUMULO_POSTGRES") != "1" and not Path("/usr/lib/postgresql").exists(),
                    reason="PostgreSQL is not installed here")
async def test_three_servers_share_the_fleet_forward_take_over_and_rejoin(
        nursery: trio.Nursery, tmp_path: Path, postgres_url: str) -> None:
    url = postgres_url
    db = Database(url)
    with db.engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    config_a = ServerConfig(data_dir=str(tmp_path / "a"), db=url, agent_port=0, api_port=0, peer_port=0,
                            bind="127.0.0.1", zone_config=str(ZONE))
    setup, _msid, _values = prepare(config_a)
    with setup.engine.begin() as conn:
        for name, value in SETTINGS.items():
            conn.execute(configuration.update().where(configuration.c.name == name).values(value=value))
    setup.dispose()
    a, _scope_a = await start_in_process(nursery, config_a)
    creds = json.loads((tmp_path / "a" / "admin-credentials.json").read_text())
    b, _scope_b = await start_in_process(nursery, ServerConfig(
        data_dir=str(tmp_path / "b"), db=url, agent_port=0, api_port=0, peer_port=0, bind="127.0.0.1"))
    c = Process(url, tmp_path / "c")
    try:
        await _three_servers(nursery, url, db, a, b, c, creds)
    finally:
        if c.proc is not None and c.proc.returncode is None:  # never outlives the test
            c.proc.kill()
            await c.proc.wait()
        db.dispose()


async def _three_servers(nursery: trio.Nursery, url: str, db: Database, a: Services, b: Services, c: Process,
                         creds: dict[str, str]) -> None:
    c_url = await c.start()
    servers = {a.msid: a.api_url, b.msid: b.api_url, c.msid(): c_url}
    assert len(servers) == 3

    # The fleet connects to A alone; the lists its Ready gives them, and the moves, spread it over all three.
    faults = {g: FaultTable() for g in GUIDS}
    agents = {g: make_agent(nursery, a.agents.port, g, faults=faults[g]) for g in GUIDS}
    assert a.peers is not None and b.peers is not None
    await wait_until("three live servers", lambda: len(a.peers.live) == 3 and len(b.peers.live) == 3)

    last: dict[str, Any] = {}

    def spread() -> dict[str, int | None] | None:
        now = held(db)
        want = {g: balance.order(int(h), a.peers.live.values(), "roundrobin")[0].msid
                for g, h in host_ids().items()}
        last["spread"] = (now, want)
        return now if len(now) == len(GUIDS) and now == want else None

    def host_ids() -> dict[str, int]:
        with db.engine.connect() as conn:
            return dict(conn.execute(sa.select(hosts.c.guid, hosts.c.id)).all())  # type: ignore[arg-type]

    # (each host where its rendezvous order puts it: how many servers that gives hosts to is the hash's
    # business, so nothing is asserted about it)
    await wait_until("the fleet spread by rendezvous order", spread, last=last)

    # Every VM operation, through each server's API, on VMs whatever server holds their host.
    zone = (await trio.to_thread.run_sync(lambda: client(a.api_url, creds).listZones()))["zone"][0]["id"]
    listed = await trio.to_thread.run_sync(lambda: client(a.api_url, creds).listServiceOfferings())
    offering = next(o["id"] for o in listed["serviceoffering"] if o["name"] == "small")
    template = (await trio.to_thread.run_sync(lambda: client(a.api_url, creds).listTemplates(
        templatefilter="all")))["template"][0]["id"]
    vm_ids = []
    for url_ in servers.values():
        for _ in range(1):
            cs = client(url_, creds)
            vm = await trio.to_thread.run_sync(lambda cs=cs: cs.deployVirtualMachine(
                zoneid=zone, serviceofferingid=offering, templateid=template, fetch_result=True))
            vm_ids.append(vm["virtualmachine"]["id"])
    for url_ in servers.values():
        cs = client(url_, creds)
        for vm_id in vm_ids:
            for command, state in (("stopVirtualMachine", "Stopped"), ("startVirtualMachine", "Running"),
                                   ("rebootVirtualMachine", "Running")):
                call = getattr(cs, command)
                answer = await trio.to_thread.run_sync(lambda call=call, vm_id=vm_id: call(id=vm_id,
                                                                                           fetch_result=True))
                assert answer["virtualmachine"]["state"] == state, (command, answer)
    # What one server makes, another uses at once; and each server's index heard of the others' deploys.
    made = await trio.to_thread.run_sync(lambda: client(b.api_url, creds).createServiceOffering(
        name="fresh", cpunumber=1, cpuspeed=500, memory=256))
    fresh = await trio.to_thread.run_sync(lambda: client(a.api_url, creds).deployVirtualMachine(
        zoneid=zone, serviceofferingid=made["serviceoffering"]["id"], templateid=template, fetch_result=True))
    assert fresh["virtualmachine"]["state"] == "Running"
    assert a.placement.remote_applied > 0 and b.placement.remote_applied > 0
    assert a.peer_links is not None and b.peer_links is not None and a.peer_port and b.peer_port
    assert a.peer_links.forwards + b.peer_links.forwards > 0  # A and B sent commands to peers' hosts
    assert a.peer_port.forwarded + b.peer_port.forwarded > 0  # and ran commands for them

    # Jobs on one VM through two servers run one after the other (the sync queue spans the servers): a
    # start sent to B while A's stop runs waits for it, then starts the VM again.
    cs_a, cs_b = client(a.api_url, creds), client(b.api_url, creds)
    stop = await trio.to_thread.run_sync(lambda: cs_a.stopVirtualMachine(id=vm_ids[1]))
    start = await trio.to_thread.run_sync(lambda: cs_b.startVirtualMachine(id=vm_ids[1]))

    def ended(job: str) -> bool:
        with db.engine.connect() as conn:
            return conn.scalar(sa.select(async_jobs.c.status).where(async_jobs.c.uuid == job)) != 0

    await wait_until("both jobs", lambda: ended(stop["jobid"]) and ended(start["jobid"]))
    with db.engine.connect() as conn:
        rows = {r.uuid: r for r in conn.execute(sa.select(async_jobs).where(
            async_jobs.c.uuid.in_([stop["jobid"], start["jobid"]])))}
    assert rows[stop["jobid"]].status == rows[start["jobid"]].status == 1, rows
    assert rows[stop["jobid"]].completed <= rows[start["jobid"]].completed

    # A limit holds across servers: deploys for one account through A and B at once cannot overshoot it
    # (the account's row is locked while the limit is checked).
    root_domain = (await trio.to_thread.run_sync(lambda: client(a.api_url, creds).listDomains()))["domain"][0]
    await trio.to_thread.run_sync(lambda: client(a.api_url, creds).createAccount(
        username="capped", password="a-long-enough-password", email="c@x", firstname="c", lastname="c"))
    await trio.to_thread.run_sync(lambda: client(b.api_url, creds).updateResourceLimit(
        account="capped", domainid=root_domain["id"], resourcetype=0, max=3))
    accepted: list[str] = []

    def deploy_capped(url_: str) -> None:
        try:
            job = client(url_, creds).deployVirtualMachine(zoneid=zone, serviceofferingid=offering,
                                                          templateid=template, account="capped",
                                                          domainid=root_domain["id"])
            accepted.append(job["jobid"])
        except Exception:  # refused: over the limit
            pass

    async with trio.open_nursery() as racing:
        for i in range(8):
            racing.start_soon(trio.to_thread.run_sync, deploy_capped, (a.api_url, b.api_url)[i % 2])
    assert len(accepted) == 3

    # A login session made on C is good on A, and stays good after C dies.
    password = creds["password"]
    login = await trio.to_thread.run_sync(lambda: requests.post(
        c_url, data={"command": "login", "username": "admin", "password": password, "domain": "/",
                     "response": "json"}, timeout=30))
    assert login.status_code == 200, login.text
    session = {"sessionkey": login.json()["loginresponse"]["sessionkey"], "command": "listZones",
               "response": "json"}

    def with_session(url_: str) -> requests.Response:
        return requests.get(url_, params=session, cookies=login.cookies, timeout=30)

    assert (await trio.to_thread.run_sync(with_session, a.api_url)).status_code == 200

    # A deploy through C whose start hangs on the host, and a stop through B that hangs too (of a VM on a
    # host A or B holds: one of C's would fail with C, as it should); C is killed with its job in flight.
    # B's job is B's: the take-over must leave it alone.
    # (a host A or B holds *and* the rendezvous order gives them: one merely passing through A, its
    # connection to C having dropped under load, would be moved back to C, and die with it)
    with db.engine.connect() as conn:
        up = conn.execute(sa.select(hosts.c.id, hosts.c.uuid, hosts.c.mgmt_server_id).where(
            hosts.c.status == "Up", hosts.c.mgmt_server_id.in_([a.msid, b.msid]))).all()
    a_host = next(h.uuid for h in up
                  if balance.order(h.id, a.peers.live.values(), "roundrobin")[0].msid == h.mgmt_server_id)
    kept = (await trio.to_thread.run_sync(lambda: client(b.api_url, creds).deployVirtualMachine(
        zoneid=zone, serviceofferingid=offering, templateid=template, hostid=a_host,
        fetch_result=True)))["virtualmachine"]["id"]
    for f in faults.values():
        f.add("StartCommand", "wait:60000")
        f.add("StopCommand", "wait:60000")
    cs_c = client(c_url, creds)
    pending = await trio.to_thread.run_sync(lambda: cs_c.deployVirtualMachine(
        zoneid=zone, serviceofferingid=offering, templateid=template))
    stuck = pending["id"]
    stopping = await trio.to_thread.run_sync(lambda: cs_b.stopVirtualMachine(id=kept))

    def state_of(vm_uuid: str) -> str | None:
        with db.engine.connect() as conn:
            return conn.scalar(sa.select(vms.c.state).where(vms.c.uuid == vm_uuid))

    await wait_until("the deploy under way", lambda: state_of(stuck) == "Starting")
    await wait_until("the stop under way", lambda: state_of(kept) == "Stopping")
    c_msid = c.msid()
    await c.kill()

    def taken_over() -> sa.Row[Any] | None:
        with db.engine.connect() as conn:
            row = conn.execute(sa.select(management_servers).where(management_servers.c.msid == c_msid)).one()
            return row if row.state == "Down" and row.taken_over_by in (a.msid, b.msid) else None

    def all_up_elsewhere() -> bool:
        now = held(db)
        return len(now) == len(GUIDS) and set(now.values()) <= {a.msid, b.msid}

    row = await wait_until("C declared down", taken_over)
    assert row.taken_over_by in (a.msid, b.msid)
    await wait_until("C's agents Up on A and B", all_up_elsewhere)
    with db.engine.connect() as conn:  # B's stop is still B's, under way
        job_row = conn.execute(sa.select(async_jobs.c.status, async_jobs.c.result)
                               .where(async_jobs.c.uuid == stopping["jobid"])).one()
        assert (state_of(kept), job_row.status) == ("Stopping", 0), job_row
    for f in faults.values():
        f.clear()
    with db.engine.connect() as conn:
        job = conn.execute(sa.select(async_jobs).where(async_jobs.c.instance_type == "VirtualMachine",
                                                       async_jobs.c.mgmt_server_id == c_msid,
                                                       async_jobs.c.status == 0)).all()
        assert job == []  # none of C's jobs is left pending
        vm = conn.execute(sa.select(vms.c.id, vms.c.state).where(vms.c.uuid == stuck)).one()
        assert vm.state == "Error"
        assert conn.scalar(sa.select(sa.func.count()).select_from(nics).where(
            nics.c.vm_id == vm.id, nics.c.ip_address.is_not(None))) == 0
        assert capacity.check_totals(conn) == []
    answer = await trio.to_thread.run_sync(with_session, b.api_url)
    assert answer.status_code == 200, answer.text  # the session outlived the server it was made on
    listed = await trio.to_thread.run_sync(lambda: client(b.api_url, creds).listManagementServers())
    states = {s["serviceip"] + str(i): s["state"] for i, s in enumerate(listed["managementserver"])}
    assert sorted(states.values()) == ["Down", "Up", "Up"], listed

    # C comes back: the hosts that put it first move to it, at the rebalance rate; nobody else moves.
    assert a.balancer is not None and b.balancer is not None
    moved_before = a.balancer.moved + b.balancer.moved
    sessions_before = {g: agent.sessions for g, agent in agents.items()}
    c_url = await c.start()
    await wait_until("C live again", lambda: len(a.peers.live) == 3 and len(b.peers.live) == 3)
    await wait_until("the fleet spread again", spread, last=last)
    belongs_on_c = {g for g, h in host_ids().items()
                    if balance.order(h, a.peers.live.values(), "roundrobin")[0].msid == c_msid}
    assert a.balancer.moved + b.balancer.moved - moved_before == len(belongs_on_c)
    reconnected = {g for g, agent in agents.items() if agent.sessions != sessions_before[g]}
    assert reconnected == belongs_on_c  # the others kept their connections
    assert c.proc is not None
    c.proc.send_signal(signal.SIGTERM)
    await c.proc.wait()
