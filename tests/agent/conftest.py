"""Fixtures: a fake management server and simulated agents on real loopback TCP."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable

import pytest
import trio

from agent.faults import FaultTable
from agent.resource import Placement
from agent.shell import Agent, AgentSettings
from agent.simulator import HostSpec, SimulatorResource

from .fake_server import FakeServer

AgentFactory = Callable[..., Agent]


@pytest.fixture
async def server(nursery: trio.Nursery) -> AsyncIterator[FakeServer]:
    srv = FakeServer()
    await nursery.start(srv.serve)
    yield srv
    await srv.stop()


@pytest.fixture
def make_agent(nursery: trio.Nursery, server: FakeServer) -> AgentFactory:
    """Start a simulated agent against the fake server; returns the Agent (call ``await agent.up.wait()``)."""
    made: list[Agent] = []

    def make(guid: str = "sim-1", *, spec: HostSpec | None = None, faults: FaultTable | None = None,
             ports: list[int] | None = None, **settings: object) -> Agent:
        resource = SimulatorResource(spec or HostSpec(), faults or FaultTable(), pool_path=f"/pool/{guid}")
        defaults: dict[str, object] = {"backoff_base": 0.05, "backoff_cap": 0.2, "startup_timeout": 5.0}
        defaults.update(settings)
        agent = Agent(
            AgentSettings(
                mgmt=[("127.0.0.1", p) for p in (ports or [server.port])],
                placement=Placement(guid=guid, name=f"host-{guid}", zone="z1", pod="p1", cluster="c1"),
                **defaults,  # type: ignore[arg-type]
            ),
            resource,
            rng=random.Random(guid),
        )
        nursery.start_soon(agent.run)
        made.append(agent)
        return agent

    return make
