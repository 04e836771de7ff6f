"""The agent manager: accepts agents on the agent port, runs their handshake, keeps their liveness in
memory, and sends them commands.

Per connection, one task reads and feeds the sans-IO ``Connection``; sends go under a FIFO lock; each
request waits for its matching answer under the caller's deadline. The database is written when a
host's status changes (startup, Ready, disconnect, alert), never per ping. A monitor task finds hosts
silent for ``ping.interval * ping.timeout``, asks them ``CheckHealthCommand``; for those that do not
answer it asks neighbours in their cluster (``CheckOnHostCommand``): Down when one finds the host dead,
Alert when nobody can tell.

Everything from the other end is hostile until checked. Each startup and ping is validated
(``validate.py``) before the database or the planner sees it; a bad one closes its own connection with
the reason logged. Connections are bounded (``AgentLimits``): a handshake deadline, a small frame size
until the handshake is done, a deadline for a frame once it has begun and for silence after it, and
caps on connections in all and on those not yet past their handshake (per source address too), so
that idle or slow connections can neither exhaust the process's file descriptors nor starve the API
and real agents. Background tasks are supervised: a failure is logged and the task starts again.

The link is TLS 1.3 with certificates from the cloud's CA (``security/``), told apart from plain
frames by its first byte on the one port. A connection with a client certificate may register or
reclaim only the host its certificate names; one without may only enroll (get its first certificate
against a registration token) and is then closed. Plain connections are refused unless
``ca.plugin.root.auth.strictness`` is false, which admits them with a log line (for older agents).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import resource
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import trio

from protocol import Connection, Request, Role
from protocol.body import Prepared, prepare
from protocol.frame import DEFAULT_MAX_FRAME_SIZE, max_body_size
from protocol.link import Link, LinkClosed, Waiter
from protocol.messages import (
    Answer,
    CheckHealthCommand,
    CheckOnHostAnswer,
    CheckOnHostCommand,
    Command,
    EnrollAnswer,
    EnrollCommand,
    HeartbeatPoolTO,
    PingAnswer,
    PingRoutingCommand,
    PowerState,
    ProvisionCertificateAnswer,
    ProvisionCertificateCommand,
    ReadyCommand,
    RenewCertificateAnswer,
    RenewCertificateCommand,
    SetupCertificateCommand,
    SetupMSListCommand,
    StartupAnswer,
    StartupRoutingCommand,
    StartupStorageCommand,
    UnsupportedAnswer,
)

from ..db.batching import Batcher
from ..db.database import Database
from ..errors import AgentUnavailable, OperationTimedOut
from ..security.ca import MAX_CSR, CertificateError
from ..security.trust import EnrollmentRefused, Trust
from ..tasks import supervised
from . import power, registry, validate
from .host_status import Event, Status
from .registry import Change

log = logging.getLogger(__name__)


# accept() failures that mean "no room for a new socket now": wait, never crash or spin.
_ACCEPT_CAPACITY = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}


def _fd_budget(reserve: int = 512) -> int:
    """Agent connections this process can hold: the file-descriptor limit (raised to its hard maximum)
    less a reserve for the API, the database and files."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return max(16, soft - reserve)


@dataclass
class AgentLimits:
    """What one connection may cost the server (seconds and counts)."""

    handshake_timeout: float = 30.0  # from accept to an accepted startup
    handshake_frame: int = 1 << 20  # largest frame before the handshake (a startup is small)
    frame_timeout: float = 60.0  # a frame that has begun must end within this
    idle_timeout: float = 0.0  # silence after the handshake that closes it; 0: 3 ping timeouts
    max_connections: int = field(default_factory=_fd_budget)
    max_pending: int = 4096  # connections not yet past their handshake
    max_pending_per_source: int = 1024


class _Refusals:
    """One log line per period for refused connections, however many there are."""

    def __init__(self, period: float = 10.0) -> None:
        self.period, self.count, self.last = period, 0, -float("inf")

    def note(self, why: str) -> None:
        self.count += 1
        now = trio.current_time()
        if now - self.last >= self.period:
            log.warning("refusing agent connections (%s); %d refused so far", why, self.count)
            self.last = now


class _Prefixed(trio.abc.Stream):
    """A stream whose first bytes were already read (to tell TLS from plain frames): they come first."""

    def __init__(self, stream: trio.SocketStream, first: bytes) -> None:
        self.stream, self.first = stream, first

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self.first:
            data, self.first = self.first, b""
            return data
        return await self.stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self.stream.send_eof()

    async def aclose(self) -> None:
        await self.stream.aclose()


class AgentLink(Link):
    """The server's side of one agent connection: the shared trio adapter and what the server knows of
    the host at its end. Slotted: a server holds tens of thousands."""

    __slots__ = ("accepted", "cert_guid", "cluster_id", "enroll_only", "guid", "host_id", "last_ping",
                 "manager", "moving", "peer", "pending", "raw", "source", "up")

    def __init__(self, stream: trio.SocketStream, conn: Connection, peer: str, manager: AgentManager, *,
                 source: str) -> None:
        super().__init__(stream, conn, manager._on_request, frame_timeout=manager.limits.frame_timeout)
        self.manager = manager
        self.peer = peer
        self.host_id = 0
        self.guid = ""
        self.cluster_id = 0
        self.up = False
        self.source = source
        self.pending = True  # not past its handshake yet
        self.raw = stream  # the TCP connection under ``stream`` (TLS or not)
        self.cert_guid: str | None = None  # the guid its certificate names; None: no TLS (permissive)
        self.enroll_only = False  # TLS without a client certificate: it may only enroll
        self.accepted = 0.0  # trio time of accept
        self.moving = False  # told to connect to another management server (rebalancing)
        # the last ping checked and taken in: the same ping again (the connection decodes an identical
        # body to the same object) is known good and changes nothing
        self.last_ping: PingRoutingCommand | None = None

    def close(self, reason: str = "closed by the server") -> None:
        """End the connection from another task (its reader stops at once)."""
        self.end(reason)

    def read_deadline(self) -> float:
        return self.manager._read_deadline(self)

    def timed_out(self, frame_began: float | None) -> str:
        return self.manager._timed_out(self, frame_began)


class _HostWaiter(Waiter):
    __slots__ = ("host_id",)

    def __init__(self, host_id: int, on_done: Callable[[Waiter], None]) -> None:
        super().__init__(on_done)
        self.host_id = host_id


class _Gather:
    """The answers of a fan-out as they come in; ``all_in`` is set with the last."""

    __slots__ = ("all_in", "left", "name", "results", "timed_out", "timeout")

    def __init__(self, name: str, timeout: float) -> None:
        self.name, self.timeout = name, timeout
        self.results: dict[int, tuple[Any, ...] | Exception] = {}
        self.left = 0
        self.timed_out = False
        self.all_in = trio.Event()

    def finished(self, waiter: Waiter) -> None:
        assert isinstance(waiter, _HostWaiter)
        host_id, response = waiter.host_id, waiter.response
        if response is not None:
            self.results[host_id] = response.answers
        elif self.timed_out:
            self.results[host_id] = OperationTimedOut(f"host {host_id} did not answer {self.name} "
                                                      f"within {self.timeout:g} s")
        else:
            self.results[host_id] = AgentUnavailable(f"host {host_id}: the connection closed before it "
                                                     f"answered {self.name}")
        self.left -= 1
        if not self.left:
            self.all_in.set()


INVESTIGATIONS = 64  # hosts investigated at once
_GONE = (Status.ALERT, Status.DISCONNECTED, Status.DOWN)  # statuses a ping from the host ends
_PING_OK = prepare([PingAnswer()])  # the answer to nearly every ping, serialized once
_PING_STARTUP = prepare([PingAnswer(send_startup=True)])


@dataclass
class HaLink:
    """What the agent manager needs from HA: where hosts write heartbeats and how long to watch them.
    ``disks(host_id)``: the paths of the host's VMs' volumes on shared pools (more evidence of life)."""

    heartbeat_pools: Callable[[int, int], tuple[HeartbeatPoolTO, ...]]  # (zone id, cluster id) -> pools
    disks: Callable[[int], Awaitable[tuple[str, ...]]]
    # (guid, cluster id, zone id, private IP) of a host from the database (one never connected here)
    facts: Callable[[int], Awaitable[tuple[str, int, int, str] | None]]
    heartbeat_interval: float = 2.0
    window: float = 6.0  # seconds a neighbour watches a heartbeat (and a fence waits)
    investigate_interval: float = 10.0  # between investigations of a host in Alert

    @property
    def self_fence_after(self) -> float:
        return self.window


class AgentManager:
    def __init__(self, db: Database, msid: int, *, ping_interval: float = 60.0, ping_timeout: float = 2.5,
                 startup_timeout: float = 30.0, trust: Trust | None = None) -> None:
        self.db = db
        self.trust = trust  # None: plain TCP only (no CA)
        self.msid = msid
        # Startups and status changes arriving together share a transaction (a storm is thousands).
        self.registrations = Batcher(db, registry.register_many, name="register")
        self.transitions = Batcher(db, registry.transition_many, name="transition")
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout  # a multiple of the interval, as CloudStack's ping.timeout
        self.startup_timeout = startup_timeout
        self.links: dict[int, AgentLink] = {}
        self._by_cluster: dict[int, set[int]] = {}  # cluster id -> hosts with a link here
        self._by_zone: dict[int, set[int]] = {}  # zone id -> hosts with a link here
        self.newest: dict[str, AgentLink] = {}  # by guid, from the moment a startup arrives
        self.hosts: dict[int, tuple[str, int, str]] = {}  # host id -> guid, cluster id, private IP
        self.zones: dict[int, int] = {}  # host id -> zone id
        self.ha: HaLink | None = None  # None: no heartbeats; neighbours cannot tell a host dead
        # Hosts silent for 1.5 ping intervals: out of placement, their commands fail at once, until
        # they are heard from again (or investigated).
        self.suspect: set[int] = set()
        self.suspect_listeners: list[Callable[[int, bool], None]] = []
        self._investigating: set[int] = set()
        self._coming_back: set[int] = set()  # hosts whose move back to Up is being written
        self._investigated: dict[int, float] = {}  # host id -> trio time of its last investigation
        # investigations at once: a mass disconnect (the server's network blinked) must not send
        # thousands of neighbours watching heartbeats at the same moment
        self._investigations = trio.CapacityLimiter(INVESTIGATIONS)
        self._nursery: trio.Nursery | None = None
        self.reports: dict[int, dict[str, PowerState]] = {}  # each host's last power report
        self._pending_reports: dict[int, dict[str, PowerState]] = {}
        self._report_taken: dict[int, datetime] = {}  # when each host's last report arrived (UTC)
        self._reports_queued = trio.Event()
        self._report_failures: dict[int, int] = {}
        self.power_writes = 0  # transactions that applied power reports (for tests and metrics)
        self.pings = 0  # pings answered (for metrics and the fleet benchmark)
        self.last_seen: dict[int, float] = {}
        self.status: dict[int, Status] = {}  # what this server last wrote for its hosts
        self.port = 0
        self.stopping = False  # set on shutdown: closing links is then the server's doing
        self._live: set[AgentLink] = set()  # every connection being served, registered or not
        # Called with (host id, status) after each status this server writes (the planner listens).
        self.status_listeners: list[Callable[[int, Status], None]] = []
        self.limits = AgentLimits()
        # Several servers: how a command reaches a host whose agent another server holds
        # (``cluster.forward.PeerLinks.send``), and the list of servers each host is given in its Ready
        # (``cluster.balance``): (entries ``host:port``, the algorithm's name). None: one server.
        self.forwarder: Callable[..., Awaitable[tuple[Any, ...]]] | None = None
        self.server_list: Callable[[int], tuple[tuple[str, ...], str]] | None = None
        self.connections = 0  # open agent connections
        self._pending_by_source: dict[str, int] = {}
        self._refusals = _Refusals()

    def _set_status(self, host_id: int, status: Status) -> None:
        self.status[host_id] = status
        for listener in self.status_listeners:
            try:
                listener(host_id, status)
            except Exception:
                log.exception("a host status listener failed", extra={"host_id": host_id})

    # --- serving ---------------------------------------------------------------------------------

    def stop(self) -> None:
        """Shutdown: every connection ends now, its pending writes cut short after a few seconds (a
        peer that does not read cannot hold the server up); their hosts become Disconnected."""
        self.stopping = True
        for link in list(self._live):
            link.end("the server is stopping")

    @property
    def refused(self) -> int:
        """Connections closed at once because a limit was reached (for tests and metrics)."""
        return self._refusals.count

    async def serve(self, port: int, host: str | None = None, *,
                    task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(port, host=host)
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(supervised, "host registrations", self.registrations.run)
            nursery.start_soon(supervised, "host transitions", self.transitions.run)
            nursery.start_soon(supervised, "host monitor", self.monitor)
            nursery.start_soon(supervised, "power reports", self.flush_power_reports)
            for listener in listeners:
                nursery.start_soon(self._accept, listener, nursery)
            task_status.started(self.port)

    async def _accept(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as e:
                if e.errno not in _ACCEPT_CAPACITY:
                    raise
                self._refusals.note(f"accept failed: {errno.errorcode.get(e.errno or 0, e.errno)}")
                await trio.sleep(0.1)  # no descriptor to take it with: wait for one to be freed
                continue
            try:
                source = str(stream.socket.getpeername()[0])
            except OSError as e:  # reset before we got to it: nothing to serve
                self._refusals.note(f"the peer was gone when accepted: {e.strerror or e}")
                stream.socket.close()
                continue
            why = self._over_limit(source)
            if why:
                self._refusals.note(why)
                stream.socket.close()  # no goodbye: the peer has not proved anything yet
                continue
            self.connections += 1
            self._pending_by_source[source] = self._pending_by_source.get(source, 0) + 1
            nursery.start_soon(self._handle, stream, source)

    def _over_limit(self, source: str) -> str:
        limits = self.limits
        if self.connections >= limits.max_connections:
            return f"{self.connections} connections open, the most this process holds"
        pending = sum(self._pending_by_source.values())
        if pending >= limits.max_pending:
            return f"{pending} connections have not finished their handshake"
        if self._pending_by_source.get(source, 0) >= limits.max_pending_per_source:
            return f"{source} has {limits.max_pending_per_source} connections before their handshake"
        return ""

    def _handshake_done(self, link: AgentLink) -> None:
        if link.pending:
            link.pending = False
            left = self._pending_by_source.get(link.source, 1) - 1
            if left:
                self._pending_by_source[link.source] = left
            else:
                self._pending_by_source.pop(link.source, None)
            link.conn.max_body = max_body_size(DEFAULT_MAX_FRAME_SIZE)
            link.rearm()  # the reader waits under the handshake's deadline: move it

    async def _handle(self, stream: trio.SocketStream, source: str = "") -> None:
        try:
            address, port = stream.socket.getpeername()[:2]
        except OSError:  # already gone
            address, port = source, 0
        peer = f"{address}:{port}"
        link = AgentLink(stream, Connection(Role.SERVER, mgmt_id=self.msid,
                                            max_frame_size=self.limits.handshake_frame), peer, self,
                         source=source or str(address))
        reason = "closed"
        link.accepted = trio.current_time()
        self._live.add(link)
        try:
            refused: str | None = None
            with trio.move_on_at(link.accepted + self.limits.handshake_timeout):
                refused = await self._secure(link, stream)
            reason = "no TLS handshake within the handshake deadline" if refused is None else refused
            if refused == "":
                reason = await link.run()
                if reason.startswith("protocol violation: "):
                    log.warning("%s, closing the connection", reason,
                                extra={"peer": link.peer, "host_id": link.host_id})
            elif link.pending:  # one line per connection would flood the log in a storm or an attack:
                log.debug("agent connection closed before its handshake: %s", reason, extra={"peer": peer})
        except Exception as e:  # one connection's failure must never take the server down
            reason = f"internal error: {e!r}"
            log.exception("connection handler failed", extra={"peer": peer, "host_id": link.host_id})
        finally:
            if not reason or reason == "the connection's task was cancelled":
                reason = "the server is stopping" if self.stopping else "the connection's task was cancelled"
            self._live.discard(link)
            with trio.CancelScope(shield=True):
                self.connections -= 1
                self._handshake_done(link)
                if link.stream is not stream:
                    with trio.move_on_after(1), contextlib.suppress(trio.BrokenResourceError,
                                                                    trio.ClosedResourceError):
                        await link.stream.aclose()  # TLS says goodbye if it can
                await stream.aclose()
                await self._disconnected(link, reason)

    async def _secure(self, link: AgentLink, stream: trio.SocketStream) -> str:
        """TLS (with the peer's certificate checked) or, when allowed, plain frames; "" or why not."""
        try:
            first = await stream.receive_some(65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as e:
            return f"read failed: {e}"
        if not first:
            return "closed before it said anything"
        prefixed = _Prefixed(stream, first)
        trust = self.trust
        if trust is not None and first[0] == 0x16:  # a TLS handshake record
            tls = trio.SSLStream(prefixed, trust.context, server_side=True)
            try:
                await tls.do_handshake()
            except trio.BrokenResourceError as e:
                why = f"TLS handshake failed: {e.__cause__ or e}"
                self._refusals.note(why)
                return why
            der = tls.getpeercert(binary_form=True)
            link.stream = tls
            if not der:
                link.enroll_only = True
                return ""
            try:
                link.cert_guid = trust.peer_guid(der)
            except CertificateError as e:
                self._refusals.note(f"certificate refused: {e}")
                return f"certificate refused: {e}"
            return ""
        if trust is not None and trust.strict:
            why = "an agent without TLS (ca.plugin.root.auth.strictness is true)"
            self._refusals.note(why)
            return why
        if trust is not None:
            log.warning("agent admitted without TLS (ca.plugin.root.auth.strictness is false)",
                        extra={"peer": link.peer})
        link.first = first  # the link reads these first, then the socket itself (no wrapper per read)
        return ""

    def _read_deadline(self, link: AgentLink) -> float:
        """Until when the reader waits for bytes: the handshake's deadline, then three ping timeouts of
        silence (the link itself shortens it while a frame that has begun must end)."""
        limits = self.limits
        if link.pending:
            return link.accepted + limits.handshake_timeout
        return trio.current_time() + (limits.idle_timeout or 3 * self.ping_interval * self.ping_timeout)

    def _on_request(self, link: Link, request: Request) -> None:
        """A request from the agent, in the reader: answered at once or handed to a task of the link's
        (anything that writes to the database); the reader never waits."""
        assert isinstance(link, AgentLink) and link.nursery is not None
        first = request.commands[0]
        if type(first) is PingRoutingCommand:
            bad = self._ping(link, request, first)
            if bad:
                link.end(bad)
        elif link.enroll_only or isinstance(first, EnrollCommand):
            link.nursery.start_soon(self._ending, link, self._enroll(link, request))
        elif isinstance(first, StartupRoutingCommand):
            # the agent may send nothing else before the answer (the connection's state machine)
            link.nursery.start_soon(self._ending, link, self._startup(link, request))
        elif isinstance(first, RenewCertificateCommand) and len(request.commands) == 1:
            link.nursery.start_soon(self._renew, link, request, first)
        else:
            name = type(first).__name__
            unsupported = UnsupportedAnswer(details=f"the management server does not take {name}")
            link.respond(request, [unsupported] * len(request.commands))

    @staticmethod
    async def _ending(link: AgentLink, outcome: Awaitable[str]) -> None:
        """Run a handler that says why the connection must close ("": it goes on)."""
        reason = await outcome
        if reason:
            link.end(reason)

    def _timed_out(self, link: AgentLink, frame_began: float | None) -> str:
        if link.pending:
            why = f"no startup within {self.limits.handshake_timeout:g} s"
        elif frame_began is not None:
            why = f"a frame not finished within {self.limits.frame_timeout:g} s"
        else:
            why = "silent for longer than 3 ping timeouts"
        log.warning("closing the connection: %s", why, extra={"peer": link.peer, "host_id": link.host_id})
        return why

    @staticmethod
    def _respond(link: AgentLink, request: Request, answers: Sequence[Answer] | Prepared) -> None:
        link.respond(request, answers)  # queued; a link that can no longer send is ended by its reader

    # --- handshake -------------------------------------------------------------------------------

    async def _refuse_startup(self, link: AgentLink, request: Request, reason: str) -> str:
        log.warning("startup refused, closing the connection: %s", reason,
                    extra={"peer": link.peer, "host_id": link.host_id})
        self._respond(link, request, [StartupAnswer(result=False, details=reason)]
                      + [Answer(result=False, details=reason)] * (len(request.commands) - 1))
        return f"startup refused: {reason}"

    async def _startup(self, link: AgentLink, request: Request) -> str:
        """Register the host; "" when it was accepted, else why the connection closes."""
        startup = request.commands[0]
        assert isinstance(startup, StartupRoutingCommand)
        storages = [c for c in request.commands if isinstance(c, StartupStorageCommand)]
        try:
            validate.startup(startup)
            if len(storages) > 1 or len(request.commands) > 1 + len(storages):
                raise validate.InvalidAgentMessage("a startup carries the routing startup and at most one "
                                                   "storage startup")
            for declared in storages:
                validate.storage(declared, startup.guid)
            if link.guid and link.guid != startup.guid:
                raise validate.InvalidAgentMessage(f"this connection registered {link.guid!r} already")
            if link.cert_guid is not None and startup.guid != link.cert_guid:
                raise validate.InvalidAgentMessage(f"the certificate is {link.cert_guid!r}'s, not "
                                                   f"{startup.guid[:80]!r}'s")
        except validate.InvalidAgentMessage as e:
            return await self._refuse_startup(link, request, str(e))
        link.guid = startup.guid
        self.newest[startup.guid] = link  # from now on an older connection of this host changes nothing
        storage = storages[0] if storages else None
        # Shielded: a registration written must be known here even when the agent hangs up meanwhile
        # (its connection then ends it as any host's: the row is not left Connecting).
        with trio.move_on_after(self.startup_timeout) as registering:
            registering.shield = True
            reg = await self.registrations.submit(registry.Startup(startup, storage, self.msid))
        if registering.cancelled_caught:
            return "the registration was not written in time"
        rest = [Answer()] * (len(request.commands) - 1)
        self._respond(link, request, [StartupAnswer(host_id=reg.host_id, ping_interval=self.ping_interval),
                                      *rest])
        if reg.reject_reason:
            log.error("host rejected: %s", reg.reject_reason, extra={"peer": link.peer, "guid": startup.guid})
            # Let the agent read the reason and answer (or hang up) before we close: up to 5 s.
            with contextlib.suppress(LinkClosed):
                await link.request([ReadyCommand(host_id=0, reject_reason=reg.reject_reason)], timeout=5)
            return f"startup rejected: {reg.reject_reason}"
        link.host_id, link.cluster_id = reg.host_id, reg.cluster_id
        link.conn.agent_id = reg.host_id
        self.hosts[reg.host_id] = (startup.guid, reg.cluster_id, startup.private_ip)
        self.zones[reg.host_id] = reg.zone_id
        old = self.links.get(reg.host_id)
        if old is not None and old is not link:  # the agent came back before we saw it leave
            old.close("the host connected again")
        self.links[reg.host_id] = link
        self._by_cluster.setdefault(reg.cluster_id, set()).add(reg.host_id)
        self._by_zone.setdefault(reg.zone_id, set()).add(reg.host_id)
        self._set_status(reg.host_id, Status.CONNECTING)
        # The startup carries the host's full power report: what runs there now, before any ping.
        self.reports[reg.host_id] = dict(startup.power_report)
        self._pending_reports[reg.host_id] = self.reports[reg.host_id]
        self._report_taken[reg.host_id] = registry.now()
        self._reports_queued.set()
        assert link.nursery is not None
        link.nursery.start_soon(self._ready, link, reg)
        return ""

    # --- certificates --------------------------------------------------------------------------------

    async def _enroll(self, link: AgentLink, request: Request) -> str:
        """The one request of a connection without a certificate; answered, then the connection closes."""
        enroll = request.commands[0]
        trust = self.trust
        if not isinstance(enroll, EnrollCommand) or len(request.commands) != 1 or trust is None:
            return "a connection without a certificate may only enroll"
        if link.cert_guid is None and not link.enroll_only:  # plain TCP (permissive mode)
            self._respond(link, request, [EnrollAnswer(result=False, details="enrollment needs TLS")])
            return "enrollment refused: not over TLS (the token would travel in clear)"

        async def answer(result: EnrollAnswer) -> None:
            self._respond(link, request, [result])

        if not enroll.token:  # first step: the agent fetches the CA to check it against its token
            await answer(EnrollAnswer(result=False, details="a registration token is needed",
                                      ca_certificate=trust.ca.pem))
            return "enrollment: the CA certificate was sent"
        try:
            validate.guid(enroll.guid)
            if len(enroll.token) > 256 or len(enroll.csr) > MAX_CSR:
                raise validate.InvalidAgentMessage("the token or the CSR is too long")
            issued = await trust.enroll(enroll.guid, enroll.token, enroll.csr)
        except (validate.InvalidAgentMessage, EnrollmentRefused) as e:
            log.warning("enrollment refused: %s", e, extra={"peer": link.peer})
            await answer(EnrollAnswer(result=False, details=str(e)))
            return f"enrollment refused: {e}"
        await answer(EnrollAnswer(certificate=issued.pem, ca_certificate=trust.ca.pem))
        log.info("host %s enrolled: certificate %s until %s", enroll.guid, issued.serial, issued.not_after,
                 extra={"peer": link.peer})
        return "enrolled; the agent comes back with its certificate"

    async def _renew(self, link: AgentLink, request: Request, renew: RenewCertificateCommand) -> None:
        trust = self.trust
        if trust is None or not link.cert_guid or not link.up:
            self._respond(link, request, [RenewCertificateAnswer(
                result=False, details="renewal needs a connection made with a certificate")])
            return
        try:
            issued = await trust.renew(link.cert_guid, renew.csr)
        except EnrollmentRefused as e:
            self._respond(link, request, [RenewCertificateAnswer(result=False, details=str(e))])
            return
        log.info("certificate renewed: %s until %s", issued.serial, issued.not_after,
                 extra={"host_id": link.host_id, "guid": link.cert_guid})
        renewed = RenewCertificateAnswer(certificate=issued.pem, ca_certificate=trust.ca.pem)
        self._respond(link, request, [renewed])

    async def provision_certificate(self, host_id: int, *, reconnect: bool = False) -> str:
        """A new key and certificate for a connected host (the provisionCertificate API): the agent makes
        the key and a CSR, the CA signs it, the agent installs it (and reconnects with it when asked).
        The new certificate's serial."""
        link = self.links.get(host_id)
        if self.trust is None or link is None or not link.up:
            raise AgentUnavailable(f"host {host_id} has no agent connected to this management server")
        if not link.cert_guid:
            raise AgentUnavailable(f"host {host_id} is connected without TLS; it cannot be given a "
                                   f"certificate over this connection")
        asked = (await self._request(link, [ProvisionCertificateCommand()], timeout=60))[0]
        if not isinstance(asked, ProvisionCertificateAnswer) or not asked.result:
            raise AgentUnavailable(f"host {host_id} did not make a certificate request: {asked.details}")
        try:
            issued = await self.trust.renew(link.cert_guid, asked.csr)
        except EnrollmentRefused as e:
            raise AgentUnavailable(f"host {host_id}'s certificate request was refused: {e}") from None
        done = (await self._request(link, [SetupCertificateCommand(
            certificate=issued.pem, ca_certificate=self.trust.ca.pem, reconnect=reconnect)], timeout=60))[0]
        if not done.result:
            raise AgentUnavailable(f"host {host_id} did not install its new certificate: {done.details}")
        log.info("certificate provisioned: %s until %s", issued.serial, issued.not_after,
                 extra={"host_id": host_id})
        return issued.serial

    async def revoke(self, guid: str) -> list[str]:
        """Revoke the host's certificates and close its live connection."""
        serials = await self.trust.revoke_host(guid) if self.trust is not None else []
        link = self.newest.get(guid)
        if link is not None:
            link.close("its certificate was revoked")
        return serials

    async def _ready(self, link: AgentLink, reg: registry.Registration) -> None:
        try:
            ready = self._ready_command(reg.host_id, reg.zone_id, reg.cluster_id)
            answers = await self._request(link, [ready], timeout=self.startup_timeout)
        except AgentUnavailable as e:
            log.info("host gone before Ready: %s", e, extra={"host_id": reg.host_id})
            return
        except OperationTimedOut:
            log.warning("no ReadyAnswer in %g s, closing", self.startup_timeout,
                        extra={"host_id": reg.host_id})
            link.close("no ReadyAnswer")
            return
        if not answers[0].result:
            log.warning("Ready refused by the agent: %s", answers[0].details,
                        extra={"host_id": reg.host_id})
            link.close("Ready refused by the agent")
            return
        # Usable from the ReadyAnswer on; marked before the row says Up, so that a host the database
        # shows Up can always be sent commands.
        link.up = True
        self._handshake_done(link)
        self.last_seen[reg.host_id] = trio.current_time()
        try:
            status = await self.transitions.submit(Change(reg.host_id, Event.READY, self.msid))
            if status is None:  # moved meanwhile (say, to Alert by an older connection): it answered, so Up
                status = await self.transitions.submit(Change(reg.host_id, Event.PING, self.msid))
        except Exception:  # the database failed us: this connection ends, the agent comes back
            log.exception("host not moved Up; closing its connection", extra={"host_id": reg.host_id})
            link.close("the server could not record the host Up")
            return
        if status is None:
            log.warning("could not move the host to Up; its row changed under us",
                        extra={"host_id": reg.host_id})
            return
        self._set_status(reg.host_id, status)
        log.info("host %s", status, extra={"host_id": reg.host_id, "guid": link.guid, "peer": link.peer})

    def _ready_command(self, host_id: int, zone_id: int, cluster_id: int) -> ReadyCommand:
        ha = self.ha
        servers, algorithm = self.server_list(host_id) if self.server_list is not None else ((), "roundrobin")
        if ha is None:
            return ReadyCommand(host_id=host_id, zone_id=zone_id, mgmt_servers=servers,
                                lb_algorithm=algorithm)
        return ReadyCommand(host_id=host_id, zone_id=zone_id, mgmt_servers=servers, lb_algorithm=algorithm,
                            heartbeat_pools=ha.heartbeat_pools(zone_id, cluster_id),
                            heartbeat_interval=ha.heartbeat_interval, self_fence_after=ha.self_fence_after)

    def tell_servers(self, host_ids: Iterable[int] | None = None) -> None:
        """Send each connected host (or those of ``host_ids``) its current list of management servers."""
        if self.server_list is None:
            return
        for host_id in list(self.links) if host_ids is None else host_ids:
            link = self.links.get(host_id)
            if link is not None and link.up:
                servers, algorithm = self.server_list(host_id)
                self._send_and_forget(link, SetupMSListCommand(mgmt_servers=servers, lb_algorithm=algorithm))

    def move(self, host_id: int) -> bool:
        """Ask a connected host to leave for the first server of its list (rebalancing): it answers,
        closes this connection and connects there; this server then marks it Disconnected, not lost.
        False when it is not connected here."""
        link = self.links.get(host_id)
        if link is None or not link.up or link.moving or link.waiting or self.server_list is None:
            return False  # (a host running commands for this server is left until it is idle)
        servers, algorithm = self.server_list(host_id)
        link.moving = True
        try:
            _seq, waiter = link.start_request([SetupMSListCommand(
                mgmt_servers=servers, lb_algorithm=algorithm, reconnect=True)])
        except LinkClosed:
            return False
        waiter.on_done = lambda w: self._moved(link, w)
        return True

    @staticmethod
    def _moved(link: AgentLink, waiter: Waiter) -> None:
        answer = waiter.response.answers[0] if waiter.response is not None else None
        if answer is None or not getattr(answer, "result", False):
            link.moving = False  # it stays (an older agent, or it could not): nothing changes

    async def refresh_heartbeats(self) -> None:
        """The shared pools changed: tell every connected host where to write its heartbeat now (a
        Ready again, which changes nothing else for a host that is Up)."""
        for host_id, link in list(self.links.items()):
            if link.up:
                zone_id = self.zones.get(host_id, 0)
                self._send_and_forget(link, self._ready_command(host_id, zone_id, link.cluster_id))

    @staticmethod
    def _send_and_forget(link: AgentLink, command: Command) -> None:
        with contextlib.suppress(LinkClosed):
            link.start_request([command])

    # --- liveness --------------------------------------------------------------------------------

    def _ping(self, link: AgentLink, request: Request, ping: PingRoutingCommand) -> str:
        """Note the host alive and its power report, and answer; "" or why the connection closes. Never
        waits: the database learns of a host coming back from a task of its own."""
        host_id = link.host_id
        if ping is not link.last_ping:  # the same ping as the last one is known good and changes nothing
            try:
                if not host_id:
                    raise validate.InvalidAgentMessage("a ping before the startup")
                validate.ping(ping, host_id)
            except validate.InvalidAgentMessage as e:
                log.warning("bad ping, closing the connection: %s", e,
                            extra={"peer": link.peer, "host_id": host_id})
                return f"bad ping: {e}"
            if link.up:
                if self.reports.get(host_id) != ping.power_report:
                    self.reports[host_id] = dict(ping.power_report)
                    self._pending_reports[host_id] = self.reports[host_id]
                    self._report_taken[host_id] = registry.now()
                    self._reports_queued.set()
                link.last_ping = ping
        self.last_seen[host_id] = trio.current_time()
        if host_id in self.suspect:
            self._heard_from(host_id)
        link.respond(request, _PING_OK if link.up else _PING_STARTUP)
        self.pings += 1
        if link.up and self.status.get(host_id) in _GONE and host_id not in self._coming_back:
            self._coming_back.add(host_id)
            if self._nursery is not None:
                self._nursery.start_soon(self._back_up, host_id)
            elif link.nursery is not None:
                link.nursery.start_soon(self._back_up, host_id)
        return ""

    async def _back_up(self, host_id: int) -> None:
        try:
            if await self.transitions.submit(Change(host_id, Event.PING, self.msid)) is not None:
                self._set_status(host_id, Status.UP)
                log.info("host back Up", extra={"host_id": host_id})
                link = self.links.get(host_id)
                if link is not None and link.up:  # admitted again: a host that fenced itself meanwhile
                    zone_id = self.zones.get(host_id, 0)  # heartbeats again (and clears its mark)
                    self._send_and_forget(link, self._ready_command(host_id, zone_id, link.cluster_id))
        except Exception:  # a task of the manager's nursery: its failure must not end the server
            log.exception("host not moved back Up; its next ping tries again", extra={"host_id": host_id})
        finally:
            self._coming_back.discard(host_id)

    def _write_reports(self, conn: Any, batch: dict[int, dict[str, PowerState]]) -> None:
        power.apply_reports(conn, batch, {h: self._report_taken[h] for h in batch if h in self._report_taken})
        # Counted inside the transaction, so whoever sees the rows sees the count (tests rely on it).
        self.power_writes += 1

    async def flush_power_reports(self, period: float = 1.0) -> None:
        """Write the changed power reports, all hosts in one transaction, at most once a ``period``."""
        while True:
            await self._reports_queued.wait()
            self._reports_queued = trio.Event()
            batch, self._pending_reports = self._pending_reports, {}
            try:
                await self.db.run(self._write_reports, batch)
                self._report_failures.clear()
            except Exception:
                log.exception("power reports not written; trying each host's alone",
                              extra={"hosts": len(batch)})
                await self._write_reports_alone(batch)
            await trio.sleep(period)  # batching: reports arriving meanwhile go in the next write

    async def _write_reports_alone(self, batch: dict[int, dict[str, PowerState]]) -> None:
        """After a failed batch: each host's report in its own transaction. One that keeps failing is
        dropped after three tries (the next changed report is written afresh), so no host's report can
        stop every other host's from being written; the rest are kept for the next round."""
        for host_id, report in batch.items():
            try:
                await self.db.run(self._write_reports, {host_id: report})
                self._report_failures.pop(host_id, None)
            except Exception as e:
                tries = self._report_failures[host_id] = self._report_failures.get(host_id, 0) + 1
                if tries >= 3:
                    log.error("power report of host %d dropped after %d failed writes: %r", host_id, tries, e,
                              extra={"host_id": host_id})
                    self._report_failures.pop(host_id, None)
                    continue
                self._pending_reports.setdefault(host_id, report)
                self._reports_queued.set()

    async def _disconnected(self, link: AgentLink, reason: str) -> None:
        # A host's connection ending is news; one that never registered (a flood, a scanner) is not.
        log.log(logging.INFO if link.host_id else logging.DEBUG, "agent disconnected: %s", reason,
                extra={"peer": link.peer, "host_id": link.host_id})
        if self.newest.get(link.guid) is link:
            del self.newest[link.guid]
        elif link.guid:
            return  # a newer connection of this host exists: it owns the host's status
        if not link.host_id or self.links.get(link.host_id) is not link:
            return  # never registered
        del self.links[link.host_id]
        self._by_cluster.get(link.cluster_id, set()).discard(link.host_id)
        self._by_zone.get(self.zones.get(link.host_id, 0), set()).discard(link.host_id)
        # Our own shutdown leaves hosts Disconnected (they reconnect to a server); a lost agent is Alert.
        event = Event.MANAGEMENT_SERVER_DOWN if self.stopping else Event.AGENT_DISCONNECTED
        if link.moving:  # it left for another server on this server's word: not lost
            event = Event.MANAGEMENT_SERVER_DOWN
        try:
            new = await self.transitions.submit(Change(link.host_id, event, holder=self.msid))
        except Exception:  # the database failed us; the monitor looks at the silent host again later
            log.exception("the host's disconnection was not recorded", extra={"host_id": link.host_id})
            return
        if new is not None:
            self._set_status(link.host_id, new)
        else:
            self.status.pop(link.host_id, None)  # another server holds it now (or it moved on)
        if event is Event.AGENT_DISCONNECTED and new is not None and self._nursery is not None:
            self._nursery.start_soon(self._investigate, link.host_id)  # lost: is it dead?

    async def monitor(self) -> None:
        """Every half ping interval: hosts silent for 1.5 intervals become suspects (out of placement,
        their commands fail at once); silent for ``ping.timeout`` intervals, they are investigated; hosts
        in Alert without a connection are investigated again every ``investigate_interval``."""
        while True:
            await trio.sleep(self.ping_interval / 2)  # the monitor's period
            now = trio.current_time()
            for host_id, seen in list(self.last_seen.items()):
                if seen < now - 1.5 * self.ping_interval and self.status.get(host_id) is Status.UP:
                    self._suspect(host_id)
            limit = now - self.ping_interval * self.ping_timeout
            silent = [h for h, seen in self.last_seen.items()
                      if seen < limit and self.status.get(h) is Status.UP]
            again = self.ha.investigate_interval if self.ha is not None else 0.0
            lost = [h for h, s in self.status.items()
                    if s is Status.ALERT and again and h not in self.links
                    and self._investigated.get(h, 0.0) < now - again]
            for host_id in [*silent, *lost]:
                if host_id not in self._investigating and self._nursery is not None:
                    self._nursery.start_soon(self._investigate, host_id)

    def live_reports(self) -> dict[int, dict[str, PowerState]]:
        """The last power report of each host connected and answering: a host that went silent or
        lost its link speaks no more (its last report would say its VMs still run there)."""
        return {h: dict(r) for h, r in self.reports.items()
                if h not in self.suspect and (link := self.links.get(h)) is not None and link.up}

    def investigate_soon(self, host_id: int) -> None:
        """Investigate a host this server has no connection to (one a previous run left Disconnected
        or in Alert), unless it is being investigated or was lately."""
        again = self.ha.investigate_interval if self.ha is not None else 0.0
        if (self._nursery is not None and host_id not in self._investigating and host_id not in self.links
                and self._investigated.get(host_id, 0.0) < trio.current_time() - again):
            self._nursery.start_soon(self._investigate, host_id)

    def _suspect(self, host_id: int) -> None:
        """The host stopped answering: take it out of placement and fail what waits for it."""
        if host_id in self.suspect:
            return
        self.suspect.add(host_id)
        log.warning("host silent for %.0f s: out of placement, its commands fail", 1.5 * self.ping_interval,
                    extra={"host_id": host_id})
        link = self.links.get(host_id)
        if link is not None:
            link.abandon_all()
        for listener in self.suspect_listeners:
            listener(host_id, True)

    def _heard_from(self, host_id: int) -> None:
        if host_id in self.suspect:
            self.suspect.discard(host_id)
            log.info("host heard from again", extra={"host_id": host_id})
            for listener in self.suspect_listeners:
                listener(host_id, False)

    async def _investigate(self, host_id: int) -> None:
        if host_id in self._investigating:
            return
        self._investigating.add(host_id)
        try:
            async with self._investigations:
                await self._investigation(host_id)
        except Exception:  # a task of the manager's nursery: its failure must not end the server
            log.exception("investigation failed; the host is looked at again later",
                          extra={"host_id": host_id})
        finally:
            self._investigating.discard(host_id)
            self._investigated[host_id] = trio.current_time()

    async def _investigation(self, host_id: int) -> None:
        began = trio.current_time()
        link = self.links.get(host_id)
        if link is not None and link.up:  # connected but silent: ask the host itself first
            try:
                answers = await self.send(host_id, [CheckHealthCommand()], timeout=self.ping_interval,
                                          even_suspect=True)
                if answers[0].result:
                    self.last_seen[host_id] = trio.current_time()  # alive, only its pings were lost
                    self._heard_from(host_id)
                    return
            except (AgentUnavailable, OperationTimedOut):
                pass
        verdict = await self._ask_neighbours(host_id)
        if self.last_seen.get(host_id, 0.0) > began:
            return  # heard from while the neighbours looked: whatever they saw is old news
        event, status = (Event.HOST_DOWN, Status.DOWN) if verdict == "dead" else (Event.PING_TIMEOUT,
                                                                                  Status.ALERT)
        if self.status.get(host_id) is status:
            return
        if await self.transitions.submit(Change(host_id, event, holder=self.msid)) is not None:
            self._set_status(host_id, status)
            why = {"dead": "a neighbour found it dead",
                   "alive": "alive on shared storage, but not reachable from here"}.get(verdict,
                                                                                      "nobody could tell")
            log.warning("host investigated: %s", why, extra={"host_id": host_id, "status": status})

    async def _ask_neighbours(self, host_id: int, asked: int = 2) -> str:
        """"dead", "alive" or "" (nobody could tell), from neighbours in the host's cluster (then
        zone) watching its heartbeat and disks on the pools they share (CheckOnHostCommand)."""
        ha = self.ha
        await self.learn(host_id)
        guid, _, private_ip = self.hosts.get(host_id, ("", 0, ""))
        neighbours = self.neighbours(host_id, asked)
        window = ha.window if ha is not None else 0.0
        disks = await ha.disks(host_id) if ha is not None else ()
        for neighbour in neighbours:
            try:
                ask = CheckOnHostCommand(host_guid=guid, private_ip=private_ip, window=window, disks=disks)
                answer = (await self.send(neighbour, [ask], timeout=2 * window + self.ping_interval))[0]
            except (AgentUnavailable, OperationTimedOut):
                continue
            if isinstance(answer, CheckOnHostAnswer) and answer.determined:
                return "alive" if answer.alive else "dead"
        return ""

    async def learn(self, host_id: int) -> None:
        """Know the host's guid, cluster and zone even when it never connected to this server."""
        if host_id not in self.hosts and self.ha is not None:
            found = await self.ha.facts(host_id)
            if found is not None:
                guid, cluster_id, zone_id, private_ip = found
                self.hosts.setdefault(host_id, (guid, cluster_id, private_ip))
                self.zones.setdefault(host_id, zone_id)

    def neighbours(self, host_id: int, limit: int = 2) -> list[int]:
        """Up to ``limit`` connected hosts that may share storage with the host: its cluster's first,
        then its zone's. Looked up by cluster and zone, never over every connection: a mass disconnect
        investigates thousands of hosts at once."""
        _, cluster_id, _ = self.hosts.get(host_id, ("", 0, ""))
        zone_id = self.zones.get(host_id, 0)
        found: list[int] = []
        passes = ((self._by_cluster.get(cluster_id, set()), True), (self._by_zone.get(zone_id, set()), False))
        for candidates, same_cluster in passes:
            for h in candidates:
                link = self.links.get(h)
                # (a host that registered again elsewhere may still be listed where it was)
                if (link is None or not link.up or h == host_id or h in found or h in self.suspect
                        or self.zones.get(h) != zone_id or (same_cluster and link.cluster_id != cluster_id)):
                    continue
                found.append(h)
                if len(found) >= limit:
                    return found
        return found

    # --- commands --------------------------------------------------------------------------------

    async def send(self, host_id: int, commands: Sequence[Command], *, in_sequence: bool = False,
                   stop_on_error: bool = False, timeout: float = 60.0,
                   even_suspect: bool = False, local_only: bool = False) -> tuple[Any, ...]:
        """Send commands to a host and return its answers; raises AgentUnavailable or OperationTimedOut.
        A suspect host (silent, see ``monitor``) is not sent anything unless ``even_suspect``. A host
        whose agent is connected to another management server is reached through it (``forwarder``),
        unless ``local_only``."""
        link = self.links.get(host_id)
        if (link is None or not link.up) and self.forwarder is not None and not local_only:
            return await self.forwarder(host_id, commands, timeout=timeout, in_sequence=in_sequence,
                                        stop_on_error=stop_on_error)
        if link is None or not link.up:
            raise AgentUnavailable(f"host {host_id} has no agent connected to this management server")
        if host_id in self.suspect and not even_suspect:
            raise AgentUnavailable(f"host {host_id} has not answered for {1.5 * self.ping_interval:g} s")
        return await self._request(link, commands, timeout=timeout, in_sequence=in_sequence,
                                   stop_on_error=stop_on_error)

    async def fan_out(self, host_ids: Iterable[int], commands: Sequence[Command], *,
                      timeout: float = 60.0) -> dict[int, tuple[Any, ...] | Exception]:
        """Send the same commands to many hosts at once and collect every answer: serialized once, one
        queued frame per host, one wait for them all (no task per host). Each host's answers, or the
        AgentUnavailable or OperationTimedOut that stands for them."""
        gather = _Gather(type(commands[0]).__name__, timeout)
        prepared = prepare(commands)
        sent: list[tuple[AgentLink, int]] = []
        for host_id in host_ids:
            link = self.links.get(host_id)
            if link is None or not link.up or host_id in self.suspect:
                gather.results[host_id] = AgentUnavailable(f"host {host_id} is not connected and answering")
                continue
            gather.left += 1
            try:
                seq, _waiter = link.start_request(prepared, waiter=_HostWaiter(host_id, gather.finished))
            except LinkClosed as e:
                gather.left -= 1
                gather.results[host_id] = AgentUnavailable(f"host {host_id}: {e}")
                continue
            sent.append((link, seq))
        if gather.left:
            with trio.move_on_after(timeout):
                await gather.all_in.wait()
        gather.timed_out = True
        for link, seq in sent:  # what did not come in time is abandoned (its waiter records the timeout)
            link.abandon(seq)
        return gather.results

    async def _request(self, link: AgentLink, commands: Sequence[Command], *, timeout: float,
                       in_sequence: bool = False, stop_on_error: bool = False) -> tuple[Any, ...]:
        try:
            response = await link.request(commands, timeout=timeout, in_sequence=in_sequence,
                                          stop_on_error=stop_on_error)
        except LinkClosed as e:  # the connection ended first (or could not send)
            raise AgentUnavailable(f"host {link.host_id}: the connection closed before it answered "
                                   f"{type(commands[0]).__name__}: {e}") from None
        if response is None:
            raise OperationTimedOut(f"host {link.host_id} did not answer {type(commands[0]).__name__} "
                                    f"within {timeout:g} s")
        return response.answers
