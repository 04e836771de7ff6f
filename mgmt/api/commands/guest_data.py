"""What guests learn at boot from their config drive: SSH key pairs (make, register, list, delete, reset a
VM's) and user data (register, list, delete, read a VM's)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import InvalidParameter
from ...services.guest_data import KeyPair
from ..registry import Param, command
from .common import OWNER, PAGING, PROJECT, listing, success
from .vms import _vm, _vm_job

if TYPE_CHECKING:
    from ..app import Context

ACTING_FOR = (
    Param("account", description="act for this account (admins, with domainid)"),
    Param("domainid", "uuid", description="the account's domain"),
    PROJECT,
)


def _keypair_view(keypair: KeyPair) -> dict[str, Any]:
    r = keypair.row
    view = {
        "id": r.uuid,
        "name": r.name,
        "fingerprint": r.fingerprint,
        "account": r.account_name,
        "domainid": r.domain_uuid,
        "domain": r.domain_name,
        "hasannotations": False,
    }
    if keypair.private_key:
        view["privatekey"] = keypair.private_key
    return view


def _owner(args: dict[str, Any]) -> dict[str, str]:
    return {"account": args.get("account", ""), "domain": args.get("domainid", ""),
            "project": args.get("projectid", "")}


@command(
    "listSSHKeyPairs",
    "Lists SSH key pairs: the caller's own (admins: every account's with listall=true).",
    Param("id", "uuid", description="the key pair's id"),
    Param("name", description="the key pair's name"),
    Param("fingerprint", description="the key's fingerprint (MD5, colon-separated hex)"),
    *OWNER,
    *PAGING,
    response="sshkeypair",
)
async def list_ssh_key_pairs(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    rows, total = await ctx.services.keypairs.matching(ctx.caller, args)
    return listing("sshkeypair", [_keypair_view(KeyPair(r)) for r in rows], total)


@command(
    "registerSSHKeyPair",
    "Registers the public key of a key pair made elsewhere, under a name.",
    Param("name", required=True, description="the key pair's name (unique in the account)"),
    Param("publickey", required=True, description="the OpenSSH public key (ssh-rsa AAAA... comment)",
          length=16384),
    *ACTING_FOR,
    event="REGISTER.SSH.KEYPAIR",
    response="keypair",
)
async def register_ssh_key_pair(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    keypair = await ctx.services.keypairs.register(ctx.caller, args["name"], args["publickey"],
                                                   **_owner(args))
    await ctx.event("REGISTER.SSH.KEYPAIR", f"registered SSH key pair {keypair.row.name}",
                    resource_type="SSHKeyPair", resource_uuid=keypair.row.uuid)
    return {"keypair": _keypair_view(keypair)}


@command(
    "createSSHKeyPair",
    "Makes a new RSA key pair: the answer holds its private key, which is not kept anywhere.",
    Param("name", required=True, description="the key pair's name (unique in the account)"),
    *ACTING_FOR,
    event="CREATE.SSH.KEYPAIR",
    response="keypair",
)
async def create_ssh_key_pair(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    keypair = await ctx.services.keypairs.create(ctx.caller, args["name"], **_owner(args))
    await ctx.event("CREATE.SSH.KEYPAIR", f"made SSH key pair {keypair.row.name}",
                    resource_type="SSHKeyPair", resource_uuid=keypair.row.uuid)
    return {"keypair": _keypair_view(keypair)}


@command(
    "deleteSSHKeyPair",
    "Deletes a key pair (VMs keep the public keys they were given).",
    Param("name", required=True, description="the key pair's name"),
    *ACTING_FOR,
    event="DELETE.SSH.KEYPAIR",
)
async def delete_ssh_key_pair(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    await ctx.services.keypairs.delete(ctx.caller, args["name"], **_owner(args))
    await ctx.event("DELETE.SSH.KEYPAIR", f"deleted SSH key pair {args['name']}", resource_type="SSHKeyPair")
    return success()


@command(
    "resetSSHKeyForVirtualMachine",
    "Gives a stopped VM the public keys of other key pairs; its guest gets them when it next starts.",
    Param("id", "uuid", required=True, description="the VM's id"),
    Param("keypair", description="a key pair's name"),
    Param("keypairs", "list", description="comma-separated key pair names"),
    *ACTING_FOR,
    is_async=True,
    event="VM.RESETSSHKEY",
    response="virtualmachine",
)
async def reset_ssh_key(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    names = [*args.get("keypairs", []), *([args["keypair"]] if "keypair" in args else [])]
    if not names:
        raise InvalidParameter("give keypair or keypairs")
    vm = await _vm(ctx, args["id"])
    return await _vm_job(ctx, vm, "reset the SSH keys of", lambda: ctx.services.vms.reset_keys(vm, names))


# --- user data -----------------------------------------------------------------------------------------


def _user_data_view(r: Any) -> dict[str, Any]:
    return {
        "id": r.uuid,
        "name": r.name,
        "userdata": r.user_data,
        "params": r.params,
        "accountid": r.account_uuid,
        "account": r.account_name,
        "domainid": r.domain_uuid,
        "domain": r.domain_name,
        "hasannotations": False,
    }


@command(
    "registerUserData",
    "Registers user data under a name, for deploys to name by id (userdataid); answers success, as "
    "CloudStack does (listUserData shows it).",
    Param("name", required=True, description="its name (unique in the account)"),
    Param("userdata", required=True, description="the user data, Base64 (at most 32 KB decoded)",
          length=43692),
    Param("params", description="comma-separated names of the variables it uses"),
    *ACTING_FOR,
    event="REGISTER.USER.DATA",
    response="success",
)
async def register_user_data(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    row = await ctx.services.user_data.register(ctx.caller, args["name"], args["userdata"],
                                                args.get("params", ""), **_owner(args))
    await ctx.event("REGISTER.USER.DATA", f"registered user data {row.name}", resource_type="UserData",
                    resource_uuid=row.uuid)
    return success(f"registered user data {row.name} ({row.uuid})")


@command(
    "listUserData",
    "Lists registered user data: the caller's own (admins: every account's with listall=true).",
    Param("id", "uuid", description="its id"),
    Param("name", description="its name"),
    *OWNER,
    *PAGING,
    response="userdata",
)
async def list_user_data(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    rows, total = await ctx.services.user_data.matching(ctx.caller, args)
    return listing("userdata", [_user_data_view(r) for r in rows], total)


@command(
    "deleteUserData",
    "Deletes registered user data that no VM uses.",
    Param("id", "uuid", required=True, description="its id"),
    *ACTING_FOR,
    event="DELETE.USER.DATA",
)
async def delete_user_data(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    row = await ctx.services.user_data.delete(ctx.caller, args["id"])
    await ctx.event("DELETE.USER.DATA", f"deleted user data {row.name}", resource_type="UserData",
                    resource_uuid=row.uuid)
    return success()


@command(
    "getVirtualMachineUserData",
    "Returns a VM's user data (Base64).",
    Param("virtualmachineid", "uuid", required=True, description="the VM's id"),
    response="virtualmachineuserdata",
)
async def get_vm_user_data(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    vm = await _vm(ctx, args["virtualmachineid"])
    text = await ctx.services.vms.user_data(vm)
    view: dict[str, Any] = {"virtualmachineid": vm.uuid}
    if text is not None:
        view["userdata"] = text
    return {"virtualmachineuserdata": view}
