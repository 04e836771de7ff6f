"""The planner never plans against a stale index: after anything that reloads it (an inventory change,
the periodic resync), a host disabled, a VM placed or a host gone is seen by the next deploy.

Regression for issue 15: the kernel kept its binding while the new index's generation equalled the old
one's, so every deploy after a reload chose from a frozen copy of the hosts."""

from __future__ import annotations

import pytest
from cs import CloudStackApiException

from .conftest import ApiCloud
from .test_lifecycle import first


async def _catalog(api: ApiCloud) -> dict[str, str]:
    cs = api.client()
    zone = first(await api.call(lambda: cs.listZones()), "zone")
    offering = next(o for o in (await api.call(lambda: cs.listServiceOfferings()))["serviceoffering"]
                    if o["name"] == "small")
    template = first(await api.call(lambda: cs.listTemplates(templatefilter="featured")), "template")
    return {"zoneid": zone["id"], "serviceofferingid": offering["id"], "templateid": template["id"]}


async def test_a_deploy_after_a_reload_sees_disabled_hosts(api: ApiCloud) -> None:
    cs = api.client()
    ids = await _catalog(api)
    vm = (await api.call(lambda: cs.deployVirtualMachine(**ids, fetch_result=True)))["virtualmachine"]
    assert vm["state"] == "Running"
    pod = first(await api.call(lambda: cs.listPods(zoneid=ids["zoneid"])), "pod")
    cluster = first(await api.call(lambda: cs.listClusters(podid=pod["id"])), "cluster")
    # Any inventory change reloads the planner's index (as the periodic resync does).
    await api.call(lambda: cs.createStoragePool(zoneid=ids["zoneid"], clusterid=cluster["id"], name="extra",
                                                url="nfs://10.1.0.9/export/extra", capacitybytes=2**40))
    hosts = (await api.call(lambda: cs.listHosts(type="Routing")))["host"]
    for host in hosts:
        await api.call(lambda h=host: cs.updateHost(id=h["id"], allocationstate="Disable"))
    with pytest.raises(CloudStackApiException) as refused:
        await api.call(lambda: cs.deployVirtualMachine(**ids, fetch_result=True))
    assert refused.value.error["errorcode"] == 533
    api.cloud.exact()
