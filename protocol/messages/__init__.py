"""Typed, immutable wire messages, registered by name (the key of their one-key object on the wire)."""

from .base import (
    ANSWERS,
    COMMANDS,
    Answer,
    Command,
    MalformedCommand,
    UnknownAnswer,
    UnknownCommand,
    UnsupportedAnswer,
    decode_answer,
    decode_command,
    decode_struct,
)
from .host import (
    CheckHealthAnswer,
    CheckHealthCommand,
    CheckOnHostAnswer,
    CheckOnHostCommand,
    PingAnswer,
    PingRoutingCommand,
    PowerState,
    ReadyAnswer,
    ReadyCommand,
    StartupAnswer,
    StartupRoutingCommand,
    StartupStorageCommand,
)
from .storage import (
    CreateAnswer,
    CreateCommand,
    DestroyCommand,
    PrimaryStorageDownloadAnswer,
    PrimaryStorageDownloadCommand,
)
from .vm import (
    CheckVirtualMachineAnswer,
    CheckVirtualMachineCommand,
    DiskTO,
    GetVmStatsAnswer,
    GetVmStatsCommand,
    MigrateAnswer,
    MigrateCommand,
    NicTO,
    PrepareForMigrationAnswer,
    PrepareForMigrationCommand,
    RebootAnswer,
    RebootCommand,
    StartAnswer,
    StartCommand,
    StopAnswer,
    StopCommand,
    VirtualMachineTO,
    VmStats,
)

__all__ = [
    "ANSWERS", "COMMANDS", "Answer", "CheckHealthAnswer", "CheckHealthCommand", "CheckOnHostAnswer",
    "CheckOnHostCommand", "CheckVirtualMachineAnswer", "CheckVirtualMachineCommand", "Command",
    "CreateAnswer", "CreateCommand", "DestroyCommand", "DiskTO", "GetVmStatsAnswer", "GetVmStatsCommand",
    "MalformedCommand", "MigrateAnswer", "MigrateCommand", "NicTO", "PingAnswer", "PingRoutingCommand",
    "PowerState", "PrepareForMigrationAnswer", "PrepareForMigrationCommand", "PrimaryStorageDownloadAnswer",
    "PrimaryStorageDownloadCommand", "ReadyAnswer", "ReadyCommand", "RebootAnswer", "RebootCommand",
    "StartAnswer", "StartCommand", "StartupAnswer", "StartupRoutingCommand", "StartupStorageCommand",
    "StopAnswer", "StopCommand", "UnknownAnswer", "UnknownCommand", "UnsupportedAnswer", "VirtualMachineTO",
    "VmStats", "decode_answer", "decode_command", "decode_struct",
]
