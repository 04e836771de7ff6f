"""The agent as a process: settings, a stable guid across restarts, and a clean stop on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from agent.config import load, parse_servers, stable_guid
from agent.faults import FaultTable
from protocol.messages import CheckHealthCommand

from .fake_server import FakeServer


def test_server_lists_and_settings_files(tmp_path: Path) -> None:
    assert parse_servers("a:1, b , [::1]:9") == [("a", 1), ("b", 8250), ("::1", 9)]
    for bad in ("", "a:x", "a:0", ":5"):
        with pytest.raises(ValueError):
            parse_servers(bad)
    conf = tmp_path / "agent.toml"
    conf.write_text('mgmt = "m:1"\nzone = "zA"\nping_retries = 3\n')
    config = load(str(conf), {"zone": "zB", "pod": None})
    assert (config.mgmt, config.zone, config.pod, config.ping_retries) == ("m:1", "zB", "pod1", 3)
    conf.write_text('zonee = "typo"\n')
    with pytest.raises(ValueError, match="unknown settings zonee"):
        load(str(conf), {})


def test_guid_is_made_once_and_kept(tmp_path: Path) -> None:
    config = load(None, {"state_dir": str(tmp_path / "state")})
    first = stable_guid(config)
    assert stable_guid(load(None, {"state_dir": str(tmp_path / "state")})) == first
    assert stable_guid(load(None, {"state_dir": str(tmp_path / "state"), "guid": "given"})) == "given"


def test_fault_files_are_parsed_and_checked(tmp_path: Path) -> None:
    rules = tmp_path / "faults.toml"
    rules.write_text('stop_pinging = true\npower_off = ["i-1"]\n'
                     '[[rule]]\ncommand = "StartCommand"\naction = "fail"\ndetails = "no"\ncount = 2\n'
                     '[[rule]]\ncommand = "StopCommand"\naction = "wait:50"\n')
    table = FaultTable.load(rules)
    assert table.stop_pinging and table.power_off == {"i-1"}
    assert [(r.command, r.action, r.wait_ms, r.count) for r in table.rules] == [
        ("StartCommand", "fail", 0, 2), ("StopCommand", "wait", 50, 0)]
    rules.write_text('[[rule]]\ncommand = "StartCommand"\naction = "explode"\n')
    with pytest.raises(ValueError, match="rule 1: fault action must be one of fail, error, wait, drop"):
        FaultTable.load(rules)
    with pytest.raises(ValueError, match="needs milliseconds"):
        FaultTable().add("X", "wait:soon")


async def run_agent(port: int, state: Path, log: Path, faults: Path) -> trio.Process:
    with log.open("ab") as out:  # a file, not a pipe: nobody reads it while the agent runs
        return await trio.lowlevel.open_process(
            [sys.executable, "-m", "agent", "run", "--mgmt", f"127.0.0.1:{port}", "--resource", "simulator",
             "--state-dir", str(state), "--zone", "zA", "--name", "cli-host", "--faults", str(faults),
             "--no-tls"],  # the test server speaks plain frames
            stdout=subprocess.DEVNULL, stderr=out)


async def test_agent_process_keeps_its_guid_and_stops_cleanly(nursery: trio.Nursery, tmp_path: Path) -> None:
    server = FakeServer()
    await nursery.start(server.serve)
    sessions = []
    faults = tmp_path / "faults.toml"
    faults.write_text("")
    log = tmp_path / "agent.log"
    for round_ in range(2):
        proc = await run_agent(server.port, tmp_path / "state", log, faults)
        links = await server.wait_for(lambda: [lk for lk in server.ready_links() if lk not in sessions], 30)
        link = links[-1]
        sessions.append(link)
        if round_ == 0:  # fault rules change at run time: rewrite the file, SIGHUP
            faults.write_text('[[rule]]\ncommand = "CheckHealthCommand"\naction = "fail"\ndetails = "hup"\n')
            proc.send_signal(signal.SIGHUP)
            await server.wait_for(lambda: "fault rules reloaded" in log.read_text())
            answer = (await server.send(link.guid, [CheckHealthCommand()])).answers[0]
            assert (answer.result, answer.details) == (False, "hup")
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            code = await proc.wait()
        assert code == 0
        await server.wait_for(lambda link=link: link.closed)
    assert "SIGTERM received, draining" in log.read_text()
    first, second = sessions
    assert first.guid == second.guid and first.host_id == second.host_id
    routing = first.startups[0][0]
    assert (routing.name, routing.zone) == ("cli-host", "zA")  # type: ignore[attr-defined]
    await server.stop()
