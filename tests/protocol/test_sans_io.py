"""protocol/ is sans-IO: no trio, sockets, libvirt, event loops or clocks, by import or at run time.

The one exception is ``protocol/link.py``, the trio adapter every side drives its connections with:
it sits on top of the core, which never imports it (importing ``protocol`` loads no trio)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import protocol

FORBIDDEN = {"trio", "socket", "libvirt", "asyncio", "selectors", "ssl", "time", "datetime", "threading_io"}
PACKAGE = Path(protocol.__file__).parent
ADAPTER = PACKAGE / "link.py"


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
        if path != ADAPTER and imported_modules(path) & FORBIDDEN
    }
    assert offenders == {}


def test_the_core_never_imports_the_trio_adapter() -> None:
    users = [str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
             if path != ADAPTER and "link" in path.read_text() and ("from .link" in path.read_text()
                                                                    or "protocol.link" in path.read_text())]
    assert users == []


def test_importing_protocol_loads_no_io_library() -> None:
    code = (
        "import sys, protocol, protocol.connection, protocol.examples, protocol.codec as c\n"
        "c.get_codec('native'); c.get_codec('python')\n"
        "print(sorted(m for m in ('trio', 'socket', 'libvirt', 'asyncio', 'selectors') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
