"""API fidelity: what ``listApis`` says is what the commands answer; CloudStack parameters that do not
apply here are refused, never ignored; and CloudStack's own command list, compared by
``../shared/api/api-diff.py`` with the running server, differs only where the allow-list says why."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from cs import CloudStackApiException

from mgmt.api.fields import OBJECTS, declared
from mgmt.api.registry import COMMANDS

from .conftest import ApiCloud

SHARED_API = Path(__file__).resolve().parents[3] / "shared" / "api"
ALLOWED = Path(__file__).with_name("api-diff-allowed.json")


async def populate(api: ApiCloud) -> dict[str, Any]:
    """A VM, a data volume and one of each account-owned thing."""
    cs = api.client()
    zone = (await api.call(lambda: cs.listZones()))["zone"][0]
    offering = (await api.call(lambda: cs.listServiceOfferings()))["serviceoffering"][0]
    template = (await api.call(lambda: cs.listTemplates(templatefilter="all")))["template"][0]
    disk = next(o for o in (await api.call(lambda: cs.listDiskOfferings()))["diskoffering"]
                if not o["iscustomized"])
    await api.call(lambda: cs.createSSHKeyPair(name="k1"))
    vm = (await api.call(lambda: cs.deployVirtualMachine(
        zoneid=zone["id"], serviceofferingid=offering["id"], templateid=template["id"], name="f1",
        keypairs="k1", group="web", fetch_result=True)))["virtualmachine"]
    volume = (await api.call(lambda: cs.createVolume(name="d1", zoneid=zone["id"], diskofferingid=disk["id"],
                                                     fetch_result=True)))["volume"]
    await api.call(lambda: cs.attachVolume(id=volume["id"], virtualmachineid=vm["id"], fetch_result=True))
    await api.call(lambda: cs.createSecurityGroup(name="g1"))
    await api.call(lambda: cs.createAffinityGroup(name="a1", type="host anti-affinity"))
    await api.call(lambda: cs.registerUserData(name="u1", userdata="aGVsbG8="))
    return {"zone": zone, "vm": vm, "volume": volume}


LISTS = {
    "listVirtualMachines": "virtualmachine", "listVolumes": "volume", "listZones": "zone", "listPods": "pod",
    "listClusters": "cluster", "listHosts": "host", "listStoragePools": "storagepool",
    "listTemplates": "template", "listServiceOfferings": "serviceoffering",
    "listDiskOfferings": "diskoffering", "listNetworks": "network", "listNetworkOfferings": "networkoffering",
    "listAccounts": "account", "listUsers": "user", "listDomains": "domain", "listEvents": "event",
    "listConfigurations": "configuration",
    "listAsyncJobs": "asyncjobs", "listSSHKeyPairs": "sshkeypair", "listSecurityGroups": "securitygroup",
    "listAffinityGroups": "affinitygroup", "listAffinityGroupTypes": "affinityGroupType",
    "listUserData": "userdata", "listCapacity": "capacity", "listOsTypes": "ostype",
    "listResourceLimits": "resourcelimit", "listResourceCounts": "resourcecount", "listRoles": "role",
    "listManagementServers": "managementserver", "listCaCertificate": "cacertificates",
    "listCapabilities": "capability", "listApis": "api",
}


async def test_every_field_a_command_answers_is_one_listapis_declares(api: ApiCloud) -> None:
    await populate(api)
    cs = api.client()
    undeclared: dict[str, set[str]] = {}
    for command, key in LISTS.items():
        extra: dict[str, str] = {"templatefilter": "all"} if command == "listTemplates" else {}
        if command in ("listVirtualMachines", "listVolumes", "listEvents", "listAsyncJobs"):
            extra["listall"] = "true"
        answer = await api.call(lambda c=command, e=extra: getattr(cs, c)(**e))
        items = answer.get(key)
        assert items, f"{command} answered nothing to check: {answer}"
        for item in items if isinstance(items, list) else [items]:
            missing = set(item) - declared(key)
            if missing:
                undeclared.setdefault(key, set()).update(missing)
    assert not undeclared


async def test_listapis_lists_the_fields_of_every_commands_answer(api: ApiCloud) -> None:
    cs = api.client()
    apis = (await api.call(lambda: cs.listApis()))["api"]
    assert {a["name"] for a in apis} == {c.name for c in COMMANDS.values()}
    for a in apis:
        fields = a["response"]
        assert fields, a["name"]
        assert all({"name", "type", "description"} <= set(f) and f["description"] for f in fields), a["name"]
        if a["isasync"]:
            assert {"jobid", "jobstatus"} <= {f["name"] for f in fields}
    vm = next(a for a in apis if a["name"] == "deployVirtualMachine")
    assert {"id": "string", "nic": "list", "cpunumber": "integer", "created": "date"}.items() <= {
        f["name"]: f["type"] for f in vm["response"]}.items()
    assert set(OBJECTS) >= {c.response for c in COMMANDS.values() if c.response}


async def test_a_parameter_that_does_not_apply_is_refused_naming_it(api: ApiCloud) -> None:
    cs = api.client()
    refused = [(c, p) for c in COMMANDS.values() for p in c.params if p.refused]
    assert refused
    with pytest.raises(CloudStackApiException) as e:
        await api.call(lambda: cs.createDiskOffering(name="p", disksize=1, storagepolicy=str(uuid.uuid4())))
    assert e.value.error["errorcode"] == 431 and "storagepolicy" in e.value.error["errortext"]
    assert "VMware" in e.value.error["errortext"]
    assert await api.call(lambda: cs.listDiskOfferings(name="p")) == {}  # nothing was made
    with pytest.raises(CloudStackApiException) as e:
        await api.call(lambda: cs.listServiceOfferings(encryptroot="true"))
    assert e.value.error["errorcode"] == 431 and "encryptroot" in e.value.error["errortext"]
    # an empty value, or one that changes nothing, is taken
    assert await api.call(lambda: cs.listServiceOfferings(encryptroot="")) != {}
    assert await api.call(lambda: cs.listServiceOfferings(encryptroot="false")) != {}
    made = await api.call(lambda: cs.createServiceOffering(name="s", cpunumber=1, cpuspeed=100, memory=128,
                                                           dynamicscalingenabled="false"))
    assert made["serviceoffering"]["name"] == "s"
    apis = {a["name"]: a for a in (await api.call(lambda: cs.listApis()))["api"]}
    for c, p in refused:
        assert p.name not in {q["name"] for q in apis[c.name]["params"]}


@pytest.mark.skipif(not (SHARED_API / "api-diff.py").exists(), reason="../shared/api is not beside the repo")
async def test_cloudstacks_command_list_differs_only_where_the_allow_list_says_why(
        api: ApiCloud, tmp_path: Path) -> None:
    """Runs ``api-diff.py`` on the running server. Every CloudStack parameter of an implemented command
    is taken, refused as not applying (``Param.refused``, with its reason), or in the allow-list with a
    reason; every flag difference is in the allow-list; every command lists its response fields."""
    out = tmp_path / "diff.json"
    creds = tmp_path / "admin-credentials.json"
    run = await api.call(lambda: subprocess.run(
        [sys.executable, str(SHARED_API / "api-diff.py"), "--credentials", str(creds), "--json", str(out)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "NO_PROXY": "*"}))
    assert run.returncode in (0, None), run.stderr
    report = json.loads(out.read_text())["commands"]
    allowed = json.loads(ALLOWED.read_text())
    assert all(entry.get("reason") for entry in allowed.values())
    spec = {n: {p["name"].lower() for p in c["params"]} - {"response", "customjobid", "starteventid"}
            for n, c in json.loads((SHARED_API / "cloudstack-commands.json").read_text())["commands"].items()}
    unexplained: list[str] = []
    applicable = taken = 0
    for name, r in report.items():
        if r.get("cumulo_only"):
            continue
        cmd = COMMANDS[name.lower()]
        refused = {p.name.lower() for p in cmd.params if p.refused}
        not_applying = {p.name.lower() for p in cmd.params if p.refused and not p.applies}
        mine = allowed.get(name, {})
        for p in r["missing_params"]:
            if p not in refused and p not in mine.get("params", []):
                unexplained.append(f"{name}: {p} (neither taken nor refused)")
        for p in r["required_here_only"]:
            if p not in mine.get("required", []):
                unexplained.append(f"{name}: {p} required here only")
        ours, theirs = r["isasync"]
        if bool(ours) != bool(theirs) and not mine.get("isasync"):
            unexplained.append(f"{name}: isasync {ours} (CloudStack {theirs})")
        if r["response_field_coverage"] == 0:
            unexplained.append(f"{name}: listApis lists no CloudStack response field")
        theirs_params = set(spec[name])
        applicable += len(theirs_params - not_applying)  # (the gaps, refused with applies=True, count)
        taken += len(theirs_params & {p.name.lower() for p in cmd.accepted})
    assert not unexplained, "\n".join(unexplained)
    print(f"CloudStack parameters taken: {taken} of the {applicable} that apply ({taken / applicable:.1%})")
    assert taken / applicable >= FLOOR, (taken, applicable)


# The share of applicable CloudStack parameters taken, as measured when this test was last changed: a
# ratchet (raise it as gaps close): the target, 95%, reached with projects and scoped settings
# (the gaps left: docs/api-fidelity.md).
FLOOR = 0.95

