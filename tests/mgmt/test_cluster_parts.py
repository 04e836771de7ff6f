"""The pieces of several management servers, one at a time: the change journal's hostile input, who
may start on which database, declaring a peer down (one winner, and the loser stops), the agents'
order over the servers, and the peer port's door."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
import trio
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from mgmt.agents.registry import HostStatusChanged
from mgmt.cluster import balance, members
from mgmt.cluster.forward import PeerLinks, PeerPort
from mgmt.cluster.members import Member
from mgmt.db import journal
from mgmt.db.database import Database
from mgmt.db.schema import management_servers
from mgmt.errors import AgentUnavailable
from mgmt.planner.deltas import HostAllocated
from mgmt.security.ca import CertificateAuthority, CertificateError
from mgmt.server import ServerConfig, StartupError, prepare_server
from protocol import Connection, Role
from protocol.link import Link
from protocol.messages import Answer, CheckHealthCommand, ForwardAnswer, ForwardCommand, ReadyCommand

# --- the change journal --------------------------------------------------------------------------------


def test_journal_round_trip_and_hostile_rows() -> None:
    body = journal.encode([HostAllocated(3, 500, 1 << 30), HostStatusChanged(3, "Up"), object()])
    assert body is not None
    assert journal.decode(body) == [HostAllocated(3, 500, 1 << 30), HostStatusChanged(3, "Up")]
    assert journal.encode([object()]) is None  # nothing registered: no row
    hostile = orjson.dumps([["HostAllocated", "3", 1, 2], ["HostAllocated", 1, 2], ["Nope", 1],
                            ["HostStatusChanged", 4, True], 7, [], ["HostAllocated", 1, 2, 3, 4],
                            ["HostAllocated", True, 2, 3], ["HostStatusChanged", 5, "Up"]])
    assert journal.decode(hostile) == [HostStatusChanged(5, "Up")]  # each bad item alone is dropped
    assert journal.decode(b"\xff not json") == []
    assert journal.decode(b'{"a": 1}') == []


# --- who may start where -------------------------------------------------------------------------------


def test_a_second_server_on_one_sqlite_database_is_refused(tmp_path: Path) -> None:
    first = prepare_server(ServerConfig(data_dir=str(tmp_path)))
    try:
        with pytest.raises(StartupError, match=r"another management server runs on the SQLite database .*"
                                               r"use PostgreSQL"):
            prepare_server(ServerConfig(data_dir=str(tmp_path)))
    finally:
        assert first.lock is not None
        first.lock.release()
        first.db.dispose()
    again = prepare_server(ServerConfig(data_dir=str(tmp_path)))  # the lock went with its holder
    assert again.lock is not None
    again.lock.release()
    again.db.dispose()


def test_a_schema_newer_than_the_server_is_refused(tmp_path: Path) -> None:
    p = prepare_server(ServerConfig(data_dir=str(tmp_path)))
    assert p.lock is not None
    p.lock.release()
    with p.db.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    p.db.dispose()
    with pytest.raises(StartupError, match=r"revision 9999, which this server .* does not know"):
        prepare_server(ServerConfig(data_dir=str(tmp_path)))


def _fresh(url: str) -> None:
    db = Database(url)
    with db.engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    db.dispose()


def test_an_upgrade_under_running_peers_is_refused(tmp_path: Path, postgres_url: str) -> None:
    _fresh(postgres_url)
    p = prepare_server(ServerConfig(data_dir=str(tmp_path / "a"), db=postgres_url))
    with p.db.engine.begin() as conn:
        members.started(conn, p.msid, 8250, 9090)  # a live peer, on the schema as it is
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0012'")  # as if it were older
    p.db.dispose()
    with pytest.raises(StartupError, match=r"needs an upgrade from revision 0012 .* still run on it"):
        prepare_server(ServerConfig(data_dir=str(tmp_path / "b"), db=postgres_url))


# --- declaring a peer down -----------------------------------------------------------------------------


def test_one_peer_declares_a_silent_one_down_and_that_one_stops(tmp_path: Path, postgres_url: str) -> None:
    _fresh(postgres_url)
    servers = [prepare_server(ServerConfig(data_dir=str(tmp_path / n), db=postgres_url)) for n in "abc"]
    db = servers[0].db
    a, b, c = (s.msid for s in servers)
    with db.engine.begin() as conn:
        for s in servers:
            members.started(conn, s.msid, 8250, 9090)
        assert {m.msid for m in members.live_peers(conn, a, 15.0)} == {b, c}
        assert members.declare_down(conn, c, a, 15.0) is None  # its heartbeat is fresh
        old = members.db_now(conn) - dt.timedelta(seconds=60)
        conn.execute(management_servers.update().where(management_servers.c.msid == c)
                     .values(last_heartbeat=old))
        assert {m.msid for m in members.live_peers(conn, a, 15.0)} == {b}
    with db.engine.begin() as conn:
        settled = members.declare_down(conn, c, a, 15.0)
        assert settled is not None and settled["jobs"] == 0
    with db.engine.begin() as conn:
        assert members.declare_down(conn, c, b, 15.0) is None  # one winner
        assert "declared this one down" in members.heartbeat(conn, c)  # c, back, learns it must stop
        assert members.heartbeat(conn, a) == ""
        row = conn.execute(sa.select(management_servers).where(management_servers.c.msid == c)).one()
        assert (row.state, row.taken_over_by) == ("Down", a)
    for s in servers:
        s.db.dispose()


# --- the agents' order over the servers ----------------------------------------------------------------


def _member(msid: int) -> Member:
    return Member(msid, "", f"10.0.0.{msid}", 8250, 9090, "", "", "Up", dt.datetime.now(dt.UTC), True)


def test_rendezvous_order_spreads_hosts_and_moves_only_what_it_must() -> None:
    three = [_member(m) for m in (11, 22, 33)]
    four = [*three, _member(44)]
    hosts = range(1, 3001)
    first3 = {h: balance.order(h, three, "roundrobin")[0].msid for h in hosts}
    first4 = {h: balance.order(h, four, "roundrobin")[0].msid for h in hosts}
    shares = Counter(first3.values())
    assert min(shares.values()) > 850 and max(shares.values()) < 1150  # about a third each
    moved = {h for h in hosts if first3[h] != first4[h]}
    assert {first4[h] for h in moved} == {44}  # a newcomer takes hosts; nobody else moves
    assert 600 < len(moved) < 900  # about a quarter
    # A server gone: its hosts go to their second choice, spread over the others; the rest stay.
    without = [m for m in three if m.msid != 22]
    for h in hosts:
        now = balance.order(h, without, "roundrobin")[0].msid
        assert now == first3[h] if first3[h] != 22 else now == balance.order(h, three, "roundrobin")[1].msid
    second = Counter(balance.order(h, three, "roundrobin")[1].msid for h in hosts if first3[h] == 22)
    assert set(second) == {11, 33} and min(second.values()) > 350
    assert [m.msid for m in balance.order(5, three, "static")] == [11, 22, 33]
    assert balance.entries([_member(7), Member(8, "", "fd00::8", 8250, 0, "", "", "Up",
                                               dt.datetime.now(dt.UTC), True)]) == ("10.0.0.7:8250",
                                                                                    "[fd00::8]:8250")


# --- the peer port -------------------------------------------------------------------------------------


class _Hosts:
    """Stands for the agent manager behind a peer port: one host that answers, one that never does."""

    msid = 1

    def __init__(self) -> None:
        self.asked = trio.Event()

    async def send(self, host_id: int, commands: Any, **kw: Any) -> tuple[Any, ...]:
        if host_id == 7:
            return tuple(Answer(details=f"ran {type(c).__name__}") for c in commands)
        if host_id == 8:
            self.asked.set()
            await trio.sleep_forever()
        raise AgentUnavailable(f"host {host_id} has no agent connected to this management server")


async def _peer_port(nursery: trio.Nursery, tmp_path: Path) -> tuple[CertificateAuthority, PeerPort, Any]:
    ca = CertificateAuthority.load_or_create(tmp_path / "ca")
    key, cert = ca.issue_peer(1, ["localhost"], ["127.0.0.1"])
    server, _client = ca.peer_contexts(key, cert.pem, tmp_path / "ca")
    hosts = _Hosts()
    port = PeerPort(hosts, ca, server)  # type: ignore[arg-type]
    await nursery.start(port.serve, 0, "127.0.0.1")
    return ca, port, hosts


class _Holder:
    """Stands for the database: every host is held by server ``msid``."""

    def __init__(self, msid: int) -> None:
        self.msid = msid

    async def read(self, _fn: Any, _host_id: int) -> int:
        return self.msid


def _links(ca: CertificateAuthority, tmp_path: Path, msid: int, port: int, as_msid: int = 2) -> PeerLinks:
    key, cert = ca.issue_peer(as_msid, ["localhost"], ["127.0.0.1"])
    _server, client = ca.peer_contexts(key, cert.pem, tmp_path / f"links-{as_msid}")
    member = Member(msid, "", "127.0.0.1", 8250, port, "", "", "Up", dt.datetime.now(dt.UTC), True)
    links = PeerLinks(_Holder(msid), as_msid, ca, client, lambda: {msid: member})  # type: ignore[arg-type]
    links.owners.update({h: (msid, 1e12) for h in (7, 8, 9)})  # (trusted: no database here)
    return links


async def test_forwarding_over_the_peer_port(nursery: trio.Nursery, tmp_path: Path) -> None:
    (tmp_path / "links-2").mkdir()
    ca, port, hosts = await _peer_port(nursery, tmp_path)
    links = _links(ca, tmp_path, 1, port.port)
    await nursery.start(links.run)
    answers = await links.send(7, [CheckHealthCommand(), ReadyCommand(host_id=7)], timeout=5)
    assert [a.details for a in answers] == ["ran CheckHealthCommand", "ran ReadyCommand"]
    with pytest.raises(AgentUnavailable, match=r"host 9 via management server 1: .*no agent connected"):
        await links.send(9, [CheckHealthCommand()], timeout=5)  # looked up again: still not there
    # A peer that dies with a request in flight fails it at once.
    failed: list[BaseException] = []

    async def waits() -> None:
        try:
            await links.send(8, [CheckHealthCommand()], timeout=3600)
        except AgentUnavailable as e:
            failed.append(e)

    async with trio.open_nursery() as inner:
        inner.start_soon(waits)
        await hosts.asked.wait()
        port.stop()
    assert failed and "went away before it answered" in str(failed[0])


async def test_the_peer_port_admits_peers_only(nursery: trio.Nursery, tmp_path: Path) -> None:
    ca, port, _hosts = await _peer_port(nursery, tmp_path)
    # A host's certificate from the same CA is no peer's.
    from agent.tls import Credentials

    key, issued = ca.issue_host("host-guid", dt.timedelta(days=1))
    creds = Credentials.store(tmp_path / "host", key, issued.pem, ca.pem)
    tls = trio.SSLStream(await trio.open_tcp_stream("127.0.0.1", port.port), creds.context())
    try:
        with trio.fail_after(10):  # (a port that took it would keep the link open: a failure, not a hang)
            await tls.do_handshake()
            await tls.send_all(b"x" * 100)
            got = await tls.receive_some(100)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        got = b""  # refused during or right after the handshake
    assert got == b"" and len(port.links) == 0
    with pytest.raises(CertificateError, match="not a management server"):
        ca.peer_msid(x509.load_pem_x509_certificate(issued.pem.encode()).public_bytes(Encoding.DER))
    # A peer that sends anything but a forward loses its link (and only it).
    (tmp_path / "links-3").mkdir()
    key3, cert3 = ca.issue_peer(3, [], ["127.0.0.1"])
    _s, client = ca.peer_contexts(key3, cert3.pem, tmp_path / "links-3")
    tls = trio.SSLStream(await trio.open_tcp_stream("127.0.0.1", port.port), client)
    await tls.do_handshake()
    link = Link(tls, Connection(Role.SERVER, established=True), lambda *_: None)
    async with trio.open_nursery() as inner:
        inner.start_soon(link.run)
        response = await link.request([CheckHealthCommand()], timeout=10)
        assert response is not None and isinstance(response.answers[0], Answer)
        assert not response.answers[0].result
        with trio.fail_after(10):
            while not link.ended:
                await trio.sleep(0.01)  # the server ends the link: there is no event to wait on here
    assert len(port.links) == 0
    # A forward of nothing, or of a forward, is refused; the link stays and serves the next request.
    tls = trio.SSLStream(await trio.open_tcp_stream("127.0.0.1", port.port), client)
    await tls.do_handshake()
    link = Link(tls, Connection(Role.SERVER, established=True), lambda *_: None)
    async with trio.open_nursery() as inner:
        inner.start_soon(link.run)
        for request in ([ForwardCommand(host_id=7, timeout=1)],
                        [ForwardCommand(host_id=7, timeout=1), ForwardCommand(host_id=7, timeout=1)]):
            response = await link.request(request, timeout=10)
            assert response is not None and isinstance(response.answers[0], ForwardAnswer)
            assert not response.answers[0].result and "refused" in response.answers[0].details
        response = await link.request([ForwardCommand(host_id=7, timeout=5), CheckHealthCommand()],
                                      timeout=10)
        assert response is not None and response.answers[0].result and not link.ended
        link.end("done")
    # the port still serves the next peer
    (tmp_path / "links-2").mkdir()
    links = _links(ca, tmp_path, 1, port.port)
    await nursery.start(links.run)
    answers = await links.send(7, [CheckHealthCommand()], timeout=5)
    assert answers[0].details == "ran CheckHealthCommand"


async def test_a_server_declared_down_by_a_peer_stops(tmp_path: Path, postgres_url: str) -> None:
    """Its work was settled by another (say its database link was cut for longer than the threshold):
    it must not go on as if it still held it."""
    from mgmt.db.schema import configuration
    from mgmt.server import serve

    _fresh(postgres_url)
    config = ServerConfig(data_dir=str(tmp_path), db=postgres_url, agent_port=0, api_port=0, peer_port=0,
                          bind="127.0.0.1")
    p = prepare_server(config)
    with p.db.engine.begin() as conn:
        conn.execute(configuration.update().where(configuration.c.name == "cluster.heartbeat.interval")
                     .values(value="100"))
    p.db.dispose()
    ended: list[int] = []

    async def run(task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        ended.append(await serve(config, task_status=task_status))

    async with trio.open_nursery() as nursery:
        services = await nursery.start(run)
        db = Database(postgres_url)
        with db.engine.begin() as conn:
            conn.execute(management_servers.update().where(management_servers.c.msid == services.msid)
                         .values(state="Down", taken_over_by=12345))
        db.dispose()
    assert ended == [1]  # it stopped by itself, with exit code 1


async def test_a_peer_port_in_use_stops_start_up_with_one_line(tmp_path: Path, postgres_url: str) -> None:
    import socket

    from mgmt.server import serve

    _fresh(postgres_url)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = ServerConfig(data_dir=str(tmp_path), db=postgres_url, agent_port=0, api_port=0,
                              peer_port=port, bind="127.0.0.1")
        with pytest.raises(StartupError, match=f"the peer port {port}: "):
            await serve(config)
