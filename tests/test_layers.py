"""The layout tells the architecture: each layer imports only what it may.

- ``mgmt/api/`` (the CloudStack front end) reaches the domain through ``mgmt/services/`` only: no
  tables, no planner, no orchestration, no agent manager, no job runner.
- ``protocol/`` is sans-IO and process-agnostic (no trio, no sockets, no process tuning), and neither
  ``mgmt`` nor ``agent`` is imported by it; its one trio adapter, ``protocol/link.py``, may use trio.
- ``agent/`` never imports ``mgmt`` (an agent runs on a host without the management server).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, absolute (relative imports resolved against its package)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _offences(folder: str, forbidden: tuple[str, ...], allowed: tuple[str, ...] = (),
              skip: tuple[str, ...] = ()) -> list[str]:
    out = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        if str(path.relative_to(ROOT)) in skip:
            continue
        for module in sorted(_imports(path)):
            if module.startswith(allowed):
                continue
            if any(module == f or module.startswith(f + ".") for f in forbidden):
                out.append(f"{path.relative_to(ROOT)} imports {module}")
    return out


def test_the_resolver_understands_relative_imports() -> None:
    imports = _imports(ROOT / "mgmt" / "api" / "commands" / "vms.py")
    assert "mgmt.services.vms" in imports and "mgmt.api.registry" in imports


@pytest.mark.parametrize("inner", ["mgmt.db", "mgmt.planner", "mgmt.orchestration", "mgmt.agents",
                                   "mgmt.jobs", "mgmt.storage", "mgmt.network", "mgmt.catalog",
                                   "sqlalchemy"])
def test_the_api_reaches_the_domain_through_the_services_only(inner: str) -> None:
    assert _offences("mgmt/api", (inner,)) == []


def test_protocol_is_sans_io_and_imports_neither_end() -> None:
    assert _offences("protocol", ("trio", "socket", "ssl", "gc", "mgmt", "agent", "libvirt"),
                     skip=("protocol/link.py",)) == []
    assert _offences("protocol", ("socket", "ssl", "gc", "mgmt", "agent", "libvirt")) == []


def test_agents_do_not_import_the_management_server() -> None:
    assert _offences("agent", ("mgmt",)) == []
