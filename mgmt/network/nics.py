"""Guest NICs on shared networks: an address from the network's IP ranges (or the one asked for, once
checked) and a unique MAC, each taken by an INSERT that the table's unique constraints arbitrate, so
two concurrent deploys never get the same address. Released on expunge.

A free address is chosen at random, as CloudStack chooses guest addresses: a random sample of the
ranges is checked against the NICs with one bounded query (not every used address of the network),
and concurrent deploys, which pick different candidates, rarely collide. On PostgreSQL, where they do
run concurrently, a deploy whose candidates were all taken meanwhile draws again, a few times, before
it says the network is full."""

from __future__ import annotations

import ipaddress
import random
import socket
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from ..db.schema import ip_ranges, networks, nics
from ..errors import InsufficientCapacity, InvalidParameter

_rng = random.SystemRandom()


@dataclass(frozen=True)
class Nic:
    nic_id: int
    uuid: str
    network_id: int
    device_id: int
    ip: str
    mac: str
    is_default: bool


def _mac() -> str:
    # 02: locally administered, unicast; the rest random (uniqueness is the table's constraint).
    return "02:00:" + ":".join(f"{_rng.randrange(256):02x}" for _ in range(4))


FIRST_SAMPLE = 8  # addresses a first draw checks: enough while the network is not nearly full
CANDIDATES = 32  # free addresses a deploy tries per draw
DRAWS = 4  # draws before a network whose candidates were all taken concurrently is called full


def _ranges(conn: Connection, network_id: int) -> list[tuple[int, int]]:
    return [(int(ipaddress.ip_address(a)), int(ipaddress.ip_address(b))) for a, b in conn.execute(
        sa.select(ip_ranges.c.start_ip, ip_ranges.c.end_ip)
        .where(ip_ranges.c.network_id == network_id).order_by(ip_ranges.c.id))]


def _address(ranges: list[tuple[int, int]], offset: int) -> str:
    for first, last in ranges:
        if offset <= last - first:
            value = first + offset
            if value < 2**32:
                return socket.inet_ntoa(value.to_bytes(4, "big"))
            return str(ipaddress.ip_address(value))
        offset -= last - first + 1
    raise IndexError(offset)


def _candidates(conn: Connection, network_id: int, ranges: list[tuple[int, int]] | None = None) -> list[str]:
    """Free addresses in random order: a small random sample of the ranges checked with one query,
    a larger one when it finds none free, and when that finds none either (a nearly full network),
    every free address."""
    if ranges is None:
        ranges = _ranges(conn, network_id)
    size = sum(last - first + 1 for first, last in ranges)
    if not size:
        return []
    for n in (FIRST_SAMPLE, 4 * CANDIDATES):
        sample = [_address(ranges, k) for k in _rng.sample(range(size), min(size, n))]
        used = set(conn.scalars(_USED, {"network": network_id, "sample": sample}))
        free = [ip for ip in sample if ip not in used]
        if free or len(sample) == size:
            return free[:CANDIDATES]
    taken = set(conn.scalars(sa.select(nics.c.ip_address).where(
        nics.c.network_id == network_id, nics.c.ip_address.is_not(None))))
    free = [ip for ip in (_address(ranges, k) for k in range(size)) if ip not in taken]
    _rng.shuffle(free)
    return free[:CANDIDATES]


def allocate(
    conn: Connection,
    vm_id: int,
    network_id: int,
    device_id: int,
    *,
    requested_ip: str = "",
    is_default: bool = True,
    network: Any = None,
    ranges: list[tuple[int, int]] | None = None,
    requested_mac: str = "",
) -> Nic:
    """A NIC for the VM on the network: the requested address (checked) or a free one, with the
    requested MAC address (checked: unicast, not in use) or a drawn one. ``network`` and ``ranges``: the
    network's row and IP ranges when the caller has them (the catalog)."""
    mac = check_mac(requested_mac) if requested_mac else ""
    if mac and conn.scalar(sa.select(nics.c.id).where(nics.c.mac_address == mac)) is not None:
        raise InvalidParameter(f"macaddress {mac} is already in use")
    if network is None:
        network = conn.execute(
            sa.select(networks).where(networks.c.id == network_id, networks.c.removed.is_(None))
        ).first()
    if network is None:
        raise InvalidParameter(f"network {network_id} does not exist")
    if requested_ip:
        try:
            addr = ipaddress.ip_address(requested_ip)
        except ValueError:
            raise InvalidParameter(f"ipaddress {requested_ip!r} is not an IP address") from None
        in_range = any(first <= int(addr) <= last
                       for first, last in (ranges if ranges is not None else _ranges(conn, network_id)))
        if not in_range:
            raise InvalidParameter(
                f"ipaddress {requested_ip} is outside the IP ranges of network {network.name}"
            )
        if conn.scalar(sa.select(nics.c.id).where(nics.c.network_id == network_id,
                                                   nics.c.ip_address == requested_ip)) is not None:
            raise InvalidParameter(f"ipaddress {requested_ip} is already in use on network {network.name}")
        nic = _insert(conn, vm_id, network_id, device_id, [requested_ip], is_default, mac)
        if nic is None:
            raise InvalidParameter(f"ipaddress {requested_ip} or macaddress {mac} is already in use")
        return nic
    for _draw in range(DRAWS):
        candidates = _candidates(conn, network_id, ranges)
        if not candidates:
            raise InsufficientCapacity(f"network {network.name} has no free IP address left")
        nic = _insert(conn, vm_id, network_id, device_id, candidates, is_default, mac)
        if nic is not None:
            return nic  # else every candidate was taken concurrently: draw again
    raise InsufficientCapacity(f"network {network.name}: every free address was taken concurrently; retry")


def check_mac(text: str) -> str:
    """A MAC address a user asked for, lower case: six hex pairs, unicast, not all zeros."""
    value = text.strip().lower().replace("-", ":")
    parts = value.split(":")
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdef" for c in p) for p in parts):
        raise InvalidParameter(f"macaddress {text!r} is not a MAC address (six hex pairs, 02:00:00:ab:cd:ef)")
    if int(parts[0], 16) & 1 or value == "00:00:00:00:00:00":
        raise InvalidParameter(f"macaddress {text!r} is a multicast or zero address")
    return value


def _insert(conn: Connection, vm_id: int, network_id: int, device_id: int, candidates: list[str],
            is_default: bool, requested_mac: str = "") -> Nic | None:
    """The NIC on the first candidate no one else took; None: all taken. ``ON CONFLICT DO NOTHING``
    (SQLite and PostgreSQL) lets an insert that breaks a unique constraint (the address taken, or a
    MAC drawn twice) insert nothing, instead of failing the transaction."""
    for ip in candidates:
        for _ in range(8):  # a MAC collision is astronomically rare; an IP race is not
            nic_uuid, mac = str(uuid.uuid4()), requested_mac or _mac()
            values = {"uuid": nic_uuid, "vm_id": vm_id, "network_id": network_id, "device_id": device_id,
                      "ip_address": ip, "mac_address": mac, "is_default": is_default, "state": "Allocated"}
            nic_id = conn.scalar(_UPSERT[conn.dialect.name == "postgresql"], values)
            if nic_id is not None:
                return Nic(nic_id, nic_uuid, network_id, device_id, ip, mac, is_default)
            taken = conn.scalar(
                sa.select(nics.c.id).where(nics.c.network_id == network_id, nics.c.ip_address == ip)
            )
            if taken is not None:
                break  # another deploy took this address first: try the next one
            if requested_mac:
                raise InvalidParameter(f"macaddress {requested_mac} is already in use")
    return None


# Statements built once, values passed at execution (see services/events.py).
_UPSERT = [insert(nics).on_conflict_do_nothing().returning(nics.c.id)  # [SQLite's, PostgreSQL's]
           for insert in (sqlite_insert, pg_insert)]
_USED = sa.select(nics.c.ip_address).where(nics.c.network_id == sa.bindparam("network"),
                                           nics.c.ip_address.in_(sa.bindparam("sample", expanding=True)))


def release(conn: Connection, vm_id: int) -> int:
    """The VM's addresses go back to their networks (its NIC rows stay, Released, for the record)."""
    return conn.execute(
        nics.update()
        .where(nics.c.vm_id == vm_id, nics.c.state != "Released")
        .values(state="Released", ip_address=None)
    ).rowcount


def of_vm(conn: Connection, vm_id: int) -> list[sa.Row[Any]]:
    """The VM's live NICs with their networks' settings, by device id."""
    return list(
        conn.execute(
            sa.select(
                nics,
                networks.c.gateway,
                networks.c.netmask,
                networks.c.dns1,
                networks.c.dns2,
                networks.c.vlan,
                networks.c.bridge,
                networks.c.vni,
                networks.c.name.label("network_name"),
            )
            .join(networks, networks.c.id == nics.c.network_id)
            .where(nics.c.vm_id == vm_id, nics.c.state != "Released")
            .order_by(nics.c.device_id)
        )
    )
