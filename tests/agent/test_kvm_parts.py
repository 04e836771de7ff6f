"""The KVM backend's parts on their own: embedded-root URIs and set-up, console tails, the agent-managed
directory pool (real qemu-img), and the guest template's initramfs archive."""

from __future__ import annotations

import gzip
import shutil
import tempfile
from pathlib import Path

import pytest

from agent.kvm import console, host
from agent.kvm.guest_template import _cpio_newc
from agent.kvm.pools import DirectoryPool, PoolError
from agent.resource import HostSetupError


def test_embedded_root_from_a_uri() -> None:
    assert host.embedded_root("qemu:///embed?root=/var/lib/cumulo/root") == "/var/lib/cumulo/root"
    assert host.embedded_root("qemu:///system") is None
    assert host.embedded_root("test:///default") is None
    for bad in ("qemu:///embed", "qemu:///embed?root=relative/dir"):
        with pytest.raises(HostSetupError, match="absolute root directory"):
            host.embedded_root(bad)


@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="QEMU is not installed")
def test_preparing_an_embedded_root_writes_qemu_conf_once() -> None:
    tmp_path = Path(tempfile.mkdtemp(prefix="cu-", dir="/tmp"))  # pytest's own are too long for sockets
    host.prepare_embedded(str(tmp_path))
    conf = (tmp_path / "etc" / "qemu.conf").read_text()
    for line in ('user = "root"', 'group = "root"', 'security_driver = "none"', 'stdio_handler = "file"'):
        assert line in conf.splitlines()
    (tmp_path / "etc" / "qemu.conf").write_text("# the operator's own\n")
    host.prepare_embedded(str(tmp_path))  # an existing file is the operator's: kept
    assert (tmp_path / "etc" / "qemu.conf").read_text() == "# the operator's own\n"
    with pytest.raises(HostSetupError, match="108-byte limit"):
        host.prepare_embedded("/" + "x" * 80)
    shutil.rmtree(tmp_path)


def test_console_tail_cleans_and_limits(tmp_path: Path) -> None:
    log = tmp_path / "i-2-3-VM.log"
    assert console.tail(str(log), 10) == ("", False)
    log.write_bytes(
        b"\x1bc\x1b[?7l\x1b[2JSeaBIOS\r\n" + b"".join(b"line %d\n" % i for i in range(2000)) + b"\xff!"
    )
    text, exists = console.tail(str(log), 3)
    assert exists and text == "line 1998\nline 1999\n\ufffd!\n"
    text, _ = console.tail(str(log), 5000)  # at most MAX_LINES
    assert text.count("\n") == console.MAX_LINES
    log.write_bytes(b"\x1bc\x1b[?7l\x1b[2JSeaBIOS\r\nBooting\r\n")
    assert console.tail(str(log), 10)[0] == "SeaBIOS\nBooting\n"
    for bad in ("", "../etc/passwd", ".hidden", "a/b"):
        with pytest.raises(ValueError):
            console.console_path(str(tmp_path), bad)


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img is not installed")
def test_directory_pool_makes_overlays_on_a_template(tmp_path: Path) -> None:
    pool = DirectoryPool("p", str(tmp_path / "pool"))
    assert pool.uuid() == DirectoryPool("p", str(tmp_path / "pool")).uuid()  # stable for the directory
    assert pool.uuid() != DirectoryPool("q", str(tmp_path / "other")).uuid()
    capacity, available = pool.space()
    assert 0 < available <= capacity
    source = tmp_path / "image.raw"
    source.write_bytes(b"\0" * (4 << 20))
    template = pool.copy_in(str(source), "template-t1")
    assert template.size_bytes == 4 << 20 and pool.lookup("template-t1") == template
    overlay = pool.create("vol-1", 4 << 20, "qcow2", template, "raw")
    assert overlay.size_bytes == 4 << 20
    bigger = pool.create("vol-2", 64 << 20, "qcow2", template, "raw")
    assert bigger.size_bytes == 64 << 20
    assert pool.lookup_path(overlay.path) == overlay
    assert pool.lookup_path(str(source)) is None  # not in the pool
    assert not pool.delete(str(source)) and source.exists()  # nor deleted through it
    assert pool.delete(overlay.path) and pool.lookup("vol-1") is None
    with pytest.raises(PoolError, match="qemu-img create failed"):
        pool.create("vol-3", 1 << 20, "qcow2", None, "")
        pool.create("vol-1", 1 << 20, "qcow2", overlay, "qcow2")  # its backing file is gone
    with pytest.raises(PoolError, match="not mounted"):
        DirectoryPool("shared", str(tmp_path / "nowhere"), create=False)


def test_initramfs_archive_holds_files_links_and_the_console_node(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "busybox").write_bytes(b"ELF...")
    (tmp_path / "bin" / "sh").symlink_to("busybox")
    archive = _cpio_newc(tmp_path)
    entries = {}
    offset = 0
    while True:
        header = archive[offset : offset + 110]
        assert header[:6] == b"070701"
        fields = [int(header[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
        mode, size, rdev, namesize = fields[1], fields[6], (fields[9], fields[10]), fields[11]
        name = archive[offset + 110 : offset + 110 + namesize - 1].decode()
        offset += 110 + namesize
        offset += -offset % 4
        data = archive[offset : offset + size]
        offset += size + (-size % 4)
        if name == "TRAILER!!!":
            break
        entries[name] = (mode, data, rdev)
    assert offset == len(archive)
    assert entries["bin/busybox"][1] == b"ELF..." and entries["bin/sh"][1] == b"busybox"
    assert entries["dev/console"][0] & 0o170000 == 0o020000 and entries["dev/console"][2] == (5, 1)
    assert gzip.decompress(gzip.compress(archive)) == archive
