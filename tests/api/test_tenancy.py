"""Tenancy through the real ``cs`` client: a domain tree with a domain admin in the middle, accounts and
users through their life, passwords, and resource limits that concurrent deploys cannot overshoot."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from cs import CloudStack, CloudStackApiException

from mgmt.db.schema import nics, vms
from mgmt.planner import capacity
from tests.api.conftest import ApiCloud

PASSWORD = "a-long-enough-password"


async def domain(api: ApiCloud, name: str, parent: str = "") -> dict[str, Any]:
    cs = api.client()
    extra = {"parentdomainid": parent} if parent else {}
    return (await api.call(lambda: cs.createDomain(name=name, **extra)))["domain"]


async def account(api: ApiCloud, name: str, domain_id: str, account_type: int = 0,
                  by: CloudStack | None = None) -> tuple[dict[str, Any], CloudStack]:
    """An account with one user and that user's keys; a client for it."""
    cs = by or api.client()
    made = (await api.call(lambda: cs.createAccount(
        username=name, password=PASSWORD, email=f"{name}@example.org", firstname=name, lastname="T",
        accounttype=account_type, domainid=domain_id)))["account"]
    keys = (await api.call(lambda: api.client().registerUserKeys(id=made["user"][0]["id"])))["userkeys"]
    return made, api.client(key=keys["apikey"], secret=keys["secretkey"])


async def ids(api: ApiCloud, cs: CloudStack) -> dict[str, str]:
    return {
        "zoneid": (await api.call(lambda: cs.listZones()))["zone"][0]["id"],
        "serviceofferingid": (await api.call(lambda: cs.listServiceOfferings(name="small")))[
            "serviceoffering"][0]["id"],
        "templateid": (await api.call(lambda: cs.listTemplates(templatefilter="executable")))[
            "template"][0]["id"],
    }


async def refused(api: ApiCloud, call: Any) -> dict[str, Any]:
    with pytest.raises(CloudStackApiException) as e:
        await api.call(call)
    return dict(e.value.error)


async def test_a_domain_admin_manages_its_subtree_and_nothing_else(api: ApiCloud) -> None:
    sales = await domain(api, "sales")
    eu = await domain(api, "eu", sales["id"])
    paris = await domain(api, "paris", eu["id"])
    ops = await domain(api, "ops")
    us = await domain(api, "us", sales["id"])  # eu's sibling
    assert (paris["path"], paris["level"], paris["parentdomainname"]) == ("ROOT/sales/eu/paris", 3, "eu")
    _euadmin, euadmin = await account(api, "euadmin", eu["id"], account_type=2)
    _paris1, paris1_cs = await account(api, "paris1", paris["id"])
    _ops1, ops1_cs = await account(api, "ops1", ops["id"])
    _us1, us1_cs = await account(api, "us1", us["id"])
    where = await ids(api, paris1_cs)
    mine = (await api.call(lambda: paris1_cs.deployVirtualMachine(**where, fetch_result=True)))[
        "virtualmachine"]
    theirs = (await api.call(lambda: ops1_cs.deployVirtualMachine(**where, fetch_result=True)))[
        "virtualmachine"]
    sibling_job = await api.call(lambda: us1_cs.deployVirtualMachine(**where))
    sibling = (await api.call(lambda: us1_cs._jobresult(sibling_job["jobid"])))["virtualmachine"]

    # What the domain admin sees: its subtree, with listall; its own account's alone without.
    seen = (await api.call(lambda: euadmin.listVirtualMachines(listall=True)))["virtualmachine"]
    assert [v["id"] for v in seen] == [mine["id"]]
    assert await api.call(lambda: euadmin.listVirtualMachines()) == {}
    assert {a["name"] for a in (await api.call(lambda: euadmin.listAccounts()))["account"]} == \
        {"euadmin", "paris1"}
    assert {d["path"] for d in (await api.call(lambda: euadmin.listDomains(listall=True)))["domain"]} == \
        {"ROOT/sales/eu", "ROOT/sales/eu/paris"}
    children = (await api.call(lambda: euadmin.listDomainChildren(isrecursive=True)))["domain"]
    assert [d["name"] for d in children] == ["paris"]
    volumes = (await api.call(lambda: euadmin.listVolumes(listall=True)))["volume"]
    assert {v["account"] for v in volumes} == {"paris1"}
    events = (await api.call(lambda: euadmin.listEvents(listall=True)))["event"]
    assert {e["account"] for e in events} <= {"euadmin", "paris1"} and events
    jobs = (await api.call(lambda: euadmin.listAsyncJobs(listall=True)))["asyncjobs"]
    assert {j["accountid"] for j in jobs} == {_paris1["id"]}
    assert (await refused(api, lambda: euadmin.queryAsyncJobResult(jobid=sibling_job["jobid"])))[
        "errorcode"] == 531
    assert (await refused(api, lambda: euadmin.rebootVirtualMachine(id=sibling["id"])))["errorcode"] == 531
    assert (await refused(api, lambda: euadmin.listVolumes(domainid=us["id"])))["errorcode"] == 531

    # What it may not see or touch: 531 with the text a missing one gets.
    missing = "9b1c6a52-0f4e-4c1a-9a11-2f0e3b0d1e11"
    texts = set()
    for ident in (theirs["id"], missing):
        error = await refused(api, lambda ident=ident: euadmin.stopVirtualMachine(id=ident))
        assert error["errorcode"] == 531
        texts.add(error["errortext"].replace(ident, "ID"))
    assert len(texts) == 1
    assert (await refused(api, lambda: euadmin.listVirtualMachines(domainid=ops["id"])))["errorcode"] == 531
    assert (await refused(api, lambda: euadmin.createDomain(name="x", parentdomainid=ops["id"])))[
        "errorcode"] == 531
    assert (await refused(api, lambda: euadmin.listHosts()))["errorcode"] == 401  # root admin's only
    assert (await refused(api, lambda: euadmin.createAccount(
        username="r00t", password=PASSWORD, email="r@x", firstname="r", lastname="r", accounttype=1)))[
        "errorcode"] == 531

    # What it manages below: VMs, accounts, users, limits of the domains under its own.
    stopped = await api.call(lambda: euadmin.stopVirtualMachine(id=mine["id"], fetch_result=True))
    assert stopped["virtualmachine"]["state"] == "Stopped"
    lyon = (await api.call(lambda: euadmin.createDomain(name="lyon", parentdomainid=eu["id"])))["domain"]
    assert lyon["path"] == "ROOT/sales/eu/lyon"
    _lyon1, _ = await account(api, "lyon1", lyon["id"], by=euadmin)
    user = (await api.call(lambda: euadmin.createUser(
        account="paris1", domainid=paris["id"], username="paris1-bis", password=PASSWORD, email="b@x",
        firstname="b", lastname="b")))["user"]
    disabled = await api.call(lambda: euadmin.disableUser(id=user["id"], fetch_result=True))  # (async)
    assert disabled["user"]["state"] == "disabled"
    paris2, _ = await account(api, "paris2", paris["id"], by=euadmin)
    await api.call(lambda: euadmin.moveUser(id=user["id"], accountid=paris2["id"]))
    moved = (await api.call(lambda: euadmin.enableUser(id=user["id"])))["user"]
    assert (moved["account"], moved["state"]) == ("paris2", "enabled")
    assert (await refused(api, lambda: euadmin.updateResourceLimit(domainid=eu["id"], resourcetype=0,
                                                                     max=100)))["errorcode"] == 531
    limit = (await api.call(lambda: euadmin.updateResourceLimit(domainid=paris["id"], resourcetype=0,
                                                                max=7)))["resourcelimit"]
    assert (limit["max"], limit["domain"]) == (7, "paris")
    roles = {r["name"] for r in (await api.call(lambda: euadmin.listRoles()))["role"]}
    assert roles == {"Root Admin", "Resource Admin", "Domain Admin", "User"}
    # A domain renamed: the paths below follow.
    await api.call(lambda: api.client().updateDomain(id=eu["id"], name="europe"))
    renamed = (await api.call(lambda: api.client().listDomains(id=paris["id"])))["domain"][0]
    assert renamed["path"] == "ROOT/sales/europe/paris"


async def test_an_account_deleted_with_running_vms_gives_everything_back(api: ApiCloud) -> None:
    admin = api.client()
    root = (await api.call(lambda: admin.listDomains()))["domain"][0]
    gone, gone_cs = await account(api, "leaving", root["id"])
    where = await ids(api, gone_cs)
    made = [(await api.call(lambda: gone_cs.deployVirtualMachine(**where, fetch_result=True)))[
        "virtualmachine"] for _ in range(2)]
    assert all(v["state"] == "Running" for v in made)
    zone = where["zoneid"]
    await api.call(lambda: gone_cs.createVolume(zoneid=zone, size=1, name="attached",
                                                virtualmachineid=made[0]["id"], fetch_result=True))
    await api.call(lambda: gone_cs.createVolume(zoneid=zone, size=1, name="loose", fetch_result=True))
    await api.call(lambda: admin.deleteAccount(id=gone["id"], fetch_result=True))
    assert await api.call(lambda: admin.listVolumes(listall=True, name="attached")) == {}
    assert await api.call(lambda: admin.listVolumes(listall=True, name="loose")) == {}
    assert await api.call(lambda: admin.listAccounts(name="leaving")) == {}
    with api.cloud.services.db.engine.connect() as conn:
        left = conn.execute(sa.select(vms.c.state, vms.c.removed).where(
            vms.c.uuid.in_([v["id"] for v in made]))).all()
        assert all(r.removed is not None or r.state == "Expunging" for r in left), left
        assert conn.scalar(sa.select(sa.func.count()).select_from(nics).join(vms, vms.c.id == nics.c.vm_id)
                           .where(vms.c.uuid.in_([v["id"] for v in made]),
                                  nics.c.ip_address.is_not(None))) == 0
        assert capacity.check_totals(conn) == []
    error = await refused(api, lambda: gone_cs.listVirtualMachines())  # its keys are dead
    assert error["errorcode"] == 401


async def test_passwords_changed_by_the_user_and_by_an_admin(api: ApiCloud) -> None:
    admin = api.client()
    root = (await api.call(lambda: admin.listDomains()))["domain"][0]
    made, user_cs = await account(api, "pat", root["id"])
    user_id = made["user"][0]["id"]

    def login(password: str) -> int:
        return requests.post(api.url, data={"command": "login", "username": "pat", "password": password,
                                            "domain": "/", "response": "json"}, timeout=30).status_code

    assert "current" in (await refused(api, lambda: user_cs.updateUser(id=user_id, password="n3w-passw0rd")))[
        "errortext"]
    assert (await refused(api, lambda: user_cs.updateUser(id=user_id, password="n3w-passw0rd",
                                                          currentpassword="wrong")))["errorcode"] == 431
    await api.call(lambda: user_cs.updateUser(id=user_id, password="n3w-passw0rd", currentpassword=PASSWORD))
    assert await api.call(lambda: login("n3w-passw0rd")) == 200
    assert await api.call(lambda: login(PASSWORD)) == 531
    await api.call(lambda: admin.updateUser(id=user_id, password="admin-set-passw0rd"))  # no current needed
    assert await api.call(lambda: login("admin-set-passw0rd")) == 200
    # The policy is a setting, with CloudStack's names.
    await api.call(lambda: admin.updateConfiguration(name="password.policy.minimum.length", value="20"))
    error = await refused(api, lambda: admin.createUser(account="pat", username="pat2", password="short-one",
                                                        email="p@x", firstname="p", lastname="p"))
    assert "at least 20 characters" in error["errortext"]
    no_keys = (await api.call(lambda: admin.createUser(account="pat", username="pat3", password="x" * 24,
                                                       email="p@x", firstname="p", lastname="p")))["user"]
    assert await api.call(lambda: admin.getUserKeys(id=no_keys["id"])) == {"userkeys": {}}  # as CloudStack


async def _limited_deploys(api: ApiCloud, client: CloudStack, where: dict[str, str], n: int) -> list[Any]:
    results: list[Any] = []
    lock = threading.Lock()

    def one() -> None:
        try:
            got = client.deployVirtualMachine(**where)
        except CloudStackApiException as e:
            got = e.error
        with lock:
            results.append(got)

    def all_of_them() -> None:
        threads = [threading.Thread(target=one) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    await api.call(all_of_them)
    return results


def _kept(api: ApiCloud, account_names: list[str]) -> int:
    from mgmt.db.schema import accounts

    with api.cloud.services.db.engine.connect() as conn:
        return int(conn.scalar(sa.select(sa.func.count()).select_from(vms).join(
            accounts, accounts.c.id == vms.c.account_id).where(
            accounts.c.name.in_(account_names), vms.c.removed.is_(None))) or 0)


async def test_64_concurrent_deploys_against_a_limit_of_10_leave_10(any_api: ApiCloud) -> None:
    api = any_api
    admin = api.client()
    root = (await api.call(lambda: admin.listDomains()))["domain"][0]
    await account(api, "capped", root["id"])
    capped_keys = (await api.call(lambda: admin.listUsers(username="capped")))["user"][0]
    keys = (await api.call(lambda: admin.getUserKeys(id=capped_keys["id"])))["userkeys"]
    client = CloudStack(endpoint=api.url, key=keys["apikey"], secret=keys["secretkey"], timeout=60)
    await api.call(lambda: admin.updateResourceLimit(account="capped", domainid=root["id"], resourcetype=0,
                                                     max=10))
    results = await _limited_deploys(api, client, await ids(api, client), 64)
    accepted = [r for r in results if "jobid" in r]
    refusals = [r for r in results if "errorcode" in r]
    assert len(accepted) == 10 and len(refusals) == 54, results[:3]
    assert all(r["errorcode"] == 535 and "user_vm" in r["errortext"] for r in refusals)
    assert _kept(api, ["capped"]) == 10
    counts = (await api.call(lambda: admin.listResourceCounts(account="capped", domainid=root["id"],
                                                              resourcetype=0)))["resourcecount"]
    assert counts[0]["resourcecount"] == 10


async def test_a_domain_limit_caps_its_accounts_together(api: ApiCloud) -> None:
    admin = api.client()
    team = await domain(api, "team")
    _a, a_cs = await account(api, "team-a", team["id"])
    _b, b_cs = await account(api, "team-b", team["id"])
    await api.call(lambda: admin.updateResourceLimit(domainid=team["id"], resourcetype=0, max=3))
    where = await ids(api, a_cs)
    first = await _limited_deploys(api, a_cs, where, 2)
    second = await _limited_deploys(api, b_cs, where, 2)
    assert sum(1 for r in [*first, *second] if "jobid" in r) == 3
    assert _kept(api, ["team-a", "team-b"]) == 3
    limits = {r["resourcetypename"]: r["max"] for r in
              (await api.call(lambda: admin.listResourceLimits(domainid=team["id"])))["resourcelimit"]}
    assert limits["user_vm"] == 3 and limits["cpu"] == 80  # its own, and the max.domain.* default


async def test_a_domain_deleted_with_cleanup_takes_its_accounts_and_subdomains(api: ApiCloud) -> None:
    admin = api.client()
    temp = await domain(api, "temp")
    inner = await domain(api, "inner", temp["id"])
    _t1, t1_cs = await account(api, "temp1", inner["id"])
    where = await ids(api, t1_cs)
    vm = (await api.call(lambda: t1_cs.deployVirtualMachine(**where, fetch_result=True)))["virtualmachine"]
    error = await refused(api, lambda: admin.deleteDomain(id=temp["id"], fetch_result=True))
    assert "cleanup=true" in error["errortext"]
    await api.call(lambda: admin.deleteDomain(id=temp["id"], cleanup=True, fetch_result=True))
    names = {d["name"] for d in (await api.call(lambda: admin.listDomains(listall=True)))["domain"]}
    assert not names & {"temp", "inner"}
    assert await api.call(lambda: admin.listAccounts(name="temp1", listall=True)) == {}
    with api.cloud.services.db.engine.connect() as conn:
        state = conn.execute(sa.select(vms.c.state, vms.c.removed).where(vms.c.uuid == vm["id"])).one()
        assert state.removed is not None or state.state == "Expunging"
        assert capacity.check_totals(conn) == []
    again = await domain(api, "temp")  # the name is free again
    assert again["path"] == "ROOT/temp"


async def test_limits_listed_for_many_owners_by_listall_isrecursive_and_id(api: ApiCloud) -> None:
    admin = api.client()
    top = await domain(api, "top")
    below = await domain(api, "below", top["id"])
    _dadmin, dadmin_cs = await account(api, "topadmin", top["id"], account_type=2)
    await account(api, "worker", below["id"])
    await account(api, "outsider", (await domain(api, "elsewhere"))["id"])
    await api.call(lambda: admin.updateResourceLimit(domainid=below["id"], resourcetype=0, max=7))
    await api.call(lambda: admin.updateResourceLimit(account="worker", domainid=below["id"], resourcetype=0,
                                                     max=3))

    # isrecursive: the domain named and every one below it
    listed = (await api.call(lambda: dadmin_cs.listResourceLimits(domainid=top["id"], isrecursive=True,
                                                                  resourcetype=0)))["resourcelimit"]
    assert {(i["domain"], i["max"]) for i in listed} == {("top", 40), ("below", 7)}
    assert all("account" not in i for i in listed)
    # listall: every account in the caller's reach (a domain admin: its subtree's)
    listed = (await api.call(lambda: dadmin_cs.listResourceLimits(listall=True, resourcetype=0)))[
        "resourcelimit"]
    assert {(i["account"], i["max"]) for i in listed} == {("topadmin", 20), ("worker", 3)}
    everyone = (await api.call(lambda: admin.listResourceLimits(listall=True, resourcetype=0)))[
        "resourcelimit"]
    assert {"outsider", "worker", "topadmin", "admin"} <= {i["account"] for i in everyone}
    # id: one limit an admin set, to those who reach its owner
    with api.cloud.services.db.engine.connect() as conn:
        limit_id = conn.scalar(sa.text("SELECT id FROM resource_limits WHERE owner_type = 'account'"))
    one = (await api.call(lambda: dadmin_cs.listResourceLimits(id=limit_id)))["resourcelimit"]
    assert [(i["account"], i["resourcetype"], i["max"]) for i in one] == [("worker", "0", 3)]
    _user, outsider_cs = await account(api, "nosy", (await domain(api, "nosy"))["id"])
    assert (await refused(api, lambda: outsider_cs.listResourceLimits(id=limit_id)))["errorcode"] == 431
