"""Fault injection for simulated hosts, in the spirit of CloudStack's simulator mocks.

Rules match a command by name and say what to do instead of (or before) running it:

- ``fail``      answer ``result: false`` with the rule's details
- ``error``     raise inside the handler (the agent answers with the error)
- ``wait:MS``   delay the command by MS milliseconds, then run it
- ``drop``      close the agent's connection when the command arrives (it reconnects)

Each rule may expire after ``count`` matches (0 = never). Host-level faults are flags on the table:
``stop_pinging`` (the host looks crashed) and ``power_off`` (VMs powered off behind the server's back,
applied by the simulator). Rules come from a TOML file (``[[rule]] command = "StartCommand"
action = "fail" details = "..." count = 1``), reloaded on SIGHUP by ``python -m agent`` and the fleet,
or are added at run time through this API.
"""

from __future__ import annotations

import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACTIONS = ("fail", "error", "wait", "drop")


class FaultError(Exception):
    """Raised by a handler under an ``error`` rule."""


@dataclass(slots=True)
class FaultRule:
    command: str
    action: str
    details: str = "injected fault"
    wait_ms: int = 0
    count: int = 0  # matches left before the rule expires; 0 = unlimited
    matched: int = 0

    @classmethod
    def parse(cls, command: str, spec: str, *, details: str = "injected fault", count: int = 0) -> FaultRule:
        """A rule from its short form: ``fail``, ``error``, ``wait:250`` or ``drop``."""
        action, _, arg = spec.partition(":")
        if action not in ACTIONS:
            raise ValueError(f"fault action must be one of {', '.join(ACTIONS)} (wait:MS), not {spec!r}")
        wait_ms = 0
        if action == "wait":
            if not arg.isdigit():
                raise ValueError(f"a wait fault needs milliseconds, as in wait:250, not {spec!r}")
            wait_ms = int(arg)
        elif arg:
            raise ValueError(f"the {action} fault takes no argument: {spec!r}")
        if count < 0:
            raise ValueError("a fault's count must be 0 (unlimited) or more")
        return cls(command, action, details, wait_ms, count)


@dataclass
class FaultTable:
    """The rules of one host (or shared by a fleet), safe to change from another thread."""

    rules: list[FaultRule] = field(default_factory=list)
    stop_pinging: bool = False
    partitioned: bool = False  # cut off from the management server (its shared storage still reached)
    stop_heartbeat: bool = False  # cut off from its shared storage (writes no heartbeat)
    power_off: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, command: str, spec: str, *, details: str = "injected fault", count: int = 0) -> FaultRule:
        rule = FaultRule.parse(command, spec, details=details, count=count)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()
            self.stop_pinging = False
            self.partitioned = False
            self.stop_heartbeat = False
            self.power_off.clear()

    def match(self, command: str) -> FaultRule | None:
        """The first live rule for ``command``, counting the match; expired rules are removed."""
        with self._lock:
            for rule in self.rules:
                if rule.command in (command, "*"):
                    rule.matched += 1
                    if rule.count and rule.matched >= rule.count:
                        self.rules.remove(rule)
                    return rule
        return None

    def replace_with(self, other: FaultTable) -> None:
        """Take ``other``'s rules and host faults, in place (agents keep this table)."""
        with self._lock:
            self.rules = list(other.rules)
            self.stop_pinging = other.stop_pinging
            self.power_off = set(other.power_off)

    @classmethod
    def load(cls, path: str | Path) -> FaultTable:
        """Rules from a TOML file; a bad rule is an error naming it."""
        doc: dict[str, Any] = tomllib.loads(Path(path).read_text())
        table = cls(stop_pinging=bool(doc.get("stop_pinging", False)),
                    power_off=set(doc.get("power_off", [])))
        for i, item in enumerate(doc.get("rule", [])):
            try:
                table.add(str(item["command"]), str(item["action"]),
                          details=str(item.get("details", "injected fault")), count=int(item.get("count", 0)))
            except (KeyError, ValueError) as e:
                raise ValueError(f"{path}: rule {i + 1}: {e}") from None
        return table
