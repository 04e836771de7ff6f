"""The docs name what the code has, and nothing it has not: Makefile targets, the ``CUMULO_*``
environment variables the code reads, and the command-line flags of ``python -m mgmt`` and
``python -m agent`` (issue 16: docs had drifted from all three)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).parents[1]
SOURCES = ["mgmt", "agent", "protocol", "native", "benchmarks", "tests"]


def _docs() -> str:
    return "\n".join(p.read_text() for p in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))])


def _code() -> str:
    files = [REPO / "setup.py", REPO / "Makefile"]
    for top in SOURCES:
        files += [p for p in (REPO / top).rglob("*.py") if p.name != "test_docs_in_step.py"]
    return "\n".join(p.read_text() for p in files)


def _targets() -> set[str]:
    phony = re.search(r"^\.PHONY:(.*)$", (REPO / "Makefile").read_text(), re.M)
    assert phony is not None
    return set(phony.group(1).split())


def test_every_makefile_target_is_documented_and_every_documented_one_exists() -> None:
    docs = _docs()
    named = set(re.findall(r"`make ([a-z][a-z-]*)", docs))
    assert _targets() - named == set(), "Makefile targets the docs do not name"
    assert named - _targets() == set(), "`make` targets the docs name that the Makefile has not"


def test_every_environment_variable_is_documented_and_every_documented_one_is_read() -> None:
    read = set(re.findall(r"""(?:environ\.get\(|environ\[|getenv\()\s*["'](CUMULO_[A-Z_]+)["']""", _code()))
    read |= set(re.findall(r"\b(CUMULO_[A-Z_]+)=", (REPO / "Makefile").read_text()))
    named = set(re.findall(r"\b(CUMULO_[A-Z_]+)\b", _docs()))
    assert read - named == set(), "variables the code reads that the docs do not name"
    assert named - read == set(), "variables the docs name that nothing reads"


def test_every_command_line_flag_is_documented() -> None:
    docs = _docs()
    for cli in (REPO / "mgmt" / "__main__.py", REPO / "agent" / "__main__.py"):
        flags = set(re.findall(r"""add_argument\(\s*["'](--[a-z0-9-]+)""", cli.read_text()))
        assert flags, cli
        missing = {f for f in flags if f not in docs}
        assert missing == set(), f"flags of python -m {cli.parent.name} the docs do not name"
