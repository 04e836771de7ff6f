"""The trio side of one connection: the single adapter between a stream and the sans-IO ``Connection``.

The management server, the agent and the tests' small server all drive their connections through
``Link``; only what they do with a request differs (``on_request``). A link has

- a **reader** (``run``): receives bytes, feeds the connection, hands each request to ``on_request``
  (a plain function, called in the reader: it answers at once with ``respond`` or starts a task in
  ``nursery``; it never makes the reader wait) and each response to the request that waits for it;
- **queued writes**: ``respond`` and ``start_request`` only encode a frame and queue it; the frames
  queued while the reader handled one receive go out in one write, by the reader itself, and frames
  queued by other tasks go out through a writer task started for them (it ends with the queue). Only
  the link's own tasks write, each write shielded from cancellation with a deadline of its own, so
  nothing can cut a frame in half; a peer that does not read ends its own link;
- **request/answer matching**: a request's waiter is woken by its response, or with nothing when the
  link ends; a caller that stops waiting abandons the request, and its late answer is dropped quietly;
- **deadlines**: ``read_deadline()`` (a method subclasses override) bounds each wait for bytes (a
  handshake, silence) and a frame that has begun must end within ``frame_timeout``.

``run`` returns why the link ended (the first reason given wins); cancelling ``run`` closes it too.
"""

from __future__ import annotations

import math
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

from .body import Prepared
from .connection import NEED_DATA, Connection, Request, Response
from .errors import LocalProtocolError, ProtocolError
from .frame import Buffer
from .messages import Answer, Command

RECEIVE_SIZE = 65536
LAST_WORDS = 2.0  # seconds a link that is ending may take to write what it queued (a refusal's reason)
WRITE_TIMEOUT = 60.0  # seconds one write may take before the peer counts as not reading


class LinkClosed(Exception):
    """The link ended (or could not send) before the answer came; the message says why."""


class Waiter:
    """One request's wait for its response: ``response`` is None when the link ended first.
    ``on_done`` (if set) is called once, when it is decided either way."""

    __slots__ = ("_event", "done", "on_done", "response")

    def __init__(self, on_done: Callable[[Waiter], None] | None = None) -> None:
        self.response: Response | None = None
        self.done = False
        self.on_done = on_done
        self._event: trio.Event | None = None

    def finish(self, response: Response | None) -> None:
        if self.done:
            return
        self.response, self.done = response, True
        if self._event is not None:
            self._event.set()
        if self.on_done is not None:
            self.on_done(self)

    async def wait(self) -> Response | None:
        if not self.done:
            if self._event is None:
                self._event = trio.Event()
            await self._event.wait()
        return self.response


class Link:
    """One connection driven by trio. Subclasses add what their side knows about the peer."""

    __slots__ = (
        "__weakref__",
        "_batching",
        "_out",
        "_read_scope",
        "_socket",
        "_torn",
        "_waiters",
        "_write_scope",
        "_writer_started",
        "_writing",
        "conn",
        "first",
        "frame_began",
        "frame_timeout",
        "nursery",
        "on_request",
        "reason",
        "stream",
    )

    def __init__(self, stream: trio.abc.Stream, conn: Connection,
                 on_request: Callable[[Link, Request], None], *, frame_timeout: float = math.inf,
                 first: bytes = b"") -> None:
        self.stream = stream
        self.conn = conn
        self.on_request = on_request
        self.frame_timeout = frame_timeout  # a frame that has begun must end within this
        self.first = first  # bytes already read from the stream (to tell TLS from plain): read first
        self.reason = ""  # why the link ended; "" while it lives
        self.frame_began: float | None = None  # when the bytes of an unfinished frame began to arrive
        self.nursery: trio.Nursery | None = None  # for tasks that live as long as the link
        self._waiters: dict[int, Waiter] = {}
        self._out: list[Buffer] = []  # encoded frames waiting to be written, in order
        self._writing = False
        self._writer_started = False
        self._batching = False  # the reader is handling a receive's events (it writes their answers)
        self._read_scope: trio.CancelScope | None = None
        self._torn = False  # a write was cut short: nothing more may be written
        self._write_scope: trio.CancelScope | None = None  # the write in progress
        # A plain socket takes writes at once, without a task or a wait, while its buffer has room; set
        # when the link runs (before, the owner may still wrap the stream, in TLS)
        self._socket: trio.socket.SocketType | None = None

    # --- life --------------------------------------------------------------------------------------

    async def run(self, *tasks: Callable[[], Awaitable[Any]]) -> str:
        """Serve the link until it ends, with ``tasks`` beside the reader (ended with it); the reason.

        What was queued before the end still goes out (a refused startup's reason, an enrollment's
        answer), for up to LAST_WORDS seconds, unless a write was cut short."""
        if isinstance(self.stream, trio.SocketStream):
            self._socket = self.stream.socket
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                self._start_writer()  # anything queued before the link ran
                for task in tasks:
                    nursery.start_soon(task)
                self.end(await self._reader())
            await self._flush()  # the last words (each write is shielded, with a short deadline now)
        finally:
            if not self.reason:
                self.reason = "the connection's task was cancelled"
            self._fail_waiters()
        return self.reason

    def end(self, reason: str) -> None:
        """End the link for ``reason`` (the first reason given wins); its tasks are cancelled."""
        if not self.reason:
            self.reason = reason
        if self._write_scope is not None:
            self._write_scope.deadline = min(self._write_scope.deadline, trio.current_time() + LAST_WORDS)
        if self.nursery is not None:
            self.nursery.cancel_scope.cancel()
        self._fail_waiters()

    @property
    def ended(self) -> bool:
        return bool(self.reason)

    def read_deadline(self) -> float:
        """Until when the reader waits for bytes (trio time); subclasses bound it (a handshake)."""
        return math.inf

    def timed_out(self, frame_began: float | None) -> str:
        """The reason the link ends when a wait for bytes passed its deadline."""
        return "a frame not finished in time" if frame_began is not None else "silent for too long"

    def rearm(self) -> None:
        """The read deadline changed (the handshake ended): apply it to the wait in progress."""
        if self._read_scope is not None:
            self._read_scope.deadline = self._deadline()

    # --- reading -----------------------------------------------------------------------------------

    def _deadline(self) -> float:
        deadline = self.read_deadline()
        if self.frame_began is not None:
            deadline = min(deadline, self.frame_began + self.frame_timeout)
        return deadline

    async def _reader(self) -> str:
        conn, receive, sock = self.conn, self.stream.receive_some, self._socket
        while True:
            data: bytes | bytearray | None = None
            spurious = False
            if self.first:
                data, self.first = self.first, b""
            else:
                with trio.move_on_at(self._deadline()) as self._read_scope:
                    try:
                        if sock is None:
                            data = await receive(RECEIVE_SIZE)
                        else:  # a plain socket: wait until it is readable, then one read that cannot block
                            await trio.lowlevel.wait_readable(sock)
                            data = os.read(sock.fileno(), RECEIVE_SIZE)
                    except BlockingIOError:
                        spurious = True  # woken with nothing to read after all: wait again
                    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
                        return f"read failed: {e}"
                self._read_scope = None
            if spurious:
                continue
            if data is None:
                return self.timed_out(self.frame_began)
            conn.receive_data(data)
            events = 0
            self._batching = True  # what this receive's handlers queue, the reader writes below
            try:
                while True:
                    try:
                        event = conn.next_event()
                    except ProtocolError as e:
                        return f"protocol violation: {e}"
                    if event is NEED_DATA:
                        break
                    events += 1
                    if type(event) is Response:
                        waiter = self._waiters.pop(event.seq, None)
                        if waiter is not None:
                            waiter.finish(event)
                    elif type(event) is Request:
                        self.on_request(self, event)
                        if self.reason:
                            return self.reason
                    else:  # ConnectionClosed
                        return "the peer closed the connection"
            finally:
                self._batching = False
            if self._out:
                await self._flush()  # the answers to what this receive brought, in one write
            if not conn.buffered:
                self.frame_began = None
            elif events or self.frame_began is None:
                self.frame_began = trio.current_time()

    # --- writing -----------------------------------------------------------------------------------

    def send_frames(self, data: Buffer) -> None:
        """Queue encoded frames; they are written soon, in order, by the link's own tasks (on a plain
        socket with room in its buffer, at once)."""
        self._out.append(data)
        if not self._batching and not self._writing and not self._writer_started and self._write_now():
            return
        self._start_writer()

    def _write_now(self) -> bool:
        """Write what is queued straight to a plain socket, without waiting: True when all of it went
        (or the link ended trying); False leaves the rest queued, in order, for a task that can wait.
        Only while the link lives (its socket is open) and no other write is under way."""
        sock = self._socket
        if not self._out:
            return True
        if sock is None or self._torn or self.reason:
            return False
        fd = sock.fileno()
        if fd < 0:
            return False
        out = self._out
        data = out[0] if len(out) == 1 else b"".join(out)
        try:
            written = os.write(fd, data)
        except BlockingIOError:
            written = 0
        except OSError as e:
            self._out = []
            self._torn = True
            self.conn.send_failed()
            self.end(f"write failed: {e}")
            return True
        if written == len(data):
            self._out = []
            return True
        self._out = [data[written:]]
        return False

    def _start_writer(self) -> None:
        """A writer task for what is queued, unless someone writes already (and so takes it too). It
        ends once the queue is empty: an idle link has no task but its reader."""
        if (self._out and not self._writing and not self._writer_started and not self._batching
                and not self._torn and self.nursery is not None and not self.reason):
            self._writer_started = True
            self.nursery.start_soon(self._write_queued)

    async def _write_queued(self) -> None:
        try:
            await self._flush()
        finally:
            self._writer_started = False

    async def _flush(self) -> None:
        if self._writing:
            return  # whoever writes now takes these frames too
        if self._write_now():
            return
        self._writing = True
        try:
            while self._out and not self._torn:
                out, self._out = self._out, []
                # A write is never cancelled from outside (half a frame would corrupt the stream): it is
                # shielded and bounded by its own deadline, shortened to LAST_WORDS when the link ends.
                with trio.CancelScope(shield=True) as scope:
                    scope.deadline = trio.current_time() + (LAST_WORDS if self.reason else WRITE_TIMEOUT)
                    self._write_scope = scope
                    try:
                        await self.stream.send_all(out[0] if len(out) == 1 else b"".join(out))
                    except (trio.BrokenResourceError, trio.ClosedResourceError) as e:
                        self._torn = True
                        self.conn.send_failed()
                        self.end(f"write failed: {e}")
                        return
                    finally:
                        self._write_scope = None
                if scope.cancelled_caught:  # the peer does not read: part of a frame may be out
                    self._torn = True
                    self.conn.send_failed()
                    self.end("a write did not finish in time (the peer does not read)")
                    return
        finally:
            self._writing = False

    def respond(self, request: Request, answers: Sequence[Answer] | Prepared) -> bool:
        """Answer ``request`` (queued, never waits); False when the link can no longer send."""
        try:
            self.send_frames(self.conn.send_response(request, answers))
        except LocalProtocolError:
            return False  # the connection closed or failed while the request ran: the reader ends it
        return True

    # --- requests ----------------------------------------------------------------------------------

    def start_request(self, commands: Sequence[Command] | Prepared, *, stop_on_error: bool = False,
                      in_sequence: bool = False, waiter: Waiter | None = None) -> tuple[int, Waiter]:
        """Send a request (queued, never waits); its sequence number and the waiter its response wakes.
        Raises LinkClosed when the link can no longer send."""
        if self.reason:
            raise LinkClosed(self.reason)
        try:
            seq, data = self.conn.send_request(commands, stop_on_error=stop_on_error, in_sequence=in_sequence)
        except LocalProtocolError as e:
            raise LinkClosed(str(e)) from None
        waiter = waiter if waiter is not None else Waiter()
        self._waiters[seq] = waiter
        self.send_frames(data)
        return seq, waiter

    async def request(self, commands: Sequence[Command] | Prepared, *, timeout: float,
                      stop_on_error: bool = False, in_sequence: bool = False) -> Response | None:
        """Send a request and wait for its response: None when none came within ``timeout`` (the request
        is abandoned); raises LinkClosed when the link ended first."""
        seq, waiter = self.start_request(commands, stop_on_error=stop_on_error, in_sequence=in_sequence)
        with trio.move_on_after(timeout):
            response = await waiter.wait()
            if response is None:
                raise LinkClosed(self.reason or "the connection closed")
            return response
        self.abandon(seq)
        return None

    def abandon(self, seq: int) -> None:
        """Stop waiting for ``seq``'s response (its waiter gets nothing; a late answer is dropped)."""
        waiter = self._waiters.pop(seq, None)
        self.conn.abandon(seq)
        if waiter is not None:
            waiter.finish(None)

    def abandon_all(self) -> None:
        for seq in list(self._waiters):
            self.abandon(seq)

    @property
    def waiting(self) -> int:
        """Requests sent and not yet answered."""
        return len(self._waiters)

    def _fail_waiters(self) -> None:
        waiters, self._waiters = self._waiters, {}
        for waiter in waiters.values():
            waiter.finish(None)
