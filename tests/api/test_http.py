"""The API over real HTTP inside a running server: the admin's keys on first start, the cs client
(GET and POST), signature and expiry refusals, error shapes, paging."""

from __future__ import annotations

import json
import os
import stat
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import trio
from cs import CloudStack, CloudStackApiException

from mgmt.server import ServerConfig, Services, serve

ZONE = Path(__file__).parents[2] / "docs" / "examples" / "zone.toml"


async def start(nursery: trio.Nursery, data_dir: Path) -> tuple[Services, dict[str, str]]:
    services: Services = await nursery.start(
        serve,
        ServerConfig(
            data_dir=str(data_dir), agent_port=0, api_port=0, bind="127.0.0.1", zone_config=str(ZONE)
        ),
    )
    credentials = data_dir / "admin-credentials.json"
    assert stat.S_IMODE(os.stat(credentials).st_mode) == 0o600
    return services, json.loads(credentials.read_text())


def client(creds: dict[str, str], method: str = "get", **kw: Any) -> CloudStack:
    return CloudStack(
        endpoint=creds["url"], key=creds["apikey"], secret=creds["secretkey"], method=method, **kw
    )


async def test_the_cs_client_works_with_get_and_post(nursery: trio.Nursery, tmp_path: Path) -> None:
    services, creds = await start(nursery, tmp_path)
    assert creds["url"] == services.api_url and creds["url"].endswith("/client/api")
    for method in ("get", "post"):
        zones = await trio.to_thread.run_sync(lambda m=method: client(creds, m).listZones())
        assert [z["name"] for z in zones["zone"]] == ["zone1"] and zones["count"] == 1
    apis = await trio.to_thread.run_sync(lambda: client(creds).listApis(name="listZones"))
    (api,) = apis["api"]
    assert {p["name"] for p in api["params"]} >= {"id", "name", "page", "pagesize", "keyword"}
    empty = await trio.to_thread.run_sync(lambda: client(creds).listZones(name="nowhere"))
    assert empty == {}


async def test_refusals_and_error_shapes(nursery: trio.Nursery, tmp_path: Path) -> None:
    _services, creds = await start(nursery, tmp_path)
    wrong = {**creds, "secretkey": "not the secret"}
    with pytest.raises(CloudStackApiException) as e:
        await trio.to_thread.run_sync(lambda: client(wrong).listZones())
    assert e.value.error["errorcode"] == 401
    with pytest.raises(CloudStackApiException) as e:
        await trio.to_thread.run_sync(
            lambda: client(creds).listZones(signatureVersion="3", expires="2000-01-01T00:00:00+0000")
        )
    assert e.value.error["errorcode"] == 401  # expired
    with pytest.raises(CloudStackApiException) as e:
        await trio.to_thread.run_sync(lambda: client(creds).listZones(pagesize=5))
    assert (e.value.error["errorcode"], e.value.error["errortext"]) == (
        431,
        "page and pagesize must be given together",
    )
    with pytest.raises(CloudStackApiException) as e:
        await trio.to_thread.run_sync(lambda: client(creds).listZones(id="not-a-uuid"))
    assert e.value.error["errorcode"] == 431 and "parameter id" in e.value.error["errortext"]
    with pytest.raises(CloudStackApiException) as e:
        await trio.to_thread.run_sync(lambda: client(creds).noSuchCommand())
    assert e.value.error["errorcode"] == 401 and "unknown" in e.value.error["errortext"]

    def raw() -> tuple[int, str, dict[str, Any]]:  # unsigned, over plain HTTP
        try:
            urllib.request.urlopen(f"{creds['url']}?command=listZones&response=json", timeout=10)
        except urllib.error.HTTPError as answer:
            return answer.code, answer.headers["content-type"], json.loads(answer.read())
        raise AssertionError("an unsigned request was accepted")

    status, content_type, body = await trio.to_thread.run_sync(raw)
    assert (status, content_type) == (401, "application/json; charset=UTF-8")
    assert body["listzonesresponse"]["errorcode"] == 401
