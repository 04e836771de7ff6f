"""Cumulo's agent wire protocol, sans-IO: frames, messages and the connection state machine.

Nothing here does I/O, reads a clock or imports trio, sockets or libvirt (a test asserts it). The frame
codec's hot path is C (``native``), with a pure-Python reference chosen by ``CUMULO_CODEC``.
"""

from ._state import State
from .codec import Codec, get_codec
from .connection import NEED_DATA, Connection, ConnectionClosed, Request, Response, Role
from .errors import FrameError, LocalProtocolError, ProtocolError, RemoteProtocolError
from .frame import DEFAULT_MAX_FRAME_SIZE, HEADER_SIZE, VERSION, Flag, FrameSpec

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE", "HEADER_SIZE", "NEED_DATA", "VERSION", "Codec", "Connection",
    "ConnectionClosed", "Flag", "FrameError", "FrameSpec", "LocalProtocolError", "ProtocolError",
    "RemoteProtocolError", "Request", "Response", "Role", "State", "get_codec",
]
