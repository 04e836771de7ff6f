"""The database: engine, migrations at start-up, and blocking work kept off the event loop.

SQLite (the embedded default, in WAL mode, in the data directory) or PostgreSQL (psycopg 3) when
several management servers share one database. Nothing here runs on the event loop: writes go through
``Database.run`` to the one writer thread (``db.writer``: group commit), reads through ``Database.read``
to worker threads under a bounded limiter.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import sqlalchemy as sa
import trio
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from .writer import DELTAS, Writer

__all__ = ["DELTAS", "Database", "sqlite_url"]

MIGRATIONS = Path(__file__).parent / "migrations"
P = ParamSpec("P")
T = TypeVar("T")


def sqlite_url(data_dir: str | Path) -> str:
    return f"sqlite:///{Path(data_dir).resolve() / 'cumulo.db'}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The sqlite3 module would open transactions itself, and only before the first write, so a read
    # followed by a write would not be one transaction. Take that over (see _sqlite_begin).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; safe with WAL
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # IMMEDIATE: the transaction takes the write lock at its start (waiting up to busy_timeout), so what
    # it reads stays true until it commits; SQLite has one writer at a time anyway. A read-only one
    # (Database.read) begins deferred: in WAL mode it reads a snapshot and never waits for the writer.
    read_only = conn.get_execution_options().get("cumulo_read_only", False)
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


class Database:
    """One engine and the limiter every database call goes through."""

    def __init__(self, url: str, *, threads: int = 8) -> None:
        self.url = url
        if url.startswith("postgresql:"):
            url = "postgresql+psycopg:" + url.removeprefix("postgresql:")
        # Pooled connections for every worker thread (SQLite's default pool closed the extra ones after
        # each use, and each new one ran the PRAGMAs again).
        self.engine: Engine = (
            sa.create_engine(url, pool_size=threads, max_overflow=0, pool_pre_ping=True)
            if not url.startswith("sqlite")
            else sa.create_engine(url, poolclass=sa.pool.QueuePool, pool_size=threads, max_overflow=threads)
        )
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            sa.event.listen(self.engine, "begin", _sqlite_begin)
        # The reading threads (writes have the writer's one thread).
        self.limiter = trio.CapacityLimiter(threads)
        # The commit sequence: a transaction that recorded capacity deltas (planner.deltas) takes the
        # next number before it commits; listeners get (number, deltas) after the commit.
        self._seq = 0
        self._seq_lock = threading.Lock()
        self.commit_listeners: list[Callable[[int, list[Any]], None]] = []
        # Several servers (``cluster``): this server's id, under which its transactions' deltas go to the
        # change journal; None: one server, no journal. Listeners of the deltas peers committed get
        # (journal row id, deltas), on the event loop.
        self.journal_msid: int | None = None
        self.remote_listeners: list[Callable[[int, list[Any]], None]] = []
        self.writer = Writer(self)  # the only path that writes (see db.writer)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def run(self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(connection, ...)`` as (part of) one write transaction on the writer's thread; it
        commits unless ``fn`` raises, and what ``fn`` wrote is committed when this returns."""
        result: T = await self.writer.submit(fn, *args, **kwargs)
        return result

    def _next_seq(self) -> int:
        with self._seq_lock:
            self._seq += 1
            return self._seq

    async def snapshot(self, fn: Callable[Concatenate[Connection, P], T], *args: P.args,
                       **kwargs: P.kwargs) -> tuple[int, T]:
        """Read with ``fn`` and say which commits the read saw: ``(seq, result)``, where the result
        reflects exactly the transactions numbered up to ``seq``. On SQLite the read holds the write
        lock (writers number themselves under it, so none can commit in between); on PostgreSQL the
        number is approximate, and the database's conditional reservations stay the arbiter."""

        def work() -> tuple[int, T]:
            with self.engine.connect() as conn, conn.begin():
                if self.engine.dialect.name == "postgresql":  # one snapshot for every statement of fn
                    conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                with self._seq_lock:
                    seq = self._seq
                return seq, fn(conn, *args, **kwargs)

        return await trio.to_thread.run_sync(work, limiter=self.limiter)

    async def read(self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Like ``run`` for work that only reads: one snapshot, without taking SQLite's write lock."""

        def work() -> T:
            with self.engine.connect() as conn:
                conn.execution_options(cumulo_read_only=True)
                with conn.begin():
                    return fn(conn, *args, **kwargs)

        return await trio.to_thread.run_sync(work, limiter=self.limiter)

    # --- migrations ------------------------------------------------------------------------------

    def alembic_config(self, connection: Connection) -> Config:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        return config

    def migrate(self) -> str:
        """Bring the schema to the newest revision (blocking; call at start-up); returns it.

        On SQLite a migration that changes a table's constraints rebuilds the table (batch mode: copy,
        drop, rename), which foreign keys from other tables' rows would refuse; they are switched off
        for the migration (only possible outside a transaction) and checked whole before it commits."""
        sqlite = self.engine.dialect.name == "sqlite"
        with self.engine.connect() as conn:
            raw = conn.connection.dbapi_connection  # (its PRAGMAs run outside the transaction begun below)
            assert raw is not None
            if sqlite:
                raw.execute("PRAGMA foreign_keys=OFF")
            try:
                with conn.begin():
                    command.upgrade(self.alembic_config(conn), "head")
                    if sqlite:
                        broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                        if broken:
                            raise RuntimeError(f"the migration left rows without their parents: {broken[:5]}")
                    return self.revision(conn) or ""
            finally:
                if sqlite:
                    raw.execute("PRAGMA foreign_keys=ON")

    def revision(self, conn: Connection) -> str | None:
        return MigrationContext.configure(conn).get_current_revision()

    def knows(self, revision: str) -> bool:
        """Whether ``revision`` is one of this code's migrations."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        try:
            return ScriptDirectory.from_config(config).get_revision(revision) is not None
        except Exception:  # alembic's "no such revision" (its exception types vary between releases)
            return False

    def head(self) -> str:
        with self.engine.connect() as conn:
            head = ScriptDirectory.from_config(self.alembic_config(conn)).get_current_head()
        return head or ""

    def dispose(self) -> None:
        self.writer.close()
        self.engine.dispose()


def inserted_id(result: sa.CursorResult[Any]) -> int:
    """The primary key of the row an INSERT made."""
    key = result.inserted_primary_key
    assert key is not None, "not the result of an INSERT"
    return int(key[0])
