"""What a guest learns about itself at boot besides its disks: SSH key pairs and user data.

Key pairs belong to an account and are named; a VM gets copies of their public keys when it is deployed
(or its keys are reset), so deleting a key pair later changes no VM. Made key pairs (createSSHKeyPair)
show their private key once; it is not kept. User data is Base64 as the caller gives it, at most
``MAX_USER_DATA`` bytes decoded, given inline to a VM or registered by name (CloudStack 4.18's
registerUserData) for deploys to name by id.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import trio
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ..db.database import inserted_id
from ..db.schema import accounts, domains, ssh_keypairs, user_data, vms
from ..errors import InvalidParameter, ResourceInUse
from .caller import Caller
from .crud import Filters, Row
from .queries import acting_for, fetch, find, keyword, matching, new_uuid, now, owner_filter

if TYPE_CHECKING:
    from ..db.database import Database

MAX_USER_DATA = 32768  # bytes, decoded (CloudStack's default for POST)
MAX_PUBLIC_KEY = 16384  # characters: an RSA key of 16384 bits is about 2,800


# --- values --------------------------------------------------------------------------------------------


def check_user_data(text: str) -> str:
    """User data as the API takes it: Base64 of at most MAX_USER_DATA bytes; returned as given."""
    try:
        decoded = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidParameter("userdata must be Base64") from None
    if len(decoded) > MAX_USER_DATA:
        raise InvalidParameter(f"userdata may be at most {MAX_USER_DATA // 1024} KB once decoded")
    return text


def public_key(text: str) -> tuple[str, str]:
    """An OpenSSH public key line, checked by parsing it: (the line as kept: type, key and comment, one
    line; its fingerprint). Raises InvalidParameter for anything else (a private key included)."""
    line = " ".join(text.split())  # one line, single spaces (keys pasted from files end in newlines)
    if not line or len(line) > MAX_PUBLIC_KEY:
        raise InvalidParameter("publickey must be an OpenSSH public key (ssh-rsa AAAA... comment)")
    try:
        serialization.load_ssh_public_key(line.encode())
    except (ValueError, UnsupportedAlgorithm):
        raise InvalidParameter("publickey is not a valid OpenSSH public key") from None
    return line, fingerprint(line)


def fingerprint(line: str) -> str:
    """CloudStack's fingerprint of a public key: MD5 of the key's blob, colon-separated hex."""
    digest = hashlib.md5(base64.b64decode(line.split()[1]), usedforsecurity=False).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def new_keypair() -> tuple[str, str]:
    """A new RSA 2048 key pair, as CloudStack makes them: (private key PEM, public key line)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public.decode()


# --- key pairs -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyPair:
    row: Row  # with account_name, domain_uuid, domain_name
    private_key: str = ""  # only when it was just made


def _keypair_query() -> sa.Select[Any]:
    return (
        sa.select(ssh_keypairs, accounts.c.name.label("account_name"),
                  domains.c.uuid.label("domain_uuid"), domains.c.name.label("domain_name"))
        .join(accounts, accounts.c.id == ssh_keypairs.c.account_id)
        .join(domains, domains.c.id == accounts.c.domain_id)
    )


def _list_keypairs(conn: Connection, caller: Caller, args: Filters) -> tuple[list[Row], int]:
    where = [*owner_filter(conn, caller, args, ssh_keypairs.c.account_id),
             *keyword(ssh_keypairs.c.name, args)]
    where += matching(args, {"id": ssh_keypairs.c.uuid, "name": ssh_keypairs.c.name,
                             "fingerprint": ssh_keypairs.c.fingerprint})
    return fetch(conn, _keypair_query().where(*where), ssh_keypairs.c.id, args)


def _add_keypair(conn: Connection, caller: Caller, name: str, line: str, print_: str, account: str,
                 domain: str, project: str = "") -> Row:
    account_id = acting_for(conn, caller, account, domain, project)
    taken = conn.execute(
        sa.select(ssh_keypairs.c.name, ssh_keypairs.c.fingerprint).where(
            ssh_keypairs.c.account_id == account_id,
            sa.or_(ssh_keypairs.c.name == name, ssh_keypairs.c.fingerprint == print_),
        )
    ).first()
    if taken is not None:
        if taken.name == name:
            raise InvalidParameter(f"a key pair named {name!r} exists already")
        raise InvalidParameter(f"this public key is registered already, as key pair {taken.name!r}")
    try:
        with conn.begin_nested():
            keypair_id = inserted_id(conn.execute(ssh_keypairs.insert().values(
                uuid=new_uuid(), name=name, account_id=account_id, public_key=line, fingerprint=print_,
                created=now(),
            )))
    except IntegrityError:  # another request registered the same name or key meanwhile
        raise InvalidParameter(f"a key pair named {name!r} or with this key exists already") from None
    return conn.execute(_keypair_query().where(ssh_keypairs.c.id == keypair_id)).one()


def _named_keypair(conn: Connection, account_id: int, name: str) -> Row:
    row = conn.execute(
        sa.select(ssh_keypairs).where(ssh_keypairs.c.account_id == account_id, ssh_keypairs.c.name == name)
    ).first()
    if row is None:
        raise InvalidParameter(f"unable to find SSH key pair {name!r} (listSSHKeyPairs)")
    return row


def _delete_keypair(conn: Connection, caller: Caller, name: str, account: str, domain: str,
                    project: str = "") -> None:
    row = _named_keypair(conn, acting_for(conn, caller, account, domain, project), name)
    conn.execute(ssh_keypairs.delete().where(ssh_keypairs.c.id == row.id))


def keys_for(conn: Connection, account_id: int, names: list[str]) -> tuple[str, str]:
    """A VM's key pairs, by name in its account: (the names, comma-separated; the public keys, one per
    line). Raises InvalidParameter for a name the account has not."""
    names = list(dict.fromkeys(n for n in names if n))
    rows = [_named_keypair(conn, account_id, name) for name in names]
    return ",".join(r.name for r in rows), "\n".join(r.public_key for r in rows)


class SshKeyPairs:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def matching(self, caller: Caller, args: Filters) -> tuple[list[Row], int]:
        return await self.db.read(_list_keypairs, caller, args)

    async def register(self, caller: Caller, name: str, key: str, *, account: str = "",
                       domain: str = "", project: str = "") -> KeyPair:
        line, print_ = public_key(key)
        return KeyPair(await self.db.run(_add_keypair, caller, _name(name), line, print_, account, domain,
                                         project))

    async def create(self, caller: Caller, name: str, *, account: str = "", domain: str = "",
                     project: str = "") -> KeyPair:
        """A new key pair: its private key is in the answer and nowhere else."""
        private, line = await trio.to_thread.run_sync(new_keypair)
        row = await self.db.run(_add_keypair, caller, _name(name), line, fingerprint(line), account, domain,
                                project)
        return KeyPair(row, private)

    async def delete(self, caller: Caller, name: str, *, account: str = "", domain: str = "",
                     project: str = "") -> None:
        await self.db.run(_delete_keypair, caller, name, account, domain, project)


def _name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 255:
        raise InvalidParameter("name must be 1 to 255 characters")
    return name


# --- registered user data --------------------------------------------------------------------------------


def _user_data_query() -> sa.Select[Any]:
    return (
        sa.select(user_data, accounts.c.name.label("account_name"), accounts.c.uuid.label("account_uuid"),
                  domains.c.uuid.label("domain_uuid"), domains.c.name.label("domain_name"))
        .join(accounts, accounts.c.id == user_data.c.account_id)
        .join(domains, domains.c.id == accounts.c.domain_id)
    )


def _list_user_data(conn: Connection, caller: Caller, args: Filters) -> tuple[list[Row], int]:
    where = [*owner_filter(conn, caller, args, user_data.c.account_id), *keyword(user_data.c.name, args)]
    where += matching(args, {"id": user_data.c.uuid, "name": user_data.c.name})
    return fetch(conn, _user_data_query().where(*where), user_data.c.id, args)


def _register_user_data(conn: Connection, caller: Caller, name: str, text: str, params: str, account: str,
                        domain: str, project: str = "") -> Row:
    account_id = acting_for(conn, caller, account, domain, project)
    try:
        with conn.begin_nested():
            new_id = inserted_id(conn.execute(user_data.insert().values(
                uuid=new_uuid(), name=name, account_id=account_id, user_data=text, params=params,
                created=now(),
            )))
    except IntegrityError:
        raise InvalidParameter(f"user data named {name!r} exists already") from None
    return conn.execute(_user_data_query().where(user_data.c.id == new_id)).one()


def owned_user_data(conn: Connection, caller: Caller, ident: str, account_id: int) -> Row:
    """Registered user data by id, for a VM of ``account_id``."""
    row = find(conn, caller, user_data, ident, "user data", owned=True)
    if row.account_id != account_id:
        raise InvalidParameter(f"user data {ident} belongs to another account")
    return row


def _delete_user_data(conn: Connection, caller: Caller, ident: str) -> Row:
    row = find(conn, caller, user_data, ident, "user data", owned=True)
    users = conn.scalar(
        sa.select(sa.func.count()).select_from(vms)
        .where(vms.c.user_data_id == row.id, vms.c.removed.is_(None))
    )
    if users:
        raise ResourceInUse(f"user data {row.name} is in use by {users} VM(s)")
    conn.execute(vms.update().where(vms.c.user_data_id == row.id).values(user_data_id=None))  # expunged ones
    conn.execute(user_data.delete().where(user_data.c.id == row.id))
    return row


class UserData:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def matching(self, caller: Caller, args: Filters) -> tuple[list[Row], int]:
        return await self.db.read(_list_user_data, caller, args)

    async def register(self, caller: Caller, name: str, text: str, params: str = "", *, account: str = "",
                       domain: str = "", project: str = "") -> Row:
        return await self.db.run(_register_user_data, caller, _name(name), check_user_data(text),
                                 _params(params), account, domain, project)

    async def delete(self, caller: Caller, ident: str) -> Row:
        """Delete registered user data no live VM uses; its row."""
        return await self.db.run(_delete_user_data, caller, ident)


def _params(params: str) -> str:
    names = [p.strip() for p in params.split(",") if p.strip()]
    if len(",".join(names)) > 4096:
        raise InvalidParameter("params may be at most 4096 characters")
    return ",".join(names)
