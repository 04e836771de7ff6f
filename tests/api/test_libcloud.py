"""Apache libcloud's CloudStack driver, unmodified, against the running API: it signs without
signatureVersion, needs every template field, calls the public-IP and forwarding-rule lists for each
listing, and sends startvm=False unless told otherwise."""

from __future__ import annotations

import urllib.parse

from libcloud.compute.providers import Provider, get_driver
from libcloud.compute.types import NodeState

from .conftest import ApiCloud


def driver(api: ApiCloud) -> object:
    url = urllib.parse.urlparse(api.url)
    cls = get_driver(Provider.CLOUDSTACK)
    made = cls(
        key=api.creds["apikey"],
        secret=api.creds["secretkey"],
        host=url.hostname,
        port=url.port,
        path=url.path,
        secure=False,
    )
    made.connection.poll_interval = 0.05  # libcloud's own polling of queryAsyncJobResult
    return made


async def test_libcloud_drives_a_vm(api: ApiCloud) -> None:
    cloud = driver(api)
    (location,) = await api.call(cloud.list_locations)  # type: ignore[attr-defined]
    sizes = {s.name: s for s in await api.call(cloud.list_sizes)}  # type: ignore[attr-defined]
    images = await api.call(cloud.list_images)  # type: ignore[attr-defined]
    assert {"small", "medium"} <= set(sizes) and sizes["small"].ram == 1024
    assert [i.name for i in images] == ["debian-12"]
    (network,) = await api.call(cloud.ex_list_networks)  # type: ignore[attr-defined]

    node = await api.call(
        lambda: cloud.create_node(  # type: ignore[attr-defined]
            name="lc-1", size=sizes["small"], image=images[0], location=location, networks=[network]
        )
    )
    assert node.name == "lc-1" and node.private_ips and node.private_ips[0].startswith("10.1.")
    nodes = await api.call(cloud.list_nodes)  # type: ignore[attr-defined]
    assert [(n.id, n.state) for n in nodes] == [(node.id, NodeState.STOPPED)]  # libcloud sent startvm=False
    assert await api.call(lambda: cloud.ex_start(node))  # type: ignore[attr-defined]
    nodes = await api.call(cloud.list_nodes)  # type: ignore[attr-defined]
    assert nodes[0].state == NodeState.RUNNING
    assert await api.call(lambda: cloud.reboot_node(node))  # type: ignore[attr-defined]
    assert await api.call(lambda: cloud.ex_stop(node))  # type: ignore[attr-defined]
    assert await api.call(lambda: cloud.destroy_node(node))  # type: ignore[attr-defined]
    nodes = await api.call(cloud.list_nodes)  # type: ignore[attr-defined]
    assert [n.state for n in nodes] == [NodeState.TERMINATED]  # Destroyed, until expunged
    api.cloud.exact()
