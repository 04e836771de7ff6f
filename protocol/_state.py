"""The connection's handshake state machine, as data.

Theory of operation: both ends of a connection see the same sequence of messages, so both track the
same state. The agent opens with a startup request (StartupRoutingCommand, optionally with
StartupStorageCommand in the same frame); the server's StartupAnswer accepts it (UP) or refuses it (back
to CONNECTED, the agent may try again). Only an UP connection carries other commands. An UP agent may
start up again on the same connection (the server asked with PingAnswer.send_startup); commands that
crossed that request on the wire are still legal, so that state is RESTARTING, not STARTUP_SENT.

Each transition is ``(state, event) -> state``; a pair missing from the table is a protocol violation.
This module does no I/O and is the single source of the diagram in docs/protocol.md.
"""

from __future__ import annotations

import enum


class State(enum.Enum):
    # Members are singletons compared by identity; hashing them the same way keeps table lookups in C
    # (Enum's own __hash__ is Python code, and the table is consulted on every frame).
    __hash__ = object.__hash__

    CONNECTED = "connected"
    STARTUP_SENT = "startup sent"
    UP = "up"
    RESTARTING = "restarting"
    CLOSED = "closed"
    ERROR = "error"


class Event(enum.Enum):
    __hash__ = object.__hash__

    STARTUP = "agent sends a startup request"
    STARTUP_ACCEPTED = "server answers the startup with result true"
    STARTUP_REFUSED = "server answers the startup with result false"
    REQUEST = "any other request"
    RESPONSE = "any other response"
    CLOSE = "the connection closes"


TRANSITIONS: dict[tuple[State, Event], State] = {
    (State.CONNECTED, Event.STARTUP): State.STARTUP_SENT,
    (State.CONNECTED, Event.CLOSE): State.CLOSED,
    (State.STARTUP_SENT, Event.STARTUP_ACCEPTED): State.UP,
    (State.STARTUP_SENT, Event.STARTUP_REFUSED): State.CONNECTED,
    (State.STARTUP_SENT, Event.CLOSE): State.CLOSED,
    (State.UP, Event.STARTUP): State.RESTARTING,
    (State.UP, Event.REQUEST): State.UP,
    (State.UP, Event.RESPONSE): State.UP,
    (State.UP, Event.CLOSE): State.CLOSED,
    (State.RESTARTING, Event.STARTUP_ACCEPTED): State.UP,
    (State.RESTARTING, Event.STARTUP_REFUSED): State.CONNECTED,
    (State.RESTARTING, Event.REQUEST): State.RESTARTING,
    (State.RESTARTING, Event.RESPONSE): State.RESTARTING,
    (State.RESTARTING, Event.CLOSE): State.CLOSED,
}


def next_state(state: State, event: Event) -> State | None:
    """The state after ``event``, or None when the event is not allowed in ``state``."""
    return TRANSITIONS.get((state, event))


def markdown_table() -> str:
    """The transition table as Markdown, for docs/protocol.md (a test keeps the doc in step)."""
    rows = ["| state | event | next state |", "|---|---|---|"]
    rows += [f"| {src.value} | {event.value} | {dst.value} |" for (src, event), dst in TRANSITIONS.items()]
    return "\n".join(rows)
