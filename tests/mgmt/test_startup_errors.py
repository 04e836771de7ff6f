"""A data directory the server cannot use stops start-up with one line naming the path and the cause
(issue 18: it was a 130-line traceback), exit code 2. Real file systems: tmpfs mounts, read-only and
full, made by the test (it runs as root, as make test does)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[Path]:
    point = tmp_path / "mnt"
    point.mkdir()
    yield point
    subprocess.run(["umount", str(point)], capture_output=True)


def tmpfs(point: Path, options: str) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], check=True)


def serve(data_dir: Path) -> subprocess.CompletedProcess[str]:
    args = ["--data-dir", str(data_dir), "--agent-port", "0", "--api-port", "0", "--bind", "127.0.0.1"]
    return subprocess.run([sys.executable, "-m", "mgmt", "serve", *args], capture_output=True, text=True,
                          timeout=120)


def one_line(result: subprocess.CompletedProcess[str], *words: str) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.strip().splitlines() if line.startswith("python -m mgmt:")]
    # The log may come before it; the error is the last line, alone.
    assert len(errors) == 1 and result.stderr.strip().endswith(errors[0]), result.stderr
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


def test_a_read_only_data_directory(mount: Path) -> None:
    tmpfs(mount, "ro,size=1m")
    one_line(serve(mount / "data"), str(mount / "data"), "Read-only file system")


def test_a_read_only_database(mount: Path) -> None:
    tmpfs(mount, "size=1m")
    (mount / "data").mkdir()
    subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
    one_line(serve(mount / "data"), str(mount / "data"), "cumulo.db")


def test_a_full_disk(mount: Path) -> None:
    tmpfs(mount, "size=256k")
    (mount / "filler").write_bytes(b"\0" * (250 * 1024))
    one_line(serve(mount / "data"), str(mount / "data"), "free there")


def test_a_data_directory_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    one_line(serve(tmp_path / "file" / "data"), "Not a directory")


def test_a_half_given_api_certificate(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "mgmt", "serve", "--data-dir", str(tmp_path), "--api-cert",
                             str(tmp_path / "none.pem")], capture_output=True, text=True, timeout=60)
    one_line(result, "api_cert and api_key")
