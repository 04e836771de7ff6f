"""The planner inside the running server: the one owner of its indexes, loaded from the database and
kept current.

Capacity changes reach the index one way only: as typed deltas (``deltas.py``) that the transaction
writing them recorded, handed to ``apply`` by the database after the commit, numbered by the commit
sequence. Reads of the database (the full load at start-up, after inventory changes and every
``resync_seconds``; the re-read of a host that connected) take a snapshot that says which commits it
saw (``Database.snapshot``); deltas committed after it, already applied to the index being replaced,
are laid over the snapshot again, and deltas it already contains are not applied twice. Host status
(Up or not) comes from the agent manager (``host_changed``) and wins over what a read said.

On SQLite the index is exact; on PostgreSQL (several servers) it is a hint between resyncs and the
database's conditional reservations stay the arbiter (``capacity.reserve``).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import trio

from ..agents.host_status import Status
from ..agents.registry import HostStatusChanged
from ..db import journal
from ..db.database import Database
from ..tasks import supervised
from . import loader
from .capacity import Limits
from .deltas import Delta, HostAllocated, HostEnabled, InventoryChanged, PoolAllocated, TemplateCopied, record
from .index import CapacityIndex
from .kernel import Kernel
from .model import Avoid, DeploymentPlan, Destination, Explanation, VmProfile
from .planner import Planner, PlannerSettings
from .pools import PoolIndex

log = logging.getLogger(__name__)


class Placement:
    def __init__(
        self,
        db: Database,
        values: Mapping[str, Any],
        *,
        kernel: Kernel | None = None,
        resync_seconds: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        self.db = db
        self.settings = PlannerSettings.from_values(values)
        self.cpu_factor = float(values.get("cpu.overprovisioning.factor", 1.0))
        self.mem_factor = float(values.get("mem.overprovisioning.factor", 1.0))
        self.storage_factor = float(values.get("storage.overprovisioning.factor", 2.0))
        self.kernel = kernel
        self.rng = rng
        self.resync_seconds = resync_seconds
        self.planner = Planner(CapacityIndex(), PoolIndex(), self.settings, kernel=kernel, rng=rng)
        self._pending: set[int] = set()
        # the latest status this server's agent manager reported per host, while no peer has written
        # the host's status since (then the database has the last word)
        self._status: dict[int, Status] = {}
        self._suspect: set[int] = set()  # hosts gone silent: out of placement whatever their status
        self.reloads = 0  # batches of hosts read again from the database (tests wait on it)
        self.skipped: dict[int, str] = {}  # hosts the index cannot hold, with the reason
        self._dropped_warned: dict[int, set[str]] = {}  # tags left out of the index, said once
        self._wake = trio.Event()
        # Which commits the index reflects: everything up to _loaded (the last full read), and for a
        # host read again on its own, up to _host_read[host].
        self._loaded = 0
        self._pools_loaded = 0
        self._host_read: dict[int, int] = {}
        self._journal: list[tuple[int, Sequence[Delta]]] = []  # applied while a read was in flight
        self._reading = 0
        # Several servers: the peers' deltas, by change-journal row. A read says the newest row it saw
        # (its mark); a peer's delta at or below the mark of the read that filled a host is in it already.
        self._mark = 0
        self._pools_mark = 0
        self._host_mark: dict[int, int] = {}
        self._remote_journal: list[tuple[int, Sequence[Delta]]] = []  # peers' deltas during a read
        self.remote_applied = 0  # peers' deltas applied (for tests and metrics)
        self._refreshing: trio.Event | None = None
        self._nursery: trio.Nursery | None = None
        self._refreshed = -float("inf")
        db.commit_listeners.append(self.apply)
        db.remote_listeners.append(self.apply_remote)

    # --- reading the database ---------------------------------------------------------------------

    async def load(self) -> None:
        """Read every host and pool again and swap the new indexes in."""
        self._reading += 1
        try:
            seq, (index, pools, mark) = await self.db.snapshot(self._load)
        finally:
            self._reading -= 1
        self.planner.index, self.planner.pools = index, pools
        self._loaded = self._pools_loaded = seq
        self._mark = self._pools_mark = mark
        self._host_mark = {}
        for jid, deltas in self._remote_journal:
            if jid > mark:
                self._apply_remote(jid, deltas)
        # Hosts read on their own after this snapshot went into the index just replaced: read again.
        newer = [h for h, s in self._host_read.items() if s > seq]
        self._host_read = {}
        if newer:
            self._pending.update(newer)
            self._wake.set()
        for later, deltas in self._journal:
            if later > seq:
                self._apply(later, deltas)
        self._end_read()
        self._overlay(self._status)

    def _end_read(self) -> None:
        if not self._reading:
            self._journal.clear()
            self._remote_journal.clear()

    def _mark_of(self, conn: Any) -> int:
        return journal.mark(conn) if self.db.journal_msid is not None else 0

    def _overlay(self, host_ids: Collection[int]) -> None:
        """Status changes reported while the database was being read win over what it said then."""
        index = self.planner.index
        for host_id in {*host_ids, *self._suspect}:
            status = self._status.get(host_id)
            if status is not None and host_id in index.position:
                index.set_flags(host_id, up=status is Status.UP and host_id not in self._suspect)

    def _load(self, conn: Any) -> tuple[CapacityIndex, PoolIndex, int]:
        mark = self._mark_of(conn)
        index = CapacityIndex()
        self._index_hosts(index, loader.host_facts(conn, self.cpu_factor, self.mem_factor))
        return index, loader.load_pools(conn), mark

    def _read_hosts(self, conn: Any, ids: list[int]) -> tuple[int, list[Any]]:
        return self._mark_of(conn), loader.host_facts(conn, self.cpu_factor, self.mem_factor, ids)

    def _read_pools(self, conn: Any) -> tuple[int, PoolIndex]:
        return self._mark_of(conn), loader.load_pools(conn)

    def _index_hosts(self, index: CapacityIndex, facts: Sequence[Any]) -> None:
        """Add each host to the index; one the index cannot hold is skipped with its reason logged."""
        for host, cpu, mem in facts:
            try:
                index.set_host(host, cpu_factor=cpu, mem_factor=mem)
            except ValueError as e:
                if self.skipped.get(host.host_id) != str(e):
                    log.error("host left out of placement: %s", e, extra={"host_id": host.host_id})
                self.skipped[host.host_id] = str(e)
            else:
                self.skipped.pop(host.host_id, None)
            dropped = index.dropped_tags.get(host.host_id)
            if dropped and self._dropped_warned.get(host.host_id) != dropped:
                self._dropped_warned[host.host_id] = set(dropped)
                log.warning("host tags %s not indexed: the cloud has more than 64 distinct host tags; VMs "
                            "asking for them will not be placed on this host", sorted(dropped),
                            extra={"host_id": host.host_id})

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Load, then keep current: new hosts as they are reported, everything every resync period."""
        await self.load()
        task_status.started()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(supervised, "placement resync", self._resync)
            nursery.start_soon(supervised, "placement host reads", self._read_reported_hosts)

    async def _read_reported_hosts(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            ids, self._pending = sorted(self._pending), set()
            self._reading += 1
            try:
                seq, (mark, facts) = await self.db.snapshot(self._read_hosts, ids)
            except BaseException:
                self._pending.update(ids)  # read them next time
                raise
            finally:
                self._reading -= 1
            index = self.planner.index
            self._index_hosts(index, facts)
            read = {host.host_id for host, _, _ in facts}
            for host_id in read:
                self._host_read[host_id] = max(seq, self._host_read.get(host_id, 0))
                self._host_mark[host_id] = max(mark, self._host_mark.get(host_id, 0))
            for later, deltas in self._journal:
                if later > seq:
                    self._apply(later, [d for d in deltas if getattr(d, "host_id", None) in read])
            for jid, deltas in self._remote_journal:
                if jid > mark:
                    self._apply_remote(jid, [d for d in deltas if getattr(d, "host_id", None) in read])
            self._end_read()
            self._overlay(ids)
            self.reloads += 1
            if any(host_id not in self.planner.pools.by_host for host_id in read):
                await self._load_pools()  # their local pools

    async def _load_pools(self) -> None:
        self._reading += 1
        try:
            seq, (mark, pools) = await self.db.snapshot(self._read_pools)
        finally:
            self._reading -= 1
        self.planner.pools = pools
        self._pools_loaded = seq
        self._pools_mark = mark
        for later, deltas in self._journal:
            if later > seq:
                self._apply(later, [d for d in deltas if isinstance(d, PoolAllocated | TemplateCopied)])
        for jid, deltas in self._remote_journal:
            if jid > mark:
                self._apply_remote(jid, [d for d in deltas if isinstance(d, PoolAllocated | TemplateCopied)])
        self._end_read()

    async def inventory_changed(self) -> None:
        """This server changed the inventory (hosts, clusters, pools, tags): read the index again, and
        have the peers do so."""
        await self.load()
        if self.db.journal_msid is not None:
            await self.db.run(record, InventoryChanged())

    async def refresh(self) -> bool:
        """Several servers: the index is a hint, and one that found no host may only be behind a peer's
        news (a host that came Up there a moment ago). Read the database again, at most once a second
        however many plans ask: a plan arriving within the second of the last read waits for the next
        one (that read may have come before the news) rather than giving up. False when it is not worth
        it: one server, whose index is exact."""
        if self.db.journal_msid is None:
            return False
        while True:
            if self._refreshing is not None:
                await self._refreshing.wait()
                return True
            wait = self._refreshed + 1.0 - trio.current_time()
            if wait <= 0:
                break
            await trio.sleep(wait)  # (rate: one read a second)
        self._refreshing = trio.Event()
        try:
            await self.load()
        finally:
            self._refreshed = trio.current_time()
            self._refreshing.set()
            self._refreshing = None
        return True
        if trio.current_time() - self._refreshed < 1.0:
            return False
        self._refreshing = trio.Event()
        try:
            await self.load()
        finally:
            self._refreshed = trio.current_time()
            self._refreshing.set()
            self._refreshing = None
        return True

    async def _reload_for_peer(self) -> None:
        try:
            await self.load()
        except Exception:
            log.exception("placement index reload (a peer changed the inventory) failed; the resync "
                          "reads it again")

    async def _resync(self) -> None:
        while True:
            await trio.sleep(self.resync_seconds)
            try:
                await self.load()
            except Exception:
                log.exception("placement index resync failed; keeping the current one")

    # --- changes ---------------------------------------------------------------------------------

    def host_changed(self, host_id: int, status: Status, *, remote: bool = False) -> None:
        """From the agent manager: a host's status was written (``remote``: by a peer's, through the
        change journal)."""
        if remote:
            # A peer's delta can come after this server's own newer change of the host, and this
            # server's last report can be older than the peer's (the journal is read a moment later: a
            # host that moved between two servers is heard Up from one, then Disconnected from the
            # other). Neither may stick: the host is read again from the database, which has the last
            # word, and no report of this server's overrides that read.
            self._status.pop(host_id, None)
        else:
            self._status[host_id] = status
        if host_id in self.planner.index.position:
            self.planner.index.set_flags(host_id, up=status is Status.UP and host_id not in self._suspect)
            if status is not Status.CONNECTING and not remote:
                return
        self._pending.add(host_id)  # new, or reconnected (its facts may have changed): read it
        self._wake.set()

    def host_suspect(self, host_id: int, suspect: bool) -> None:
        """From the agent manager: the host went silent (out of placement at once) or was heard again."""
        (self._suspect.add if suspect else self._suspect.discard)(host_id)
        if host_id in self.planner.index.position:
            status = self._status.get(host_id)
            if suspect or status is not None:
                self.planner.index.set_flags(host_id, up=not suspect and status is Status.UP)
            else:  # heard again, and the last word on its status is a peer's: the database says
                self._pending.add(host_id)
                self._wake.set()

    def apply(self, seq: int, deltas: Sequence[Delta]) -> None:
        """From the database, after a commit: the capacity changes that transaction made."""
        self._apply(seq, deltas)
        if self._reading:
            self._journal.append((seq, deltas))

    def apply_remote(self, jid: int, deltas: Sequence[Any]) -> None:
        """From the change journal: the capacity changes a peer's transaction (journal row ``jid``) made,
        and the statuses its agent manager wrote."""
        if any(isinstance(d, InventoryChanged) for d in deltas) and self._nursery is not None:
            self._nursery.start_soon(self._reload_for_peer)
        for d in deltas:
            if isinstance(d, HostStatusChanged):
                try:
                    status = Status(d.status)
                except ValueError:
                    continue
                self.host_changed(d.host_id, status, remote=True)
        mine = [d for d in deltas
                if isinstance(d, HostAllocated | HostEnabled | PoolAllocated | TemplateCopied)]
        if mine:
            self._apply_remote(jid, mine)
            if self._reading:
                self._remote_journal.append((jid, mine))

    def _apply_remote(self, jid: int, deltas: Sequence[Delta]) -> None:
        fresh = [d for d in deltas
                 if jid > (max(self._mark, self._host_mark.get(d.host_id, 0))
                           if isinstance(d, HostAllocated | HostEnabled) else self._pools_mark)]
        self.remote_applied += len(fresh)
        self._apply(0, fresh, remote=True)

    def _apply(self, seq: int, deltas: Sequence[Delta], *, remote: bool = False) -> None:
        index, pools = self.planner.index, self.planner.pools
        for d in deltas:
            if isinstance(d, HostAllocated | HostEnabled):
                if not remote and seq <= max(self._loaded, self._host_read.get(d.host_id, 0)):
                    continue  # the index was read after this commit: it has it already
                if isinstance(d, HostAllocated):
                    index.allocate(d.host_id, d.cpu_mhz, d.memory)
                else:
                    index.set_flags(d.host_id, enabled=d.enabled)
            elif not remote and seq <= self._pools_loaded:
                continue
            elif isinstance(d, PoolAllocated):
                pools.allocate(d.pool_id, d.nbytes)
            elif isinstance(d, TemplateCopied):
                pool = pools.pools.get(d.pool_id)
                if pool is not None and d.template_id not in pool.templates:
                    pool.templates.add(d.template_id)
                    pool.allocated += d.nbytes

    # --- asking ------------------------------------------------------------------------------------

    def plan(
        self,
        profile: VmProfile,
        plan: DeploymentPlan,
        avoid: Avoid,
        account_vms: Mapping[int, int] | None = None,
    ) -> Destination:
        return self.planner.plan(profile, plan, avoid, account_vms)

    def explain(self, profile: VmProfile, plan: DeploymentPlan, avoid: Avoid | None = None) -> Explanation:
        return self.planner.explain(profile, plan, avoid)

    def where(self, host_id: int) -> tuple[int, int] | None:
        """The pod and cluster of a host the index knows (None: it does not)."""
        ix = self.planner.index
        i = ix.position.get(host_id)
        if i is None:
            return None
        return int(ix.pod_id[i]), int(ix.cluster_id[i])

    def limits(self, host_id: int) -> Limits:
        """The over-commit limits the database applies when reserving on this host."""
        ix = self.planner.index
        i = ix.position.get(host_id)
        if i is None:
            return Limits(self.cpu_factor, self.mem_factor, self.storage_factor)
        c = ix.cluster_ix[i]
        return Limits(ix.c_cpu_factor[c], ix.c_mem_factor[c], self.storage_factor)
