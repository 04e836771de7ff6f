"""pytest-benchmark micro benchmarks of the per-frame path a connection runs, for both codecs.

    .venv/bin/python -m pytest benchmarks --benchmark-only   (also from `make bench`)

Not part of the default test run; the load and stream benchmarks are the plain scripts beside this.
"""

from __future__ import annotations

import pytest

from protocol import NEED_DATA, Connection, Role, State
from protocol.codec import get_codec
from protocol.examples import ping, start
from protocol.messages import PingAnswer


def up_pair(codec_name: str) -> tuple[Connection, Connection]:
    codec = get_codec(codec_name)
    agent, server = Connection(Role.AGENT, codec=codec), Connection(Role.SERVER, codec=codec)
    agent._state = server._state = State.UP  # measure the steady state, after the handshake
    return agent, server


@pytest.mark.parametrize("codec_name", ["native", "python"])
def test_ping_round_trip(benchmark, codec_name: str) -> None:  # type: ignore[no-untyped-def]
    """Agent sends a ping, server decodes it and answers, agent decodes the answer."""
    agent, server = up_pair(codec_name)
    msg = ping(7)

    def round_trip() -> None:
        _, data = agent.send_request([msg])
        server.receive_data(data)
        request = server.next_event()
        agent.receive_data(server.send_response(request, [PingAnswer()]))  # type: ignore[arg-type]
        assert agent.next_event() is not NEED_DATA

    benchmark(round_trip)


@pytest.mark.parametrize("codec_name", ["native", "python"])
def test_start_command_receive(benchmark, codec_name: str) -> None:  # type: ignore[no-untyped-def]
    """An agent receiving a ~2.5 KB StartCommand."""
    agent, server = up_pair(codec_name)
    frames = [server.send_request([start(i)])[1] for i in range(64)]
    it = iter(range(1 << 62))

    def receive() -> None:
        agent.receive_data(frames[next(it) % 64])
        assert agent.next_event() is not NEED_DATA

    benchmark(receive)
