"""Security groups through the real ``cs`` client on simulated hosts: groups and rules, a VM's groups on a
network with security groups, and the rules each VM's host is given (at start, and again when a rule or
a group's members change)."""

from __future__ import annotations

from typing import Any

from agent.simulator import SimulatorResource
from protocol.messages import SecurityRuleTO, SecurityTO

from .conftest import ApiCloud
from .test_access import make_user
from .test_guest_data import failure
from .test_lifecycle import api_guid, first


def enforced(api: ApiCloud, vm: dict[str, Any]) -> SecurityTO | None:
    """What the VM's host was told to let through for its NIC."""
    sim = SimulatorResource.registry[api_guid(api, vm["hostid"])].host.vms[vm["instancename"]]
    return sim.to.nics[0].security


async def test_security_groups_and_what_hosts_enforce(any_api: ApiCloud) -> None:
    api = any_api
    admin = api.client()
    zone = first(await api.call(lambda: admin.listZones()), "zone")
    offering = first(await api.call(lambda: admin.listServiceOfferings(name="small")), "serviceoffering")
    template = first(await api.call(lambda: admin.listTemplates(templatefilter="executable")), "template")
    with_sg = first(await api.call(lambda: admin.listNetworkOfferings(
        name="DefaultSharedNetworkOfferingWithSGService")), "networkoffering")
    network = (await api.call(lambda: admin.createNetwork(
        zoneid=zone["id"], name="sg-net", networkofferingid=with_sg["id"], gateway="10.50.0.1",
        netmask="255.255.255.0", startip="10.50.0.10", endip="10.50.0.200")))["network"]
    plain = first(await api.call(lambda: admin.listNetworks(name="guest1")), "network")  # the zone file's

    _account, keys = await make_user(api, "bob")
    bob = api.client(key=keys["apikey"], secret=keys["secretkey"])
    listed = await api.call(lambda: bob.listSecurityGroups())
    assert [g["name"] for g in listed["securitygroup"]] == ["default"]  # made with the first listing
    web = (await api.call(lambda: bob.createSecurityGroup(name="web", description="web servers")))[
        "securitygroup"]
    assert (web["ingressrule"], web["egressrule"], web["virtualmachinecount"]) == ([], [], 0)
    for name in ("web", "default"):
        error = await failure(api, lambda name=name: bob.createSecurityGroup(name=name))
        assert error["errorcode"] == 431

    ssh = (await api.call(lambda: bob.authorizeSecurityGroupIngress(
        securitygroupid=web["id"], protocol="tcp", startport=22, endport=22, cidrlist="0.0.0.0/0",
        fetch_result=True)))["securitygroup"]
    (rule,) = ssh["ingressrule"]
    assert (rule["protocol"], rule["startport"], rule["endport"]) == ("tcp", 22, 22)
    assert rule["cidr"] == "0.0.0.0/0"
    await api.call(lambda: bob.authorizeSecurityGroupIngress(
        securitygroupname="web", protocol="icmp", icmptype=-1, icmpcode=-1,
        usersecuritygrouplist=[{"account": "bob", "group": "web"}], fetch_result=True))
    for bad, text in (({"protocol": "gre", "cidrlist": "0.0.0.0/0"}, "protocol"),
                      ({"protocol": "tcp", "cidrlist": "0.0.0.0/0"}, "startport"),
                      ({"protocol": "udp", "startport": 9, "endport": 70000, "cidrlist": "0.0.0.0/0"},
                       "ports"),
                      ({"protocol": "tcp", "startport": 80, "cidrlist": "10.0.0.300/8"}, "CIDR"),
                      ({"protocol": "tcp", "startport": 80}, "cidrlist")):
        error = await failure(
            api, lambda bad=bad: bob.authorizeSecurityGroupIngress(securitygroupid=web["id"], **bad))
        assert error["errorcode"] == 431 and text in error["errortext"], error

    async def placed(vm_id: str) -> dict[str, Any]:
        found = await api.call(lambda: admin.listVirtualMachines(id=vm_id, listall=True))
        return first(found, "virtualmachine")

    def deploy(**args: Any) -> Any:
        return lambda: bob.deployVirtualMachine(zoneid=zone["id"], serviceofferingid=offering["id"],
                                                templateid=template["id"], networkids=network["id"],
                                                fetch_result=True, **args)

    # no group named: the account's default one, which lets nothing in and everything out
    lone = await placed((await api.call(deploy()))["virtualmachine"]["id"])
    assert [g["name"] for g in lone["securitygroup"]] == ["default"]
    assert enforced(api, lone) == SecurityTO()

    first_web = await placed((await api.call(deploy(securitygroupnames="web")))["virtualmachine"]["id"])
    address = first_web["nic"][0]["ipaddress"]
    assert [g["name"] for g in first_web["securitygroup"]] == ["web"]
    assert enforced(api, first_web) == SecurityTO(ingress=(
        SecurityRuleTO(protocol="tcp", start_port=22, end_port=22, cidrs=("0.0.0.0/0",)),
        SecurityRuleTO(protocol="icmp", cidrs=(f"{address}/32",)),
    ))
    # a second member: the first one's host learns its address too (the icmp rule names the group)
    second_web = await placed((await api.call(deploy(securitygroupids=web["id"])))["virtualmachine"]["id"])
    both = tuple(sorted((f"{address}/32", f"{second_web['nic'][0]['ipaddress']}/32")))
    for vm in (first_web, second_web):
        security = enforced(api, vm)
        assert security is not None and security.ingress[1].cidrs == both

    # a rule revoked, an egress rule added: the running members' hosts get them before the job ends
    await api.call(lambda: bob.revokeSecurityGroupIngress(id=rule["ruleid"], fetch_result=True))
    await api.call(lambda: bob.authorizeSecurityGroupEgress(
        securitygroupid=web["id"], protocol="udp", startport=53, endport=53, cidrlist="10.50.0.1/32",
        fetch_result=True))
    for vm in (first_web, second_web):
        assert enforced(api, vm) == SecurityTO(
            ingress=(SecurityRuleTO(protocol="icmp", cidrs=both),),
            egress=(SecurityRuleTO(protocol="udp", start_port=53, end_port=53, cidrs=("10.50.0.1/32",)),),
            egress_filtered=True,
        )
    assert enforced(api, lone) == SecurityTO()  # not a member: untouched

    # a member expunged: its address leaves the rules of the others (it may go to another VM next)
    third = await placed((await api.call(deploy(securitygroupnames="web")))["virtualmachine"]["id"])
    third_cidr = f"{third['nic'][0]['ipaddress']}/32"
    security = enforced(api, first_web)
    assert security is not None and third_cidr in security.ingress[0].cidrs
    await api.call(lambda: admin.destroyVirtualMachine(id=third["id"], expunge=True, fetch_result=True))
    security = enforced(api, first_web)
    assert security is not None and security.ingress[0].cidrs == both

    listed_web = first(await api.call(lambda: bob.listSecurityGroups(securitygroupname="web")),
                       "securitygroup")
    assert listed_web["virtualmachinecount"] == 2 and len(listed_web["ingressrule"]) == 1
    error = await failure(api, lambda: bob.deleteSecurityGroup(id=web["id"]))
    assert error["errorcode"] == 536
    error = await failure(api, lambda: bob.deleteSecurityGroup(name="default"))
    assert error["errorcode"] == 431

    # groups are for networks that have them; a VM on one without is not filtered
    error = await failure(api, lambda: bob.deployVirtualMachine(
        zoneid=zone["id"], serviceofferingid=offering["id"], templateid=template["id"],
        networkids=plain["id"], securitygroupnames="web"))
    assert error["errorcode"] == 431 and "security groups" in error["errortext"]
    unfiltered = await placed((await api.call(lambda: bob.deployVirtualMachine(
        zoneid=zone["id"], serviceofferingid=offering["id"], templateid=template["id"],
        networkids=plain["id"], fetch_result=True)))["virtualmachine"]["id"])
    assert unfiltered["securitygroup"] == [] and enforced(api, unfiltered) is None
