"""Mutual TLS on the agent port with the cloud's own CA (issue 18): who may connect, as which host,
and how hosts get, renew, lose and are given certificates. Real agents and real TLS over TCP."""

from __future__ import annotations

import datetime
import random
import ssl
from pathlib import Path

import pytest
import sqlalchemy as sa
import trio
from cryptography import x509
from cs import CloudStackApiException

from agent.resource import Placement
from agent.shell import Agent, AgentSettings
from agent.simulator import HostSpec, SimulatorResource
from agent.tls import Credentials
from mgmt.agents.manager import AgentManager
from mgmt.db.schema import host_certificates, hosts
from mgmt.security.ca import CertificateAuthority
from protocol import Response
from protocol.messages import CheckHealthCommand, EnrollCommand

from .test_agent_manager import TRUST, make_agent, start_server, tls_dir, wait_status
from .test_hostile_agents import RawAgent, startup


def agent(nursery: trio.Nursery, port: int, guid: str, credentials: Credentials | None,
          token: str = "") -> Agent:
    a = Agent(AgentSettings(mgmt=[("127.0.0.1", port)], backoff_base=0.05, backoff_cap=0.3,
                            placement=Placement(guid, f"host-{guid}", "zone1", "pod1", "pod1-cluster1"),
                            credentials=credentials, token=token),
              SimulatorResource(HostSpec(), pool_path=f"/pool/{guid}"), rng=random.Random(guid))
    nursery.start_soon(a.run)
    return a


def empty_credentials() -> Credentials:
    return Credentials(Path(tls_dir()) / "tls")


def serial_of(creds: Credentials) -> int:
    return x509.load_pem_x509_certificate((creds.directory / "cert.pem").read_bytes()).serial_number


async def until(predicate: object, timeout: float = 20) -> None:
    with trio.fail_after(timeout):
        while not predicate():  # type: ignore[operator]
            await trio.sleep(0.02)  # the state is another task's, moved by network events


def host_guids(manager: AgentManager) -> set[str]:
    with manager.db.engine.connect() as conn:
        return set(conn.scalars(sa.select(hosts.c.guid)))


async def test_an_agent_without_tls_or_with_another_cas_certificate_is_refused(nursery: trio.Nursery,
                                                                               tmp_path: Path) -> None:
    manager = await start_server(nursery, tmp_path)
    plain = agent(nursery, manager.port, "plain", None)
    other_ca = CertificateAuthority.load_or_create(tmp_path / "other-ca")
    key, issued = other_ca.issue_host("forged", datetime.timedelta(days=1))
    forged = agent(nursery, manager.port, "forged",
                   Credentials.store(tls_dir(), key, issued.pem, TRUST[manager.port].ca.pem))
    await until(lambda: manager.refused >= 4)  # each has tried at least twice
    assert plain.status != "up" and forged.status != "up"
    assert not host_guids(manager) & {"plain", "forged"}
    make_agent(nursery, manager.port, "honest")  # and honest hosts are not bothered
    await wait_status(manager, "honest", "Up")


async def test_a_certificate_registers_only_the_host_it_names(nursery: trio.Nursery, tmp_path: Path) -> None:
    manager = await start_server(nursery, tmp_path)
    make_agent(nursery, manager.port, "victim")
    victim = await wait_status(manager, "victim", "Up")
    mallory = await RawAgent.connect(manager.port, "mallory")  # a valid certificate, for another host
    await mallory.send(startup("victim"))
    answer = await mallory.event()
    assert isinstance(answer, Response) and not answer.answers[0].result
    assert "'mallory'" in answer.answers[0].details
    assert await mallory.closed_by_server()
    assert manager.links[victim.id].up  # the real host's connection was not touched
    assert (await manager.send(victim.id, [CheckHealthCommand()]))[0].result


async def test_a_host_enrolls_with_a_token_once(nursery: trio.Nursery, tmp_path: Path) -> None:
    manager = await start_server(nursery, tmp_path)
    trust = TRUST[manager.port]
    token = (await trust.token(uses=1)).token
    creds = empty_credentials()
    first = agent(nursery, manager.port, "new-1", creds, token)
    await wait_status(manager, "new-1", "Up")
    cert = x509.load_pem_x509_certificate((creds.directory / "cert.pem").read_bytes())
    assert cert.subject.rfc4514_string() == "CN=new-1"
    assert (creds.directory / "key.pem").stat().st_mode & 0o777 == 0o600
    assert first.sessions == 0 and first.status == "up"

    again = agent(nursery, manager.port, "new-2", empty_credentials(), token)  # the token is spent
    await until(lambda: "used up" in again.last_close_reason)
    # A token for another cloud: the agent notices before it sends the secret.
    secret, _, _fingerprint = token.partition(".")
    elsewhere = agent(nursery, manager.port, "new-3", empty_credentials(), f"{secret}.{'0' * 64}")
    await until(lambda: "not the cloud" in elsewhere.last_close_reason)
    # A valid token cannot take over a host that holds a valid certificate.
    thief = agent(nursery, manager.port, "new-1", empty_credentials(), (await trust.token()).token)
    await until(lambda: "exists and holds a valid certificate" in thief.last_close_reason)
    assert not host_guids(manager) & {"new-2", "new-3"}
    assert manager.links[(await wait_status(manager, "new-1", "Up")).id].up


async def test_a_certificate_is_renewed_on_the_live_connection(nursery: trio.Nursery, tmp_path: Path) -> None:
    manager = await start_server(nursery, tmp_path, ping_interval="1")
    trust = TRUST[manager.port]
    key, issued = trust.ca.issue_host("renewer", datetime.timedelta(minutes=1))  # two thirds are gone
    creds = Credentials.store(tls_dir(), key, issued.pem, trust.ca.pem)
    old = serial_of(creds)
    renewer = agent(nursery, manager.port, "renewer", creds)
    row = await wait_status(manager, "renewer", "Up")
    await until(lambda: serial_of(creds) != old)
    assert creds.not_after is not None and creds.not_after > datetime.datetime.now(datetime.UTC) + \
        datetime.timedelta(days=300)
    assert renewer.sessions == 0 and renewer.status == "up"  # the same connection throughout
    assert manager.links[row.id].up
    with manager.db.engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(host_certificates)
                           .where(host_certificates.c.guid == "renewer")) == 1  # the renewal's


async def test_permissive_mode_admits_agents_without_tls(nursery: trio.Nursery, tmp_path: Path) -> None:
    manager = await start_server(nursery, tmp_path, **{"ca_plugin_root_auth_strictness": "false"})
    agent(nursery, manager.port, "old-agent", None)
    await wait_status(manager, "old-agent", "Up")
    plain = RawAgent(await trio.open_tcp_stream("127.0.0.1", manager.port))  # a token in clear: refused
    await plain.send(EnrollCommand(guid="sniffed", token=(await TRUST[manager.port].token()).token, csr=""))
    refused = await plain.event()
    assert isinstance(refused, Response) and refused.answers[0].details == "enrollment needs TLS"
    make_agent(nursery, manager.port, "new-agent")  # and TLS agents still work
    await wait_status(manager, "new-agent", "Up")


async def test_ca_tokens_provisioning_and_revocation_through_the_api(nursery: trio.Nursery,
                                                                    tmp_path: Path) -> None:
    from tests.api.conftest import start_api

    api = await start_api(nursery, tmp_path)
    cs = api.client()
    manager = api.cloud.services.agents
    ca = (await api.call(lambda: cs.listCaCertificate()))["cacertificates"]["certificate"]
    assert ca == api.cloud.services.trust.ca.pem
    made = (await api.call(lambda: cs.createAgentRegistrationToken(uses=1)))["agentregistrationtoken"]
    creds = empty_credentials()
    newcomer = agent(nursery, manager.port, "api-host", creds, made["token"])
    row = await wait_status(manager, "api-host", "Up")

    old = serial_of(creds)
    await api.call(lambda: cs.provisionCertificate(hostid=row.uuid, reconnect=True, fetch_result=True))
    assert serial_of(creds) != old
    await until(lambda: newcomer.sessions >= 1 and newcomer.status == "up")  # back, with the new one

    with pytest.raises(CloudStackApiException) as busy:  # Up and enabled: not without forced
        await api.call(lambda: cs.deleteHost(id=row.uuid))
    assert busy.value.error["errorcode"] == 431
    await api.call(lambda: cs.updateHost(id=row.uuid, allocationstate="Disable"))
    await api.call(lambda: cs.deleteHost(id=row.uuid))
    await until(lambda: newcomer.status != "up")
    refused = manager.refused
    await until(lambda: manager.refused > refused + 1)  # it keeps trying; its certificate is revoked
    assert newcomer.status != "up"
    with manager.db.engine.connect() as conn:
        gone = conn.execute(sa.select(hosts.c.status, hosts.c.removed)
                            .where(hosts.c.guid == "api-host")).one()
    assert gone.status == "Removed" and gone.removed is not None
    listed = (await api.call(lambda: cs.listHosts(type="Routing")))["host"]
    assert "host-api-host" not in {h["name"] for h in listed}


def test_the_server_accepts_tls_1_3_only(tmp_path: Path) -> None:
    from mgmt.db.database import Database, sqlite_url
    from mgmt.security.trust import Trust

    db = Database(sqlite_url(tmp_path))
    db.migrate()
    trust = Trust.prepare(db, tmp_path, strict=True, validity_days=1)
    assert trust.context.minimum_version is ssl.TLSVersion.TLSv1_3
    assert (tmp_path / "ca" / "ca-key.pem").stat().st_mode & 0o777 == 0o600
    again = Trust.prepare(db, tmp_path, strict=True, validity_days=1)  # the same CA on the next start
    assert again.ca.fingerprint == trust.ca.fingerprint
    db.dispose()


def test_tokens_can_be_typed_on_a_command_line(database) -> None:  # type: ignore[no-untyped-def]
    """A token starting with "-" is taken for an option by ``--token T`` (it happened: URL-safe Base64
    secrets did, one time in 64, and the agent refused to start): secrets are hex."""
    from mgmt.security.trust import create_token

    with database.engine.begin() as conn:
        made = [create_token(conn, "ab" * 32).token for _ in range(200)]
    secrets_ = [t.partition(".")[0] for t in made]
    assert all(len(s) == 64 and all(c in "0123456789abcdef" for c in s) for s in secrets_)
