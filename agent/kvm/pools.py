"""Primary storage pools of a KVM host: where templates are copied and root volumes are made.

Two implementations with one interface (all calls block; the resource runs them in worker threads):

- ``LibvirtPool``: a libvirt directory pool (``qemu:///system`` with libvirtd, and the test driver),
  defined on the agent's pool path when it does not exist.
- ``DirectoryPool``: the same directory layout managed by the agent itself with ``qemu-img``. libvirt's
  storage driver does not support embedded mode (opening ``storage:///embed?root=...`` fails with
  "Driver does not support embedded mode"), so with ``qemu:///embed`` there is no libvirt pool to use.

A volume is a file in the pool's directory named after the volume's uuid; a template copy is named
``template-<uuid>``. Root volumes are qcow2 overlays whose backing file is the template copy.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

_NAMESPACE = uuid.UUID("0b6f3a52-8d5e-4d1f-9a8e-3c2b1f4e5d60")


class PoolError(Exception):
    """A pool operation failed; the message says what and why."""


@dataclass(frozen=True, slots=True)
class Volume:
    path: str
    size_bytes: int  # the virtual size a guest sees


class Pool(Protocol):
    name: str

    def uuid(self) -> str: ...
    def path(self) -> str: ...
    def space(self) -> tuple[int, int]: ...
    def lookup(self, name: str) -> Volume | None: ...
    def lookup_path(self, path: str) -> Volume | None: ...
    def copy_in(self, source: str, name: str) -> Volume: ...
    def create(
        self, name: str, size_bytes: int, fmt: str, backing: Volume | None, backing_fmt: str,
        preallocation: str = "off",
    ) -> Volume: ...
    def delete(self, path: str) -> bool: ...


def _qemu_img(*args: str) -> str:
    try:
        done = subprocess.run(("qemu-img", *args), capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise PoolError("qemu-img is not installed (Debian package qemu-utils)") from None
    if done.returncode != 0:
        raise PoolError(f"qemu-img {args[0]} failed: {done.stderr.strip()}")
    return done.stdout


PREALLOCATION = ("off", "metadata", "full")


def _prealloc_options(mode: str, backed: bool) -> list[str]:
    """qemu-img's options for a preallocated qcow2 volume: over a backing file (a root volume on its
    template), QEMU preallocates only with extended L2 entries (subclusters)."""
    if mode == "off":
        return []
    return ["-o", f"preallocation={mode}" + (",extended_l2=on" if backed else "")]


def _preallocation(mode: str, fmt: str) -> str:
    """A volume's preallocation, checked: off, metadata or full (metadata is qcow2's alone)."""
    if mode not in PREALLOCATION:
        raise PoolError(f"preallocation {mode!r} is not one of {', '.join(PREALLOCATION)}")
    if mode == "metadata" and fmt != "qcow2":
        raise PoolError(f"metadata preallocation is for qcow2 volumes, not {fmt}")
    return mode


def disk_in_use(path: str) -> bool:
    """Whether another process holds QEMU's write lock on the image: ``qemu-img info`` (without ``-U``)
    is refused then. Checked before a start, so that no second QEMU is even spawned for a disk a
    running guest (on this host, or on another over shared storage) still writes."""
    if not path or not os.path.exists(path):
        return False  # not a file here (the start itself will say what is wrong with it)
    try:
        _qemu_img("info", "--output=json", path)
    except PoolError as e:
        if "lock" in str(e):
            return True
        raise
    return False


def _copy_atomically(source: str, target: Path) -> None:
    """Copy ``source`` to ``target`` through a hidden partial file: a crash mid-copy never leaves half a
    template under its name (a later lookup would find it and build volumes on it)."""
    partial = target.with_name(f".{target.name}.partial")
    shutil.copyfile(source, partial)
    os.replace(partial, target)


class DirectoryPool:
    """A directory of volume files managed with ``qemu-img`` (for libvirt's embedded QEMU driver)."""

    def __init__(self, name: str, path: str, *, create: bool = True) -> None:
        if not path:
            raise PoolError(f"pool {name!r} needs a directory (--pool-path)")
        self.name = name
        self._path = Path(path).resolve()
        if create:
            self._path.mkdir(parents=True, exist_ok=True)
        elif not self._path.is_dir():
            raise PoolError(f"pool directory {path} is not mounted on this host")

    def uuid(self) -> str:
        """Stable for a directory: the management server knows the pool by it across restarts."""
        return str(uuid.uuid5(_NAMESPACE, str(self._path)))

    def path(self) -> str:
        return str(self._path)

    def space(self) -> tuple[int, int]:
        st = os.statvfs(self._path)
        return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize

    def _inside(self, path: str) -> Path | None:
        p = Path(path)
        return p if p.parent == self._path and p.is_file() else None

    def _volume(self, p: Path) -> Volume:
        info: dict[str, Any] = json.loads(_qemu_img("info", "--output=json", "-U", str(p)))
        return Volume(str(p), int(info["virtual-size"]))

    def lookup(self, name: str) -> Volume | None:
        p = self._path / name
        return self._volume(p) if p.is_file() else None

    def lookup_path(self, path: str) -> Volume | None:
        p = self._inside(path)
        return self._volume(p) if p is not None else None

    def copy_in(self, source: str, name: str) -> Volume:
        target = self._path / name
        _copy_atomically(source, target)
        return self._volume(target)

    def create(
        self, name: str, size_bytes: int, fmt: str, backing: Volume | None, backing_fmt: str,
        preallocation: str = "off",
    ) -> Volume:
        target = self._path / name
        args = ["create", "-q", "-f", fmt]
        if backing is not None:
            args += ["-b", backing.path, "-F", backing_fmt]
        args += _prealloc_options(_preallocation(preallocation, fmt), backing is not None)
        _qemu_img(*args, str(target), str(size_bytes))
        return self._volume(target)

    def delete(self, path: str) -> bool:
        p = self._inside(path)
        if p is None:
            return False
        p.unlink(missing_ok=True)
        return True


class LibvirtPool:
    """A libvirt directory pool (defined on ``path`` when it does not exist)."""

    def __init__(self, conn: Any, name: str, path: str) -> None:
        import libvirt

        self._libvirt = libvirt
        self.name = name
        try:
            pool = conn.storagePoolLookupByName(name)
        except libvirt.libvirtError:
            if not path:
                raise PoolError(
                    f"storage pool {name!r} does not exist and no pool path was given to create it"
                ) from None
            Path(path).mkdir(parents=True, exist_ok=True)
            xml = f"<pool type='dir'><name>{name}</name><target><path>{path}</path></target></pool>"
            pool = conn.storagePoolDefineXML(xml, 0)
            pool.setAutostart(1)
        if not pool.isActive():
            pool.create(0)
        self._conn = conn
        self._pool = pool

    def uuid(self) -> str:
        return str(self._pool.UUIDString())

    def path(self) -> str:
        return ET.fromstring(self._pool.XMLDesc(0)).findtext("target/path") or ""

    def space(self) -> tuple[int, int]:
        _state, capacity, _allocation, available = self._pool.info()
        return capacity, available

    def _find(self, lookup: Any, key: str) -> Volume | None:
        try:
            vol = lookup(key)
        except self._libvirt.libvirtError:
            return None
        return Volume(vol.path(), vol.info()[1])

    def lookup(self, name: str) -> Volume | None:
        return self._find(self._pool.storageVolLookupByName, name)

    def lookup_path(self, path: str) -> Volume | None:
        return self._find(self._conn.storageVolLookupByPath, path)

    def copy_in(self, source: str, name: str) -> Volume:
        target = self.path()
        if not os.path.isdir(target):
            raise PoolError(f"pool {self.name} is not a local directory to copy into")
        _copy_atomically(source, Path(target) / name)
        self._pool.refresh(0)
        volume = self.lookup(name)
        if volume is None:
            raise PoolError(f"pool {self.name} does not show {name} after copying it in")
        return volume

    def create(
        self, name: str, size_bytes: int, fmt: str, backing: Volume | None, backing_fmt: str,
        preallocation: str = "off",
    ) -> Volume:
        mode = _preallocation(preallocation, fmt)
        target = self.path()
        if mode != "off" and backing is not None and os.path.isdir(target):
            # libvirt cannot ask for extended L2 entries, which QEMU needs to preallocate over a backing
            # file: qemu-img makes it in the pool's directory, and libvirt is told to look again
            _qemu_img("create", "-q", "-f", fmt, "-b", backing.path, "-F", backing_fmt,
                      *_prealloc_options(mode, True), str(Path(target) / name), str(size_bytes))
            self._pool.refresh(0)
            made = self.lookup(name)
            if made is None:
                raise PoolError(f"pool {self.name} does not show {name} after making it")
            return Volume(made.path, size_bytes)
        # metadata: libvirt's flag; full: the whole capacity allocated up front
        flags = 1 if mode == "metadata" else 0  # VIR_STORAGE_VOL_CREATE_PREALLOC_METADATA
        allocation = f"<allocation unit='bytes'>{size_bytes}</allocation>" if mode == "full" else ""
        backing_xml = (
            f"<backingStore><path>{backing.path}</path><format type='{backing_fmt}'/></backingStore>"
            if backing is not None
            else ""
        )
        xml = (
            f"<volume><name>{name}</name><capacity unit='bytes'>{size_bytes}</capacity>{allocation}"
            f"<target><format type='{fmt}'/></target>{backing_xml}</volume>"
        )
        try:
            vol = self._pool.createXML(xml, flags)
        except self._libvirt.libvirtError as e:
            raise PoolError(f"libvirt could not create the volume: {e}") from None
        return Volume(vol.path(), size_bytes)

    def delete(self, path: str) -> bool:
        try:
            vol = self._conn.storageVolLookupByPath(path)
        except self._libvirt.libvirtError:
            return False
        vol.delete(0)
        return True
