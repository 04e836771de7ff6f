"""The host status table matches CloudStack's transitions."""

from __future__ import annotations

import pytest

from mgmt.agents.host_status import TRANSITIONS, Event, Status, next_status

S, E = Status, Event


@pytest.mark.parametrize(("status", "event", "after"), [
    (S.CONNECTING, E.READY, S.UP),
    (S.UP, E.PING_TIMEOUT, S.ALERT),
    (S.UP, E.AGENT_DISCONNECTED, S.ALERT),
    (S.UP, E.SHUTDOWN_REQUESTED, S.DISCONNECTED),
    (S.ALERT, E.PING, S.UP),
    (S.DISCONNECTED, E.PING, S.UP),
    (S.DISCONNECTED, E.WAITED_TOO_LONG, S.ALERT),
    (S.UP, E.HOST_DOWN, S.DOWN),
    (S.ALERT, E.HOST_DOWN, S.DOWN),
    (S.DISCONNECTED, E.HOST_DOWN, S.DOWN),
    (S.CONNECTING, E.HOST_DOWN, S.DOWN),
    (S.DOWN, E.AGENT_CONNECTED, S.CONNECTING),
    (S.ALERT, E.AGENT_CONNECTED, S.CONNECTING),
])
def test_cloudstack_transitions(status: Status, event: Event, after: Status) -> None:
    assert next_status(status, event) is after


def test_an_agent_connecting_moves_every_live_host_to_connecting() -> None:
    for status in Status:  # a new host row is Creating until its agent connects; Removed is final
        expected = None if status is S.REMOVED else S.CONNECTING
        assert next_status(status, E.AGENT_CONNECTED) is expected


def test_removed_is_final_and_unknown_moves_are_refused() -> None:
    assert all(src is not S.REMOVED for src, _ in TRANSITIONS)
    assert next_status(S.UP, E.READY) is None
    assert next_status(S.DOWN, E.PING_TIMEOUT) is None
