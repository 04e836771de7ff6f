"""Isolated networks through the real ``cs`` client on simulated hosts: an account's own network, a VXLAN
id from the zone's range while a VM of it runs (the host builds it), back to the range when none runs."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from agent.simulator import SimulatorResource
from mgmt.db.schema import zones

from .conftest import ApiCloud
from .test_access import make_user
from .test_guest_data import failure
from .test_lifecycle import api_guid, first


async def user(api: ApiCloud, name: str) -> Any:
    _account, keys = await make_user(api, name)
    return api.client(key=keys["apikey"], secret=keys["secretkey"])


async def test_isolated_networks_live_and_die_with_their_vms(any_api: ApiCloud) -> None:
    api = any_api
    admin = api.client()
    offerings = (await api.call(lambda: admin.listNetworkOfferings()))["networkoffering"]
    by_name = {o["name"]: o for o in offerings}
    assert {o["guestiptype"] for o in offerings} == {"Shared", "Isolated"}
    isolated = by_name["DefaultIsolatedNetworkOffering"]
    zone = first(await api.call(lambda: admin.listZones()), "zone")
    offering = first(await api.call(lambda: admin.listServiceOfferings(name="small")), "serviceoffering")
    template = first(await api.call(lambda: admin.listTemplates(templatefilter="executable")), "template")
    shared_count = (await api.call(lambda: admin.listNetworks()))["count"]

    bob, carol = await user(api, "bob"), await user(api, "carol")
    error = await failure(api, lambda: bob.createNetwork(zoneid=zone["id"], name="mine", gateway="10.9.0.1",
                                                         netmask="255.255.255.0", startip="10.9.0.10"))
    assert error["errorcode"] == 531 and "shared" in error["errortext"]  # shared networks are admins'
    net = (await api.call(lambda: bob.createNetwork(zoneid=zone["id"], name="bob-net",
                                                    networkofferingid=isolated["id"])))["network"]
    assert (net["type"], net["state"], net["cidr"]) == ("Isolated", "Allocated", "10.1.1.0/24")
    assert net["gateway"] == "10.1.1.1"
    assert (net["account"], net["broadcastdomaintype"], net["startip"], net["endip"]) == (
        "bob", "Vxlan", "10.1.1.2", "10.1.1.254")
    assert "broadcasturi" not in net  # no VXLAN id until a VM of it starts
    mid = (await api.call(lambda: bob.createNetwork(zoneid=zone["id"], name="mid-gw", gateway="10.5.0.100",
                                                    netmask="255.255.255.0",
                                                    networkofferingid=isolated["id"])))["network"]
    assert (mid["startip"], mid["endip"]) == ("10.5.0.1", "10.5.0.254")  # every host but the gateway
    await api.call(lambda: bob.deleteNetwork(id=mid["id"], fetch_result=True))

    # bob sees it beside the shared ones; carol does not, and cannot deploy on it
    assert (await api.call(lambda: bob.listNetworks()))["count"] == shared_count + 1
    assert (await api.call(lambda: carol.listNetworks()))["count"] == shared_count
    assert (await api.call(lambda: admin.listNetworks(listall=True)))["count"] == shared_count + 1

    def deploy(client: Any, network: dict[str, Any]) -> Any:
        return lambda: client.deployVirtualMachine(zoneid=zone["id"], serviceofferingid=offering["id"],
                                                   templateid=template["id"], networkids=network["id"],
                                                   fetch_result=True)

    error = await failure(api, deploy(carol, net))
    assert error["errorcode"] == 431 and net["id"] in error["errortext"]

    async def placed(vm_id: str) -> dict[str, Any]:
        """The VM as an admin sees it: where it runs, under which name."""
        found = await api.call(lambda: admin.listVirtualMachines(id=vm_id, listall=True))
        return first(found, "virtualmachine")

    vm = await placed((await api.call(deploy(bob, net)))["virtualmachine"]["id"])
    assert vm["nic"][0]["ipaddress"].startswith("10.1.1.")
    listed = first(await api.call(lambda: bob.listNetworks(id=net["id"])), "network")
    assert (listed["state"], listed["broadcasturi"]) == ("Implemented", "vxlan://5000")
    host = SimulatorResource.registry[api_guid(api, vm["hostid"])].host
    assert host.networks() == {5000: [vm["instancename"]]}  # what the host was asked to build

    second = (await api.call(lambda: bob.createNetwork(zoneid=zone["id"], name="bob-net-2",
                                                       networkofferingid=isolated["id"])))["network"]
    other = (await api.call(deploy(bob, second)))["virtualmachine"]
    assert first(await api.call(lambda: bob.listNetworks(id=second["id"])), "network")["broadcasturi"] \
        == "vxlan://5001"

    # the last VM of a network stops: the network shuts down and its id goes back to the range
    await api.call(lambda: bob.stopVirtualMachine(id=vm["id"], fetch_result=True))
    orchestrator = api.cloud.services.orchestrator
    assert await orchestrator.shutdown_idle_networks() == 1
    listed = first(await api.call(lambda: bob.listNetworks(id=net["id"])), "network")
    assert listed["state"] == "Shutdown" and "broadcasturi" not in listed
    assert 5000 not in host.networks()
    assert await orchestrator.shutdown_idle_networks() == 0  # the other one still has a running VM

    # no id left in the zone's range: a start that needs one fails, the VM holds nothing
    with api.cloud.services.db.engine.begin() as conn:
        conn.execute(sa.update(zones).values(vni_start=5001, vni_end=5001))
    error = await failure(api, lambda: bob.startVirtualMachine(id=vm["id"], fetch_result=True))
    assert error["errorcode"] == 533 and "VXLAN" in error["errortext"]
    assert first(await api.call(lambda: bob.listVirtualMachines(id=vm["id"])), "virtualmachine")["state"] \
        == "Stopped"
    with api.cloud.services.db.engine.begin() as conn:
        conn.execute(sa.update(zones).values(vni_start=5000, vni_end=5999))
    await api.call(lambda: bob.startVirtualMachine(id=vm["id"], fetch_result=True))
    restarted = await placed(vm["id"])
    assert first(await api.call(lambda: bob.listNetworks(id=net["id"])), "network")["broadcasturi"] \
        == "vxlan://5000"
    assert SimulatorResource.registry[api_guid(api, restarted["hostid"])].host.networks()[5000] == [
        restarted["instancename"]]

    # deleting: only the owner (or an admin), only without VMs
    error = await failure(api, lambda: carol.deleteNetwork(id=net["id"], fetch_result=True))
    assert error["errorcode"] == 531
    error = await failure(api, lambda: bob.deleteNetwork(id=net["id"], fetch_result=True))
    assert error["errorcode"] == 536
    for machine in (vm, other):
        await api.call(lambda machine=machine: admin.destroyVirtualMachine(id=machine["id"], expunge=True,
                                                                           fetch_result=True))
    for network in (net, second):
        await api.call(lambda network=network: bob.deleteNetwork(id=network["id"], fetch_result=True))
    assert (await api.call(lambda: bob.listNetworks()))["count"] == shared_count
