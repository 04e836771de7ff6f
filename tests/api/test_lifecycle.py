"""The whole life of a VM and its data volume through the real ``cs`` client (GET and POST) against a
running server with simulated hosts, with ``fetch_result=True`` polling of async jobs."""

from __future__ import annotations

import types

import pytest
from cs import CloudStackApiException

from agent.simulator import SimulatorResource
from mgmt.api.commands import jobs as jobs_api

from .conftest import ApiCloud


def first(listing: dict, key: str) -> dict:  # type: ignore[type-arg]
    assert listing.get("count", 0) >= 1, listing
    return listing[key][0]  # type: ignore[no-any-return]


@pytest.mark.parametrize("method", ["get", "post"])
async def test_the_whole_life_of_a_vm_through_cs(any_api: ApiCloud, method: str) -> None:
    api = any_api
    cs = api.client(method)
    zone = first(await api.call(lambda: cs.listZones()), "zone")
    offering = next(
        o
        for o in (await api.call(lambda: cs.listServiceOfferings()))["serviceoffering"]
        if o["name"] == "small"
    )
    template = first(await api.call(lambda: cs.listTemplates(templatefilter="featured")), "template")
    network = first(await api.call(lambda: cs.listNetworks(zoneid=zone["id"])), "network")
    assert template["isready"] is True and template["size"] == 2 * 2**30 and template["zoneid"] == zone["id"]

    result = await api.call(
        lambda: cs.deployVirtualMachine(
            zoneid=zone["id"],
            serviceofferingid=offering["id"],
            templateid=template["id"],
            networkids=network["id"],
            name="web-1",
            displayname="the first web server",
            fetch_result=True,
        )
    )
    vm = result["virtualmachine"]
    assert (vm["state"], vm["name"], vm["displayname"]) == ("Running", "web-1", "the first web server")
    assert (vm["cpunumber"], vm["memory"], vm["serviceofferingid"]) == (1, 1024, offering["id"])
    (nic,) = vm["nic"]
    assert (
        nic["networkid"] == network["id"]
        and nic["isdefault"] is True
        and nic["ipaddress"].startswith("10.1.")
    )
    assert vm["created"].endswith("+0000") and vm["account"] == "admin" and vm["hostid"]
    sim_vm = SimulatorResource.registry[api_guid(api, vm["hostid"])].host.vms[vm["instancename"]]
    assert sim_vm.to.nics[0].ip == nic["ipaddress"]

    listed = await api.call(lambda: cs.listVirtualMachines(id=vm["id"]))
    assert listed["count"] == 1 and listed["virtualmachine"][0]["state"] == "Running"
    by_host = await api.call(lambda: cs.listVirtualMachines(hostid=vm["hostid"], listall=True))
    assert [v["id"] for v in by_host["virtualmachine"]] == [vm["id"]]

    stopped = (await api.call(lambda: cs.stopVirtualMachine(id=vm["id"], fetch_result=True)))[
        "virtualmachine"
    ]
    assert stopped["state"] == "Stopped" and "hostid" not in stopped
    api.cloud.exact()
    started = (await api.call(lambda: cs.startVirtualMachine(id=vm["id"], fetch_result=True)))[
        "virtualmachine"
    ]
    assert started["state"] == "Running"
    await api.call(lambda: cs.rebootVirtualMachine(id=vm["id"], fetch_result=True))
    guid = api_guid(api, started["hostid"])
    assert SimulatorResource.registry[guid].host.vms[vm["instancename"]].boots == 2

    moved = (await api.call(lambda: cs.migrateVirtualMachine(virtualmachineid=vm["id"], fetch_result=True)))[
        "virtualmachine"
    ]
    assert moved["hostid"] != started["hostid"] and moved["state"] == "Running"
    api.cloud.exact()

    # a data volume: created detached, attached to the running VM (plugged in), detached, attached
    # again, detached and deleted
    disk_offering = next(o for o in (await api.call(lambda: cs.listDiskOfferings()))["diskoffering"]
                         if not o["iscustomized"])
    volume = (
        await api.call(
            lambda: cs.createVolume(
                zoneid=zone["id"], diskofferingid=disk_offering["id"], name="data1", fetch_result=True
            )
        )
    )["volume"]
    assert (volume["state"], volume["size"], volume["type"]) == ("Allocated", 100 * 2**30, "DATADISK")
    for _ in range(2):
        attached = (
            await api.call(
                lambda: cs.attachVolume(id=volume["id"], virtualmachineid=vm["id"], fetch_result=True)
            )
        )["volume"]
        assert attached["virtualmachineid"] == vm["id"] and attached["state"] == "Ready"
        assert attached["deviceid"] == 1
        disks = (
            SimulatorResource.registry[api_guid(api, moved["hostid"])].host.vms[vm["instancename"]].to.disks
        )
        assert [d.type for d in disks] == ["ROOT", "DATADISK"]
        api.cloud.exact()
        detached = (await api.call(lambda: cs.detachVolume(id=volume["id"], fetch_result=True)))["volume"]
        assert "virtualmachineid" not in detached and detached["state"] == "Ready"
        disks = (
            SimulatorResource.registry[api_guid(api, moved["hostid"])].host.vms[vm["instancename"]].to.disks
        )
        assert [d.type for d in disks] == ["ROOT"]
        api.cloud.exact()
    volumes = await api.call(lambda: cs.listVolumes(virtualmachineid=vm["id"]))
    assert [v["type"] for v in volumes["volume"]] == ["ROOT"]
    assert (await api.call(lambda: cs.deleteVolume(id=volume["id"]))) == {"success": True}
    assert await api.call(lambda: cs.listVolumes(id=volume["id"])) == {}
    api.cloud.exact()

    destroyed = (await api.call(lambda: cs.destroyVirtualMachine(id=vm["id"], fetch_result=True)))[
        "virtualmachine"
    ]
    assert destroyed["state"] == "Destroyed"
    recovered = (await api.call(lambda: cs.recoverVirtualMachine(id=vm["id"])))["virtualmachine"]
    assert recovered["state"] == "Stopped"
    await api.call(lambda: cs.destroyVirtualMachine(id=vm["id"], fetch_result=True))
    await api.call(lambda: cs.expungeVirtualMachine(id=vm["id"], fetch_result=True))
    assert await api.call(lambda: cs.listVirtualMachines(id=vm["id"])) == {}
    api.cloud.exact()

    events = (await api.call(lambda: cs.listEvents(type="VM.CREATE")))["event"]
    assert {e["state"] for e in events} == {"Scheduled", "Completed"}
    assert all(e["username"] == "admin" and e["resourceid"] == vm["id"] for e in events)


def api_guid(api: ApiCloud, host_uuid: str) -> str:
    import sqlalchemy as sa

    from mgmt.db.schema import hosts

    with api.cloud.services.db.engine.connect() as conn:
        return str(conn.scalar(sa.select(hosts.c.guid).where(hosts.c.uuid == host_uuid)))


async def test_job_shapes_and_a_failed_job(api: ApiCloud) -> None:
    cs = api.client()
    zone = first(await api.call(lambda: cs.listZones()), "zone")
    offering = first(await api.call(lambda: cs.listServiceOfferings(name="small")), "serviceoffering")
    template = first(await api.call(lambda: cs.listTemplates(templatefilter="executable")), "template")
    started = await api.call(
        lambda: cs.deployVirtualMachine(
            zoneid=zone["id"], serviceofferingid=offering["id"], templateid=template["id"], startvm=False
        )
    )
    assert set(started) == {"id", "jobid"}
    done = await api.call(lambda: cs._jobresult(started["jobid"]))
    assert done["virtualmachine"]["state"] == "Stopped" and done["virtualmachine"]["id"] == started["id"]
    job = await api.call(lambda: cs.queryAsyncJobResult(jobid=started["jobid"]))
    assert (job["jobstatus"], job["jobresultcode"], job["jobresulttype"]) == (1, 0, "object")
    assert (job["jobinstancetype"], job["jobinstanceid"], job["cmd"]) == (
        "VirtualMachine",
        started["id"],
        "deployVirtualMachine",
    )
    assert job["created"].endswith("+0000") and job["completed"].endswith("+0000")
    # Answered from memory (the job ended here lately), exactly as its row says, fields in order.
    services = api.cloud.services
    assert started["jobid"] in services.api.ended_jobs  # type: ignore[union-attr]
    admin = types.SimpleNamespace(is_admin=True, account_id=1)
    found = await services.async_jobs.find(admin, started["jobid"])
    from_row = jobs_api.job_view(found.row, found.instance_uuid)
    assert list(job.items()) == list(from_row.items())

    # rebooting a stopped VM fails inside the job: status 2 with CloudStack's error fields
    rebooting = await api.call(lambda: cs.rebootVirtualMachine(id=started["id"]))
    with pytest.raises(CloudStackApiException) as failure:
        await api.call(lambda: cs._jobresult(rebooting["jobid"]))
    assert failure.value.error["errorcode"] == 431 and "Running" in failure.value.error["errortext"]
    job = await api.call(lambda: cs.queryAsyncJobResult(jobid=rebooting["jobid"]))
    assert (job["jobstatus"], job["jobresultcode"]) == (2, 431)
    assert job["jobresult"]["errorcode"] == 431
    found = await services.async_jobs.find(admin, rebooting["jobid"])
    from_row = jobs_api.job_view(found.row, found.instance_uuid)
    assert list(job.items()) == list(from_row.items())

    jobs = await api.call(lambda: cs.listAsyncJobs())
    assert jobs["count"] == 2 and jobs["asyncjobs"][0]["jobid"] == rebooting["jobid"]  # newest first

    # a job still running (its host holds the start for a minute: longer than this test) is answered
    # from memory, in the same shape a row gives
    for guid in api.cloud.faults:
        api.cloud.faults[guid].add("StartCommand", "wait:60000", count=1)
    starting = await api.call(lambda: cs.startVirtualMachine(id=started["id"]))
    pending = await api.call(lambda: cs.queryAsyncJobResult(jobid=starting["jobid"]))
    assert (pending["jobstatus"], pending["jobresultcode"], pending["jobinstanceid"]) == (0, 0, started["id"])
    assert "jobresult" not in pending and pending["cmd"] == "startVirtualMachine"
    assert pending["userid"] == job["userid"] and pending["accountid"] == job["accountid"]
    assert set(pending) == set(job) - {"jobresult", "jobresulttype", "completed"}
    # CloudStack's pending events: jobs begun entrytime..duration seconds ago that have not ended
    waiting = (await api.call(lambda: cs.listEvents(entrytime=3600, duration=0)))["event"]
    assert [(e["type"], e["state"]) for e in waiting] == [("VM.START", "Scheduled")]
    assert await api.call(lambda: cs.listEvents(entrytime=3600, duration=1800)) == {}  # begun just now
    with pytest.raises(CloudStackApiException) as e:
        await api.call(lambda: cs.listEvents(entrytime=10, duration=60))
    assert e.value.error["errorcode"] == 431 and "entrytime" in e.value.error["errortext"]


async def test_infrastructure_commands(api: ApiCloud) -> None:
    cs = api.client("post")
    hosts = (await api.call(lambda: cs.listHosts()))["host"]
    assert len(hosts) == 4 and all(h["state"] == "Up" and h["type"] == "Routing" for h in hosts)
    host = hosts[0]
    assert (
        host["cpunumber"] == 16 and host["memorytotal"] == 64 * 2**30 and host["resourcestate"] == "Enabled"
    )
    zone = first(await api.call(lambda: cs.listZones()), "zone")
    template = first(await api.call(lambda: cs.listTemplates(templatefilter="all")), "template")
    offering = first(await api.call(lambda: cs.listServiceOfferings(name="medium")), "serviceoffering")

    # maintenance: a host's VMs move away; no new VM lands on it until maintenance ends
    placed = (
        await api.call(
            lambda: cs.deployVirtualMachine(
                zoneid=zone["id"],
                serviceofferingid=offering["id"],
                templateid=template["id"],
                hostid=host["id"],
                fetch_result=True,
            )
        )
    )["virtualmachine"]
    assert placed["hostid"] == host["id"]
    maintained = (await api.call(lambda: cs.prepareHostForMaintenance(id=host["id"], fetch_result=True)))[
        "host"
    ]
    assert maintained["resourcestate"] == "Maintenance"
    moved = first(await api.call(lambda: cs.listVirtualMachines(id=placed["id"])), "virtualmachine")
    assert moved["hostid"] != host["id"] and moved["state"] == "Running"
    for _ in range(4):
        vm = (
            await api.call(
                lambda: cs.deployVirtualMachine(
                    zoneid=zone["id"],
                    serviceofferingid=offering["id"],
                    templateid=template["id"],
                    fetch_result=True,
                )
            )
        )["virtualmachine"]
        assert vm["hostid"] != host["id"]
    back = (await api.call(lambda: cs.cancelHostMaintenance(id=host["id"], fetch_result=True)))["host"]
    assert back["resourcestate"] == "Enabled"
    disabled = (await api.call(lambda: cs.updateHost(id=host["id"], allocationstate="Disable")))["host"]
    assert disabled["resourcestate"] == "Disabled"
    with pytest.raises(CloudStackApiException) as refused:
        await api.call(
            lambda: cs.deployVirtualMachine(
                zoneid=zone["id"],
                serviceofferingid=offering["id"],
                templateid=template["id"],
                hostid=host["id"],
                fetch_result=True,
            )
        )
    assert refused.value.error["errorcode"] == 533
    api.cloud.exact()

    # zones, pods, clusters, pools, offerings and networks made and removed through the API
    new_zone = (
        await api.call(
            lambda: cs.createZone(
                name="zone9", dns1="10.9.0.2", internaldns1="10.9.0.2", networktype="Advanced"
            )
        )
    )["zone"]
    pod = (await api.call(lambda: cs.createPod(zoneid=new_zone["id"], name="p1", gateway="10.9.0.1")))["pod"]
    cluster = first(
        await api.call(
            lambda: cs.addCluster(
                zoneid=new_zone["id"],
                podid=pod["id"],
                clustername="c1",
                hypervisor="Simulator",
                clustertype="CloudManaged",
            )
        ),
        "cluster",
    )
    pool = (
        await api.call(
            lambda: cs.createStoragePool(
                zoneid=new_zone["id"],
                clusterid=cluster["id"],
                name="nfs1",
                url="nfs://10.9.0.5/export/p",
                capacitybytes=2**40,
            )
        )
    )["storagepool"]
    assert (pool["scope"], pool["path"], pool["disksizetotal"]) == ("CLUSTER", "10.9.0.5:/export/p", 2**40)
    network = (
        await api.call(
            lambda: cs.createNetwork(
                zoneid=new_zone["id"],
                name="net9",
                gateway="10.9.1.1",
                netmask="255.255.255.0",
                startip="10.9.1.10",
                endip="10.9.1.20",
            )
        )
    )["network"]
    assert network["cidr"] == "10.9.1.0/24" and network["startip"] == "10.9.1.10"
    with pytest.raises(CloudStackApiException) as in_use:
        await api.call(lambda: cs.deleteZone(id=new_zone["id"]))
    assert in_use.value.error["errorcode"] == 536
    await api.call(lambda: cs.deleteNetwork(id=network["id"], fetch_result=True))
    await api.call(lambda: cs.deleteStoragePool(id=pool["id"]))
    await api.call(lambda: cs.deleteCluster(id=cluster["id"]))
    await api.call(lambda: cs.deletePod(id=pod["id"]))
    assert (await api.call(lambda: cs.deleteZone(id=new_zone["id"]))) == {"success": True}
    assert await api.call(lambda: cs.listZones(id=new_zone["id"])) == {}

    made = (
        await api.call(lambda: cs.createServiceOffering(name="tiny", cpunumber=1, cpuspeed=500, memory=256))
    )["serviceoffering"]
    assert (made["cpunumber"], made["memory"]) == (1, 256)
    disk = (await api.call(lambda: cs.createDiskOffering(name="d5", disksize=5)))["diskoffering"]
    await api.call(lambda: cs.deleteDiskOffering(id=disk["id"]))
    await api.call(lambda: cs.deleteServiceOffering(id=made["id"]))
    assert await api.call(lambda: cs.listServiceOfferings(id=made["id"])) == {}

    registered = first(
        await api.call(
            lambda: cs.registerTemplate(
                name="alpine",
                url="http://templates.example/alpine.qcow2",
                format="QCOW2",
                hypervisor="Simulator",
                zoneid="-1",
                ispublic=True,
                size=2**30,
            )
        ),
        "template",
    )
    assert registered["size"] == 2**30
    self_listed = await api.call(lambda: cs.listTemplates(templatefilter="self", name="alpine"))
    assert self_listed["count"] == 1  # one zone: a cross-zone template is listed once per zone
    community = await api.call(lambda: cs.listTemplates(templatefilter="community"))
    assert [t["name"] for t in community["template"]] == ["alpine"]
    os_types = await api.call(lambda: cs.listOsTypes(keyword="Debian"))
    assert all("Debian" in o["description"] for o in os_types["ostype"])

    config = first(await api.call(lambda: cs.listConfigurations(name="expunge.delay")), "configuration")
    assert config["value"] == "86400"
    updated = (await api.call(lambda: cs.updateConfiguration(name="expunge.delay", value="60")))[
        "configuration"
    ]
    assert updated["value"] == "60"
    with pytest.raises(CloudStackApiException) as bad:
        await api.call(lambda: cs.updateConfiguration(name="expunge.delay", value="soon"))
    assert bad.value.error["errorcode"] == 431 and "integer" in bad.value.error["errortext"]
    capacity = (await api.call(lambda: cs.listCapacity(zoneid=zone["id"])))["capacity"]
    memory = next(c for c in capacity if c["type"] == 0)
    assert memory["capacitytotal"] == 4 * 64 * 2**30 and memory["capacityused"] == 5 * 4096 * 2**20
    for name in (
        "listPublicIpAddresses",
        "listPortForwardingRules",
        "listIpForwardingRules",
        "listSSHKeyPairs",
    ):
        assert await api.call(lambda name=name: getattr(cs, name)(listall=True)) == {}


async def test_affinity_groups_through_the_api(api: ApiCloud) -> None:
    cs = api.client()
    zone = first(await api.call(lambda: cs.listZones()), "zone")
    offering = first(await api.call(lambda: cs.listServiceOfferings(name="small")), "serviceoffering")
    template = first(await api.call(lambda: cs.listTemplates(templatefilter="featured")), "template")
    group = (
        await api.call(
            lambda: cs.createAffinityGroup(name="spread", type="host anti-affinity", fetch_result=True)
        )
    )["affinitygroup"]
    hosts = set()
    for _ in range(4):
        vm = (
            await api.call(
                lambda: cs.deployVirtualMachine(
                    zoneid=zone["id"],
                    serviceofferingid=offering["id"],
                    templateid=template["id"],
                    affinitygroupids=group["id"],
                    fetch_result=True,
                )
            )
        )["virtualmachine"]
        assert [g["id"] for g in vm["affinitygroup"]] == [group["id"]]
        hosts.add(vm["hostid"])
    assert len(hosts) == 4  # four members, four hosts
    with pytest.raises(CloudStackApiException) as full:
        await api.call(
            lambda: cs.deployVirtualMachine(
                zoneid=zone["id"],
                serviceofferingid=offering["id"],
                templateid=template["id"],
                affinitygroupids=group["id"],
                fetch_result=True,
            )
        )
    assert full.value.error["errorcode"] == 533
    listed = first(await api.call(lambda: cs.listAffinityGroups(id=group["id"])), "affinitygroup")
    assert len(listed["virtualmachineIds"]) == 5  # the fifth exists, in Error
    with pytest.raises(CloudStackApiException) as busy:
        await api.call(lambda: cs.deleteAffinityGroup(id=group["id"]))
    assert busy.value.error["errorcode"] == 536
