"""The running server's view of its peers: heartbeat, watch, take over, and the change journal.

Every ``cluster.heartbeat.interval`` the server writes its heartbeat and reads every server's row. A
peer whose heartbeat is older than ``cluster.heartbeat.threshold`` is declared down (``members.
declare_down``: one server wins, and settles the dead one's work in the same transaction). The set of
live servers, when it changes, goes to the listeners (agent balancing, peer links). A server that finds
itself declared down sets ``fenced``: the server stops (its work was settled by another; the agents it
still holds reconnect elsewhere, and an operator or supervisor starts it again).

The change journal (``db.journal``) is read every ``journal_poll`` seconds: the peers' deltas go to
``Database.remote_listeners``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import trio

from ..db import journal
from ..db.database import Database
from . import members
from .members import Member

log = logging.getLogger(__name__)

JOURNAL_KEPT = timedelta(minutes=10)


class Peers:
    def __init__(self, db: Database, msid: int, values: dict[str, Any], version: str, *,
                 journal_poll: float = 0.2) -> None:
        self.db = db
        self.msid = msid
        self.version = version
        self.interval = int(values["cluster.heartbeat.interval"]) / 1000
        self.threshold = int(values["cluster.heartbeat.threshold"]) / 1000
        self.journal_poll = journal_poll
        self.live: dict[int, Member] = {}  # servers up, this one included
        self.listeners: list[Callable[[dict[int, Member]], None]] = []  # the live set changed
        self.gone_listeners: list[Callable[[int], None]] = []  # a peer left the live set
        # every round: the live servers (with their heartbeats' ages) and the trio time of the read
        self.beat_listeners: list[Callable[[dict[int, Member], float], None]] = []
        self.fenced = ""  # why this server must stop ("" while it may run)
        self.fence = trio.Event()
        self.ready = trio.Event()  # set by the server once its ports are open
        self.taken_over: dict[int, dict[str, int]] = {}  # dead server -> what this one settled
        self.cursor = 0  # the last journal row read
        self.beats = 0  # rounds done (tests wait on it)
        self._warned_versions: set[tuple[int, str]] = set()
        self._pruned = 0.0

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Read the journal from now on at once (the server's state is read after this starts); the
        heartbeats once ``ready`` is set (the server's ports are open)."""
        self.cursor = await self.db.read(journal.mark)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._journal_loop)
            task_status.started()
            await self.ready.wait()
            while not self.fenced:
                try:
                    await self._round()
                except Exception:
                    log.exception("cluster heartbeat round failed; trying again")
                await trio.sleep(self.interval)
            nursery.cancel_scope.cancel()

    async def _round(self) -> None:
        why = await self.db.run(members.heartbeat, self.msid)
        if why:
            self.fenced = why
            log.critical("%s: this management server stops", why)
            self.fence.set()
            return
        rows = await self.db.read(members.members, self.threshold)
        read_at = trio.current_time()  # (the ages are as of the read: the declarations below take time)
        live = {m.msid: m for m in rows if m.fresh}
        for m in rows:
            if m.msid != self.msid and m.state == "Up" and not m.fresh:
                settled = await self.db.run(members.declare_down, m.msid, self.msid, self.threshold)
                if settled is not None:
                    self.taken_over[m.msid] = settled
                    log.warning("management server %d (%s) missed its heartbeats for %g s: declared down; "
                                "its work settled here: %s", m.msid, m.address, self.threshold, settled)
            if m.fresh and m.version != self.version and (m.msid, m.version) not in self._warned_versions:
                self._warned_versions.add((m.msid, m.version))
                log.warning("management server %d runs version %s beside this one's %s: upgrade them all",
                            m.msid, m.version or "(unknown)", self.version)
        for beat_listener in self.beat_listeners:
            beat_listener(live, read_at)
        if _shape(live) != _shape(self.live):
            gone = set(self.live) - set(live)
            self.live = live
            for msid in gone:
                for listener in self.gone_listeners:
                    listener(msid)
            for set_listener in self.listeners:
                set_listener(dict(live))
        self.beats += 1
        if time.monotonic() - self._pruned > 60:
            self._pruned = time.monotonic()
            await self.db.run(_prune)

    async def _journal_loop(self) -> None:
        """Rows are numbered when inserted but seen when committed, so a row numbered below one already
        read may still come: a number skipped is a gap, looked for again for ``GAP_SECONDS`` (a rolled
        back transaction leaves one for good)."""
        gaps: dict[int, float] = {}
        while True:
            try:
                now = trio.current_time()
                for jid in [j for j, since in gaps.items() if now - since > GAP_SECONDS]:
                    del gaps[jid]
                rows = await self.db.read(journal.read_since, self.cursor, self.msid, gaps=list(gaps)[:500])
            except Exception:
                log.exception("reading the change journal failed; trying again")
                rows = []
            for jid, deltas in rows:
                if jid in gaps:
                    del gaps[jid]
                else:
                    for missing in range(self.cursor + 1, jid) if self.cursor else ():
                        gaps.setdefault(missing, trio.current_time())
                    self.cursor = max(self.cursor, jid)
                if deltas:
                    for listener in self.db.remote_listeners:
                        try:
                            listener(jid, deltas)
                        except Exception:
                            log.exception("a change journal listener failed")
            if len(rows) < 2000:
                await trio.sleep(self.journal_poll)


GAP_SECONDS = 10.0


def _shape(live: dict[int, Member]) -> dict[int, tuple[str, int, int, str]]:
    return {k: (m.address, m.agent_port, m.peer_port, m.version) for k, m in live.items()}


def _prune(conn: Any) -> int:
    return journal.prune(conn, members.db_now(conn) - JOURNAL_KEPT)
