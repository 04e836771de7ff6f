"""A private PostgreSQL server for a benchmark or a test run: a cluster in a temporary directory,
listening only on a Unix socket there, run as the postgres user when we are root (PostgreSQL refuses
root), stopped and removed afterwards."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


# Where pg_ctl and initdb are: /usr/local/bin, else Debian's newest /usr/lib/postgresql/<version>/bin.
def _version(bin_dir: str) -> int:
    name = Path(bin_dir).parent.name
    return int(name) if name.isdigit() else 0


_CANDIDATES = ["/usr/local/bin", *sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version, reverse=True)]
PG_BIN = next((d for d in _CANDIDATES if os.path.exists(f"{d}/pg_ctl") and os.path.exists(f"{d}/initdb")),
              None)


def available() -> bool:
    return PG_BIN is not None and (os.geteuid() != 0 or shutil.which("runuser") is not None)


def _as_postgres(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@contextmanager
def private_postgres(*, fsync: bool = True) -> Iterator[str]:
    """Start a server; yield its URL. ``fsync=False`` trades durability for speed (tests only)."""
    if not available():
        raise RuntimeError("no PostgreSQL server binaries on this machine (apt-get install postgresql)")
    # Not under a private temporary root: postgres must reach its files.
    base = Path(tempfile.mkdtemp(prefix="cumulo-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(sock, "postgres")
    subprocess.run(_as_postgres([f"{PG_BIN}/initdb", "-D", str(data), "-U", "cumulo", "--auth=trust",
                                 "-E", "UTF8"]), check=True, capture_output=True)
    options = f"-c listen_addresses='' -k {sock} -c max_connections=200" + ("" if fsync else " -c fsync=off")
    subprocess.run(_as_postgres([f"{PG_BIN}/pg_ctl", "-D", str(data), "-w", "-l", str(base / "log"), "-o",
                                 options, "start"]), check=True, capture_output=True)
    try:
        yield f"postgresql://cumulo@/postgres?host={sock}"
    finally:
        subprocess.run(_as_postgres([f"{PG_BIN}/pg_ctl", "-D", str(data), "-m", "immediate", "stop"]),
                       capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
