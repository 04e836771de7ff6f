"""getVirtualMachineConsoleLog (a Cumulo extension) and registerTemplate's boot details, on simulated hosts:
the log comes from the VM's host, and from its last host once it is stopped; it is gone after expunge."""

from __future__ import annotations

from typing import Any

import pytest
from cs import CloudStackApiException

from agent.simulator import SimulatorResource

from .conftest import ApiCloud
from .test_access import make_user
from .test_lifecycle import api_guid, first


async def deploy(api: ApiCloud, cs: Any) -> dict[str, Any]:
    zone = first(await api.call(lambda: cs.listZones()), "zone")
    offering = first(await api.call(lambda: cs.listServiceOfferings(name="small")), "serviceoffering")
    template = first(await api.call(lambda: cs.listTemplates(templatefilter="executable")), "template")
    network = first(await api.call(lambda: cs.listNetworks(zoneid=zone["id"])), "network")
    result = await api.call(
        lambda: cs.deployVirtualMachine(
            zoneid=zone["id"],
            serviceofferingid=offering["id"],
            templateid=template["id"],
            networkids=network["id"],
            fetch_result=True,
        )
    )
    return dict(result["virtualmachine"])


async def test_console_log_of_a_vm_through_its_life(api: ApiCloud) -> None:
    cs = api.client()
    vm = await deploy(api, cs)

    async def console(**args: Any) -> dict[str, Any]:
        answer = await api.call(lambda: cs.getVirtualMachineConsoleLog(id=vm["id"], **args))
        return dict(answer["virtualmachineconsolelog"])

    log = await console()
    assert log["log"].splitlines() == [
        f"simulated guest {vm['instancename']}: booted (boot 1)",
        f"cumulo-config-drive: hostname={vm['name']} address={vm['nic'][0]['ipaddress']} "
        "userdata-sha256=none",
    ]
    assert log["lines"] == 2
    assert (log["id"], log["hostid"], log["instancename"]) == (vm["id"], vm["hostid"], vm["instancename"])
    await api.call(lambda: cs.rebootVirtualMachine(id=vm["id"], fetch_result=True))
    await api.call(lambda: cs.stopVirtualMachine(id=vm["id"], fetch_result=True))
    stopped = await console(lines=2)  # read from the last host: the stopped run's output
    assert stopped["log"].splitlines() == [
        f"simulated guest {vm['instancename']}: rebooted (boot 2)",
        f"simulated guest {vm['instancename']}: powered off",
    ]
    for lines in ("0", "1001", "many"):
        with pytest.raises(CloudStackApiException) as bad:
            await api.call(lambda: cs.getVirtualMachineConsoleLog(id=vm["id"], lines=lines))  # noqa: B023
        assert bad.value.error["errorcode"] == 431 and "lines" in bad.value.error["errortext"]

    host = SimulatorResource.registry[api_guid(api, vm["hostid"])].host
    assert vm["instancename"] in host.consoles
    await api.call(lambda: cs.destroyVirtualMachine(id=vm["id"], expunge="true", fetch_result=True))
    assert vm["instancename"] not in host.consoles  # the expunge cleaned up on the host


async def test_another_accounts_console_is_not_there(api: ApiCloud) -> None:
    vm = await deploy(api, api.client())
    _account, keys = await make_user(api, "mallory")
    mallory = api.client(key=keys["apikey"], secret=keys["secretkey"])
    with pytest.raises(CloudStackApiException) as refused:
        await api.call(lambda: mallory.getVirtualMachineConsoleLog(id=vm["id"]))
    assert refused.value.error["errorcode"] == 531
    own = await deploy(api, mallory)
    log = (await api.call(lambda: mallory.getVirtualMachineConsoleLog(id=own["id"])))[
        "virtualmachineconsolelog"
    ]
    assert "booted" in log["log"] and "hostid" not in log and "instancename" not in log  # as for listings


@pytest.mark.parametrize(
    ("details", "hypervisor", "complaint"),
    [
        ({"details[0].kernel": "vmlinuz"}, "KVM", "absolute path"),
        ({"details[0].initrd": "/boot/initrd"}, "KVM", "need details kernel"),
        (
            {"details[0].kernel": "/boot/k", "details[0].console": "x"},
            "KVM",
            "unknown template details console",
        ),
        ({"details[0].kernel": "/boot/k"}, "Simulator", "for KVM templates"),
        ({"details[0].kernel": "/boot/k", "details[0].bootargs": "a\nb"}, "KVM", "one line"),
    ],
)
async def test_template_boot_details_are_checked(
    api: ApiCloud, tmp_path: Any, details: dict[str, str], hypervisor: str, complaint: str
) -> None:
    image = tmp_path / "image.qcow2"
    image.write_bytes(b"\0" * 512)
    cs = api.client()
    with pytest.raises(CloudStackApiException) as bad:
        await api.call(
            lambda: cs.registerTemplate(
                name="direct", url=str(image), format="QCOW2", hypervisor=hypervisor, zoneid="-1", **details
            )
        )
    assert bad.value.error["errorcode"] == 431 and complaint in bad.value.error["errortext"]


async def test_a_template_with_boot_details_shows_them(api: ApiCloud, tmp_path: Any) -> None:
    image = tmp_path / "image.qcow2"
    image.write_bytes(b"\0" * 512)
    cs = api.client()
    template = (
        await api.call(
            lambda: cs.registerTemplate(
                name="direct",
                url=str(image),
                format="QCOW2",
                hypervisor="KVM",
                zoneid="-1",
                **{
                    "details[0].kernel": "file:///boot/vmlinuz",
                    "details[0].initrd": "/boot/initrd.img",
                    "details[0].bootargs": "console=ttyS0 quiet",
                },
            )
        )
    )["template"][0]
    assert template["details"] == {
        "kernel": "/boot/vmlinuz",
        "initrd": "/boot/initrd.img",
        "bootargs": "console=ttyS0 quiet",
    }
