"""Raw HTTP against the running API: every error shape and code, paging and empty lists, sessions
(login, cookie + sessionkey, logout), and one account unable to see or touch another's resources."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.cookiejar
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest
from cs import CloudStackApiException

from .conftest import ApiCloud


def signed(params: dict[str, str], key: str, secret: str) -> dict[str, str]:
    """A request signed as clients sign it (names sorted, values quoted, lowercased, HMAC-SHA1)."""
    params = {**params, "apiKey": key, "response": "json"}
    text = "&".join(f"{k}={urllib.parse.quote(v, safe='*-._~')}" for k, v in sorted(params.items())).lower()
    signature = base64.b64encode(hmac.new(secret.encode(), text.encode(), hashlib.sha1).digest()).decode()
    return {**params, "signature": signature}


def request(
    url: str, params: dict[str, str], *, post: bool = False, opener: Any = None
) -> tuple[int, Any, dict[str, Any]]:
    """(status, headers (case-insensitive), body) of one call; errors are answers too."""
    data = urllib.parse.urlencode(params)
    req = urllib.request.Request(url, data=data.encode()) if post else urllib.request.Request(f"{url}?{data}")
    try:
        with (opener or urllib.request.build_opener()).open(req, timeout=30) as answer:
            return answer.status, answer.headers, json.loads(answer.read())
    except urllib.error.HTTPError as answer:
        return answer.code, answer.headers, json.loads(answer.read())


async def test_error_shapes_and_codes(api: ApiCloud) -> None:
    key, secret = api.creds["apikey"], api.creds["secretkey"]

    async def call(**params: str) -> tuple[int, Any, dict[str, Any]]:
        return await api.call(lambda: request(api.url, signed(params, key, secret)))

    status, headers, body = await call(command="noSuchThing")
    assert status == 401 and "unknown" in body["errorresponse"]["errortext"]
    status, headers, body = await call(
        command="deployVirtualMachine", zoneid="9b1c6a52-0f4e-4c1a-9a11-2f0e3b0d1e11"
    )
    error = body["deployvirtualmachineresponse"]
    assert status == 431 and error["errorcode"] == 431 and error["cserrorcode"] == 4350
    assert error["uuidList"] == [] and "serviceofferingid" in error["errortext"]
    assert headers["X-Description"] == error["errortext"]
    assert headers["Content-Type"] == "application/json; charset=UTF-8"
    status, _, body = await call(command="listZones", id="not-a-uuid")
    assert status == 431 and "parameter id" in body["listzonesresponse"]["errortext"]
    status, _, body = await call(command="listVirtualMachines", listall="maybe")
    assert status == 431 and "true or false" in body["listvirtualmachinesresponse"]["errortext"]
    status, _, body = await call(command="listVirtualMachines", listall="TRUE")  # booleans: any case
    assert status == 200 and body == {"listvirtualmachinesresponse": {}}
    status, _, body = await call(command="startVirtualMachine", id="9b1c6a52-0f4e-4c1a-9a11-2f0e3b0d1e11")
    assert status == 431 and "unable to find" in body["startvirtualmachineresponse"]["errortext"]
    status, _, body = await call(command="listTemplates", templatefilter="everything")
    assert status == 431
    status, _, body = await call(command="listZones", page="1")
    assert status == 431 and "together" in body["listzonesresponse"]["errortext"]
    status, _, body = await call(command="listZones", unknownparameter="ignored")
    assert status == 200 and body["listzonesresponse"]["count"] == 1
    huge = signed({"command": "listZones", "keyword": "x" * (1 << 20)}, key, secret)
    status, _, body = await api.call(lambda: request(api.url, huge, post=True))
    assert status == 431 and "larger than" in body["errorresponse"]["errortext"]
    # a wrong signature, a missing one, an expired one
    params = signed({"command": "listZones"}, key, secret)
    status, _, body = await api.call(lambda: request(api.url, {**params, "signature": "AAAA"}))
    assert status == 401 and body["listzonesresponse"]["errorcode"] == 401
    expired = signed(
        {"command": "listZones", "signatureVersion": "3", "expires": "2020-01-01T00:00:00+0000"}, key, secret
    )
    status, _, _ = await api.call(lambda: request(api.url, expired))
    assert status == 401
    future = signed(
        {"command": "listZones", "signatureVersion": "3", "expires": "2099-01-01T00:00:00Z"}, key, secret
    )
    status, _, _ = await api.call(lambda: request(api.url, future, post=True))
    assert status == 200


async def test_paging_and_empty_lists(api: ApiCloud) -> None:
    cs = api.client()
    for i in range(6):
        await api.call(lambda i=i: cs.createDiskOffering(name=f"d{i}", disksize=i + 1))
    everything = await api.call(lambda: cs.listDiskOfferings())
    assert everything["count"] == 8  # "Custom", the zone file's one and six more
    pages = [await api.call(lambda p=p: cs.listDiskOfferings(page=p, pagesize=3)) for p in (1, 2, 3, 4)]
    assert [len(p.get("diskoffering", [])) for p in pages] == [3, 3, 2, 0]
    assert all(p["count"] == 8 for p in pages[:3]) and pages[3] == {}
    names = [o["name"] for p in pages[:3] for o in p["diskoffering"]]
    assert names == [o["name"] for o in everything["diskoffering"]]
    assert (await api.call(lambda: cs.listDiskOfferings(page=1, pagesize=-1)))["count"] == 8
    all_of_them = await api.call(lambda: cs.listDiskOfferings(fetch_list=True))  # cs pages by itself
    assert len(all_of_them) == 8
    # (cs adds pagesize to a lone page by itself: a lone page is sent raw in test_error_shapes_and_codes)
    for bad in ({"pagesize": 2}, {"page": 0, "pagesize": 2}, {"page": 1, "pagesize": 501}):
        with pytest.raises(CloudStackApiException) as e:
            await api.call(lambda bad=bad: cs.listDiskOfferings(**bad))
        assert e.value.error["errorcode"] == 431
    assert await api.call(lambda: cs.listDiskOfferings(keyword="nothing-like-this")) == {}
    assert await api.call(lambda: cs.listVolumes()) == {}
    assert await api.call(lambda: cs.listAsyncJobs()) == {}


async def make_user(api: ApiCloud, name: str) -> tuple[dict[str, Any], dict[str, str]]:
    cs = api.client()
    account = (
        await api.call(
            lambda: cs.createAccount(
                username=name,
                password=f"{name}-secret-pw",
                email=f"{name}@example.org",
                firstname=name,
                lastname="Tester",
            )
        )
    )["account"]
    (user,) = account["user"]
    keys = (await api.call(lambda: cs.registerUserKeys(id=user["id"])))["userkeys"]
    return account, keys


async def test_sessions(api: ApiCloud) -> None:
    account, _keys = await make_user(api, "alice")
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    login = {
        "command": "login",
        "username": "alice",
        "password": "alice-secret-pw",
        "domain": "/",
        "response": "json",
    }
    status, _, body = await api.call(lambda: request(api.url, {**login, "password": "wrong"}, post=True))
    assert status == 531 and body["loginresponse"]["errorcode"] == 531
    status, _, body = await api.call(lambda: request(api.url, login))  # GET: refused, the password in a URL
    assert status == 431
    status, _, body = await api.call(lambda: request(api.url, login, post=True, opener=opener))
    session = body["loginresponse"]
    assert status == 200 and session["username"] == "alice" and session["account"] == account["name"]
    assert session["type"] == 0 and session["timeout"] == 1800 and session["registered"] == "false"
    assert {c.name for c in jar} == {"JSESSIONID", "sessionkey"}
    assert next(c for c in jar if c.name == "sessionkey").value == session["sessionkey"]

    listing = {"command": "listVirtualMachines", "response": "json"}
    status, _, body = await api.call(
        lambda: request(api.url, {**listing, "sessionkey": session["sessionkey"]}, opener=opener)
    )
    assert status == 200 and body == {"listvirtualmachinesresponse": {}}
    status, _, _ = await api.call(lambda: request(api.url, listing, opener=opener))  # cookie alone: refused
    assert status == 401
    status, _, _ = await api.call(lambda: request(api.url, {**listing, "sessionkey": "guess"}, opener=opener))
    assert status == 401
    status, _, _ = await api.call(lambda: request(api.url, {**listing, "sessionkey": session["sessionkey"]}))
    assert status == 401  # the key without its session cookie
    status, _, body = await api.call(
        lambda: request(
            api.url,
            {"command": "listHosts", "response": "json", "sessionkey": session["sessionkey"]},
            opener=opener,
        )
    )
    assert status == 401 and "not available" in body["errorresponse"]["errortext"]  # an admin command
    status, _, body = await api.call(
        lambda: request(api.url, {"command": "logout", "response": "json"}, post=True, opener=opener)
    )
    assert status == 200 and body == {"logoutresponse": {"description": "success"}}
    status, _, _ = await api.call(
        lambda: request(api.url, {**listing, "sessionkey": session["sessionkey"]}, opener=opener)
    )
    assert status == 401
    events = await api.call(lambda: api.client().listEvents(type="USER.LOGIN", listall=True))
    assert [e["username"] for e in events["event"]] == ["alice"]


async def test_one_account_cannot_see_or_touch_anothers(api: ApiCloud) -> None:
    _alice, alice_keys = await make_user(api, "alice")
    _bob, bob_keys = await make_user(api, "bob")
    alice = api.client(key=alice_keys["apikey"], secret=alice_keys["secretkey"])
    bob = api.client("post", key=bob_keys["apikey"], secret=bob_keys["secretkey"])
    admin = api.client()
    zone = (await api.call(lambda: alice.listZones()))["zone"][0]
    offering = (await api.call(lambda: alice.listServiceOfferings(name="small")))["serviceoffering"][0]
    template = (await api.call(lambda: alice.listTemplates(templatefilter="executable")))["template"][0]
    started = await api.call(
        lambda: alice.deployVirtualMachine(
            zoneid=zone["id"], serviceofferingid=offering["id"], templateid=template["id"]
        )
    )
    vm = (await api.call(lambda: alice._jobresult(started["jobid"])))["virtualmachine"]
    assert vm["account"] == "alice" and "hostid" not in vm  # users are not shown where VMs run
    volume = (await api.call(lambda: alice.listVolumes()))["volume"][0]

    assert await api.call(lambda: bob.listVirtualMachines()) == {}
    assert await api.call(lambda: bob.listVirtualMachines(listall=True)) == {}
    assert await api.call(lambda: bob.listVolumes(listall=True)) == {}
    assert await api.call(lambda: bob.listAsyncJobs(listall=True)) == {}
    assert await api.call(lambda: bob.listVirtualMachines(id=vm["id"])) == {}
    missing = "9b1c6a52-0f4e-4c1a-9a11-2f0e3b0d1e11"
    texts = []
    for ident in (vm["id"], missing):  # another's and a missing one: the same answer
        for action in ("stopVirtualMachine", "destroyVirtualMachine", "rebootVirtualMachine"):
            with pytest.raises(CloudStackApiException) as e:
                await api.call(lambda action=action, ident=ident: getattr(bob, action)(id=ident))
            assert e.value.error["errorcode"] == 531
            texts.append(e.value.error["errortext"].replace(ident, "ID"))
    assert len(set(texts)) == 1  # nothing tells an existing VM from a missing one
    for call in (
        lambda: bob.queryAsyncJobResult(jobid=started["jobid"]),
        lambda: bob.detachVolume(id=volume["id"]),
        lambda: bob.attachVolume(id=volume["id"], virtualmachineid=vm["id"]),
        lambda: bob.getUserKeys(id=_alice["user"][0]["id"]),
        lambda: bob.expungeVirtualMachine(id=vm["id"]),
        lambda: bob.listHosts(),
    ):
        with pytest.raises(CloudStackApiException) as e:
            await api.call(call)
        assert e.value.error["errorcode"] in (401, 531)
    assert [a["name"] for a in (await api.call(lambda: bob.listAccounts()))["account"]] == ["bob"]
    bob_apis = {a["name"] for a in (await api.call(lambda: bob.listApis()))["api"]}
    assert "listVirtualMachines" in bob_apis and "listHosts" not in bob_apis

    # the admin sees its own VMs unless it asks for everyone's
    assert await api.call(lambda: admin.listVirtualMachines()) == {}
    everyone = await api.call(lambda: admin.listVirtualMachines(listall=True))
    assert [v["id"] for v in everyone["virtualmachine"]] == [vm["id"]]
    by_account = await api.call(lambda: admin.listVirtualMachines(account="alice"))
    assert by_account["count"] == 1
    assert (await api.call(lambda: alice.listVirtualMachines()))["virtualmachine"][0]["state"] == "Running"
    api.cloud.exact()
