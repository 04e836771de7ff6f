"""Trust on the agent link: the CA's certificate, registration tokens for new hosts, certificates
provisioned to connected hosts, and hosts deleted (their certificates revoked)."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from ...errors import InvalidParameter
from ..registry import Param, command
from .common import success

if TYPE_CHECKING:
    from ..app import Context


@command(
    "listCaCertificate",
    "The certificate of the cloud's CA, which agents and the agent port's certificates chain to.",
    Param("provider", description="the CA provider (only root, the cloud's own)"),
    response="cacertificates",
)
async def list_ca_certificate(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    if args.get("provider", "root") not in ("root", ""):
        raise InvalidParameter("provider must be root (the cloud's own CA)")
    return {"cacertificates": {"certificate": ctx.services.trust.ca.pem}}


@command(
    "createAgentRegistrationToken",
    "Cumulo: a registration token with which new hosts' agents get their certificates "
    "(python -m agent run --token TOKEN). Shown once; only its hash is kept.",
    Param("uses", "integer", description="how many hosts may enroll with it (default 1, at most 100000)"),
    Param("validity", "integer", description="seconds it stays valid (default 86400, at most 31622400)"),
    admin=True,
    event="CA.TOKEN.CREATE",
    response="agentregistrationtoken",
)
async def create_agent_registration_token(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    uses, validity = int(args.get("uses", 1)), int(args.get("validity", 86400))
    if not 1 <= uses <= 100_000:
        raise InvalidParameter("uses must be from 1 to 100000")
    if not 60 <= validity <= 366 * 86400:
        raise InvalidParameter("validity must be from 60 seconds to 366 days")
    made = await ctx.services.trust.token(uses=uses, validity=datetime.timedelta(seconds=validity))
    await ctx.event("CA.TOKEN.CREATE", f"agent registration token for {uses} host(s)")
    return {"agentregistrationtoken": {"token": made.token, "uses": made.uses,
                                       "expires": made.expires.strftime("%Y-%m-%dT%H:%M:%S+0000")}}


@command(
    "provisionCertificate",
    "Gives a connected host a new key and certificate from the cloud's CA (the agent makes the key).",
    Param("hostid", "uuid", required=True, description="the host's id"),
    Param("reconnect", "boolean", description="the agent reconnects with the new certificate at once"),
    Param("provider", description="the CA provider (only root)"),
    admin=True,
    is_async=True,
    event="CA.CERTIFICATE.PROVISION",
)
async def provision_certificate(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    if args.get("provider", "root") not in ("root", ""):
        raise InvalidParameter("provider must be root (the cloud's own CA)")
    host = await ctx.services.hosts.find(ctx.caller, args["hostid"])
    reconnect = bool(args.get("reconnect", False))

    async def work() -> dict[str, Any]:
        serial = await ctx.services.hosts.provision_certificate(host, reconnect=reconnect)
        return success(f"certificate {serial} provisioned to host {host.name}")

    job = await ctx.submit(work, description=f"certificate for host {host.name}", instance_type="Host",
                           instance_id=host.id, instance_uuid=host.uuid)
    return {"jobid": job}


@command(
    "deleteHost",
    "Removes a host from the inventory and revokes its certificates: its agent can no longer connect. "
    "The host must hold no VMs and no volumes on its local storage, and be in maintenance, disabled "
    "or not connected, unless forced.",
    Param("id", "uuid", required=True, description="the host's id"),
    Param("forced", "boolean", description="remove it even while it is Up and enabled"),
    Param("forcedestroylocalstorage", "boolean", description="not supported: volumes on the host's local "
                                                             "storage must be expunged first"),
    admin=True,
    event="HOST.DELETE",
)
async def delete_host(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    if args.get("forcedestroylocalstorage"):
        raise InvalidParameter("forcedestroylocalstorage is not supported: expunge the volumes on the host's "
                               "local storage first")
    host, revoked = await ctx.services.hosts.remove(ctx.caller, args["id"], forced=bool(args.get("forced")))
    await ctx.event("HOST.DELETE", f"deleted host {host.name}; {len(revoked)} certificate(s) revoked",
                    resource_type="Host", resource_uuid=host.uuid)
    return success()
