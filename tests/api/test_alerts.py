"""Alerts through the real ``cs`` client: a host that dies raises one (type 7); archiving hides it,
deleting removes it; a selection naming nothing is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from cs import CloudStackApiException

from tests.api.conftest import start_api
from tests.mgmt.test_agent_manager import KILL

FAST = {"ping.timeout": "1.5", "ha.heartbeat.interval": "0.1", "ha.heartbeat.window": "0.5",
        "ha.investigate.interval": "1"}


async def test_a_dead_host_raises_an_alert_operators_archive_and_delete(nursery: trio.Nursery,
                                                                         tmp_path: Path) -> None:
    api = await start_api(nursery, tmp_path, **FAST)
    cs = api.client()
    assert await api.call(lambda: cs.listAlerts()) == {}
    KILL["b1"].cancel()
    with trio.fail_after(30):
        while not (found := await api.call(lambda: cs.listAlerts(type="7"))):
            await trio.sleep(0.1)  # HA raises it on its own tasks
    (alert,) = found["alert"]
    assert alert["name"] == "ALERT.HOST" and "host-b1" in alert["description"]
    assert alert["sent"].endswith("+0000")
    with pytest.raises(CloudStackApiException) as refused:
        await api.call(lambda: cs.archiveAlerts())
    assert refused.value.error["errorcode"] == 431
    archived = await api.call(lambda: cs.archiveAlerts(ids=alert["id"]))
    assert archived["success"] is True and "1 alert" in archived["displaytext"]
    assert await api.call(lambda: cs.listAlerts()) == {}
    deleted = await api.call(lambda: cs.deleteAlerts(type="7"))
    assert "1 alert" in deleted["displaytext"]
