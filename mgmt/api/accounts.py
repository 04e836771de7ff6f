"""Domains, accounts and users; the admin made on first start, with its keys written for the operator."""

from __future__ import annotations

import json
import os
import secrets
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..db.database import inserted_id
from ..db.schema import accounts, domains, users
from ..services.caller import ROOT_ADMIN, USER, Caller
from .passwords import hash_password

__all__ = ["ROOT_ADMIN", "USER", "Caller", "ensure_admin"]

def ensure_admin(conn: Connection, credentials: Path, api_url: str) -> bool:
    """Create the ROOT domain and the admin account and user once, writing their API keys (and password)
    to ``credentials`` (mode 0600). False when the admin existed already."""
    if conn.scalar(sa.select(users.c.id).where(users.c.username == "admin")) is not None:
        return False
    now = datetime.now(UTC)
    domain_id = conn.scalar(sa.select(domains.c.id).where(domains.c.path == "/"))
    if domain_id is None:
        domain_id = inserted_id(conn.execute(
            domains.insert().values(uuid=str(uuid.uuid4()), name="ROOT", path="/", created=now)
        ))
    account_id = inserted_id(conn.execute(
        accounts.insert().values(
            uuid=str(uuid.uuid4()),
            name="admin",
            domain_id=domain_id,
            type=ROOT_ADMIN,
            state="enabled",
            created=now,
        )
    ))
    api_key, secret_key, password = (
        secrets.token_urlsafe(32),
        secrets.token_urlsafe(32),
        secrets.token_urlsafe(12),
    )
    conn.execute(
        users.insert().values(
            uuid=str(uuid.uuid4()),
            account_id=account_id,
            username="admin",
            password=hash_password(password),
            api_key=api_key,
            secret_key=secret_key,
            state="enabled",
            created=now,
        )
    )
    tmp = credentials.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(
            {
                "url": api_url,
                "apikey": api_key,
                "secretkey": secret_key,
                "username": "admin",
                "password": password,
            },
            f,
        )
    os.replace(tmp, credentials)
    return True


def _caller_query() -> sa.Select[Any]:
    return (
        sa.select(
            users.c.id,
            users.c.uuid,
            users.c.username,
            users.c.password,
            users.c.account_id,
            users.c.secret_key,
            accounts.c.type,
            accounts.c.name.label("account_name"),
            accounts.c.uuid.label("account_uuid"),
            domains.c.id.label("domain_id"),
            domains.c.uuid.label("domain_uuid"),
            domains.c.name.label("domain_name"),
            domains.c.path.label("domain_path"),
        )
        .join(accounts, accounts.c.id == users.c.account_id)
        .join(domains, domains.c.id == accounts.c.domain_id)
        .where(
            users.c.state == "enabled",
            users.c.removed.is_(None),
            accounts.c.state == "enabled",
            accounts.c.removed.is_(None),
        )
    )


def _caller(row: Any) -> Caller:
    return Caller(
        row.id,
        row.account_id,
        row.type,
        row.secret_key or "",
        row.username,
        row.uuid,
        row.account_name,
        row.account_uuid,
        row.domain_id,
        row.domain_uuid,
        row.domain_name,
    )


def caller_by_key(conn: Connection, api_key: str) -> Caller | None:
    row = conn.execute(_caller_query().where(users.c.api_key == api_key)).first()
    if row is None or not row.secret_key:
        return None
    return _caller(row)


def login_candidate(conn: Connection, username: str, domain: str) -> tuple[Caller, str] | None:
    """The enabled user of that name in the domain named by its path (``/`` is ROOT) or id, with its
    password hash to check; None when there is none (the caller does not say which part was wrong)."""
    path = "/" + domain.strip("/") + ("/" if domain.strip("/") else "")
    row = conn.execute(
        _caller_query().where(
            users.c.username == username, sa.or_(domains.c.path == path, domains.c.uuid == domain)
        )
    ).first()
    return None if row is None else (_caller(row), row.password)
