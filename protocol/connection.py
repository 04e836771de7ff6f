"""The sans-IO connection: bytes in, events out; messages in, bytes out.

One ``Connection`` per side of a TCP connection. Feed received bytes with ``receive_data`` (``b""`` at
end of stream) and pull events with ``next_event``: a ``Request``, a ``Response`` (matched to our
outstanding request by sequence number), ``ConnectionClosed``, or ``NEED_DATA``. ``send_request`` and
``send_response`` return the bytes to write; ``prepare_*`` plus ``encode`` batch several frames into one
write. Any violation by the peer raises ``RemoteProtocolError`` (by us: ``LocalProtocolError``) and
moves the connection to ``State.ERROR`` for good.
"""

from __future__ import annotations

import enum
import secrets
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from . import _state
from ._state import Event, State
from .body import AnswerItem, CommandItem, Prepared, decode_answers, decode_commands, encode_body, inflate
from .codec import Codec, get_codec
from .errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from .frame import (
    COMPRESS_THRESHOLD,
    DEFAULT_MAX_FRAME_SIZE,
    RECORD_WORDS,
    Buffer,
    Flag,
    FrameSpec,
    frame_error,
    max_body_size,
)
from .messages import (
    Answer,
    Command,
    EnrollCommand,
    StartupAnswer,
    StartupRoutingCommand,
    StartupStorageCommand,
)

_SEQ_MASK = (1 << 64) - 1
# Plain ints for the hot path: IntFlag arithmetic goes through the enum machinery on every frame.
_REQUEST = int(Flag.REQUEST)
_STOP_ON_ERROR = int(Flag.STOP_ON_ERROR)
_IN_SEQUENCE = int(Flag.IN_SEQUENCE)
_FROM_SERVER = int(Flag.FROM_SERVER)
_CONTROL = int(Flag.CONTROL)
_COMPRESSED = int(Flag.COMPRESSED)
_ABANDONED_KEPT = 4096  # late answers to this many abandoned requests are dropped quietly
# A control request's body up to this size is remembered with what it decoded to: the next identical
# body (a steady-state ping, whose power report did not change) is not parsed again.
_MEMO_MAX = COMPRESS_THRESHOLD


class Role(enum.Enum):
    AGENT = "agent"
    SERVER = "server"


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()


@dataclass(frozen=True, slots=True)
class Request:
    seq: int
    flags: int
    commands: tuple[CommandItem, ...]
    mgmt_id: int = 0
    agent_id: int = 0
    via: int = 0

    @property
    def stop_on_error(self) -> bool:
        return bool(self.flags & _STOP_ON_ERROR)

    @property
    def in_sequence(self) -> bool:
        return bool(self.flags & _IN_SEQUENCE)


@dataclass(frozen=True, slots=True)
class Response:
    seq: int
    flags: int
    answers: tuple[AnswerItem, ...]
    commands: tuple[Command, ...]  # what our request asked, in the same order


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    pass


ProtocolEvent = Request | Response | ConnectionClosed | _NeedData

# An enrollment opens the handshake as a startup does; its answer (not a StartupAnswer) never accepts one.
_STARTUP_TYPES = (StartupRoutingCommand, StartupStorageCommand, EnrollCommand)


def _is_startup(commands: Sequence[object]) -> bool:
    return bool(commands) and isinstance(commands[0], _STARTUP_TYPES)


class Connection:
    """One end of an agent connection; ``role`` says which."""

    __slots__ = (
        "_abandoned",
        "_buf",
        "_eof",
        "_frames",
        "_memo_body",
        "_memo_commands",
        "_need",
        "_next_seq",
        "_outstanding",
        "_pending_error",
        "_sent_flag",
        "_startup_seq",
        "_state",
        "agent_id",
        "codec",
        "compress_threshold",
        "max_body",
        "mgmt_id",
        "role",
    )

    def __init__(
        self,
        role: Role,
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        codec: Codec | None = None,
        initial_seq: int | None = None,
        compress_threshold: int = COMPRESS_THRESHOLD,
        mgmt_id: int = 0,
        agent_id: int = 0,
        established: bool = False,
    ) -> None:
        """``established``: the connection starts Up, without a startup handshake (a link between two
        management servers, whose TLS handshake already proved who each end is)."""
        self.role = role
        self.codec = codec if codec is not None else get_codec()
        self.max_body = max_body_size(max_frame_size)
        self.compress_threshold = compress_threshold
        self.mgmt_id = mgmt_id
        self.agent_id = agent_id
        if initial_seq is None:
            initial_seq = secrets.randbits(63) if role is Role.SERVER else 0
        self._next_seq = initial_seq & _SEQ_MASK
        self._state = State.UP if established else State.CONNECTED
        # Received bytes not yet part of a whole frame: the last receive itself when it left nothing
        # before it (the usual case: no copy), a bytearray while a frame's bytes accumulate.
        self._buf: bytes | bytearray = b""
        self._need = 0  # size the buffer must reach before a scan can find a new frame
        # whole frames scanned and not yet turned into events, last first (popped from the end); a
        # list made by each scan that finds some (a deque per connection would cost 600 bytes idle)
        self._frames: list[tuple[int, int, int, int, int, bytes]] = []
        self._pending_error: RemoteProtocolError | None = None
        self._eof = False
        self._outstanding: dict[int, tuple[Command, ...]] = {}
        self._abandoned: OrderedDict[int, None] | None = None  # made on the first abandon
        self._memo_body = b""
        self._memo_commands: tuple[CommandItem, ...] = ()
        self._startup_seq: int | None = None
        self._sent_flag = _FROM_SERVER if role is Role.SERVER else 0

    # --- state ----------------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def buffered(self) -> int:
        """Received bytes not yet part of a whole frame (an unfinished frame's beginning)."""
        return len(self._buf) + sum(len(f[5]) for f in self._frames)

    @property
    def outstanding(self) -> int:
        """How many of our requests still await their response."""
        return len(self._outstanding)

    def _move(self, event: Event, error: type[ProtocolError], what: str,
              commands: Sequence[CommandItem] = ()) -> None:
        new = _state.next_state(self._state, event)
        if new is None:
            state = self._state
            self._state = State.ERROR
            if commands:  # the message names them only when it is needed (not per request)
                what = what.format(_names(commands))
            raise error(f"{what} is not allowed in state {state.value!r}")
        self._state = new

    def send_failed(self) -> None:
        """Tell the connection a write failed: nothing more can be sent or trusted."""
        self._state = State.ERROR

    # --- receiving ------------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Add received bytes; ``b""`` means the peer closed its side."""
        if data:
            if self._eof:
                raise RuntimeError("received data after end of stream")
            if not self._buf:
                self._buf = data if type(data) is bytes else bytes(data)
            elif type(self._buf) is bytearray:
                self._buf += data
            else:
                self._buf = bytearray(self._buf) + data
        else:
            self._eof = True

    def next_event(self) -> ProtocolEvent:
        """The next event from received data, or NEED_DATA. Raises RemoteProtocolError on violations."""
        if self._state is State.ERROR:
            raise RemoteProtocolError("the connection is in the error state")
        try:
            return self._next_event()
        except RemoteProtocolError:
            self._state = State.ERROR
            raise

    def _next_event(self) -> ProtocolEvent:
        while True:
            if not self._frames:
                if self._pending_error is not None:
                    raise self._pending_error
                self._scan()
            if self._frames:
                event = self._frame_event(*self._frames.pop())
                if event is not None:
                    return event
                continue
            if self._pending_error is not None:
                raise self._pending_error
            if self._eof:
                if self._buf:
                    raise RemoteProtocolError(
                        f"connection closed in the middle of a frame ({len(self._buf)} bytes buffered)"
                    )
                if self._state is not State.CLOSED:
                    self._move(Event.CLOSE, RemoteProtocolError, "closing")
                return ConnectionClosed()
            return NEED_DATA

    def _scan(self) -> None:
        buf = self._buf
        if not buf or len(buf) < self._need:
            return
        result = self.codec.scan(buf, self.max_body)
        if result.nframes and type(buf) is not bytes:
            buf = bytes(buf)  # slices of bytes are bytes: one copy per body below, not two
        body_of = cast(bytes, buf)
        records = result.records
        if result.nframes:
            frames = []
            for i in range(0, result.nframes * RECORD_WORDS, RECORD_WORDS):
                _v, flags, seq, mgmt_id, agent_id, via, off, length = records[i : i + RECORD_WORDS]
                frames.append((flags, seq, mgmt_id, agent_id, via, body_of[off : off + length]))
            frames.reverse()
            self._frames = frames
        consumed = result.consumed
        if result.error:
            self._pending_error = frame_error(result.error, buf, consumed, self.max_body)
        if consumed == len(buf):
            self._buf = b""
        elif consumed or type(buf) is bytes:
            self._buf = bytearray(memoryview(buf)[consumed:])  # an unfinished frame: it grows
        self._need = result.next_size

    def _frame_event(self, flags: int, seq: int, mgmt_id: int, agent_id: int, via: int,
                     body: bytes) -> Request | Response | None:
        if flags & _REQUEST:
            if flags & _COMPRESSED:
                commands = decode_commands(inflate(body, self.max_body))
            elif body == self._memo_body:
                commands = self._memo_commands
            else:
                commands = decode_commands(body)
                if flags & _CONTROL and len(body) <= _MEMO_MAX:
                    self._memo_body, self._memo_commands = body, commands
            if _is_startup(commands):
                if self.role is not Role.SERVER:
                    raise RemoteProtocolError("the server sent a startup command; only agents start up")
                self._move(Event.STARTUP, RemoteProtocolError, "a startup request")
                self._startup_seq = seq
            else:
                self._move(Event.REQUEST, RemoteProtocolError, "a {} request", commands)
            return Request(seq, flags, commands, mgmt_id, agent_id, via)
        if flags & _COMPRESSED:
            body = inflate(body, self.max_body)
        answers = decode_answers(body)
        asked = self._outstanding.pop(seq, None)
        if asked is None:
            if self._abandoned is not None and seq in self._abandoned:
                del self._abandoned[seq]
                return None
            raise RemoteProtocolError(f"response to no request: seq {seq} is not outstanding")
        if len(answers) != len(asked):
            raise RemoteProtocolError(
                f"response to seq {seq} carries {len(answers)} answers for {len(asked)} commands"
            )
        self._after_response(seq, answers, RemoteProtocolError)
        return Response(seq, flags, answers, asked)

    def _after_response(self, seq: int, answers: Sequence[object], error: type[ProtocolError]) -> None:
        if seq == self._startup_seq:
            self._startup_seq = None
            first = answers[0] if answers else None
            accepted = isinstance(first, StartupAnswer) and first.result
            self._move(Event.STARTUP_ACCEPTED if accepted else Event.STARTUP_REFUSED, error,
                       "the startup answer")
        else:
            self._move(Event.RESPONSE, error, "a response")

    # --- sending --------------------------------------------------------------------------------

    def prepare_request(self, commands: Sequence[Command] | Prepared, *, stop_on_error: bool = False,
                        in_sequence: bool = False) -> tuple[int, FrameSpec]:
        """Register a request and return its sequence number and unencoded frame."""
        self._check_can_send()
        prepared: Prepared | None = None
        if isinstance(commands, Prepared):
            prepared, commands = commands, cast(tuple[Command, ...], commands.items)
        if not commands:
            raise LocalProtocolError("a request carries at least one command")
        commands = tuple(commands)
        if _is_startup(commands):
            if self.role is not Role.AGENT:
                raise LocalProtocolError("only an agent sends startup commands")
            self._move(Event.STARTUP, LocalProtocolError, "a startup request")
        else:
            self._move(Event.REQUEST, LocalProtocolError, "a {} request", commands)
        seq = self._next_seq
        self._next_seq = (seq + 1) & _SEQ_MASK
        if _is_startup(commands):
            self._startup_seq = seq
        flags = _REQUEST | self._sent_flag
        if stop_on_error:
            flags |= _STOP_ON_ERROR
        if in_sequence:
            flags |= _IN_SEQUENCE
        if all(type(c).control for c in commands):
            flags |= _CONTROL
        self._outstanding[seq] = commands
        return seq, self._frame(flags, seq, commands, prepared)

    def prepare_response(self, request: Request, answers: Sequence[Answer] | Prepared) -> FrameSpec:
        """The unencoded response frame to ``request``: one answer per command, in order."""
        self._check_can_send()
        prepared: Prepared | None = None
        if isinstance(answers, Prepared):
            prepared, answers = answers, cast(tuple[Answer, ...], answers.items)
        if len(answers) != len(request.commands):
            raise LocalProtocolError(
                f"{len(answers)} answers for a request of {len(request.commands)} commands"
            )
        if request.seq == self._startup_seq:
            self._after_response(request.seq, answers, LocalProtocolError)
        else:
            self._move(Event.RESPONSE, LocalProtocolError, "a response")
        flags = self._sent_flag | (request.flags & _CONTROL)
        return self._frame(flags, request.seq, answers, prepared)

    def encode(self, frames: Sequence[FrameSpec]) -> Buffer:
        """Frames from ``prepare_*`` as one buffer to write."""
        return self.codec.encode(frames, self.max_body)

    def send_request(self, commands: Sequence[Command] | Prepared, *, stop_on_error: bool = False,
                     in_sequence: bool = False) -> tuple[int, Buffer]:
        seq, frame = self.prepare_request(commands, stop_on_error=stop_on_error, in_sequence=in_sequence)
        return seq, self.encode([frame])

    def send_response(self, request: Request, answers: Sequence[Answer] | Prepared) -> Buffer:
        return self.encode([self.prepare_response(request, answers)])

    def abandon(self, seq: int) -> None:
        """We stopped waiting for the answer to ``seq``; if it still arrives, drop it quietly.

        Abandoning a startup request leaves the handshake where it was: close the connection and
        reconnect, as CloudStack's agents do when no StartupAnswer comes.
        """
        if self._outstanding.pop(seq, None) is not None:
            if self._abandoned is None:
                self._abandoned = OrderedDict()
            self._abandoned[seq] = None
            if len(self._abandoned) > _ABANDONED_KEPT:
                self._abandoned.popitem(last=False)

    def _check_can_send(self) -> None:
        if self._state in (State.ERROR, State.CLOSED):
            raise LocalProtocolError(f"cannot send in state {self._state.value!r}")

    def _frame(self, flags: int, seq: int, items: Sequence[Command | Answer],
               prepared: Prepared | None = None) -> FrameSpec:
        if prepared is not None:
            body, compressed = prepared.body, prepared.compressed
        else:
            body, compressed = encode_body(items, self.compress_threshold)
        if compressed:
            flags |= _COMPRESSED
        if len(body) > self.max_body:
            raise LocalProtocolError(f"a {len(body)}-byte body exceeds the {self.max_body}-byte limit")
        return FrameSpec(flags, seq, self.mgmt_id, self.agent_id, 0, body)


def _names(commands: Sequence[CommandItem]) -> str:
    return "+".join(type(c).__name__ if isinstance(c, Command) else c.name for c in commands)
