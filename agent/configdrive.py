"""Config drives on the host: the ISO 9660 image a guest reads its metadata, network settings, keys and
user data from (pycdlib writes it: ISO 9660 with Rock Ridge and Joliet names, as cloud-init's ConfigDrive
datasource reads them), and the one-line summary a guest prints once it has applied it.

The files come from the management server (``ConfigDriveTO``); paths are checked here all the same: a
path that is absolute, climbs out (``..``), is empty or too deep is refused, never written.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
from pathlib import Path, PurePosixPath

import orjson
import pycdlib

from protocol.messages import ConfigDriveTO

from .files import write_atomically

MAX_FILES = 64
MAX_DEPTH = 6  # ISO 9660 allows eight levels; the OpenStack layout needs three
MAX_BYTES = 1 << 20  # all files together, decoded
SUMMARY = "cumulo-config-drive:"  # what a guest prints once it applied its drive (the tiny template does)


class ConfigDriveError(ValueError):
    """A config drive that cannot be written (bad paths, bad Base64, too big)."""


def decoded_files(drive: ConfigDriveTO) -> dict[PurePosixPath, bytes]:
    """The drive's files, paths checked and contents decoded."""
    if len(drive.files) > MAX_FILES:
        raise ConfigDriveError(f"a config drive holds at most {MAX_FILES} files")
    files: dict[PurePosixPath, bytes] = {}
    total = 0
    for name, data in drive.files.items():
        path = PurePosixPath(name)
        parts = path.parts
        if (not parts or path.is_absolute() or len(parts) > MAX_DEPTH
                or any(p in ("", ".", "..") or "\0" in p or len(p) > 100 for p in parts)):
            raise ConfigDriveError(f"bad path in config drive: {name[:100]!r}")
        try:
            content = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigDriveError(f"config drive file {name[:100]!r} is not Base64") from None
        total += len(content)
        if total > MAX_BYTES:
            raise ConfigDriveError(f"a config drive holds at most {MAX_BYTES} bytes")
        files[path] = content
    return files


def summary(drive: ConfigDriveTO) -> str:
    """The line a guest prints once it applied this drive: its host name, its default address and the
    SHA-256 of its user data ("none" without)."""
    files = decoded_files(drive)
    meta = orjson.loads(files.get(PurePosixPath("openstack/latest/meta_data.json"), b"{}"))
    network = orjson.loads(files.get(PurePosixPath("openstack/latest/network_data.json"), b"{}"))
    addresses = [n.get("ip_address", "") for n in network.get("networks", [])]
    user_data = files.get(PurePosixPath("openstack/latest/user_data"))
    digest = hashlib.sha256(user_data).hexdigest() if user_data is not None else "none"
    return (f"{SUMMARY} hostname={meta.get('hostname', '')} address={addresses[0] if addresses else ''} "
            f"userdata-sha256={digest}")


def image_path(directory: str, vm_name: str) -> str:
    """Where a VM's config drive image lives in ``directory``."""
    if not vm_name or "/" in vm_name or vm_name.startswith(".") or "\0" in vm_name:
        raise ConfigDriveError(f"not a VM name for a config drive: {vm_name[:100]!r}")
    return os.path.join(directory, f"{vm_name}.iso")


def write_iso(drive: ConfigDriveTO, path: Path) -> None:
    """Write the drive's image to ``path`` (atomically: a half-written image is never attached)."""
    files = decoded_files(drive)
    label = drive.label.upper()
    if not label or len(label) > 32 or not all(c.isalnum() or c in "-_" for c in label):
        raise ConfigDriveError(f"bad config drive label: {drive.label[:40]!r}")
    iso = pycdlib.PyCdlib()
    # ISO 9660 names are short and upper-case: each directory and file gets a generated one, and its
    # real name in the Rock Ridge and Joliet records (what Linux and cloud-init read)
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident=label)
    made: dict[PurePosixPath, str] = {PurePosixPath("."): ""}
    count = 0
    for name in sorted(files):
        for depth in range(1, len(name.parts)):
            directory = PurePosixPath(*name.parts[:depth])
            if directory not in made:
                count += 1
                iso_path = f"{made[directory.parent]}/D{count}"
                iso.add_directory(iso_path, rr_name=directory.name, joliet_path="/" + str(directory))
                made[directory] = iso_path
        count += 1
        content = files[name]
        iso.add_fp(io.BytesIO(content), len(content), f"{made[name.parent]}/F{count}.;1",
                   rr_name=name.name, joliet_path="/" + str(name))
    image = io.BytesIO()
    try:
        iso.write_fp(image)
    finally:
        iso.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, image.getvalue())
