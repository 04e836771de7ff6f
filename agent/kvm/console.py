"""Guest console logs: QEMU appends each VM's serial console to ``CONSOLE_DIR/<vm name>.log``.

The agent returns the last lines as text: terminal control sequences (the BIOS clears the screen) and
carriage returns are taken out, undecodable bytes are replaced.
"""

from __future__ import annotations

import os
import re

MAX_LINES = 1000
_TAIL_BYTES = 256 * 1024  # never read more than this from the end of a log
_CONTROL = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|[@-Z\\-_]|c)|[\x00-\x08\x0b-\x1f\x7f]")


def console_path(console_dir: str, vm_name: str) -> str:
    if not vm_name or "/" in vm_name or vm_name.startswith("."):
        raise ValueError(f"not a VM name for a console file: {vm_name!r}")
    return os.path.join(console_dir, f"{vm_name}.log")


def tail(path: str, lines: int) -> tuple[str, bool]:
    """The last ``lines`` lines of the log at ``path`` (cleaned), and whether the log exists."""
    lines = max(1, min(lines, MAX_LINES))
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - _TAIL_BYTES))
            data = f.read()
    except FileNotFoundError:
        return "", False
    text = _CONTROL.sub("", data.decode("utf-8", errors="replace").replace("\r\n", "\n"))
    kept = text.splitlines()[-lines:]
    return "\n".join(kept) + ("\n" if kept else ""), True
