"""Projects through the real ``cs`` client: a project owns what its members make in it, its members (and
only they, and admins above it) see and use it, its admins manage it, its limits hold, suspending stops
its VMs and refuses new ones, and deleting it takes what it owns."""

from __future__ import annotations

import sqlalchemy as sa

from mgmt.db.schema import accounts, projects, vms
from mgmt.planner import capacity
from tests.api.conftest import ApiCloud
from tests.api.test_tenancy import account, domain, ids, refused


async def test_a_project_owns_what_its_members_make_and_only_they_reach_it(any_api: ApiCloud) -> None:
    api = any_api
    admin = api.client()
    dept = await domain(api, "dept")
    alice, alice_cs = await account(api, "alice", dept["id"])
    bob, bob_cs = await account(api, "bob", dept["id"])
    _carol, carol_cs = await account(api, "carol", dept["id"])
    where = await ids(api, alice_cs)

    made = (await api.call(lambda: alice_cs.createProject(name="web", displaytext="the web shop",
                                                          fetch_result=True)))["project"]
    assert (made["name"], made["state"], made["domain"]) == ("web", "Active", "dept")
    assert made["account"] == "alice"
    assert made["owner"] == [{"account": "alice"}] and made["vmtotal"] == 0 and made["vmlimit"] == "20"
    pid = made["id"]

    # Alice adds Bob as a regular member; Carol is not one and sees nothing of it.
    await api.call(lambda: alice_cs.addAccountToProject(projectid=pid, account="bob", fetch_result=True))
    members = (await api.call(lambda: bob_cs.listProjectAccounts(projectid=pid)))["projectaccount"]
    assert {(m["account"], m["role"]) for m in members} == {("alice", "Admin"), ("bob", "Regular")}
    assert (await api.call(lambda: bob_cs.listProjects()))["project"][0]["id"] == pid
    assert await api.call(lambda: carol_cs.listProjects()) == {}
    assert (await refused(api, lambda: carol_cs.listProjectAccounts(projectid=pid)))["errorcode"] == 531

    # Bob deploys in the project: the VM is the project's, listed with projectid, not among his own.
    vm = (await api.call(lambda: bob_cs.deployVirtualMachine(**where, projectid=pid, fetch_result=True)))[
        "virtualmachine"]
    assert vm["account"].startswith("PrjAcct-web-") and (vm["projectid"], vm["project"]) == (pid, "web")
    assert await api.call(lambda: bob_cs.listVirtualMachines()) == {}
    listed = (await api.call(lambda: alice_cs.listVirtualMachines(projectid=pid)))["virtualmachine"]
    assert [v["id"] for v in listed] == [vm["id"]]
    everywhere = (await api.call(lambda: bob_cs.listVirtualMachines(projectid="-1")))["virtualmachine"]
    assert [v["id"] for v in everywhere] == [vm["id"]]
    admin_all = (await api.call(lambda: admin.listVirtualMachines(listall=True))).get("virtualmachine", [])
    assert vm["id"] not in [v["id"] for v in admin_all]  # (project resources: with projectid only)

    # Members act on it; Carol cannot, nor can she deploy in the project or list its VMs.
    stopped = await api.call(lambda: alice_cs.stopVirtualMachine(id=vm["id"], fetch_result=True))
    assert stopped["virtualmachine"]["state"] == "Stopped"
    assert (await refused(api, lambda: carol_cs.startVirtualMachine(id=vm["id"])))["errorcode"] == 531
    assert (await refused(api, lambda: carol_cs.deployVirtualMachine(**where, projectid=pid)))[
        "errorcode"] == 531
    assert (await refused(api, lambda: carol_cs.listVirtualMachines(projectid=pid)))["errorcode"] == 531
    started = await api.call(lambda: bob_cs.startVirtualMachine(id=vm["id"], fetch_result=True))
    assert started["virtualmachine"]["state"] == "Running"

    # Other kinds made in the project are its too.
    await api.call(lambda: bob_cs.createVolume(zoneid=where["zoneid"], size=1, name="shared", projectid=pid,
                                               fetch_result=True))
    await api.call(lambda: bob_cs.createSecurityGroup(name="web", projectid=pid))
    await api.call(lambda: bob_cs.createSSHKeyPair(name="deploy", projectid=pid))
    assert (await api.call(lambda: alice_cs.listVolumes(projectid=pid, type="DATADISK")))["count"] == 1
    assert (await api.call(lambda: alice_cs.listSSHKeyPairs(projectid=pid)))["sshkeypair"][0]["name"] == \
        "deploy"
    assert "sshkeypair" not in await api.call(lambda: bob_cs.listSSHKeyPairs())
    counts = {c["resourcetypename"]: c["resourcecount"] for c in (await api.call(
        lambda: alice_cs.listResourceCounts(projectid=pid)))["resourcecount"]}
    assert (counts["user_vm"], counts["volume"]) == (1, 2)  # (the VM's root disk and the data disk)

    # Only its admins manage it: Bob (Regular) cannot add members or suspend it.
    assert (await refused(api, lambda: bob_cs.addAccountToProject(projectid=pid, account="carol")))[
        "errorcode"] == 531
    assert (await refused(api, lambda: bob_cs.suspendProject(id=pid)))["errorcode"] == 531
    # The last Admin cannot go.
    assert (await refused(api, lambda: alice_cs.deleteAccountFromProject(projectid=pid, account="alice")))[
        "errorcode"] == 431

    # Limits: the project's own, set by an admin, hold for its members' deploys.
    await api.call(lambda: admin.updateResourceLimit(projectid=pid, resourcetype=0, max=1))
    limited = (await api.call(lambda: admin.listResourceLimits(projectid=pid, resourcetype=0)))[
        "resourcelimit"]
    assert (limited[0]["max"], limited[0]["project"]) == (1, "web")
    assert (await refused(api, lambda: bob_cs.deployVirtualMachine(**where, projectid=pid)))[
        "errorcode"] == 535

    # Alice hands the project to Bob: he becomes its Admin, she a regular member.
    updated = (await api.call(lambda: alice_cs.updateProject(id=pid, account="bob", fetch_result=True)))[
        "project"]
    assert updated["owner"] == [{"account": "bob"}]
    roles = {m["account"]: m["role"] for m in (await api.call(
        lambda: bob_cs.listProjectAccounts(projectid=pid)))["projectaccount"]}
    assert roles == {"alice": "Regular", "bob": "Admin"}

    # Suspended: its running VM stops, and nothing new can be made in it.
    suspended = (await api.call(lambda: bob_cs.suspendProject(id=pid, fetch_result=True)))["project"]
    assert suspended["state"] == "Suspended"
    assert (await api.call(lambda: bob_cs.listVirtualMachines(projectid=pid)))["virtualmachine"][0][
        "state"] == "Stopped"
    assert (await refused(api, lambda: bob_cs.createVolume(zoneid=where["zoneid"], size=1, projectid=pid)))[
        "errorcode"] == 431
    await api.call(lambda: bob_cs.activateProject(id=pid, fetch_result=True))

    # Deleting: without cleanup refused while it owns things; with cleanup everything goes.
    assert (await refused(api, lambda: bob_cs.deleteProject(id=pid)))["errorcode"] == 431
    await api.call(lambda: bob_cs.deleteProject(id=pid, cleanup=True, fetch_result=True))
    assert await api.call(lambda: admin.listProjects(listall=True)) == {}
    with api.cloud.services.db.engine.connect() as conn:
        gone = conn.execute(sa.select(vms.c.state, vms.c.removed).where(vms.c.uuid == vm["id"])).one()
        assert gone.removed is not None or gone.state == "Expunging", gone
        assert conn.scalar(sa.select(projects.c.removed).where(projects.c.uuid == pid)) is not None
        assert conn.scalar(sa.select(sa.func.count()).select_from(accounts).where(
            accounts.c.type == 5, accounts.c.removed.is_(None))) == 0
        assert capacity.check_totals(conn) == []
    # Its members are untouched, and project accounts never show among accounts.
    names = {a["name"] for a in (await api.call(lambda: admin.listAccounts(listall=True)))["account"]}
    assert {"alice", "bob"} <= names and not any(n.startswith("PrjAcct-") for n in names)
    assert bob["name"] == "bob" and alice["name"] == "alice"


async def test_project_admins_above_and_hostile_input(api: ApiCloud) -> None:
    admin = api.client()
    dept = await domain(api, "dept")
    other = await domain(api, "other")
    _dadmin, dadmin_cs = await account(api, "dadmin", dept["id"], account_type=2)
    await account(api, "dave", dept["id"])
    await account(api, "olga", other["id"])

    # A domain admin creates a project for an account of its domain; it sees and manages it.
    made = (await api.call(lambda: dadmin_cs.createProject(name="ops", account="dave", domainid=dept["id"],
                                                           fetch_result=True)))["project"]
    assert made["owner"] == [{"account": "dave"}]
    assert (await api.call(lambda: dadmin_cs.listProjects(listall=True)))["project"][0]["name"] == "ops"
    # A user of another domain is, to the project's admin, exactly like a missing one.
    other_user = await refused(api, lambda: dadmin_cs.addUserToProject(projectid=made["id"], username="olga"))
    missing = await refused(api, lambda: dadmin_cs.addUserToProject(projectid=made["id"], username="nobody"))
    assert other_user["errorcode"] == missing["errorcode"] == 431
    assert other_user["errortext"].replace("olga", "X") == missing["errortext"].replace("nobody", "X")
    # Members come from the project's domain only; a name is unique in its domain.
    assert (await refused(api, lambda: admin.addAccountToProject(projectid=made["id"], account="olga")))[
        "errorcode"] == 431
    twice = await refused(api, lambda: admin.createProject(name="ops", account="dave", domainid=dept["id"]))
    assert twice["errorcode"] == 431
    # Hostile values: a bad projectid on a list, project accounts as members or targets, unknown roles.
    assert (await refused(api, lambda: admin.listVirtualMachines(projectid="not-a-uuid")))["errorcode"] == 431
    assert (await refused(api, lambda: admin.addAccountToProject(projectid=made["id"], account="dave",
                                                                 roletype="Owner")))["errorcode"] == 431
    project_account = made["projectaccountname"]
    as_member = await refused(api, lambda: admin.addAccountToProject(projectid=made["id"],
                                                                     account=project_account))
    assert as_member["errorcode"] == 431
    where = await ids(api, admin)
    conflict = await refused(api, lambda: admin.deployVirtualMachine(
        **where, account="dave", domainid=dept["id"], projectid=made["id"]))
    assert conflict["errorcode"] == 431 and "not both" in conflict["errortext"]
    # A project's account is not an account anyone can disable or delete directly.
    listed = (await api.call(lambda: admin.listAccounts(listall=True, name=project_account)))
    assert listed == {}
    # Deleting its domain (cleanup) takes the project too.
    await api.call(lambda: admin.deleteDomain(id=dept["id"], cleanup=True, fetch_result=True))
    assert await api.call(lambda: admin.listProjects(listall=True)) == {}
