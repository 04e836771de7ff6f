"""Who may speak on the agent port: the CA, registration tokens, issued and revoked certificates.

A registration token is what an operator hands a new host (``python -m mgmt agent-token`` or the
``createAgentRegistrationToken`` API): ``SECRET.FINGERPRINT``, where the fingerprint is the CA
certificate's SHA-256, so the agent can check that it talks to this cloud before it sends the secret
(the way kubeadm pins its cluster's CA). Only the secret's SHA-256 is stored; a token is good for a
number of uses until it expires. An agent enrolls with it once, then connects with its certificate,
whose CN is its guid: the agent manager lets a connection register or reclaim only that host.

Every issued host certificate is recorded; revoking a host (``deleteHost``) marks its certificates,
and the agent manager refuses a revoked serial at the handshake and closes the host's live link.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..db.database import DELTAS, Database
from ..db.journal import journaled
from ..db.schema import agent_tokens, certificate_authority, host_certificates, hosts
from .ca import CertificateAuthority, CertificateError, Issued, guid_of

TOKEN_VALIDITY = dt.timedelta(hours=24)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Token:
    token: str
    uses: int
    expires: dt.datetime


def create_token(conn: Connection, ca_fingerprint: str, *, uses: int = 1,
                 validity: dt.timedelta = TOKEN_VALIDITY) -> Token:
    # Hex: a token is typed on command lines (``--token T``), where one starting with "-" (as a
    # URL-safe Base64 one does, one time in 64) is taken for an option.
    secret = secrets.token_hex(32)
    now = _now()
    conn.execute(agent_tokens.insert().values(token_hash=_hash(secret), uses_left=uses, created=now,
                                              expires=now + validity))
    return Token(f"{secret}.{ca_fingerprint}", uses, now + validity)


def use_token(conn: Connection, token: str) -> bool:
    """Spend one use of ``token`` (the secret part); False when it is unknown, used up or expired."""
    secret = token.partition(".")[0]
    if not secret or len(secret) > 128:
        return False
    now = _now()
    return conn.execute(agent_tokens.update().where(
        agent_tokens.c.token_hash == _hash(secret), agent_tokens.c.uses_left > 0,
        agent_tokens.c.expires > now).values(uses_left=agent_tokens.c.uses_left - 1)).rowcount == 1


def _record(conn: Connection, guid: str, issued: Issued) -> None:
    conn.execute(host_certificates.insert().values(serial=issued.serial, guid=guid, created=_now(),
                                                   not_after=issued.not_after))


def _guid_taken(conn: Connection, guid: str) -> bool:
    """Whether a live host holds ``guid`` with a certificate that still counts: enrolling again for it
    would take it over (the operator revokes it with deleteHost, or renews it with provisionCertificate)."""
    live = conn.scalar(sa.select(hosts.c.id).where(hosts.c.guid == guid, hosts.c.removed.is_(None),
                                                   hosts.c.status != "Removed"))
    if live is None:
        return False
    return conn.scalar(sa.select(host_certificates.c.id).where(
        host_certificates.c.guid == guid, host_certificates.c.revoked.is_(None),
        host_certificates.c.not_after > _now()).limit(1)) is not None


def revoke(conn: Connection, guid: str) -> list[str]:
    """Revoke every certificate of ``guid``; the serials revoked."""
    serials = list(conn.scalars(sa.select(host_certificates.c.serial).where(
        host_certificates.c.guid == guid, host_certificates.c.revoked.is_(None))))
    if serials:
        conn.execute(host_certificates.update().where(host_certificates.c.serial.in_(serials))
                     .values(revoked=_now()))
        pending = conn.info.get(DELTAS)
        if pending is not None:
            pending.append(CertificatesRevoked(guid, tuple(serials)))
    return serials


def revoked_serials(conn: Connection) -> set[str]:
    return set(conn.scalars(sa.select(host_certificates.c.serial).where(
        host_certificates.c.revoked.is_not(None), host_certificates.c.not_after > _now())))


def shared_ca(db: Database, directory: Path) -> CertificateAuthority:
    """The cloud's CA: the one in the database; on the first start of the first server, the one in
    ``directory`` (made there if need be), which then goes into the database. A data directory holding
    another CA than the database's is refused: its hosts' certificates would not be this cloud's."""
    with db.engine.begin() as conn:
        row = conn.execute(sa.select(certificate_authority).where(certificate_authority.c.id == 1)).first()
    if row is None:
        ca = CertificateAuthority.load_or_create(directory)
        try:
            with db.engine.begin() as conn:
                conn.execute(certificate_authority.insert().values(id=1, cert_pem=ca.pem, key_pem=ca.key_pem,
                                                                   created=_now()))
            return ca
        except sa.exc.IntegrityError:  # another server published its own first: take that one
            with db.engine.begin() as conn:
                row = conn.execute(sa.select(certificate_authority)
                                   .where(certificate_authority.c.id == 1)).one()
    shared = CertificateAuthority.from_pem(row.key_pem, row.cert_pem)
    if (directory / "ca-cert.pem").exists() and (directory / "ca-key.pem").exists():
        local = CertificateAuthority.load_or_create(directory)
        if local.fingerprint != shared.fingerprint:
            raise CertificateError(f"{directory} holds CA {local.fingerprint[:16]}..., but this cloud's "
                                   f"database holds CA {shared.fingerprint[:16]}...; move the directory "
                                   f"away to use the database's")
        return local
    shared.save(directory)
    return shared


@journaled
@dataclass(frozen=True, slots=True)
class CertificatesRevoked:
    """A host's certificates were revoked (a delta, as ``planner.deltas``): every server refuses them."""

    guid: str
    serials: tuple[str, ...]


class EnrollmentRefused(Exception):
    """Why an enrollment or renewal is refused; said to the agent."""


class Trust:
    """The running server's side of it: the CA, the agent port's TLS context, the revoked serials."""

    def __init__(self, db: Database, ca: CertificateAuthority, context: ssl.SSLContext, *,
                 strict: bool = True, validity_days: int = 365) -> None:
        self.db = db
        self.ca = ca
        self.context = context
        self.strict = strict
        self.validity = dt.timedelta(days=validity_days)
        self.revoked: set[str] = set()
        self.peer_server: ssl.SSLContext | None = None  # the peer port's TLS contexts (several servers)
        self.peer_client: ssl.SSLContext | None = None

    @classmethod
    def prepare(cls, db: Database, data_dir: Path, *, strict: bool, validity_days: int,
                bind: str = "", msid: int = 0, advertise: str = "") -> Trust:
        """Blocking set-up at start: the cloud's CA (made on the first start of the first server, and
        kept in the database for the others), this server's certificates for the agent port and the peer
        port (made anew each start), the revoked serials."""
        directory = data_dir / "ca"
        ca = shared_ca(db, directory)
        names = [socket.gethostname(), "localhost"]
        addresses = ["127.0.0.1", "::1"] + [a for a in (bind, advertise) if a and a not in ("0.0.0.0", "::")]
        key_pem, issued = ca.issue_server(names, addresses)
        trust = cls(db, ca, ca.server_context(key_pem, issued.pem, directory), strict=strict,
                    validity_days=validity_days)
        peer_key, peer_cert = ca.issue_peer(msid, names, addresses)
        trust.peer_server, trust.peer_client = ca.peer_contexts(peer_key, peer_cert.pem, directory)
        with db.engine.connect() as conn:
            trust.revoked = revoked_serials(conn)
        return trust

    def revoked_by_peer(self, _jid: int, deltas: list[object]) -> list[str]:
        """From the change journal: certificates a peer revoked are refused here too; the guids of their
        hosts (the caller closes those hosts' links)."""
        guids = []
        for d in deltas:
            if isinstance(d, CertificatesRevoked):
                self.revoked.update(d.serials)
                guids.append(d.guid)
        return guids

    # --- the handshake's look at a peer certificate ---------------------------------------------

    def peer_guid(self, der: bytes) -> str:
        """The guid a verified client certificate names; CertificateError when it is not one of ours
        or it is revoked."""
        cert = self.ca.issued_by_me(der)
        if format(cert.serial_number, "x") in self.revoked:
            raise CertificateError(f"certificate {cert.serial_number:x} of {guid_of(cert)!r} is revoked")
        guid = guid_of(cert)
        if not guid:
            raise CertificateError("the certificate names no host")
        return guid

    # --- issuing ---------------------------------------------------------------------------------

    def _sign(self, conn: Connection, guid: str, csr: str) -> Issued:
        try:
            issued = self.ca.sign_host(csr, guid, self.validity)
        except CertificateError as e:
            raise EnrollmentRefused(str(e)) from None
        _record(conn, guid, issued)
        return issued

    async def enroll(self, guid: str, token: str, csr: str) -> Issued:
        """A first certificate for ``guid`` against a registration token (one use of it)."""

        def work(conn: Connection) -> Issued:
            if _guid_taken(conn, guid):
                raise EnrollmentRefused(f"host {guid!r} exists and holds a valid certificate; delete the "
                                        f"host or use provisionCertificate")
            if not use_token(conn, token):
                raise EnrollmentRefused("the registration token is unknown, used up or expired")
            return self._sign(conn, guid, csr)

        return await self.db.run(work)

    async def renew(self, guid: str, csr: str) -> Issued:
        """A new certificate for a host that proved it holds a valid one (its live link's)."""
        return await self.db.run(self._sign, guid, csr)

    def issue_for(self, conn: Connection, guid: str) -> tuple[str, Issued]:
        """Key and certificate made here for a host run by this process (make run's simulated hosts)."""
        key, issued = self.ca.issue_host(guid, self.validity)
        _record(conn, guid, issued)
        return key, issued

    async def issue_many(self, guids: list[str]) -> dict[str, tuple[str, Issued]]:
        """``issue_for`` for many hosts in one transaction."""
        return await self.db.run(lambda conn: {g: self.issue_for(conn, g) for g in guids})

    async def token(self, *, uses: int = 1, validity: dt.timedelta = TOKEN_VALIDITY) -> Token:
        return await self.db.run(create_token, self.ca.fingerprint, uses=uses, validity=validity)

    async def revoke_host(self, guid: str) -> list[str]:
        serials = await self.db.run(revoke, guid)
        self.revoked.update(serials)
        return serials
