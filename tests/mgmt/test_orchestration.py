"""The VM lifecycle through a real server and simulated agents over TCP, with faults injected through
the simulator: every step, its failure paths, concurrency, and capacity, addresses and volumes that
are never leaked (``capacity.check_totals`` after each)."""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
import trio
import trio.testing

from agent.faults import FaultTable
from agent.shell import Agent
from agent.simulator import SimulatorResource
from mgmt.agents.host_status import Status
from mgmt.db.schema import (
    capacity_reservations,
    clusters,
    host_capacity,
    hosts,
    networks,
    nics,
    service_offerings,
    storage_pools,
    templates,
    vms,
    volumes,
    zones,
)
from mgmt.errors import InsufficientCapacity, InvalidParameter
from mgmt.jobs.runner import FAILED, SUCCEEDED
from mgmt.jobs.runner import get as get_job
from mgmt.orchestration.engine import OperationFailed
from mgmt.orchestration.vms import DeploySpec
from mgmt.planner import capacity
from mgmt.server import ServerConfig, Services, serve
from protocol.messages import PrimaryStorageDownloadCommand, StopCommand

from .test_agent_manager import TRUST, ZONE, make_agent

GUIDS = {"a1": "pod1-cluster1", "a2": "pod1-cluster1", "b1": "pod1-cluster2", "b2": "pod1-cluster2"}


@dataclass
class Cloud:
    services: Services
    agents: dict[str, Agent]
    faults: dict[str, FaultTable]
    host_ids: dict[str, int]
    zone: int
    small: int
    medium: int
    template: int
    network: int
    server_scope: trio.CancelScope | None = None
    config: ServerConfig | None = None
    server_gone: trio.Event | None = None

    @property
    def orch(self):  # type: ignore[no-untyped-def]
        return self.services.orchestrator

    def spec(self, offering: int | None = None, **kw: object) -> DeploySpec:
        return DeploySpec(self.zone, offering or self.small, self.template, (self.network,), **kw)  # type: ignore[arg-type]

    def sim(self, guid: str) -> SimulatorResource:
        return SimulatorResource.registry[guid]

    def guid_of(self, host_id: int) -> str:
        return next(g for g, h in self.host_ids.items() if h == host_id)

    def vm(self, vm_id: int) -> sa.Row:
        with self.services.db.engine.connect() as conn:
            return conn.execute(sa.select(vms).where(vms.c.id == vm_id)).one()

    def exact(self) -> None:
        """Capacity columns equal the reservations; no host over its limit; no address given twice."""
        with self.services.db.engine.connect() as conn:
            assert capacity.check_totals(conn) == []
            rows = conn.execute(
                sa.select(host_capacity, clusters.c.cpu_overcommit)
                .join(hosts, hosts.c.id == host_capacity.c.host_id)
                .join(clusters, clusters.c.id == hosts.c.cluster_id)
            )
            for hc in rows:  # pod1-cluster2 over-commits CPU 2x; memory is never over-committed here
                assert hc.cpu_mhz_used + hc.cpu_mhz_reserved <= hc.cpu_mhz_total * (hc.cpu_overcommit or 1.0)
                assert hc.memory_used + hc.memory_reserved <= hc.memory_total
            ips = list(conn.scalars(sa.select(nics.c.ip_address).where(nics.c.ip_address.is_not(None))))
        assert len(ips) == len(set(ips))


async def start_cloud(nursery: trio.Nursery, tmp_path: Path, db: str = "", **settings: str) -> Cloud:
    config = ServerConfig(
        api_port=0, data_dir=str(tmp_path), db=db, agent_port=0, bind="127.0.0.1", zone_config=str(ZONE),
        peer_port=0,
    )
    if settings:
        from mgmt.db.schema import configuration
        from mgmt.server import prepare

        db, _msid, _values = prepare(config)
        with db.engine.begin() as conn:
            for name, value in settings.items():
                conn.execute(configuration.update().where(configuration.c.name == name).values(value=value))
        db.dispose()
    server_scope, server_gone = trio.CancelScope(), trio.Event()

    async def run_server(task_status: trio.TaskStatus[Services] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            with server_scope:  # cancelled: the server stops at once, as if killed (agents stay)
                await serve(config, task_status=task_status)
        finally:
            server_gone.set()

    services: Services = await nursery.start(run_server)
    TRUST[services.agents.port] = services.trust
    faults = {g: FaultTable() for g in GUIDS}
    agents = {
        g: make_agent(nursery, services.agents.port, g, cluster=c, faults=faults[g],
                      storage=tmp_path / "shared")
        for g, c in GUIDS.items()
    }
    with trio.fail_after(20):
        for agent in agents.values():
            await agent.up.wait()
        while sum(1 for h in services.agents.status.values() if h == "Up") < len(GUIDS) or sum(
            1 for i in range(services.placement.planner.index.n)
            if services.placement.planner.index.flags[i] & 7 == 7
        ) < len(GUIDS):
            await trio.sleep(0.02)  # the planner learns the new hosts from the database
    with services.db.engine.connect() as conn:
        ids = {
            name: conn.scalar(sa.select(t.c.id).where(t.c.name == name))
            for t, name in [(zones, "zone1"), (templates, "debian-12"), (networks, "guest1")]
        }
        offerings = dict(conn.execute(sa.select(service_offerings.c.name, service_offerings.c.id)).all())
        host_ids = dict(conn.execute(sa.select(hosts.c.guid, hosts.c.id)).all())
    return Cloud(
        services,
        agents,
        faults,
        host_ids,
        ids["zone1"],
        offerings["small"],
        offerings["medium"],
        ids["debian-12"],
        ids["guest1"],
        server_scope,
        config,
        server_gone,
    )


@pytest.fixture
async def cloud(nursery: trio.Nursery, tmp_path: Path) -> Cloud:
    return await start_cloud(nursery, tmp_path, **{"ping.interval": "1"})


@pytest.fixture
async def any_cloud(nursery: trio.Nursery, tmp_path: Path, db_url: str) -> Cloud:
    """The cloud on SQLite and on PostgreSQL."""
    return await start_cloud(nursery, tmp_path, db_url, **{"ping.interval": "1"})


async def test_the_whole_life_of_a_vm(any_cloud: Cloud) -> None:
    cloud = any_cloud
    orch = cloud.orch
    vm_id = await orch.deploy(cloud.spec(name="web1"))
    row = cloud.vm(vm_id)
    assert (row.state, row.display_name, row.instance_name) == ("Running", "web1", f"i-2-{vm_id}-VM")
    first_host = row.host_id
    sim = cloud.sim(cloud.guid_of(first_host))
    assert row.instance_name in sim.host.vms
    to = sim.host.vms[row.instance_name].to
    assert to.vcpus == 1 and to.memory_bytes == 2**30 and to.nics[0].broadcast_uri == "vlan://100"
    assert ipaddress.ip_address(to.nics[0].ip) in ipaddress.ip_network("10.1.0.0/16")
    assert to.disks[0].path and to.disks[0].type == "ROOT"
    cloud.exact()

    await orch.reboot(vm_id)
    assert sim.host.vms[row.instance_name].boots == 2

    await orch.stop(vm_id)
    assert cloud.vm(vm_id).state == "Stopped" and row.instance_name not in sim.host.vms
    with cloud.services.db.engine.connect() as conn:
        held = conn.execute(
            sa.select(capacity_reservations).where(capacity_reservations.c.vm_id == vm_id)
        ).one()
    assert held.state == "Held" and held.host_id == first_host  # kept on its last host for a while
    cloud.exact()

    await orch.start(vm_id)
    assert cloud.vm(vm_id).state == "Running"
    cloud.exact()

    current = cloud.vm(vm_id).host_id
    moved_to = await orch.migrate(vm_id)
    assert moved_to != current and cloud.vm(vm_id).host_id == moved_to
    assert row.instance_name in cloud.sim(cloud.guid_of(moved_to)).host.vms
    cloud.exact()
    back = await orch.migrate(vm_id, host_id=current)
    assert back == current and cloud.vm(vm_id).state == "Running"
    cloud.exact()

    await orch.destroy(vm_id)
    assert cloud.vm(vm_id).state == "Destroyed"
    await orch.recover(vm_id)
    assert cloud.vm(vm_id).state == "Stopped"
    await orch.start(vm_id)
    await orch.destroy(vm_id, expunge=True)
    gone = cloud.vm(vm_id)
    assert gone.removed is not None
    with cloud.services.db.engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(capacity_reservations)) == 0
        assert conn.scalars(sa.select(nics.c.ip_address).where(nics.c.vm_id == vm_id)).all() == [None]
        assert set(conn.scalars(sa.select(volumes.c.state).where(volumes.c.vm_id == vm_id))) == {"Expunged"}
    assert not any(f"/{v}" in p for p in SimulatorResource.shared for v in [to.disks[0].volume_uuid])
    cloud.exact()


async def test_illegal_requests_are_refused_before_any_side_effect(cloud: Cloud) -> None:
    vm_id = await cloud.orch.deploy(cloud.spec(), start=False)
    before = cloud.vm(vm_id)
    with pytest.raises(
        InvalidParameter, match=rf"cannot stop VM i-2-{vm_id}-VM: it is Stopped; stop needs it Running"
    ):
        await cloud.orch.stop(vm_id)
    with pytest.raises(InvalidParameter, match=r"cannot migrate .* it is Stopped"):
        await cloud.orch.migrate(vm_id)
    with pytest.raises(InvalidParameter, match="reboot needs it Running"):
        await cloud.orch.reboot(vm_id)
    with pytest.raises(InvalidParameter, match="cannot recover"):
        await cloud.orch.recover(vm_id)
    assert cloud.vm(vm_id).update_count == before.update_count
    with pytest.raises(InvalidParameter, match="template 999 does not exist"):
        await cloud.orch.deploy(DeploySpec(cloud.zone, cloud.small, 999, (cloud.network,)))
    with pytest.raises(InvalidParameter, match=r"ipaddress 10\.9\.9\.9 is outside the IP ranges"):
        await cloud.orch.deploy(cloud.spec(ip_address="10.9.9.9"))
    cloud.exact()


async def test_a_failed_start_is_retried_on_another_host(cloud: Cloud) -> None:
    for guid in ("a1", "a2", "b1"):
        cloud.faults[guid].add("StartCommand", "fail", details=f"{guid} cannot")
    vm_id = await cloud.orch.deploy(cloud.spec())
    assert cloud.vm(vm_id).host_id == cloud.host_ids["b2"]
    cloud.exact()


async def test_when_every_host_fails_nothing_is_left_behind(cloud: Cloud) -> None:
    for faults in cloud.faults.values():
        faults.add("StartCommand", "fail", details="no hypervisor today")
    with pytest.raises(InsufficientCapacity, match=r"after 4 attempt.*no hypervisor today"):
        await cloud.orch.deploy(cloud.spec())
    with cloud.services.db.engine.connect() as conn:
        vm = conn.execute(sa.select(vms)).one()
        assert (vm.state, vm.host_id) == ("Error", None)
        assert conn.scalar(sa.select(sa.func.count()).select_from(capacity_reservations)) == 0
        assert conn.scalars(sa.select(nics.c.ip_address)).all() == [None]
        assert set(conn.scalars(sa.select(volumes.c.state))) == {"Allocated"}
        root = conn.scalar(sa.select(volumes.c.uuid))
    assert not [p for p in SimulatorResource.shared if root in p]  # each attempt's volume was deleted again
    cloud.exact()


async def test_an_agent_that_drops_mid_start_loses_nothing_and_serves_again(cloud: Cloud) -> None:
    for guid in ("a1", "a2", "b2"):
        cloud.faults[guid].add("StartCommand", "fail", details=f"{guid} cannot")
    cloud.faults["b1"].add("StartCommand", "drop", count=1)  # b1 hangs up on its first start
    with pytest.raises(InsufficientCapacity, match="after 4 attempt"):
        await cloud.orch.deploy(cloud.spec())
    cloud.exact()
    with cloud.services.db.engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(capacity_reservations)) == 0
    with trio.fail_after(15):  # b1's agent reconnects by itself
        while cloud.services.agents.status.get(cloud.host_ids["b1"]) != "Up":
            await trio.sleep(0.02)
    vm_id = await cloud.orch.deploy(cloud.spec())
    assert cloud.vm(vm_id).host_id == cloud.host_ids["b1"]
    cloud.exact()


async def test_a_stop_that_times_out_leaves_the_vm_running_unless_forced(cloud: Cloud) -> None:
    vm_id = await cloud.orch.deploy(cloud.spec())
    guid = cloud.guid_of(cloud.vm(vm_id).host_id)
    cloud.orch.settings.stop_wait = 0.5
    cloud.faults[guid].add("StopCommand", "wait:5000")
    with pytest.raises(OperationFailed, match=r"did not answer StopCommand within 0\.5 s"):
        await cloud.orch.stop(vm_id)
    assert cloud.vm(vm_id).state == "Running"
    await cloud.orch.stop(vm_id, forced=True)
    assert cloud.vm(vm_id).state == "Stopped"
    cloud.exact()


async def test_a_failed_migration_keeps_the_vm_on_its_source(cloud: Cloud) -> None:
    vm_id = await cloud.orch.deploy(cloud.spec())
    source = cloud.vm(vm_id).host_id
    cloud.faults[cloud.guid_of(source)].add("MigrateCommand", "fail", details="link down")
    with pytest.raises(OperationFailed, match="the source failed to migrate it: link down; it keeps running"):
        await cloud.orch.migrate(vm_id)
    row = cloud.vm(vm_id)
    assert (row.state, row.host_id) == ("Running", source)
    cloud.exact()


async def test_a_vm_powered_off_behind_the_servers_back_becomes_stopped(cloud: Cloud) -> None:
    vm_id = await cloud.orch.deploy(cloud.spec())
    row = cloud.vm(vm_id)
    cloud.faults[cloud.guid_of(row.host_id)].power_off.add(row.instance_name)
    with trio.fail_after(15):
        while cloud.vm(vm_id).state != "Stopped":
            await trio.sleep(0.05)  # pings carry the report; the follower runs every half interval
    assert cloud.vm(vm_id).host_id is None
    cloud.exact()


async def test_a_hundred_concurrent_deploys_never_overcommit(any_cloud: Cloud) -> None:
    """Medium VMs (2 x 2,000 MHz, 4 GiB) on four 38,400 MHz, 64 GiB hosts (cluster 2 over-commits CPU
    2x): CPU or memory runs out well before 100."""
    cloud = any_cloud
    runner = cloud.services.jobs
    job_ids = []
    for n in range(100):
        job_ids.append(
            await runner.submit(
                "deployVirtualMachine", lambda n=n: cloud.orch.deploy(cloud.spec(cloud.medium, name=f"vm{n}"))
            )
        )
    results = [await runner.wait(j) for j in job_ids]
    ok = [r for r in results if r.status == SUCCEEDED]
    failed = [r for r in results if r.status == FAILED]
    assert len(ok) + len(failed) == 100 and ok and failed
    assert all("could not start VM" in r.result for r in failed)
    with cloud.services.db.engine.connect() as conn:
        running = conn.execute(
            sa.select(vms.c.host_id, sa.func.count()).where(vms.c.state == "Running").group_by(vms.c.host_id)
        ).all()
    assert sum(n for _, n in running) == len(ok)
    assert all(n * 4 * 2**30 <= 64 * 2**30 for _, n in running)
    cloud.exact()  # and CPU within each host's limit


async def test_jobs_on_one_vm_queue_behind_each_other(cloud: Cloud) -> None:
    """CloudStack's sync queue: a stop and a start sent while a reboot runs wait their turn, in order
    (they were refused with 530 "busy" before)."""
    vm_id = await cloud.orch.deploy(cloud.spec())
    runner = cloud.services.jobs
    gate = trio.Event()
    ran: list[str] = []

    def job(name: str, operation: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        async def work() -> None:
            ran.append(name)
            if name == "reboot":
                await gate.wait()  # held until the others are queued behind it
            await operation()
        return work

    kw = {"instance_type": "VirtualMachine", "instance_id": vm_id}
    first = await runner.submit("rebootVirtualMachine", job("reboot", lambda: cloud.orch.reboot(vm_id)), **kw)
    second = await runner.submit("stopVirtualMachine", job("stop", lambda: cloud.orch.stop(vm_id)), **kw)
    third = await runner.submit("startVirtualMachine", job("start", lambda: cloud.orch.start(vm_id)), **kw)
    await trio.testing.wait_all_tasks_blocked()
    assert ran == ["reboot"] and runner.busy("VirtualMachine", vm_id)
    assert [(await cloud.services.db.run(get_job, j)).status for j in (second, third)] == [0, 0]
    gate.set()
    assert (await runner.wait(third)).status == SUCCEEDED
    assert ran == ["reboot", "stop", "start"]
    assert [(await runner.wait(j)).status for j in (first, second)] == [SUCCEEDED, SUCCEEDED]
    assert cloud.vm(vm_id).state == "Running" and not runner.busy("VirtualMachine", vm_id)
    cloud.exact()


async def test_a_vm_found_running_is_adopted_with_its_capacity(cloud: Cloud) -> None:
    vm_id = await cloud.orch.deploy(cloud.spec())
    host_id = cloud.vm(vm_id).host_id
    with cloud.services.db.engine.begin() as conn:  # the server loses track: Stopped, nothing held
        capacity.release_compute(conn, vm_id)
        conn.execute(vms.update().where(vms.c.id == vm_id).values(state="Stopped", host_id=None))
    with trio.fail_after(15):
        while cloud.vm(vm_id).state != "Running":
            await trio.sleep(0.05)  # the host's next report still names it running; the follower adopts it
    assert cloud.vm(vm_id).host_id == host_id
    with cloud.services.db.engine.connect() as conn:
        assert conn.scalar(sa.select(capacity_reservations.c.state)) == "Allocated"
    cloud.exact()


async def test_destroyed_vms_are_expunged_when_due(cloud: Cloud) -> None:
    keep, gone = await cloud.orch.deploy(cloud.spec()), await cloud.orch.deploy(cloud.spec())
    await cloud.orch.destroy(gone)
    assert await cloud.orch.expunge_due() == 0  # expunge.delay (a day by default) has not passed
    cloud.orch.settings.expunge_delay = 0
    assert await cloud.orch.expunge_due() == 1
    assert cloud.vm(gone).removed is not None and cloud.vm(keep).state == "Running"
    cloud.exact()


async def test_a_data_disk_is_made_with_the_vm_and_attached(cloud: Cloud) -> None:
    from mgmt.db.schema import disk_offerings

    with cloud.services.db.engine.connect() as conn:
        offering = conn.scalar(sa.select(disk_offerings.c.id).where(disk_offerings.c.size_gb > 0))
    vm_id = await cloud.orch.deploy(cloud.spec(disk_offering_id=offering))
    row = cloud.vm(vm_id)
    to = cloud.sim(cloud.guid_of(row.host_id)).host.vms[row.instance_name].to
    assert [(d.type, d.size_bytes) for d in to.disks] == [("ROOT", 2 * 2**30), ("DATADISK", 100 * 2**30)]
    cloud.exact()


async def test_a_status_reported_while_the_planner_reads_a_host_wins(cloud: Cloud) -> None:
    """A reconnecting host is read again from the database; the Up that arrives while that read is in
    flight (the row still says Connecting) must not be undone by it."""
    placement = cloud.services.placement
    host_id = cloud.host_ids["a1"]
    with cloud.services.db.engine.begin() as conn:
        conn.execute(hosts.update().where(hosts.c.id == host_id).values(status="Connecting"))
    reloads = placement.reloads
    placement.host_changed(host_id, Status.CONNECTING)  # queued for a read of its row
    placement.host_changed(host_id, Status.UP)  # reported before that read ran
    with trio.fail_after(10):
        while placement.reloads == reloads:
            await trio.sleep(0.01)  # the placement task reads in a worker thread
    index = placement.planner.index
    assert index.flags[index.position[host_id]] & 1  # UP


async def test_a_peer_s_late_status_of_a_host_does_not_stick(cloud: Cloud) -> None:
    """Several servers: a host that moved from a peer to this server is heard Up here, then the peer's
    older Disconnected arrives through the change journal. The index must end as the database says (Up),
    and a later full read must not bring the stale status back."""
    from mgmt.agents.registry import HostStatusChanged

    placement = cloud.services.placement
    host_id = cloud.host_ids["a1"]
    index = placement.planner.index
    placement.host_changed(host_id, Status.UP)  # this server's own report (the row says Up)
    reloads = placement.reloads
    placement.apply_remote(10**9, [HostStatusChanged(host_id, Status.DISCONNECTED.value)])  # the peer's, late
    with trio.fail_after(10):
        while placement.reloads == reloads:
            await trio.sleep(0.01)  # the placement task reads the host again in a worker thread
    assert index.flags[index.position[host_id]] & 1  # UP, as the database says
    await placement.load()
    index = placement.planner.index
    assert index.flags[index.position[host_id]] & 1
    # ... and the other way round: this server's last report (it let the host go) is older than the
    # peer's Up, and a full read must not undo the peer's
    placement.host_changed(host_id, Status.DISCONNECTED)
    placement.apply_remote(10**9 + 1, [HostStatusChanged(host_id, Status.UP.value)])
    await placement.load()
    index = placement.planner.index
    assert index.flags[index.position[host_id]] & 1


# --- admit -> act -> settle ------------------------------------------------------------------------------


async def _warm(cloud: Cloud) -> None:
    """Copy the template to every pool, as a first deploy there does, so that deploys take the path of
    one agent request: Create, then Start."""
    from mgmt.orchestration.engine import hosts_reaching
    from mgmt.storage import volumes as volume_rows

    db = cloud.services.db
    with db.engine.connect() as conn:
        pools = conn.execute(sa.select(storage_pools)).all()
        template = conn.execute(sa.select(templates).where(templates.c.id == cloud.template)).one()
    for pool in pools:
        host_id = (await db.read(hosts_reaching, pool.id))[0]
        answer = (await cloud.services.agents.send(host_id, [PrimaryStorageDownloadCommand(
            template_uuid=template.uuid, url=template.url, pool_uuid=pool.uuid, pool_path=pool.path)]))[0]
        assert answer.result
        await db.run(volume_rows.record_template_copy, template.id, pool.id, answer.install_path,
                     answer.size_bytes)


def _spy(cloud: Cloud, sent: list | None = None) -> list[tuple[int, list[str], bool]]:
    """Record every request the orchestrator sends: (host, command names, stop on error); the commands
    themselves into ``sent``."""
    calls: list[tuple[int, list[str], bool]] = []
    agents = cloud.services.agents
    send = agents.send

    async def recording(host_id, commands, **kw):  # type: ignore[no-untyped-def]
        names = [type(c).__name__ for c in commands]
        if names == ["CheckHealthCommand"]:  # the agent manager's own probe of a host that went quiet
            return await send(host_id, commands, **kw)  # (on a loaded machine): not the orchestrator's
        calls.append((host_id, names, bool(kw.get("stop_on_error"))))
        if sent is not None:
            sent.extend(commands)
        return await send(host_id, commands, **kw)

    agents.send = recording  # type: ignore[method-assign]
    return calls


async def test_an_admitted_deploy_creates_and_starts_in_one_request(any_cloud: Cloud) -> None:
    cloud = any_cloud
    await _warm(cloud)
    calls = _spy(cloud)
    vm_id = await cloud.orch.deploy(cloud.spec(name="one-trip"))
    row = cloud.vm(vm_id)
    assert row.state == "Running"
    assert calls == [(row.host_id, ["CreateCommand", "StartCommand"], True)]
    to = cloud.sim(cloud.guid_of(row.host_id)).host.vms[row.instance_name].to
    with cloud.services.db.engine.connect() as conn:
        volume = conn.execute(sa.select(volumes).where(volumes.c.vm_id == vm_id)).one()
    assert volume.state == "Ready" and volume.path and to.disks[0].path == volume.path  # found by uuid
    cloud.exact()


async def test_a_create_that_fails_in_the_request_starts_nothing_and_moves_on(cloud: Cloud) -> None:
    await _warm(cloud)
    running = {g: set(cloud.sim(g).host.vms) for g in GUIDS}
    for guid in ("a1", "a2", "b1"):
        cloud.faults[guid].add("CreateCommand", "fail", details=f"{guid} has no disk")
    vm_id = await cloud.orch.deploy(cloud.spec())
    assert cloud.vm(vm_id).host_id == cloud.host_ids["b2"]
    for guid in ("a1", "a2", "b1"):  # stop on error: no Start ran after the failed Create
        assert set(cloud.sim(guid).host.vms) == running[guid]
    cloud.exact()


async def test_a_start_that_fails_after_its_create_leaves_no_volume(cloud: Cloud) -> None:
    await _warm(cloud)
    for faults in cloud.faults.values():
        faults.add("StartCommand", "fail", details="no hypervisor today")
    sent: list = []
    calls = _spy(cloud, sent)
    with pytest.raises(InsufficientCapacity, match=r"no hypervisor today"):
        await cloud.orch.deploy(cloud.spec(name="doomed"))
    assert calls[0][1:] == (["CreateCommand", "StartCommand"], True)
    created = sent[0]
    # The volume made in the request whose Start failed is deleted by the path its Create answered
    # (the database had not recorded it yet; a shared pool's volume is not on the host's own pool).
    destroyed = [c for c in sent
                 if type(c).__name__ == "DestroyCommand" and c.volume_uuid == created.volume_uuid]
    assert destroyed and destroyed[0].path == f"{created.pool_path}/{created.volume_uuid}"
    with cloud.services.db.engine.connect() as conn:
        vm = conn.execute(sa.select(vms).where(vms.c.name == "doomed")).one()
        root = conn.execute(sa.select(volumes).where(volumes.c.vm_id == vm.id)).one()
    assert (vm.state, vm.host_id, root.state, root.pool_id) == ("Error", None, "Allocated", None)
    # Each attempt's volume, made in the request whose Start failed, was deleted again (by its uuid).
    assert not [p for p in SimulatorResource.shared if root.uuid in p]
    assert not [p for g in GUIDS for p in cloud.sim(g).host.volumes if root.uuid in p]
    cloud.exact()


async def test_a_reservation_lost_at_admission_falls_back_to_a_plain_start(any_cloud: Cloud) -> None:
    from mgmt.orchestration.engine import Tentative
    from mgmt.planner.capacity import Limits

    cloud = any_cloud
    orch, db = cloud.orch, cloud.services.db
    spec = cloud.spec(name="lost")
    tentative = await orch.plan_deploy(spec)
    assert tentative is not None
    # Another deploy took the host meanwhile: here, a limit no reservation fits under.
    lost = Tentative(tentative.dest, Limits(cpu_factor=0.0, mem_factor=0.0), tentative.profile, ())
    vm_id, admission = await db.run(orch.admit, spec, "", lost)
    assert admission is None
    with db.engine.connect() as conn:  # nothing of the lost reservation was kept
        assert conn.scalar(sa.select(vms.c.state).where(vms.c.id == vm_id)) == "Stopped"
        assert conn.scalar(sa.select(sa.func.count()).select_from(capacity_reservations)) == 0
    cloud.exact()
    await orch.first_start(vm_id, admission=admission)
    assert cloud.vm(vm_id).state == "Running"
    cloud.exact()


async def test_the_vm_admit_builds_is_the_vm_the_database_holds(any_cloud: Cloud) -> None:
    """Admit starts a VM from the record it built while writing (no read back): field for field, the
    record is what ``load`` reads, so the agent is told exactly what was written."""
    from mgmt.orchestration import vms as vm_rows

    cloud = any_cloud
    db = cloud.services.db
    with db.engine.connect() as conn:
        disk = conn.scalar(sa.text("SELECT id FROM disk_offerings WHERE size_gb > 0 LIMIT 1"))
    catalog = await cloud.orch.catalog.current()
    for spec in (cloud.spec(name="made"), cloud.spec(display_name="shown", disk_offering_id=disk)):
        for source in (catalog, None):
            made = await db.run(lambda c, s=spec, k=source: vm_rows.allocate_record(c, s, catalog=k))
            read = await db.read(vm_rows.load, made.id)
            for name in ("id", "uuid", "instance_name", "display_name", "name", "state", "update_count",
                         "zone_id", "account_id", "host_id", "service_offering_id", "template_id"):
                assert getattr(made.row, name) == getattr(read.row, name), name
            assert (made.offering.id, made.template.id) == (read.offering.id, read.template.id)
            assert len(made.volumes) == len(read.volumes) == (2 if spec.disk_offering_id else 1)
            for m, r in zip(made.volumes, read.volumes, strict=True):  # (SQLite keeps no time zone)
                fields = [k for k in r._fields if k != "created"]
                assert {k: getattr(m, k) for k in fields} == {k: getattr(r, k) for k in fields}
            for m, r in zip(made.nics, read.nics, strict=True):
                assert {k: getattr(m, k) for k in r._fields} == r._asdict()


async def test_a_volume_made_before_a_crash_between_admit_and_settle_is_deleted_by_expunge(
        cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server dies after act sent Create + Start and before settle committed: the volume exists on
    the pool but its row has no path. After the restart (its deploy failed: Error) the expunge deletes
    it by its uuid on its pool."""
    from mgmt.orchestration import engine, reconcile

    class Crash(Exception):
        pass

    def crash(*_args: object) -> None:
        raise Crash  # settle's transaction never commits

    await _warm(cloud)
    orch, db = cloud.orch, cloud.services.db
    spec = cloud.spec(name="cut-short")
    catalog = await orch.catalog.current()
    vm_id, admission = await db.run(orch.admit, spec, "", await orch.plan_deploy(spec, catalog), catalog)
    assert admission is not None and admission.template_path
    volume = admission.vm.volumes[0]
    monkeypatch.setattr(engine, "_settled", crash)
    with pytest.raises(Crash):
        await orch._create_and_start(admission)
    made = [p for g in GUIDS for p in cloud.sim(g).host.volumes if volume.uuid in p]
    made += [p for p in SimulatorResource.shared if volume.uuid in p]
    assert len(made) == 1  # the agent made it ...
    with db.engine.connect() as conn:  # ... and the database does not know where
        row = conn.execute(sa.select(volumes.c.state, volumes.c.path).where(volumes.c.id == volume.id)).one()
    assert tuple(row) == ("Creating", "")
    # What start-up does with a deploy whose job the crash cut short (its VM is running on the host:
    # the restarted server finds it there; here it is stopped by hand, as a host reboot would).
    await cloud.services.agents.send(admission.dest.host_id, [StopCommand(vm_name=admission.vm.name)])
    await db.run(reconcile.after_restart, [vm_id])
    assert cloud.vm(vm_id).state == "Error"
    await orch.expunge(vm_id)
    assert not [p for g in GUIDS for p in cloud.sim(g).host.volumes if volume.uuid in p]
    assert not [p for p in SimulatorResource.shared if volume.uuid in p]
    cloud.exact()
