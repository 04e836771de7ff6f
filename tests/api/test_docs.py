"""docs/api.md is generated from the command declarations: it must equal what they render now."""

from __future__ import annotations

from pathlib import Path

from mgmt.api.docs import render
from mgmt.api.registry import COMMANDS

DOC = Path(__file__).parents[2] / "docs" / "api.md"


def test_the_api_reference_matches_the_declarations() -> None:
    assert DOC.read_text() == render(), "run: python -m mgmt.api.docs > docs/api.md"


def test_every_command_of_the_issue_is_declared() -> None:
    wanted = [
        "listApis",
        "listCapabilities",
        "login",
        "logout",
        "listZones",
        "createZone",
        "deleteZone",
        "listPods",
        "createPod",
        "deletePod",
        "listClusters",
        "addCluster",
        "deleteCluster",
        "listStoragePools",
        "createStoragePool",
        "deleteStoragePool",
        "listHosts",
        "updateHost",
        "prepareHostForMaintenance",
        "cancelHostMaintenance",
        "listServiceOfferings",
        "createServiceOffering",
        "deleteServiceOffering",
        "listDiskOfferings",
        "createDiskOffering",
        "deleteDiskOffering",
        "listTemplates",
        "registerTemplate",
        "listOsTypes",
        "listNetworks",
        "createNetwork",
        "deleteNetwork",
        "deployVirtualMachine",
        "listVirtualMachines",
        "startVirtualMachine",
        "stopVirtualMachine",
        "rebootVirtualMachine",
        "destroyVirtualMachine",
        "recoverVirtualMachine",
        "expungeVirtualMachine",
        "migrateVirtualMachine",
        "updateVirtualMachine",
        "changeServiceForVirtualMachine",
        "listVolumes",
        "createVolume",
        "attachVolume",
        "detachVolume",
        "deleteVolume",
        "queryAsyncJobResult",
        "listAsyncJobs",
        "listDomains",
        "listAccounts",
        "createAccount",
        "listUsers",
        "registerUserKeys",
        "getUserKeys",
        "listConfigurations",
        "updateConfiguration",
        "listEvents",
        "listCapacity",
        "listPublicIpAddresses",
        "listPortForwardingRules",
        "listIpForwardingRules",
        "listSSHKeyPairs",
        "listAffinityGroups",
        "createAffinityGroup",
        "deleteAffinityGroup",
    ]
    assert sorted(set(wanted) - {c.name for c in COMMANDS.values()}) == []
