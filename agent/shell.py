"""The agent shell: one persistent connection to a management server, driven by trio.

Per connection: one task reads and feeds the sans-IO ``Connection``; requests from the server run
concurrently, except that IN_SEQUENCE requests, and all requests about one VM, run one after another in
arrival order (a FIFO queue and worker per key); answers go back under a send lock. The agent starts up,
waits for ReadyCommand, then pings every interval with the power report. It reconnects, cycling through
its server list with bounded exponential backoff and full jitter, when the connection breaks, the
server violates the protocol, or ``ping.retries`` pings go unanswered.

With credentials (``tls.py``) the connection is TLS 1.3 with this host's certificate; a host without
one enrolls first with its registration token. It renews its certificate on the live connection when
two thirds of its validity have passed, and installs one the server provisions.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import trio

from protocol import Connection, Request, Response, Role
from protocol.codec import Codec
from protocol.frame import DEFAULT_MAX_FRAME_SIZE
from protocol.link import Link, LinkClosed
from protocol.messages import (
    Answer,
    CheckOnHostAnswer,
    CheckOnHostCommand,
    Command,
    EnrollAnswer,
    EnrollCommand,
    FenceAnswer,
    FenceCommand,
    MalformedCommand,
    PingAnswer,
    PingRoutingCommand,
    PrepareForMigrationCommand,
    ProvisionCertificateAnswer,
    ProvisionCertificateCommand,
    ReadyAnswer,
    ReadyCommand,
    RenewCertificateAnswer,
    RenewCertificateCommand,
    SetupCertificateCommand,
    SetupMSListCommand,
    StartCommand,
    StartupAnswer,
    UnknownCommand,
)

from . import ha
from .config import parse_servers
from .resource import DropConnection, Placement, ServerResource
from .tls import Credentials, fingerprint_matches, insecure_context, verifying_context

log = logging.getLogger(__name__)


@dataclass
class AgentSettings:
    """How an agent connects and behaves; CloudStack's names where it has them."""

    mgmt: list[tuple[str, int]]
    placement: Placement
    ping_retries: int = 5  # ping.retries: unanswered pings before reconnecting
    startup_timeout: float = 30.0  # seconds to wait for StartupAnswer and then ReadyCommand
    connect_timeout: float = 10.0  # TCP connect
    handshake_timeout: float = 30.0  # the TLS handshake after it (a server in a reconnect storm is busy)
    local_address: str | None = None  # the source address to connect from (the fleet's hosts differ)
    backoff_base: float = 0.5  # first reconnect delay bound, doubled per failed attempt
    # the bound never grows past this: a restarted server gets its hosts back within seconds (a 10,000-
    # host reconnect storm: docs/benchmarks.md), and failed connects to a dead server cost little
    backoff_cap: float = 5.0
    drain_seconds: float = 30.0
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    command_concurrency: int = 64  # commands executing at once on one connection
    credentials: Credentials | None = None  # TLS with this host's certificate; None: plain TCP
    token: str = ""  # registration token, to enroll when there is no certificate yet
    # where the heartbeat's pools and timings are kept, so that a restarted agent writes its heartbeat
    # at once, before it reaches the server (an agent restart must not look like a dead host)
    heartbeat_state: str = ""


class EnrollmentFailed(Exception):
    """This host could not get its certificate; the message says why."""


class SessionEnded(Exception):
    """This connection is over; the reason is the message."""


def _refuse_requests(link: Link, request: Request) -> None:
    """A connection that only asks (enrollment): the server has nothing to ask of it."""
    link.end(f"the server sent a {type(request.commands[0]).__name__} request while enrolling")


def vm_key(command: object) -> str | None:
    """The VM a command is about, so that commands for one VM run in order."""
    if isinstance(command, StartCommand | PrepareForMigrationCommand):
        return command.vm.name
    name = getattr(command, "vm_name", None)
    return name if isinstance(name, str) else None


class Agent:
    """A host agent: ``await agent.run()`` connects, serves and reconnects until cancelled."""

    def __init__(self, settings: AgentSettings, resource: ServerResource, *, codec: Codec | None = None,
                 rng: random.Random | None = None) -> None:
        self.settings = settings
        self.resource = resource
        # this host's heartbeat on its shared pools, for the life of the agent (not of one connection)
        self.heartbeat = ha.Heartbeat(settings.placement.guid, resource.stop_all_guests,
                                      resource.storage_reachable, state_file=settings.heartbeat_state)
        self.codec = codec
        self.rng = rng or random.Random()
        self.status = "disconnected"  # disconnected, connecting, connected, up
        self.host_id = 0
        self.sessions = 0  # connections that reached Up
        self.last_close_reason = ""
        self.up = trio.Event()  # set while Up; replaced when the connection goes
        # (wall-clock time, seconds) of each answered ping, when someone collects them (the fleet
        # runner's --stats); None: not recorded
        self.ping_rtts: list[tuple[float, float]] | None = None
        self._draining = False
        self._in_flight = 0
        self._idle = trio.Event()
        self._idle.set()
        # The management servers to try in turn: the configured ones, then the list the server side
        # gives (``set_servers``); the next one to try; the one of the current connection.
        self.servers: list[tuple[str, int]] = list(settings.mgmt)
        self._next = 0
        self._current: tuple[str, int] | None = None
        self._move = False

    @property
    def in_flight(self) -> int:
        """Requests from the server received and not yet answered."""
        return self._in_flight

    # --- lifecycle -------------------------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.heartbeat.run)
            await self._connect_loop(task_status)
            nursery.cancel_scope.cancel()

    def set_servers(self, servers: Sequence[str], *, move: bool = False) -> None:
        """The management servers the server side says to use, in this host's order (Ready, or a
        SetupMSListCommand). The next connection goes to the one after the current one in the new list
        (the one the host now belongs on first, when ``move``). Bad entries are ignored."""
        parsed: list[tuple[str, int]] = []
        for entry in servers[:64]:
            try:
                parsed.extend(parse_servers(entry))
            except ValueError:
                log.warning("agent %s: ignoring management server %.80r from the server",
                            self.settings.placement.name, entry)
        if not parsed:
            return
        self.servers = parsed
        if move:
            self._next = 0
        else:
            here = self._current
            self._next = (parsed.index(here) + 1) % len(parsed) if here in parsed else 0
        self._move = move

    async def _connect_loop(self, task_status: Any) -> None:
        task_status.started()
        attempt = 0
        while True:
            host, port = self.servers[self._next % len(self.servers)]
            self._next = (self._next + 1) % len(self.servers)
            self._current = (host, port)
            if self._draining:
                return
            self.status = "connecting"
            reached_up = False
            try:
                if not self.resource.reachable():
                    raise OSError("the management server cannot be reached (partitioned)")
                stream = await self._open(host, port)
            except (OSError, trio.TooSlowError, trio.BrokenResourceError, EnrollmentFailed) as e:
                self.last_close_reason = f"cannot connect to {host}:{port}: {e or 'timed out'}"
                log.info("agent %s: %s", self.settings.placement.name, self.last_close_reason)
            else:
                try:
                    reached_up = await self._serve(stream, f"{host}:{port}")
                except Exception:  # a bug must not end the agent (or, in a fleet, its neighbours)
                    log.exception("agent %s: the connection to %s:%d failed unexpectedly; reconnecting",
                                  self.settings.placement.name, host, port)
            self.status = "disconnected"
            if reached_up:
                attempt = 0
            if self._draining:
                return
            if self._move:  # the server moved this host: straight to the next server, no backoff
                self._move = False
                continue
            await trio.sleep(self.backoff(attempt))  # the backoff itself, not a synchronization
            attempt += 1

    async def _open(self, host: str, port: int) -> trio.abc.Stream:
        """The connection: TCP, and TLS with this host's certificate when it has credentials (enrolling
        for one first when it has none yet)."""
        creds = self.settings.credentials
        if creds is None:
            return await self._tcp(host, port)
        if not creds.has_certificate:
            with trio.fail_after(self.settings.handshake_timeout):
                await self._enroll(creds, host, port)
        tls = trio.SSLStream(await self._tcp(host, port), creds.context())
        try:
            with trio.fail_after(self.settings.handshake_timeout):
                await tls.do_handshake()
        except BaseException:
            await trio.aclose_forcefully(tls)
            raise
        return tls

    async def _tcp(self, host: str, port: int) -> trio.SocketStream:
        with trio.fail_after(self.settings.connect_timeout):
            return await trio.open_tcp_stream(host, port, local_address=self.settings.local_address)

    async def _enroll(self, creds: Credentials, host: str, port: int) -> None:
        token, guid = self.settings.token, self.settings.placement.guid
        if not token:
            raise EnrollmentFailed("this host has no certificate and no registration token to get one with")
        # First the CA, to check against the token before the token's secret goes anywhere.
        first = await self._exchange(host, port, insecure_context(),
                                     EnrollCommand(guid=guid, token="", csr=""))
        if not isinstance(first, EnrollAnswer) or not fingerprint_matches(token, first.ca_certificate):
            raise EnrollmentFailed(f"{host}:{port} is not the cloud the registration token was made for "
                                   f"(its CA certificate does not match the token)")
        csr = creds.new_request(guid)
        answer = await self._exchange(host, port, verifying_context(first.ca_certificate),
                                      EnrollCommand(guid=guid, token=token, csr=csr))
        if not isinstance(answer, EnrollAnswer):
            raise EnrollmentFailed(f"enrollment refused: the server answered {type(answer).__name__}")
        if not answer.result:
            raise EnrollmentFailed(f"enrollment refused: {answer.details}")
        try:
            creds.install(answer.certificate, answer.ca_certificate)
        except ValueError as e:
            raise EnrollmentFailed(f"the certificate the server sent is not usable: {e}") from None
        log.info("agent %s: enrolled; certificate valid until %s", self.settings.placement.name,
                 creds.not_after)

    async def _exchange(self, host: str, port: int, context: Any, command: Command) -> object:
        """One request on a connection of its own, then close it; the first answer."""
        tls = trio.SSLStream(await self._tcp(host, port), context)
        link = Link(tls, Connection(Role.AGENT, codec=self.codec), _refuse_requests)
        answers: list[object] = []

        async def ask() -> None:
            with contextlib.suppress(LinkClosed):
                response = await link.request([command], timeout=math.inf)
                if response is not None:
                    answers.append(response.answers[0])
            link.end("answered")

        try:
            reason = await link.run(ask)
        finally:
            await trio.aclose_forcefully(tls)
        if not answers:
            raise EnrollmentFailed(f"no answer from the server: {reason}")
        return answers[0]

    def backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**attempt)], so agents do not return in lockstep."""
        bound = min(self.settings.backoff_cap, self.settings.backoff_base * math.pow(2, min(attempt, 30)))
        return self.rng.uniform(0, bound)

    async def drain(self, deadline: float | None = None) -> bool:
        """Stop taking commands and wait for in-flight ones; True when they all finished in time."""
        self._draining = True
        with trio.move_on_after(self.settings.drain_seconds if deadline is None else deadline):
            await self._idle.wait()
            return True
        return False

    # --- one connection --------------------------------------------------------------------------

    async def _serve(self, stream: trio.abc.Stream, where: str) -> bool:
        session = _Session(self, stream)
        self.status = "connected"
        try:
            await session.link.run(session.main)
        finally:
            self.up = trio.Event()
            if session.reached_up:
                self.sessions += 1
            self.last_close_reason = session.close_reason
            violated = session.close_reason.startswith("protocol violation")
            log.log(logging.WARNING if violated else logging.INFO, "agent %s: connection to %s closed: %s",
                    self.settings.placement.name, where, session.close_reason)
            with trio.move_on_after(1) as cleanup:
                cleanup.shield = True
                await stream.aclose()
        return session.reached_up

    def _started(self) -> None:
        self._in_flight += 1
        if self._in_flight == 1:
            self._idle = trio.Event()

    def _finished(self) -> None:
        self._in_flight -= 1
        if self._in_flight == 0:
            self._idle.set()


class _Session:
    """The state of one connection, on the shared trio adapter (``protocol.link``)."""

    def __init__(self, agent: Agent, stream: trio.abc.Stream) -> None:
        self.agent = agent
        conn = Connection(Role.AGENT, max_frame_size=agent.settings.max_frame_size, codec=agent.codec)
        self.link = Link(stream, conn, self._on_request)
        self.queues: dict[str, deque[Request]] = {}
        self.limiter = trio.CapacityLimiter(agent.settings.command_concurrency)
        self.ready = trio.Event()
        self.rejected = ""
        self.reached_up = False
        self.reconnect = False  # a new certificate was installed: reconnect with it once answered
        self.moving = False  # the server asked this host to connect to another server
        self.leaving = False  # and it is finishing what it runs before it goes
        self.renewing = False

    @property
    def close_reason(self) -> str:
        reason = self.link.reason
        if reason.startswith("protocol violation: "):
            return reason.replace("protocol violation: ", "protocol violation by the server: ", 1)
        if reason == "the peer closed the connection":
            return "the server closed the connection"
        return reason

    @property
    def nursery(self) -> trio.Nursery:
        assert self.link.nursery is not None
        return self.link.nursery

    def end(self, reason: str) -> None:
        """Close this connection for ``reason`` (the first reason given wins)."""
        self.link.end(reason)

    # --- sending and receiving ----------------------------------------------------------------------

    async def request(self, commands: Sequence[Command], timeout: float) -> Response | None:
        """Send a request and wait for its response; None when none came within ``timeout``."""
        try:
            return await self.link.request(commands, timeout=timeout)
        except LinkClosed as e:
            self.end(f"cannot send: {e}")
            await trio.lowlevel.checkpoint()  # let the cancellation land
            return None

    def respond(self, request: Request, answers: Sequence[Answer]) -> None:
        if not self.link.respond(request, answers):
            self.end("cannot send: the connection closed while the request ran")

    def _on_request(self, link: Link, request: Request) -> None:
        self.dispatch(request)

    def dispatch(self, request: Request) -> None:
        """Run a request now, or after the earlier ones with the same ordering key."""
        key = "in-sequence" if request.in_sequence else next(
            (k for k in map(vm_key, request.commands) if k is not None), None)
        self.agent._started()
        if key is None:
            self.nursery.start_soon(self.handle, request)
        elif key in self.queues:
            self.queues[key].append(request)
        else:
            self.queues[key] = deque([request])
            self.nursery.start_soon(self.drain_queue, key)

    async def leave_when_idle(self) -> None:
        """Moving to another server: the commands still running finish and are answered here first
        (at most ``drain_seconds``), then the connection ends."""
        with trio.move_on_after(self.agent.settings.drain_seconds):
            await self.agent._idle.wait()
        self.end("moving to another management server, as the server asked")

    async def drain_queue(self, key: str) -> None:
        queue = self.queues[key]
        while queue:
            await self.handle(queue[0])
            queue.popleft()
        del self.queues[key]

    async def handle(self, request: Request) -> None:
        try:
            answers: list[Answer] = []
            failed = False
            for command in request.commands:
                if failed and request.stop_on_error:
                    answers.append(Answer(result=False, details="not run: an earlier command failed"))
                    continue
                answer = await self.execute(command)
                failed = failed or not answer.result
                answers.append(answer)
            self.respond(request, answers)
            if self.rejected:
                self.end(f"rejected by the server: {self.rejected}")
            if self.reconnect:
                self.end("reconnecting with the new certificate")
            if self.moving and not self.leaving:
                self.leaving = True
                self.nursery.start_soon(self.leave_when_idle)
        except DropConnection as e:
            self.end(f"fault injected: drop on {e}")
        finally:
            self.agent._finished()

    async def execute(self, command: object) -> Answer:
        if isinstance(command, UnknownCommand):
            return command.unsupported()
        if isinstance(command, MalformedCommand):
            return command.failure()
        assert isinstance(command, Command)
        if isinstance(command, ReadyCommand):
            return self.on_ready(command)
        if isinstance(command, SetupMSListCommand):
            self.agent.set_servers(command.mgmt_servers, move=command.reconnect)
            if command.reconnect:
                self.moving = True  # the connection ends once the answer is out
            return Answer()
        if isinstance(command, CheckOnHostCommand | FenceCommand):
            return await self.on_investigation(command)
        if isinstance(command, ProvisionCertificateCommand | SetupCertificateCommand):
            return self.on_certificate(command)
        if self.agent._draining:
            return Answer(result=False, details="the agent is shutting down")
        async with self.limiter:
            log.debug("agent %s: executing %s", self.agent.settings.placement.name, type(command).__name__)
            return await self.agent.resource.execute(command)

    def on_ready(self, command: ReadyCommand) -> Answer:
        if command.reject_reason:
            log.error("agent %s: the server rejected this host: %s", self.agent.settings.placement.name,
                      command.reject_reason)
            self.rejected = command.reject_reason  # the connection closes once the answer is out
            return ReadyAnswer(result=False, details="rejected")
        heartbeat = self.agent.heartbeat
        dirs = [d for d in (self.agent.resource.heartbeat_dir(p) for p in command.heartbeat_pools) if d]
        heartbeat.configure(dirs, command.heartbeat_interval, command.self_fence_after)
        if command.mgmt_servers:
            self.agent.set_servers(command.mgmt_servers)
        self.ready.set()
        return ReadyAnswer()

    async def on_investigation(self, command: CheckOnHostCommand | FenceCommand) -> Answer:
        """A neighbour's question about another host, answered from the pools they share."""
        dirs = self.agent.heartbeat.dirs
        try:
            if isinstance(command, FenceCommand):
                fenced, why = await ha.fence(dirs, command.host_guid, command.window)
                return FenceAnswer(fenced=fenced, details=why)
            determined, alive, why = await ha.check_on_host(dirs, command.host_guid, command.window,
                                                           command.disks)
            return CheckOnHostAnswer(determined=determined, alive=alive, details=why)
        except ha.HaError as e:
            return Answer(result=False, details=str(e))

    def on_certificate(self, command: ProvisionCertificateCommand | SetupCertificateCommand) -> Answer:
        creds = self.agent.settings.credentials
        if creds is None:
            return Answer(result=False, details="this agent does not use TLS")
        if isinstance(command, ProvisionCertificateCommand):
            return ProvisionCertificateAnswer(csr=creds.new_request(self.agent.settings.placement.guid))
        try:
            creds.install(command.certificate, command.ca_certificate)
        except ValueError as e:
            return Answer(result=False, details=f"certificate not installed: {e}")
        log.info("agent %s: new certificate installed, valid until %s", self.agent.settings.placement.name,
                 creds.not_after)
        self.reconnect = command.reconnect
        return Answer()

    async def renew_if_due(self) -> None:
        """Ask for a new certificate once two thirds of this one's validity have passed."""
        creds = self.agent.settings.credentials
        due = creds.renew_at() if creds is not None else None
        if creds is None or due is None or self.renewing or time.time() < due.timestamp():
            return
        self.renewing = True
        try:
            csr = creds.new_request(self.agent.settings.placement.guid)
            response = await self.request([RenewCertificateCommand(csr=csr)],
                                          self.agent.settings.startup_timeout)
            answer = response.answers[0] if response is not None else None
            if not isinstance(answer, RenewCertificateAnswer) or not answer.result:
                log.warning("agent %s: certificate renewal failed: %s", self.agent.settings.placement.name,
                            getattr(answer, "details", "no answer"))
                return
            creds.install(answer.certificate, answer.ca_certificate)
            log.info("agent %s: certificate renewed, valid until %s", self.agent.settings.placement.name,
                     creds.not_after)
        except ValueError as e:
            log.warning("agent %s: the renewed certificate is not usable: %s",
                        self.agent.settings.placement.name, e)
        finally:
            self.renewing = False

    # --- handshake and pings ---------------------------------------------------------------------

    async def startup(self) -> float:
        """Start up (again) on this connection; the ping interval the server asked for."""
        agent = self.agent
        commands = await agent.resource.startup_commands(agent.settings.placement)
        response = await self.request(commands, agent.settings.startup_timeout)
        if response is None:
            raise SessionEnded(f"no StartupAnswer within {agent.settings.startup_timeout:g} s")
        first = response.answers[0]
        if not isinstance(first, StartupAnswer) or not first.result:
            raise SessionEnded(f"startup refused: {first.details or type(first).__name__}")
        agent.host_id = self.link.conn.agent_id = first.host_id
        return float(first.ping_interval)

    async def main(self) -> None:
        agent = self.agent
        try:
            interval = await self.startup()
            with trio.move_on_after(agent.settings.startup_timeout):
                await self.ready.wait()
            if not self.ready.is_set():
                raise SessionEnded(f"no ReadyCommand within {agent.settings.startup_timeout:g} s")
            self.reached_up = True
            agent.status = "up"
            agent.up.set()
            log.info("agent %s: up as host %d", agent.settings.placement.name, agent.host_id)
            await self.ping_loop(interval)
        except SessionEnded as e:
            self.end(str(e))

    async def ping_loop(self, interval: float) -> None:
        agent = self.agent
        misses = 0
        # The first ping comes at a random point of the first interval: hosts made Ready together (a
        # reconnect storm readies hundreds in one batch) would otherwise ping in lockstep for ever,
        # and every ping would queue behind the rest of its burst. Then pings keep that phase (a fixed
        # rate, not a pause after each round trip): a stall that delays many agents at once (a busy
        # process, a slow answer) must not bunch their pings together for good.
        due = trio.current_time() + agent.rng.uniform(0, interval)
        while True:
            await trio.sleep_until(due)  # the ping schedule itself
            if not agent.resource.reachable():
                raise SessionEnded("the management server cannot be reached (partitioned)")
            if agent.resource.pinging():
                interval, misses = await self.ping_once(interval, misses)
            if agent.settings.credentials is not None and not self.renewing:
                self.nursery.start_soon(self.renew_if_due)
            due += interval
            now = trio.current_time()
            if due <= now:  # behind by a whole interval or more: skip the missed turns, keep the phase
                due += math.ceil((now - due) / interval) * interval if interval > 0 else now - due

    async def ping_once(self, interval: float, misses: int) -> tuple[float, int]:
        """One ping; the interval to go on with (a new startup may change it) and the misses so far."""
        agent = self.agent
        report = await agent.resource.power_report()
        sent = trio.current_time()
        response = await self.request([PingRoutingCommand(host_id=agent.host_id, power_report=report)],
                                      timeout=interval)
        if response is None:
            misses += 1
            if misses >= agent.settings.ping_retries:
                raise SessionEnded(f"{misses} pings in a row went unanswered")
            return interval, misses
        agent.heartbeat.contact()
        if agent.ping_rtts is not None:
            agent.ping_rtts.append((time.time(), trio.current_time() - sent))
        answer = response.answers[0]
        if isinstance(answer, PingAnswer) and answer.send_startup:
            log.info("agent %s: the server asked for a new startup", agent.settings.placement.name)
            self.ready = trio.Event()
            interval = await self.startup()
            with trio.move_on_after(agent.settings.startup_timeout):
                await self.ready.wait()
            if not self.ready.is_set():
                raise SessionEnded("no ReadyCommand after the new startup")
        return interval, 0

