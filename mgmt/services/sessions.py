"""Login sessions, kept in the database so that every management server knows them: a client whose
server died goes on with another one under the same session.

Only SHA-256 hashes of the JSESSIONID and of the session key are stored. A session ends at logout, or
after ``timeout`` seconds unused; its last use is written at most once a minute (not per request), so
the timeout is good to that minute. The caller is read afresh from its user at each request: a user or
account disabled since the login is refused at once.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..db.database import Database
from ..db.schema import login_sessions, users
from .accounts import _caller, _caller_query
from .caller import Caller

TOUCH_SECONDS = 60.0  # a session's last use is written at most this often


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(stamp: datetime) -> datetime:
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)  # SQLite keeps no offset


@dataclass(frozen=True)
class Session:
    jsessionid: str
    key: str
    caller: Caller


def _open(conn: Connection, user_id: int, timeout: float) -> tuple[str, str]:
    now = _now()
    conn.execute(login_sessions.delete().where(login_sessions.c.last_used < now - timedelta(seconds=timeout)))
    jsessionid, key = secrets.token_hex(16).upper(), secrets.token_urlsafe(20)
    conn.execute(login_sessions.insert().values(id=_hash(jsessionid), key_hash=_hash(key), user_id=user_id,
                                                created=now, last_used=now))
    return jsessionid, key


def _find(conn: Connection, jsessionid: str, key: str, timeout: float) -> tuple[Caller, bool] | None:
    """The session's caller, and whether its last use is due to be written."""
    row = conn.execute(sa.select(login_sessions).where(login_sessions.c.id == _hash(jsessionid))).first()
    if row is None or not secrets.compare_digest(_hash(key), row.key_hash):
        return None
    age = (_now() - _aware(row.last_used)).total_seconds()
    if age > timeout:
        return None
    user = conn.execute(_caller_query().where(users.c.id == row.user_id)).first()
    if user is None:
        return None
    return _caller(user), age > TOUCH_SECONDS


def _touch(conn: Connection, jsessionid: str) -> None:
    conn.execute(login_sessions.update().where(login_sessions.c.id == _hash(jsessionid))
                 .values(last_used=_now()))


def _close(conn: Connection, jsessionid: str) -> None:
    conn.execute(login_sessions.delete().where(login_sessions.c.id == _hash(jsessionid)))


class Sessions:
    def __init__(self, db: Database, timeout: float) -> None:
        self.db = db
        self.timeout = timeout

    async def open(self, caller: Caller) -> Session:
        jsessionid, key = await self.db.run(_open, caller.user_id, self.timeout)
        return Session(jsessionid, key, caller)

    async def find(self, jsessionid: str, key: str) -> Caller | None:
        if not jsessionid or not key or len(jsessionid) > 128 or len(key) > 128:
            return None
        found = await self.db.read(_find, jsessionid, key, self.timeout)
        if found is None:
            return None
        caller, stale = found
        if stale:
            await self.db.run(_touch, jsessionid)
        return caller

    async def close(self, jsessionid: str) -> None:
        if jsessionid and len(jsessionid) <= 128:
            await self.db.run(_close, jsessionid)
