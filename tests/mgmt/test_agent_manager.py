"""The management server with real agents over TCP: handshake to Up, disconnects to Alert, rejection of
unknown placement, restarts on both sides, garbage on the agent port, and commands through send()."""

from __future__ import annotations

import atexit
import random
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import trio

from agent.faults import FaultTable
from agent.ha import read_beat
from agent.kvm import LibvirtResource
from agent.resource import Placement
from agent.shell import Agent, AgentSettings
from agent.simulator import HostSpec, SimulatorResource
from agent.tls import Credentials
from mgmt.agents.manager import AgentManager
from mgmt.db.schema import configuration, host_capacity, hosts, storage_pools
from mgmt.errors import AgentUnavailable, OperationTimedOut
from mgmt.security.trust import Trust
from mgmt.server import ServerConfig, prepare, serve
from protocol.messages import CheckHealthCommand, PowerState, StartCommand, StopCommand, VirtualMachineTO

ZONE = Path(__file__).parents[2] / "docs" / "examples" / "zone.toml"


# The agent port's trust, by port: make_agent gives its hosts certificates from that server's CA.
TRUST: dict[int, Trust] = {}
# Where the test hosts keep their credentials: one directory for this test process, removed at its end.
TLS_ROOT = Path(tempfile.mkdtemp(prefix="cumulo-agent-tls-"))
atexit.register(shutil.rmtree, TLS_ROOT, True)


def tls_dir() -> str:
    """A fresh directory for one host's credentials."""
    return tempfile.mkdtemp(dir=TLS_ROOT)


async def start_server(nursery: trio.Nursery, data_dir: Path, port: int = 0, db: str = "",
                       **settings_values: str) -> AgentManager:
    config = ServerConfig(data_dir=str(data_dir), db=db, agent_port=port, api_port=0, bind="127.0.0.1",
                          peer_port=0,
                          zone_config=str(ZONE))
    if settings_values:  # as an admin would: in the configuration table, before the server starts
        db, _msid, _values = prepare(config)
        with db.engine.begin() as conn:
            for name, value in settings_values.items():
                conn.execute(configuration.update().where(configuration.c.name == name.replace("_", "."))
                             .values(value=value))
        db.dispose()
    services = await nursery.start(serve, config)
    manager: AgentManager = services.agents
    TRUST[manager.port] = services.trust
    return manager


def credentials(port: int, guid: str) -> Credentials | None:
    """A certificate for ``guid`` from the CA of the server on ``port`` (None: no such server here)."""
    trust = TRUST.get(port)
    if trust is None:
        return None
    with trust.db.engine.begin() as conn:
        key, issued = trust.issue_for(conn, guid)
    return Credentials.store(tls_dir(), key, issued.pem, trust.ca.pem)


async def open_agent_stream(port: int, guid: str | None) -> trio.abc.Stream:
    """A connection to the agent port as an agent makes it: TLS with a certificate for ``guid`` (None:
    TLS without one, as an agent that is about to enroll)."""
    from agent.tls import verifying_context

    trust = TRUST[port]
    if guid is None:
        context = verifying_context(trust.ca.pem)
    else:
        creds = credentials(port, guid)
        assert creds is not None
        context = creds.context()
    stream = trio.SSLStream(await trio.open_tcp_stream("127.0.0.1", port), context)
    await stream.do_handshake()
    return stream


def credentials_from(data_dir: Path, guid: str) -> Credentials:
    """A certificate for ``guid`` from the CA of a server running in another process on ``data_dir``."""
    import datetime

    from mgmt.security.ca import CertificateAuthority

    ca = CertificateAuthority.load_or_create(data_dir / "ca")
    key, issued = ca.issue_host(guid, datetime.timedelta(days=1))
    return Credentials.store(tls_dir(), key, issued.pem, ca.pem)


def make_agent(nursery: trio.Nursery, port: int, guid: str, *, cluster: str = "pod1-cluster1",
               faults: FaultTable | None = None, tls: Credentials | None = None,
               storage: Path | None = None) -> Agent:
    """A simulated host; with ``storage``, a directory standing for the shared pools it heartbeats on."""
    agent = Agent(AgentSettings(mgmt=[("127.0.0.1", port)], backoff_base=0.05, backoff_cap=0.3,
                                placement=Placement(guid, f"host-{guid}", "zone1", cluster.split("-")[0],
                                                    cluster), credentials=tls or credentials(port, guid)),
                  SimulatorResource(HostSpec(), faults or FaultTable(), f"/pool/{guid}",
                                    storage_root=str(storage) if storage else ""),
                  rng=random.Random(guid))
    scope = KILL[guid] = trio.CancelScope()

    async def run() -> None:
        with scope:  # cancelled: the host dies (its connection and its heartbeat end with it)
            await agent.run()

    nursery.start_soon(run)
    return agent


KILL: dict[str, trio.CancelScope] = {}  # guid -> the scope that ends that simulated host


def host_row(manager: AgentManager, guid: str) -> sa.Row | None:
    with manager.db.engine.connect() as conn:
        return conn.execute(sa.select(hosts).where(hosts.c.guid == guid)).first()


async def wait_status(manager: AgentManager, guid: str, status: str, timeout: float = 15) -> sa.Row:
    """Wait for the host row to show ``status`` (polled on an interval under a deadline)."""
    with trio.fail_after(timeout):
        while (row := host_row(manager, guid)) is None or row.status != status:
            await trio.sleep(0.02)  # polling the database: there is no event to wait on
    return row


async def test_agents_register_and_come_up(nursery: trio.Nursery, tmp_path: Path, db_url: str) -> None:
    manager = await start_server(nursery, tmp_path, db=db_url)
    agent = make_agent(nursery, manager.port, "g1")
    await agent.up.wait()
    row = await wait_status(manager, "g1", "Up")
    assert (row.name, row.hypervisor_type, row.mgmt_server_id) == ("host-g1", "Simulator", manager.msid)
    assert agent.host_id == row.id
    with manager.db.engine.connect() as conn:
        cap = conn.execute(sa.select(host_capacity).where(host_capacity.c.host_id == row.id)).one()
        local = conn.execute(sa.select(storage_pools).where(storage_pools.c.host_id == row.id)).one()
    assert (cap.cpu_cores, cap.cpu_mhz_total, cap.memory_total) == (16, 16 * 2400, 64 * 1024**3)
    assert local.scope == "HOST" and local.capacity_bytes == 2048 * 1024**3
    answers = await manager.send(row.id, [CheckHealthCommand(), StopCommand(vm_name="none")])
    assert [a.result for a in answers] == [True, True]


async def test_unknown_placement_is_rejected_with_the_reason(nursery: trio.Nursery, tmp_path: Path) -> None:
    manager = await start_server(nursery, tmp_path)
    agent = make_agent(nursery, manager.port, "lost", cluster="pod9-cluster9")
    with trio.fail_after(10):
        while "unknown pod 'pod9'" not in agent.last_close_reason:
            await trio.sleep(0.02)  # the agent's reason is set when its connection ends
    assert host_row(manager, "lost") is None


async def test_a_dead_agent_goes_alert_and_comes_back_on_the_same_row(nursery: trio.Nursery, tmp_path: Path,
                                                                      db_url: str) -> None:
    manager = await start_server(nursery, tmp_path, db=db_url)
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as agents:
            agent = make_agent(agents, manager.port, "g2")
            await agent.up.wait()
            first = await wait_status(manager, "g2", "Up")
            agents.cancel_scope.cancel()  # the agent process dies: its socket closes
    assert not scope.cancelled_caught
    await wait_status(manager, "g2", "Alert")
    with pytest.raises(AgentUnavailable):
        await manager.send(first.id, [CheckHealthCommand()])
    again = make_agent(nursery, manager.port, "g2")
    await again.up.wait()
    second = await wait_status(manager, "g2", "Up")
    assert second.id == first.id and second.update_count > first.update_count


async def test_silent_host_is_investigated_then_alerted(nursery: trio.Nursery, tmp_path: Path) -> None:
    manager = await start_server(nursery, tmp_path, ping_interval="1", ping_timeout="1.5")
    assert (manager.ping_interval, manager.ping_timeout) == (1, 1.5)
    faults = FaultTable()
    agent = make_agent(nursery, manager.port, "g3", faults=faults)
    await agent.up.wait()
    row = await wait_status(manager, "g3", "Up")
    faults.stop_pinging = True
    faults.add("CheckHealthCommand", "wait:60000")  # a hung host: no pings, no answers
    await wait_status(manager, "g3", "Alert")
    with pytest.raises((AgentUnavailable, OperationTimedOut)):
        await manager.send(row.id, [CheckHealthCommand()], timeout=0.5)


async def test_a_database_failing_under_host_writes_ends_connections_not_the_server(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    """Host status writes that fail (a deadlock with another server, a database gone for a moment) end
    the connection they were for, never the server: the agents come back once writes work again."""
    manager = await start_server(nursery, tmp_path)
    failing = {"on": True}

    def fail_host_updates(conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
        if failing["on"] and statement.lstrip().upper().startswith("UPDATE HOSTS"):
            raise sa.exc.OperationalError(statement[:40], {}, RuntimeError("injected: the disk is gone"))

    sa.event.listen(manager.db.engine, "before_cursor_execute", fail_host_updates)
    agent = make_agent(nursery, manager.port, "g9")  # registered (a new row), then Ready: Up fails
    with trio.fail_after(30):
        while agent.sessions < 1 and "could not record" not in agent.last_close_reason:
            await trio.sleep(0.02)  # polling the agent: its connection ends without an event to wait on
    g10 = make_agent(nursery, manager.port, "g10")
    KILL["g9"].cancel()  # a host gone while writes fail: its disconnection cannot be written either
    failing["on"] = False
    await g10.up.wait()
    row = await wait_status(manager, "g10", "Up")
    assert (await manager.send(row.id, [CheckHealthCommand()]))[0].result  # the server lives on


async def test_garbage_on_the_agent_port_disturbs_no_one(nursery: trio.Nursery, tmp_path: Path) -> None:
    manager = await start_server(nursery, tmp_path)
    agent = make_agent(nursery, manager.port, "g4")
    await agent.up.wait()
    stream = await trio.open_tcp_stream("127.0.0.1", manager.port)
    await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"\0" * 64)
    with trio.fail_after(5):
        assert await stream.receive_some(100) == b""  # the server hung up on us
    row = await wait_status(manager, "g4", "Up")
    assert (await manager.send(row.id, [CheckHealthCommand()]))[0].result


async def test_a_server_restart_keeps_the_inventory_and_agents_return(nursery: trio.Nursery, tmp_path: Path,
                                                                      db_url: str) -> None:
    with trio.CancelScope() as first_life:
        async with trio.open_nursery() as server_nursery:
            manager = await start_server(server_nursery, tmp_path, db=db_url)
            port, msid = manager.port, manager.msid
            agent = make_agent(nursery, port, "g5")
            await agent.up.wait()
            before = await wait_status(manager, "g5", "Up")
            server_nursery.cancel_scope.cancel()
    assert not first_life.cancelled_caught
    assert (await wait_status(manager, "g5", "Alert")).id == before.id  # a crash: the link was lost
    manager = await start_server(nursery, tmp_path, port, db=db_url)  # the same data directory and port
    assert manager.msid == msid
    after = await wait_status(manager, "g5", "Up")
    assert after.id == before.id and after.uuid == before.uuid


async def test_a_thousand_agents_reach_up(nursery: trio.Nursery, tmp_path: Path) -> None:
    manager = await start_server(nursery, tmp_path)
    count = 1000
    clusters = [f"pod{p}-cluster{c}" for p in (1, 2) for c in (1, 2)]
    agents = [make_agent(nursery, manager.port, f"k{i:04d}", cluster=clusters[i % 4]) for i in range(count)]
    with trio.fail_after(120):
        for agent in agents:
            await agent.up.wait()
        while sum(status == "Up" for status in manager.status.values()) < count:
            await trio.sleep(0.05)  # the server records Up once the row is written
    with manager.db.engine.connect() as conn:
        rows = conn.execute(sa.select(hosts.c.status, hosts.c.update_count)).all()
    # Every host went Connecting -> Up once: none flapped (to Alert, or through a second startup).
    assert sorted(set(rows)) == [("Up", 2)] and len(rows) == count
    assert manager.registrations.batches < count  # startups that arrived together shared transactions


async def test_a_clean_shutdown_leaves_hosts_disconnected_and_exits(tmp_path: Path) -> None:
    import os
    import signal
    import sys

    async with trio.open_nursery() as nursery:
        log = (tmp_path / "mgmt.log").open("wb")
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "mgmt", "serve", "--data-dir", str(tmp_path), "--agent-port", "0",
             "--api-port", "0", "--bind", "127.0.0.1", "--zone-config", str(ZONE)], stderr=log)
        with trio.fail_after(30):
            while "listening for agents on port" not in (tmp_path / "mgmt.log").read_text():
                await trio.sleep(0.05)  # the server logs its port once it listens
        text = (tmp_path / "mgmt.log").read_text()
        port = int(re.search(r"listening for agents on port (\d+)", text).group(1))  # type: ignore[union-attr]
        agent = make_agent(nursery, port, "g6", tls=credentials_from(tmp_path, "g6"))
        await agent.up.wait()
        os.kill(proc.pid, signal.SIGTERM)
        with trio.fail_after(30):
            assert await proc.wait() == 0
        nursery.cancel_scope.cancel()
    from mgmt.db.database import Database, sqlite_url

    db = Database(sqlite_url(tmp_path))
    with db.engine.connect() as conn:
        assert conn.scalar(sa.select(hosts.c.status).where(hosts.c.guid == "g6")) == "Disconnected"
    db.dispose()


async def test_an_agent_that_hangs_up_mid_handshake_disturbs_no_one(nursery: trio.Nursery,
                                                                   tmp_path: Path) -> None:
    from protocol import Connection, Role
    from protocol.messages import StartupRoutingCommand

    manager = await start_server(nursery, tmp_path)
    steady = make_agent(nursery, manager.port, "steady")
    await steady.up.wait()
    for i in range(20):  # start up, then hang up before (or while) the server sends Ready
        stream = await open_agent_stream(manager.port, f"flaky-{i}")
        conn = Connection(Role.AGENT)
        _seq, data = conn.send_request([StartupRoutingCommand(
            guid=f"flaky-{i}", name="f", zone="zone1", pod="pod1", cluster="pod1-cluster1", cpus=1,
            cpu_speed_mhz=1000, memory_bytes=1 << 30, hypervisor_type="Simulator")])
        await stream.send_all(data)
        await stream.aclose()
    row = await wait_status(manager, "steady", "Up")
    assert (await manager.send(row.id, [CheckHealthCommand()]))[0].result
    with trio.fail_after(10):
        while len([h for h in manager.status if h != row.id]) < 20:
            await trio.sleep(0.02)  # every flaky host was registered and handled
    assert row.id in manager.links and manager.links[row.id].up


async def test_power_reports_reach_the_vm_rows_in_batches_only_when_changed(nursery: trio.Nursery,
                                                                           tmp_path: Path) -> None:
    import uuid as uuidlib

    from mgmt.db.schema import service_offerings, templates, vms, zones
    from protocol.messages import StartCommand, VirtualMachineTO

    manager = await start_server(nursery, tmp_path, ping_interval="1")
    faults = FaultTable()
    agent = make_agent(nursery, manager.port, "pw", faults=faults)
    await agent.up.wait()
    row = await wait_status(manager, "pw", "Up")
    with manager.db.engine.begin() as conn:  # what orchestration will write when it deploys
        ids = {t.name: conn.scalar(sa.select(t.c.id)) for t in (zones, service_offerings, templates)}
        for name, host in (("i-2-1-VM", row.id), ("i-2-2-VM", row.id)):
            conn.execute(vms.insert().values(
                uuid=str(uuidlib.uuid4()), instance_name=name, display_name=name, state="Running",
                update_count=0, power_state="PowerUnknown", zone_id=ids["zones"], host_id=host,
                service_offering_id=ids["service_offerings"], template_id=ids["templates"], account_id=1,
                ha_enabled=False, created=sa.func.now()))

    def power(name: str) -> tuple[str, object]:
        with manager.db.engine.connect() as conn:
            r = conn.execute(sa.select(vms.c.power_state, vms.c.power_state_updated)
                             .where(vms.c.instance_name == name)).one()
        return r.power_state, r.power_state_updated

    async def wait_power(name: str, state: str) -> None:
        with trio.fail_after(15):
            while power(name)[0] != state:
                await trio.sleep(0.05)  # the rows change at the next ping and flush

    vm = VirtualMachineTO(name="i-2-1-VM", uuid="u", vcpus=1, memory_bytes=1 << 30)
    assert (await manager.send(row.id, [StartCommand(vm=vm)]))[0].result
    await wait_power("i-2-1-VM", "PowerOn")
    await wait_power("i-2-2-VM", "PowerOff")  # on this host in the database, not in its report
    stamp = power("i-2-1-VM")[1]
    writes = manager.power_writes
    seen = manager.last_seen[row.id]
    with trio.fail_after(10):
        while manager.last_seen[row.id] <= seen + 1.5:  # two more pings, with the same report, arrive
            await trio.sleep(0.05)
    assert manager.power_writes == writes and power("i-2-1-VM")[1] == stamp  # nothing rewritten
    faults.power_off.add("i-2-1-VM")  # powered off behind the server's back
    await wait_power("i-2-1-VM", "PowerOff")
    with trio.fail_after(5):  # the row is committed (in a worker thread) just before the count moves
        while manager.power_writes == writes:
            await trio.sleep(0.01)
    assert manager.power_writes == writes + 1


HA_FAST = {"ping_interval": "1", "ping_timeout": "1.5", "ha.heartbeat.interval": "0.1",
           "ha.heartbeat.window": "0.5", "ha.investigate.interval": "1"}


async def test_a_silent_host_whose_heartbeat_stopped_goes_down(nursery: trio.Nursery, tmp_path: Path) -> None:
    manager = await start_server(nursery, tmp_path, **HA_FAST)
    faults, storage = FaultTable(), tmp_path / "shared"
    victim = make_agent(nursery, manager.port, "victim", faults=faults, storage=storage)
    neighbour = make_agent(nursery, manager.port, "neighbour", storage=storage)  # shares its pools
    await victim.up.wait()
    await neighbour.up.wait()
    await wait_status(manager, "neighbour", "Up")
    assert victim.heartbeat.dirs and victim.heartbeat.dirs == neighbour.heartbeat.dirs
    with trio.fail_after(15):  # a heartbeat never written says nothing: it must have beaten once
        while read_beat(victim.heartbeat.dirs[0], "victim") is None:
            await trio.sleep(0.02)  # polling a file: there is no event to wait on
    # the simulated host hung: no pings, no heartbeat; only storage can tell (no oracle)
    faults.stop_pinging = faults.stop_heartbeat = True
    faults.add("CheckHealthCommand", "wait:60000")
    await wait_status(manager, "victim", "Down")
    assert (await wait_status(manager, "neighbour", "Up")).status == "Up"


async def test_a_host_cut_off_from_the_server_but_writing_its_heartbeat_stays_alert(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    manager = await start_server(nursery, tmp_path, **HA_FAST)
    faults, storage = FaultTable(), tmp_path / "shared"
    victim = make_agent(nursery, manager.port, "victim", faults=faults, storage=storage)
    neighbour = make_agent(nursery, manager.port, "neighbour", storage=storage)
    await victim.up.wait()
    await neighbour.up.wait()
    host_id = (await wait_status(manager, "victim", "Up")).id
    faults.partitioned = True  # its link to the server goes; its storage stays
    await wait_status(manager, "victim", "Alert")
    with trio.fail_after(15):  # investigated again and again: always alive on storage
        while manager._investigated.get(host_id, 0) == 0 or host_id in manager._investigating:
            await trio.sleep(0.02)
    first = manager._investigated[host_id]
    with trio.fail_after(15):
        while manager._investigated[host_id] == first:
            await trio.sleep(0.02)
    assert host_row(manager, "victim").status == "Alert"  # type: ignore[union-attr]


async def test_without_shared_storage_nobody_can_tell_and_the_host_stays_alert(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    manager = await start_server(nursery, tmp_path, **HA_FAST)
    faults = FaultTable()
    victim = make_agent(nursery, manager.port, "victim", faults=faults)  # no heartbeat anywhere
    neighbour = make_agent(nursery, manager.port, "neighbour")
    await victim.up.wait()
    await neighbour.up.wait()
    host_id = (await wait_status(manager, "victim", "Up")).id
    faults.stop_pinging = True
    faults.add("CheckHealthCommand", "wait:60000")
    await wait_status(manager, "victim", "Alert")
    with trio.fail_after(15):
        while manager._investigated.get(host_id, 0) == 0 or host_id in manager._investigating:
            await trio.sleep(0.02)
    assert host_row(manager, "victim").status == "Alert"  # type: ignore[union-attr]


async def test_a_libvirt_agent_comes_up_and_runs_a_vm_through_the_server(nursery: trio.Nursery,
                                                                         tmp_path: Path) -> None:
    manager = await start_server(nursery, tmp_path, ping_interval="1")
    agent = Agent(AgentSettings(mgmt=[("127.0.0.1", manager.port)],
                                placement=Placement("kvm-1", "kvm-host", "zone1", "pod1", "pod1-cluster1"),
                                credentials=credentials(manager.port, "kvm-1")),
                  LibvirtResource("test:///default", pool="default-pool"))
    nursery.start_soon(agent.run)
    row = await wait_status(manager, "kvm-1", "Up")
    assert row.hypervisor_type == "KVM"
    with manager.db.engine.connect() as conn:
        assert conn.execute(sa.select(host_capacity.c.cpu_cores)
                            .where(host_capacity.c.host_id == row.id)).scalar_one() > 0
    name = f"i-{random.getrandbits(32):x}"
    start = StartCommand(vm=VirtualMachineTO(name=name, uuid=str(uuid.uuid4()), vcpus=1,
                                             memory_bytes=64 * 2**20))
    assert (await manager.send(row.id, [start]))[0].result
    with trio.fail_after(15):  # the next pings carry the new VM in their power report
        while manager.reports.get(row.id, {}).get(name) is not PowerState.ON:
            await trio.sleep(0.02)  # pings arrive on their own interval
    assert (await manager.send(row.id, [StopCommand(vm_name=name, forced=True)]))[0].result


async def test_a_request_in_flight_fails_at_once_when_the_connection_drops(nursery: trio.Nursery,
                                                                            tmp_path: Path) -> None:
    manager = await start_server(nursery, tmp_path)
    faults = FaultTable()
    faults.add("StopCommand", "drop")
    agent = make_agent(nursery, manager.port, "dropper", faults=faults)
    await agent.up.wait()
    row = await wait_status(manager, "dropper", "Up")
    with trio.fail_after(10), pytest.raises(AgentUnavailable, match="closed before it answered StopCommand"):
        await manager.send(row.id, [StopCommand(vm_name="x")], timeout=3600)


async def test_a_fan_out_collects_every_answer_or_says_why_not(nursery: trio.Nursery, tmp_path: Path) -> None:
    """One command to many hosts: each host's answers, a failure for a host that is not connected, a
    timeout for one that does not answer in time (its late answer is dropped quietly)."""
    slow = FaultTable()
    slow.add("CheckHealthCommand", "wait:3600000", count=1)
    manager = await start_server(nursery, tmp_path)
    agents = {guid: make_agent(nursery, manager.port, guid, faults=slow if guid == "slow" else None)
              for guid in ("a", "b", "c", "slow")}
    for agent in agents.values():
        await agent.up.wait()
    ids = {guid: (await wait_status(manager, guid, "Up")).id for guid in agents}
    fast = [ids[guid] for guid in ("a", "b", "c")]
    results = await manager.fan_out([*fast, 9999], [CheckHealthCommand()], timeout=60)
    assert set(results) == {*fast, 9999}
    for host_id in fast:
        answers = results[host_id]
        assert isinstance(answers, tuple) and answers[0].result, host_id
    assert isinstance(results[9999], AgentUnavailable)
    # a host busy for an hour cannot answer within a second, however loaded the machine is
    late = await manager.fan_out([ids["slow"]], [CheckHealthCommand()], timeout=1)
    assert isinstance(late[ids["slow"]], OperationTimedOut)
    # the slow host is still there and answers the next one
    again = await manager.fan_out([ids["slow"]], [CheckHealthCommand()], timeout=30)
    answers = again[ids["slow"]]
    assert isinstance(answers, tuple) and answers[0].result
    KILL["c"].cancel()
    gone = await manager.fan_out([ids["c"]], [CheckHealthCommand()], timeout=30)
    assert isinstance(gone[ids["c"]], AgentUnavailable)
