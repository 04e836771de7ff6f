"""The agent's credentials for the TLS link: its own key, its certificate from the cloud's CA, and the
CA's certificate, in a directory of its own (``STATE_DIR/tls``: the key mode 0600, files replaced by
rename so a crash never leaves half of one).

The key is made here and never leaves the host: the management server gets a CSR. A host gets its
first certificate by enrolling with a registration token ``SECRET.FINGERPRINT``: it first fetches the
CA's certificate and checks it against the fingerprint (so the secret only goes to the cloud it was
made for), then sends the token and its CSR over TLS verified against that CA. It renews the
certificate over its live connection once two thirds of its validity have passed, and installs a new
one when the server provisions it (``provisionCertificate``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .files import write_atomically

KEY, CERT, CA = "key.pem", "cert.pem", "ca.pem"


def _write(path: Path, data: str, mode: int) -> None:
    write_atomically(path, data.encode(), mode)


def fingerprint_matches(token: str, ca_pem: str) -> bool:
    """Whether ``ca_pem`` is the CA certificate the token pins (SHA-256 of its DER; constant time)."""
    want = token.partition(".")[2]
    try:
        cert = x509.load_pem_x509_certificate(ca_pem.encode())
    except ValueError:
        return False
    have = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    return bool(want) and hmac.compare_digest(want.lower(), have)


def insecure_context() -> ssl.SSLContext:
    """For fetching the CA certificate only: nothing secret is sent on it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def verifying_context(ca_pem: str) -> ssl.SSLContext:
    """Trusts the cloud's CA alone, and only a server certificate from it (OpenSSL checks the
    serverAuth purpose, which host certificates lack). The server is not checked by name: agents reach
    management servers by address, and only management servers hold serverAuth certificates."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=ca_pem)
    return context


class Credentials:
    """An agent's key, certificate and CA certificate in ``directory``."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self._context: ssl.SSLContext | None = None
        self._pending_key: str = ""  # made for a CSR whose certificate has not come yet
        self.not_before: dt.datetime | None = None
        self.not_after: dt.datetime | None = None
        if self.has_certificate:
            self._read_validity()

    @classmethod
    def store(cls, directory: Path | str, key_pem: str, cert_pem: str, ca_pem: str) -> Credentials:
        """Credentials made elsewhere (a host in the server's own process, provisioned by its CA)."""
        path = Path(directory)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write(path / KEY, key_pem, 0o600)
        _write(path / CERT, cert_pem, 0o644)
        _write(path / CA, ca_pem, 0o644)
        return cls(path)

    @property
    def has_certificate(self) -> bool:
        return all((self.directory / name).exists() for name in (KEY, CERT, CA))

    def _read_validity(self) -> None:
        cert = x509.load_pem_x509_certificate((self.directory / CERT).read_bytes())
        self.not_before, self.not_after = cert.not_valid_before_utc, cert.not_valid_after_utc

    def ca_pem(self) -> str:
        return (self.directory / CA).read_text()

    def context(self) -> ssl.SSLContext:
        """The client context: this host's certificate, and the CA's checking the server's."""
        if self._context is None:
            context = verifying_context(self.ca_pem())
            context.load_cert_chain(self.directory / CERT, self.directory / KEY)
            self._context = context
        return self._context

    def new_request(self, guid: str) -> str:
        """A new key (kept until its certificate comes) and a CSR for it, in PEM."""
        key = ec.generate_private_key(ec.SECP256R1())
        self._pending_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()).decode()
        csr = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, guid)]))
               .sign(key, hashes.SHA256()))
        return csr.public_bytes(serialization.Encoding.PEM).decode()

    def install(self, cert_pem: str, ca_pem: str) -> None:
        """Keep the certificate for the pending key (checked to belong to it) and the CA's."""
        if not self._pending_key:
            raise ValueError("no key is waiting for a certificate")
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
        key = serialization.load_pem_private_key(self._pending_key.encode(), password=None)
        if cert.public_key().public_numbers() != key.public_key().public_numbers():  # type: ignore[union-attr]
            raise ValueError("the certificate is not for this host's key")
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write(self.directory / KEY, self._pending_key, 0o600)
        _write(self.directory / CERT, cert_pem, 0o644)
        _write(self.directory / CA, ca_pem, 0o644)
        self._pending_key = ""
        self._context = None
        self._read_validity()

    def renew_at(self) -> dt.datetime | None:
        """When to ask for a new certificate: two thirds into this one's validity."""
        if self.not_before is None or self.not_after is None:
            return None
        return self.not_before + (self.not_after - self.not_before) * 2 / 3
