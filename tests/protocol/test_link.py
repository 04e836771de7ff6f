"""The trio link over in-memory streams: matching, abandon, end, last words, and whole frames only."""

from __future__ import annotations

import trio
import trio.testing

from protocol import Connection, Request
from protocol.codec import Codec
from protocol.link import Link, LinkClosed
from protocol.messages import Answer, CheckHealthAnswer, CheckHealthCommand, StopCommand

from .test_connection import STARTUP, STORAGE


def _up(codec: Codec) -> tuple[Connection, Connection]:
    """An agent and a server connection past their handshake (the state every other request needs)."""
    from protocol.messages import ReadyAnswer, ReadyCommand, StartupAnswer

    from .test_connection import Pair

    pair = Pair(codec)
    _, data = pair.agent.send_request([STARTUP, STORAGE])
    request = pair.to_server(data)
    assert isinstance(request, Request)
    pair.to_agent(pair.server.send_response(request, [StartupAnswer(host_id=9), Answer()]))
    _, data = pair.server.send_request([ReadyCommand(host_id=9)])
    ready = pair.to_agent(data)
    assert isinstance(ready, Request)
    pair.to_server(pair.agent.send_response(ready, [ReadyAnswer()]))
    return pair.agent, pair.server


def _answer_health(link: Link, request: Request) -> None:
    link.respond(request, [CheckHealthAnswer()] * len(request.commands))


def _never_answer(link: Link, request: Request) -> None:
    pass


async def test_a_request_gets_its_answer(codec: Codec) -> None:
    agent_conn, server_conn = _up(codec)
    ours, theirs = trio.testing.memory_stream_pair()
    server = Link(ours, server_conn, _never_answer)
    agent = Link(theirs, agent_conn, _answer_health)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.run)
        nursery.start_soon(agent.run)
        for _ in range(3):
            response = await server.request([CheckHealthCommand(), CheckHealthCommand()], timeout=30)
            assert response is not None and response.answers == (CheckHealthAnswer(), CheckHealthAnswer())
        assert server.waiting == 0
        nursery.cancel_scope.cancel()


async def test_an_unanswered_request_is_abandoned_and_its_late_answer_dropped(codec: Codec) -> None:
    agent_conn, server_conn = _up(codec)
    ours, theirs = trio.testing.memory_stream_pair()
    held: list[Request] = []
    arrived = trio.Event()

    def hold(_link: Link, request: Request) -> None:
        held.append(request)
        arrived.set()

    server = Link(ours, server_conn, _never_answer)
    agent = Link(theirs, agent_conn, hold)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.run)
        nursery.start_soon(agent.run)
        assert await server.request([StopCommand(vm_name="v")], timeout=0) is None
        assert server.waiting == 0
        with trio.fail_after(30):
            await arrived.wait()  # the request is on its way through the memory stream
        agent.respond(held[0], [Answer()])  # late: dropped quietly, the link goes on
        held.clear()
        arrived = trio.Event()
        seq, waiter = server.start_request([StopCommand(vm_name="w")])
        with trio.fail_after(30):
            await arrived.wait()
        agent.respond(held[0], [Answer(details="done")])
        answered = await waiter.wait()
        assert answered is not None and answered.seq == seq and answered.answers[0].details == "done"
        assert not server.ended and not agent.ended
        nursery.cancel_scope.cancel()


async def test_requests_waiting_when_the_link_ends_get_link_closed(codec: Codec) -> None:
    agent_conn, server_conn = _up(codec)
    ours, theirs = trio.testing.memory_stream_pair()
    server = Link(ours, server_conn, _never_answer)
    agent = Link(theirs, agent_conn, _never_answer)
    failures: list[str] = []

    async def ask() -> None:
        try:
            await server.request([StopCommand(vm_name="v")], timeout=60)
        except LinkClosed as e:
            failures.append(str(e))

    async def agent_side() -> None:
        await agent.run()
        await theirs.aclose()  # as every owner of a link does once it ended

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.run)
        nursery.start_soon(agent_side)
        nursery.start_soon(ask)
        with trio.fail_after(30):
            while not server.waiting:
                await trio.sleep(0)
        agent.end("the agent went away")
        with trio.fail_after(30):
            while not failures:
                await trio.sleep(0)
    assert failures == ["the peer closed the connection"]
    try:
        server.start_request([StopCommand(vm_name="v")])
    except LinkClosed as e:
        assert str(e) == "the peer closed the connection"
    else:
        raise AssertionError("a link that ended took a request")


async def test_an_answer_queued_before_the_end_still_goes_out(codec: Codec) -> None:
    """A handler answers and ends the link at once (a refused startup): the answer is the last word."""
    agent_conn, server_conn = _up(codec)
    ours, theirs = trio.testing.memory_stream_pair()

    def refuse(link: Link, request: Request) -> None:
        link.respond(request, [Answer(result=False, details="refused")])
        link.end("refused")

    server = Link(ours, server_conn, refuse)
    agent = Link(theirs, agent_conn, _never_answer)

    async def server_side() -> None:
        await server.run()
        await ours.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server_side)
        nursery.start_soon(agent.run)
        response = await agent.request([CheckHealthCommand()], timeout=60)
        assert response is not None and response.answers[0].details == "refused"
    assert server.reason == "refused"
    assert agent.reason == "the peer closed the connection"


async def test_a_cancelled_caller_never_cuts_a_frame(codec: Codec) -> None:
    """Callers only queue frames; the link writes them whole, so cancelling callers mid-flight leaves the
    peer reading only whole frames (a torn one would be a protocol violation there)."""
    agent_conn, server_conn = _up(codec)
    ours, theirs = trio.testing.lockstep_stream_pair()  # every write waits for the reader: slow peer
    seen: list[int] = []
    server = Link(ours, server_conn, _never_answer)
    agent = Link(theirs, agent_conn, lambda _link, request: seen.append(request.seq))

    async def impatient(i: int) -> None:
        with trio.move_on_after(0):
            await server.request([StopCommand(vm_name=f"v{i}" * 500)], timeout=60)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.run)
        nursery.start_soon(agent.run)
        async with trio.open_nursery() as callers:
            for i in range(50):
                callers.start_soon(impatient, i)
        with trio.fail_after(30):
            while len(seen) < 50:
                await trio.sleep(0)
        assert not agent.ended, agent.reason
        nursery.cancel_scope.cancel()


async def test_a_peer_that_does_not_read_cannot_hold_an_ending_link(
        codec: Codec, autojump_clock: trio.testing.MockClock) -> None:
    """A write is shielded from cancellation (half a frame would corrupt the stream), but once the link
    ends it gets LAST_WORDS seconds, not the minute a live link's write may take."""
    from protocol.link import LAST_WORDS

    _agent_conn, server_conn = _up(codec)
    ours, _theirs = trio.testing.lockstep_stream_pair()  # nobody ever reads the other end
    server = Link(ours, server_conn, _never_answer)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.run)
        server.start_request([StopCommand(vm_name="v")])
        await trio.sleep(10)  # the writer is stuck in its write (virtual time)
        assert not server.ended
        began = trio.current_time()
        server.end("the server is stopping")
    assert trio.current_time() - began <= LAST_WORDS
    assert server.reason == "the server is stopping"


def _socket_streams() -> tuple[trio.SocketStream, trio.SocketStream]:
    """Two ends of a real socket pair (the links' plain-socket path: writes and reads without waiting)."""
    a, b = trio.socket.socketpair()
    return trio.SocketStream(a), trio.SocketStream(b)


async def test_over_a_real_socket_a_burst_beyond_its_buffer_arrives_whole_and_in_order(codec: Codec) -> None:
    """Frames go straight to the socket while its buffer has room; what does not fit stays queued, in
    order, for the writer task, so a peer that starts reading late gets every frame whole and in order."""
    agent_conn, server_conn = _up(codec)
    ours, theirs = _socket_streams()
    seen: list[str] = []
    server = Link(ours, server_conn, _never_answer)

    def record(link: Link, request: Request) -> None:
        command = request.commands[0]
        assert isinstance(command, StopCommand)
        seen.append(command.vm_name)
        link.respond(request, [Answer(details=command.vm_name)])

    agent = Link(theirs, agent_conn, record)
    names = [f"{i:04d}" + "x" * 2000 for i in range(400)]  # 800 KB: far beyond a socket buffer
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.run)
        await trio.testing.wait_all_tasks_blocked()
        waiters = [server.start_request([StopCommand(vm_name=name)])[1] for name in names]
        assert server._out, "the socket took everything: the test does not reach the queued path"
        nursery.start_soon(agent.run)  # the peer reads only now
        with trio.fail_after(60):
            responses = [await w.wait() for w in waiters]
        assert seen == names
        assert [r.answers[0].details for r in responses if r is not None] == names
        assert not agent.ended and not server.ended, (agent.reason, server.reason)
        nursery.cancel_scope.cancel()


async def test_over_a_real_socket_a_write_to_a_closed_peer_ends_only_that_link(codec: Codec) -> None:
    _agent_conn, server_conn = _up(codec)
    ours, theirs = _socket_streams()
    server = Link(ours, server_conn, _never_answer)
    await theirs.aclose()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.run)
            _seq, waiter = server.start_request([StopCommand(vm_name="v")])
            assert await waiter.wait() is None
    assert server.reason == "the peer closed the connection" or server.reason.startswith("write failed")
