"""Config drive images on the host: what pycdlib writes reads back with the real names and contents, the
label guests look for, and nothing outside the image from a hostile file list."""

from __future__ import annotations

import base64
import hashlib
import io
import xml.etree.ElementTree as ET
from pathlib import Path

import orjson
import pycdlib
import pytest

from agent.configdrive import ConfigDriveError, image_path, summary, write_iso
from agent.kvm.domain_xml import domain_xml, for_destination
from protocol.messages import ConfigDriveTO, NicTO, VirtualMachineTO


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


META = {"hostname": "web-1", "uuid": "u"}
NETWORK = {"networks": [{"ip_address": "10.1.1.5", "netmask": "255.255.255.0"}]}
USER_DATA = b"#!/bin/sh\necho hi\n"
DRIVE = ConfigDriveTO(files={
    "openstack/latest/meta_data.json": b64(orjson.dumps(META)),
    "openstack/latest/network_data.json": b64(orjson.dumps(NETWORK)),
    "openstack/latest/user_data": b64(USER_DATA),
    "cloudstack/metadata/local-hostname.txt": b64(b"web-1"),
})


def read_back(path: Path) -> tuple[str, dict[str, bytes]]:
    """The image's volume label and its files by their Rock Ridge paths."""
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        label = iso.pvd.volume_identifier.decode().strip()
        files = {}
        for root, _dirs, names in iso.walk(rr_path="/"):
            for name in names:
                out = io.BytesIO()
                iso.get_file_from_iso_fp(out, rr_path=f"{root.rstrip('/')}/{name}")
                files[f"{root.rstrip('/')}/{name}".lstrip("/")] = out.getvalue()
        return label, files
    finally:
        iso.close()


def test_an_image_holds_the_files_under_their_names_and_the_label(tmp_path: Path) -> None:
    path = tmp_path / "drives" / "i-2-7-VM.iso"
    write_iso(DRIVE, path)
    label, files = read_back(path)
    assert label == "CONFIG-2"  # ISO 9660 labels are upper case; blkid and cloud-init match it so
    assert files == {name: base64.b64decode(data) for name, data in DRIVE.files.items()}
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    write_iso(ConfigDriveTO(files={"a.txt": b64(b"second")}), path)  # replaced whole
    assert read_back(path)[1] == {"a.txt": b"second"}


def test_the_summary_is_what_the_guest_prints() -> None:
    digest = hashlib.sha256(USER_DATA).hexdigest()
    assert summary(DRIVE) == f"cumulo-config-drive: hostname=web-1 address=10.1.1.5 userdata-sha256={digest}"
    assert summary(ConfigDriveTO()).endswith("userdata-sha256=none")


@pytest.mark.parametrize("files", [
    {"/etc/passwd": b64(b"x")},
    {"../escape": b64(b"x")},
    {"a/../../escape": b64(b"x")},
    {"": b64(b"x")},
    {"a/b/c/d/e/f/g": b64(b"x")},
    {"ok": "not base64!"},
    {f"f{i}": b64(b"x") for i in range(65)},
    {"big": b64(b"x" * (1 << 20 + 1))},
])
def test_hostile_file_lists_are_refused_and_nothing_is_written(tmp_path: Path, files: dict[str, str]) -> None:
    with pytest.raises(ConfigDriveError):
        write_iso(ConfigDriveTO(files=files), tmp_path / "x.iso")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("label", ["", "a" * 33, "bad label", "x/y"])
def test_bad_labels_are_refused(tmp_path: Path, label: str) -> None:
    with pytest.raises(ConfigDriveError):
        write_iso(ConfigDriveTO(label=label), tmp_path / "x.iso")


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden"])
def test_image_paths_stay_in_their_directory(name: str) -> None:
    with pytest.raises(ConfigDriveError):
        image_path("/var/lib/cumulo/configdrive", name)


def test_the_domain_has_the_drive_as_a_read_only_cdrom_and_a_migration_moves_it() -> None:
    vm = VirtualMachineTO(name="v", uuid="u", vcpus=1, memory_bytes=2**28,
                          nics=(NicTO(uuid="n", mac="02:00:00:00:00:01"),))
    assert ET.fromstring(domain_xml(vm, "qemu")).find("devices/disk[@device='cdrom']") is None
    xml = domain_xml(vm, "qemu", "/c/v.log", "/a/v.iso")
    cdrom = ET.fromstring(xml).find("devices/disk[@device='cdrom']")
    assert cdrom is not None and cdrom.find("readonly") is not None
    assert cdrom.find("source").get("file") == "/a/v.iso"  # type: ignore[union-attr]
    assert cdrom.find("target").attrib == {"dev": "hdd", "bus": "ide"}  # type: ignore[union-attr]
    moved = ET.fromstring(for_destination(xml, "/d/v.log", "/b/v.iso"))
    assert moved.find("devices/disk[@device='cdrom']/source").get("file") == "/b/v.iso"  # type: ignore[union-attr]
    assert moved.find("devices/serial/source").get("path") == "/d/v.log"  # type: ignore[union-attr]
    kept = ET.fromstring(for_destination(xml, "/d/v.log"))
    assert kept.find("devices/disk[@device='cdrom']/source").get("file") == "/a/v.iso"  # type: ignore[union-attr]
