"""HA: when a host goes Down, its VMs come back elsewhere, and never run twice.

The agent manager decides Down (``mgmt/agents/manager.py``: a neighbour watched the host's heartbeat on
shared storage stand still, and its disks unwritten). Then, here:

1. ``enqueue_host``: one ``ha_work`` item per VM that ran there: HA VMs (``ha_enabled``) to restart,
   the others to mark Stopped; an alert. The queue is a table: work survives a restart of this server.
2. Each item, before anything else, needs the host fenced: a neighbour that shares a pool with it
   marks it fenced there and confirms its heartbeat stays still (``FenceCommand``); a host that sees
   the mark stops its guests. No neighbour can confirm: the item waits and tries again (never forced).
   A host that came back Up before it was fenced was not dead: its VMs are left alone.
3. The VM is marked Stopped (its compute on the dead host given back), then, for HA VMs, started as a
   job of its own (``haRestartVirtualMachine``, queued behind any job on the VM) through the usual start
   path: the planner leaves out the Down host; QEMU's image lock refuses a disk another QEMU still
   writes, and such a start fails and is retried later.
4. A failed item is retried with a doubling delay up to ``ha.restart.attempts``, then Failed with an
   alert. Every step is an event.

An HA VM that a host reports powered off while it should run (``follow_power_reports``) gets a restart
item too, without fencing (its host said so itself).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import trio
from sqlalchemy.engine import Connection

from protocol.messages import FenceAnswer, FenceCommand, HeartbeatPoolTO

from ..agents.host_status import Status
from ..agents.manager import HaLink
from ..db.schema import storage_pools, vms, volumes
from ..errors import AgentUnavailable, CumuloError, OperationTimedOut
from ..jobs.runner import SUCCEEDED, JobOwner
from ..services import events
from ..services.caller import ROOT_ADMIN, Caller
from ..services.capacity import zone_figures
from . import work
from .alerts import CPU, MEMORY, NAMES, STORAGE_ALLOCATED, USERVM, raise_alert

if TYPE_CHECKING:
    from ..agents.manager import AgentManager
    from ..db.database import Database
    from ..jobs.runner import JobRunner
    from ..orchestration.engine import Orchestrator

log = logging.getLogger(__name__)
POOLS_REFRESH = 5.0  # seconds between reads of the shared pools (hosts heartbeat on them)
CAPACITY_CHECK = 60.0  # seconds between checks of the zones' capacity against the alert thresholds
SYSTEM = Caller(user_id=1, account_id=1, account_type=ROOT_ADMIN, secret_key="", username="system")


@dataclass(frozen=True)
class HaSettings:
    heartbeat_interval: float = 2.0  # ha.heartbeat.interval
    window: float = 6.0  # ha.heartbeat.window
    investigate_interval: float = 10.0  # ha.investigate.interval
    restart_attempts: int = 5  # ha.restart.attempts
    restart_backoff: float = 5.0  # ha.restart.backoff: seconds before the first retry, doubled each time
    workers: int = 8  # ha.workers: items worked at once
    # capacity type -> the allocated fraction of a zone past which an alert is raised
    thresholds: tuple[tuple[int, float], ...] = ((MEMORY, 0.75), (CPU, 0.75), (STORAGE_ALLOCATED, 0.75))
    cpu_factor: float = 1.0
    mem_factor: float = 1.0

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> HaSettings:
        return cls(
            heartbeat_interval=float(values.get("ha.heartbeat.interval", 2.0)),
            window=float(values.get("ha.heartbeat.window", 6.0)),
            investigate_interval=float(values.get("ha.investigate.interval", 10.0)),
            restart_attempts=int(values.get("ha.restart.attempts", 5)),
            restart_backoff=float(values.get("ha.restart.backoff", 5.0)),
            workers=int(values.get("ha.workers", 8)),
            thresholds=(
                (MEMORY, float(values.get("cluster.memory.allocated.capacity.notificationthreshold", 0.75))),
                (CPU, float(values.get("cluster.cpu.allocated.capacity.notificationthreshold", 0.75))),
                (STORAGE_ALLOCATED,
                 float(values.get("pool.storage.allocated.capacity.notificationthreshold", 0.75))),
            ),
            cpu_factor=float(values.get("cpu.overprovisioning.factor", 1.0)),
            mem_factor=float(values.get("mem.overprovisioning.factor", 1.0)),
        )


class Retry(Exception):
    """This attempt could not finish the item; it is tried again later."""


def _now() -> datetime:
    return datetime.now(UTC)


def _capacity_alert(conn: Connection, kind: int, text: str) -> None:
    raise_alert(conn, kind, text, now=_now())


def _shared_pools(conn: Connection) -> list[tuple[int, int | None, HeartbeatPoolTO]]:
    rows = conn.execute(sa.select(storage_pools.c.uuid, storage_pools.c.path, storage_pools.c.pool_type,
                                  storage_pools.c.zone_id, storage_pools.c.cluster_id, storage_pools.c.scope)
                        .where(storage_pools.c.removed.is_(None), storage_pools.c.scope != "HOST"))
    return [(r.zone_id, r.cluster_id if r.scope == "CLUSTER" else None,
             HeartbeatPoolTO(pool_uuid=r.uuid, path=r.path, type=r.pool_type)) for r in rows]


def _disks_of(conn: Connection, host_id: int) -> tuple[str, ...]:
    return tuple(p for p in conn.scalars(
        sa.select(volumes.c.path)
        .join(vms, vms.c.id == volumes.c.vm_id)
        .join(storage_pools, storage_pools.c.id == volumes.c.pool_id)
        .where(vms.c.host_id == host_id, vms.c.removed.is_(None), volumes.c.removed.is_(None),
               storage_pools.c.scope != "HOST", volumes.c.path != "")
        .limit(64)) if p)


class HaManager:
    def __init__(self, db: Database, msid: int, agents: AgentManager, orchestrator: Orchestrator,
                 jobs: JobRunner, settings: HaSettings | None = None) -> None:
        self.db, self.msid, self.agents, self.orchestrator, self.jobs = db, msid, agents, orchestrator, jobs
        self.settings = settings or HaSettings()
        self._pools: list[tuple[int, int | None, HeartbeatPoolTO]] = []
        self._pools_read = 0.0
        self._down: set[int] = set()
        self._wake = trio.Event()
        self._working: set[int] = set()
        self._powered_off: list[int] = []
        self._fencing: dict[int, trio.Lock] = {}  # one fence per host at a time, for all its items
        self._fence_failed: dict[int, tuple[float, str]] = {}  # host -> (when, why) its last fence failed
        self._past: set[tuple[str, int]] = set()  # (zone uuid, capacity type) alerted and still past
        self._capacity_checked = 0.0
        # Hosts a previous run left Disconnected are first looked at after three ping timeouts: agents
        # reconnect with backoff, and a storm of thousands takes a while (none of them must go Alert).
        self._lost_checked = time.monotonic() + max(
            0.0, 3 * agents.ping_interval * agents.ping_timeout - self.settings.investigate_interval)
        self.restarted = 0  # VMs HA started again (for tests and benchmarks)
        agents.ha = HaLink(self.heartbeat_pools, self.disks, self.facts, self.settings.heartbeat_interval,
                           self.settings.window, self.settings.investigate_interval)
        agents.status_listeners.append(self.host_changed)
        orchestrator.power_off_listeners.append(self.vm_powered_off)

    # --- what the agent manager asks --------------------------------------------------------------------

    def heartbeat_pools(self, zone_id: int, cluster_id: int) -> tuple[HeartbeatPoolTO, ...]:
        """The shared pools a host of that zone and cluster writes its heartbeat on."""
        return tuple(p for z, c, p in self._pools if z == zone_id and c in (None, cluster_id))

    async def disks(self, host_id: int) -> tuple[str, ...]:
        return await self.db.read(_disks_of, host_id)

    async def facts(self, host_id: int) -> tuple[str, int, int, str] | None:
        return await self.db.read(work.host_facts, host_id)

    async def refresh_pools(self) -> None:
        """Read the shared pools again; when they changed, connected hosts learn where to heartbeat."""
        pools = await self.db.read(_shared_pools)
        changed = pools != self._pools
        self._pools, self._pools_read = pools, time.monotonic()
        if changed:
            await self.agents.refresh_heartbeats()

    # --- events -------------------------------------------------------------------------------------------

    def host_changed(self, host_id: int, status: Status) -> None:
        if status is Status.DOWN:
            self._down.add(host_id)
            self._wake.set()

    def vm_powered_off(self, vm_id: int, ha_enabled: bool) -> None:
        """A VM its host reported off while it should run (now Stopped): HA VMs start again."""
        if ha_enabled:
            self._powered_off.append(vm_id)
            self._wake.set()

    # --- the loop -----------------------------------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await self.refresh_pools()
        limiter = trio.CapacityLimiter(max(1, self.settings.workers))
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                self._wake = trio.Event()
                wait = 1.0
                try:
                    wait = await self._round(nursery, limiter)
                except Exception:  # the database failed us: log it, the next round tries again
                    log.exception("HA round failed; trying again")
                with trio.move_on_after(wait):  # new work wakes it; due work is looked for at least once
                    await self._wake.wait()

    async def _round(self, nursery: trio.Nursery, limiter: trio.CapacityLimiter) -> float:
        """Enqueue what happened, start the items that are due; seconds until the next is due (<= 1)."""
        if time.monotonic() - self._pools_read > POOLS_REFRESH:
            await self.refresh_pools()
        if time.monotonic() - self._capacity_checked > CAPACITY_CHECK:
            await self.check_capacity()
        if time.monotonic() - self._lost_checked > self.settings.investigate_interval:
            self._lost_checked = time.monotonic()
            grace = self.agents.ping_interval * self.agents.ping_timeout
            before = _now() - timedelta(seconds=grace)
            for host_id in await self.db.read(work.unreachable_hosts, before, self.msid):
                self.agents.investigate_soon(host_id)
        await self._enqueue()
        now = _now()
        for item in await self.db.read(work.due, now, 100):
            if item.id in self._working:
                continue
            if await self.db.run(work.claim, item.id, self.msid, now):
                self._working.add(item.id)
                nursery.start_soon(self._work, item, limiter)
        nxt = await self.db.read(work.next_due)
        if nxt is None:
            return 1.0
        if nxt.tzinfo is None:  # SQLite keeps no offset: every stamp is written in UTC
            nxt = nxt.replace(tzinfo=UTC)
        return min(1.0, max(0.05, (nxt - _now()).total_seconds()))

    async def check_capacity(self) -> int:
        """Raise an alert for each zone's capacity that went past its notification threshold (once,
        until it falls below again); how many were raised."""
        self._capacity_checked = time.monotonic()
        s = self.settings
        figures = await self.db.read(zone_figures, s.cpu_factor, s.mem_factor, "")
        limits = dict(s.thresholds)
        raised = 0
        for f in figures:
            if f.type not in limits or not f.total:
                continue
            key = (f.zone_uuid, f.type)
            if f.used / f.total < limits[f.type]:
                self._past.discard(key)
            elif key not in self._past:
                self._past.add(key)
                raised += 1
                text = (f"{NAMES[f.type]} of zone {f.zone_name}: {f.percent_used:.1f}% allocated, past the "
                        f"{100 * limits[f.type]:.0f}% threshold")
                await self.db.run(_capacity_alert, f.type, text)
        return raised

    async def _enqueue(self) -> None:
        down, self._down = self._down, set()
        for host_id in down:
            restarts, stops = await self.db.run(work.enqueue_host, host_id, _now())
            log.warning("host down: %d HA VM(s) to restart, %d other(s) to stop", restarts, stops,
                        extra={"host_id": host_id})
            await events.record(self.db, SYSTEM, "HA.HOST.DOWN", f"host {host_id} is down: {restarts} HA "
                                f"VM(s) to restart, {stops} other VM(s) to stop", resource_type="Host")
        powered_off, self._powered_off = self._powered_off, []
        for vm_id in powered_off:
            await self.db.run(work.enqueue_vm, vm_id, "powered off behind the server's back", _now())

    async def _work(self, item: Any, limiter: trio.CapacityLimiter) -> None:
        try:
            await self._work_once(item, limiter)
        except Exception:  # writing the outcome failed (the database): the item is worked again after
            # the next restart (it stays Running); the HA loop, and the server, go on
            log.exception("HA item %d: its outcome was not written", item.id, extra={"vm_id": item.vm_id})

    async def _work_once(self, item: Any, limiter: trio.CapacityLimiter) -> None:
        # Fencing waits on the host (one fence for all its items, every Down host at once); only the
        # stop and the start take one of the ha.workers places.
        try:
            outcome = await self._do(item, limiter)
            await self.db.run(self._ended, item, work.DONE, outcome, item.attempts,
                              f"HA {item.kind.lower()} of VM {item.vm_id}: {outcome}")
        except (Retry, CumuloError) as e:
            attempts = item.attempts + 1
            if attempts >= self.settings.restart_attempts:
                text = f"HA {item.kind.lower()} of VM {item.vm_id} failed after {attempts} attempts: {e}"
                await self.db.run(self._ended, item, work.FAILED, str(e), attempts, text)
            else:
                delay = self.settings.restart_backoff * 2 ** (attempts - 1)
                await self.db.run(work.retry, item.id, attempts, delay, str(e), _now())
                log.warning("HA %s of VM %d: attempt %d failed (%s); again in %.0f s", item.kind,
                            item.vm_id, attempts, e, delay, extra={"vm_id": item.vm_id})
        except Exception as e:  # a bug: the item goes back for another try, the loop lives on
            log.exception("HA work on VM %d failed unexpectedly", item.vm_id, extra={"vm_id": item.vm_id})
            await self.db.run(work.retry, item.id, item.attempts + 1, self.settings.restart_backoff,
                              repr(e), _now())
        finally:
            self._working.discard(item.id)
            self._wake.set()

    def _ended(self, conn: Connection, item: Any, state: str, outcome: str, attempts: int, text: str) -> None:
        """The item's end, its event and (when it failed) its alert: one transaction."""
        work.finish(conn, item.id, state, outcome if state == work.FAILED else "", _now(), attempts=attempts)
        failed = state == work.FAILED
        events.insert(conn, SYSTEM, "HA.VM.RESTART" if item.kind == work.RESTART else "HA.VM.STOP", text,
                      "Error" if failed else "Completed", "VirtualMachine", work.vm_uuid(conn, item.vm_id),
                      None)
        if failed:
            raise_alert(conn, USERVM, f"HA could not {item.kind.lower()} VM {item.vm_id} after {attempts} "
                        f"attempts: {outcome}", now=_now())

    async def _do(self, item: Any, limiter: trio.CapacityLimiter) -> str:
        """Work one item; what was done. Raises Retry (or a CumuloError) to try again later."""
        vm = await self.db.read(work.vm_state, item.vm_id)
        if vm is None:
            return "the VM is gone"
        if item.host_id is not None:
            async with self._fencing.setdefault(item.host_id, trio.Lock()):
                host = await self.db.read(work.host_state, item.host_id)
                if host is not None and host[1] is None:  # not fenced yet (another item may have)
                    if host[0] == Status.UP and vm[1] == item.host_id:
                        return "its host came back before it was fenced: the VM was left where it runs"
                    await self._fence(item.host_id)
        async with limiter:
            return await self._stop_and_start(item)

    async def _stop_and_start(self, item: Any) -> str:
        stopped = await self.db.run(work.stop_on_dead_host, item.vm_id, item.host_id)
        if item.kind == work.STOP:
            return "marked Stopped" if stopped else "it was not running there any more"
        now_vm = await self.db.read(work.vm_state, item.vm_id)
        state, ha_enabled = (now_vm[0], now_vm[2]) if now_vm is not None else ("", False)
        if state != "Stopped":
            return f"nothing to do: it is {state}"
        if not ha_enabled:
            return "HA was turned off for it meanwhile: left Stopped"
        await self._restart(item.vm_id)
        self.restarted += 1
        return "started again"

    async def _fence(self, host_id: int) -> None:
        failed = self._fence_failed.get(host_id)
        if failed is not None and time.monotonic() - failed[0] < self.settings.restart_backoff:
            raise Retry(failed[1])  # its other items do not each wait for a fence that just failed
        try:
            await self._fence_once(host_id)
            self._fence_failed.pop(host_id, None)
        except Retry as e:
            self._fence_failed[host_id] = (time.monotonic(), str(e))
            raise

    async def _fence_once(self, host_id: int) -> None:
        await self.agents.learn(host_id)
        guid = self.agents.hosts.get(host_id, ("", 0, ""))[0]
        window = self.settings.window
        why = "no neighbour connected to ask"
        for neighbour in self.agents.neighbours(host_id, 3):
            try:
                answer = (await self.agents.send(neighbour, [FenceCommand(host_guid=guid, window=window)],
                                                 timeout=2 * window + 30))[0]
            except (AgentUnavailable, OperationTimedOut) as e:
                why = str(e)
                continue
            if isinstance(answer, FenceAnswer) and answer.fenced:
                await self.db.run(work.mark_fenced, host_id, _now())
                log.warning("host fenced: %s", answer.details, extra={"host_id": host_id})
                await events.record(self.db, SYSTEM, "HA.HOST.FENCE",
                                    f"host {host_id} fenced by host {neighbour}: {answer.details}",
                                    resource_type="Host")
                return
            why = answer.details or "the neighbour could not fence it"
        raise Retry(f"host {host_id} could not be fenced: {why}")

    async def _restart(self, vm_id: int) -> None:
        async def start() -> dict[str, Any]:
            await self.orchestrator.start(vm_id)
            return {"success": True}

        job_id = await self.jobs.submit("haRestartVirtualMachine", start, owner=JobOwner(1, 1),
                                        instance_type="VirtualMachine", instance_id=vm_id)
        row = await self.jobs.wait(job_id)
        if row.status != SUCCEEDED:
            raise Retry(f"the start failed: {row.result or 'no result'}")
