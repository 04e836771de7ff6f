"""A VM's config drive: what its guest learns at boot, in OpenStack's config-drive layout (what cloud-init's
ConfigDrive datasource reads, and what CloudStack's ConfigDrive provider writes), plus CloudStack's own
``cloudstack/`` folders.

- ``openstack/latest/meta_data.json``: uuid, hostname, name, availability zone, public keys;
- ``openstack/latest/network_data.json``: each NIC (its MAC) with its static IPv4 address, netmask, default
  route and DNS servers;
- ``openstack/latest/user_data``: the user data, decoded (absent when there is none);
- ``cloudstack/metadata/*.txt`` and ``cloudstack/userdata/user_data.txt``: the same, one value per file.

The management server builds the files; the agent only writes them into an ISO image (``ConfigDriveTO``).
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from protocol.messages import ConfigDriveTO

from .vms import VmRecord

LABEL = "config-2"
PASSWORD_DETAIL = "Encrypted.Password"  # the VM detail holding the guest's password (CloudStack's name)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _json(value: Any) -> str:
    return _b64(orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))


def public_keys(vm: VmRecord) -> dict[str, str]:
    """The VM's public keys by key-pair name (a key whose name was lost is named by its position)."""
    keys = [k for k in (vm.row.ssh_public_keys or "").splitlines() if k]
    names = [n for n in (vm.row.keypairs or "").split(",") if n]
    return {names[i] if i < len(names) else f"key-{i}": key for i, key in enumerate(keys)}


def network_data(vm: VmRecord) -> dict[str, Any]:
    links, networks, services = [], [], []
    for nic in vm.nics:
        link = f"nic{nic.device_id}"
        links.append({"id": link, "type": "phy", "ethernet_mac_address": nic.mac_address, "mtu": 1500})
        if nic.ip_address:
            network: dict[str, Any] = {
                "id": f"network{nic.device_id}", "type": "ipv4", "link": link, "ip_address": nic.ip_address,
                "netmask": nic.netmask, "network_id": nic.uuid, "routes": [],
            }
            if nic.is_default and nic.gateway:
                network["routes"].append({"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": nic.gateway})
            networks.append(network)
        if nic.is_default:
            services += [{"type": "dns", "address": d} for d in (nic.dns1, nic.dns2) if d]
    return {"links": links, "networks": networks, "services": services}


def build(vm: VmRecord) -> ConfigDriveTO:
    row = vm.row
    hostname = row.name or row.instance_name
    keys = public_keys(vm)
    meta = {
        "uuid": row.uuid,
        "name": row.display_name or hostname,
        "hostname": hostname,
        "availability_zone": vm.zone_name,
        "launch_index": 0,
        "public_keys": keys,
    }
    details = orjson.loads(getattr(row, "details", None) or "{}")
    details = details if isinstance(details, dict) else {}
    password = details.get(PASSWORD_DETAIL)
    if password:
        meta["admin_pass"] = password
    variables = orjson.loads(details.get("userdatadetails") or "{}")
    if isinstance(variables, dict) and variables:
        meta["meta"] = {str(k): str(v) for k, v in variables.items()}  # (cloud-init: ds.meta_data.meta)
    files = {
        "openstack/latest/meta_data.json": _json(meta),
        "openstack/latest/network_data.json": _json(network_data(vm)),
        "openstack/latest/vendor_data.json": _json({}),
        "cloudstack/metadata/instance-id.txt": _b64(row.instance_name.encode()),
        "cloudstack/metadata/vm-id.txt": _b64(row.uuid.encode()),
        "cloudstack/metadata/local-hostname.txt": _b64(hostname.encode()),
        "cloudstack/metadata/availability-zone.txt": _b64(vm.zone_name.encode()),
        "cloudstack/metadata/service-offering.txt": _b64(str(vm.offering.name).encode()),
        "cloudstack/metadata/public-keys.txt": _b64("\n".join(keys.values()).encode()),
    }
    default = next((n for n in vm.nics if n.is_default), None)
    if default is not None and default.ip_address:
        files["cloudstack/metadata/local-ipv4.txt"] = _b64(default.ip_address.encode())
    if password:  # CloudStack's file for password-enabled templates
        files["cloudstack/password/vm_password.txt"] = _b64(password.encode())
    if row.user_data:
        files["openstack/latest/user_data"] = row.user_data  # Base64 already: the file holds it decoded
        files["cloudstack/userdata/user_data.txt"] = row.user_data
    return ConfigDriveTO(label=LABEL, files=files)
