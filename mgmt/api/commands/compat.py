"""The empty answers clients need for what Cumulo does not have: public IPs and forwarding rules (no
virtual routers). libcloud's list_nodes, for one, calls them for every listing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..registry import Param, command
from .common import OWNER, PAGING

if TYPE_CHECKING:
    from ..app import Context


async def _empty(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return {}


# Each takes CloudStack's filters: they narrow a list that is empty whatever they say.
_FILTERS: dict[str, tuple[tuple[str, str], ...]] = {
    "listPublicIpAddresses": (
        ("allocatedonly", "boolean"), ("associatednetworkid", "uuid"), ("fordisplay", "boolean"),
        ("forloadbalancing", "boolean"), ("forsystemvms", "boolean"), ("forvirtualnetwork", "boolean"),
        ("ipaddress", "string"), ("issourcenat", "boolean"), ("isstaticnat", "boolean"),
        ("networkid", "uuid"), ("physicalnetworkid", "uuid"), ("retrieveonlyresourcecount", "boolean"),
        ("state", "string"), ("tags", "map"), ("vlanid", "uuid"), ("vpcid", "uuid"), ("zoneid", "uuid")),
    "listPortForwardingRules": (("fordisplay", "boolean"), ("ipaddressid", "uuid"), ("networkid", "uuid"),
                                ("tags", "map")),
    "listIpForwardingRules": (("ipaddressid", "uuid"), ("virtualmachineid", "uuid")),
}
for _name, _key, _what in (
    ("listPublicIpAddresses", "publicipaddress", "public IP addresses (none: shared networks only)"),
    ("listPortForwardingRules", "portforwardingrule", "port forwarding rules (none: no virtual routers)"),
    ("listIpForwardingRules", "ipforwardingrule", "static NAT rules (none: no virtual routers)"),
):
    command(
        _name,
        f"Lists {_what}.",
        Param("id", "uuid", description="an id"),
        Param("name", description="a name"),
        *(Param(p, t, description="narrows the list (empty here whatever it says)")
          for p, t in _FILTERS[_name]),
        *OWNER,
        *PAGING,
        response=_key,
    )(_empty)
