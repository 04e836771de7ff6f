"""CloudStack's parameters with their meaning, through ``cs`` against a server with simulated hosts:
custom offerings, placement scope, disk tuning down to the host, instance groups, MAC addresses, VM
details and passwords, devices, the update commands, pool measurement, templates and accounts."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any

import pytest
from cs import CloudStackApiException

from agent.simulator import SHARED_POOL_BYTES, SimulatorResource

from .conftest import ApiCloud


async def refused(api: ApiCloud, call: Any) -> dict[str, Any]:
    with pytest.raises(CloudStackApiException) as e:
        await api.call(call)
    error: dict[str, Any] = e.value.error
    return error


def sim_vm(api: ApiCloud, vm: dict[str, Any]) -> Any:
    for resource in SimulatorResource.registry.values():
        found = resource.host.vms.get(vm["instancename"])
        if found is not None:
            return resource, found
    raise AssertionError(f"{vm['instancename']} runs on no simulated host")


async def basics(api: ApiCloud) -> dict[str, Any]:
    cs = api.client()
    return {
        "zone": (await api.call(lambda: cs.listZones()))["zone"][0],
        "small": (await api.call(lambda: cs.listServiceOfferings(name="small")))["serviceoffering"][0],
        "template": (await api.call(lambda: cs.listTemplates(templatefilter="all")))["template"][0],
    }


async def test_custom_offerings_size_each_vm_within_their_bounds(api: ApiCloud) -> None:
    cs = api.client()
    b = await basics(api)
    custom = (await api.call(lambda: cs.createServiceOffering(
        name="flex", customized="true", cpuspeed=1000, mincpunumber=1, maxcpunumber=4, minmemory=256,
        maxmemory=8192)))["serviceoffering"]
    assert custom["iscustomized"] is True and "cpunumber" not in custom
    assert custom["serviceofferingdetails"]["maxcpunumber"] == "4"

    def deploy(**details: int) -> Any:
        return lambda: cs.deployVirtualMachine(
            zoneid=b["zone"]["id"], serviceofferingid=custom["id"], templateid=b["template"]["id"],
            fetch_result=True, **{f"details[0].{k}": v for k, v in details.items()})

    vm = (await api.call(deploy(cpuNumber=3, memory=2048)))["virtualmachine"]
    assert (vm["cpunumber"], vm["cpuspeed"], vm["memory"]) == (3, 1000, 2048)
    assert vm["details"]["cpuNumber"] == "3"
    _, sim = sim_vm(api, vm)
    assert sim.to.vcpus == 3 and sim.to.memory_bytes == 2048 * 2**20
    assert "cpuNumber" in (await refused(api, deploy(memory=512)))["errortext"]
    assert (await refused(api, deploy(cpuNumber=8, memory=512)))["errorcode"] == 431
    # the offerings that give at least 3 vCPUs: the custom one (up to 4), not small (1)
    found = (await api.call(lambda: cs.listServiceOfferings(cpunumber=3)))["serviceoffering"]
    assert custom["id"] in {o["id"] for o in found} and b["small"]["id"] not in {o["id"] for o in found}
    # changed to a custom offering with its sizes
    await api.call(lambda: cs.stopVirtualMachine(id=vm["id"], fetch_result=True))
    changed = (await api.call(lambda: cs.changeServiceForVirtualMachine(
        id=vm["id"], serviceofferingid=custom["id"],
        **{"details[0].cpuNumber": 2, "details[0].memory": 1024})))
    assert (changed["virtualmachine"]["cpunumber"], changed["virtualmachine"]["memory"]) == (2, 1024)

    disk = next(o for o in (await api.call(lambda: cs.listDiskOfferings()))["diskoffering"]
                if o["name"] == "Custom")
    assert disk["iscustomized"] is True and disk["disksize"] == 0
    volume = (await api.call(lambda: cs.createVolume(name="c1", zoneid=b["zone"]["id"],
                                                     diskofferingid=disk["id"], size=7,
                                                     fetch_result=True)))["volume"]
    assert volume["size"] == 7 * 2**30
    error = await refused(api, lambda: cs.createVolume(name="c2", zoneid=b["zone"]["id"],
                                                       diskofferingid=disk["id"]))
    assert "custom" in error["errortext"]


async def test_admins_place_vms_in_a_pod_or_cluster_and_planners_are_checked(api: ApiCloud) -> None:
    cs = api.client()
    b = await basics(api)
    cluster = next(c for c in (await api.call(lambda: cs.listClusters()))["cluster"]
                   if c["name"] == "pod1-cluster2")
    vm = (await api.call(lambda: cs.deployVirtualMachine(
        zoneid=b["zone"]["id"], serviceofferingid=b["small"]["id"], templateid=b["template"]["id"],
        clusterid=cluster["id"], deploymentplanner="UserDispersingPlanner",
        fetch_result=True)))["virtualmachine"]
    host = (await api.call(lambda: cs.listHosts(virtualmachineid=vm["id"])))["host"]
    assert [h["clusterid"] for h in host] == [cluster["id"]]
    listed = await api.call(lambda: cs.listVirtualMachines(clusterid=cluster["id"], listall="true"))
    assert [v["id"] for v in listed["virtualmachine"]] == [vm["id"]]
    assert (await api.call(lambda: cs.listVirtualMachines(clusterid=cluster["id"],
                                                          retrieveonlyresourcecount="true"))) == {"count": 1}
    # stopped and started in another cluster, as asked (not on its last host)
    other = next(c for c in (await api.call(lambda: cs.listClusters()))["cluster"]
                 if c["name"] == "pod1-cluster1")
    await api.call(lambda: cs.stopVirtualMachine(id=vm["id"], fetch_result=True))
    await api.call(lambda: cs.startVirtualMachine(id=vm["id"], clusterid=other["id"], fetch_result=True))
    host = (await api.call(lambda: cs.listHosts(virtualmachineid=vm["id"])))["host"][0]
    assert host["clusterid"] == other["id"]
    error = await refused(api, lambda: cs.deployVirtualMachine(
        zoneid=b["zone"]["id"], serviceofferingid=b["small"]["id"], templateid=b["template"]["id"],
        deploymentplanner="BareMetalPlanner"))
    assert "deploymentplanner" in error["errortext"]
    error = await refused(api, lambda: cs.createServiceOffering(name="x", cpunumber=1, cpuspeed=1, memory=64,
                                                                deploymentplanner="NoSuchPlanner"))
    assert error["errorcode"] == 431


async def test_an_offering_s_disk_tuning_reaches_the_host(api: ApiCloud) -> None:
    cs = api.client()
    b = await basics(api)
    offering = (await api.call(lambda: cs.createServiceOffering(
        name="tuned", cpunumber=1, cpuspeed=500, memory=256, cachemode="writeback", provisioningtype="fat",
        iopsreadrate=500, iopsreadratemax=1000, iopsreadratemaxlength=10, networkrate=100,
        limitcpuuse="true")))["serviceoffering"]
    assert (offering["cacheMode"], offering["diskIopsReadRateMax"], offering["networkrate"]) == (
        "writeback", 1000, 100)
    error = await refused(api, lambda: cs.createServiceOffering(
        name="bad", cpunumber=1, cpuspeed=1, memory=64, iopsreadratemax=10))
    assert "burst" in error["errortext"]
    assert (await refused(api, lambda: cs.createDiskOffering(name="bad", disksize=1, cachemode="unsafe")))[
        "errorcode"] == 431
    data = (await api.call(lambda: cs.createDiskOffering(
        name="thick", disksize=3, provisioningtype="sparse", byteswriterate=10_000_000)))["diskoffering"]
    vm = (await api.call(lambda: cs.deployVirtualMachine(
        zoneid=b["zone"]["id"], serviceofferingid=offering["id"], templateid=b["template"]["id"],
        diskofferingid=data["id"], fetch_result=True)))["virtualmachine"]
    resource, sim = sim_vm(api, vm)
    root, disk = sorted(sim.to.disks, key=lambda d: d.device_id)
    assert (root.cache_mode, root.iotune) == ("writeback", {"read_iops_sec": 500, "read_iops_sec_max": 1000,
                                                            "read_iops_sec_max_length": 10})
    assert (disk.cache_mode, disk.iotune) == ("none", {"write_bytes_sec": 10_000_000})
    assert sim.to.cpu_cap and sim.to.nics[0].rate_mbps == 100
    made = resource.host.preallocation
    assert made.get(root.path) == "full" and made.get(disk.path) == "metadata"
    volumes = (await api.call(lambda: cs.listVolumes(virtualmachineid=vm["id"])))["volume"]
    assert {v["type"]: v["provisioningtype"] for v in volumes} == {"ROOT": "fat", "DATADISK": "sparse"}
    # a later change of the disk offering applies to volumes made from then on
    updated = (await api.call(lambda: cs.updateDiskOffering(id=data["id"], bytesreadrate=5_000_000,
                                                            displayoffering="false")))["diskoffering"]
    assert (updated["diskBytesReadRate"], updated["diskBytesWriteRate"]) == (5_000_000, 10_000_000)
    assert updated["displayoffering"] is False


async def test_groups_macs_details_passwords_and_devices(api: ApiCloud) -> None:
    cs = api.client()
    b = await basics(api)
    base = {"zoneid": b["zone"]["id"], "serviceofferingid": b["small"]["id"],
            "templateid": b["template"]["id"]}
    await api.call(lambda: cs.updateTemplate(id=b["template"]["id"], passwordenabled="true"))
    deployed = await api.call(lambda: cs.deployVirtualMachine(
        **base, group="web", macaddress="02:aa:bb:cc:dd:ee", **{"details[0].owner": "ops"}))
    password = deployed["password"]
    # (cs polls the job, within its job_timeout, as fetch_result would)
    vm = (await api.call(lambda: cs._jobresult(deployed["jobid"])))["virtualmachine"]
    assert vm["group"] == "web" and vm["nic"][0]["macaddress"] == "02:aa:bb:cc:dd:ee"
    assert vm["details"] == {"owner": "ops"}  # (the password is not shown)
    _, sim = sim_vm(api, vm)
    files = sim.to.config_drive.files
    assert "cloudstack/password/vm_password.txt" in files and len(password) >= 6
    assert (await refused(api, lambda: cs.deployVirtualMachine(**base, macaddress="02:aa:bb:cc:dd:ee")))[
        "errorcode"] == 431
    assert (await refused(api, lambda: cs.deployVirtualMachine(**base, macaddress="01:00:5e:00:00:01")))[
        "errorcode"] == 431
    grouped = await api.call(lambda: cs.listVirtualMachines(groupid=vm["groupid"]))
    assert [v["id"] for v in grouped["virtualmachine"]] == [vm["id"]]
    assert (await api.call(lambda: cs.listVirtualMachines(keypair="nobody"))) == {}
    # a data volume on a device of our choosing, detached by VM and device
    disk = next(o for o in (await api.call(lambda: cs.listDiskOfferings()))["diskoffering"]
                if not o["iscustomized"])
    volume = (await api.call(lambda: cs.createVolume(name="d5", zoneid=b["zone"]["id"],
                                                     diskofferingid=disk["id"], fetch_result=True)))["volume"]
    attached = (await api.call(lambda: cs.attachVolume(id=volume["id"], virtualmachineid=vm["id"], deviceid=5,
                                                       fetch_result=True)))["volume"]
    assert attached["deviceid"] == 5
    detached = (await api.call(lambda: cs.detachVolume(virtualmachineid=vm["id"], deviceid=5,
                                                       fetch_result=True)))["volume"]
    assert detached["id"] == volume["id"] and "virtualmachineid" not in detached
    await api.call(lambda: cs.stopVirtualMachine(id=vm["id"], fetch_result=True))
    updated = (await api.call(lambda: cs.updateVirtualMachine(
        id=vm["id"], group="db", displayvm="false", **{"details[0].owner": "dev"})))["virtualmachine"]
    assert updated["group"] == "db" and updated["groupid"] != vm["groupid"] and updated["displayvm"] is False
    assert updated["details"] == {"owner": "dev"}
    assert (await api.call(lambda: cs.listVirtualMachines(displayvm="true", id=vm["id"]))) == {}


async def test_the_update_commands_change_what_they_name(api: ApiCloud, tmp_path: Path) -> None:
    cs = api.client()
    b = await basics(api)
    zone = (await api.call(lambda: cs.updateZone(
        id=b["zone"]["id"], dns2="10.0.0.9", guestcidraddress="10.8.0.0/16",
        internaldns1="10.0.0.4")))["zone"]
    assert (zone["dns2"], zone["guestcidraddress"], zone["internaldns1"]) == (
        "10.0.0.9", "10.8.0.0/16", "10.0.0.4")
    error = await refused(api, lambda: cs.updateZone(id=b["zone"]["id"], dns1="not-an-address"))
    assert error["errorcode"] == 431
    pod = (await api.call(lambda: cs.listPods(name="pod2")))["pod"][0]
    changed = (await api.call(lambda: cs.updatePod(id=pod["id"], name="pod2b",
                                                   allocationstate="Disabled")))["pod"]
    assert (changed["name"], changed["allocationstate"]) == ("pod2b", "Disabled")
    assert (await api.call(lambda: cs.listPods(allocationstate="Disabled")))["pod"][0]["id"] == pod["id"]
    cluster = (await api.call(lambda: cs.listClusters(name="pod1-cluster1")))["cluster"][0]
    renamed = (await api.call(lambda: cs.updateCluster(id=cluster["id"], clustername="c1")))["cluster"]
    assert renamed["name"] == "c1"
    error = await refused(api, lambda: cs.updateCluster(id=cluster["id"], hypervisor="KVM"))
    assert error["errorcode"] == 431
    offering = (await api.call(lambda: cs.updateServiceOffering(id=b["small"]["id"], displaytext="S",
                                                                hosttags="fast")))["serviceoffering"]
    assert (offering["displaytext"], offering["hosttags"]) == ("S", "fast")
    await api.call(lambda: cs.updateServiceOffering(id=b["small"]["id"], hosttags=""))
    template = (await api.call(lambda: cs.updateTemplate(id=b["template"]["id"], name="renamed", bits=32)))
    assert template["template"]["name"] == "renamed"

    # a pool added without its size: a host of its cluster measures it; then disabled and back
    pool = (await api.call(lambda: cs.createStoragePool(zoneid=b["zone"]["id"], name="measured",
                                                        url=f"file://{tmp_path}/measured")))["storagepool"]
    assert pool["disksizetotal"] == SHARED_POOL_BYTES
    # a thin shared pool shows the factor the planner applies to it (storage.overprovisioning.factor)
    listed = (await api.call(lambda: cs.listStoragePools(id=pool["id"])))["storagepool"][0]
    assert (listed["type"], listed["overprovisionfactor"]) == ("Filesystem", "2.0")
    off = (await api.call(lambda: cs.updateStoragePool(id=pool["id"], enabled="false",
                                                       tags="gold")))["storagepool"]
    assert (off["state"], off["tags"]) == ("Disabled", "gold")
    assert (await api.call(lambda: cs.updateStoragePool(id=pool["id"], enabled="true")))["storagepool"][
        "state"] == "Up"
    error = await refused(api, lambda: cs.updateStoragePool(id=pool["id"], capacitybytes=0))
    assert error["errorcode"] == 431
    # capacities of a zone, a pod, a cluster
    shown = (await api.call(lambda: cs.listZones(id=b["zone"]["id"], showcapacities="true")))["zone"][0]
    assert {c["type"] for c in shown["capacity"]} >= {0, 1, 2, 3}
    by_cluster = (await api.call(lambda: cs.listCapacity(clusterid=cluster["id"])))["capacity"]
    assert all(c["clusterid"] == cluster["id"] for c in by_cluster)


async def test_templates_accounts_and_users_take_their_parameters(api: ApiCloud, tmp_path: Path) -> None:
    cs = api.client()
    image = tmp_path / "image.qcow2"
    image.write_bytes(b"not really an image, but bytes to hash" * 100)
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    common = {"url": str(image), "format": "QCOW2", "hypervisor": "Simulator", "zoneid": "-1"}
    error = await refused(api, lambda: cs.registerTemplate(name="t1", checksum="{SHA-256}" + "0" * 64,
                                                           **common))
    assert "checksum" in error["errortext"]
    made = (await api.call(lambda: cs.registerTemplate(name="t1", checksum="{SHA-256}" + digest, bits=32,
                                                       sshkeyenabled="true", templatetag="gold",
                                                       **common)))["template"][0]
    assert (made["bits"], made["sshkeyenabled"], made["templatetag"]) == (32, True, "gold")
    unique = await api.call(lambda: cs.listTemplates(templatefilter="all", showunique="true", ids=made["id"]))
    assert unique["count"] == 1
    job = await api.call(lambda: cs.deleteTemplate(id=made["id"]))
    assert "jobid" in job  # (async, as CloudStack's)
    done = await api.call(lambda: cs._jobresult(job["jobid"]))  # (raises when the job failed)
    assert done["success"] is True

    account_id, user_id = str(uuid.uuid4()), str(uuid.uuid4())
    account = (await api.call(lambda: cs.createAccount(
        username="idp", password="a-long-enough-password", email="i@x", firstname="i", lastname="p",
        accountid=account_id, userid=user_id, timezone="Europe/Paris")))["account"]
    assert account["id"] == account_id and account["user"][0]["id"] == user_id
    assert account["user"][0]["timezone"] == "Europe/Paris"
    error = await refused(api, lambda: cs.createUser(
        account="idp", username="x2", password="a-long-enough-p4ss", email="x@x", firstname="x", lastname="x",
        timezone="Mars/Base"))
    assert "timezone" in error["errortext"]
    locked = (await api.call(lambda: cs.lockAccount(account="idp", domainid=account["domainid"])))["account"]
    assert locked["state"] == "locked"  # (at once: lockAccount is synchronous, as CloudStack's)


async def test_resource_tags_are_made_listed_filtered_by_copied_and_removed(api: ApiCloud) -> None:
    cs = api.client()
    b = await basics(api)
    template = b["template"]
    made = await api.call(lambda: cs.createTags(resourcetype="Template", resourceids=template["id"],
                                                fetch_result=True,
                                                **{"tags[0].key": "os", "tags[0].value": "debian"}))
    assert made["success"] is True
    vm = (await api.call(lambda: cs.deployVirtualMachine(
        zoneid=b["zone"]["id"], serviceofferingid=b["small"]["id"], templateid=template["id"],
        copyimagetags="true", fetch_result=True)))["virtualmachine"]
    assert [(t["key"], t["value"], t["resourcetype"]) for t in vm["tags"]] == [("os", "debian", "UserVm")]
    await api.call(lambda: cs.createTags(resourcetype="UserVm", resourceids=vm["id"], fetch_result=True,
                                         **{"tags[0].key": "env", "tags[0].value": "prod"}))
    error = await refused(api, lambda: cs.createTags(resourcetype="UserVm", resourceids=vm["id"],
                                                     **{"tags[0].key": "env", "tags[0].value": "dev"}))
    assert "env" in error["errortext"]
    tagged = await api.call(lambda: cs.listVirtualMachines(**{"tags[0].key": "env", "tags[0].value": "prod"}))
    assert [v["id"] for v in tagged["virtualmachine"]] == [vm["id"]]
    assert await api.call(lambda: cs.listVirtualMachines(**{"tags[0].key": "env",
                                                             "tags[0].value": "dev"})) == {}
    listed = (await api.call(lambda: cs.listTags(resourceid=vm["id"])))["tag"]
    assert sorted(t["key"] for t in listed) == ["env", "os"]
    assert (await refused(api, lambda: cs.createTags(resourcetype="Snapshot", resourceids=vm["id"],
                                                     **{"tags[0].key": "a", "tags[0].value": "b"})))[
        "errorcode"] == 431
    await api.call(lambda: cs.deleteTags(resourcetype="UserVm", resourceids=vm["id"], fetch_result=True,
                                         **{"tags[0].key": "env"}))
    assert [t["key"] for t in (await api.call(lambda: cs.listTags(resourceid=vm["id"])))["tag"]] == ["os"]
    # another account cannot tag what it does not own
    await api.call(lambda: cs.createAccount(username="tagger", password="a-long-enough-password",
                                            email="t@x", firstname="t", lastname="t"))
    user = (await api.call(lambda: cs.listUsers(username="tagger")))["user"][0]
    keys = (await api.call(lambda: cs.registerUserKeys(id=user["id"])))["userkeys"]
    theirs = api.client(key=keys["apikey"], secret=keys["secretkey"])
    error = await refused(api, lambda: theirs.createTags(resourcetype="UserVm", resourceids=vm["id"],
                                                         **{"tags[0].key": "x", "tags[0].value": "y"}))
    assert error["errorcode"] in (431, 531)


async def test_offerings_dedicated_to_a_domain_and_zone_serve_only_them(api: ApiCloud) -> None:
    cs = api.client()
    b = await basics(api)
    sales = (await api.call(lambda: cs.createDomain(name="sales")))["domain"]
    offering = (await api.call(lambda: cs.createServiceOffering(
        name="sales-only", cpunumber=1, cpuspeed=500, memory=256, domainid=sales["id"],
        zoneid=b["zone"]["id"])))["serviceoffering"]
    assert (offering["domainid"], offering["zoneid"]) == (sales["id"], b["zone"]["id"])

    async def user_in(domain_id: str, name: str) -> Any:
        await api.call(lambda: cs.createAccount(username=name, password="a-long-enough-password", email="u@x",
                                                firstname="u", lastname="u", domainid=domain_id))
        user = (await api.call(lambda: cs.listUsers(username=name, listall="true")))["user"][0]
        keys = (await api.call(lambda: cs.registerUserKeys(id=user["id"])))["userkeys"]
        return api.client(key=keys["apikey"], secret=keys["secretkey"])

    seller = await user_in(sales["id"], "seller")
    outsider = await user_in(sales["parentdomainid"], "outsider")  # (in ROOT)
    seen = {o["id"] for o in (await api.call(lambda: seller.listServiceOfferings()))["serviceoffering"]}
    assert offering["id"] in seen and b["small"]["id"] in seen  # (and the public ones)
    unseen = {o["id"] for o in (await api.call(lambda: outsider.listServiceOfferings()))["serviceoffering"]}
    assert offering["id"] not in unseen and b["small"]["id"] in unseen
    base = {"zoneid": b["zone"]["id"], "serviceofferingid": offering["id"], "templateid": b["template"]["id"]}
    vm = (await api.call(lambda: seller.deployVirtualMachine(**base, fetch_result=True)))["virtualmachine"]
    assert vm["serviceofferingid"] == offering["id"]
    error = await refused(api, lambda: outsider.deployVirtualMachine(**base))
    assert "not for this account's domain" in error["errortext"]
    # made public again: everyone sees it
    await api.call(lambda: cs.updateServiceOffering(id=offering["id"], domainid="public"))
    unseen = {o["id"] for o in (await api.call(lambda: outsider.listServiceOfferings()))["serviceoffering"]}
    assert offering["id"] in unseen


async def test_hostile_maps_and_details_are_refused_naming_them(api: ApiCloud) -> None:
    cs = api.client()
    b = await basics(api)
    base = {"zoneid": b["zone"]["id"], "serviceofferingid": b["small"]["id"],
            "templateid": b["template"]["id"]}
    error = await refused(api, lambda: cs.deployVirtualMachine(**base, **{"details[0].io.policy": "bogus"}))
    assert error["errorcode"] == 431 and "io.policy" in error["errortext"]
    error = await refused(api, lambda: cs.deployVirtualMachine(**base,
                                                               **{"details[0].Encrypted.Password": "x"}))
    assert error["errorcode"] == 431
    many = {f"details[{i}].k{i}": "v" for i in range(300)}
    error = await refused(api, lambda: cs.deployVirtualMachine(**base, **many))
    assert error["errorcode"] == 431 and "details" in error["errortext"]
    error = await refused(api, lambda: cs.deployVirtualMachine(**base, iodriverpolicy="aio=evil"))
    assert "iodriverpolicy" in error["errortext"]
    error = await refused(api, lambda: cs.createTags(resourcetype="UserVm", resourceids=str(uuid.uuid4()),
                                                     **{"tags[0].key": "", "tags[0].value": "x"}))
    assert error["errorcode"] == 431
    assert await api.call(lambda: cs.listVirtualMachines(listall="true")) == {}  # nothing was made


async def test_who_deployed_suitable_disk_offerings_and_a_job_s_events(api: ApiCloud) -> None:
    cs = api.client()
    b = await basics(api)
    vm = (await api.call(lambda: cs.deployVirtualMachine(
        zoneid=b["zone"]["id"], serviceofferingid=b["small"]["id"], templateid=b["template"]["id"],
        fetch_result=True)))["virtualmachine"]
    me = (await api.call(lambda: cs.listUsers(username="admin")))["user"][0]
    assert (vm["userid"], vm["username"]) == (me["id"], "admin")
    mine = await api.call(lambda: cs.listVirtualMachines(userid=me["id"], listall="true"))
    assert [v["id"] for v in mine["virtualmachine"]] == [vm["id"]]
    assert await api.call(lambda: cs.listVirtualMachines(userid=str(uuid.uuid4()), listall="true")) == {}
    # the disk offerings whose storage tags the VM's root volume's pool has
    root = (await api.call(lambda: cs.listVolumes(virtualmachineid=vm["id"], type="ROOT")))["volume"][0]
    pool = (await api.call(lambda: cs.listStoragePools(id=root["storageid"])))["storagepool"][0]
    await api.call(lambda: cs.createDiskOffering(name="needs-gold", disksize=1, tags="gold"))
    fits = (await api.call(lambda: cs.listDiskOfferings(virtualmachineid=vm["id"])))["diskoffering"]
    assert "needs-gold" not in {o["name"] for o in fits} and all(
        set(filter(None, o.get("tags", "").split(","))) <= set(filter(None, pool["tags"].split(",")))
        for o in fits)
    # an event and the others of its job
    events = (await api.call(lambda: cs.listEvents(resourceid=vm["id"], type="VM.CREATE")))["event"]
    first = events[-1]
    of_job = (await api.call(lambda: cs.listEvents(startid=first["id"])))["event"]
    assert first["id"] in {e["id"] for e in of_job} and {e["state"] for e in of_job} >= {"Scheduled"}


async def test_sort_keys_order_zones_offerings_and_templates(api: ApiCloud, tmp_path: Path) -> None:
    cs = api.client()
    names = ["first", "second", "third"]
    made = [(await api.call(lambda n=n: cs.createServiceOffering(name=n, cpunumber=1, cpuspeed=100,
                                                                 memory=128)))["serviceoffering"]["id"]
            for n in names]
    disks = [(await api.call(lambda n=n: cs.createDiskOffering(name=n, disksize=1)))["diskoffering"]["id"]
             for n in names]

    def order(kind: str) -> list[str]:
        listed = getattr(cs, f"list{kind}Offerings")()[f"{kind.lower()}offering"]
        return [o["name"] for o in listed if o["name"] in names]

    assert await api.call(lambda: order("Service")) == names  # equal keys: the order they were made
    for ident, key in zip(made, (1, 3, 2), strict=True):
        await api.call(lambda i=ident, k=key: cs.updateServiceOffering(id=i, sortkey=k))
    for ident, key in zip(disks, (1, 3, 2), strict=True):
        await api.call(lambda i=ident, k=key: cs.updateDiskOffering(id=i, sortkey=k))
    # sortkey.algorithm false (CloudStack's default): descending
    assert await api.call(lambda: order("Service")) == ["second", "third", "first"]
    assert await api.call(lambda: order("Disk")) == ["second", "third", "first"]
    await api.call(lambda: cs.updateConfiguration(name="sortkey.algorithm", value="true"))
    assert await api.call(lambda: order("Service")) == ["first", "third", "second"]
    assert await api.call(lambda: order("Disk")) == ["first", "third", "second"]
    image = tmp_path / "image.qcow2"
    image.write_bytes(b"bytes" * 100)
    later = (await api.call(lambda: cs.registerTemplate(name="later", url=str(image), format="QCOW2",
                                                        hypervisor="Simulator", zoneid="-1")))["template"][0]
    listed = (await api.call(lambda: cs.listTemplates(templatefilter="all")))["template"]
    assert listed[-1]["id"] == later["id"]  # (equal keys: the order they were made)
    await api.call(lambda: cs.updateTemplate(id=later["id"], sortkey=-5))
    listed = (await api.call(lambda: cs.listTemplates(templatefilter="all")))["template"]
    assert listed[0]["id"] == later["id"]  # (ascending now: the lowest key first)
    zone = (await api.call(lambda: cs.listZones()))["zone"][0]
    assert (await api.call(lambda: cs.updateZone(id=zone["id"], sortkey=7)))["zone"]["id"] == zone["id"]
    with pytest.raises(CloudStackApiException) as e:
        await api.call(lambda: cs.updateZone(id=zone["id"], sortkey="high"))
    assert e.value.error["errorcode"] == 431 and "sortkey" in e.value.error["errortext"]


async def test_networks_keep_external_ids_and_vlans_are_not_shared_by_accident(api: ApiCloud) -> None:
    cs = api.client()
    zone = (await api.call(lambda: cs.listZones()))["zone"][0]["id"]

    def shared(name: str, vlan: str, **extra: Any) -> Any:
        return lambda: cs.createNetwork(zoneid=zone, name=name, gateway="10.77.0.1", netmask="255.255.255.0",
                                        startip="10.77.0.10", endip="10.77.0.20", vlan=vlan, **extra)

    made = (await api.call(shared("first", "777", externalid="ext-42")))["network"]
    assert made["externalid"] == "ext-42"
    listed = (await api.call(lambda: cs.listNetworks(id=made["id"])))["network"][0]
    assert listed["externalid"] == "ext-42"
    with pytest.raises(CloudStackApiException) as e:
        await api.call(shared("second", "777"))
    assert e.value.error["errorcode"] == 431 and "bypassvlanoverlapcheck" in e.value.error["errortext"]
    again = (await api.call(shared("second", "777", bypassvlanoverlapcheck=True)))["network"]
    assert again["vlan"] == "777"

    # a zone's details: set (replacing those it had), shown as resourcedetails
    await api.call(lambda: cs.updateZone(id=zone, details={"rack": "r12", "owner": "ops"}))
    shown = (await api.call(lambda: cs.listZones(id=zone)))["zone"][0]
    assert shown["resourcedetails"] == {"rack": "r12", "owner": "ops"}
    await api.call(lambda: cs.updateZone(id=zone, details={"rack": "r13"}))
    assert (await api.call(lambda: cs.listZones(id=zone)))["zone"][0]["resourcedetails"] == {"rack": "r13"}
