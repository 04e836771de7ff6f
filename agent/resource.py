"""The ServerResource interface: what an agent's hypervisor backend provides.

A resource describes its host for the startup, reports the power state of its VMs on every ping, and
executes commands through a table of handlers, one per command type, declared with ``@handles``. A
command with no handler gets ``UnsupportedAnswer``; a handler that raises gets a failed ``Answer`` with
the error. Handlers are async: blocking backends (libvirt) run their calls in worker threads.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from protocol.messages import Answer, Command, HeartbeatPoolTO, PowerState, UnsupportedAnswer

log = logging.getLogger(__name__)

Handler = Callable[[Any, Any], Awaitable[Answer]]
F = TypeVar("F", bound=Callable[..., Awaitable[Answer]])


def handles(*command_types: type[Command]) -> Callable[[F], F]:
    """Mark a resource method as the handler of these command types."""

    def mark(fn: F) -> F:
        fn.__cumulo_handles__ = command_types  # type: ignore[attr-defined]
        return fn

    return mark


@dataclass(frozen=True, slots=True)
class Placement:
    """Who the host is and where it belongs, from the agent's settings."""

    guid: str
    name: str
    zone: str
    pod: str
    cluster: str
    private_ip: str = "127.0.0.1"
    host_tags: tuple[str, ...] = ()


class HostSetupError(Exception):
    """The host cannot serve as configured (a missing package, a bad setting); the message says why."""


class DropConnection(Exception):
    """Raised by a handler to close the agent's connection instead of answering (a fault rule)."""


def error_answer(command: Command, error: BaseException) -> Answer:
    """The failed answer to a command whose handler raised ``error``."""
    return Answer(result=False, details=f"{type(command).__name__} failed: {type(error).__name__}: {error}")


class ServerResource(ABC):
    """A hypervisor backend. Subclasses declare handlers with ``@handles(SomeCommand)``."""

    hypervisor_type: ClassVar[str] = ""
    _handlers: ClassVar[dict[type[Command], str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        table: dict[type[Command], str] = {}
        for klass in reversed(cls.__mro__):
            for name, value in vars(klass).items():
                for command_type in getattr(value, "__cumulo_handles__", ()):
                    table[command_type] = name
        cls._handlers = table

    @classmethod
    def supported_commands(cls) -> frozenset[type[Command]]:
        return frozenset(cls._handlers)

    async def open(self) -> None:  # noqa: B027 - most resources have nothing to set up
        """Set up before the first startup; raise ``HostSetupError`` when the host cannot serve."""

    @abstractmethod
    async def startup_commands(self, placement: Placement) -> list[Command]:
        """StartupRoutingCommand (and StartupStorageCommand when the host has local storage)."""

    @abstractmethod
    async def power_report(self) -> dict[str, PowerState]:
        """The power state of every VM the hypervisor knows."""

    async def execute(self, command: Command) -> Answer:
        """Run one command through the handler table; never raises for a command's own failure."""
        name = self._handlers.get(type(command))
        if name is None:
            return UnsupportedAnswer(details=f"unsupported command: {type(command).__name__}")
        try:
            answer: Answer = await getattr(self, name)(command)
        except Exception as e:  # a handler's bug or a backend error: the server gets the reason
            log.exception("command %s failed", type(command).__name__)
            return error_answer(command, e)
        return answer

    def pinging(self) -> bool:
        """Whether the agent should ping now (a simulated crash says no)."""
        return True

    def reachable(self) -> bool:
        """Whether the management server can be reached now (a simulated partition says no)."""
        return True

    def heartbeat_dir(self, pool: HeartbeatPoolTO) -> str | None:
        """The directory on this host where the shared pool ``pool`` is, for heartbeats; None: not
        here (no heartbeat is written there, nor read)."""
        return None

    def storage_reachable(self) -> bool:
        """Whether this host can write to its shared pools now (a simulated storage loss says no)."""
        return True

    async def stop_all_guests(self, why: str) -> int:
        """Stop every guest at once (self-fencing); how many were stopped."""
        return 0

    async def aclose(self) -> None:  # noqa: B027 - most resources hold nothing to release
        """Release backend resources (connections, threads)."""
