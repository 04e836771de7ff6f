"""``python -m mgmt local`` (what ``make run`` starts), as a newcomer runs it: it prints the API URL and a
``cs`` command that works as printed, stops cleanly on Ctrl-C, and a second run keeps the cloud."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import trio

from .test_processes import query


async def run_until_ready(data: Path, out: Path) -> tuple[trio.Process, str]:
    env = {**os.environ, "DATA_DIR": str(data), "API_PORT": "0", "AGENT_PORT": "0", "HOSTS": "4"}
    with out.open("wb") as sink:  # a file, not a pipe: nobody reads it while the process runs
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "mgmt", "local"], stdout=sink, stderr=subprocess.STDOUT, env=env
        )
    with trio.fail_after(60):
        while (found := re.search(r"try: +(.*)\n", out.read_text())) is None:
            assert proc.poll() is None, out.read_text()
            await trio.sleep(0.05)  # polling the output file: there is no event to wait on
    return proc, found.group(1)


async def stop(proc: trio.Process) -> int:
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    with trio.fail_after(30):
        return await proc.wait()


async def test_make_run_starts_a_cloud_that_cs_can_use(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc, command = await run_until_ready(data, tmp_path / "out1")
    try:
        text = (tmp_path / "out1").read_text()
        assert "4 of 4 simulated hosts Up" in text
        assert (
            "secretkey" not in text
            and json.loads((data / "admin-credentials.json").read_text())["secretkey"] not in text
        )  # the secret is in files, not on the screen
        assert (data / "cloudstack.ini").stat().st_mode & 0o777 == 0o600
        words = shlex.split(command)  # CLOUDSTACK_CONFIG=... .venv/bin/cs listVirtualMachines listall=true
        env = {**os.environ, **dict(w.split("=", 1) for w in words[:1])}
        cs = words[1] if os.path.exists(words[1]) else str(Path(sys.executable).parent / "cs")
        listed = await trio.run_process([cs, *words[2:]], env=env, capture_stdout=True, capture_stderr=True)
        assert listed.stdout.strip() == b""  # it worked as printed; no VMs yet (cs prints nothing)
        zones = await trio.run_process([cs, "listZones"], env=env, capture_stdout=True)
        assert [z["name"] for z in json.loads(zones.stdout)["zone"]] == ["zone1"]
    finally:
        status = await stop(proc)
    assert status == 0
    hosts = query(data / "cumulo.db", "select guid, status from hosts order by guid")
    assert len(hosts) == 4 and {s for _, s in hosts} == {"Disconnected"}

    proc, _ = await run_until_ready(data, tmp_path / "out2")  # again: the same cloud
    try:
        assert "4 of 4 simulated hosts Up" in (tmp_path / "out2").read_text()
        assert len(query(data / "cumulo.db", "select id from hosts")) == 4
        assert len(query(data / "cumulo.db", "select id from zones")) == 1
    finally:
        assert await stop(proc) == 0
