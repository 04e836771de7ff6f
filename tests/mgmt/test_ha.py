"""HA with simulated hosts over TCP: a host dies (its agent ends: connection and heartbeat gone), a
neighbour finds its heartbeat still, it goes Down, is fenced, its HA VMs run again elsewhere and the
others are Stopped; capacity and addresses stay exact. A host cut off from the server but writing its
heartbeat is left alone. Deadlines bound the waits; nothing passes or fails on timing."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import sqlalchemy as sa
import trio

from agent import ha as agent_ha
from mgmt.db.schema import alerts, events, ha_work, hosts
from mgmt.errors import InsufficientCapacity
from mgmt.ha import work
from mgmt.planner.index import UP
from mgmt.server import serve

from .test_agent_manager import KILL
from .test_orchestration import Cloud, start_cloud

FAST = {"ping.interval": "1", "ping.timeout": "1.5", "ha.heartbeat.interval": "0.1",
        "ha.heartbeat.window": "0.5", "ha.investigate.interval": "1", "ha.restart.backoff": "0.2"}


async def _deploy(cloud: Cloud, n: int, *, ha: bool, host: str) -> list[int]:
    spec = cloud.spec(ha_enabled=ha, host_id=cloud.host_ids[host])
    return [await cloud.orch.deploy(spec) for _ in range(n)]


async def _until(cloud: Cloud, check: object, timeout: float = 30) -> None:
    with trio.fail_after(timeout):
        while not check():  # type: ignore[operator]
            await trio.sleep(0.05)  # polling the database: HA runs on its own tasks


def _items(cloud: Cloud) -> list[sa.Row]:
    with cloud.services.db.engine.connect() as conn:
        return list(conn.execute(sa.select(ha_work).order_by(ha_work.c.id)))


async def test_a_dead_host_s_ha_vms_run_elsewhere_and_the_others_stop(nursery: trio.Nursery,
                                                                      tmp_path: Path) -> None:
    cloud = await start_cloud(nursery, tmp_path, **FAST)
    protected = await _deploy(cloud, 3, ha=True, host="a1")
    plain = await _deploy(cloud, 2, ha=False, host="a1")
    dead = cloud.host_ids["a1"]
    assert {cloud.vm(v).host_id for v in protected + plain} == {dead}
    KILL["a1"].cancel()  # the host dies: no connection, no heartbeat
    await _until(cloud, lambda: all(cloud.vm(v).state == "Running" and cloud.vm(v).host_id != dead
                                    for v in protected)
                 and all(cloud.vm(v).state == "Stopped" for v in plain)
                 and all(i.state == work.DONE for i in _items(cloud)))  # each item's end (and its event)
    with cloud.services.db.engine.connect() as conn:
        host = conn.execute(sa.select(hosts).where(hosts.c.id == dead)).one()
        assert host.status == "Down" and host.fenced is not None
        raised = list(conn.execute(sa.select(alerts.c.type, alerts.c.description)))
        steps = [t for (t,) in conn.execute(sa.select(events.c.type).where(events.c.type.like("HA.%")))]
    assert any(t == 7 and "is down" in d for t, d in raised)
    assert steps.count("HA.HOST.DOWN") == 1 and steps.count("HA.HOST.FENCE") == 1
    assert steps.count("HA.VM.RESTART") == 3 and steps.count("HA.VM.STOP") == 2
    assert {(i.kind, i.state) for i in _items(cloud)} == {(work.RESTART, work.DONE), (work.STOP, work.DONE)}
    # the fence mark is on the shared pool, for the dead host to find should it come back
    assert agent_ha.is_fenced(cloud.agents["a2"].heartbeat.dirs[0], "a1")
    for v in plain:
        assert cloud.vm(v).last_host_id == dead
    cloud.exact()


async def test_a_host_cut_off_from_the_server_keeps_its_vms(nursery: trio.Nursery, tmp_path: Path) -> None:
    cloud = await start_cloud(nursery, tmp_path, **FAST)
    protected = await _deploy(cloud, 2, ha=True, host="b1")
    host_id = cloud.host_ids["b1"]
    cloud.faults["b1"].partitioned = True  # link gone, heartbeat still written
    manager = cloud.services.agents
    await _until(cloud, lambda: manager.status.get(host_id) == "Alert")
    # investigated twice over, alive both times
    await _until(cloud, lambda: manager._investigated.get(host_id, 0) > 0
                 and host_id not in manager._investigating)
    first = manager._investigated[host_id]
    await _until(cloud, lambda: manager._investigated[host_id] > first)
    assert manager.status.get(host_id) == "Alert" and _items(cloud) == []
    assert all(cloud.vm(v).state == "Running" and cloud.vm(v).host_id == host_id for v in protected)
    cloud.faults["b1"].partitioned = False  # the link comes back: Up, nothing moved
    await _until(cloud, lambda: manager.status.get(host_id) == "Up")
    assert all(cloud.vm(v).host_id == host_id for v in protected)
    cloud.exact()


async def test_an_ha_vm_powered_off_behind_the_server_s_back_starts_again(nursery: trio.Nursery,
                                                                          tmp_path: Path) -> None:
    cloud = await start_cloud(nursery, tmp_path, **FAST)
    (vm_id,) = await _deploy(cloud, 1, ha=True, host="a2")
    name = cloud.vm(vm_id).instance_name
    boots = cloud.sim("a2").host.vms[name].boots
    cloud.faults["a2"].power_off.add(name)
    await _until(cloud, lambda: any(i.state == work.DONE for i in _items(cloud))
                 and cloud.vm(vm_id).state == "Running")
    host = cloud.guid_of(cloud.vm(vm_id).host_id)
    assert cloud.sim(host).host.vms[name].boots >= (boots + 1 if host == "a2" else 1)
    cloud.exact()


async def test_a_server_stopped_in_the_middle_of_ha_work_finishes_it_after_restart(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    slow = {**FAST, "ha.heartbeat.window": "2"}  # fencing takes a while: time to stop the server in it
    cloud = await start_cloud(nursery, tmp_path, **slow)
    protected = await _deploy(cloud, 2, ha=True, host="b2")
    dead = cloud.host_ids["b2"]
    KILL["b2"].cancel()
    await _until(cloud, lambda: any(i.state == work.RUNNING for i in _items(cloud)))
    assert cloud.server_scope is not None and cloud.config is not None
    cloud.server_scope.cancel()  # the server goes in the middle of it (its rows say Running)
    assert cloud.server_gone is not None
    await cloud.server_gone.wait()
    assert any(i.state == work.RUNNING for i in _items(cloud))
    config = dataclasses.replace(cloud.config, agent_port=cloud.services.agents.port)
    services = await nursery.start(serve, config)  # the same server again, on the same port
    cloud.services = services
    await _until(cloud, lambda: all(cloud.vm(v).state == "Running" and cloud.vm(v).host_id != dead
                                    for v in protected), timeout=60)
    assert {i.state for i in _items(cloud)} == {work.DONE}
    cloud.exact()


async def test_a_hung_host_leaves_placement_and_its_commands_fail_fast(nursery: trio.Nursery,
                                                                       tmp_path: Path) -> None:
    cloud = await start_cloud(nursery, tmp_path, **FAST)
    hung = cloud.host_ids["a1"]
    faults = cloud.faults["a1"]
    # the agent hangs with its connection open: no pings, and every command waits (the default wait
    # for an answer is 1800 s); its heartbeat goes on (the host is alive, its agent is not)
    faults.stop_pinging = True
    for command in ("StartCommand", "CreateCommand", "CheckHealthCommand", "StopCommand"):
        faults.add(command, "wait:600000")
    with trio.fail_after(60), pytest.raises(InsufficientCapacity):  # not the 1800 s of a hung wait
        await cloud.orch.deploy(cloud.spec(host_id=hung))  # its Start waits on the hung host...
    assert hung in cloud.services.agents.suspect  # ...until the host is a suspect: then it fails
    index = cloud.services.placement.planner.index
    assert not index.flags[index.position[hung]] & UP  # out of placement
    deployed = [await cloud.orch.deploy(cloud.spec()) for _ in range(6)]
    assert all(cloud.vm(v).state == "Running" and cloud.vm(v).host_id != hung for v in deployed)
    # investigated: alive on storage, unreachable from here: Alert, never Down, nothing to do for HA
    await _until(cloud, lambda: cloud.services.agents.status.get(hung) == "Alert")
    assert _items(cloud) == []
    faults.clear()  # the agent wakes up: heard from again, back in placement
    await _until(cloud, lambda: cloud.services.agents.status.get(hung) == "Up"
                 and hung not in cloud.services.agents.suspect)
    cloud.exact()


async def test_capacity_past_its_threshold_raises_one_alert(nursery: trio.Nursery, tmp_path: Path) -> None:
    cloud = await start_cloud(nursery, tmp_path, **FAST,
                              **{"cluster.memory.allocated.capacity.notificationthreshold": "0.0001"})
    ha = cloud.services.ha
    assert ha is not None
    assert await ha.check_capacity() == 0  # nothing allocated yet
    await cloud.orch.deploy(cloud.spec())
    assert await ha.check_capacity() == 1
    assert await ha.check_capacity() == 0  # still past it: not raised again
    with cloud.services.db.engine.connect() as conn:
        (alert,) = conn.execute(sa.select(alerts).where(alerts.c.type == 0)).all()
    assert alert.name == "ALERT.MEMORY" and "zone1" in alert.description and "threshold" in alert.description


async def test_a_host_that_died_while_the_server_was_down_is_found_and_its_vms_restarted(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    cloud = await start_cloud(nursery, tmp_path, **FAST)
    protected = await _deploy(cloud, 2, ha=True, host="b1")
    dead = cloud.host_ids["b1"]
    assert cloud.server_scope is not None and cloud.config is not None and cloud.server_gone is not None
    cloud.server_scope.cancel()
    await cloud.server_gone.wait()
    KILL["b1"].cancel()  # dies while no server watches
    config = dataclasses.replace(cloud.config, agent_port=cloud.services.agents.port)
    cloud.services = await nursery.start(serve, config)  # b1 is left Disconnected by the restart
    await _until(cloud, lambda: all(cloud.vm(v).state == "Running" and cloud.vm(v).host_id != dead
                                    for v in protected), timeout=60)
    with cloud.services.db.engine.connect() as conn:
        assert conn.scalar(sa.select(hosts.c.status).where(hosts.c.id == dead)) == "Down"
    cloud.exact()


async def test_ha_that_cannot_restart_a_vm_gives_up_with_an_alert(nursery: trio.Nursery,
                                                                  tmp_path: Path) -> None:
    cloud = await start_cloud(nursery, tmp_path, **FAST, **{"ha.restart.attempts": "2"})
    (vm_id,) = await _deploy(cloud, 1, ha=True, host="a1")
    for guid in ("a2", "b1", "b2"):  # no other host will start it
        cloud.faults[guid].add("StartCommand", "fail", details="no room for it today")
    KILL["a1"].cancel()
    await _until(cloud, lambda: [i.state for i in _items(cloud)] == [work.FAILED])
    (item,) = _items(cloud)
    assert item.attempts == 2 and "no room for it today" in item.last_error
    assert cloud.vm(vm_id).state == "Stopped"  # marked Stopped, never started twice, left for a person
    with cloud.services.db.engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(alerts).where(alerts.c.type == 8)) == 1
        errors = conn.scalar(sa.select(sa.func.count()).select_from(events)
                             .where(events.c.type == "HA.VM.RESTART", events.c.state == "Error"))
    assert errors == 1
    cloud.exact()


async def test_an_investigation_that_fails_does_not_end_the_server(nursery: trio.Nursery,
                                                                    tmp_path: Path) -> None:
    cloud = await start_cloud(nursery, tmp_path, **FAST)
    manager = cloud.services.agents
    assert manager.ha is not None
    failures = []

    async def broken(host_id: int) -> tuple[str, ...]:
        failures.append(host_id)
        raise RuntimeError("the database went away")

    manager.ha.disks = broken  # what a neighbour is asked needs a read; the read fails
    dead = cloud.host_ids["b2"]
    KILL["b2"].cancel()
    await _until(cloud, lambda: failures.count(dead) >= 2)  # investigated again later: still serving
    assert manager.status.get(dead) == "Alert"
    vm_id = await cloud.orch.deploy(cloud.spec())  # the server goes on
    assert cloud.vm(vm_id).state == "Running"
