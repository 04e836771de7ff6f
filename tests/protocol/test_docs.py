"""docs/protocol.md stays true: its byte-level example and state table come from the code."""

from __future__ import annotations

import re
from pathlib import Path

from protocol import Connection, Role, State
from protocol._state import markdown_table
from protocol.messages import PingAnswer, PingRoutingCommand, PowerState

DOC = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text()


def hexdump_blocks() -> list[bytes]:
    """The hex dumps in the doc (offset, 16 bytes in hex, ASCII), as bytes."""
    blocks = [b for b in re.findall(r"```\n(.*?)```", DOC, re.S) if b.startswith("0000")]
    return [bytes.fromhex("".join(line[6:53] for line in b.splitlines())) for b in blocks]


def test_state_table_in_the_doc_is_the_code_table() -> None:
    assert markdown_table() in DOC


def test_ping_example_bytes_are_what_the_code_sends() -> None:
    agent = Connection(Role.AGENT, agent_id=17)
    server = Connection(Role.SERVER, initial_seq=0)
    agent._state = server._state = State.UP  # the example starts after the handshake
    agent._next_seq = 42
    _, ping = agent.send_request([PingRoutingCommand(
        host_id=17, power_report={"i-2-10-VM": PowerState.ON, "i-2-11-VM": PowerState.OFF})])
    server.receive_data(ping)
    request = server.next_event()
    server.mgmt_id, server.agent_id = 0xC0FFEE, 17
    answer = server.send_response(request, [PingAnswer()])  # type: ignore[arg-type]
    assert hexdump_blocks() == [bytes(ping), bytes(answer)]
