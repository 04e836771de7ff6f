"""The VM lifecycle: deploy, start, stop, reboot, destroy, recover, expunge, migrate.

Each operation checks the VM's state table first (an illegal request is refused before any side
effect), moves the VM with conditional UPDATEs, talks to agents through the agent manager, and keeps
capacity, addresses and volumes exact on every path: what an attempt took, its failure gives back.

Start, as CloudStack does it: plan (the planner's index) -> reserve (the database decides) -> root
volume on the chosen pool (the template copied there first when missing) -> the hypervisor guru's
``VirtualMachineTO`` -> ``StartCommand``. A failed attempt releases its reservation (and the volumes it
created), puts the host in the avoid set and tries again, up to ``start.retry``; when every attempt
fails the VM is Stopped with nothing held and the error names the last reason.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
import trio
from sqlalchemy.engine import Connection

from protocol.messages import (
    Answer,
    CleanupVmCommand,
    CreateAnswer,
    CreateCommand,
    DestroyCommand,
    GetVmConsoleLogAnswer,
    GetVmConsoleLogCommand,
    MigrateCommand,
    PrepareForMigrationCommand,
    PrimaryStorageDownloadAnswer,
    PrimaryStorageDownloadCommand,
    RebootCommand,
    SecurityGroupRulesCommand,
    StartCommand,
    StopCommand,
)

from .. import limits
from ..agents.manager import AgentManager
from ..catalog import Catalog, Snapshot
from ..db.database import Database
from ..db.schema import hosts, storage_pools, vms
from ..errors import AgentUnavailable, CumuloError, InsufficientCapacity, InvalidParameter, OperationTimedOut
from ..network import lifecycle, nics, security
from ..planner import capacity
from ..planner.capacity import Ask, ReservationLost
from ..planner.model import Avoid, DeploymentPlan, Destination, NoDestination, VmProfile
from ..planner.service import Placement
from ..storage import tuning, volumes
from . import guru, reconcile
from . import vms as vm_rows
from .vm_state import Event, State
from .vms import DeploySpec, VmRecord, now

log = logging.getLogger(__name__)
DEPLOY_LIMITS = (limits.T.INSTANCE, limits.T.CPU, limits.T.MEMORY, limits.T.VOLUME, limits.T.PRIMARY_STORAGE)


class OperationFailed(CumuloError):
    """An agent refused or failed the operation; the message carries its reason."""

    error_code, cs_error_code = 530, 4250


class _AttemptFailed(Exception):
    def __init__(self, reason: str, created: dict[int, str] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.created = created or {}  # volume id -> path of the volumes it made, not recorded yet


@dataclass
class OrchestrationSettings:
    start_retry: int = 10  # start.retry
    agent_wait: float = 1800.0  # wait: seconds for an agent's answer
    stop_wait: float = 120.0  # a graceful stop's deadline
    skip_counting: float = 3600.0  # capacity.skipcounting.hours (seconds, as CloudStack reads it)
    expunge_delay: float = 86400.0  # expunge.delay
    expunge_interval: float = 86400.0  # expunge.interval
    network_gc_interval: float = 600.0  # network.gc.interval

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> OrchestrationSettings:
        return cls(
            start_retry=int(values.get("start.retry", 10)),
            agent_wait=float(values.get("wait", 1800)),
            skip_counting=float(values.get("capacity.skipcounting.hours", 3600)),
            expunge_delay=float(values.get("expunge.delay", 86400)),
            expunge_interval=float(values.get("expunge.interval", 86400)),
            network_gc_interval=float(values.get("network.gc.interval", 600)),
        )


@dataclass
class Admission:
    """A deploy's first start as admit decided and wrote it, in the transaction that made the VM: the
    reserved destination, the VM as it then stood (Starting, its new volumes Creating on the chosen
    pool), those volumes' ids, the pool, the template's copy there ('' when it must be copied first)
    and the host's hypervisor type."""

    dest: Destination
    vm: VmRecord
    fresh: list[int]
    pool: Any
    template_path: str
    host_type: str


@dataclass(frozen=True)
class Scope:
    """Where a start may place the VM (0: anywhere at that level): admins' podid and clusterid."""

    pod_id: int = 0
    cluster_id: int = 0
    algorithm: str = ""  # the planner's algorithm for this start ("": the VM's offering's)


@dataclass(frozen=True)
class Tentative:
    """Where admit will try to reserve a new VM (planned on the event loop, before the transaction)."""

    dest: Destination
    limits: capacity.Limits
    profile: VmProfile
    anti_affinity_groups: tuple[int, ...]


class Orchestrator:
    def __init__(
        self,
        db: Database,
        agents: AgentManager,
        placement: Placement,
        settings: OrchestrationSettings | None = None,
        *,
        busy: Callable[[], Collection[int]] = frozenset,
        catalog: Catalog | None = None,
    ) -> None:
        self.db = db
        self.catalog = catalog or Catalog(db)
        self.agents = agents
        self.placement = placement
        self.settings = settings or OrchestrationSettings()
        self.busy = busy  # ids of the VMs a job holds: the power-report follower leaves them alone
        # called with (VM id, whether it has HA) when a VM powered off behind the server's back
        self.power_off_listeners: list[Callable[[int, bool], None]] = []

    # --- background work -------------------------------------------------------------------------------

    async def run_background(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Follow power reports, end expired capacity holds, expunge destroyed VMs when due."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                self._every, max(0.2, self.agents.ping_interval / 2), self.follow_power_reports
            )
            nursery.start_soon(self._every, 60.0, self.release_expired_holds)
            nursery.start_soon(self._every, self.settings.expunge_interval, self.expunge_due)
            nursery.start_soon(self._every, self.settings.network_gc_interval, self.shutdown_idle_networks)
            task_status.started()

    async def apply_security_group(self, group_id: int) -> int:
        """Send the new rules of every running VM a change to the group touches to its host (its members,
        and the members of the groups whose rules name it); how many hosts took them. A host that is
        unreachable now gets them with the VM's next start."""
        applied = 0
        for vm_id in await self.db.read(security.affected_vms, group_id):
            vm = await self.db.read(vm_rows.load, vm_id)
            host_id = vm.row.host_id
            if vm.row.state != State.RUNNING or host_id is None:
                continue
            try:
                command = SecurityGroupRulesCommand(vm_name=vm.name, nics=guru.nics(vm))
                answer = await self._send(host_id, command, timeout=60)
            except CumuloError as e:
                log.warning("security rules of VM %s not applied on host %d: %s", vm.name, host_id, e,
                            extra={"vm_id": vm_id, "host_id": host_id})
                continue
            if answer.result:
                applied += 1
            else:
                log.warning("host %d refused the security rules of VM %s: %s", host_id, vm.name,
                            answer.details, extra={"vm_id": vm_id, "host_id": host_id})
        return applied

    async def shutdown_idle_networks(self) -> int:
        """Shut down the isolated networks no running VM uses; how many."""
        done = await self.db.run(lifecycle.shutdown_idle)
        for row in done:
            log.info("network %s shut down: VXLAN id %d released", row.uuid, row.vni)
        return len(done)

    async def _every(self, period: float, work: Callable[[], Awaitable[object]]) -> None:
        while True:
            await trio.sleep(period)
            try:
                await work()
            except Exception:
                log.exception("background %s failed; it runs again in %g s", work.__name__, period)

    async def follow_power_reports(self) -> int:
        """Apply what hosts report about VMs no job holds: off -> Stopped, stray running -> adopted."""
        busy = set(self.busy())
        changed = 0
        hold_until = now() + timedelta(seconds=self.settings.skip_counting)
        for vm_id in await self.db.read(reconcile.power_off_followers, self.agents.ping_interval, busy,
                                        self.agents.msid):
            ha_enabled = await self.db.run(reconcile.follow_power_off, vm_id, hold_until)
            if ha_enabled is not None:
                log.warning("VM powered off behind the server's back: now Stopped", extra={"vm_id": vm_id})
                changed += 1
                for listener in self.power_off_listeners:
                    listener(vm_id, ha_enabled)
        reports = self.agents.live_reports()
        for host_id, name in await self.db.read(reconcile.misplaced, reports):
            log.error("VM %s runs on host %d but belongs on another: stopping this copy", name, host_id,
                      extra={"host_id": host_id})
            with contextlib.suppress(CumuloError):
                await self._send(host_id, StopCommand(vm_name=name, forced=True), timeout=30)
            changed += 1
        for vm_id, host_id, name in await self.db.read(reconcile.stray, reports, busy):
            try:
                await self.db.run(reconcile.adopt, vm_id, host_id, self.placement.limits(host_id))
            except ReservationLost as e:
                log.warning(
                    "VM %s runs on host %d without the room for it (%s): stopping it there",
                    name,
                    host_id,
                    e,
                    extra={"vm_id": vm_id, "host_id": host_id},
                )
                with contextlib.suppress(CumuloError):
                    await self._send(host_id, StopCommand(vm_name=name, forced=True), timeout=30)
                continue
            log.warning(
                "VM found running on a host: adopted as Running", extra={"vm_id": vm_id, "host_id": host_id}
            )
            changed += 1
        return changed

    async def release_expired_holds(self) -> int:
        released = await self.db.run(capacity.release_expired_holds, now())
        return len(released)

    # --- deploy and start ----------------------------------------------------------------------------

    async def deploy(self, spec: DeploySpec, *, start: bool = True) -> int:
        """Admit the VM (rows, addresses and, to start it, a reserved destination, in one transaction)
        and, unless told not to, start it; the VM id."""
        catalog = await self.catalog.current()
        tentative = await self.plan_deploy(spec, catalog) if start else None
        vm_id, admission = await self.db.run(self.admit, spec, "", tentative, catalog)
        log.info("VM allocated", extra={"vm_id": vm_id})
        if start:
            await self.first_start(vm_id, host_id=spec.host_id, admission=admission,
                                   scope=Scope(spec.pod_id, spec.cluster_id))
        return vm_id

    # Admit, act, settle. A deploy is admitted in one transaction (the API's, with its job row): VM,
    # NICs and volumes, and, when the planner found a destination beforehand, the VM Starting with
    # its capacity reserved there and its volumes Creating on the pool. Act is one agent request
    # (Create for each new volume, then Start, stopping at the first failure) when the template is
    # on the pool already; settle is one transaction (volumes Ready, the VM Running). A reservation
    # lost to a concurrent deploy leaves the VM Stopped and the job starts it the usual way.

    async def plan_deploy(self, spec: DeploySpec, catalog: Snapshot | None = None) -> Tentative | None:
        """Plan a VM not allocated yet (on the event loop: the planner's index lives here)."""
        if catalog is not None and not spec.affinity_group_ids:  # nothing to read
            planned = vm_rows.deploy_profile(None, spec, catalog)
        else:
            planned = await self.db.read(vm_rows.deploy_profile, spec, catalog)
        if planned is None:
            return None
        profile, plan, anti = planned
        spread = (await self.db.read(vm_rows.account_hosts, spec.account_id)
                  if self.placement.settings.needs_counts(profile.algorithm) else None)
        return self.tentative(profile, plan, anti, spread)

    def tentative(self, profile: VmProfile, plan: DeploymentPlan, anti: tuple[int, ...],
                  spread: Mapping[int, int] | None = None) -> Tentative | None:
        try:
            dest = self.placement.plan(profile, plan, Avoid(), spread)
        except NoDestination:
            return None  # the job plans again and says why no host can take it
        return Tentative(dest, self.placement.limits(dest.host_id), profile, anti)

    def admit(self, conn: Connection, spec: DeploySpec, vm_uuid: str, tentative: Tentative | None,
              catalog: Snapshot | None = None) -> tuple[int, Admission | None]:
        """Allocate the VM and, given a destination, reserve it there (one transaction, the caller's;
        ``catalog``: the catalog the request was checked against)."""
        vm = vm_rows.allocate_record(conn, spec, vm_uuid=vm_uuid, catalog=catalog, name_later=True)
        vm_id = vm.id
        limits.verify(conn, spec.account_id, DEPLOY_LIMITS)  # (written: a refusal rolls the VM back)
        if tentative is None:
            vm_rows.write_name(conn, vm)
            return vm_id, None
        dest, profile = tentative.dest, tentative.profile
        try:  # lost to a concurrent reservation: nothing of it was written (reserve's ``new``)
            capacity.reserve(conn, Ask(vm_id, dest.host_id, profile.cpu_mhz, profile.cpus,
                                       profile.memory_bytes, dest.pool_id, profile.disk_bytes,
                                       tentative.anti_affinity_groups), tentative.limits, now(), new=True)
        except ReservationLost:
            vm_rows.write_name(conn, vm)
            return vm_id, None
        # Starting, and its names, in one statement.
        vm.row.state = vm_rows.transition(conn, vm_id, Event.START_REQUESTED,
                                          known=(State.STOPPED, 0, vm.name), instance_name=vm.name,
                                          display_name=vm.row.display_name)
        vm.row.update_count = 1
        vnis = lifecycle.implement(conn, [n.network_id for n in vm.nics])
        for nic in vm.nics:
            nic.vni = vnis.get(nic.network_id)
        pool = _pool(conn, dest.pool_id)
        fresh = [v.id for v in vm.volumes]
        volumes.set_states(conn, fresh, volumes.CREATING, pool_id=pool.id)
        for v in vm.volumes:  # as volumes.of_vm reads them now
            v.state, v.pool_id, v.pool_uuid, v.pool_path = volumes.CREATING, pool.id, pool.uuid, pool.path
            v.pool_scope, v.pool_cluster, v.pool_host = pool.scope, pool.cluster_id, pool.host_id
        vm.anti_affinity_groups = tentative.anti_affinity_groups
        host_type = vm.template.hypervisor_type or _hypervisor_of(conn, dest.host_id)
        return vm_id, Admission(dest, vm, fresh, pool, volumes.template_copy(conn, spec.template_id, pool.id)
                                or "", host_type)

    async def first_start(self, vm_id: int, *, host_id: int = 0, admission: Admission | None = None,
                          scope: Scope = Scope()) -> None:
        """Start a VM just allocated. As CloudStack: a deploy that could not start leaves the VM in
        Error, holding nothing (its addresses go back now; the expunge task removes it later)."""
        try:
            await self.start(vm_id, host_id=host_id, admission=admission, scope=scope, last_host=False)
        except CumuloError:
            await self.db.run(_deploy_failed, vm_id)
            raise

    async def start(self, vm_id: int, *, host_id: int = 0, admission: Admission | None = None,
                    scope: Scope = Scope(), last_host: bool = True) -> None:
        """Start a stopped VM (``admission``: its first start, already Starting with a reservation), in
        ``scope`` when given; with ``last_host``, on the host it last ran on when that host can take it
        (as CloudStack's considerlasthost), else where the planner finds room."""
        if admission is None:
            await self.db.run(vm_rows.transition, vm_id, Event.START_REQUESTED)
        try:
            if admission is None:  # (admit implemented them already)
                await self.db.run(lifecycle.implement_for_vm, vm_id)
            await self._start_attempts(vm_id, host_id, admission, scope, last_host)
        except BaseException:
            with trio.CancelScope(shield=True):
                await self.db.run(_fail_start, vm_id)
            raise
        log.info("VM running", extra={"vm_id": vm_id})
        # Its address now counts in the rules that name its groups: their VMs' hosts get them again.
        named = admission.vm.named_groups if admission is not None else None
        if named is None:
            named = tuple(await self.db.read(security.groups_named_by_rules, vm_id))
        for group_id in named:
            await self.apply_security_group(group_id)

    async def _start_attempts(self, vm_id: int, host_id: int, admission: Admission | None = None,
                              scope: Scope = Scope(), last_host: bool = False) -> None:
        avoid = Avoid()
        try_last = last_host and not host_id
        last = "no attempt was made"
        failed = ""  # the last attempt's own failure
        attempts = races = 0
        refreshed = False
        while attempts < max(1, self.settings.start_retry):
            if admission is not None:  # the first attempt: admit reserved it already
                vm, dest, fresh = admission.vm, admission.dest, admission.fresh
                attempts += 1
                try:
                    await self._prepare_and_start(vm, dest, admission)
                    return
                except _AttemptFailed as e:
                    last = failed = e.reason
                    await self._attempt_failed(vm_id, dest, fresh, avoid, attempts, e.reason, e.created)
                    admission = None
                    if host_id:
                        break
                    continue
            vm = await self.db.read(vm_rows.load, vm_id)
            profile, plan = await self.db.read(self._profile, vm, host_id, scope)
            if try_last:  # once: its last host, when it is in scope and has room
                try_last = False
                last = vm.row.last_host_id
                if last and self._in_scope(last, scope) and last not in avoid.hosts and not plan.host_id:
                    try:
                        self.placement.plan(profile, replace(plan, host_id=last), avoid, None)
                        plan = replace(plan, host_id=last)
                    except NoDestination:
                        pass
            # The account's VMs per host: a scan of its VMs, read only for the weighers that use it.
            spread = (await self.db.read(vm_rows.account_hosts, vm.row.account_id)
                      if self.placement.settings.needs_counts(profile.algorithm) else None)
            try:
                dest = self.placement.plan(profile, plan, avoid, spread)
            except NoDestination as e:
                last = str(e)
                if not refreshed and await self.placement.refresh():
                    refreshed = True  # several servers: the index was behind; plan again on a fresh one
                    continue
                break
            ask = Ask(
                vm_id,
                dest.host_id,
                profile.cpu_mhz,
                profile.cpus,
                profile.memory_bytes,
                dest.pool_id,
                self._new_disk_bytes(vm),
                vm.anti_affinity_groups,
            )
            try:
                await self.db.run(capacity.reserve, ask, self.placement.limits(dest.host_id), now())
            except ReservationLost as e:
                races += 1
                if races > 100:
                    last = str(e)
                    break
                (avoid.pools if e.kind == "pool" else avoid.hosts).add(e.ident)
                continue
            attempts += 1
            fresh = [v.id for v in vm.volumes if v.pool_id is None]  # what this attempt will create
            try:
                await self._prepare_and_start(vm, dest)
                return
            except _AttemptFailed as e:
                last = failed = e.reason
                await self._attempt_failed(vm_id, dest, fresh, avoid, attempts, e.reason)
                if host_id:
                    break  # the caller named this host: no other will do
        if failed and failed != last:  # attempts failed, then no host was left to try
            last = f"{failed}; then {last}"
        raise InsufficientCapacity(f"could not start VM {vm_id} after {attempts} attempt(s): {last}")

    async def _attempt_failed(self, vm_id: int, dest: Destination, fresh: list[int], avoid: Avoid,
                              attempt: int, reason: str, created: dict[int, str] | None = None) -> None:
        log.warning("start attempt %d on host %d failed: %s", attempt, dest.host_id, reason,
                    extra={"vm_id": vm_id, "host_id": dest.host_id})
        with trio.CancelScope(shield=True):
            await self._undo_attempt(vm_id, dest, fresh, created or {})
        avoid.hosts.add(dest.host_id)

    @staticmethod
    def _new_disk_bytes(vm: VmRecord) -> int:
        return sum(v.size_bytes for v in vm.volumes if v.pool_id is None)

    def _in_scope(self, host_id: int, scope: Scope) -> bool:
        where = self.placement.where(host_id)
        return where is not None and (not scope.pod_id or where[0] == scope.pod_id) and (
            not scope.cluster_id or where[1] == scope.cluster_id)

    def _profile(self, conn: Connection, vm: VmRecord, host_id: int,
                 scope: Scope = Scope()) -> tuple[VmProfile, DeploymentPlan]:
        offering, template = vm.offering, vm.template
        placed = [v for v in vm.volumes if v.pool_id is not None]
        pool_id = placed[0].pool_id if placed else 0
        cluster_id = placed[0].pool_cluster or 0 if placed and placed[0].pool_scope == "CLUSTER" else 0
        pin_host = placed[0].pool_host or 0 if placed and placed[0].pool_scope == "HOST" else 0
        profile = vm_rows.profile_of(
            offering, template, disk_bytes=self._new_disk_bytes(vm),
            template_bytes=template.size_bytes if not placed else 0, account_id=vm.row.account_id,
            vm_id=vm.id, algorithm=scope.algorithm,
            anti_affinity_hosts=vm_rows.group_hosts(conn, vm.anti_affinity_groups, vm.id),
            affinity_hosts=vm_rows.group_hosts(conn, vm.affinity_groups, vm.id),
        )
        if scope.cluster_id and cluster_id and scope.cluster_id != cluster_id:
            raise InvalidParameter("the VM's volumes are on a pool of another cluster than the one asked for")
        return profile, DeploymentPlan(
            vm.row.zone_id, pod_id=scope.pod_id, cluster_id=cluster_id or scope.cluster_id,
            host_id=host_id or pin_host, pool_id=pool_id
        )

    async def _send(self, host_id: int, command: Any, *, timeout: float | None = None) -> Answer:
        answers = await self.agents.send(host_id, [command], timeout=timeout or self.settings.agent_wait)
        answer: Answer = answers[0]
        return answer

    async def _prepare_and_start(self, vm: VmRecord, dest: Destination,
                                 admission: Admission | None = None) -> None:
        if admission is not None and admission.template_path:
            await self._create_and_start(admission)
            return
        pool = admission.pool if admission is not None else \
            await self.db.read(_pool, dest.pool_id) if dest.pool_id else None
        try:
            for volume in vm.volumes:
                if volume.state != volumes.READY:  # new, or left half-made by an interrupted start
                    if pool is None:
                        raise _AttemptFailed("no storage pool was chosen for the VM's volumes")
                    await self._create_volume(vm, volume, pool, dest.host_id)
            vm = await self.db.read(vm_rows.load, vm.id)  # with the volumes' paths
            host_type = await self.db.read(_hypervisor_of, dest.host_id)
            guid = self.agents.hosts.get(dest.host_id, ("", 0, ""))[0]
            answer = await self._send(
                dest.host_id, StartCommand(vm=guru.build(host_type, vm), host_guid=guid)
            )
        except (AgentUnavailable, OperationTimedOut) as e:
            # The agent may have started it before going quiet: make sure it is not left running there.
            with trio.CancelScope(shield=True), contextlib.suppress(CumuloError):
                await self._send(dest.host_id, StopCommand(vm_name=vm.name, forced=True), timeout=10)
            raise _AttemptFailed(str(e)) from None
        if not answer.result:
            raise _AttemptFailed(answer.details or "the agent refused to start the VM")
        await self.db.run(_started, vm.id, dest.host_id)

    async def _create_and_start(self, admission: Admission) -> None:
        """Act and settle for an admitted first start: the volumes' Creates and the Start in one
        request (the agent stops at the first failure; the Start names the new volumes by uuid), then
        one transaction."""
        vm, dest, pool = admission.vm, admission.dest, admission.pool
        new = [v for v in vm.volumes if v.state != volumes.READY]
        commands: list[Any] = [
            CreateCommand(
                volume_uuid=v.uuid,
                pool_uuid=pool.uuid,
                pool_path=pool.path,
                template_path=admission.template_path if v.type == "ROOT" else "",
                template_format=vm.template.format.lower() if v.type == "ROOT" else "",
                size_bytes=v.size_bytes,
                preallocation=tuning.preallocation(v),
            )
            for v in new
        ]
        guid = self.agents.hosts.get(dest.host_id, ("", 0, ""))[0]
        commands.append(StartCommand(vm=guru.build(admission.host_type, vm), host_guid=guid))
        try:
            answers = await self.agents.send(dest.host_id, commands, stop_on_error=True,
                                             timeout=self.settings.agent_wait)
        except (AgentUnavailable, OperationTimedOut) as e:
            with trio.CancelScope(shield=True), contextlib.suppress(CumuloError):
                await self._send(dest.host_id, StopCommand(vm_name=vm.name, forced=True), timeout=10)
            raise _AttemptFailed(str(e)) from None
        created: dict[int, str] = {}
        for volume, answer in zip(new, answers, strict=False):
            if not answer.result or not isinstance(answer, CreateAnswer):
                raise _AttemptFailed(
                    f"creating volume {volume.name} on pool {pool.name} failed: {answer.details}", created)
            created[volume.id] = answer.path
        started = answers[-1]
        if not started.result:
            raise _AttemptFailed(started.details or "the agent refused to start the VM", created)
        # The VM is as admit left it (its job holds it); were it not, the conditional UPDATE fails.
        await self.db.run(_settled, vm.id, dest.host_id, list(created.items()),
                          (State(vm.row.state), vm.row.update_count, vm.name))

    async def _create_volume(self, vm: VmRecord, volume: Any, pool: Any, host_id: int) -> None:
        template_path = ""
        if volume.type == "ROOT":
            found: str | None = await self.db.read(volumes.template_copy, vm.template.id, pool.id)
            template_path = found or ""
            if not template_path:
                answer = await self._send(
                    host_id,
                    PrimaryStorageDownloadCommand(
                        template_uuid=vm.template.uuid,
                        url=vm.template.url,
                        pool_uuid=pool.uuid,
                        pool_path=pool.path,
                        format=vm.template.format.lower(),
                    ),
                )
                if not answer.result or not isinstance(answer, PrimaryStorageDownloadAnswer):
                    raise _AttemptFailed(
                        f"copying template {vm.template.name} to pool {pool.name} failed: {answer.details}"
                    )
                await self.db.run(
                    volumes.record_template_copy,
                    vm.template.id,
                    pool.id,
                    answer.install_path,
                    answer.size_bytes or vm.template.size_bytes,
                )
                template_path = answer.install_path
        await self.db.run(volumes.set_state, volume.id, volumes.CREATING, pool_id=pool.id)
        created = await self._send(
            host_id,
            CreateCommand(
                volume_uuid=volume.uuid,
                pool_uuid=pool.uuid,
                pool_path=pool.path,
                template_path=template_path,
                template_format=vm.template.format.lower() if template_path else "",
                size_bytes=volume.size_bytes,
                preallocation=tuning.preallocation(volume),
            ),
        )
        if not created.result or not isinstance(created, CreateAnswer):
            raise _AttemptFailed(
                f"creating volume {volume.name} on pool {pool.name} failed: {created.details}"
            )
        await self.db.run(volumes.set_state, volume.id, volumes.READY, path=created.path)

    async def _undo_attempt(self, vm_id: int, dest: Destination, fresh_ids: list[int],
                            created: dict[int, str] | None = None) -> None:
        """Give back what a failed start attempt took: its compute and the volumes it created (their
        paths from the database, or from ``created`` for those made in the attempt's one request)."""
        vm = await self.db.read(vm_rows.load, vm_id)
        fresh = [v for v in vm.volumes if v.id in fresh_ids and v.pool_id is not None]
        for volume in fresh:
            path = volume.path or (created or {}).get(volume.id, "")
            try:
                await self._send(
                    dest.host_id,
                    DestroyCommand(volume_uuid=volume.uuid, pool_uuid=volume.pool_uuid, path=path,
                                   pool_path=volume.pool_path or ""),
                    timeout=30,
                )
            except CumuloError as e:
                log.warning(
                    "could not delete volume %s after a failed start: %s",
                    volume.uuid,
                    e,
                    extra={"vm_id": vm_id},
                )
        fresh_bytes = sum(v.size_bytes for v in vm.volumes if v.id in fresh_ids)
        await self.db.run(_undo_rows, vm_id, fresh_ids, fresh_bytes)

    # --- stop, reboot ----------------------------------------------------------------------------------

    async def stop(self, vm_id: int, *, forced: bool = False) -> None:
        vm = await self.db.read(vm_rows.load, vm_id)
        await self.db.run(vm_rows.transition, vm_id, Event.STOP_REQUESTED)
        host_id = vm.row.host_id
        reason = ""
        try:
            answer = await self._send(
                host_id, StopCommand(vm_name=vm.name, forced=forced), timeout=self.settings.stop_wait
            )
            if not answer.result:
                reason = answer.details or "the agent refused to stop the VM"
        except (AgentUnavailable, OperationTimedOut) as e:
            reason = str(e)
        if reason and not forced:
            await self.db.run(vm_rows.transition, vm_id, Event.OPERATION_FAILED)
            raise OperationFailed(f"could not stop VM {vm.name}: {reason}")
        if reason:
            log.warning(
                "forced stop: the agent did not confirm (%s); the VM is taken as stopped",
                reason,
                extra={"vm_id": vm_id, "host_id": host_id},
            )
        await self.db.run(_stopped, vm_id, now() + timedelta(seconds=self.settings.skip_counting))
        log.info("VM stopped", extra={"vm_id": vm_id, "host_id": host_id})

    async def reboot(self, vm_id: int) -> None:
        vm = await self.db.read(vm_rows.load, vm_id)
        if vm.state is not State.RUNNING:
            raise InvalidParameter(f"cannot reboot VM {vm.name}: it is {vm.state}; reboot needs it Running")
        try:
            answer = await self._send(vm.row.host_id, RebootCommand(vm_name=vm.name))
        except (AgentUnavailable, OperationTimedOut) as e:
            raise OperationFailed(f"could not reboot VM {vm.name}: {e}") from None
        if not answer.result:
            raise OperationFailed(f"could not reboot VM {vm.name}: {answer.details}")

    # --- destroy, recover, expunge -------------------------------------------------------------------

    async def destroy(self, vm_id: int, *, expunge: bool = False) -> None:
        vm = await self.db.read(vm_rows.load, vm_id)
        if vm.state is State.RUNNING:
            await self.stop(vm_id, forced=True)
            vm = await self.db.read(vm_rows.load, vm_id)
        if vm.state is State.ERROR:  # nothing to stop or keep: straight to expunging
            await self.expunge(vm_id)
            return
        await self.db.run(_destroyed, vm_id)
        if expunge:
            await self.expunge(vm_id)

    async def recover(self, vm_id: int) -> None:
        await self.db.run(_recovered, vm_id)

    async def expunge(self, vm_id: int) -> None:
        vm = await self.db.read(vm_rows.load, vm_id)
        if vm.state is not State.EXPUNGING:
            await self.db.run(vm_rows.transition, vm_id, Event.EXPUNGE_OPERATION)
        for volume in vm.volumes:
            # A volume on a pool without a path was being made when its start was cut short (Create
            # sent, no answer recorded: a server killed between admit and settle): it is deleted by
            # its uuid on that pool, and deleting one that was never made succeeds.
            if volume.pool_id is None:
                continue
            reached = False
            for host_id in await self.db.read(hosts_reaching, volume.pool_id):
                try:
                    answer = await self._send(
                        host_id,
                        DestroyCommand(volume_uuid=volume.uuid, pool_uuid=volume.pool_uuid, path=volume.path,
                                       pool_path=volume.pool_path or ""),
                        timeout=60,
                    )
                except (AgentUnavailable, OperationTimedOut):
                    continue
                if not answer.result:
                    raise OperationFailed(
                        f"could not delete volume {volume.name}: {answer.details}; the VM "
                        f"stays Expunging and the expunge task will try again"
                    )
                reached = True
                break
            if not reached:
                raise OperationFailed(
                    f"no host can reach the pool of volume {volume.name}; the VM stays "
                    f"Expunging and the expunge task will try again"
                )
        await self._cleanup_on_host(vm)
        await self.db.run(_expunged, vm_id)
        log.info("VM expunged", extra={"vm_id": vm_id})
        # Its address is no longer a member's in the rules that name its groups (it may go to another VM):
        # their VMs' hosts get the rules without it.
        for group_id in await self.db.read(security.groups_named_by_rules, vm_id):
            await self.apply_security_group(group_id)

    async def _cleanup_on_host(self, vm: VmRecord) -> None:
        """Ask the VM's last host to forget it (a leftover domain, its console log); best effort: a host
        that is down keeps the file, which names a VM that no longer exists."""
        host_id = vm.row.host_id or vm.row.last_host_id
        if host_id is None:
            return
        try:
            answer = await self._send(host_id, CleanupVmCommand(vm_name=vm.name), timeout=60)
        except (AgentUnavailable, OperationTimedOut) as e:
            log.warning("VM %s expunged without cleaning up on host %d: %s", vm.name, host_id, e)
            return
        if not answer.result:
            log.warning("host %d could not clean up after VM %s: %s", host_id, vm.name, answer.details)

    async def console_log(self, vm_id: int, lines: int) -> tuple[str, int | None]:
        """The last ``lines`` lines of the VM's console, from its host (or its last host when it is not
        running), and that host's id; ``("", None)`` for a VM that never ran."""
        vm = await self.db.read(vm_rows.load, vm_id)
        host_id = vm.row.host_id or vm.row.last_host_id
        if host_id is None:
            return "", None
        answer = await self._send(host_id, GetVmConsoleLogCommand(vm_name=vm.name, lines=lines), timeout=30)
        if not answer.result or not isinstance(answer, GetVmConsoleLogAnswer):
            raise OperationFailed(f"could not read the console log of VM {vm.name}: {answer.details}")
        return answer.log, host_id

    async def expunge_due(self) -> int:
        """Expunge the VMs destroyed more than ``expunge.delay`` ago (and any left Expunging)."""
        due = await self.db.read(_due_for_expunge, now() - timedelta(seconds=self.settings.expunge_delay))
        done = 0
        for vm_id in due:
            try:
                await self.expunge(vm_id)
                done += 1
            except CumuloError as e:
                log.warning("expunge failed, will retry: %s", e, extra={"vm_id": vm_id})
        return done

    # --- migrate -----------------------------------------------------------------------------------------

    async def migrate(self, vm_id: int, *, host_id: int = 0) -> int:
        """Live-migrate a running VM to ``host_id`` or a host the planner chooses; the new host's id."""
        vm = await self.db.read(vm_rows.load, vm_id)
        source = vm.row.host_id
        if vm.state is State.RUNNING and any(v.pool_scope == "HOST" for v in vm.volumes):
            raise InvalidParameter(
                f"cannot migrate VM {vm.name}: its volumes are on the host's local storage"
            )
        if host_id and host_id == source:
            raise InvalidParameter(f"VM {vm.name} already runs on host {host_id}")
        await self.db.run(vm_rows.transition, vm_id, Event.MIGRATION_REQUESTED)
        try:
            dest = await self._reserve_destination(vm, host_id)
        except BaseException:
            with trio.CancelScope(shield=True):
                await self.db.run(vm_rows.transition, vm_id, Event.OPERATION_FAILED)
            raise
        reason = ""
        try:
            to = guru.build(await self.db.read(_hypervisor_of, dest), vm)
            prepared = await self._send(dest, PrepareForMigrationCommand(vm=to))
            if not prepared.result:
                reason = f"the destination refused: {prepared.details}"
            else:
                guid, _cluster, ip = self.agents.hosts.get(dest, ("", 0, ""))
                moved = await self._send(
                    source,
                    MigrateCommand(
                        vm_name=vm.name,
                        dest_ip=ip,
                        dest_guid=guid,
                        dest_uri=getattr(prepared, "dest_uri", ""),
                        dest_console_log=getattr(prepared, "console_log", ""),
                        dest_config_drive=getattr(prepared, "config_drive", ""),
                    ),
                )
                if not moved.result:
                    reason = f"the source failed to migrate it: {moved.details}"
        except (AgentUnavailable, OperationTimedOut) as e:
            reason = str(e)
        with trio.CancelScope(shield=True):
            await self.db.run(_migrated, vm_id, dest, not reason)
        if reason:
            raise OperationFailed(
                f"could not migrate VM {vm.name} to host {dest}: {reason}; it keeps running on host {source}"
            )
        log.info("VM migrated", extra={"vm_id": vm_id, "from": source, "to": dest})
        return dest

    async def _reserve_destination(self, vm: VmRecord, host_id: int) -> int:
        profile, plan = await self.db.read(self._profile, vm, host_id)
        profile = VmProfile(
            profile.cpus,
            profile.cpu_speed_mhz,
            profile.memory_bytes,
            profile.hypervisor_type,
            profile.host_tags,
            account_id=profile.account_id,
            vm_id=vm.id,
            anti_affinity_hosts=profile.anti_affinity_hosts,
            affinity_hosts=profile.affinity_hosts,
        )
        plan = DeploymentPlan(plan.zone_id, cluster_id=plan.cluster_id, host_id=host_id)
        avoid = Avoid(hosts={vm.row.host_id})
        for _ in range(100):
            dest = self.placement.plan(profile, plan, avoid)
            try:
                await self.db.run(
                    capacity.reserve_migration, vm.id, dest.host_id, self.placement.limits(dest.host_id)
                )
            except ReservationLost as e:
                avoid.hosts.add(e.ident)
                continue
            return dest.host_id
        raise InsufficientCapacity(f"no destination for VM {vm.name}: every choice was taken concurrently")


# --- database steps (each one transaction, in a worker thread) -------------------------------------------


_POOL = sa.select(storage_pools).where(storage_pools.c.id == sa.bindparam("pool"))  # built once
_HYPERVISOR = sa.select(hosts.c.hypervisor_type).where(hosts.c.id == sa.bindparam("host"))


def _pool(conn: Connection, pool_id: int) -> Any:
    return conn.execute(_POOL, {"pool": pool_id}).one()


def _hypervisor_of(conn: Connection, host_id: int) -> str:
    return str(conn.scalar(_HYPERVISOR, {"host": host_id}))


def _started(conn: Connection, vm_id: int, host_id: int, *,
             known: tuple[State, int, str] | None = None) -> None:
    vm_rows.transition(
        conn,
        vm_id,
        Event.OPERATION_SUCCEEDED,
        known=known,
        host_id=host_id,
        last_host_id=host_id,
        power_state="PowerOn",
        power_state_updated=now(),
    )


def _settled(conn: Connection, vm_id: int, host_id: int, created: list[tuple[int, str]],
             known: tuple[State, int, str]) -> None:
    for volume_id, path in created:
        volumes.set_state(conn, volume_id, volumes.READY, path=path)
    _started(conn, vm_id, host_id, known=known)


def _undo_rows(conn: Connection, vm_id: int, fresh_volume_ids: list[int], fresh_bytes: int) -> Any:
    released = capacity.release_compute(conn, vm_id)
    if fresh_volume_ids:
        for volume_id in fresh_volume_ids:
            volumes.set_state(conn, volume_id, volumes.ALLOCATED, pool_id=None, path="")
        storage = capacity.release_disk(conn, vm_id, fresh_bytes)
        released = released or storage
    return released


def _fail_start(conn: Connection, vm_id: int) -> None:
    """All attempts failed (or the start was cancelled): Stopped with no compute held."""
    capacity.release_compute(conn, vm_id)
    state = conn.scalar(sa.select(vms.c.state).where(vms.c.id == vm_id))
    if state == State.STARTING:
        vm_rows.transition(conn, vm_id, Event.OPERATION_FAILED, host_id=None)


def _deploy_failed(conn: Connection, vm_id: int) -> None:
    if conn.scalar(sa.select(vms.c.state).where(vms.c.id == vm_id)) == State.STOPPED:
        vm_rows.transition(conn, vm_id, Event.OPERATION_FAILED_TO_ERROR)
    nics.release(conn, vm_id)
    capacity.release_storage(conn, vm_id)


def _stopped(conn: Connection, vm_id: int, hold_until: Any) -> None:
    vm_rows.transition(
        conn,
        vm_id,
        Event.OPERATION_SUCCEEDED,
        host_id=None,
        power_state="PowerOff",
        power_state_updated=now(),
    )
    capacity.hold(conn, vm_id, hold_until)


def _destroyed(conn: Connection, vm_id: int) -> Any:
    vm_rows.transition(conn, vm_id, Event.DESTROY_REQUESTED, host_id=None)
    released = capacity.release_compute(conn, vm_id)
    for volume in volumes.of_vm(conn, vm_id):
        volumes.set_state(conn, volume.id, volumes.DESTROY)
    return released


def _recovered(conn: Connection, vm_id: int) -> None:
    vm_rows.transition(conn, vm_id, Event.RECOVERY_REQUESTED)
    for volume in volumes.of_vm(conn, vm_id):
        volumes.set_state(conn, volume.id, volumes.READY if volume.path else volumes.ALLOCATED)


def hosts_reaching(conn: Connection, pool_id: int) -> list[int]:
    """Up to five Up hosts that can reach the pool (to delete a volume on it through)."""
    pool = conn.execute(sa.select(storage_pools).where(storage_pools.c.id == pool_id)).one()
    where = [hosts.c.status == "Up", hosts.c.removed.is_(None)]
    if pool.scope == "HOST":
        where.append(hosts.c.id == pool.host_id)
    elif pool.scope == "CLUSTER":
        where.append(hosts.c.cluster_id == pool.cluster_id)
    else:
        where.append(hosts.c.zone_id == pool.zone_id)
    return list(conn.scalars(sa.select(hosts.c.id).where(*where).order_by(hosts.c.id).limit(5)))


def _expunged(conn: Connection, vm_id: int) -> Any:
    stamp = now()
    released = capacity.release_storage(conn, vm_id)
    nics.release(conn, vm_id)
    for volume in volumes.of_vm(conn, vm_id):
        volumes.set_state(conn, volume.id, volumes.EXPUNGED, removed=stamp)
    conn.execute(vms.update().where(vms.c.id == vm_id).values(removed=stamp, host_id=None))
    return released


def _due_for_expunge(conn: Connection, before: Any) -> list[int]:
    return list(
        conn.scalars(
            sa.select(vms.c.id).where(
                vms.c.removed.is_(None),
                sa.or_(
                    vms.c.state.in_([State.DESTROYED, State.ERROR]) & (vms.c.state_changed <= before),
                    vms.c.state == State.EXPUNGING,
                ),
            )
        )
    )


def _migrated(conn: Connection, vm_id: int, dest: int, succeeded: bool) -> None:
    now_on = capacity.finish_migration(conn, vm_id, succeeded)
    event = Event.OPERATION_SUCCEEDED if succeeded else Event.OPERATION_FAILED
    values: dict[str, Any] = {"host_id": now_on, "last_host_id": now_on} if succeeded else {}
    vm_rows.transition(conn, vm_id, event, **values)
