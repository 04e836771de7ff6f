"""File-descriptor pressure (issue 18: 20,000 idle connections filled the server's fd table, the API
stopped answering and new agents could not register). The server runs as a process with a low
descriptor limit; a flood of idle connections to the agent port is refused past the agent budget,
while the API keeps answering, the connected host keeps pinging, and the server recovers."""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

import trio
from cs import CloudStack

from mgmt.db.schema import configuration
from mgmt.server import ServerConfig, prepare

from .test_agent_manager import ZONE, credentials_from
from .test_agent_trust import agent
from .test_processes import free_port, kill_all, wait_for_log

LIMIT = 700  # descriptors: the agent port's budget is this less the 512 kept for everything else


def low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, LIMIT))


async def test_an_fd_flood_is_refused_and_the_api_and_hosts_go_on(nursery: trio.Nursery,
                                                                 tmp_path: Path) -> None:
    data, port, api_port = tmp_path / "data", free_port(), free_port()
    db, _msid, _values = prepare(ServerConfig(data_dir=str(data), zone_config=str(ZONE)))
    with db.engine.begin() as conn:
        conn.execute(configuration.update().where(configuration.c.name == "ping.interval").values(value="1"))
    db.dispose()
    log = tmp_path / "mgmt.log"
    with log.open("wb") as out:
        server = await trio.lowlevel.open_process(
            [sys.executable, "-m", "mgmt", "serve", "--data-dir", str(data), "--agent-port", str(port),
             "--api-port", str(api_port), "--bind", "127.0.0.1"], stderr=out, preexec_fn=low_fd_limit)
    streams: list[trio.SocketStream] = []
    try:
        await wait_for_log(log, "listening for agents")
        steady = agent(nursery, port, "steady", credentials_from(data, "steady"))
        with trio.fail_after(30):
            await steady.up.wait()
        steady.ping_rtts = []
        for _ in range(900):  # past the budget of 188, and past the process's 700 descriptors
            streams.append(await trio.open_tcp_stream("127.0.0.1", port))
        await wait_for_log(log, "refusing agent connections")
        creds = json.loads((data / "admin-credentials.json").read_text())
        cs = CloudStack(endpoint=creds["url"], key=creds["apikey"], secret=creds["secretkey"], timeout=30)
        zones = await trio.to_thread.run_sync(lambda: cs.listZones())
        assert zones["count"] == 1  # the API answers in the middle of the flood
        hosts = await trio.to_thread.run_sync(lambda: cs.listHosts(name="host-steady"))
        assert hosts["host"][0]["state"] == "Up"
        with trio.fail_after(30):
            while len(steady.ping_rtts) < 3:
                await trio.sleep(0.1)  # pings keep being answered (they come once a second)
        for stream in streams:
            await stream.aclose()
        streams.clear()
        late = agent(nursery, port, "late", credentials_from(data, "late"))
        with trio.fail_after(30):
            await late.up.wait()  # once the flood is gone, new hosts register again
        assert "Traceback" not in log.read_text()
    finally:
        for stream in streams:
            await stream.aclose()
        await kill_all(server)
        nursery.cancel_scope.cancel()
