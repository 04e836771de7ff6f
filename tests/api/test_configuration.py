"""Settings through the real ``cs`` client: values for one cluster, pool, zone, domain or account that
what uses them honours at once, resets, the scopes a setting allows, and CloudStack's setting groups."""

from __future__ import annotations

from typing import Any

from cs import CloudStack

from tests.api.conftest import ApiCloud
from tests.api.test_tenancy import PASSWORD, account, domain, ids, refused


def _value(listed: dict[str, Any], name: str) -> str:
    return str(next(c["value"] for c in listed["configuration"] if c["name"] == name))


async def test_scoped_values_apply_where_they_are_set(api: ApiCloud) -> None:
    admin = api.client()
    where = await ids(api, admin)
    cluster = (await api.call(lambda: admin.listClusters()))["cluster"][0]
    pool = next(p for p in (await api.call(lambda: admin.listStoragePools()))["storagepool"]
                if p["scope"] != "HOST")

    # A cluster's CPU overprovisioning factor is the cluster's own (listClusters shows it).
    set_ = await api.call(lambda: admin.updateConfiguration(name="cpu.overprovisioning.factor", value="3.5",
                                                            clusterid=cluster["id"]))
    assert (set_["configuration"]["value"], set_["configuration"]["scope"]) == ("3.5", "cluster")
    listed = await api.call(lambda: admin.listConfigurations(clusterid=cluster["id"]))
    assert {c["name"] for c in listed["configuration"]} == {"cpu.overprovisioning.factor",
                                                            "mem.overprovisioning.factor"}
    assert _value(listed, "cpu.overprovisioning.factor") == "3.5"
    assert float(_value(listed, "mem.overprovisioning.factor")) == 1.0  # (the cloud-wide value)
    assert (await api.call(lambda: admin.listClusters(id=cluster["id"])))["cluster"][0][
        "cpuovercommitratio"] == "3.5"
    # ... and a setting of another scope is refused there, naming its scope.
    wrong = await refused(api, lambda: admin.updateConfiguration(name="expunge.delay", value="5",
                                                                 clusterid=cluster["id"]))
    assert wrong["errorcode"] == 431 and "only cloud-wide" in wrong["errortext"]
    assert (await refused(api, lambda: admin.updateConfiguration(
        name="cpu.overprovisioning.factor", value="-1", clusterid=cluster["id"])))["errorcode"] == 431
    assert (await refused(api, lambda: admin.updateConfiguration(
        name="cpu.overprovisioning.factor", value="2", clusterid=cluster["id"],
        zoneid=where["zoneid"])))["errorcode"] == 431
    reset = await api.call(lambda: admin.resetConfiguration(name="cpu.overprovisioning.factor",
                                                            clusterid=cluster["id"]))
    assert float(reset["configuration"]["value"]) == 1.0
    assert (await api.call(lambda: admin.listClusters(id=cluster["id"])))["cluster"][0][
        "cpuovercommitratio"] in ("", None)

    # A pool's own storage factor: listStoragePools shows it.
    await api.call(lambda: admin.updateConfiguration(name="storage.overprovisioning.factor", value="4",
                                                     storageid=pool["id"]))
    shown = (await api.call(lambda: admin.listStoragePools(id=pool["id"])))["storagepool"][0]
    assert float(shown["overprovisionfactor"]) == (4.0 if pool["type"] in ("NetworkFilesystem", "Filesystem")
                                                   else 1.0)

    # A zone's pool threshold: at 0 no pool of the zone takes a new disk, so a deploy finds no place.
    await api.call(lambda: admin.updateConfiguration(name="pool.storage.capacity.disablethreshold", value="0",
                                                     zoneid=where["zoneid"]))
    failed = await refused(api, lambda: admin.deployVirtualMachine(**where, fetch_result=True))
    assert "pool" in failed["errortext"] or failed["errorcode"] == 533, failed
    await api.call(lambda: admin.resetConfiguration(name="pool.storage.capacity.disablethreshold",
                                                    zoneid=where["zoneid"]))
    vm = await api.call(lambda: admin.deployVirtualMachine(**where, fetch_result=True))
    assert vm["virtualmachine"]["state"] == "Running"


async def test_a_domain_s_password_policy_and_an_account_s_expunge_right(api: ApiCloud) -> None:
    admin = api.client()
    strict, lax = await domain(api, "strict"), await domain(api, "lax")
    await api.call(lambda: admin.updateConfiguration(name="password.policy.minimum.length", value="40",
                                                     domainid=strict["id"]))

    def create(name: str, domain_id: str) -> Any:
        return lambda: admin.createAccount(username=name, password=PASSWORD, email="x@example.org",
                                           firstname="x", lastname="y", domainid=domain_id)

    too_short = await refused(api, create("sam", strict["id"]))
    assert too_short["errorcode"] == 431 and "40" in too_short["errortext"]
    await api.call(create("lou", lax["id"]))  # (the cloud-wide policy there)

    # allow.user.expunge.recover.vm for one account: its user may expunge and recover; another may not.
    who: dict[str, CloudStack] = {}
    made: dict[str, dict[str, Any]] = {}
    for name in ("ann", "ben"):
        made[name], who[name] = await account(api, name, lax["id"])
    await api.call(lambda: admin.updateConfiguration(name="allow.user.expunge.recover.vm", value="true",
                                                     accountid=made["ann"]["id"]))
    where = await ids(api, who["ann"])
    vms = {}
    for name in ("ann", "ben"):
        vms[name] = (await api.call(lambda n=name: who[n].deployVirtualMachine(**where, fetch_result=True)))[
            "virtualmachine"]["id"]
        await api.call(lambda n=name: who[n].destroyVirtualMachine(id=vms[n], fetch_result=True))
    denied = await refused(api, lambda: who["ben"].recoverVirtualMachine(id=vms["ben"]))
    assert denied["errorcode"] == 531 and "allow.user.expunge.recover.vm" in denied["errortext"]
    assert (await refused(api, lambda: who["ben"].expungeVirtualMachine(id=vms["ben"])))["errorcode"] == 531
    recovered = await api.call(lambda: who["ann"].recoverVirtualMachine(id=vms["ann"]))
    assert recovered["virtualmachine"]["state"] == "Stopped"
    await api.call(lambda: who["ann"].destroyVirtualMachine(id=vms["ann"], expunge=True, fetch_result=True))
    listed = await api.call(lambda: admin.listConfigurations(accountid=made["ann"]["id"]))
    assert [(c["name"], c["value"]) for c in listed["configuration"]] == [
        ("allow.user.expunge.recover.vm", "true")]
    # ... the same through accountdetails, on createAccount and updateAccount; other keys are refused
    made_now = await api.call(lambda: admin.createAccount(
        username="cleo", password=PASSWORD, email="c@example.org", firstname="c", lastname="d",
        domainid=lax["id"], accountdetails={"allow.user.expunge.recover.vm": "true"}))
    cleo = await api.call(lambda: admin.listConfigurations(accountid=made_now["account"]["id"]))
    assert _value(cleo, "allow.user.expunge.recover.vm") == "true"
    await api.call(lambda: admin.updateAccount(id=made_now["account"]["id"],
                                               accountdetails={"allow.user.expunge.recover.vm": "false"}))
    cleo = await api.call(lambda: admin.listConfigurations(accountid=made_now["account"]["id"]))
    assert _value(cleo, "allow.user.expunge.recover.vm") == "false"
    bad = await refused(api, lambda: admin.updateAccount(id=made_now["account"]["id"],
                                                         accountdetails={"expunge.delay": "1"}))
    assert bad["errorcode"] == 431 and "expunge.delay" in bad["errortext"]


async def test_setting_groups_subgroups_and_parents(api: ApiCloud) -> None:
    admin = api.client()
    groups = (await api.call(lambda: admin.listConfigurationGroups()))["configurationgroup"]
    assert [g["name"] for g in groups][:2] == ["Access", "Compute"]
    access = (await api.call(lambda: admin.listConfigurationGroups(group="Access")))["configurationgroup"]
    assert "Password Policy" in {s["name"] for s in access[0]["subgroup"]}
    policy = (await api.call(lambda: admin.listConfigurations(group="Access", subgroup="Password Policy")))
    assert policy["count"] == 7 and all(c["scope"] == "domain" for c in policy["configuration"])
    children = (await api.call(lambda: admin.listConfigurations(parent="api.throttling.enabled")))
    assert {c["name"] for c in children["configuration"]} == {"api.throttling.interval", "api.throttling.max"}
    assert await api.call(lambda: admin.listConfigurations(group="Nothing")) == {}
