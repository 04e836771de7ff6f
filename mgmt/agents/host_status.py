"""Host status as data: ``(status, event) -> status``, CloudStack's table with its names. No I/O.

A host is Connecting while its agent starts up, Up once Ready is answered, Alert when it goes silent
or its connection drops while the server cannot tell whether it is alive, Down when investigation says
it is dead (which would start HA for its VMs), Disconnected after an orderly shutdown. A ping brings an
Alert or Disconnected host back Up. Persisting a transition is one conditional UPDATE on
``(status, update_count)``; zero rows changed means someone else moved the host first.
"""

from __future__ import annotations

import enum


class Status(enum.StrEnum):
    __hash__ = object.__hash__  # members are singletons; identity hashing keeps lookups in C

    CREATING = "Creating"
    CONNECTING = "Connecting"
    UP = "Up"
    DOWN = "Down"
    DISCONNECTED = "Disconnected"
    ALERT = "Alert"
    REMOVED = "Removed"
    ERROR = "Error"
    REBALANCING = "Rebalancing"


class Event(enum.StrEnum):
    __hash__ = object.__hash__

    AGENT_CONNECTED = "AgentConnected"
    READY = "Ready"
    PING = "Ping"
    PING_TIMEOUT = "PingTimeout"
    AGENT_DISCONNECTED = "AgentDisconnected"
    SHUTDOWN_REQUESTED = "ShutdownRequested"
    HOST_DOWN = "HostDown"
    WAITED_TOO_LONG = "WaitedTooLong"
    MANAGEMENT_SERVER_DOWN = "ManagementServerDown"
    REMOVE = "Remove"


S, E = Status, Event

TRANSITIONS: dict[tuple[Status, Event], Status] = {
    (S.CREATING, E.AGENT_CONNECTED): S.CONNECTING,
    (S.CREATING, E.REMOVE): S.REMOVED,
    (S.CONNECTING, E.READY): S.UP,
    (S.CONNECTING, E.AGENT_DISCONNECTED): S.ALERT,
    (S.CONNECTING, E.PING_TIMEOUT): S.ALERT,
    (S.CONNECTING, E.HOST_DOWN): S.DOWN,
    (S.CONNECTING, E.MANAGEMENT_SERVER_DOWN): S.DISCONNECTED,
    (S.UP, E.PING): S.UP,
    (S.UP, E.PING_TIMEOUT): S.ALERT,
    (S.UP, E.AGENT_DISCONNECTED): S.ALERT,
    (S.UP, E.SHUTDOWN_REQUESTED): S.DISCONNECTED,
    (S.UP, E.HOST_DOWN): S.DOWN,
    (S.UP, E.MANAGEMENT_SERVER_DOWN): S.DISCONNECTED,
    (S.ALERT, E.PING): S.UP,
    (S.ALERT, E.PING_TIMEOUT): S.ALERT,
    (S.ALERT, E.AGENT_DISCONNECTED): S.ALERT,
    (S.ALERT, E.HOST_DOWN): S.DOWN,
    (S.ALERT, E.MANAGEMENT_SERVER_DOWN): S.DISCONNECTED,
    (S.DISCONNECTED, E.PING): S.UP,
    (S.DISCONNECTED, E.WAITED_TOO_LONG): S.ALERT,
    (S.DISCONNECTED, E.HOST_DOWN): S.DOWN,
    (S.DISCONNECTED, E.AGENT_DISCONNECTED): S.DISCONNECTED,
    (S.DOWN, E.PING): S.UP,
    (S.DOWN, E.AGENT_DISCONNECTED): S.DOWN,
    (S.DOWN, E.REMOVE): S.REMOVED,
    (S.ERROR, E.REMOVE): S.REMOVED,
}
# Any status but Creating and Removed goes to Connecting when its agent connects (again).
for _status in Status:
    if _status not in (S.CREATING, S.REMOVED):
        TRANSITIONS[(_status, E.AGENT_CONNECTED)] = S.CONNECTING
for _status in (S.UP, S.ALERT, S.DISCONNECTED, S.DOWN):
    TRANSITIONS.setdefault((_status, E.REMOVE), S.REMOVED)


def next_status(status: Status, event: Event) -> Status | None:
    """The status after ``event``, or None when the event does not apply in ``status``."""
    return TRANSITIONS.get((status, event))
