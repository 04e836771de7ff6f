"""Evidence that a host is alive, from shared storage rather than from its agent link.

Every host writes a heartbeat on each shared primary storage pool it uses: ``<pool>/.cumulo-ha/<guid>``,
a counter rewritten every ``interval`` seconds (atomically: a temporary file renamed over it). A
neighbour asked about a host (``CheckOnHostCommand``) reads that counter on the pools they share, waits
``window`` seconds and reads it again; it also watches the modification times of the host's VMs'
disks. Either moving means alive; a heartbeat that stood still with no disk written means dead; no
heartbeat at all means it cannot tell. Counters, not clocks: hosts need not agree on the time.

Fencing (``FenceCommand``) writes ``<guid>.fenced`` next to the heartbeat on every shared pool, then
confirms that the heartbeat stays still for ``window``. A host that finds its own mark stops its guests
and writes no more heartbeats until the management server admits it again (its next Ready). A host that
can neither reach the management server nor write its heartbeat for ``self_fence_after`` seconds stops
its guests too, before the server (which waits for a still heartbeat, then fences) starts them elsewhere.
QEMU's own image locks stay the last line of defence.

File access runs in worker threads and is abandoned after a deadline: a hung NFS mount must not stall
the agent.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

import trio

log = logging.getLogger(__name__)
T = TypeVar("T")

HB_DIR = ".cumulo-ha"
_GUID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$")  # what may name a heartbeat file


class HaError(Exception):
    pass


def _checked(guid: str) -> str:
    if not _GUID.match(guid) or ".." in guid:
        raise HaError(f"not a host guid: {guid[:80]!r}")
    return guid


def beat_path(directory: str, guid: str) -> Path:
    return Path(directory) / HB_DIR / _checked(guid)


def fence_path(directory: str, guid: str) -> Path:
    return Path(directory) / HB_DIR / f"{_checked(guid)}.fenced"


def write_beat(directory: str, guid: str, counter: int) -> None:
    path = beat_path(directory, guid)
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{counter}\n")
    os.replace(tmp, path)


def read_beat(directory: str, guid: str) -> int | None:
    """The host's heartbeat counter on the pool; None when it has none there (or it is unreadable)."""
    try:
        text = beat_path(directory, guid).read_text(errors="replace")
    except OSError:
        return None
    try:
        return int(text.strip() or "-1")
    except ValueError:
        return None


def is_fenced(directory: str, guid: str) -> bool:
    return fence_path(directory, guid).exists()


def mark_fenced(directory: str, guid: str) -> bool:
    try:
        path = fence_path(directory, guid)
        path.parent.mkdir(exist_ok=True)
        path.touch()
        return True
    except OSError:
        return False


def clear_fence(directory: str, guid: str) -> bool:
    try:
        fence_path(directory, guid).unlink(missing_ok=True)
        return True
    except OSError:
        return False


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


async def _io(fn: Callable[[], T], deadline: float) -> T | None:
    """``fn()`` in a worker thread; None when it takes longer than ``deadline`` seconds (abandoned)."""
    with trio.move_on_after(deadline):
        return await trio.to_thread.run_sync(fn, abandon_on_cancel=True)
    return None


Watch = Callable[[float], Awaitable[None]]  # waits out an observation window (tests pass their own)


async def check_on_host(dirs: Sequence[str], guid: str, window: float, disks: Sequence[str] = (),
                        watch: Watch = trio.sleep) -> tuple[bool, bool, str]:
    """(determined, alive, why) about the host ``guid`` from the pools in ``dirs`` and its disks."""
    _checked(guid)
    deadline = max(window, 1.0)

    def sample() -> tuple[dict[str, int | None], dict[str, int | None]]:
        return {d: read_beat(d, guid) for d in dirs}, {p: _mtime(p) for p in disks}

    first = await _io(sample, deadline)
    if first is None:
        return False, False, "the shared pools did not answer"
    beats, mtimes = first
    present = [d for d, v in beats.items() if v is not None]
    if not present and not any(v is not None for v in mtimes.values()):
        return False, False, "no heartbeat of the host on the pools this host shares with it"
    await watch(window)  # the observation window itself
    second = await _io(sample, deadline)
    if second is None:
        return False, False, "the shared pools did not answer"
    beats2, mtimes2 = second
    if any(beats2[d] != beats[d] for d in present):
        return True, True, "its heartbeat moved"
    if any(mtimes2[p] != mtimes[p] for p in disks if mtimes[p] is not None):
        return True, True, "its VMs' disks were written"
    if not present:
        return False, False, "no heartbeat of the host; its disks were not written"
    return True, False, f"its heartbeat stood still for {window:g} s and no disk of it was written"


async def fence(dirs: Sequence[str], guid: str, window: float, watch: Watch = trio.sleep) -> tuple[bool, str]:
    """(fenced, why): mark the host fenced on the shared pools, then confirm its heartbeat is still."""
    _checked(guid)
    deadline = max(window, 1.0)
    marked = await _io(lambda: [d for d in dirs if mark_fenced(d, guid)], deadline)
    if not marked:
        return False, "could not mark the host fenced on any shared pool"
    before = await _io(lambda: {d: read_beat(d, guid) for d in marked}, deadline)
    await watch(window)  # the host gets this long to show it still writes
    after = await _io(lambda: {d: read_beat(d, guid) for d in marked}, deadline)
    if before is None or after is None:
        return False, "the shared pools did not answer"
    if any(after[d] != before[d] for d in marked):
        return False, "the host still writes its heartbeat"
    return True, f"marked fenced on {len(marked)} pool(s); its heartbeat stood still for {window:g} s"


class Heartbeat:
    """This host's heartbeat writer and self-fencing, for the life of the agent process."""

    def __init__(self, guid: str, stop_guests: Callable[[str], Awaitable[int]],
                 storage_reachable: Callable[[], bool] = lambda: True, *, state_file: str = "") -> None:
        self.guid = _checked(guid)
        self.stop_guests = stop_guests  # stops every guest, giving the reason; how many it stopped
        self.storage_reachable = storage_reachable
        self.state_file = state_file
        self.dirs: list[str] = []
        self.interval = 0.0
        self.self_fence_after = 0.0
        # starts where no earlier run of this agent can be (microseconds of the wall clock): a restarted
        # agent's first beats never repeat the value a neighbour saw before the restart
        self.counter = time.time_ns() // 1000
        self.last_written = self.last_contact = 0.0  # trio clock; set when configured
        self.fenced = False  # stopped its guests; writes no heartbeat until readmitted
        self.readmitted = False
        self._changed = trio.Event()
        self._restore()

    def _restore(self) -> None:
        """What the last Ready said, kept by a previous run of the agent: heartbeats go on at once."""
        if not self.state_file:
            return
        try:
            kept = json.loads(Path(self.state_file).read_text())
            dirs = [str(d) for d in kept["dirs"]]
            self.dirs, self.interval = dirs, float(kept["interval"])
            self.self_fence_after = float(kept["self_fence_after"])
        except (OSError, ValueError, KeyError, TypeError):
            return  # none yet (or unreadable): the first Ready says
        self.readmitted = True  # not fenced as far as it knows; a fence mark says otherwise

    def _keep(self) -> None:
        if not self.state_file:
            return
        try:
            path = Path(self.state_file)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(json.dumps({"dirs": self.dirs, "interval": self.interval,
                                       "self_fence_after": self.self_fence_after}))
            os.replace(tmp, path)
        except OSError as e:
            log.warning("heartbeat settings not kept in %s: %s", self.state_file, e)
    def configure(self, dirs: Sequence[str], interval: float, self_fence_after: float) -> None:
        """The pools and timings the management server gave with Ready (which readmits a fenced host)."""
        self.dirs, self.interval, self.self_fence_after = list(dirs), interval, self_fence_after
        self.readmitted = True
        self._keep()
        if not self.last_written:
            self.last_written = trio.current_time()
        self.contact()
        self._changed.set()

    def contact(self) -> None:
        """The management server answered (a ping, a request): it is reachable."""
        self.last_contact = trio.current_time()

    async def _fence_self(self, why: str) -> None:
        if not self.fenced:
            self.fenced, self.readmitted = True, False
            stopped = await self.stop_guests(why)
            log.error("host %s fenced itself (%s): %d guest(s) stopped", self.guid, why, stopped)

    async def beat_once(self) -> None:
        dirs, now = self.dirs, trio.current_time()
        marked = await _io(lambda: [d for d in dirs if is_fenced(d, self.guid)], self.interval)
        if marked:
            await self._fence_self(f"marked fenced on {marked[0]}")
            if not self.readmitted:
                return
            await _io(lambda: [clear_fence(d, self.guid) for d in dirs], self.interval)
        elif self.fenced and not self.readmitted:
            return
        self.fenced = False
        self.counter += 1
        counter = self.counter

        def write() -> int:
            done = 0
            if not self.storage_reachable():
                return 0
            for d in dirs:
                try:
                    write_beat(d, self.guid, counter)
                    done += 1
                except OSError as e:
                    log.warning("heartbeat on %s failed: %s", d, e)
            return done

        if await _io(write, self.interval):
            self.last_written = trio.current_time()
        stale = now - self.last_written
        unreachable = now - self.last_contact
        if self.self_fence_after and stale > self.self_fence_after and unreachable > self.self_fence_after:
            await self._fence_self(f"no heartbeat written and no management server for {stale:.0f} s")

    async def run(self) -> None:
        if self.dirs and not self.last_written:
            self.last_written = self.last_contact = trio.current_time()
        while True:
            if not self.dirs or self.interval <= 0:
                self._changed = trio.Event()
                await self._changed.wait()
                continue
            try:
                await self.beat_once()
            except Exception:  # (stopping guests failed, say): the agent lives on, the next beat retries
                log.exception("heartbeat of %s failed", self.guid)
            await trio.sleep(self.interval)  # the heartbeat period
