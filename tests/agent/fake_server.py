"""A small management server for testing agents before the real one exists: real TCP, real protocol.

It accepts agents, answers their startup, sends ReadyCommand, answers pings (recording the power
reports), and lets a test send commands to a host and await the answers. Every change of state wakes
``wait_for``, so tests wait for conditions under a deadline instead of sleeping.
"""

from __future__ import annotations

import contextlib
import itertools
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
    Command,
    PingAnswer,
    PingRoutingCommand,
    PowerState,
    ReadyCommand,
    StartupAnswer,
    StartupRoutingCommand,
    StartupStorageCommand,
)


@dataclass
class HostLink:
    """The server's side of one agent connection."""

    stream: trio.SocketStream
    conn: Connection
    guid: str = ""
    host_id: int = 0
    ready: bool = False
    closed: bool = False
    startups: list[tuple[Command, ...]] = field(default_factory=list)
    pings: list[dict[str, PowerState]] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    waiters: dict[int, trio.MemorySendChannel[Response]] = field(default_factory=dict)
    send_lock: trio.StrictFIFOLock = field(default_factory=trio.StrictFIFOLock)


class FakeServer:
    def __init__(self, *, ping_interval: float = 0.05, host: str = "127.0.0.1") -> None:
        self.ping_interval = ping_interval
        self.bind_host = host
        self.port = 0
        self.links: list[HostLink] = []
        self.host_ids: dict[str, int] = {}
        self._ids = itertools.count(1)
        self.refuse_startup = ""  # details of a refused StartupAnswer
        self.reject_reason = ""  # sent in ReadyCommand
        self.answer_pings = True
        self.ask_startup: set[str] = set()  # guids whose next PingAnswer asks for a new startup
        self.violations: list[str] = []
        self._changed = trio.Event()
        self._scope: trio.CancelScope | None = None

    # --- running ---------------------------------------------------------------------------------

    async def serve(self, port: int = 0, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as self._scope:
            listeners = await trio.open_tcp_listeners(port, host=self.bind_host)
            self.port = listeners[0].socket.getsockname()[1]
            task_status.started(self.port)
            await trio.serve_listeners(self._handle, listeners)

    async def stop(self) -> None:
        """Stop listening and drop every connection (a server crash, as the agents see it)."""
        if self._scope is not None:
            self._scope.cancel()
        for link in self.links:
            await link.stream.aclose()
        self._changed.set()

    def changed(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Wait until ``predicate()`` is truthy and return it; fail after ``timeout`` seconds."""
        with trio.fail_after(timeout):
            while not (result := predicate()):
                await self._changed.wait()
            return result

    # --- queries ---------------------------------------------------------------------------------

    def link(self, guid: str) -> HostLink | None:
        """The newest live connection of host ``guid``."""
        return next((lk for lk in reversed(self.links) if lk.guid == guid and not lk.closed), None)

    def ready_links(self, guid: str | None = None) -> list[HostLink]:
        return [lk for lk in self.links if lk.ready and not lk.closed and (guid is None or lk.guid == guid)]

    # --- talking to a host -----------------------------------------------------------------------

    async def send(self, guid: str, commands: Sequence[Command], *, in_sequence: bool = False,
                   stop_on_error: bool = False, timeout: float = 10.0) -> Response:
        link = self.link(guid)
        assert link is not None, f"host {guid} is not connected"
        send, receive = trio.open_memory_channel[Response](1)
        async with link.send_lock:
            seq, data = link.conn.send_request(commands, in_sequence=in_sequence, stop_on_error=stop_on_error)
            link.waiters[seq] = send
            await link.stream.send_all(data)
        with trio.fail_after(timeout):
            return await receive.receive()

    async def send_raw(self, guid: str, data: bytes) -> None:
        link = self.link(guid)
        assert link is not None
        async with link.send_lock:
            await link.stream.send_all(data)

    # --- one agent connection --------------------------------------------------------------------

    async def _handle(self, stream: trio.SocketStream) -> None:
        link = HostLink(stream, Connection(Role.SERVER, initial_seq=1000))
        self.links.append(link)
        self.changed()
        try:
            async with trio.open_nursery() as nursery:
                while True:
                    try:
                        data = await stream.receive_some(65536)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        return
                    link.conn.receive_data(data)
                    while True:
                        try:
                            event = link.conn.next_event()
                        except ProtocolError as e:
                            self.violations.append(str(e))
                            return
                        if event is NEED_DATA or isinstance(event, ConnectionClosed):
                            break
                        if isinstance(event, Response):
                            waiter = link.waiters.pop(event.seq, None)
                            if waiter is not None:
                                waiter.send_nowait(event)
                        elif isinstance(event, Request):
                            link.requests.append(event)
                            nursery.start_soon(self._on_request, link, event)
                    if isinstance(event, ConnectionClosed):
                        return
        finally:
            link.closed = True
            self.changed()
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def _on_request(self, link: HostLink, request: Request) -> None:
        first = request.commands[0]
        if isinstance(first, StartupRoutingCommand | StartupStorageCommand):
            await self._on_startup(link, request)
        elif isinstance(first, PingRoutingCommand):
            if not self.answer_pings:
                return
            link.pings.append(dict(first.power_report))
            send_startup = link.guid in self.ask_startup
            self.ask_startup.discard(link.guid)
            await self._respond(link, request, [PingAnswer(send_startup=send_startup)])
        else:
            failures = [Answer(result=False, details="not handled")] * len(request.commands)
            await self._respond(link, request, failures)
        self.changed()

    async def _on_startup(self, link: HostLink, request: Request) -> None:
        first = request.commands[0]
        assert isinstance(first, StartupRoutingCommand)
        link.guid = first.guid
        link.startups.append(request.commands)
        if self.refuse_startup:
            answers: list[Answer] = [StartupAnswer(result=False, details=self.refuse_startup)]
            await self._respond(link, request, answers + [Answer()] * (len(request.commands) - 1))
            return
        host_id = self.host_ids.setdefault(first.guid, next(self._ids))
        link.host_id = link.conn.agent_id = host_id
        answers = [StartupAnswer(host_id=host_id, ping_interval=self.ping_interval)]
        await self._respond(link, request, answers + [Answer()] * (len(request.commands) - 1))
        ready = await self.send(link.guid, [ReadyCommand(host_id=host_id, reject_reason=self.reject_reason)])
        link.ready = bool(ready.answers[0].result)
        self.changed()

    async def _respond(self, link: HostLink, request: Request, answers: Sequence[Answer]) -> None:
        async with link.send_lock:
            # the connection may have closed (or failed) while the request was handled: the reader ends it
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, LocalProtocolError):
                await link.stream.send_all(link.conn.send_response(request, answers))
