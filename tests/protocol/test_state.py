"""The handshake table: reachable, closed under CLOSE, and with no way out of ERROR."""

from __future__ import annotations

from protocol._state import TRANSITIONS, Event, State, next_state


def test_every_state_but_error_is_reachable_from_connected() -> None:
    seen, todo = {State.CONNECTED}, [State.CONNECTED]
    while todo:
        state = todo.pop()
        for (src, _event), dst in TRANSITIONS.items():
            if src is state and dst not in seen:
                seen.add(dst)
                todo.append(dst)
    assert seen == set(State) - {State.ERROR}


def test_every_open_state_can_close_and_terminal_states_go_nowhere() -> None:
    for state in (State.CONNECTED, State.STARTUP_SENT, State.UP, State.RESTARTING):
        assert next_state(state, Event.CLOSE) is State.CLOSED
    for event in Event:
        assert next_state(State.CLOSED, event) is None
        assert next_state(State.ERROR, event) is None


def test_only_an_up_connection_carries_ordinary_commands() -> None:
    assert next_state(State.CONNECTED, Event.REQUEST) is None
    assert next_state(State.STARTUP_SENT, Event.REQUEST) is None
    assert next_state(State.UP, Event.REQUEST) is State.UP
