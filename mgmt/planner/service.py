"""The planner inside the running server: its indexes loaded from the database and kept current.

The agent manager reports host status changes (``host_changed``): a known host's Up flag flips in
place; a new host is read from the database. Reservations and releases made here are applied to the
index as they commit (``allocated``). Every ``resync_seconds`` the whole index is rebuilt from the
database in a worker thread, which also picks up what other management servers changed; the database
stays the arbiter in between (``capacity.reserve``).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Collection, Mapping
from typing import Any

import trio

from ..agents.host_status import Status
from ..db.database import Database
from . import loader
from .capacity import Limits
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
        self._status: dict[int, Status] = {}  # the latest status the agent manager reported per host
        self.reloads = 0  # batches of hosts read again from the database (tests wait on it)
        self._wake = trio.Event()

    async def load(self) -> None:
        index, pools = await self.db.read(self._load)
        self.planner.index, self.planner.pools = index, pools
        self._overlay(self._status)

    def _overlay(self, host_ids: Collection[int]) -> None:
        """Status changes reported while the database was being read win over what it said then."""
        index = self.planner.index
        for host_id in host_ids:
            status = self._status.get(host_id)
            if status is not None and host_id in index.position:
                index.set_flags(host_id, up=status is Status.UP)

    def _load(self, conn: Any) -> tuple[CapacityIndex, PoolIndex]:
        return loader.load_index(conn, self.cpu_factor, self.mem_factor), loader.load_pools(conn)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Load, then keep current: new hosts as they are reported, everything every resync period."""
        await self.load()
        task_status.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._resync)
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                ids, self._pending = sorted(self._pending), set()
                facts = await self.db.run(loader.host_facts, self.cpu_factor, self.mem_factor, ids)
                for host, cpu, mem in facts:
                    self.planner.index.set_host(host, cpu_factor=cpu, mem_factor=mem)
                self._overlay(ids)
                self.reloads += 1
                if any(host.host_id not in self.planner.pools.by_host for host, _, _ in facts):
                    self.planner.pools = await self.db.run(loader.load_pools)  # their local pools

    async def _resync(self) -> None:
        while True:
            await trio.sleep(self.resync_seconds)
            try:
                await self.load()
            except Exception:
                log.exception("placement index resync failed; keeping the current one")

    # --- changes ---------------------------------------------------------------------------------

    def host_changed(self, host_id: int, status: Status) -> None:
        """From the agent manager: a host's status was written."""
        self._status[host_id] = status
        if host_id in self.planner.index.position:
            self.planner.index.set_flags(host_id, up=status is Status.UP)
            if status is not Status.CONNECTING:
                return
        self._pending.add(host_id)  # new, or reconnected (its facts may have changed): read it
        self._wake.set()

    def allocated(self, host_id: int, cpu_mhz: int, memory: int) -> None:
        """Compute was reserved on (positive) or released from (negative) a host."""
        self.planner.index.allocate(host_id, cpu_mhz, memory)

    def pool_allocated(self, pool_id: int, nbytes: int) -> None:
        self.planner.pools.allocate(pool_id, nbytes)

    def template_copied(self, pool_id: int, template_id: int, nbytes: int) -> None:
        pool = self.planner.pools.pools.get(pool_id)
        if pool is not None and template_id not in pool.templates:
            pool.templates.add(template_id)
            pool.allocated += nbytes

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

    def limits(self, host_id: int) -> Limits:
        """The over-commit limits the database applies when reserving on this host."""
        ix = self.planner.index
        i = ix.position.get(host_id)
        if i is None:
            return Limits(self.cpu_factor, self.mem_factor, self.storage_factor)
        c = ix.cluster_ix[i]
        return Limits(ix.c_cpu_factor[c], ix.c_mem_factor[c], self.storage_factor)
