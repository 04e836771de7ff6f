"""The VM state table: the documented copy is the table, and refusals say what would be needed."""

from __future__ import annotations

from pathlib import Path

from mgmt.orchestration.vm_state import TRANSITIONS, Event, State, markdown_table, next_state, refusal

DOC = Path(__file__).parents[2] / "docs" / "orchestration.md"


def test_the_docs_show_the_table_the_code_uses() -> None:
    assert markdown_table() in DOC.read_text()


def test_cloudstack_transitions_and_refusals() -> None:
    assert next_state(State.STOPPED, Event.START_REQUESTED) is State.STARTING
    assert next_state(State.RUNNING, Event.FOLLOW_AGENT_POWER_OFF_REPORT) is State.STOPPED
    assert next_state(State.MIGRATING, Event.OPERATION_FAILED) is State.RUNNING
    assert next_state(State.STOPPED, Event.MIGRATION_REQUESTED) is None
    assert refusal("i-2-3-VM", State.STOPPED, Event.MIGRATION_REQUESTED) == (
        "cannot migrate VM i-2-3-VM: it is Stopped; migrate needs it Running")
    assert refusal("i-2-3-VM", State.RUNNING, Event.STOP_REQUESTED) == ""
    assert all(new in State for new in TRANSITIONS.values())
