"""The agent manager: accepts agents on the agent port, runs their handshake, keeps their liveness in
memory, and sends them commands.

Per connection, one task reads and feeds the sans-IO ``Connection``; sends go under a FIFO lock; each
request waits for its matching answer under the caller's deadline. The database is written when a
host's status changes (startup, Ready, disconnect, alert), never per ping. A monitor task finds hosts
silent for ``ping.interval * ping.timeout``, asks them ``CheckHealthCommand``; for those that do not
answer it asks neighbours in their cluster (``CheckOnHostCommand``): Down when one finds the host dead,
Alert when nobody can tell.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from protocol import (
    NEED_DATA,
    Connection,
    ConnectionClosed,
    LocalProtocolError,
    ProtocolError,
    Request,
    Response,
    Role,
)
from protocol.messages import (
    Answer,
    CheckHealthCommand,
    CheckOnHostAnswer,
    CheckOnHostCommand,
    Command,
    PingAnswer,
    PingRoutingCommand,
    PowerState,
    ReadyCommand,
    StartupAnswer,
    StartupRoutingCommand,
    StartupStorageCommand,
    UnsupportedAnswer,
)

from ..db.batching import Batcher
from ..db.database import Database
from ..errors import AgentUnavailable, OperationTimedOut
from . import power, registry
from .host_status import Event, Status
from .registry import Change

log = logging.getLogger(__name__)


@dataclass
class AgentLink:
    """The server's side of one agent connection."""

    stream: trio.SocketStream
    conn: Connection
    peer: str
    host_id: int = 0
    guid: str = ""
    cluster_id: int = 0
    up: bool = False
    send_lock: trio.StrictFIFOLock = field(default_factory=trio.StrictFIFOLock)
    waiters: dict[int, trio.MemorySendChannel[Response]] = field(default_factory=dict)


class AgentManager:
    def __init__(self, db: Database, msid: int, *, ping_interval: float = 60.0, ping_timeout: float = 2.5,
                 startup_timeout: float = 30.0) -> None:
        self.db = db
        self.msid = msid
        # Startups and status changes arriving together share a transaction (a storm is thousands).
        self.registrations = Batcher(db, registry.register_many, name="register")
        self.transitions = Batcher(db, registry.transition_many, name="transition")
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout  # a multiple of the interval, as CloudStack's ping.timeout
        self.startup_timeout = startup_timeout
        self.links: dict[int, AgentLink] = {}
        self.newest: dict[str, AgentLink] = {}  # by guid, from the moment a startup arrives
        self.hosts: dict[int, tuple[str, int, str]] = {}  # host id -> guid, cluster id, private IP
        self.reports: dict[int, dict[str, PowerState]] = {}  # each host's last power report
        self._pending_reports: dict[int, dict[str, PowerState]] = {}
        self._reports_queued = trio.Event()
        self.power_writes = 0  # transactions that applied power reports (for tests and metrics)
        self.last_seen: dict[int, float] = {}
        self.status: dict[int, Status] = {}  # what this server last wrote for its hosts
        self.port = 0
        self.stopping = False  # set on shutdown: closing links is then the server's doing
        # Called with (host id, status) after each status this server writes (the planner listens).
        self.status_listeners: list[Callable[[int, Status], None]] = []

    def _set_status(self, host_id: int, status: Status) -> None:
        self.status[host_id] = status
        for listener in self.status_listeners:
            try:
                listener(host_id, status)
            except Exception:
                log.exception("a host status listener failed", extra={"host_id": host_id})

    # --- serving ---------------------------------------------------------------------------------

    async def serve(self, port: int, host: str | None = None, *,
                    task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(port, host=host)
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.registrations.run)
            nursery.start_soon(self.transitions.run)
            nursery.start_soon(self.monitor)
            nursery.start_soon(self.flush_power_reports)
            task_status.started(self.port)
            await trio.serve_listeners(self._handle, listeners, handler_nursery=nursery)

    async def _handle(self, stream: trio.SocketStream) -> None:
        address, port = stream.socket.getpeername()[:2]
        peer = f"{address}:{port}"
        link = AgentLink(stream, Connection(Role.SERVER, mgmt_id=self.msid), peer)
        reason = "closed"
        try:
            async with trio.open_nursery() as nursery:
                reason = await self._read(link, nursery)
                nursery.cancel_scope.cancel()
        except Exception as e:  # one connection's failure must never take the server down
            reason = f"internal error: {e!r}"
            log.exception("connection handler failed", extra={"peer": peer, "host_id": link.host_id})
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()
                await self._disconnected(link, reason)

    async def _read(self, link: AgentLink, nursery: trio.Nursery) -> str:
        while True:
            try:
                data = await link.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as e:
                return f"read failed: {e}"
            link.conn.receive_data(data)
            while True:
                try:
                    event = link.conn.next_event()
                except ProtocolError as e:
                    log.warning("protocol violation, closing the connection: %s", e,
                                extra={"peer": link.peer, "host_id": link.host_id})
                    return f"protocol violation: {e}"
                if event is NEED_DATA:
                    break
                if isinstance(event, ConnectionClosed):
                    return "the agent closed the connection"
                if isinstance(event, Response):
                    waiter = link.waiters.pop(event.seq, None)
                    if waiter is not None:
                        waiter.send_nowait(event)
                elif isinstance(event, Request):
                    first = event.commands[0]
                    if isinstance(first, StartupRoutingCommand):
                        # Handled in line: nothing else may reach the host before it is registered.
                        if not await self._startup(link, event, nursery):
                            return "startup rejected"
                    elif isinstance(first, PingRoutingCommand):
                        await self._ping(link, event, first)
                    else:
                        await self._respond(link, event, [UnsupportedAnswer(
                            details=f"the management server does not take {type(first).__name__}")]
                            * len(event.commands))

    async def _respond(self, link: AgentLink, request: Request, answers: Sequence[Answer]) -> None:
        async with link.send_lock:
            try:
                await link.stream.send_all(link.conn.send_response(request, answers))
            except LocalProtocolError:
                pass  # the connection is already closed or failed; the reader ends it
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                link.conn.send_failed()

    # --- handshake -------------------------------------------------------------------------------

    async def _startup(self, link: AgentLink, request: Request, nursery: trio.Nursery) -> bool:
        startup = request.commands[0]
        assert isinstance(startup, StartupRoutingCommand)
        link.guid = startup.guid
        self.newest[startup.guid] = link  # from now on an older connection of this host changes nothing
        storage = next((c for c in request.commands if isinstance(c, StartupStorageCommand)), None)
        reg = await self.registrations.submit(registry.Startup(startup, storage, self.msid))
        rest = [Answer()] * (len(request.commands) - 1)
        await self._respond(link, request, [StartupAnswer(host_id=reg.host_id,
                                                          ping_interval=self.ping_interval), *rest])
        if reg.reject_reason:
            log.error("host rejected: %s", reg.reject_reason, extra={"peer": link.peer, "guid": startup.guid})
            await self._send_and_forget(link, ReadyCommand(host_id=0, reject_reason=reg.reject_reason))
            # Let the agent read the reason and answer (or hang up) before we close: up to 5 s.
            with trio.move_on_after(5), contextlib.suppress(trio.BrokenResourceError,
                                                            trio.ClosedResourceError):
                await link.stream.receive_some(65536)
            return False
        link.host_id, link.cluster_id = reg.host_id, reg.cluster_id
        link.conn.agent_id = reg.host_id
        self.hosts[reg.host_id] = (startup.guid, reg.cluster_id, startup.private_ip)
        old = self.links.get(reg.host_id)
        if old is not None and old is not link:  # the agent came back before we saw it leave
            await old.stream.aclose()
        self.links[reg.host_id] = link
        self._set_status(reg.host_id, Status.CONNECTING)
        # The startup carries the host's full power report: what runs there now, before any ping.
        self.reports[reg.host_id] = dict(startup.power_report)
        self._pending_reports[reg.host_id] = self.reports[reg.host_id]
        self._reports_queued.set()
        nursery.start_soon(self._ready, link, reg)
        return True

    async def _ready(self, link: AgentLink, reg: registry.Registration) -> None:
        try:
            answers = await self._request(link, [ReadyCommand(host_id=reg.host_id, zone_id=reg.zone_id)],
                                          timeout=self.startup_timeout)
        except AgentUnavailable as e:
            log.info("host gone before Ready: %s", e, extra={"host_id": reg.host_id})
            return
        except OperationTimedOut:
            log.warning("no ReadyAnswer in %g s, closing", self.startup_timeout,
                        extra={"host_id": reg.host_id})
            await link.stream.aclose()
            return
        if not answers[0].result:
            log.warning("Ready refused by the agent: %s", answers[0].details,
                        extra={"host_id": reg.host_id})
            await link.stream.aclose()
            return
        # Usable from the ReadyAnswer on; marked before the row says Up, so that a host the database
        # shows Up can always be sent commands.
        link.up = True
        self.last_seen[reg.host_id] = trio.current_time()
        status = await self.transitions.submit(Change(reg.host_id, Event.READY, self.msid))
        if status is None:  # moved meanwhile (say, to Alert by an older connection): it answered, so Up
            status = await self.transitions.submit(Change(reg.host_id, Event.PING, self.msid))
        if status is None:
            log.warning("could not move the host to Up; its row changed under us",
                        extra={"host_id": reg.host_id})
            return
        self._set_status(reg.host_id, status)
        log.info("host %s", status, extra={"host_id": reg.host_id, "guid": link.guid, "peer": link.peer})

    async def _send_and_forget(self, link: AgentLink, command: Command) -> None:
        async with link.send_lock:
            with contextlib.suppress(LocalProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
                _seq, data = link.conn.send_request([command])
                await link.stream.send_all(data)

    # --- liveness --------------------------------------------------------------------------------

    async def _ping(self, link: AgentLink, request: Request, ping: PingRoutingCommand) -> None:
        host_id = link.host_id
        self.last_seen[host_id] = trio.current_time()
        back = self.status.get(host_id) in (Status.ALERT, Status.DISCONNECTED) and link.up
        if back and await self.transitions.submit(Change(host_id, Event.PING, self.msid)) is not None:
            self._set_status(host_id, Status.UP)
            log.info("host back Up", extra={"host_id": host_id})
        await self._respond(link, request, [PingAnswer(send_startup=not link.up)])
        if link.up and self.reports.get(host_id) != ping.power_report:
            self.reports[host_id] = dict(ping.power_report)
            self._pending_reports[host_id] = self.reports[host_id]
            self._reports_queued.set()

    def _write_reports(self, conn: Any, batch: dict[int, dict[str, PowerState]]) -> None:
        power.apply_reports(conn, batch)
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
            except Exception:  # the database is down or busy: keep the reports for the next round
                log.exception("power reports not written; they will be retried", extra={"hosts": len(batch)})
                self._pending_reports = {**batch, **self._pending_reports}
                self._reports_queued.set()
            await trio.sleep(period)  # batching: reports arriving meanwhile go in the next write

    async def _disconnected(self, link: AgentLink, reason: str) -> None:
        log.info("agent disconnected: %s", reason, extra={"peer": link.peer, "host_id": link.host_id})
        waiters, link.waiters = link.waiters, {}
        for waiter in waiters.values():  # requests in flight on this connection get no answer now
            waiter.close()
        if self.newest.get(link.guid) is link:
            del self.newest[link.guid]
        elif link.guid:
            return  # a newer connection of this host exists: it owns the host's status
        if not link.host_id or self.links.get(link.host_id) is not link:
            return  # never registered
        del self.links[link.host_id]
        # Our own shutdown leaves hosts Disconnected (they reconnect to a server); a lost agent is Alert.
        event = Event.MANAGEMENT_SERVER_DOWN if self.stopping else Event.AGENT_DISCONNECTED
        new = await self.transitions.submit(Change(link.host_id, event))
        if new is not None:
            self._set_status(link.host_id, new)

    async def monitor(self) -> None:
        """Investigate hosts silent for ping.interval * ping.timeout; Alert those that do not answer."""
        while True:
            await trio.sleep(self.ping_interval / 2)  # the monitor's period
            limit = trio.current_time() - self.ping_interval * self.ping_timeout
            silent = [h for h, seen in self.last_seen.items()
                      if seen < limit and self.status.get(h) is Status.UP]
            async with trio.open_nursery() as nursery:
                for host_id in silent:
                    nursery.start_soon(self._investigate, host_id)

    async def _investigate(self, host_id: int) -> None:
        try:
            answers = await self.send(host_id, [CheckHealthCommand()], timeout=self.ping_interval)
            if answers[0].result:
                self.last_seen[host_id] = trio.current_time()  # alive, only its pings were lost
                return
        except (AgentUnavailable, OperationTimedOut):
            pass
        dead = await self._ask_neighbours(host_id)
        event, status = (Event.HOST_DOWN, Status.DOWN) if dead else (Event.PING_TIMEOUT, Status.ALERT)
        if await self.transitions.submit(Change(host_id, event)) is not None:
            self._set_status(host_id, status)
            log.warning("host went silent; %s", "a neighbour found it dead" if dead else "nobody could tell",
                        extra={"host_id": host_id, "status": status})

    async def _ask_neighbours(self, host_id: int, asked: int = 2) -> bool:
        """Whether a neighbour in the host's cluster determined that it is dead (CheckOnHostCommand)."""
        guid, cluster_id, private_ip = self.hosts.get(host_id, ("", 0, ""))
        neighbours = [h for h, link in self.links.items()
                      if h != host_id and link.up and link.cluster_id == cluster_id][:asked]
        for neighbour in neighbours:
            try:
                ask = CheckOnHostCommand(host_guid=guid, private_ip=private_ip)
                answer = (await self.send(neighbour, [ask], timeout=self.ping_interval))[0]
            except (AgentUnavailable, OperationTimedOut):
                continue
            if isinstance(answer, CheckOnHostAnswer) and answer.determined:
                return not answer.alive
        return False

    # --- commands --------------------------------------------------------------------------------

    async def send(self, host_id: int, commands: Sequence[Command], *, in_sequence: bool = False,
                   stop_on_error: bool = False, timeout: float = 60.0) -> tuple[Any, ...]:
        """Send commands to a host and return its answers; raises AgentUnavailable or OperationTimedOut."""
        link = self.links.get(host_id)
        if link is None or not link.up:
            raise AgentUnavailable(f"host {host_id} has no agent connected to this management server")
        return await self._request(link, commands, timeout=timeout, in_sequence=in_sequence,
                                   stop_on_error=stop_on_error)

    async def _request(self, link: AgentLink, commands: Sequence[Command], *, timeout: float,
                       in_sequence: bool = False, stop_on_error: bool = False) -> tuple[Any, ...]:
        send, receive = trio.open_memory_channel[Response](1)
        async with link.send_lock:
            try:
                seq, data = link.conn.send_request(commands, in_sequence=in_sequence,
                                                   stop_on_error=stop_on_error)
            except LocalProtocolError as e:  # the connection closed or failed under us
                raise AgentUnavailable(f"host {link.host_id}: {e}") from None
            link.waiters[seq] = send
            try:
                await link.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as e:
                link.waiters.pop(seq, None)
                raise AgentUnavailable(f"host {link.host_id}: the connection broke: {e}") from None
        with trio.move_on_after(timeout):
            try:
                return (await receive.receive()).answers
            except trio.EndOfChannel:  # the connection ended first (see _disconnected)
                raise AgentUnavailable(f"host {link.host_id}: the connection closed before it answered "
                                       f"{type(commands[0]).__name__}") from None
        link.waiters.pop(seq, None)
        link.conn.abandon(seq)
        raise OperationTimedOut(f"host {link.host_id} did not answer {type(commands[0]).__name__} "
                                f"within {timeout:g} s")
