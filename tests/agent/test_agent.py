"""The agent shell against a fake management server over real TCP: handshake, pings, commands,
ordering, reconnects, misbehaving servers and every fault rule."""

from __future__ import annotations

import pytest
import trio

from agent.faults import FaultTable
from agent.simulator import HostSpec, SimulatorResource
from protocol import Flag
from protocol.frame import HEADER, VERSION
from protocol.link import LinkClosed, Waiter
from protocol.messages import (
    Answer,
    CheckHealthAnswer,
    CheckHealthCommand,
    PingRoutingCommand,
    PowerState,
    RebootCommand,
    StartCommand,
    StartupRoutingCommand,
    StartupStorageCommand,
    StopCommand,
    UnsupportedAnswer,
)

from .builders import GIB, vm
from .conftest import AgentFactory
from .fake_server import FakeServer


async def test_handshake_reports_the_host_and_reaches_up(server: FakeServer,
                                                         make_agent: AgentFactory) -> None:
    agent = make_agent("sim-1", spec=HostSpec(cpus=8, cpu_speed_mhz=2000, memory_bytes=32 * GIB))
    link = await server.wait_for(lambda: server.ready_links("sim-1"))
    await agent.up.wait()
    assert agent.status == "up"
    assert agent.host_id == link[0].host_id == 1
    routing, storage = link[0].startups[0]
    assert isinstance(routing, StartupRoutingCommand) and isinstance(storage, StartupStorageCommand)
    assert (routing.guid, routing.zone, routing.pod, routing.cluster) == ("sim-1", "z1", "p1", "c1")
    assert (routing.cpus, routing.cpu_speed_mhz, routing.memory_bytes) == (8, 2000, 32 * GIB)
    assert routing.hypervisor_type == "Simulator"
    assert storage.capacity_bytes == storage.available_bytes > 0


async def test_pings_carry_the_power_report(server: FakeServer, make_agent: AgentFactory) -> None:
    agent = make_agent("sim-1")
    await agent.up.wait()
    answer = (await server.send("sim-1", [StartCommand(vm=vm("i-1"))])).answers[0]
    assert answer.result, answer.details
    link = server.link("sim-1")
    assert link is not None
    await server.wait_for(lambda: link.pings and link.pings[-1] == {"i-1": PowerState.ON})
    await server.send("sim-1", [StopCommand(vm_name="i-1")])
    await server.wait_for(lambda: link.pings[-1] == {})


async def test_unknown_and_unhandled_commands_get_unsupported_answer(server: FakeServer,
                                                                    make_agent: AgentFactory) -> None:
    agent = make_agent("sim-1")
    await agent.up.wait()
    link = server.link("sim-1")
    assert link is not None
    # a command type the agent does not know at all, written as raw JSON
    body = b'[{"ReplugCommand": {"wait": 0}}]'
    seq = 99
    waiter = server.expect("sim-1", seq, (CheckHealthCommand(),))  # the fake server expects one answer
    frame = HEADER.pack(VERSION, 0, Flag.REQUEST | Flag.FROM_SERVER, seq, len(body), 0, 1, 0) + body
    await server.send_raw("sim-1", frame)
    with trio.fail_after(5):
        response = await waiter.wait()
    assert response is not None
    assert isinstance(response.answers[0], UnsupportedAnswer)
    assert response.answers[0].details == "unsupported command: ReplugCommand"
    # a known type the agent has no handler for: pings go from agents to servers, not back
    (unhandled,) = (await server.send("sim-1", [PingRoutingCommand(host_id=1)])).answers
    assert unhandled == UnsupportedAnswer(details="unsupported command: PingRoutingCommand")
    assert agent.status == "up"


async def test_stop_on_error_answers_the_rest_as_not_run(server: FakeServer,
                                                        make_agent: AgentFactory) -> None:
    faults = FaultTable()
    faults.add("RebootCommand", "fail", details="reboot broke")
    agent = make_agent("sim-1", faults=faults)
    await agent.up.wait()
    r = await server.send("sim-1", [RebootCommand(vm_name="x"), CheckHealthCommand()], stop_on_error=True)
    assert [(a.result, a.details) for a in r.answers] == [
        (False, "reboot broke"), (False, "not run: an earlier command failed")]
    r = await server.send("sim-1", [RebootCommand(vm_name="x"), CheckHealthCommand()])
    assert r.answers[0].result is False and r.answers[1] == CheckHealthAnswer()


async def test_in_sequence_requests_run_in_order_and_others_concurrently(server: FakeServer,
                                                                        make_agent: AgentFactory) -> None:
    faults = FaultTable()
    slow = faults.add("CheckHealthCommand", "wait:1500", count=2)
    agent = make_agent("sim-1", faults=faults)
    await agent.up.wait()
    link = server.link("sim-1")
    assert link is not None
    done: list[str] = []  # in the order the answers arrived (answers that share a read wake in any order)

    def send(label: str, in_sequence: bool) -> Waiter:
        command = CheckHealthCommand() if label.startswith("slow") else StopCommand(vm_name=label)
        return link.start_request([command], in_sequence=in_sequence,
                                  waiter=Waiter(lambda _w: done.append(label)))[1]

    waiters = [send("slow-seq", True)]
    await server.wait_for(lambda: slow.matched >= 1)  # the slow command is running on the agent
    waiters += [send("after-seq", True), send("free", False)]
    with trio.fail_after(30):
        for waiter in waiters:
            assert (await waiter.wait()) is not None
    # the in-sequence request queued behind the slow one; the free one did not wait
    assert done.index("free") < done.index("slow-seq") < done.index("after-seq")


async def test_commands_for_one_vm_run_in_arrival_order(server: FakeServer, make_agent: AgentFactory) -> None:
    faults = FaultTable()
    slow = faults.add("StartCommand", "wait:1000", count=1)
    agent = make_agent("sim-1", faults=faults)
    await agent.up.wait()
    results: dict[str, Answer] = {}

    async def send(label: str, command: object) -> None:
        results[label] = (await server.send("sim-1", [command])).answers[0]  # type: ignore[list-item]

    async with trio.open_nursery() as n:
        n.start_soon(send, "start", StartCommand(vm=vm("i-7")))
        await server.wait_for(lambda: slow.matched >= 1)  # the start is running on the agent
        n.start_soon(send, "reboot", RebootCommand(vm_name="i-7"))
    # run concurrently, the reboot would have found no VM; queued behind the start, it succeeds
    assert results["start"].result and results["reboot"].result, results


async def test_fault_rules_fail_error_wait_and_expire(server: FakeServer, make_agent: AgentFactory) -> None:
    faults = FaultTable()
    agent = make_agent("sim-1", faults=faults)
    await agent.up.wait()
    faults.add("CheckHealthCommand", "fail", details="disk on fire", count=1)
    first = (await server.send("sim-1", [CheckHealthCommand()])).answers[0]
    second = (await server.send("sim-1", [CheckHealthCommand()])).answers[0]
    assert (first.result, first.details) == (False, "disk on fire")
    assert second.result  # the rule expired after one match
    faults.add("StopCommand", "error", details="libvirt exploded", count=1)
    err = (await server.send("sim-1", [StopCommand(vm_name="v")])).answers[0]
    assert (err.result, err.details) == (False, "StopCommand failed: FaultError: libvirt exploded")
    held = faults.add("CheckHealthCommand", "wait:1000", count=1)
    answers: list[Answer] = []

    async def delayed() -> None:
        answers.append((await server.send("sim-1", [CheckHealthCommand()])).answers[0])

    async with trio.open_nursery() as n:
        n.start_soon(delayed)
        await server.wait_for(lambda: held.matched == 1)  # the command is being held on the agent
        assert (await server.send("sim-1", [StopCommand(vm_name="w")])).answers[0].result
        assert answers == []  # held while another command was answered...
    assert answers[0].result  # ...then run and answered


async def test_drop_fault_closes_the_connection_and_the_agent_comes_back(server: FakeServer,
                                                                        make_agent: AgentFactory) -> None:
    faults = FaultTable()
    faults.add("StopCommand", "drop", count=1)
    agent = make_agent("sim-1", faults=faults)
    await agent.up.wait()
    first = server.link("sim-1")
    with pytest.raises(LinkClosed, match="the peer closed the connection"):
        await server.send("sim-1", [StopCommand(vm_name="v")], timeout=30)
    await server.wait_for(lambda: first.closed)  # type: ignore[union-attr]
    links = await server.wait_for(lambda: server.ready_links("sim-1"))
    assert links[0] is not first and links[0].host_id == first.host_id  # type: ignore[union-attr]
    assert "fault injected: drop on StopCommand" in agent.last_close_reason


async def test_power_off_behind_the_servers_back_shows_in_the_next_ping(server: FakeServer,
                                                                       make_agent: AgentFactory) -> None:
    faults = FaultTable()
    agent = make_agent("sim-1", faults=faults)
    await agent.up.wait()
    await server.send("sim-1", [StartCommand(vm=vm("i-9"))])
    faults.power_off.add("i-9")
    link = server.link("sim-1")
    await server.wait_for(lambda: link.pings and link.pings[-1] == {"i-9": PowerState.OFF})  # type: ignore[union-attr]


async def test_stop_pinging_looks_like_a_crash(server: FakeServer, make_agent: AgentFactory) -> None:
    faults = FaultTable()
    agent = make_agent("sim-1", faults=faults)
    await agent.up.wait()
    link = server.link("sim-1")
    assert link is not None
    await server.wait_for(lambda: len(link.pings) >= 2)
    count = len(link.pings)
    faults.stop_pinging = True
    await trio.sleep(10 * server.ping_interval)  # an observation window: absence can only be observed
    assert len(link.pings) <= count + 1  # at most a ping already under way; pinging on would add ~10
    assert (await server.send("sim-1", [CheckHealthCommand()])).answers[0].result  # yet it still answers


async def test_unanswered_pings_make_the_agent_reconnect(server: FakeServer,
                                                        make_agent: AgentFactory) -> None:
    agent = make_agent("sim-1", ping_retries=3)
    await agent.up.wait()
    first = server.link("sim-1")
    server.answer_pings = False
    await server.wait_for(lambda: first.closed, timeout=10)  # type: ignore[union-attr]
    assert agent.last_close_reason == "3 pings in a row went unanswered"
    server.answer_pings = True
    await server.wait_for(lambda: server.ready_links("sim-1"))


async def test_server_can_ask_for_a_new_startup_on_the_same_connection(server: FakeServer,
                                                                      make_agent: AgentFactory) -> None:
    agent = make_agent("sim-1")
    await agent.up.wait()
    link = server.link("sim-1")
    assert link is not None
    server.ask_startup.add("sim-1")
    await server.wait_for(lambda: len(link.startups) == 2)
    await server.wait_for(lambda: link.conn.state.value == "up" and len(link.pings) >= 2)
    assert server.link("sim-1") is link and not link.closed


async def test_refused_startup_and_rejected_host_are_retried(server: FakeServer,
                                                            make_agent: AgentFactory) -> None:
    server.refuse_startup = "zone z1 is unknown"
    agent = make_agent("sim-1")
    await server.wait_for(lambda: sum(len(lk.startups) for lk in server.links) >= 2)
    assert "startup refused: zone z1 is unknown" in agent.last_close_reason
    server.refuse_startup = ""
    server.reject_reason = "cluster c1 is disabled"
    await server.wait_for(lambda: "rejected by the server: cluster c1 is disabled" in agent.last_close_reason)
    assert agent.status != "up"
    server.reject_reason = ""
    await server.wait_for(lambda: server.ready_links("sim-1"))
    await agent.up.wait()


async def test_agent_reconnects_after_the_server_restarts(nursery: trio.Nursery, make_agent: AgentFactory,
                                                         server: FakeServer) -> None:
    agent = make_agent("sim-1")
    await agent.up.wait()
    port = server.port
    await server.stop()
    again = FakeServer()
    await nursery.start(again.serve, port)  # the same port, as a restarted server
    links = await again.wait_for(lambda: again.ready_links("sim-1"))
    await agent.up.wait()
    assert agent.sessions == 1  # one session ended; the second is up
    assert links[0].startups[0][0].guid == "sim-1"


async def test_agent_fails_over_to_the_next_server_in_its_list(nursery: trio.Nursery,
                                                               make_agent: AgentFactory,
                                                               server: FakeServer) -> None:
    other = FakeServer()
    await nursery.start(other.serve)
    agent = make_agent("sim-1", ports=[server.port, other.port])
    await server.wait_for(lambda: server.ready_links("sim-1"))
    await server.stop()
    await other.wait_for(lambda: other.ready_links("sim-1"))
    await agent.up.wait()


@pytest.mark.parametrize(
    ("garbage", "reason"),
    [
        (b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 40, "unsupported protocol version"),
        (HEADER.pack(VERSION, 0, 1, 1, 2**31, 0, 0, 0), "limit is"),
        (HEADER.pack(VERSION, 0, 0x08, 1, 2, 0, 0, 0) + b"[]", "unknown flag bits"),
        (HEADER.pack(VERSION, 0, 1, 1, 5, 0, 0, 0) + b"[{]]]", "malformed JSON body"),
    ],
)
async def test_a_misbehaving_server_is_dropped_and_the_agent_reconnects(server: FakeServer,
                                                                       make_agent: AgentFactory,
                                                                       garbage: bytes, reason: str) -> None:
    agent = make_agent("sim-1")
    await agent.up.wait()
    first = server.link("sim-1")
    await server.send_raw("sim-1", garbage)
    await server.wait_for(lambda: first.closed)  # type: ignore[union-attr]
    assert reason in agent.last_close_reason
    assert agent.last_close_reason.startswith("protocol violation by the server")
    await server.wait_for(lambda: server.ready_links("sim-1"))


async def test_drain_finishes_in_flight_commands_and_refuses_new_ones(server: FakeServer,
                                                                     make_agent: AgentFactory) -> None:
    faults = FaultTable()
    slow_rule = faults.add("CheckHealthCommand", "wait:500", count=1)
    agent = make_agent("sim-1", faults=faults)
    await agent.up.wait()
    answers: list[Answer] = []

    async def slow() -> None:
        answers.append((await server.send("sim-1", [CheckHealthCommand()])).answers[0])

    async with trio.open_nursery() as n:
        n.start_soon(slow)
        await server.wait_for(lambda: slow_rule.matched >= 1)
        assert agent.in_flight >= 1
        assert await agent.drain(deadline=5)
        late = (await server.send("sim-1", [StopCommand(vm_name="v")])).answers[0]
    assert answers[0].result
    assert (late.result, late.details) == (False, "the agent is shutting down")


def test_backoff_is_bounded_and_jittered() -> None:
    import random

    from agent.resource import Placement
    from agent.shell import Agent, AgentSettings

    settings = AgentSettings(mgmt=[("127.0.0.1", 1)], placement=Placement("g", "n", "z", "p", "c"),
                             backoff_base=0.5, backoff_cap=30)
    agents = [Agent(settings, SimulatorResource(), rng=random.Random(i)) for i in range(50)]
    for attempt in (0, 1, 5, 10, 100):
        delays = [a.backoff(attempt) for a in agents]
        assert all(0 <= d <= min(30, 0.5 * 2**attempt) for d in delays)
        assert len(set(delays)) == len(delays)  # no two agents wait the same time
    assert max(a.backoff(100) for a in agents) > 15  # the cap, not the base, bounds late attempts


async def test_sending_on_a_connection_that_just_closed_ends_that_session_only() -> None:
    """The server closed the connection while a ping or an answer was on its way out: that session ends
    with the reason (the agent reconnects); nothing is raised into the agent (or, in a fleet, into its
    neighbours' tasks)."""
    from agent.resource import Placement
    from agent.shell import Agent, AgentSettings, _Session
    from protocol import Request
    from protocol.messages import Answer, PingRoutingCommand

    agent = Agent(AgentSettings(mgmt=[("127.0.0.1", 1)], placement=Placement("g", "n", "z", "p", "c")),
                  SimulatorResource(HostSpec()))
    for attempt in ("request", "respond"):
        ours, _theirs = trio.testing.memory_stream_pair()
        session = _Session(agent, ours)  # type: ignore[arg-type]
        session.link.conn.receive_data(b"")  # the server closed its side
        session.link.conn.next_event()

        async def act(attempt: str = attempt, session: _Session = session) -> None:
            if attempt == "request":
                await session.request([PingRoutingCommand(host_id=1)], 5.0)
            else:  # an answer to a request read before the close
                request = Request(seq=7, flags=0, commands=(PingRoutingCommand(host_id=1),))
                session.respond(request, [Answer()])

        with trio.fail_after(10):
            await session.link.run(act)
        assert session.close_reason.startswith("cannot send"), attempt
