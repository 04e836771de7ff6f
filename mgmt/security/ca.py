"""The cloud's own certificate authority (CloudStack 4.11's root CA provider is the model).

Made on the first start in ``DATA_DIR/ca/`` with ``cryptography``: an ECDSA P-256 key (mode 0600,
written through a temporary file and a rename, so a crash never leaves half a key) and a self-signed
certificate valid for ten years. It issues two kinds of certificate:

- a host's, for the agent link's client side: subject CN = the host's guid (the identity the server
  binds the connection to), extended key usage clientAuth only, signed from the agent's own CSR (the
  agent's key never leaves the host);
- the management server's, for the agent port's server side: extended key usage serverAuth only, with
  the server's names and addresses. Agents check that the server's certificate chains to the CA and is
  a server certificate, so a host's certificate cannot be used to pose as a management server.

ECDSA P-256 rather than RSA: a handshake's signature costs tens of microseconds instead of about a
millisecond, which matters when ten thousand agents reconnect at once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import secrets
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALIDITY = dt.timedelta(days=3650)
SERVER_VALIDITY = dt.timedelta(days=365)
PEER_UNIT = "management-server"  # the organizational unit of peer certificates
MAX_CSR = 16 * 1024  # bytes of PEM: a P-256 or RSA-4096 CSR is far smaller


class CertificateError(ValueError):
    """A CSR or certificate that cannot be accepted; the message says why."""


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the certificate's DER, in hex: what a registration token pins."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def guid_of(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


@dataclass(frozen=True)
class Issued:
    """A certificate the CA signed: its PEM, serial (hex) and end of validity."""

    pem: str
    serial: str
    not_after: dt.datetime


class CertificateAuthority:
    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        self.key = key
        self.cert = cert
        self.pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        self.fingerprint = fingerprint(cert)

    @classmethod
    def from_pem(cls, key_pem: str, cert_pem: str) -> CertificateAuthority:
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CertificateError("the CA key is not an EC private key")
        return cls(key, x509.load_pem_x509_certificate(cert_pem.encode()))

    @property
    def key_pem(self) -> str:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()).decode()

    def save(self, directory: Path) -> None:
        """Write this CA into ``directory`` (key first, as ``load_or_create`` expects)."""
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_private(directory / "ca-key.pem", self.key_pem.encode())
        _write_private(directory / "ca-cert.pem", self.pem.encode(), 0o644)

    # --- on disk ---------------------------------------------------------------------------------

    @classmethod
    def load_or_create(cls, directory: Path) -> CertificateAuthority:
        """The CA in ``directory`` (``ca-key.pem``, ``ca-cert.pem``), made there on first use."""
        key_path, cert_path = directory / "ca-key.pem", directory / "ca-cert.pem"
        if key_path.exists() and cert_path.exists():
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise CertificateError(f"{key_path}: not an EC private key")
            return cls(key, x509.load_pem_x509_certificate(cert_path.read_bytes()))
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Cumulo"),
                          x509.NameAttribute(NameOID.COMMON_NAME, f"Cumulo CA {secrets.token_hex(4)}")])
        now = _now()
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + CA_VALIDITY)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False,
                                             key_agreement=False, key_cert_sign=True, crl_sign=True,
                                             encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        # The key first: a certificate without its key would be taken for a whole CA on the next start.
        _write_private(key_path, key.private_bytes(serialization.Encoding.PEM,
                                                   serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
        _write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        return cls(key, cert)

    # --- issuing ---------------------------------------------------------------------------------

    def _builder(self, subject: x509.Name, public_key: ec.EllipticCurvePublicKey | object,
                 validity: dt.timedelta) -> x509.CertificateBuilder:
        now = _now()
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(self.cert.subject)
                .public_key(public_key)  # type: ignore[arg-type]
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + validity)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                               critical=False))

    def sign_host(self, csr_pem: str, guid: str, validity: dt.timedelta) -> Issued:
        """A host certificate for ``guid`` from the agent's CSR (whatever subject the CSR asks for)."""
        if len(csr_pem) > MAX_CSR:
            raise CertificateError(f"the CSR is {len(csr_pem)} bytes (at most {MAX_CSR})")
        try:
            csr = x509.load_pem_x509_csr(csr_pem.encode())
        except ValueError as e:
            raise CertificateError(f"not a PEM certificate request: {e}") from None
        if not csr.is_signature_valid:
            raise CertificateError("the CSR's signature does not match its key")
        key = csr.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey) and not _strong_rsa(key):
            raise CertificateError("the CSR's key must be EC (P-256 or larger) or RSA of 2048 bits or more")
        if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.key_size < 256:
            raise CertificateError("the CSR's EC key is smaller than P-256")
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, guid)])
        cert = (self._builder(subject, key, validity)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False,
                                             key_agreement=False, key_cert_sign=False, crl_sign=False,
                                             encipher_only=False, decipher_only=False), critical=True)
                .sign(self.key, hashes.SHA256()))
        return _issued(cert)

    def issue_server(self, names: list[str], addresses: list[str]) -> tuple[str, Issued]:
        """A key (PEM) and a serverAuth certificate for the agent port of this management server."""
        key = ec.generate_private_key(ec.SECP256R1())
        alt = _alt_names(names, addresses)
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Cumulo"),
                             x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names else "cumulo-mgmt")])
        builder = (self._builder(subject, key.public_key(), SERVER_VALIDITY)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
        if alt:
            builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()).decode(), _issued(cert)

    def issue_peer(self, msid: int, names: list[str], addresses: list[str]) -> tuple[str, Issued]:
        """A key and a certificate for this management server's peer port, good for both ends of a
        peer link (serverAuth and clientAuth). Its subject carries the ``PEER_UNIT`` organizational
        unit, which no host certificate has (``sign_host`` makes their subject itself)."""
        key = ec.generate_private_key(ec.SECP256R1())
        alt = _alt_names(names, addresses)
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Cumulo"),
                             x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, PEER_UNIT),
                             x509.NameAttribute(NameOID.COMMON_NAME, str(msid))])
        builder = (self._builder(subject, key.public_key(), SERVER_VALIDITY)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                         ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
        if alt:
            builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()).decode(), _issued(cert)

    def peer_msid(self, der: bytes) -> int:
        """The management server id a verified peer certificate names; CertificateError when it is not a
        peer certificate of this CA (a host's, say)."""
        cert = self.issued_by_me(der)
        units = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if [u.value for u in units] != [PEER_UNIT] or len(names) != 1 or not str(names[0].value).isdigit():
            raise CertificateError("not a management server's certificate")
        return int(str(names[0].value))

    def peer_contexts(self, key_pem: str, cert_pem: str, directory: Path) -> tuple[ssl.SSLContext,
                                                                                    ssl.SSLContext]:
        """TLS 1.3 contexts for the peer port, (server side, client side): each end shows its peer
        certificate and requires the other's, from this CA. Host names are not checked: the caller reads
        the server id from the certificate (``peer_msid``) and compares it with the one it dialled."""
        key_path, cert_path = directory / "peer-port-key.pem", directory / "peer-port-cert.pem"
        _write_private(key_path, key_pem.encode())
        _write_private(cert_path, (cert_pem + self.pem).encode(), 0o644)
        contexts = []
        for purpose in (ssl.PROTOCOL_TLS_SERVER, ssl.PROTOCOL_TLS_CLIENT):
            context = ssl.SSLContext(purpose)
            context.minimum_version = ssl.TLSVersion.TLSv1_3
            context.load_cert_chain(cert_path, key_path)
            context.load_verify_locations(cadata=self.pem)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_REQUIRED
            contexts.append(context)
        return contexts[0], contexts[1]

    def issue_host(self, guid: str, validity: dt.timedelta) -> tuple[str, Issued]:
        """Key and certificate made here for a host (simulated hosts in this process; tests)."""
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, guid)]))
               .sign(key, hashes.SHA256()))
        issued = self.sign_host(csr.public_bytes(serialization.Encoding.PEM).decode(), guid, validity)
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()).decode(), issued

    # --- checking --------------------------------------------------------------------------------

    def issued_by_me(self, der: bytes) -> x509.Certificate:
        """The peer certificate (DER) if this CA signed it; the TLS layer has checked it already, this
        is the second look that reads the guid and serial."""
        cert = x509.load_der_x509_certificate(der)
        try:
            cert.verify_directly_issued_by(self.cert)
        except (ValueError, TypeError, InvalidSignature) as e:
            raise CertificateError(f"not issued by this cloud's CA: {e}") from None
        return cert

    def server_context(self, key_pem: str, cert_pem: str, directory: Path) -> ssl.SSLContext:
        """TLS 1.3 for the agent port: the server's certificate; a client certificate checked when
        one is sent (an agent enrolling has none yet; what it may do then is the agent manager's
        decision)."""
        key_path, cert_path = directory / "agent-port-key.pem", directory / "agent-port-cert.pem"
        _write_private(key_path, key_pem.encode())
        _write_private(cert_path, (cert_pem + self.pem).encode(), 0o644)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.load_cert_chain(cert_path, key_path)
        context.load_verify_locations(cadata=self.pem)
        context.verify_mode = ssl.CERT_OPTIONAL
        return context


def _alt_names(names: list[str], addresses: list[str]) -> list[x509.GeneralName]:
    """Subject alternative names: the DNS names, and the addresses that are IP addresses."""
    alt: list[x509.GeneralName] = [x509.DNSName(n) for n in dict.fromkeys(names) if n]
    for address in dict.fromkeys(addresses):
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(address)))
        except ValueError:
            continue
    return alt


def _strong_rsa(key: object) -> bool:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048


def _issued(cert: x509.Certificate) -> Issued:
    return Issued(cert.public_bytes(serialization.Encoding.PEM).decode(), format(cert.serial_number, "x"),
                  cert.not_valid_after_utc)
