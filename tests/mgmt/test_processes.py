"""The management server and an agent as separate processes, as an operator runs them: the agent comes
Up; the server killed with SIGKILL restarts on the same data directory, releases what it held and gets
the agent back on the same host row; SIGTERM stops it cleanly with the host left Disconnected; a server
killed mid-deploy restarts consistent; a bad setting stops start-up with its name."""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import trio

from mgmt.db.database import Database, sqlite_url
from mgmt.planner import capacity

ZONE = Path(__file__).parents[2] / "docs" / "examples" / "zone.toml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start(args: list[str], log: Path) -> trio.Process:
    with log.open("ab") as out:  # a file, not a pipe: nobody reads it while the process runs
        return await trio.lowlevel.open_process(
            [sys.executable, "-m", *args], stdout=subprocess.DEVNULL, stderr=out
        )


async def wait_for_log(log: Path, pattern: str, timeout: float = 30) -> re.Match[str]:
    with trio.fail_after(timeout):
        while (found := re.search(pattern, log.read_text() if log.exists() else "")) is None:
            await trio.sleep(0.05)  # polling a log file: there is no event to wait on
    return found


async def wait_host(db: Path, status: str, timeout: float = 30) -> tuple[object, ...]:
    """The one host row (id, status, update_count), once it shows ``status``."""
    with trio.fail_after(timeout):
        while not (rows := query(db, "select id, status, update_count from hosts")) or rows[0][1] != status:
            await trio.sleep(0.05)  # polling the database: there is no event to wait on
    return rows[0]


def serve_args(data: Path, port: int) -> list[str]:
    """``python -m mgmt serve`` on loopback with the example zone (the API on a free port)."""
    return ["mgmt", "serve", "--data-dir", str(data), "--agent-port", str(port), "--api-port", "0",
            "--bind", "127.0.0.1", "--zone-config", str(ZONE)]


async def agent_token(data: Path, mgmt_log: Path) -> str:
    """A registration token from ``python -m mgmt agent-token``, once the server has made its CA."""
    await wait_for_log(mgmt_log, "listening for agents")
    made = await trio.run_process([sys.executable, "-m", "mgmt", "agent-token", "--data-dir", str(data)],
                                  capture_stdout=True, capture_stderr=True)
    return made.stdout.decode().strip()


def agent_args(port: int, state_dir: Path, *extra: str) -> list[str]:
    """``python -m agent run`` with the simulator in pod1-cluster1 of the example zone."""
    return ["agent", "run", "--mgmt", f"127.0.0.1:{port}", "--resource", "simulator", "--state-dir",
            str(state_dir), "--zone", "zone1", "--pod", "pod1", "--cluster", "pod1-cluster1", *extra]


async def kill_all(*procs: trio.Process) -> None:
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_server_crash_restart_and_clean_stop_with_an_agent_process(tmp_path: Path) -> None:
    port, data, db = free_port(), tmp_path / "data", tmp_path / "data" / "cumulo.db"
    mgmt_log, agent_log = tmp_path / "mgmt.log", tmp_path / "agent.log"
    server = await start(serve_args(data, port), mgmt_log)
    await wait_for_log(mgmt_log, "listening for agents")  # migrated, inventory loaded
    token = await agent_token(data, mgmt_log)
    agent = await start(agent_args(port, tmp_path / "agent", "--name", "proc-host", "--token", token),
                        agent_log)
    try:
        host_id, _status, count = await wait_host(db, "Up")

        server.kill()  # a crash: nothing is written on the way down
        assert await server.wait() == -signal.SIGKILL
        assert (await wait_host(db, "Up"))[0] == host_id  # the row still says what the dead server knew

        server = await start(serve_args(data, port), mgmt_log)
        await wait_for_log(mgmt_log, "1 hosts were still held by this server")
        await wait_for_log(mgmt_log, rf"host Up .*host_id={host_id}\b")
        again = await wait_host(db, "Up")
        assert again[0] == host_id and again[2] >= count + 3  # Disconnected, Connecting, Up

        server.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            assert await server.wait() == 0
        assert (await wait_host(db, "Disconnected"))[0] == host_id
        agent.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            assert await agent.wait() == 0
    finally:
        await kill_all(server, agent)


async def kill_mid_start(tmp_path: Path, *crash_args: str) -> tuple[Path, int, Path, list[trio.Process]]:
    """A crash server deploying one VM (``crash_args``: ``job`` to deploy as the API does) and an agent
    that holds the StartCommand 4 s; the server is killed while the agent has the start in hand. The
    database, the port, the server's log, and the processes still to be ended."""
    port, data = free_port(), tmp_path / "data"
    faults = tmp_path / "faults.toml"
    faults.write_text('[[rule]]\ncommand = "StartCommand"\naction = "wait:4000"\ncount = 1\n')
    mgmt_log, agent_log = tmp_path / "mgmt.log", tmp_path / "agent.log"
    crashing = await start(["tests.mgmt.crash_server", str(data), str(port), str(ZONE), *crash_args],
                           mgmt_log)
    processes = [crashing]
    try:
        token = await agent_token(data, mgmt_log)
        processes.append(await start(agent_args(port, tmp_path / "agent", "--faults", str(faults),
                                                "--log-level", "DEBUG", "--token", token), agent_log))
        await wait_for_log(agent_log, "executing StartCommand")  # the agent has the start in hand
        crashing.kill()
        await crashing.wait()
    except BaseException:
        await kill_all(*processes)
        raise
    return data / "cumulo.db", port, mgmt_log, processes


def totals_exact(data: Path) -> None:
    database = Database(sqlite_url(data))
    with database.engine.connect() as conn:
        assert capacity.check_totals(conn) == []
    database.dispose()


async def test_a_server_killed_mid_deploy_restarts_consistent(tmp_path: Path) -> None:
    """The start hangs on the agent (a 4 s wait fault) when the server is killed: the VM is Starting,
    compute reserved, root volume made. The restarted server settles it: Stopped, no compute held,
    the volume and its space kept for the next start, every capacity column equal to its rows."""
    db, port, mgmt_log, processes = await kill_mid_start(tmp_path)
    try:
        assert query(db, "select state from vms") == [("Starting",)]
        assert query(db, "select state from capacity_reservations") == [("Allocated",)]

        processes.append(await start(serve_args(db.parent, port), mgmt_log))
        await wait_for_log(mgmt_log, r"VMs settled: \{'starting': 1")
        await wait_host(db, "Up")  # the agent is back
        assert query(db, "select state, host_id from vms") == [("Stopped", None)]
        assert query(db, "select state, disk_bytes > 0 from capacity_reservations") == [(None, 1)]
        assert query(db, "select state from volumes") == [("Ready",)]
        assert query(db, "select count(*) from async_jobs where status = 0") == [(0,)]
        totals_exact(db.parent)
    finally:
        await kill_all(*processes)


async def test_a_deploy_job_killed_mid_start_ends_in_error_holding_nothing(tmp_path: Path) -> None:
    """As the API deploys (a deployVirtualMachine job), killed while the agent starts the VM: after the
    restart the deploy has failed as CloudStack's do, the VM in Error with its address, compute and
    storage released, and its last host recorded so that expunging it cleans up there."""
    db, port, mgmt_log, processes = await kill_mid_start(tmp_path, "job")
    try:
        assert query(db, "select state from vms") == [("Starting",)]
        assert query(db, "select count(*) from nics where ip_address is not null") == [(1,)]

        processes.append(await start(serve_args(db.parent, port), mgmt_log))
        await wait_for_log(mgmt_log, r"VMs settled: \{.*'deploys': 1")
        host = query(db, "select id from hosts")[0][0]
        assert query(db, "select state, host_id, last_host_id from vms") == [("Error", None, host)]
        assert query(db, "select count(*) from nics where ip_address is not null") == [(0,)]
        assert query(db, "select count(*) from capacity_reservations") == [(0,)]
        assert query(db, "select status from async_jobs") == [(2,)]
        totals_exact(db.parent)
    finally:
        await kill_all(*processes)


def query(db: Path, sql: str) -> list[tuple[object, ...]]:
    if not db.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
        try:
            return conn.execute(sql).fetchall()
        except sqlite3.OperationalError:  # not migrated yet
            return []


def test_a_bad_setting_stops_start_up_with_its_name(tmp_path: Path) -> None:
    from mgmt.db.schema import configuration
    from mgmt.server import ServerConfig, prepare

    db, _msid, _values = prepare(ServerConfig(data_dir=str(tmp_path)))
    with db.engine.begin() as conn:
        conn.execute(
            configuration.update().where(configuration.c.name == "ping.interval").values(value="0.2")
        )
    db.dispose()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mgmt",
            "serve",
            "--data-dir",
            str(tmp_path),
            "--agent-port",
            "0",
            "--api-port",
            "0",
            "--bind",
            "127.0.0.1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "setting ping.interval = '0.2' in the configuration table is not an integer" in done.stderr
    assert "Traceback" not in done.stderr
