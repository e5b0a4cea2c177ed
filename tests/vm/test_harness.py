"""Host-side unit tests of the VM harness's pure parts (no VM is booted)."""

from __future__ import annotations

import gzip
import lzma
import shutil
import struct
import subprocess
from pathlib import Path

import harness  # tests/vm is on sys.path: pytest prepends a test file's directory
import pytest


def test_job_script_quotes_argv_env_and_cwd(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    script = harness._job_script(
        ["sh", "-c", 'printf "%s|%s|" "$1" "$FOO"; pwd', "argv0", "it's $HOME"],
        {"FOO": "a 'b' \"c\" $d"},
        str(tmp_path),
        merge_output=False,
    )
    proc = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"it's $HOME|a 'b' \"c\" $d|{tmp_path}\n"


def test_job_script_merges_stderr_and_reports_bad_cwd(tmp_path: Path) -> None:
    script = harness._job_script("echo out; echo err >&2", {}, str(tmp_path), merge_output=True)
    proc = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True)
    assert (proc.stdout, proc.stderr) == ("out\nerr\n", "")
    script = harness._job_script("true", {}, str(tmp_path / "missing"), merge_output=False)
    assert subprocess.run(["/bin/sh", "-c", script], capture_output=True).returncode == 125


def test_module_load_order_puts_dependencies_first(tmp_path: Path) -> None:
    (tmp_path / "modules.dep").write_text(
        "kernel/fs/9p/9p.ko.xz: kernel/fs/netfs/netfs.ko.xz kernel/net/9p/9pnet.ko.xz\n"
        "kernel/net/9p/9pnet_virtio.ko.xz: kernel/net/9p/9pnet.ko.xz\n"
        "kernel/net/9p/9pnet.ko.xz:\n"
        "kernel/fs/netfs/netfs.ko.xz:\n"
        "kernel/fs/overlayfs/overlay.ko.xz:\n"
    )
    (tmp_path / "modules.builtin").write_text("kernel/drivers/virtio/virtio_pci.ko\n")
    order = harness._module_load_order(tmp_path, harness.INITRAMFS_MODULES)
    names = [p.name for p in order]
    assert names == [
        "9pnet.ko.xz",
        "9pnet_virtio.ko.xz",
        "netfs.ko.xz",
        "9p.ko.xz",
        "overlay.ko.xz",
    ]
    with pytest.raises(harness.VMError, match="no module nlmon"):
        harness._module_load_order(tmp_path, ["nlmon"])


def test_plain_module_decompresses(tmp_path: Path) -> None:
    for name, data in (("a.ko.xz", lzma.compress(b"ELF")), ("b.ko.gz", gzip.compress(b"ELF"))):
        (tmp_path / name).write_bytes(data)
        assert harness._plain_module(tmp_path / name) == b"ELF"


@pytest.mark.skipif(shutil.which("cpio") is None, reason="needs GNU cpio to read the archive")
def test_cpio_archive_lists_with_gnu_cpio() -> None:
    archive = harness._cpio_newc(
        [
            ("bin", 0o040755, b"", (0, 0)),
            ("bin/sh", 0o120777, b"busybox", (0, 0)),
            ("dev/console", 0o020600, b"", (5, 1)),
            ("init", 0o100755, b"#!/bin/sh\n", (0, 0)),
        ]
    )
    listing = subprocess.run(
        ["cpio", "-itv", "--quiet"], input=archive, capture_output=True, check=True
    ).stdout.decode()
    assert "bin/sh -> busybox" in listing
    assert "5,   1" in listing or "5, 1" in listing
    assert listing.splitlines()[-1].split()[-1] == "init"


def _bzimage(payload: bytes) -> bytes:
    setup_sects = 1
    image = bytearray((setup_sects + 1) * 512)
    image[0x1F1] = setup_sects
    image[0x202:0x206] = b"HdrS"
    struct.pack_into("<II", image, 0x248, 16, len(payload))
    return bytes(image) + b"\0" * 16 + payload


def test_extract_vmlinux_follows_the_boot_header(tmp_path: Path) -> None:
    elf = b"\x7fELF" + b"\x02" + bytes(200)
    for compress in (lzma.compress, gzip.compress):
        (tmp_path / "vmlinuz").write_bytes(_bzimage(compress(elf) + b"\x01\x02\x03\x04"))
        assert harness.extract_vmlinux(tmp_path / "vmlinuz") == elf


def test_pvh_note_is_found() -> None:
    # A minimal ELF64 with one PT_NOTE holding a Xen note of type 18.
    note = struct.pack("<III", 4, 4, 18) + b"Xen\0" + struct.pack("<I", 0x1000000)
    phoff = 64
    header = bytearray(64)
    header[:5] = b"\x7fELF\x02"
    struct.pack_into("<Q", header, 0x20, phoff)
    struct.pack_into("<HH", header, 0x36, 56, 1)
    phdr = struct.pack("<IIQQQQQQ", 4, 0, phoff + 56, 0, 0, len(note), len(note), 4)
    assert harness.has_pvh_entry(bytes(header) + phdr + note)
    assert not harness.has_pvh_entry(bytes(header) + phdr + note.replace(b"Xen", b"Lnx"))
