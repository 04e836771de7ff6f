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
from ..registry import Param, command, refuse
from .common import (
    ICON,
    IPV6,
    LIVE_SCALING,
    MANAGED,
    NO_VR,
    OWNER,
    PAGING,
    PROJECT,
    VMWARE,
    VPCS,
    as_dict,
    date,
    listing,
    uuids,
)
from .tags import TAGS, with_tags

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
        "userid": r.user_uuid,
        "username": r.user_name,
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
        "projectid": r.project_uuid,  # (a project's VM: its account is the project's)
        "project": r.project_name,
    }
    if admin:  # CloudStack shows where a VM runs to admins only
        view.update(hostid=r.host_uuid, hostname=r.host_name, instancename=r.instance_name)
    return {k: v for k, v in view.items() if v is not None}


# Built once, values passed at execution (see services/events.py): a VM's view is read after every job.


VM_DETAILS = ("all", "group", "nics", "stats", "secgrp", "tmpl", "servoff", "diskoff", "backoff", "iso",
              "volume", "min", "affgrp")
# what each section of ``details`` adds to a VM's view (the rest is always there)
_SECTIONS = {
    "group": ("group", "groupid"),
    "nics": ("nic",),
    "secgrp": ("securitygroup",),
    "affgrp": ("affinitygroup",),
    "tmpl": ("templateid", "templatename", "templatedisplaytext"),
    "servoff": ("serviceofferingid", "serviceofferingname", "cpunumber", "cpuspeed", "memory"),
    "stats": ("cpuused", "networkkbsread", "networkkbswrite", "diskkbsread", "diskkbswrite", "diskioread",
              "diskiowrite", "memorykbs", "memoryintfreekbs", "memorytargetkbs"),
}


def details_wanted(args: dict[str, Any]) -> set[str]:
    """The sections ``details`` asks for (all of them by default; min: none)."""
    wanted = {d.lower() for d in args.get("details", ["all"])}
    if wanted - set(VM_DETAILS):
        raise InvalidParameter(f"details must be some of {', '.join(VM_DETAILS)}")
    return set(VM_DETAILS) if "all" in wanted else wanted


def stats_view(st: Any) -> dict[str, Any]:
    """A VM's latest statistics as CloudStack's VM responses show them."""
    return {"cpuused": f"{st.cpu_utilization:.2f}%", "networkkbsread": st.net_rx_bytes // 1024,
            "networkkbswrite": st.net_tx_bytes // 1024, "diskkbsread": st.disk_read_bytes // 1024,
            "diskkbswrite": st.disk_write_bytes // 1024, "diskioread": st.disk_read_ios,
            "diskiowrite": st.disk_write_ios, "memorykbs": st.memory_kbs,
            "memoryintfreekbs": st.memory_free_kbs, "memorytargetkbs": st.memory_target_kbs}


def _sectioned(view: dict[str, Any], wanted: set[str]) -> dict[str, Any]:
    for section, keys in _SECTIONS.items():
        if section not in wanted:
            for key in keys:
                view.pop(key, None)
    return view


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


async def view_of(ctx: Context, vm_id: int, *, tagged: bool = True) -> dict[str, Any]:
    """The VM as listVirtualMachines shows it to the caller (``tagged``: with its tags read; a VM just
    made has none unless it copied its template's)."""
    view = _render(await ctx.services.vms.listing(vm_id), admin=ctx.caller.is_admin)
    if tagged:
        view = (await with_tags(ctx, {"virtualmachine": [view]}, "virtualmachine", "UserVm"))[
            "virtualmachine"][0]
    return view


async def _view_even_removed(ctx: Context, vm_id: int) -> dict[str, Any]:
    listing = await ctx.services.vms.listing(vm_id)
    view = _render(listing, admin=ctx.caller.is_admin)
    if listing.row.removed is not None:
        view["state"] = "Expunging"  # its last state as clients see it: gone
    return view


VM_FILTERS = (
    Param("id", "uuid", description="the VM's id"),
    Param("ids", "list", description="comma-separated VM ids"),
    Param("name", description="the VM's name"),
    Param(
        "state", description="Running, Stopped, Starting, Stopping, Migrating, Destroyed, Expunging, Error"
    ),
    Param("zoneid", "uuid", description="the zone's id"),
    Param("podid", "uuid", description="VMs running in this pod (admins)"),
    Param("clusterid", "uuid", description="VMs running in this cluster (admins)"),
    Param("hostid", "uuid", description="the host's id (admins)"),
    Param("storageid", "uuid", description="VMs with a volume on this storage pool"),
    Param("templateid", "uuid", description="the template's id"),
    Param("serviceofferingid", "uuid", description="the service offering's id"),
    Param("networkid", "uuid", description="VMs with a NIC on this network"),
    Param("forvirtualnetwork", "boolean", description="true: VMs whose default NIC is on an isolated "
                                                      "network; false: on a shared one"),
    Param("affinitygroupid", "uuid", description="VMs in this affinity group"),
    Param("securitygroupid", "uuid", description="VMs in this security group"),
    Param("groupid", "uuid", description="VMs in this instance group"),
    Param("keypair", description="VMs with this SSH key pair"),
    Param("haenable", "boolean", description="VMs with HA on (true) or off (false)"),
    Param("hypervisor", description="KVM or Simulator"),
    Param("displayvm", "boolean", description="VMs users see (true) or not (false)"),
    Param("details", "list", description=f"what each VM shows: some of {', '.join(VM_DETAILS)} (default "
                                          "all)"),
    Param("userdata", "boolean", description="show each VM's user data (Base64)"),
    Param("retrieveonlyresourcecount", "boolean", description="answer the count alone"),
    ICON,
    TAGS,
    *refuse("the statistics kept are the latest only: there is nothing to accumulate", "accumulate",
            harmless=("false",), applies=True),
    *refuse("autoscaling is not supported yet", "autoscalevmgroupid", applies=True),
    *refuse("VM backups are not supported yet", "backupofferingid", applies=True),
    *refuse("ISOs are not supported yet", "isoid", applies=True),
    *refuse("VNF appliances are not supported yet", "isvnf", harmless=("false",), applies=True),
    *refuse(VPCS, "vpcid", applies=True),
    Param("userid", "uuid", description="VMs this user deployed"),
    *OWNER,
    *PAGING,
)


async def list_vms(ctx: Context, args: dict[str, Any], *, metrics: bool = False) -> dict[str, Any]:
    """listVirtualMachines (and, ``metrics``, listVirtualMachinesMetrics): the VMs ``args`` asks for."""
    wanted = details_wanted(args)
    if metrics:
        wanted.add("stats")
    found, total = await ctx.services.vms.matching(ctx.caller, args)
    if args.get("retrieveonlyresourcecount"):
        return {"count": total}
    stats = await ctx.services.metrics.vm_stats([f.row.id for f in found]) if "stats" in wanted else {}
    items = []
    for f in found:
        view = _render(f, admin=ctx.caller.is_admin)
        if f.row.id in stats and f.row.state == "Running":
            view.update(stats_view(stats[f.row.id]))
        if args.get("userdata"):
            text = await ctx.services.vms.user_data(f.row)
            if text:
                view["userdata"] = text
        items.append(_sectioned(view, wanted))
    return await with_tags(ctx, listing("virtualmachine", items, total), "virtualmachine", "UserVm")


@command(
    "listVirtualMachines",
    "Lists virtual machines: the caller's own (admins: every account's with listall=true), with their "
    "latest statistics when they run.",
    *VM_FILTERS,
    response="virtualmachine",
)
async def list_virtual_machines(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return await list_vms(ctx, args)


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
    Param("userdatadetails", "map", description="values of the registered user data's parameters: the guest "
                                                "finds them in its config drive's meta_data.json (meta)"),
    Param("keypair", description="an SSH key pair's name: its public key goes to the guest"),
    Param("keypairs", "list", description="comma-separated SSH key pair names"),
    Param("securitygroupids", "list",
          description="comma-separated security group ids (networks with security groups; default: the "
                      "account's default group)"),
    Param("securitygroupnames", "list", description="comma-separated security group names"),
    Param("details", "map", description="details kept with the VM; cpuNumber, cpuSpeed and memory size a "
                                         "custom offering's VM, rootdisksize its root disk (GB)"),
    Param("hypervisor", description="KVM or Simulator (must be the template's)"),
    Param("podid", "uuid", description="place it in this pod (root admins)"),
    Param("clusterid", "uuid", description="place it in this cluster (root admins)"),
    Param("deploymentplanner", description="the planner for this deploy (root admins): FirstFitPlanner, "
                                           "UserDispersingPlanner or UserConcentratedPodPlanner"),
    Param("group", description="the VM's instance group, by name (made when the account has none so named)"),
    Param("displayvm", "boolean", description="whether users see the VM (default true; root admins)"),
    Param("macaddress", description="the default NIC's MAC address (unicast, not in use)"),
    Param("size", "long", description="a custom disk offering's data disk size (GB)"),
    Param("overridediskofferingid", "uuid", description="the root disk's provisioning, cache mode and I/O "
                                                        "limits from this disk offering"),
    Param("password", description="the guest's password (a password-enabled template; default: one is "
                                  "made and shown once)", length=64),
    Param("customid", "uuid", description="the VM's id (root admins)"),
    Param("iodriverpolicy", description="the disks' I/O: native, threads or io_uring"),
    Param("iothreadsenabled", "boolean", description="give the disks an I/O thread"),
    Param("nicmultiqueuenumber", "integer", description="virtio queues of each NIC (1 to 64)"),
    Param("nicpackedvirtqueuesenabled", "boolean", description="packed virtqueues on the NICs"),
    Param("boottype", description="BIOS (the only boot type here)"),
    Param("bootmode", description="LEGACY (with BIOS)"),
    Param("copyimagetags", "boolean", description="give the VM the template's tags"),
    *refuse(IPV6, "ip6address"),
    *refuse(VMWARE, "bootintosetup", "properties", "nicnetworklist", "datadiskofferinglist"),
    *refuse(NO_VR, "dhcpoptionsnetworklist"),
    *refuse("there is no graphical console (VNC) whose keyboard to set", "keyboard"),
    *refuse("extra libvirt configuration is not enabled (CloudStack's default)", "extraconfig",
            applies=True),
    *refuse(LIVE_SCALING, "dynamicscalingenabled", harmless=("false",), applies=True),
    Param("account", description="deploy for this account (admins, with domainid)"),
    Param("domainid", "uuid", description="the account's domain"),
    PROJECT,
    is_async=True,
    event="VM.CREATE",
    response="virtualmachine",
)
async def deploy_virtual_machine(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    _check_deploy_args(args)
    if args.get("boottype", "BIOS").upper() != "BIOS" or args.get("bootmode", "LEGACY").upper() != "LEGACY":
        raise InvalidParameter("UEFI boot is not supported yet: boottype BIOS, bootmode LEGACY only")
    if ("customid" in args or "displayvm" in args) and not ctx.caller.is_admin:
        raise PermissionDenied("only root admins may set customid or displayvm")
    details = _map(args.get("details", []))
    details.update(_kvm_details(args))
    if "userdatadetails" in args:
        details["userdatadetails"] = orjson.dumps(_map(args["userdatadetails"])).decode()
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
        project_uuid=args.get("projectid", ""),
        name=args.get("name", ""),
        display_name=args.get("displayname", ""),
        keypairs=tuple([*args.get("keypairs", []), *([args["keypair"]] if "keypair" in args else [])]),
        user_data=args.get("userdata"),
        user_data_uuid=args.get("userdataid", ""),
        security_group_uuids=tuple(uuids(args, "securitygroupids")),
        security_group_names=tuple(args.get("securitygroupnames", [])),
        pod_uuid=args.get("podid", ""),
        cluster_uuid=args.get("clusterid", ""),
        deployment_planner=args.get("deploymentplanner", ""),
        details=tuple(details.items()),
        group=args.get("group", ""),
        display=args.get("displayvm", True),
        mac_address=args.get("macaddress", ""),
        size_gb=args.get("size", 0),
        override_disk_offering_uuid=args.get("overridediskofferingid", ""),
        hypervisor=args.get("hypervisor", ""),
        password=args.get("password"),
        custom_id=args.get("customid", ""),
    )
    # Admit: the VM's rows (and, when a host was found, its reservation there) in the job's own
    # transaction; act and settle run as the job.
    deployment = await ctx.services.vms.deploy(ctx.caller, request)

    async def work() -> dict[str, Any]:
        vm_id = await deployment.run()
        if args.get("copyimagetags"):
            await ctx.services.tags.copy("Template", args["templateid"], "UserVm", deployment.vm_uuid)
        copied = bool(args.get("copyimagetags"))
        return {"virtualmachine": await view_of(ctx, vm_id, tagged=copied)}

    job = await ctx.submit(
        work,
        description=f"deployed VM {deployment.name}",
        instance_type="VirtualMachine",
        instance_uuid=deployment.vm_uuid,
        prepare=deployment.admit,
    )
    answer = {"id": deployment.vm_uuid, "jobid": job}
    if deployment.password is not None and "password" not in args:
        answer["password"] = deployment.password  # (made here: the caller sees it this once)
    return answer


# VM details the cloud writes itself (from their own parameters), which a details map may not name
RESERVED_DETAILS = frozenset({"io.policy", "iothreads", "nic.queues", "nic.packed", "Encrypted.Password",
                              "userdatadetails", "guest.os.type"})


def _map(entries: list[dict[str, str]]) -> dict[str, str]:
    """A map parameter's entries as one dict (``details[0].key=k&details[0].value=v`` or
    ``details[0].k=v``)."""
    out = as_dict(entries)
    reserved = sorted(RESERVED_DETAILS & set(out))
    if reserved:
        raise InvalidParameter(f"details {reserved[0]} is the cloud's own (set it with its parameter)")
    return out


IO_POLICIES = ("native", "threads", "io_uring")


def _kvm_details(args: dict[str, Any]) -> dict[str, str]:
    """The KVM tuning a deploy asks for, as VM details (the host's domain XML follows them)."""
    out: dict[str, str] = {}
    if "iodriverpolicy" in args:
        if args["iodriverpolicy"] not in IO_POLICIES:
            raise InvalidParameter(f"iodriverpolicy must be one of {', '.join(IO_POLICIES)}")
        out["io.policy"] = args["iodriverpolicy"]
    if args.get("iothreadsenabled"):
        out["iothreads"] = "1"
    if "nicmultiqueuenumber" in args:
        if not 1 <= args["nicmultiqueuenumber"] <= 64:
            raise InvalidParameter("nicmultiqueuenumber must be between 1 and 64")
        out["nic.queues"] = str(args["nicmultiqueuenumber"])
    if args.get("nicpackedvirtqueuesenabled"):
        out["nic.packed"] = "true"
    return out


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
    Param("podid", "uuid", description="start it in this pod (admins)"),
    Param("clusterid", "uuid", description="start it in this cluster (admins)"),
    Param("considerlasthost", "boolean", description="try the host it last ran on first (default true)"),
    Param("deploymentplanner", description="the planner for this start (root admins)"),
    *refuse(VMWARE, "bootintosetup"),
    is_async=True,
    event="VM.START",
    response="virtualmachine",
)
async def start_virtual_machine(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    vm = await _vm(ctx, args["id"])
    if ("hostid" in args or "podid" in args or "clusterid" in args or "deploymentplanner" in args) \
            and not ctx.caller.is_admin:
        raise PermissionDenied("only admins may choose the host, pod, cluster or planner")
    host = args.get("hostid", "")

    async def start() -> None:
        await ctx.services.vms.start(ctx.caller, vm.id, host, pod_uuid=args.get("podid", ""),
                                     cluster_uuid=args.get("clusterid", ""),
                                     last_host=args.get("considerlasthost", True),
                                     planner=args.get("deploymentplanner", ""))

    return await _vm_job(ctx, vm, "started", start)


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
    "Reboots a running VM: the guest is asked to restart, or reset at once with forced=true.",
    Param("id", "uuid", required=True, description="the VM's id"),
    Param("forced", "boolean", description="reset it at once (a stop and a start) rather than ask the guest"),
    *refuse(VMWARE, "bootintosetup"),
    is_async=True,
    event="VM.REBOOT",
    response="virtualmachine",
)
async def reboot_virtual_machine(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    vm = await _vm(ctx, args["id"])
    if args.get("forced"):
        async def reset() -> None:
            await ctx.services.vms.stop(vm.id, forced=True)
            await ctx.services.vms.start(ctx.caller, vm.id)

        return await _vm_job(ctx, vm, "rebooted (forced)", reset)
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
    Param("expunge", "boolean", description="expunge it now (admins; users with "
                                            "allow.user.expunge.recover.vm)"),
    Param("volumeids", "list", description="comma-separated ids of its data volumes to delete with it "
                                           "(detached, then deleted)"),
    is_async=True,
    event="VM.DESTROY",
    response="virtualmachine",
)
async def destroy_virtual_machine(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    vm = await _vm(ctx, args["id"])
    expunge = args.get("expunge", False)
    if expunge:
        await _may_expunge_or_recover(ctx, "expunge")

    data = [await ctx.services.volumes.find(ctx.caller, v) for v in uuids(args, "volumeids")]
    for volume in data:
        if volume.vm_id != vm.id or volume.type != "DATADISK":
            raise InvalidParameter(f"volume {volume.uuid} is not a data volume of VM {vm.uuid}")

    async def destroy() -> None:
        for volume in data:  # (as CloudStack: detached and deleted first)
            await ctx.services.volumes.detach(volume.id)
            await ctx.services.volumes.delete(await ctx.services.volumes.get_row(volume.id))
        await ctx.services.vms.destroy(ctx.caller, vm.id, expunge=expunge)

    return await _vm_job(ctx, vm, "destroyed", destroy, view=_view_even_removed)


async def _may_expunge_or_recover(ctx: Context, what: str) -> None:
    await ctx.services.vms.may_expunge_or_recover(ctx.caller, what)


@command(
    "recoverVirtualMachine",
    "Recovers a destroyed VM (before it is expunged): it comes back Stopped.",
    Param("id", "uuid", required=True, description="the VM's id"),
    event="VM.RESTORE",
    response="virtualmachine",
)
async def recover_virtual_machine(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    vm = await _vm(ctx, args["id"])
    await _may_expunge_or_recover(ctx, "recover")
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
    is_async=True,
    event="VM.EXPUNGE",
)
async def expunge_virtual_machine(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    await _may_expunge_or_recover(ctx, "expunge")
    vm = await _vm(ctx, args["id"])
    return await _vm_job(ctx, vm, "expunged", lambda: ctx.services.vms.expunge(vm.id), view=None)


@command(
    "migrateVirtualMachine",
    "Live-migrates a running VM to the given host, or to one the planner chooses.",
    Param("virtualmachineid", "uuid", required=True, description="the VM's id"),
    Param("hostid", "uuid", description="the destination host (default: the planner's choice)"),
    Param("autoselect", "boolean", description="let the planner choose the host when none is given (the "
                                               "default; false needs hostid)"),
    *refuse("storage migration is not supported yet: volumes stay on their pool", "storageid",
            applies=True),
    admin=True,
    is_async=True,
    event="VM.MIGRATE",
    response="virtualmachine",
)
async def migrate_virtual_machine(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    if args.get("autoselect") is False and "hostid" not in args:
        raise InvalidParameter("autoselect=false needs hostid")
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
    Param("userdatadetails", "map", description="values of the registered user data's parameters"),
    Param("group", description="its instance group, by name (empty: none)"),
    Param("displayvm", "boolean", description="whether users see it (root admins)"),
    Param("details", "map", description="details to keep with it (added to or replacing its own)"),
    Param("cleanupdetails", "boolean", description="remove its details (but a custom offering's sizes)"),
    Param("ostypeid", "uuid", description="its guest OS type (the VM must be Stopped)"),
    Param("instancename", description="its name on its host (the VM must be Stopped; root admins)"),
    Param("customid", "uuid", description="its new id (root admins)"),
    Param("securitygroupids", "list", description="its security groups (the VM must be Stopped)"),
    Param("securitygroupnames", "list", description="its security groups, by name"),
    Param("isdynamicallyscalable", "boolean", description="false only: scaling a running VM is not "
                                                          "supported"),
    *refuse("extra libvirt configuration is not enabled (CloudStack's default)", "extraconfig",
            applies=True),
    *refuse(NO_VR, "dhcpoptionsnetworklist"),
    event="VM.UPDATE",
    response="virtualmachine",
)
async def update_virtual_machine(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    vm = await _vm(ctx, args["id"])
    if "name" in args:
        _check_deploy_args({"name": args["name"]})
    if ("displayvm" in args or "instancename" in args or "customid" in args) and not ctx.caller.is_admin:
        raise PermissionDenied("only root admins may set displayvm, instancename or customid")
    if args.get("isdynamicallyscalable"):
        raise InvalidParameter(f"isdynamicallyscalable=true: {LIVE_SCALING}")
    values = await ctx.services.vms.update(
        ctx.caller, vm, name=args.get("name"), display_name=args.get("displayname"),
        ha_enabled=args.get("haenable"), user_data=args.get("userdata"),
        user_data_uuid=args.get("userdataid", ""),
        group=args.get("group"), display=args.get("displayvm"),
        details=_map(args["details"]) if "details" in args else None,
        cleanup_details=args.get("cleanupdetails", False),
        user_data_details=_map(args["userdatadetails"]) if "userdatadetails" in args else None,
        os_type_uuid=args.get("ostypeid", ""), instance_name=args.get("instancename", ""),
        custom_id=args.get("customid", ""),
        security_group_uuids=uuids(args, "securitygroupids") if "securitygroupids" in args else None,
        security_group_names=args.get("securitygroupnames"),
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
    Param("details", "map", description="a custom offering's cpuNumber, cpuSpeed and memory for this VM"),
    *refuse(LIVE_SCALING, "automigrate", harmless=("false",), applies=True),
    *refuse("shrinking a root disk is not supported", "shrinkok", harmless=("false",), applies=True),
    *refuse(MANAGED, "miniops", "maxiops"),
    event="VM.UPGRADE",
    response="virtualmachine",
)
async def change_service(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    vm = await _vm(ctx, args["id"])
    offering = await ctx.services.vms.change_offering(ctx.caller, vm, args["serviceofferingid"],
                                                      _map(args.get("details", [])))
    await ctx.event(
        "VM.UPGRADE",
        f"VM {vm.name or vm.instance_name} now has offering {offering.name}",
        resource_type="VirtualMachine",
        resource_uuid=vm.uuid,
    )
    return {"virtualmachine": await view_of(ctx, vm.id)}
