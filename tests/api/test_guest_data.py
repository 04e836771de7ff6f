"""SSH key pairs and user data through the real ``cs`` client, and what reaches the guest: the config drive
a simulated host is asked to attach (and the line its guest prints, as the tiny real guest does)."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cs import CloudStackApiException

from agent.simulator import SimulatorResource

from .conftest import ApiCloud
from .test_access import make_user
from .test_lifecycle import api_guid, first


def openssh_key() -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def md5_fingerprint(line: str) -> str:
    digest = hashlib.md5(base64.b64decode(line.split()[1])).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, 32, 2))


async def failure(api: ApiCloud, call: Any) -> dict[str, Any]:
    with pytest.raises(CloudStackApiException) as e:
        await api.call(call)
    return dict(e.value.error)


async def deploy(api: ApiCloud, cs: Any, **args: Any) -> dict[str, Any]:
    zone = first(await api.call(lambda: cs.listZones()), "zone")
    offering = first(await api.call(lambda: cs.listServiceOfferings(name="small")), "serviceoffering")
    template = first(await api.call(lambda: cs.listTemplates(templatefilter="executable")), "template")
    result = await api.call(lambda: cs.deployVirtualMachine(
        zoneid=zone["id"], serviceofferingid=offering["id"], templateid=template["id"], fetch_result=True,
        **args))
    return dict(result["virtualmachine"])


def drive_of(api: ApiCloud, vm: dict[str, Any]) -> dict[str, bytes]:
    """The config drive the VM's simulated host was asked to attach: path -> bytes."""
    sim = SimulatorResource.registry[api_guid(api, vm["hostid"])].host.vms[vm["instancename"]]
    assert sim.to.config_drive is not None and sim.to.config_drive.label == "config-2"
    return {k: base64.b64decode(v) for k, v in sim.to.config_drive.files.items()}


async def test_ssh_key_pairs(api: ApiCloud) -> None:
    cs = api.client("post")
    key = openssh_key() + " alice@laptop"
    registered = (await api.call(
        lambda: cs.registerSSHKeyPair(name="laptop", publickey=key + "\n")))["keypair"]
    assert registered["name"] == "laptop" and registered["fingerprint"] == md5_fingerprint(key)
    assert registered["account"] == "admin" and "privatekey" not in registered

    made = (await api.call(lambda: cs.createSSHKeyPair(name="made")))["keypair"]
    private = serialization.load_pem_private_key(made["privatekey"].encode(), password=None)
    public = private.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                               serialization.PublicFormat.OpenSSH)
    assert made["fingerprint"] == md5_fingerprint(public.decode())

    listed = await api.call(lambda: cs.listSSHKeyPairs())
    assert listed["count"] == 2 and {k["name"] for k in listed["sshkeypair"]} == {"laptop", "made"}
    assert all("privatekey" not in k for k in listed["sshkeypair"])  # shown once, never kept
    by_print = await api.call(lambda: cs.listSSHKeyPairs(fingerprint=md5_fingerprint(key)))
    assert [k["name"] for k in by_print["sshkeypair"]] == ["laptop"]
    assert (await api.call(lambda: cs.listSSHKeyPairs(keyword="lap")))["count"] == 1

    # refused: a name or a key twice, and anything that is not an OpenSSH public key
    assert "exists already" in (await failure(api, lambda: cs.registerSSHKeyPair(
        name="laptop", publickey=openssh_key())))["errortext"]
    assert "registered already" in (await failure(api, lambda: cs.registerSSHKeyPair(
        name="again", publickey=key)))["errortext"]
    for bad in ("ssh-rsa not-base64", "hello", made["privatekey"], "ssh-ed25519 AAAA"):
        error = await failure(api, lambda bad=bad: cs.registerSSHKeyPair(name="bad", publickey=bad))
        assert error["errorcode"] == 431 and "public key" in error["errortext"]

    # another account sees none of them and may use the same names
    _account, keys = await make_user(api, "bob")
    bob = api.client(key=keys["apikey"], secret=keys["secretkey"])
    assert await api.call(lambda: bob.listSSHKeyPairs()) == {}
    assert await api.call(lambda: bob.listSSHKeyPairs(listall=True)) == {}
    await api.call(lambda: bob.registerSSHKeyPair(name="laptop", publickey=key))
    assert (await api.call(lambda: cs.listSSHKeyPairs(listall=True)))["count"] == 3  # the admin sees all
    error = await failure(api, lambda: bob.deleteSSHKeyPair(name="made"))
    assert error["errorcode"] == 431 and "unable to find" in error["errortext"]

    assert (await api.call(lambda: cs.deleteSSHKeyPair(name="made")))["success"] is True
    assert (await api.call(lambda: cs.listSSHKeyPairs()))["count"] == 1


async def test_keys_and_user_data_reach_the_guest(any_api: ApiCloud) -> None:
    api = any_api
    cs = api.client("post")
    first_key, second_key = openssh_key(), openssh_key()
    await api.call(lambda: cs.registerSSHKeyPair(name="one", publickey=first_key))
    await api.call(lambda: cs.registerSSHKeyPair(name="two", publickey=second_key))
    script = b"#!/bin/sh\necho hello from user data\n"
    vm = await deploy(api, cs, name="web-1", keypair="one", userdata=base64.b64encode(script).decode())
    assert vm["keypairs"] == "one" and "userdataid" not in vm

    files = drive_of(api, vm)
    meta = orjson.loads(files["openstack/latest/meta_data.json"])
    assert meta["uuid"] == vm["id"] and meta["hostname"] == "web-1"
    assert meta["availability_zone"] == vm["zonename"] and meta["public_keys"] == {"one": first_key}
    network = orjson.loads(files["openstack/latest/network_data.json"])
    nic = vm["nic"][0]
    assert network["links"][0]["ethernet_mac_address"] == nic["macaddress"]
    assert network["networks"][0]["ip_address"] == nic["ipaddress"]
    assert network["networks"][0]["netmask"] == nic["netmask"]
    assert network["networks"][0]["routes"] == [{"network": "0.0.0.0", "netmask": "0.0.0.0",
                                                 "gateway": nic["gateway"]}]
    assert files["openstack/latest/user_data"] == script
    assert files["cloudstack/userdata/user_data.txt"] == script
    assert files["cloudstack/metadata/local-hostname.txt"] == b"web-1"
    log = (await api.call(lambda: cs.getVirtualMachineConsoleLog(id=vm["id"])))["virtualmachineconsolelog"]
    assert log["log"].splitlines()[-1] == (
        f"cumulo-config-drive: hostname=web-1 address={nic['ipaddress']} "
        f"userdata-sha256={hashlib.sha256(script).hexdigest()}"
    )
    got = (await api.call(lambda: cs.getVirtualMachineUserData(virtualmachineid=vm["id"])))
    assert got["virtualmachineuserdata"] == {"virtualmachineid": vm["id"],
                                             "userdata": base64.b64encode(script).decode()}

    # deleting a key pair changes no VM; new keys need a stopped VM and reach the guest at its next start
    await api.call(lambda: cs.deleteSSHKeyPair(name="one"))
    error = await failure(api, lambda: cs.resetSSHKeyForVirtualMachine(id=vm["id"], keypair="two",
                                                                       fetch_result=True))
    assert "Stopped" in error["errortext"]
    await api.call(lambda: cs.stopVirtualMachine(id=vm["id"], fetch_result=True))
    reset = (await api.call(lambda: cs.resetSSHKeyForVirtualMachine(id=vm["id"], keypairs="two",
                                                                   fetch_result=True)))["virtualmachine"]
    assert reset["keypairs"] == "two"
    error = await failure(api, lambda: cs.resetSSHKeyForVirtualMachine(id=vm["id"], keypair="one",
                                                                       fetch_result=True))
    assert "unable to find SSH key pair 'one'" in error["errortext"]
    updated = b"#!/bin/sh\necho second\n"
    await api.call(lambda: cs.updateVirtualMachine(id=vm["id"], userdata=base64.b64encode(updated).decode()))
    started = (await api.call(
        lambda: cs.startVirtualMachine(id=vm["id"], fetch_result=True)))["virtualmachine"]
    files = drive_of(api, started)
    assert orjson.loads(files["openstack/latest/meta_data.json"])["public_keys"] == {"two": second_key}
    assert files["openstack/latest/user_data"] == updated

    # a deploy naming a key pair the account has not, or bad user data, is refused before anything is made
    error = await failure(api, lambda: cs.deployVirtualMachine(
        zoneid=vm["zoneid"], serviceofferingid=vm["serviceofferingid"], templateid=vm["templateid"],
        keypair="nope"))
    assert error["errorcode"] == 431 and "nope" in error["errortext"]
    for bad in ("not base64!", base64.b64encode(b"x" * 32769).decode()):
        error = await failure(api, lambda bad=bad: cs.deployVirtualMachine(
            zoneid=vm["zoneid"], serviceofferingid=vm["serviceofferingid"], templateid=vm["templateid"],
            userdata=bad))
        assert error["errorcode"] == 431 and "userdata" in error["errortext"]


async def test_registered_user_data(api: ApiCloud) -> None:
    cs = api.client("post")
    text = base64.b64encode(b"#cloud-config\nhostname: x\n").decode()
    await api.call(lambda: cs.registerUserData(name="base", userdata=text, params="a, b"))
    listed = first(await api.call(lambda: cs.listUserData(name="base")), "userdata")
    assert listed["userdata"] == text and listed["params"] == "a,b" and listed["account"] == "admin"
    error = await failure(api, lambda: cs.registerUserData(name="base", userdata=text))
    assert "exists already" in error["errortext"]
    error = await failure(api, lambda: cs.registerUserData(name="x", userdata="%%%"))
    assert "Base64" in error["errortext"]

    vm = await deploy(api, cs, userdataid=listed["id"])
    assert (vm["userdataid"], vm["userdataname"]) == (listed["id"], "base")
    assert drive_of(api, vm)["openstack/latest/user_data"] == base64.b64decode(text)
    error = await failure(api, lambda: cs.deployVirtualMachine(
        zoneid=vm["zoneid"], serviceofferingid=vm["serviceofferingid"], templateid=vm["templateid"],
        userdataid=listed["id"], userdata=text))
    assert "not both" in error["errortext"]

    error = await failure(api, lambda: cs.deleteUserData(id=listed["id"]))
    assert error["errorcode"] == 536 and "in use" in error["errortext"]
    _account, keys = await make_user(api, "carol")
    carol = api.client(key=keys["apikey"], secret=keys["secretkey"])
    assert await api.call(lambda: carol.listUserData()) == {}
    error = await failure(api, lambda: carol.deleteUserData(id=listed["id"]))
    assert error["errorcode"] == 531
    await api.call(lambda: cs.destroyVirtualMachine(id=vm["id"], expunge=True, fetch_result=True))
    assert (await api.call(lambda: cs.deleteUserData(id=listed["id"])))["success"] is True
    assert await api.call(lambda: cs.listUserData()) == {}
