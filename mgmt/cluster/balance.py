"""Which management servers an agent is given, in which order, and moving agents to a server that
joined (``indirect.agent.lb.algorithm``, CloudStack's indirect agent load balancing).

- ``static``: every host gets the servers in the same order (by server id): all agents on the first.
- ``roundrobin``: each host its own order, by rendezvous hashing of the host and server ids: the hosts
  spread evenly over the servers; when one dies, its hosts spread evenly over the others (each moves to
  its second choice); when one joins, only the hosts that now put it first move, about 1/n of them.
- ``shuffle``: a random order for each host, drawn again at each Ready.

The agent goes down its list when a connection ends. A server that joins (or comes back) gets its hosts
gently: every server moves those of its hosts that put another live server first (with rendezvous
hashing, only those that put the newcomer first), ``cluster.agent.rebalance.rate`` per second, by
``SetupMSListCommand(reconnect=True)``, once that server has written a heartbeat since the host
connected here (a host that came because its server died is never sent back to it); with ``shuffle``
nobody is moved.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
from collections.abc import Collection

import trio

from ..agents.host_status import Status
from ..agents.manager import AgentManager
from .members import Member

log = logging.getLogger(__name__)
ALGORITHMS = ("static", "roundrobin", "shuffle")
MOVE_BACKOFF = 10.0  # seconds before a host moved away (and come back) is moved again


def _weight(host_id: int, msid: int) -> int:
    return int.from_bytes(hashlib.blake2b(f"{host_id}/{msid}".encode(), digest_size=8).digest(), "big")


def order(host_id: int, servers: Collection[Member], algorithm: str, rng: random.Random | None = None
          ) -> list[Member]:
    """The servers in the order ``host_id`` tries them."""
    by_id = sorted(servers, key=lambda m: m.msid)
    if algorithm == "static":
        return by_id
    if algorithm == "shuffle":
        (rng or random).shuffle(by_id)
        return by_id
    return sorted(by_id, key=lambda m: _weight(host_id, m.msid), reverse=True)


def entries(members: Collection[Member]) -> tuple[str, ...]:
    return tuple(f"[{m.address}]:{m.agent_port}" if ":" in m.address else f"{m.address}:{m.agent_port}"
                 for m in members)


class Balancer:
    """Gives each host its list (``server_list``, the agent manager asks at each Ready) and moves the
    hosts connected here that belong first on another live server there (a server joined or came back,
    or an agent's own configuration sent it here), ``rate`` per second."""

    def __init__(self, manager: AgentManager, msid: int, algorithm: str, rate: float) -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"indirect.agent.lb.algorithm is one of {', '.join(ALGORITHMS)}, "
                             f"not {algorithm!r}")
        self.manager = manager
        self.msid = msid
        self.algorithm = algorithm
        self.rate = rate
        self.live: dict[int, Member] = {}  # every server up, this one included
        self._preferred: dict[int, int] = {}  # host id -> its first server, for the current live set
        self._wake = trio.Event()
        self.moved = 0  # hosts asked to move (for tests and metrics)
        # A host is moved only to a server that has written a heartbeat since the host connected here:
        # a host that came because its server died (which stays live for the heartbeat threshold) is
        # never sent back to it. And not again for MOVE_BACKOFF seconds (if it is back, its server did
        # not take it: no bouncing).
        self._beat: dict[int, float] = {}  # server -> its last heartbeat, on this process's trio clock
        self._sent: dict[int, float] = {}
        manager.server_list = self.server_list
        manager.status_listeners.append(self.host_changed)

    def server_list(self, host_id: int) -> tuple[tuple[str, ...], str]:
        if not self.live:
            return (), self.algorithm
        return entries(order(host_id, self.live.values(), self.algorithm)), self.algorithm

    def preferred(self, host_id: int) -> int:
        found = self._preferred.get(host_id)
        if found is None:
            found = self._preferred[host_id] = order(host_id, self.live.values(), self.algorithm)[0].msid
        return found

    def changed(self, live: dict[int, Member]) -> None:
        """From ``Peers``: the live servers now."""
        self.live = dict(live)
        self._preferred = {}
        self.manager.tell_servers()
        self._wake.set()

    def beat(self, live: dict[int, Member], read_at: float) -> None:
        """From ``Peers``, every round: the live servers as read at ``read_at`` (trio time), with the
        age of each one's heartbeat then."""
        for msid, member in live.items():
            self._beat[msid] = read_at - member.age

    def host_changed(self, _host_id: int, status: Status) -> None:
        if status is Status.UP:
            self._wake.set()

    def _target(self, host_id: int, since: float) -> int | None:
        """Where the host (connected here at ``since``) belongs when that is elsewhere and it may be
        moved there now; else None."""
        target = self.preferred(host_id)
        if target == self.msid or target not in self.live or self._beat.get(target, -math.inf) <= since:
            return None
        if trio.current_time() - self._sent.get(host_id, -MOVE_BACKOFF) < MOVE_BACKOFF:
            return None
        return target

    def _misplaced(self) -> list[int]:
        if len(self.live) < 2 or self.msid not in self.live or self.algorithm == "shuffle":
            return []
        links = self.manager.links
        return [h for h, link in list(links.items())
                if link.up and not link.moving and self._target(h, link.accepted) is not None]

    async def run(self) -> None:
        """Move the hosts that belong on another live server, ``rate`` per second."""
        while True:
            with trio.move_on_after(MOVE_BACKOFF / 4):  # also when hosts' backoffs end
                await self._wake.wait()
            self._wake = trio.Event()
            if self.rate <= 0:
                continue
            misplaced = self._misplaced()
            if misplaced:
                log.info("moving %d hosts to the management servers they belong on, %g per second",
                         len(misplaced), self.rate)
            for host_id in misplaced:
                link = self.manager.links.get(host_id)
                if (link is not None and self._target(host_id, link.accepted) is not None
                        and self.manager.move(host_id)):
                    self._sent[host_id] = trio.current_time()
                    self.moved += 1
                    await trio.sleep(1 / self.rate)  # the pace itself, not a synchronization
            if len(self._sent) > 100_000:
                now = trio.current_time()
                self._sent = {h: t for h, t in self._sent.items() if now - t < MOVE_BACKOFF}
