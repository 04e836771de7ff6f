"""VM state as data: ``(state, event) -> state``, CloudStack's table with its names. No I/O.

Persisting a transition is one conditional UPDATE on ``(state, update_count)`` (``vms.transition``).
An event a state does not take is refused before any side effect, with the reason
(``refusal``), which the API returns as a parameter error.
"""

from __future__ import annotations

import enum


class State(enum.StrEnum):
    __hash__ = object.__hash__

    STOPPED = "Stopped"
    STARTING = "Starting"
    RUNNING = "Running"
    STOPPING = "Stopping"
    MIGRATING = "Migrating"
    DESTROYED = "Destroyed"
    EXPUNGING = "Expunging"
    ERROR = "Error"
    UNKNOWN = "Unknown"


class Event(enum.StrEnum):
    __hash__ = object.__hash__

    START_REQUESTED = "StartRequested"
    STOP_REQUESTED = "StopRequested"
    DESTROY_REQUESTED = "DestroyRequested"
    RECOVERY_REQUESTED = "RecoveryRequested"
    EXPUNGE_OPERATION = "ExpungeOperation"
    MIGRATION_REQUESTED = "MigrationRequested"
    OPERATION_SUCCEEDED = "OperationSucceeded"
    OPERATION_FAILED = "OperationFailed"
    OPERATION_RETRY = "OperationRetry"
    OPERATION_FAILED_TO_ERROR = "OperationFailedToError"
    AGENT_REPORT_RUNNING = "AgentReportRunning"
    AGENT_REPORT_STOPPED = "AgentReportStopped"
    FOLLOW_AGENT_POWER_ON_REPORT = "FollowAgentPowerOnReport"
    FOLLOW_AGENT_POWER_OFF_REPORT = "FollowAgentPowerOffReport"


S, E = State, Event

TRANSITIONS: dict[tuple[State, Event], State] = {
    (S.STOPPED, E.START_REQUESTED): S.STARTING,
    (S.STOPPED, E.DESTROY_REQUESTED): S.DESTROYED,
    (S.STOPPED, E.EXPUNGE_OPERATION): S.EXPUNGING,
    (S.STOPPED, E.FOLLOW_AGENT_POWER_ON_REPORT): S.RUNNING,
    (S.STOPPED, E.OPERATION_FAILED_TO_ERROR): S.ERROR,
    (S.STARTING, E.OPERATION_RETRY): S.STARTING,
    (S.STARTING, E.OPERATION_SUCCEEDED): S.RUNNING,
    (S.STARTING, E.AGENT_REPORT_RUNNING): S.RUNNING,
    (S.STARTING, E.FOLLOW_AGENT_POWER_ON_REPORT): S.RUNNING,
    (S.STARTING, E.OPERATION_FAILED): S.STOPPED,
    (S.STARTING, E.AGENT_REPORT_STOPPED): S.STOPPED,
    (S.STARTING, E.FOLLOW_AGENT_POWER_OFF_REPORT): S.STOPPED,
    (S.STARTING, E.OPERATION_FAILED_TO_ERROR): S.ERROR,
    (S.RUNNING, E.STOP_REQUESTED): S.STOPPING,
    (S.RUNNING, E.MIGRATION_REQUESTED): S.MIGRATING,
    (S.RUNNING, E.AGENT_REPORT_STOPPED): S.STOPPED,
    (S.RUNNING, E.FOLLOW_AGENT_POWER_OFF_REPORT): S.STOPPED,
    (S.STOPPING, E.OPERATION_SUCCEEDED): S.STOPPED,
    (S.STOPPING, E.OPERATION_FAILED): S.RUNNING,
    (S.STOPPING, E.FOLLOW_AGENT_POWER_ON_REPORT): S.RUNNING,
    (S.STOPPING, E.AGENT_REPORT_STOPPED): S.STOPPED,
    (S.STOPPING, E.FOLLOW_AGENT_POWER_OFF_REPORT): S.STOPPED,
    (S.MIGRATING, E.OPERATION_SUCCEEDED): S.RUNNING,
    (S.MIGRATING, E.OPERATION_FAILED): S.RUNNING,
    (S.MIGRATING, E.AGENT_REPORT_STOPPED): S.STOPPED,
    (S.DESTROYED, E.RECOVERY_REQUESTED): S.STOPPED,
    (S.DESTROYED, E.EXPUNGE_OPERATION): S.EXPUNGING,
    (S.ERROR, E.DESTROY_REQUESTED): S.EXPUNGING,
    (S.ERROR, E.EXPUNGE_OPERATION): S.EXPUNGING,
}

_VERBS = {
    E.START_REQUESTED: "start",
    E.STOP_REQUESTED: "stop",
    E.DESTROY_REQUESTED: "destroy",
    E.RECOVERY_REQUESTED: "recover",
    E.EXPUNGE_OPERATION: "expunge",
    E.MIGRATION_REQUESTED: "migrate",
}


def next_state(state: State, event: Event) -> State | None:
    return TRANSITIONS.get((state, event))


def refusal(name: str, state: State, event: Event) -> str:
    """Why ``event`` cannot happen to a VM in ``state`` (empty when it can)."""
    if next_state(state, event) is not None:
        return ""
    verb = _VERBS.get(event, str(event))
    able = sorted(s for (s, e) in TRANSITIONS if e is event)
    return f"cannot {verb} VM {name}: it is {state}; {verb} needs it {' or '.join(able)}"


def markdown_table() -> str:
    """The table as markdown, for the docs."""
    lines = ["| state | event | next state |", "|---|---|---|"]
    lines += [f"| {s} | {e} | {n} |" for (s, e), n in TRANSITIONS.items()]
    return "\n".join(lines)
