"""Shared fixtures: every codec-dependent test runs against the C codec and the Python reference; the
databases of the server tests: SQLite in a temporary directory, and PostgreSQL when its server binaries
are on the machine (a private cluster on a Unix socket, started and removed here)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from mgmt.db.database import Database, sqlite_url
from protocol.codec import Codec, get_codec

# Timing is for benchmarks, not pass/fail: on a loaded 2-core CI machine, neither the per-example
# deadline nor Hypothesis's "generation is slow" check says anything about correctness.
settings.register_profile("cumulo", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("cumulo")

CODECS = ("native", "python")


@pytest.fixture(params=CODECS)
def codec(request: pytest.FixtureRequest) -> Codec:
    return get_codec(request.param)


PG_BIN = next((d for d in ("/usr/local/bin", "/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin")
               if os.path.exists(f"{d}/pg_ctl") and os.path.exists(f"{d}/initdb")), None)


def _as_postgres(args: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the postgres user when we are root."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    if PG_BIN is None or (os.geteuid() == 0 and shutil.which("runuser") is None):
        pytest.skip("no PostgreSQL server binaries on this machine")
    # Not under pytest's temporary root: that is private to root, and postgres must reach its files.
    base = Path(tempfile.mkdtemp(prefix="cumulo-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(sock, "postgres")
    subprocess.run(_as_postgres([f"{PG_BIN}/initdb", "-D", str(data), "-U", "cumulo", "--auth=trust",
                                 "-E", "UTF8"]), check=True, capture_output=True)
    subprocess.run(_as_postgres([f"{PG_BIN}/pg_ctl", "-D", str(data), "-w", "-l", str(base / "log"), "-o",
                                 f"-c listen_addresses='' -k {sock} -c fsync=off", "start"]),
                   check=True, capture_output=True)
    try:
        yield f"postgresql://cumulo@/postgres?host={sock}"
    finally:
        subprocess.run(_as_postgres([f"{PG_BIN}/pg_ctl", "-D", str(data), "-m", "immediate", "stop"]),
                       capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A fresh, migrated database of each kind."""
    if request.param == "sqlite":
        db = Database(sqlite_url(tmp_path))
    else:
        url = request.getfixturevalue("postgres_url")
        db = Database(url)
        with db.engine.begin() as conn:  # a clean schema for every test
            conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    db.migrate()
    yield db
    db.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """A database URL for a whole server: "" (SQLite in its data directory) or an emptied PostgreSQL."""
    if request.param == "sqlite":
        return ""
    url: str = request.getfixturevalue("postgres_url")
    db = Database(url)
    with db.engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    db.dispose()
    return url
