"""Heartbeats, investigation and fencing from shared storage (agent/ha.py): real files in a directory
standing for a shared pool; the observation windows are stepped by the test, not slept."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent import ha


def _pools(tmp_path: Path, n: int = 1) -> list[str]:
    dirs = [tmp_path / f"pool{i}" for i in range(n)]
    for d in dirs:
        d.mkdir()
    return [str(d) for d in dirs]


async def test_a_host_writing_its_heartbeat_is_alive_and_a_still_one_dead(tmp_path: Path) -> None:
    dirs = _pools(tmp_path, 2)
    host = ha.Heartbeat("host-a", lambda why: _none())
    host.configure(dirs, interval=1.0, self_fence_after=0)
    await host.beat_once()
    assert {ha.read_beat(d, "host-a") for d in dirs} == {host.counter}

    async def beats_meanwhile(window: float) -> None:
        await host.beat_once()

    determined, alive, why = await ha.check_on_host(dirs, "host-a", 3.0, watch=beats_meanwhile)
    assert (determined, alive) == (True, True) and "moved" in why

    async def nothing(window: float) -> None:
        return None

    determined, alive, why = await ha.check_on_host(dirs, "host-a", 3.0, watch=nothing)
    assert (determined, alive) == (True, False) and "stood still" in why


async def test_no_heartbeat_means_cannot_tell_and_disk_writes_mean_alive(tmp_path: Path) -> None:
    dirs = _pools(tmp_path)
    determined, _, why = await ha.check_on_host(dirs, "never-wrote", 1.0, watch=_wait_nothing)
    assert determined is False and "no heartbeat" in why

    # a host whose agent stopped (no heartbeat moves) while its guest still writes its disk
    ha.write_beat(dirs[0], "host-b", 7)
    disk = Path(dirs[0]) / "vol-1"
    disk.write_bytes(b"x")
    os.utime(disk, ns=(1, 1))

    async def guest_writes(window: float) -> None:
        disk.write_bytes(b"xy")

    determined, alive, why = await ha.check_on_host(dirs, "host-b", 1.0, [str(disk)], watch=guest_writes)
    assert (determined, alive) == (True, True) and "disks" in why


async def test_fencing_marks_the_host_which_stops_its_guests_until_readmitted(tmp_path: Path) -> None:
    dirs = _pools(tmp_path)
    stopped: list[str] = []

    async def stop(why: str) -> int:
        stopped.append(why)
        return 3

    host = ha.Heartbeat("host-c", stop)
    host.configure(dirs, interval=1.0, self_fence_after=0)
    host.readmitted = False  # as after its first Ready was used up
    await host.beat_once()
    fenced, why = await ha.fence(dirs, "host-c", 2.0, watch=_wait_nothing)
    assert fenced and "stood still" in why and ha.is_fenced(dirs[0], "host-c")

    last = ha.read_beat(dirs[0], "host-c")
    await host.beat_once()  # the host sees the mark: stops its guests, writes no heartbeat
    assert len(stopped) == 1 and "fenced" in stopped[0]
    assert ha.read_beat(dirs[0], "host-c") == last
    await host.beat_once()
    assert len(stopped) == 1 and ha.read_beat(dirs[0], "host-c") == last

    host.configure(dirs, interval=1.0, self_fence_after=0)  # Ready again: admitted back
    await host.beat_once()
    assert not ha.is_fenced(dirs[0], "host-c") and ha.read_beat(dirs[0], "host-c") != last


async def test_a_host_still_writing_is_not_confirmed_fenced(tmp_path: Path) -> None:
    dirs = _pools(tmp_path)
    ha.write_beat(dirs[0], "host-d", 1)

    async def keeps_writing(window: float) -> None:
        ha.write_beat(dirs[0], "host-d", 2)

    fenced, why = await ha.fence(dirs, "host-d", 2.0, watch=keeps_writing)
    assert not fenced and "still writes" in why


async def test_self_fencing_without_storage_and_without_the_server(tmp_path: Path) -> None:
    dirs = _pools(tmp_path)
    stopped: list[str] = []
    reachable = [True]

    async def stop(why: str) -> int:
        stopped.append(why)
        return 1

    host = ha.Heartbeat("host-e", stop, storage_reachable=lambda: reachable[0])
    host.configure(dirs, interval=1.0, self_fence_after=5.0)
    await host.beat_once()
    reachable[0] = False
    await host.beat_once()  # one failed write: not yet
    assert stopped == []
    host.last_written -= 10  # as if ten seconds passed without a write...
    await host.beat_once()
    assert stopped == []  # ...but the server answered lately: stay up
    host.last_contact -= 10
    await host.beat_once()
    assert len(stopped) == 1 and "no heartbeat written" in stopped[0]


async def test_a_hostile_guid_names_no_file(tmp_path: Path) -> None:
    dirs = _pools(tmp_path)
    for guid in ("../../etc/passwd", "a/b", "", ".hidden", "x" * 300):
        with pytest.raises(ha.HaError):
            await ha.check_on_host(dirs, guid, 1.0, watch=_wait_nothing)
        with pytest.raises(ha.HaError):
            await ha.fence(dirs, guid, 1.0, watch=_wait_nothing)
    assert sorted(os.listdir(dirs[0])) == []


async def _none() -> int:
    return 0


async def _wait_nothing(window: float) -> None:
    return None


async def test_a_restarted_agent_heartbeats_at_once_with_what_the_last_ready_said(tmp_path: Path) -> None:
    dirs = _pools(tmp_path)
    state = tmp_path / "state" / "heartbeat.json"
    first = ha.Heartbeat("host-f", lambda why: _none(), state_file=str(state))
    first.configure(dirs, interval=1.0, self_fence_after=5.0)
    await first.beat_once()
    before = ha.read_beat(dirs[0], "host-f")
    again = ha.Heartbeat("host-f", lambda why: _none(), state_file=str(state))  # the agent restarted
    assert (again.dirs, again.interval, again.self_fence_after) == (dirs, 1.0, 5.0)
    await again.beat_once()  # before any Ready: the counter moves, so neighbours see it alive
    assert ha.read_beat(dirs[0], "host-f") == again.counter != before
    state.write_text("{not json")
    assert ha.Heartbeat("host-f", lambda why: _none(), state_file=str(state)).dirs == []
