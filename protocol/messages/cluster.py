"""Messages between management servers, and the list of servers an agent is given."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Answer, Command, answer, command


@command
@dataclass(frozen=True, slots=True, kw_only=True)
class SetupMSListCommand(Command):
    """Server to agent: the management servers this host connects to, in its own order (the first is
    where it belongs); ``reconnect``: leave this server now for the first one (the server is moving it).
    Each entry is ``host:port``."""

    mgmt_servers: tuple[str, ...]
    lb_algorithm: str = "roundrobin"
    reconnect: bool = False


@command
@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardCommand(Command):
    """Server to server, over a peer link: run the commands that follow this one in the same request
    on host ``host_id``, whose agent is connected to the receiving server, within ``timeout`` seconds.
    The response carries a ``ForwardAnswer`` and then the host's answers."""

    host_id: int
    timeout: float
    in_sequence: bool = False
    stop_on_error: bool = False


@answer
@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardAnswer(Answer):
    """``failure``: "" (the host's answers follow), "unavailable" (the host is not connected to the
    receiving server, or its link closed first) or "timeout" (it did not answer in time); the answers
    that follow are then placeholders."""

    failure: str = ""
