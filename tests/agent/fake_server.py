"""A small management server for testing agents before the real one exists: real TCP, real protocol.

It accepts agents, answers their startup, sends ReadyCommand, answers pings (recording the power
reports), and lets a test send commands to a host and await the answers. Every change of state wakes
``wait_for``, so tests wait for conditions under a deadline instead of sleeping.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import trio

from protocol import Connection, Request, Response, Role
from protocol.link import Link, Waiter
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


class HostLink(Link):
    """The server's side of one agent connection (the shared trio adapter, and what the tests look at)."""

    def __init__(self, stream: trio.SocketStream, server: FakeServer) -> None:
        super().__init__(stream, Connection(Role.SERVER, initial_seq=1000), server._on_request)
        self.guid = ""
        self.host_id = 0
        self.ready = False
        self.closed = False
        self.startups: list[tuple[Command, ...]] = []
        self.pings: list[dict[str, PowerState]] = []
        self.requests: list[Request] = []

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
            link.end("the server stopped")
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
        response = await link.request(commands, in_sequence=in_sequence, stop_on_error=stop_on_error,
                                      timeout=timeout)
        if response is None:
            raise trio.TooSlowError(f"host {guid} did not answer within {timeout:g} s")
        return response

    def expect(self, guid: str, seq: int, asked: tuple[Command, ...]) -> Waiter:
        """Wait for the response to a request written by hand (``send_raw``) as if ``asked`` were sent."""
        link = self.link(guid)
        assert link is not None
        link.conn._outstanding[seq] = asked
        waiter = link._waiters[seq] = Waiter()
        return waiter

    async def send_raw(self, guid: str, data: bytes) -> None:
        link = self.link(guid)
        assert link is not None
        link.send_frames(data)

    # --- one agent connection --------------------------------------------------------------------

    async def _handle(self, stream: trio.SocketStream) -> None:
        link = HostLink(stream, self)
        self.links.append(link)
        self.changed()
        try:
            reason = await link.run()
            if reason.startswith("protocol violation: "):
                self.violations.append(reason.removeprefix("protocol violation: "))
        finally:
            link.closed = True
            self.changed()
            with trio.CancelScope(shield=True):
                await stream.aclose()

    def _on_request(self, link: Link, request: Request) -> None:
        assert isinstance(link, HostLink) and link.nursery is not None
        link.requests.append(request)
        first = request.commands[0]
        if isinstance(first, StartupRoutingCommand | StartupStorageCommand):
            link.nursery.start_soon(self._on_startup, link, request)
        elif isinstance(first, PingRoutingCommand):
            if not self.answer_pings:
                return
            link.pings.append(dict(first.power_report))
            send_startup = link.guid in self.ask_startup
            self.ask_startup.discard(link.guid)
            link.respond(request, [PingAnswer(send_startup=send_startup)])
        else:
            link.respond(request, [Answer(result=False, details="not handled")] * len(request.commands))
        self.changed()

    async def _on_startup(self, link: HostLink, request: Request) -> None:
        first = request.commands[0]
        assert isinstance(first, StartupRoutingCommand)
        link.guid = first.guid
        link.startups.append(request.commands)
        if self.refuse_startup:
            answers: list[Answer] = [StartupAnswer(result=False, details=self.refuse_startup)]
            link.respond(request, answers + [Answer()] * (len(request.commands) - 1))
            self.changed()
            return
        host_id = self.host_ids.setdefault(first.guid, next(self._ids))
        link.host_id = link.conn.agent_id = host_id
        answers = [StartupAnswer(host_id=host_id, ping_interval=self.ping_interval)]
        link.respond(request, answers + [Answer()] * (len(request.commands) - 1))
        self.changed()
        ready = await self.send(link.guid, [ReadyCommand(host_id=host_id, reject_reason=self.reject_reason)])
        link.ready = bool(ready.answers[0].result)
        self.changed()
