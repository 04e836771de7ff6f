"""The sans-IO connection: handshake states, sequence matching, batching and every violation."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import (
    NEED_DATA,
    Connection,
    ConnectionClosed,
    Flag,
    LocalProtocolError,
    RemoteProtocolError,
    Request,
    Response,
    Role,
    State,
)
from protocol.codec import Codec
from protocol.examples import ping, start
from protocol.frame import HEADER, VERSION, FrameSpec
from protocol.messages import (
    Answer,
    MalformedCommand,
    PingAnswer,
    ReadyAnswer,
    ReadyCommand,
    StartAnswer,
    StartupAnswer,
    StartupRoutingCommand,
    StartupStorageCommand,
    StopCommand,
    UnknownCommand,
    UnsupportedAnswer,
)

from .strategies import chunks, split_points

STARTUP = StartupRoutingCommand(guid="g-1", name="kvm1", zone="z", pod="p", cluster="c", cpus=8,
                                cpu_speed_mhz=2400, memory_bytes=32 << 30, hypervisor_type="KVM")
STORAGE = StartupStorageCommand(guid="g-1", pool_uuid="pool", path="/var/lib/pool", capacity_bytes=1 << 40,
                                available_bytes=1 << 39)


class Pair:
    """An agent and a server connection joined through memory."""

    def __init__(self, codec: Codec, **kw: object) -> None:
        self.agent = Connection(Role.AGENT, codec=codec, **kw)  # type: ignore[arg-type]
        self.server = Connection(Role.SERVER, codec=codec, initial_seq=2**64 - 2, **kw)  # type: ignore[arg-type]

    def to_server(self, data: bytes) -> Request | Response | ConnectionClosed:
        self.server.receive_data(data)
        event = self.server.next_event()
        assert event is not NEED_DATA
        return event  # type: ignore[return-value]

    def to_agent(self, data: bytes) -> Request | Response | ConnectionClosed:
        self.agent.receive_data(data)
        event = self.agent.next_event()
        assert event is not NEED_DATA
        return event  # type: ignore[return-value]

    def handshake(self) -> None:
        _, data = self.agent.send_request([STARTUP, STORAGE])
        req = self.to_server(data)
        assert isinstance(req, Request)
        resp = self.to_agent(self.server.send_response(req, [StartupAnswer(host_id=9), Answer()]))
        assert isinstance(resp, Response)
        _, data = self.server.send_request([ReadyCommand(host_id=9)])
        ready = self.to_agent(data)
        assert isinstance(ready, Request)
        self.to_server(self.agent.send_response(ready, [ReadyAnswer()]))


def test_handshake_moves_both_sides_to_up(codec: Codec) -> None:
    p = Pair(codec)
    assert p.agent.state is p.server.state is State.CONNECTED
    seq, data = p.agent.send_request([STARTUP, STORAGE])
    assert seq == 0  # the agent counts from 0
    assert p.agent.state is State.STARTUP_SENT
    req = p.to_server(data)
    assert isinstance(req, Request)
    assert req.commands == (STARTUP, STORAGE)
    assert req.flags == Flag.REQUEST | Flag.CONTROL
    assert p.server.state is State.STARTUP_SENT
    resp = p.to_agent(p.server.send_response(req, [StartupAnswer(host_id=9, ping_interval=5), Answer()]))
    assert isinstance(resp, Response)
    assert resp.answers[0] == StartupAnswer(host_id=9, ping_interval=5)
    assert resp.commands == (STARTUP, STORAGE)
    assert resp.flags & Flag.FROM_SERVER
    assert p.agent.state is p.server.state is State.UP


def test_refused_startup_returns_to_connected_and_may_retry(codec: Codec) -> None:
    p = Pair(codec)
    _, data = p.agent.send_request([STARTUP])
    req = p.to_server(data)
    p.to_agent(p.server.send_response(req, [StartupAnswer(result=False, details="unknown zone z")]))
    assert p.agent.state is p.server.state is State.CONNECTED
    p.handshake()
    assert p.agent.state is p.server.state is State.UP


def test_server_sequence_wraps_at_64_bits_and_responses_match(codec: Codec) -> None:
    p = Pair(codec)
    p.handshake()  # the server's ReadyCommand used 2**64 - 2
    seqs, datas = zip(*[p.server.send_request([StopCommand(vm_name=f"v{i}")]) for i in range(3)], strict=True)
    assert seqs == (2**64 - 1, 0, 1)
    p.agent.receive_data(b"".join(datas))
    requests = [p.agent.next_event() for _ in range(3)]
    assert p.agent.next_event() is NEED_DATA
    # answer out of order, in one batched write
    frames = [p.agent.prepare_response(r, [Answer(details=str(r.seq))]) for r in reversed(requests)]  # type: ignore[arg-type]
    p.server.receive_data(p.agent.encode(frames))
    got = [p.server.next_event() for _ in range(3)]
    assert [(e.seq, e.answers[0].details, e.commands[0].vm_name) for e in got] == [  # type: ignore[union-attr]
        (1, "1", "v2"), (0, "0", "v1"), (2**64 - 1, str(2**64 - 1), "v0")]
    assert p.server.outstanding == 0


def test_flags_carry_stop_on_error_and_in_sequence(codec: Codec) -> None:
    p = Pair(codec)
    p.handshake()
    _, data = p.server.send_request([StopCommand(vm_name="a")], stop_on_error=True, in_sequence=True)
    req = p.to_agent(data)
    assert isinstance(req, Request)
    assert req.stop_on_error and req.in_sequence
    assert not req.flags & Flag.CONTROL
    _, data = p.agent.send_request([ping(1)])
    assert p.to_server(data).flags & Flag.CONTROL  # type: ignore[union-attr]


def test_unknown_and_malformed_commands_do_not_break_the_connection(codec: Codec) -> None:
    p = Pair(codec)
    p.handshake()
    body = b'[{"ReplugCommand": {}}, {"StopCommand": {"vm_name": 5}}]'
    p.agent.receive_data(raw(codec, body, flags=Flag.REQUEST | Flag.FROM_SERVER, seq=77))
    req = p.agent.next_event()
    assert isinstance(req, Request)
    unknown, malformed = req.commands
    assert isinstance(unknown, UnknownCommand) and isinstance(malformed, MalformedCommand)
    data = p.agent.send_response(req, [unknown.unsupported(), malformed.failure()])
    assert p.agent.state is State.UP
    p.server._outstanding[77] = (StopCommand(vm_name="x"), StopCommand(vm_name="y"))  # as if it had sent them
    resp = p.to_server(data)
    assert isinstance(resp, Response)
    assert isinstance(resp.answers[0], UnsupportedAnswer)
    assert "vm_name must be a string" in resp.answers[1].details


def test_restartup_on_an_up_connection_tolerates_crossing_commands(codec: Codec) -> None:
    p = Pair(codec)
    p.handshake()
    _, ping_data = p.agent.send_request([ping(1)])
    req = p.to_server(ping_data)
    p.to_agent(p.server.send_response(req, [PingAnswer(send_startup=True)]))  # type: ignore[arg-type]
    _, crossing = p.server.send_request([StopCommand(vm_name="v")])  # in flight as the agent restarts
    _, startup = p.agent.send_request([STARTUP])
    assert p.agent.state is State.RESTARTING
    stop = p.to_agent(crossing)
    assert isinstance(stop, Request)
    restart = p.to_server(startup)
    assert isinstance(restart, Request)
    assert p.server.state is State.RESTARTING
    p.to_server(p.agent.send_response(stop, [Answer()]))
    resp = p.to_agent(p.server.send_response(restart, [StartupAnswer(host_id=9)]))
    assert isinstance(resp, Response)
    assert p.agent.state is p.server.state is State.UP


def test_compressed_frames_round_trip(codec: Codec) -> None:
    p = Pair(codec)
    p.handshake()
    commands = [start(i) for i in range(5)]
    _, data = p.server.send_request(commands)
    assert len(data) < sum(len(repr(c)) for c in commands) / 2
    req = p.to_agent(data)
    assert isinstance(req, Request)
    assert req.flags & Flag.COMPRESSED
    assert req.commands == tuple(commands)


@settings(max_examples=40)
@given(st.data())
def test_split_stream_gives_the_same_events(data: st.DataObject) -> None:
    from protocol.codec import get_codec

    for name in ("native", "python"):
        p = Pair(get_codec(name))
        p.handshake()
        frames = [p.server.prepare_request([ping(i) if i % 3 else start(i)])[1] for i in range(6)]
        stream = p.server.encode(frames)
        cuts = data.draw(split_points(stream))
        events = []
        for piece in chunks(stream, cuts):
            if not piece:
                continue  # b"" would mean end of stream
            p.agent.receive_data(piece)
            while (e := p.agent.next_event()) is not NEED_DATA:
                events.append(e)
        assert [e.seq for e in events] == [f.seq for f in frames]  # type: ignore[union-attr]
        assert events[1].commands == (ping(1),)  # type: ignore[union-attr]


def test_clean_close_and_close_mid_frame(codec: Codec) -> None:
    p = Pair(codec)
    p.handshake()
    p.agent.receive_data(b"")
    assert isinstance(p.agent.next_event(), ConnectionClosed)
    assert p.agent.state is State.CLOSED
    with pytest.raises(LocalProtocolError, match="cannot send in state 'closed'"):
        p.agent.send_request([ping()])
    q = Pair(codec)
    q.handshake()
    _, data = q.server.send_request([ping()])
    q.agent.receive_data(data[:-3])
    assert q.agent.next_event() is NEED_DATA
    q.agent.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="closed in the middle of a frame"):
        q.agent.next_event()
    assert q.agent.state is State.ERROR


def raw(codec: Codec, body: bytes, flags: int = Flag.REQUEST, seq: int = 1) -> bytes:
    return codec.encode([FrameSpec(flags, seq, 0, 0, 0, body)], 1 << 24)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda c: HEADER.pack(VERSION + 1, 0, 1, 1, 2, 0, 0, 0), "unsupported protocol version 2"),
        (lambda c: HEADER.pack(VERSION, 0, 1, 1, 2**20, 0, 0, 0), "the limit is 65496 bytes"),
        (lambda c: raw(c, b"[{]"), "malformed JSON body"),
        (lambda c: raw(c, b'{"PingRoutingCommand": {}}'), "non-empty JSON array"),
        (lambda c: raw(c, b'[{"Answer": {}}]', flags=0, seq=99), "response to no request: seq 99"),
        (lambda c: raw(c, b"not zlib", flags=Flag.REQUEST | Flag.COMPRESSED), "not valid zlib"),
        (lambda c: raw(c, zlib.compress(b"[" + b"0," * 40000 + b"0]"), flags=Flag.REQUEST | Flag.COMPRESSED),
         "inflates beyond the 65496-byte limit"),
        (lambda c: raw(c, orjson_startup()), "the server sent a startup command"),
    ],
)
def test_violations_from_the_server_put_the_agent_in_error(codec: Codec, make, message: str) -> None:  # type: ignore[no-untyped-def]
    p = Pair(codec, max_frame_size=65536)
    p.handshake()
    p.agent.receive_data(make(codec))
    with pytest.raises(RemoteProtocolError, match=message):
        p.agent.next_event()
    assert p.agent.state is State.ERROR
    with pytest.raises(RemoteProtocolError, match="error state"):
        p.agent.next_event()


def orjson_startup() -> bytes:
    from protocol.body import encode_body

    return encode_body([STARTUP])[0]


def test_first_request_must_be_a_startup(codec: Codec) -> None:
    agent = Connection(Role.AGENT, codec=codec)
    server = Connection(Role.SERVER, codec=codec)
    with pytest.raises(LocalProtocolError, match="request is not allowed in state 'connected'"):
        agent.send_request([ping()])
    server.receive_data(raw(codec, b'[{"PingRoutingCommand": {"host_id": 1}}]'))
    with pytest.raises(RemoteProtocolError, match="not allowed in state 'connected'"):
        server.next_event()


def test_answer_count_must_match(codec: Codec) -> None:
    p = Pair(codec)
    p.handshake()
    seq, data = p.server.send_request([StopCommand(vm_name="a"), StopCommand(vm_name="b")])
    req = p.to_agent(data)
    with pytest.raises(LocalProtocolError, match="1 answers for a request of 2 commands"):
        p.agent.send_response(req, [Answer()])  # type: ignore[arg-type]
    p.server.receive_data(raw(codec, b'[{"Answer": {}}]', flags=0, seq=seq))
    with pytest.raises(RemoteProtocolError, match="carries 1 answers for 2 commands"):
        p.server.next_event()


def test_abandoned_requests_drop_late_answers(codec: Codec) -> None:
    p = Pair(codec)
    p.handshake()
    seq, data = p.server.send_request([StopCommand(vm_name="slow")])
    req = p.to_agent(data)
    p.server.abandon(seq)
    assert p.server.outstanding == 0
    p.server.receive_data(p.agent.send_response(req, [StartAnswer()]))  # type: ignore[arg-type]
    assert p.server.next_event() is NEED_DATA
    p.server.receive_data(p.agent.send_response(req, [StartAnswer()]))  # type: ignore[arg-type]
    with pytest.raises(RemoteProtocolError, match="response to no request"):
        p.server.next_event()


def test_only_agents_send_startups_and_sending_after_failure_is_refused(codec: Codec) -> None:
    server = Connection(Role.SERVER, codec=codec)
    with pytest.raises(LocalProtocolError, match="only an agent sends startup"):
        server.send_request([STARTUP])
    agent = Connection(Role.AGENT, codec=codec)
    with pytest.raises(LocalProtocolError, match="at least one command"):
        agent.send_request([])
    agent.send_failed()
    assert agent.state is State.ERROR
    with pytest.raises(LocalProtocolError, match="cannot send in state 'error'"):
        agent.send_request([STARTUP])


def test_oversized_outgoing_body_is_refused(codec: Codec) -> None:
    p = Pair(codec, max_frame_size=1024, compress_threshold=1 << 30)
    p.handshake()
    with pytest.raises(LocalProtocolError, match="exceeds the 984-byte limit"):
        p.server.send_request([start(1)])


def test_max_frame_size_is_validated() -> None:
    with pytest.raises(ValueError, match="max frame size"):
        Connection(Role.AGENT, max_frame_size=10)


def test_an_identical_control_body_decodes_to_the_same_commands_without_parsing(codec: Codec) -> None:
    pair = Pair(codec)
    pair.handshake()
    first = pair.to_server(pair.agent.send_request([ping(1)])[1])
    again = pair.to_server(pair.agent.send_request([ping(1)])[1])
    assert isinstance(first, Request) and isinstance(again, Request)
    assert again.commands is first.commands and again.seq == first.seq + 1
    changed = pair.to_server(pair.agent.send_request([ping(2)])[1])
    assert isinstance(changed, Request) and changed.commands != first.commands
    assert changed.commands[0] == ping(2)
    # a request that is not a control request is never remembered
    _seq, stop = pair.server.send_request([StopCommand(vm_name="v")])
    one = pair.to_agent(stop)
    _seq, stop = pair.server.send_request([StopCommand(vm_name="v")])
    two = pair.to_agent(stop)
    assert isinstance(one, Request) and isinstance(two, Request)
    assert one.commands == two.commands and one.commands is not two.commands


def test_the_same_bytes_flagged_compressed_are_not_taken_from_the_memo(codec: Codec) -> None:
    """The memo is keyed by the body as sent; the same bytes with COMPRESSED must be inflated (and here
    fail: they are not zlib data), never answered from the memo."""
    pair = Pair(codec)
    pair.handshake()
    _seq, data = pair.agent.send_request([ping(1)])
    assert isinstance(pair.to_server(data), Request)
    flags, seq = HEADER.unpack_from(data)[2:4]
    body = data[HEADER.size:]
    forged = HEADER.pack(VERSION, 0, flags | Flag.COMPRESSED, seq + 1, len(body), 0, 0, 0) + body
    pair.agent.send_request([ping(1)])  # the agent's next sequence number, so only the flag is wrong
    with pytest.raises(RemoteProtocolError, match="not valid zlib"):
        pair.to_server(forged)


def test_prepared_bodies_encode_as_the_messages_do(codec: Codec) -> None:
    from protocol.body import prepare

    for role_pair in range(2):
        one, two = Pair(codec), Pair(codec)
        one.handshake()
        two.handshake()
        if role_pair == 0:
            a = one.server.send_request([StopCommand(vm_name="v")])[1]
            b = two.server.send_request(prepare([StopCommand(vm_name="v")]))[1]
            assert bytes(a) == bytes(b)
            request = one.to_agent(a)
            assert isinstance(request, Request)
            answered = two.to_agent(b)
            assert isinstance(answered, Request) and answered.commands == request.commands
        else:
            _seq, data = one.agent.send_request([ping(1)])
            request = one.to_server(data)
            two.to_server(two.agent.send_request([ping(1)])[1])
            assert isinstance(request, Request)
            assert bytes(one.server.send_response(request, [PingAnswer()])) == bytes(
                two.server.send_response(request, prepare([PingAnswer()])))
