"""Shared fixtures: every codec-dependent test runs against the C codec and the Python reference; the
databases of the server tests: SQLite in a temporary directory, and PostgreSQL when its server binaries
are on the machine (a private cluster on a Unix socket, started and removed here)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from benchmarks import postgres
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


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    if not postgres.available():
        if os.environ.get("CUMULO_POSTGRES") == "1":  # make test: PostgreSQL must be there
            pytest.fail("CUMULO_POSTGRES=1 but no PostgreSQL server binaries (pg_ctl, initdb) were found")
        pytest.skip("no PostgreSQL server binaries on this machine")
    with postgres.private_postgres(fsync=False) as url:
        yield url


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
