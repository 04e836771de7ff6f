"""Agent settings from a TOML file and command-line flags (flags win), and the host's stable guid.

The guid identifies the host to the management server, so it must survive restarts: unless given, it
is made once and kept in ``STATE_DIR/agent-state.json``.
"""

from __future__ import annotations

import json
import os
import socket
import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_PORT = 8250


@dataclass
class AgentConfig:
    mgmt: str = f"127.0.0.1:{DEFAULT_PORT}"
    resource: str = "simulator"
    libvirt_uri: str = "qemu:///system"
    pool: str = "cumulo-primary"
    pool_path: str = ""
    domain_type: str = ""  # kvm, qemu (TCG) or test; empty: decided by trying KVM once
    probe_kernel: str = ""  # the kernel that KVM is tried with (default: the newest /boot/vmlinuz-*)
    console_dir: str = ""  # guests' console logs (default: STATE_DIR/console)
    migration_uri: str = ""  # how other hosts' libvirtd reach this one (default qemu+tcp://PRIVATE_IP/system)
    guest_underlay: str = ""  # the device isolated networks ride on (VXLAN; PRIVATE_IP is its address)
    guid: str = ""
    name: str = ""
    zone: str = "zone1"
    pod: str = "pod1"
    cluster: str = "cluster1"
    host_tags: str = ""
    private_ip: str = "127.0.0.1"
    state_dir: str = "./agent-state"
    faults: str = ""
    sim_storage: str = ""  # simulator: the directory standing for the shared pools (heartbeats go there)
    ping_retries: int = 5
    drain_seconds: float = 30.0
    log_level: str = "INFO"
    tls: bool = True  # TLS with this host's certificate (in STATE_DIR/tls); false: plain TCP
    token: str = ""  # registration token for the first certificate (python -m mgmt agent-token)


def parse_servers(text: str) -> list[tuple[str, int]]:
    """``host:port[,host:port...]`` (port defaults to 8250) into a list; a bad entry is an error."""
    servers = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        host, sep, port = item.rpartition(":")
        if not sep:
            host, port = item, str(DEFAULT_PORT)
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"a management server is HOST:PORT, not {item!r}")
        servers.append((host.strip("[]"), int(port)))
    if not servers:
        raise ValueError("at least one management server is needed (--mgmt HOST:PORT)")
    return servers


def load(path: str | None, overrides: dict[str, Any]) -> AgentConfig:
    """Settings from ``path`` (TOML, the same names as the flags with underscores), then ``overrides``."""
    values: dict[str, Any] = {}
    if path:
        doc = tomllib.loads(Path(path).read_text())
        known = set(AgentConfig.__dataclass_fields__)
        unknown = sorted(set(doc) - known)
        if unknown:
            raise ValueError(f"{path}: unknown settings {', '.join(unknown)}")
        values.update(doc)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return AgentConfig(**values)


def stable_guid(config: AgentConfig) -> str:
    """The configured guid, or the one kept in the state directory (made on first use)."""
    state_file = Path(config.state_dir) / "agent-state.json"
    state: dict[str, Any] = json.loads(state_file.read_text()) if state_file.exists() else {}
    guid = config.guid or state.get("guid") or str(uuid.uuid4())
    if state.get("guid") != guid:
        state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({**state, "guid": guid}))
        os.replace(tmp, state_file)  # atomic: a crash never leaves half a state file
    return guid


def default_name() -> str:
    return socket.gethostname()
