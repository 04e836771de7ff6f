"""VM statistics, as CloudStack's StatsCollector gathers them: every ``vm.stats.interval`` each management
server asks the hosts whose agents it holds for the counters of the VMs running there
(``GetVmStatsCommand``, one per host, a few hosts at a time), works out each VM's CPU use from its last
two samples, and writes one row per VM in ``vm_stats`` (replaced at each collection: the table is as
large as the cloud). A host that does not answer in time is skipped until the next round.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
import trio
from sqlalchemy.engine import Connection

from protocol.messages import GetVmStatsAnswer, GetVmStatsCommand, VmStats

from .. import settings
from ..db.schema import vm_stats, vms
from ..errors import CumuloError
from ..orchestration.vm_state import State

if TYPE_CHECKING:
    from ..agents.manager import AgentManager
    from ..db.database import Database

log = logging.getLogger(__name__)
HOSTS_AT_ONCE = 16  # hosts asked at the same time
ASK_TIMEOUT = 30.0  # seconds a host has to answer


@dataclass(frozen=True)
class Sample:
    vm_id: int
    host_id: int
    stats: VmStats
    utilization: float  # percent of its vCPUs since its previous sample


def utilization(previous: tuple[int, float] | None, cpu_ns: int, vcpus: int, at: float,
                reported: float) -> float:
    """A VM's CPU use in percent of its vCPUs between two samples ``(cpu time ns, clock s)``; before a
    second sample, what the agent reported (older agents send a percentage)."""
    if previous is None or vcpus <= 0:
        return max(0.0, min(100.0, reported))
    before_ns, before_at = previous
    elapsed = at - before_at
    if elapsed <= 0 or cpu_ns < before_ns:  # the guest restarted: its counter began again
        return 0.0
    return max(0.0, min(100.0, (cpu_ns - before_ns) / (elapsed * 1e9 * vcpus) * 100.0))


def _interval(conn: Connection) -> float:
    value = settings.prefixed(conn, "vm.stats.interval").get("vm.stats.interval", 60000)
    return max(0.0, int(str(value)) / 1000)


def _running_on(conn: Connection, host_ids: list[int]) -> dict[int, list[tuple[int, str]]]:
    rows = conn.execute(sa.select(vms.c.host_id, vms.c.id, vms.c.instance_name).where(
        vms.c.host_id.in_(host_ids), vms.c.state == State.RUNNING, vms.c.removed.is_(None)))
    out: dict[int, list[tuple[int, str]]] = {}
    for host_id, vm_id, name in rows:
        out.setdefault(host_id, []).append((vm_id, name))
    return out


def _store(conn: Connection, samples: list[Sample]) -> None:
    stamp = datetime.now(UTC)
    conn.execute(vm_stats.delete().where(vm_stats.c.vm_id.in_([s.vm_id for s in samples])))
    conn.execute(vm_stats.insert(), [{
        "vm_id": s.vm_id, "host_id": s.host_id, "collected": stamp, "vcpus": s.stats.vcpus,
        "cpu_time_ns": s.stats.cpu_time_ns, "cpu_utilization": s.utilization,
        "memory_kbs": s.stats.memory_kbs, "memory_free_kbs": s.stats.memory_free_kbs,
        "memory_target_kbs": s.stats.memory_target_kbs, "disk_read_bytes": s.stats.disk_read_bytes,
        "disk_write_bytes": s.stats.disk_write_bytes, "disk_read_ios": s.stats.disk_read_ios,
        "disk_write_ios": s.stats.disk_write_ios, "net_rx_bytes": s.stats.net_rx_bytes,
        "net_tx_bytes": s.stats.net_tx_bytes} for s in samples])


_MAX = 2**63 - 1


def _checked(stats: VmStats) -> VmStats | None:
    """A host's report, None when it is not plausible (negative or past a long): an agent is not
    trusted to fill the database with nonsense."""
    counters = (stats.vcpus, stats.cpu_time_ns, stats.memory_kbs, stats.memory_free_kbs,
                stats.memory_target_kbs, stats.disk_read_bytes, stats.disk_write_bytes, stats.disk_read_ios,
                stats.disk_write_ios, stats.net_rx_bytes, stats.net_tx_bytes)
    if any(type(c) is not int or not 0 <= c <= _MAX for c in counters) or stats.vcpus > 4096:
        return None
    return stats


class VmStatsCollector:
    """The collection loop of one management server (its own hosts only)."""

    def __init__(self, db: Database, agents: AgentManager, interval: float) -> None:
        self.db, self.agents, self.interval = db, agents, interval
        self.previous: dict[int, tuple[int, float]] = {}  # VM id -> (CPU time ns, trio clock) last seen
        self.rounds = 0  # collections done (for tests and the exporter)
        self.collected = trio.Event()  # set after each round (tests wait for the next one)

    async def run(self) -> None:
        """Collect every ``vm.stats.interval`` (re-read each second, so an admin's change applies at once;
        0: no collection)."""
        while True:
            waited = 0.0
            while self.interval <= 0 or waited < self.interval:
                step = min(1.0, self.interval - waited) if self.interval > 0 else 1.0
                await trio.sleep(step)
                waited += step
                self.interval = await self.db.read(_interval)
            await self.collect()

    async def collect(self) -> int:
        """One round: ask each local host, store what came back; how many VMs were sampled."""
        host_ids = list(self.agents.hosts)
        samples: list[Sample] = []
        if host_ids:
            running = await self.db.read(_running_on, host_ids)
            limiter = trio.CapacityLimiter(HOSTS_AT_ONCE)
            async with trio.open_nursery() as nursery:
                for host_id, vm_list in running.items():
                    nursery.start_soon(self._ask, host_id, vm_list, limiter, samples)
        if samples:
            await self.db.run(_store, samples)
        seen = {s.vm_id for s in samples}
        for vm_id in [v for v in self.previous if v not in seen]:  # stopped or gone: forget it
            del self.previous[vm_id]
        self.rounds += 1
        self.collected.set()
        self.collected = trio.Event()
        return len(samples)

    async def _ask(self, host_id: int, vm_list: list[tuple[int, str]], limiter: trio.CapacityLimiter,
                   samples: list[Sample]) -> None:
        by_name = {name: vm_id for vm_id, name in vm_list}
        async with limiter:
            try:
                answers = await self.agents.send(host_id, [GetVmStatsCommand(vm_names=tuple(by_name))],
                                                 timeout=ASK_TIMEOUT, local_only=True)
            except CumuloError as e:
                log.info("host %d gave no VM statistics: %s", host_id, e)
                return
        answer = answers[0]
        if not isinstance(answer, GetVmStatsAnswer) or not answer.result:
            log.info("host %d gave no VM statistics: %s", host_id, getattr(answer, "details", answer))
            return
        at = trio.current_time()
        for name, raw in answer.stats.items():
            vm_id = by_name.get(name)
            stats = _checked(raw) if isinstance(raw, VmStats) else None
            if vm_id is None or stats is None:
                continue  # a VM it was not asked about, or nonsense
            used = utilization(self.previous.get(vm_id), stats.cpu_time_ns, stats.vcpus, at,
                               float(stats.cpu_utilization) if isinstance(stats.cpu_utilization, float | int)
                               else 0.0)
            self.previous[vm_id] = (stats.cpu_time_ns, at)
            samples.append(Sample(vm_id, host_id, stats, used))

