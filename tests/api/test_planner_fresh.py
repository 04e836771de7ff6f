"""The planner never plans against a stale index: after anything that reloads it (an inventory change,
the periodic resync), a host disabled, a VM placed or a host gone is seen by the next deploy.

Regression for issue 15: the kernel kept its binding while the new index's generation equalled the old
one's, so every deploy after a reload chose from a frozen copy of the hosts."""

from __future__ import annotations

import pytest
import trio
from cs import CloudStackApiException

from .conftest import ApiCloud
from .test_lifecycle import first


async def _catalog(api: ApiCloud) -> dict[str, str]:
    cs = api.client()
    zone = first(await api.call(lambda: cs.listZones()), "zone")
    offering = next(o for o in (await api.call(lambda: cs.listServiceOfferings()))["serviceoffering"]
                    if o["name"] == "small")
    template = first(await api.call(lambda: cs.listTemplates(templatefilter="featured")), "template")
    return {"zoneid": zone["id"], "serviceofferingid": offering["id"], "templateid": template["id"]}


async def test_a_deploy_after_a_reload_sees_disabled_hosts(api: ApiCloud) -> None:
    cs = api.client()
    ids = await _catalog(api)
    vm = (await api.call(lambda: cs.deployVirtualMachine(**ids, fetch_result=True)))["virtualmachine"]
    assert vm["state"] == "Running"
    pod = first(await api.call(lambda: cs.listPods(zoneid=ids["zoneid"])), "pod")
    cluster = first(await api.call(lambda: cs.listClusters(podid=pod["id"])), "cluster")
    # Any inventory change reloads the planner's index (as the periodic resync does).
    await api.call(lambda: cs.createStoragePool(zoneid=ids["zoneid"], clusterid=cluster["id"], name="extra",
                                                url="nfs://10.1.0.9/export/extra", capacitybytes=2**40))
    hosts = (await api.call(lambda: cs.listHosts(type="Routing")))["host"]
    for host in hosts:
        await api.call(lambda h=host: cs.updateHost(id=h["id"], allocationstate="Disable"))
    with pytest.raises(CloudStackApiException) as refused:
        await api.call(lambda: cs.deployVirtualMachine(**ids, fetch_result=True))
    assert refused.value.error["errorcode"] == 533
    api.cloud.exact()


async def test_racing_deploys_on_a_tiny_ip_range_never_share_an_address(any_api: ApiCloud) -> None:
    """Twelve deploys at once on a network of five addresses: five get one each, seven fail with
    533 and hold nothing (issue 15: 0 duplicate IPs under concurrency, on both databases)."""
    cs = any_api.client()
    ids = await _catalog(any_api)
    network = (await any_api.call(lambda: cs.createNetwork(
        zoneid=ids["zoneid"], name="tiny", displaytext="tiny", gateway="10.9.9.1", netmask="255.255.255.0",
        startip="10.9.9.10", endip="10.9.9.14")))["network"]
    outcomes: list[object] = []

    async def deploy(i: int) -> None:
        client = any_api.client()
        try:
            vm = await any_api.call(lambda: client.deployVirtualMachine(
                **ids, networkids=network["id"], name=f"tiny-{i}", fetch_result=True))
            outcomes.append(vm["virtualmachine"]["nic"][0]["ipaddress"])
        except CloudStackApiException as e:
            outcomes.append(e.error["errorcode"])

    async with trio.open_nursery() as nursery:
        for i in range(12):
            nursery.start_soon(deploy, i)
    addresses = sorted(o for o in outcomes if isinstance(o, str))
    assert addresses == [f"10.9.9.{n}" for n in range(10, 15)]
    assert sorted(o for o in outcomes if not isinstance(o, str)) == [533] * 7
    events = (await any_api.call(lambda: cs.listEvents(type="VM.CREATE", pagesize=500, page=1)))["event"]
    states = [e["state"] for e in events]
    # the seven were refused when called (no address for them): no job, so no job events
    assert (states.count("Scheduled"), states.count("Completed"), states.count("Error")) == (5, 5, 0)
    any_api.cloud.exact()


async def test_a_failed_deploy_job_records_its_error_event(api: ApiCloud) -> None:
    """A job's Scheduled event is written with its row and its end's event with its end (issue 15:
    no transactions of their own); a job that fails ends with an Error event saying why."""
    for faults in api.cloud.faults.values():
        faults.add("StartCommand", "fail", details="no hypervisor today")
    cs = api.client()
    ids = await _catalog(api)
    with pytest.raises(CloudStackApiException):
        await api.call(lambda: cs.deployVirtualMachine(**ids, name="doomed", fetch_result=True))
    events = (await api.call(lambda: cs.listEvents(type="VM.CREATE")))["event"]
    assert sorted(e["state"] for e in events) == ["Error", "Scheduled"]
    error = next(e for e in events if e["state"] == "Error")
    assert "no hypervisor today" in error["description"]
    api.cloud.exact()
