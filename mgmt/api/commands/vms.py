"""Virtual machines: deploy, list, start, stop, reboot, destroy, recover, expunge, migrate, update,
change of service offering. The long operations run as async jobs (one at a time per VM) on the
orchestration engine; their results are the VM as listVirtualMachines shows it."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import orjson

from ...errors import InvalidParameter, PermissionDenied
from ...services.guest_data import check_user_data
from ...services.vms import HIDDEN_DETAILS, VM_STATES, DeployRequest, VmListing
from ..registry import Param, command
from .common import OWNER, PAGING, date, listing, uuids

if TYPE_CHECKING:
    from ..app import Context

GIB = 2**30
# RFC 1123 host names, as CloudStack checks them: letters, digits and hyphens, not starting with a digit
# or a hyphen, at most 63 characters.
_HOSTNAME = re.compile(r"^[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_API_STATES = VM_STATES - {"Unknown"}


def vm_view(
    r: Any, nic_views: list[dict[str, Any]], group_views: list[dict[str, Any]], *, admin: bool
) -> dict[str, Any]:
    # "Unknown" (its host vanished) is not a state CloudStack clients accept; until HA settles the VM
    # it is shown as Error.
    state = r.state if r.state in _API_STATES else "Error"
    view: dict[str, Any] = {
        "id": r.uuid,
        "name": r.name or r.instance_name,
        "displayname": r.display_name,
        "state": state,
        "zoneid": r.zone_uuid,
        "zonename": r.zone_name,
        "templateid": r.template_uuid,
        "templatename": r.template_name,
        "templatedisplaytext": r.template_text,
        "serviceofferingid": r.offering_uuid,
        "serviceofferingname": r.offering_name,
        "cpunumber": r.cpus,
        "cpuspeed": r.cpu_speed_mhz,
        "memory": r.memory_mb,
        "created": date(r.created),
        "lastupdated": date(r.state_changed),
        "hypervisor": r.host_hypervisor or r.template_hypervisor,
        "account": r.account_name,
        "domainid": r.domain_uuid,
        "domain": r.domain_name,
        "haenable": r.ha_enabled,
        "passwordenabled": False,
        "isdynamicallyscalable": False,
        "rootdeviceid": 0,
        "rootdevicetype": "ROOT",
        "guestosid": None,
        "nic": nic_views,
        "securitygroup": [],
        "affinitygroup": group_views,
        "tags": [],
        "details": {k: v for k, v in orjson.loads(r.details or "{}").items() if k not in HIDDEN_DETAILS},
        "group": r.group_name,
        "groupid": r.group_uuid,
        "displayvm": r.display,
        "keypairs": r.keypairs or None,
        "userdataid": r.user_data_uuid,
        "userdataname": r.user_data_name,
    }
    if admin:  # CloudStack shows where a VM runs to admins only
        view.update(hostid=r.host_uuid, hostname=r.host_name, instancename=r.instance_name)
    return {k: v for k, v in view.items() if v is not None}


# Built once, values passed at execution (see services/events.py): a VM's view is read after every job.


def _render(listing: VmListing, *, admin: bool) -> dict[str, Any]:
    nic_views = [
        {
            "id": n.uuid,
            "networkid": n.network_uuid,
            "networkname": n.network_name,
            "ipaddress": n.ip_address,
            "netmask": n.netmask,
            "gateway": n.gateway,
            "macaddress": n.mac_address,
            "isdefault": n.is_default,
            "traffictype": "Guest",
            "type": "Shared",
            "broadcasturi": f"vlan://{n.vlan}",
            "deviceid": str(n.device_id),
        }
        for n in listing.nics
    ]
    group_views = [{"id": g.uuid, "name": g.name, "type": g.type, "description": g.description}
                   for g in listing.groups]
    view = vm_view(listing.row, nic_views, group_views, admin=admin)
    view["securitygroup"] = [{"id": g.uuid, "name": g.name, "description": g.description}
                             for g in listing.security_groups]
    return view


async def view_of(ctx: Context, vm_id: int) -> dict[str, Any]:
    """The VM as listVirtualMachines shows it to the caller."""
    return _render(await ctx.services.vms.listing(vm_id), admin=ctx.caller.is_admin)


async def _view_even_removed(ctx: Context, vm_id: int) -> dict[str, Any]:
    listing = await ctx.services.vms.listing(vm_id)
    view = _render(listing, admin=ctx.caller.is_admin)
    if listing.row.removed is not None:
        view["state"] = "Expunging"  # its last state as clients see it: gone
    return view


@command(
    "listVirtualMachines",
    "Lists virtual machines: the caller's own (admins: every account's with listall=true).",
    Param("id", "uuid", description="the VM's id"),
    Param("ids", "list", description="comma-separated VM ids"),
    Param("name", description="the VM's name"),
    Param(
        "state", description="Running, Stopped, Starting, Stopping, Migrating, Destroyed, Expunging, Error"
    ),
    Param("zoneid", "uuid", description="the zone's id"),
    Param("hostid", "uuid", description="the host's id (admins)"),
    Param("templateid", "uuid", description="the template's id"),
    Param("serviceofferingid", "uuid", description="the service offering's id"),
    Param("networkid", "uuid", description="VMs with a NIC on this network"),
    Param("affinitygroupid", "uuid", description="VMs in this affinity group"),
    Param("details", description="accepted for compatibility (every detail is always listed)"),
    Param("isrecursive", "boolean", description="accepted for compatibility"),
    *OWNER,
    *PAGING,
    response="virtualmachine",
)
async def list_virtual_machines(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    found, total = await ctx.services.vms.matching(ctx.caller, args)
    return listing("virtualmachine", [_render(f, admin=ctx.caller.is_admin) for f in found], total)


# --- deploy --------------------------------------------------------------------------------------------


def _check_deploy_args(args: dict[str, Any]) -> None:
    if "name" in args and not _HOSTNAME.match(args["name"]):
        raise InvalidParameter(
            "name must be a host name: letters, digits and hyphens, starting with a letter, "
            "at most 63 characters"
        )
    if "rootdisksize" in args and not 1 <= args["rootdisksize"] <= 65536:
        raise InvalidParameter("rootdisksize must be between 1 and 65536 (GB)")
    if "userdata" in args:
        check_user_data(args["userdata"])


@command(
    "deployVirtualMachine",
    "Creates a VM and starts it (unless startvm=false): placement, addresses, volumes, then the host.",
    Param("zoneid", "uuid", required=True, description="the zone's id"),
    Param("serviceofferingid", "uuid", required=True, description="the service offering's id"),
    Param("templateid", "uuid", required=True, description="the template's id"),
    Param("name", description="the guest's host name (letters, digits, hyphens)"),
    Param("displayname", description="the name shown for the VM"),
    Param("networkids", "list", description="comma-separated network ids; the first is the default NIC's"),
    Param("iptonetworklist", "map", description="networkid and ip pairs: iptonetworklist[0].networkid=..."),
    Param("ipaddress", description="the address on the default network"),
    Param("startvm", "boolean", description="start it (default true)"),
    Param("hostid", "uuid", description="the host to start it on (admins)"),
    Param("rootdisksize", "long", description="root disk size in GB (default: the template's)"),
    Param("diskofferingid", "uuid", description="a data disk of this offering"),
    Param("affinitygroupids", "list", description="comma-separated affinity group ids"),
    Param("affinitygroupnames", "list", description="comma-separated affinity group names"),
    Param("userdata", description="user data for the guest's config drive, Base64 (at most 32 KB decoded)",
          length=43692),
    Param("userdataid", "uuid", description="registered user data instead (registerUserData)"),
    Param("userdatadetails", "map", description="accepted for compatibility (no variables are filled in)"),
    Param("keypair", description="an SSH key pair's name: its public key goes to the guest"),
    Param("keypairs", "list", description="comma-separated SSH key pair names"),
    Param("securitygroupids", "list",
          description="comma-separated security group ids (networks with security groups; default: the "
                      "account's default group)"),
    Param("securitygroupnames", "list", description="comma-separated security group names"),
    Param("details", "map", description="accepted for compatibility"),
    Param("hypervisor", description="accepted for compatibility (the template decides)"),
    Param("account", description="deploy for this account (admins, with domainid)"),
    Param("domainid", "uuid", description="the account's domain"),
    is_async=True,
    event="VM.CREATE",
    response="virtualmachine",
)
async def deploy_virtual_machine(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    _check_deploy_args(args)
    ip_to_network = []
    for entry in args.get("iptonetworklist", []):
        if "networkid" not in entry:
            raise InvalidParameter("each iptonetworklist entry needs a networkid")
        ip_to_network.append((entry["networkid"], entry.get("ip", "")))
    request = DeployRequest(
        zone_uuid=args["zoneid"],
        service_offering_uuid=args["serviceofferingid"],
        template_uuid=args["templateid"],
        network_uuids=tuple(uuids(args, "networkids")),
        ip_to_network=tuple(ip_to_network),
        ip_address=args.get("ipaddress", ""),
        start=args.get("startvm", True),
        host_uuid=args.get("hostid", ""),
        root_disk_gb=args.get("rootdisksize", 0),
        disk_offering_uuid=args.get("diskofferingid", ""),
        affinity_group_uuids=tuple(uuids(args, "affinitygroupids")),
        affinity_group_names=tuple(args.get("affinitygroupnames", [])),
        account_name=args.get("account", ""),
        domain_uuid=args.get("domainid", ""),
        name=args.get("name", ""),
        display_name=args.get("displayname", ""),
        keypairs=tuple([*args.get("keypairs", []), *([args["keypair"]] if "keypair" in args else [])]),
        user_data=args.get("userdata"),
        user_data_uuid=args.get("userdataid", ""),
        security_group_uuids=tuple(uuids(args, "securitygroupids")),
        security_group_names=tuple(args.get("securitygroupnames", [])),
    )
    # Admit: the VM's rows (and, when a host was found, its reservation there) in the job's own
    # transaction; act and settle run as the job.
    deployment = await ctx.services.vms.deploy(ctx.caller, request)

    async def work() -> dict[str, Any]:
        vm_id = await deployment.run()
        return {"virtualmachine": await view_of(ctx, vm_id)}

    job = await ctx.submit(
        work,
        description=f"deployed VM {deployment.name}",
        instance_type="VirtualMachine",
        instance_uuid=deployment.vm_uuid,
        prepare=deployment.admit,
    )
    return {"id": deployment.vm_uuid, "jobid": job}


# --- one VM at a time ------------------------------------------------------------------------------------


CONSOLE_MAX_LINES = 1000


async def _vm(ctx: Context, ident: str) -> Any:
    return await ctx.services.vms.find(ctx.caller, ident)


async def _vm_job(ctx: Context, vm: Any, what: str, operation: Any, *, view: Any = view_of) -> dict[str, Any]:
    """Run ``operation`` as the VM's job; its result is the VM as ``view`` shows it afterwards (None:
    ``{"success": true}``)."""

    async def work() -> dict[str, Any]:
        await operation()
        if view is None:
            return {"success": True}
        return {"virtualmachine": await view(ctx, vm.id)}

    job = await ctx.submit(
        work,
        description=f"{what} VM {vm.name or vm.instance_name}",
        instance_type="VirtualMachine",
        instance_id=vm.id,
        instance_uuid=vm.uuid,
    )
    return {"jobid": job}


@command(
    "startVirtualMachine",
    "Starts a stopped VM (on its last host when it still has room).",
    Param("id", "uuid", required=True, description="the VM's id"),
    Param("hostid", "uuid", description="the host to start it on (admins)"),
    is_async=True,
    event="VM.START",
    response="virtualmachine",
)
async def start_virtual_machine(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    vm = await _vm(ctx, args["id"])
    if "hostid" in args and not ctx.caller.is_admin:
        raise PermissionDenied("only admins may choose the host")
    host = args.get("hostid", "")
    return await _vm_job(ctx, vm, "started", lambda: ctx.services.vms.start(ctx.caller, vm.id, host))


@command(
    "stopVirtualMachine",
    "Stops a running VM: a clean shutdown, or at once with forced=true.",
    Param("id", "uuid", required=True, description="the VM's id"),
    Param("forced", "boolean", description="stop it at once, even when the host does not answer"),
    is_async=True,
    event="VM.STOP",
    response="virtualmachine",
)
async def stop_virtual_machine(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    vm = await _vm(ctx, args["id"])
    forced = args.get("forced", False)
    return await _vm_job(ctx, vm, "stopped", lambda: ctx.services.vms.stop(vm.id, forced=forced))


@command(
    "rebootVirtualMachine",
    "Reboots a running VM.",
    Param("id", "uuid", required=True, description="the VM's id"),
    is_async=True,
    event="VM.REBOOT",
    response="virtualmachine",
)
async def reboot_virtual_machine(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    vm = await _vm(ctx, args["id"])
    return await _vm_job(ctx, vm, "rebooted", lambda: ctx.services.vms.reboot(vm.id))


@command(
    "getVirtualMachineConsoleLog",
    "Cumulo extension (CloudStack has no such command): the last lines of a VM's serial console, read "
    "from the host it runs on, or from its last host when it is stopped (that run's output).",
    Param("id", "uuid", required=True, description="the VM's id"),
    Param("lines", "integer", description=f"lines from the end (1 to {CONSOLE_MAX_LINES}, default 100)"),
    response="virtualmachineconsolelog",
)
async def get_console_log(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    lines = args.get("lines", 100)
    if not 1 <= lines <= CONSOLE_MAX_LINES:
        raise InvalidParameter(f"lines must be between 1 and {CONSOLE_MAX_LINES}")
    vm = await _vm(ctx, args["id"])
    text, host_uuid = await ctx.services.vms.console_log(vm.id, lines)
    view = {"id": vm.uuid, "name": vm.display_name, "lines": text.count("\n"), "log": text}
    if ctx.caller.is_admin:  # as listVirtualMachines: only admins see hosts and instance names
        view.update(instancename=vm.instance_name, hostid=host_uuid)
    return {"virtualmachineconsolelog": view}


@command(
    "destroyVirtualMachine",
    "Destroys a VM: stopped and kept (recoverable) until the expunge delay passes, or expunged at once "
    "with expunge=true (admins).",
    Param("id", "uuid", required=True, description="the VM's id"),
    Param("expunge", "boolean", description="expunge it now (admins)"),
    is_async=True,
    event="VM.DESTROY",
    response="virtualmachine",
)
async def destroy_virtual_machine(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    vm = await _vm(ctx, args["id"])
    expunge = args.get("expunge", False)
    if expunge and not ctx.caller.is_admin:
        raise PermissionDenied("only admins may expunge a VM at once")

    return await _vm_job(
        ctx,
        vm,
        "destroyed",
        lambda: ctx.services.vms.destroy(ctx.caller, vm.id, expunge=expunge),
        view=_view_even_removed,
    )


@command(
    "recoverVirtualMachine",
    "Recovers a destroyed VM (before it is expunged): it comes back Stopped.",
    Param("id", "uuid", required=True, description="the VM's id"),
    event="VM.RESTORE",
    response="virtualmachine",
)
async def recover_virtual_machine(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    vm = await _vm(ctx, args["id"])
    await ctx.services.vms.recover(vm)
    await ctx.event(
        "VM.RESTORE",
        f"recovered VM {vm.name or vm.instance_name}",
        resource_type="VirtualMachine",
        resource_uuid=vm.uuid,
    )
    return {"virtualmachine": await view_of(ctx, vm.id)}


@command(
    "expungeVirtualMachine",
    "Expunges a destroyed VM now: its volumes are deleted and its addresses freed.",
    Param("id", "uuid", required=True, description="the VM's id"),
    admin=True,
    is_async=True,
    event="VM.EXPUNGE",
)
async def expunge_virtual_machine(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    vm = await _vm(ctx, args["id"])
    return await _vm_job(ctx, vm, "expunged", lambda: ctx.services.vms.expunge(vm.id), view=None)


@command(
    "migrateVirtualMachine",
    "Live-migrates a running VM to the given host, or to one the planner chooses.",
    Param("virtualmachineid", "uuid", required=True, description="the VM's id"),
    Param("hostid", "uuid", description="the destination host (default: the planner's choice)"),
    Param("storageid", "uuid", description="not supported: volumes stay on their pool"),
    admin=True,
    is_async=True,
    event="VM.MIGRATE",
    response="virtualmachine",
)
async def migrate_virtual_machine(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    if "storageid" in args:
        raise InvalidParameter("storage migration is not supported: give hostid (or nothing) only")
    vm = await _vm(ctx, args["virtualmachineid"])
    host = args.get("hostid", "")
    return await _vm_job(ctx, vm, "migrated", lambda: ctx.services.vms.migrate(ctx.caller, vm.id, host))


@command(
    "updateVirtualMachine",
    "Changes a VM's name, display name, HA flag or user data.",
    Param("id", "uuid", required=True, description="the VM's id"),
    Param("name", description="the new host name (the VM must be Stopped)"),
    Param("displayname", description="the new display name"),
    Param("haenable", "boolean", description="whether HA restarts it when its host fails"),
    Param("userdata", description="new user data, Base64 (the guest gets it when it next starts)",
          length=43692),
    Param("userdataid", "uuid", description="registered user data instead (registerUserData)"),
    event="VM.UPDATE",
    response="virtualmachine",
)
async def update_virtual_machine(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    vm = await _vm(ctx, args["id"])
    if "name" in args:
        _check_deploy_args({"name": args["name"]})
    values = await ctx.services.vms.update(
        ctx.caller, vm, name=args.get("name"), display_name=args.get("displayname"),
        ha_enabled=args.get("haenable"), user_data=args.get("userdata"),
        user_data_uuid=args.get("userdataid", ""),
    )
    await ctx.event(
        "VM.UPDATE",
        f"updated VM {vm.name or vm.instance_name}: {', '.join(values) or 'nothing'}",
        resource_type="VirtualMachine",
        resource_uuid=vm.uuid,
    )
    return {"virtualmachine": await view_of(ctx, vm.id)}


@command(
    "changeServiceForVirtualMachine",
    "Gives a stopped VM another service offering.",
    Param("id", "uuid", required=True, description="the VM's id"),
    Param("serviceofferingid", "uuid", required=True, description="the new service offering's id"),
    event="VM.UPGRADE",
    response="virtualmachine",
)
async def change_service(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    vm = await _vm(ctx, args["id"])
    offering = await ctx.services.vms.change_offering(ctx.caller, vm, args["serviceofferingid"])
    await ctx.event(
        "VM.UPGRADE",
        f"VM {vm.name or vm.instance_name} now has offering {offering.name}",
        resource_type="VirtualMachine",
        resource_uuid=vm.uuid,
    )
    return {"virtualmachine": await view_of(ctx, vm.id)}
