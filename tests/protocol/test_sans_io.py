"""protocol/ is sans-IO: no trio, sockets, libvirt, event loops or clocks, by import or at run time."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import protocol

FORBIDDEN = {"trio", "socket", "libvirt", "asyncio", "selectors", "ssl", "time", "datetime", "threading_io"}
PACKAGE = Path(protocol.__file__).parent


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_no_protocol_module_imports_io_or_clock() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(imported_modules(path) & FORBIDDEN)
        for path in PACKAGE.rglob("*.py")
        if imported_modules(path) & FORBIDDEN
    }
    assert offenders == {}


def test_importing_protocol_loads_no_io_library() -> None:
    code = (
        "import sys, protocol, protocol.connection, protocol.examples, protocol.codec as c\n"
        "c.get_codec('native'); c.get_codec('python')\n"
        "print(sorted(m for m in ('trio', 'socket', 'libvirt', 'asyncio', 'selectors') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
