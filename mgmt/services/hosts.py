"""Hosts as an operator changes them: enabled or disabled for new VMs, their tags, and maintenance (the
host takes no new VMs and its running VMs are live-migrated away; cancelled, it takes VMs again).

A resource-state change is recorded as a placement delta in the transaction that writes it, so the
planner sees it with the commit; a tag change reloads placement.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from protocol.messages import GetStorageStatsAnswer, GetStorageStatsCommand

from ..agents import registry
from ..db.schema import clusters, hosts, vms, zones
from ..errors import AgentUnavailable, CumuloError, InvalidParameter
from ..planner import deltas
from .caller import Caller
from .crud import Row
from .infra import HOST, pool_path
from .queries import find

if TYPE_CHECKING:
    from ..agents.manager import AgentManager
    from ..db.database import Database
    from ..orchestration.engine import Orchestrator
    from ..planner.service import Placement

MAINTAINABLE = ("Enabled", "Disabled", "ErrorInMaintenance")  # what prepareHostForMaintenance takes
IN_MAINTENANCE = ("Maintenance", "ErrorInMaintenance", "PrepareForMaintenance")  # what a cancel ends


def _set_resource_state(conn: Connection, caller: Caller, ident: str, allowed: tuple[str, ...],
                        new: str) -> Row:
    host = find(conn, caller, hosts, ident, "host")
    if host.resource_state not in allowed:
        raise InvalidParameter(
            f"host {host.name} is {host.resource_state}; this needs it {' or '.join(allowed)}"
        )
    conn.execute(hosts.update().where(hosts.c.id == host.id).values(resource_state=new))
    deltas.record(conn, deltas.HostEnabled(host.id, new == "Enabled"))
    return host


def _set_tags(conn: Connection, host_id: int, tags: str) -> None:
    conn.execute(hosts.update().where(hosts.c.id == host_id).values(host_tags=tags))


def _running_on(conn: Connection, host_id: int) -> list[int]:
    return list(conn.scalars(
        sa.select(vms.c.id)
        .where(vms.c.host_id == host_id, vms.c.removed.is_(None), vms.c.state == "Running")
        .order_by(vms.c.id)
    ))


class Hosts:
    def __init__(self, db: Database, placement: Placement, orchestrator: Orchestrator,
                 agents: AgentManager) -> None:
        self.db, self.placement, self.orchestrator, self.agents = db, placement, orchestrator, agents

    async def find(self, caller: Caller, ident: str) -> Row:
        """The host's own row (not its list view)."""
        return await self.db.read(find, caller, hosts, ident, "host")

    async def measure_pool(self, caller: Caller, zone_uuid: str, cluster_uuid: str | None, url: str) -> int:
        """The capacity in bytes of a shared pool at ``url``, as an Up host of its cluster (or zone)
        measures it (CloudStack asks a host when a pool is added without its size)."""
        _pool_type, path = pool_path(url)
        candidates = await self.db.read(_up_hosts, caller, zone_uuid, cluster_uuid)
        reasons = []
        for host_id, name in candidates[:3]:
            try:
                answers = await self.agents.send(host_id, [GetStorageStatsCommand(pool_path=path)],
                                                 timeout=30)
            except CumuloError as e:
                reasons.append(f"{name}: {e}")
                continue
            answer = answers[0]
            if isinstance(answer, GetStorageStatsAnswer) and answer.result and answer.capacity_bytes > 0:
                return int(answer.capacity_bytes)
            reasons.append(f"{name}: {answer.details or 'no size'}")
        raise InvalidParameter("capacitybytes was not given and no host could measure the pool"
                               + (f" ({'; '.join(reasons)})" if reasons else ": no host is Up in its scope"))

    async def get(self, ident: str) -> Row:
        """The host as listHosts shows it (with its capacity and parents)."""
        return await self.db.read(lambda conn: conn.execute(HOST.query().where(hosts.c.uuid == ident)).one())

    async def update(self, caller: Caller, ident: str, *, enabled: bool | None = None,
                     tags: list[str] | None = None, name: str | None = None,
                     annotation: str | None = None) -> Row:
        """Enable or disable the host for new VMs, replace its tags, rename it, note something on it;
        the host's row before."""
        host = await self.find(caller, ident)
        if name is not None or annotation is not None:
            if name is not None and not 1 <= len(name) <= 255:
                raise InvalidParameter("name must have 1 to 255 characters")
            values = {k: v for k, v in (("name", name), ("annotation", annotation)) if v is not None}
            await self.db.run(lambda conn: conn.execute(hosts.update().where(hosts.c.id == host.id)
                                                        .values(**values)))
        if enabled is not None:
            await self.db.run(_set_resource_state, caller, ident, ("Enabled", "Disabled"),
                              "Enabled" if enabled else "Disabled")
        if tags is not None:
            await self.db.run(_set_tags, host.id, ",".join(t.strip() for t in tags if t.strip()))
            await self.placement.inventory_changed()
        return host

    async def provision_certificate(self, host: Row, *, reconnect: bool) -> str:
        """Give a connected host a new certificate (its agent makes the key); the certificate's serial."""
        try:
            return await self.agents.provision_certificate(host.id, reconnect=reconnect)
        except AgentUnavailable as e:
            raise CumuloError(f"could not provision a certificate to host {host.name}: {e}") from None

    async def remove(self, caller: Caller, ident: str, *, forced: bool = False) -> tuple[Row, list[str]]:
        """Take a host out of the inventory and revoke its certificates (its agent can no longer
        connect); the host's row and the serials revoked."""
        host = await self.find(caller, ident)
        guid = await self.db.run(registry.remove_host, host.id, forced=forced)
        revoked = await self.agents.revoke(guid)
        await self.placement.inventory_changed()
        return host, revoked

    async def prepare_maintenance(self, caller: Caller,
                                  ident: str) -> tuple[Row, Callable[[], Awaitable[Row]]]:
        """Take the host out of placement now (PrepareForMaintenance); the host and the work that
        empties it (to run as a job): each running VM migrated away, then Maintenance, or
        ErrorInMaintenance when one could not leave."""
        host = await self.db.run(_set_resource_state, caller, ident, MAINTAINABLE, "PrepareForMaintenance")

        async def empty() -> Row:
            failed: list[str] = []
            for vm_id in await self.db.read(_running_on, host.id):
                try:
                    await self.orchestrator.migrate(vm_id)
                except CumuloError as e:
                    failed.append(f"VM {vm_id}: {e}")
            state = "ErrorInMaintenance" if failed else "Maintenance"
            await self.db.run(_set_resource_state, caller, host.uuid, ("PrepareForMaintenance",), state)
            if failed:
                raise CumuloError(f"host {host.name} could not empty: {'; '.join(failed)}")
            return await self.get(host.uuid)

        return host, empty

    async def cancel_maintenance(self, caller: Caller,
                                 ident: str) -> tuple[Row, Callable[[], Awaitable[Row]]]:
        """The host and the work (a job) that ends its maintenance: it takes new VMs again."""
        host = await self.find(caller, ident)

        async def end() -> Row:
            await self.db.run(_set_resource_state, caller, host.uuid, IN_MAINTENANCE, "Enabled")
            return await self.get(host.uuid)

        return host, end


def _up_hosts(conn: Connection, caller: Caller, zone_uuid: str,
              cluster_uuid: str | None) -> list[tuple[int, str]]:
    zone = find(conn, caller, zones, zone_uuid, "zone")
    where = [hosts.c.zone_id == zone.id, hosts.c.status == "Up", hosts.c.removed.is_(None)]
    if cluster_uuid:
        where.append(hosts.c.cluster_id == find(conn, caller, clusters, cluster_uuid, "cluster").id)
    return [(r.id, r.name) for r in conn.execute(sa.select(hosts.c.id, hosts.c.name).where(*where)
                                                  .order_by(hosts.c.id))]
