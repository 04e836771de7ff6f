"""Forwarding: a command for a host whose agent is connected to another management server goes to that
server over a peer link, and the host's answers come back the same way.

The peer port speaks the agents' framed protocol (``protocol``), over TLS 1.3 where each end shows a
peer certificate from the cloud's CA (``CertificateAuthority.issue_peer``: no host certificate can pass
for one) and requires the other's; the connection starts Up, without a startup. A request on a peer
link is a ``ForwardCommand`` (host, deadline, flags) followed by the commands for the host; the answer is
a ``ForwardAnswer`` followed by the host's answers. Nothing else is accepted on the peer port: any other
request ends that link, and only that link.

``PeerLinks`` is the sending side: one link per peer, opened on first use and kept; the holder of a host
is read from the database (``hosts.mgmt_server_id``) and remembered for a second at most, less when a
forward says the host is not there, a peer's status write for the host arrives through the change journal,
or the peer leaves. A peer
that dies or is declared down ends its link, which fails the requests in flight on it at once.
"""

from __future__ import annotations

import contextlib
import logging
import math
import ssl
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
import trio

from protocol import Connection, Request, Role
from protocol.link import Link, LinkClosed
from protocol.messages import Answer, Command, ForwardAnswer, ForwardCommand

from ..agents.host_status import Status
from ..agents.manager import AgentManager
from ..agents.registry import HostStatusChanged
from ..db.database import Database
from ..db.schema import hosts
from ..errors import AgentUnavailable, OperationTimedOut
from ..security.ca import CertificateAuthority, CertificateError
from .members import Member

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 10.0
CONNECT_TIMEOUT = 5.0
SLACK = 2.0  # seconds a forwarding server waits beyond the host's deadline (the peer's own hop)
OWNER_TTL = 1.0  # seconds a host's holder is trusted without reading it again (the journal also says)
MAX_PEER_LINKS = 256  # peer connections served at once (a cloud has a handful of servers)


def holder(conn: sa.Connection, host_id: int) -> int | None:
    """The server holding the host's agent connection (None: the host is not Up anywhere)."""
    row = conn.execute(sa.select(hosts.c.mgmt_server_id, hosts.c.status).where(hosts.c.id == host_id)).first()
    if row is None or row.status != Status.UP.value:
        return None
    return int(row.mgmt_server_id) if row.mgmt_server_id is not None else None


def _placeholders(commands: Sequence[object], failure: str, details: str) -> list[Answer]:
    return [ForwardAnswer(result=False, failure=failure, details=details),
            *[Answer(result=False, details=details) for _ in commands]]


class PeerPort:
    """The receiving side: accepts peer links and runs their forwarded commands on local hosts."""

    def __init__(self, manager: AgentManager, ca: CertificateAuthority, context: ssl.SSLContext) -> None:
        self.manager = manager
        self.ca = ca
        self.context = context
        self.port = 0
        self.links: set[Link] = set()
        self.forwarded = 0  # requests run for peers (for tests and metrics)

    async def serve(self, port: int, host: str | None = None, *,
                    task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(port, host=host)
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._handle, listeners)

    def stop(self) -> None:
        for link in list(self.links):
            link.end("the server is stopping")

    async def _handle(self, stream: trio.SocketStream) -> None:
        try:
            peer = "{}:{}".format(*stream.socket.getpeername()[:2])
        except OSError:
            peer = "?"
        try:
            if len(self.links) >= MAX_PEER_LINKS:
                log.warning("refusing a peer connection from %s: %d peer links already", peer,
                            len(self.links))
                return
            tls = trio.SSLStream(stream, self.context, server_side=True)
            with trio.move_on_after(HANDSHAKE_TIMEOUT) as slow:
                await tls.do_handshake()
            if slow.cancelled_caught:
                log.warning("peer connection from %s: no TLS handshake in %g s", peer, HANDSHAKE_TIMEOUT)
                return
            msid = self.ca.peer_msid(tls.getpeercert(binary_form=True) or b"")
        except (trio.BrokenResourceError, trio.ClosedResourceError, CertificateError, ValueError) as e:
            log.warning("peer connection from %s refused: %s", peer, e.__cause__ or e)
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stream.aclose()
            return
        link = Link(tls, Connection(Role.SERVER, mgmt_id=self.manager.msid, established=True),
                    self._on_request)
        self.links.add(link)
        try:
            reason = await link.run()
        except Exception:  # one link's failure must never take the server down
            log.exception("peer link from server %d failed", msid)
            reason = "internal error"
        finally:
            self.links.discard(link)
            with trio.move_on_after(1) as cleanup:
                cleanup.shield = True
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await tls.aclose()
        log.info("peer link from management server %d closed: %s", msid, reason)

    def _on_request(self, link: Link, request: Request) -> None:
        first, rest = request.commands[0], request.commands[1:]
        if not isinstance(first, ForwardCommand):
            link.respond(request, _placeholders(rest, "unavailable", "refused: not a forward"))
            link.end(f"a peer sent {type(first).__name__}; only ForwardCommand goes over a peer link")
            return
        commands = [c for c in rest if isinstance(c, Command) and not isinstance(c, ForwardCommand)]
        if not commands or len(commands) != len(rest):  # unknown to this server, malformed, or nested
            link.respond(request, _placeholders(rest, "unavailable", "refused: a command this server cannot "
                                                                     "forward to a host"))
            return
        if link.nursery is not None:
            link.nursery.start_soon(self._forward, link, request, first, commands)

    async def _forward(self, link: Link, request: Request, forward: ForwardCommand,
                       commands: list[Command]) -> None:
        timeout = float(forward.timeout)
        timeout = min(max(timeout, 0.001), 24 * 3600.0) if math.isfinite(timeout) else 60.0
        try:
            answers = await self.manager.send(forward.host_id, commands, timeout=timeout,
                                              in_sequence=forward.in_sequence,
                                              stop_on_error=forward.stop_on_error, local_only=True)
        except AgentUnavailable as e:
            link.respond(request, _placeholders(commands, "unavailable", str(e)))
            return
        except OperationTimedOut as e:
            link.respond(request, _placeholders(commands, "timeout", str(e)))
            return
        self.forwarded += 1
        link.respond(request, [ForwardAnswer(), *answers])


class PeerLinks:
    """The sending side: forwards commands to the server holding the host."""

    def __init__(self, db: Database, msid: int, ca: CertificateAuthority, context: ssl.SSLContext,
                 members: Callable[[], dict[int, Member]]) -> None:
        self.db = db
        self.msid = msid
        self.ca = ca
        self.context = context
        self.members = members  # the live servers (from ``Peers``)
        self.links: dict[int, Link] = {}
        self._opening: dict[int, trio.Event] = {}
        # host id -> (the server last found holding it, when): kept OWNER_TTL seconds at most
        self.owners: dict[int, tuple[int, float]] = {}
        self.nursery: trio.Nursery | None = None
        self.forwards = 0  # requests sent to peers (for tests and metrics)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    # --- what the rest of the server tells it --------------------------------------------------------

    def peer_gone(self, msid: int) -> None:
        """A peer died or was declared down: its link ends (failing what waits on it at once)."""
        link = self.links.pop(msid, None)
        if link is not None:
            link.end(f"management server {msid} is down")
        for host_id in [h for h, (m, _t) in self.owners.items() if m == msid]:
            del self.owners[host_id]

    def journal(self, _jid: int, deltas: list[Any]) -> None:
        """A peer wrote a host's status: where the host is may have changed."""
        for d in deltas:
            if isinstance(d, HostStatusChanged):
                self.owners.pop(d.host_id, None)

    def stop(self) -> None:
        for link in list(self.links.values()):
            link.end("the server is stopping")

    # --- forwarding ------------------------------------------------------------------------------

    async def send(self, host_id: int, commands: Sequence[Command], *, timeout: float,
                   in_sequence: bool = False, stop_on_error: bool = False) -> tuple[Any, ...]:
        """Run the commands on a host another server holds; its answers. Raises AgentUnavailable (no
        server holds it, its server is not reachable, or went away with the request in flight) or
        OperationTimedOut."""
        for attempt in range(2):
            cached = self.owners.get(host_id)
            now = trio.current_time()
            if cached is not None and now - cached[1] < OWNER_TTL:
                owner = cached[0]
            else:
                found = await self.db.read(holder, host_id)
                if found is None:
                    self.owners.pop(host_id, None)
                    raise AgentUnavailable(f"host {host_id} is not connected to any management server")
                owner = found
                self.owners[host_id] = (owner, now)
            if owner == self.msid:
                self.owners.pop(host_id, None)
                raise AgentUnavailable(f"host {host_id} has no agent connected to this management server")
            forward = ForwardCommand(host_id=host_id, timeout=timeout, in_sequence=in_sequence,
                                     stop_on_error=stop_on_error)
            link = await self._link(owner)
            self.forwards += 1
            try:
                response = await link.request([forward, *commands], timeout=timeout + SLACK)
            except LinkClosed as e:
                self.owners.pop(host_id, None)
                raise AgentUnavailable(f"host {host_id}: management server {owner} went away before it "
                                       f"answered {type(commands[0]).__name__}: {e}") from None
            if response is None:
                raise OperationTimedOut(f"host {host_id} (on management server {owner}) did not answer "
                                        f"{type(commands[0]).__name__} within {timeout:g} s")
            head = response.answers[0]
            if isinstance(head, ForwardAnswer) and head.result:
                return tuple(response.answers[1:])
            failure = head.failure if isinstance(head, ForwardAnswer) else "unavailable"
            if failure == "timeout":
                raise OperationTimedOut(head.details)
            self.owners.pop(host_id, None)  # it moved (or went): look again once
            if attempt:
                raise AgentUnavailable(f"host {host_id} via management server {owner}: {head.details}")
        raise AssertionError("unreachable")

    async def _link(self, msid: int) -> Link:
        while True:
            link = self.links.get(msid)
            if link is not None and not link.ended:
                return link
            opening = self._opening.get(msid)
            if opening is None:
                break
            await opening.wait()
        member = self.members().get(msid)
        if member is None or not member.peer_port:
            raise AgentUnavailable(f"management server {msid} is not up (or takes no forwarded commands)")
        self._opening[msid] = done = trio.Event()
        try:
            return await self._open(member)
        finally:
            del self._opening[msid]
            done.set()

    async def _open(self, member: Member) -> Link:
        where = f"{member.address}:{member.peer_port}"
        try:
            with trio.fail_after(CONNECT_TIMEOUT + HANDSHAKE_TIMEOUT):
                tcp = await trio.open_tcp_stream(member.address, member.peer_port)
                tls = trio.SSLStream(tcp, self.context, server_hostname=None)
                try:
                    await tls.do_handshake()
                    found = self.ca.peer_msid(tls.getpeercert(binary_form=True) or b"")
                except BaseException:
                    await trio.aclose_forcefully(tcp)
                    raise
        except (OSError, trio.TooSlowError, trio.BrokenResourceError, CertificateError, ValueError) as e:
            raise AgentUnavailable(f"management server {member.msid} at {where}: cannot connect: "
                                   f"{e.__cause__ or e or 'timed out'}") from None
        if found != member.msid:
            await trio.aclose_forcefully(tls)
            raise AgentUnavailable(f"{where} is management server {found}, not {member.msid}")
        link = Link(tls, Connection(Role.SERVER, mgmt_id=self.msid, established=True), self._refuse)
        self.links[member.msid] = link
        assert self.nursery is not None
        self.nursery.start_soon(self._serve, member.msid, link, tls)
        return link

    @staticmethod
    def _refuse(link: Link, request: Request) -> None:
        link.end(f"a peer sent a {type(request.commands[0]).__name__} request on a link it answers")

    async def _serve(self, msid: int, link: Link, tls: trio.SSLStream[Any]) -> None:
        try:
            reason = await link.run()
        except Exception:
            log.exception("peer link to server %d failed", msid)
            reason = "internal error"
        finally:
            if self.links.get(msid) is link:
                del self.links[msid]
            with trio.move_on_after(1) as cleanup:
                cleanup.shield = True
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await tls.aclose()
        log.info("peer link to management server %d closed: %s", msid, reason)
