"""Errors of the wire protocol.

Internal code raises ``LocalProtocolError`` when *we* are asked to do something the protocol forbids;
anything wrong with what the peer sent becomes ``RemoteProtocolError``. Either moves the connection
to its ERROR state. The message always says what was wrong, for the log line that closes the socket.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base class of every error this package raises."""


class LocalProtocolError(ProtocolError):
    """We tried to send something the protocol does not allow in the current state."""


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes that violate the protocol; the connection cannot continue."""


class FrameError(RemoteProtocolError):
    """A frame header failed validation; ``code`` is one of ``protocol.frame.FrameErrorCode``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class MessageError(ProtocolError):
    """A message of a known type has fields of the wrong shape (decoded as ``MalformedCommand``)."""
