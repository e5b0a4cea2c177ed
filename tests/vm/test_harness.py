"""Host-side unit tests of the VM harness's pure parts (no VM is booted)."""

from __future__ import annotations

import gzip
import lzma
import os
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


# --------------------------------------------------------------------------- netdevsim

DEPENDS_6_1 = (
    "linux-headers-6.1.0-56-common (= 6.1.192-2), linux-kbuild-6.1 (>= 6.1.192-2), "
    "linux-compiler-gcc-12-x86"
)
DEPENDS_6_12 = (
    "linux-base (>= 4.12~), linux-headers-6.12.117+deb12-common (= 6.12.117-1~deb12u1), "
    "linux-image-6.12.117+deb12-amd64 (= 6.12.117-1~deb12u1) | "
    "linux-image-6.12.117+deb12-amd64-unsigned (= 6.12.117-1~deb12u1), "
    "linux-kbuild-6.12.117+deb12, gcc-12"
)


def test_build_packages_follow_the_headers_depends() -> None:
    packages = harness.build_packages_from_depends("6.1.0-56-amd64", "6.1.192-2", DEPENDS_6_1)
    assert packages.debs == (
        "linux-source-6.1",
        "linux-headers-6.1.0-56-amd64",
        "linux-headers-6.1.0-56-common",
        "linux-kbuild-6.1",
    )
    assert (packages.compiler, packages.series) == ("gcc-12", "6.1")
    packages = harness.build_packages_from_depends(
        "6.12.117+deb12-amd64", "6.12.117-1~deb12u1", DEPENDS_6_12
    )
    assert packages.debs == (
        "linux-source-6.12",
        "linux-headers-6.12.117+deb12-amd64",
        "linux-headers-6.12.117+deb12-common",
        "linux-kbuild-6.12.117+deb12",
    )
    assert packages.compiler == "gcc-12"
    with pytest.raises(harness.NetdevsimUnavailable, match="kbuild"):
        harness.build_packages_from_depends("6.1.0-56-amd64", "6.1.192-2", "gcc-12")


def _fake_headers(root: Path, release: str = "6.1.0-56-amd64") -> Path:
    """The layout of linux-headers-<release>, -common and linux-kbuild unpacked under root."""
    src = root / "usr" / "src"
    arch, common = src / f"linux-headers-{release}", src / "linux-headers-6.1.0-56-common"
    scripts = root / "usr" / "lib" / "linux-kbuild-6.1" / "scripts"
    for directory in (arch, common, scripts):
        directory.mkdir(parents=True)
    (scripts / "Makefile.build").write_text("# kbuild\n")
    (common / "Makefile").write_text("srctree := here\n")
    (arch / "Makefile").write_text(f"include {Path('/') / common.relative_to(root)}/Makefile\n")
    (arch / "scripts").symlink_to("/usr/lib/linux-kbuild-6.1/scripts")  # absolute: fixed
    (common / "scripts").symlink_to("../../lib/linux-kbuild-6.1/scripts")  # relative: kept
    return arch


def test_fix_headers_tree_makes_the_include_and_symlinks_relative(tmp_path: Path) -> None:
    root = tmp_path / "headers"
    arch = _fake_headers(root)
    assert harness.fix_headers_tree(root, "6.1.0-56-amd64") == arch
    assert (arch / "Makefile").read_text() == "include ../linux-headers-6.1.0-56-common/Makefile\n"
    assert os.readlink(arch / "scripts") == "../../lib/linux-kbuild-6.1/scripts"
    # Relative paths survive moving the tree (the build happens in a temporary directory).
    moved = tmp_path / "moved"
    root.rename(moved)
    arch = moved / arch.relative_to(root)
    assert (arch / "scripts" / "Makefile.build").is_file()
    assert (arch / "../linux-headers-6.1.0-56-common/Makefile").resolve().is_file()
    harness.fix_headers_tree(moved, "6.1.0-56-amd64")  # idempotent
    assert (arch / "Makefile").read_text() == "include ../linux-headers-6.1.0-56-common/Makefile\n"


def test_fix_headers_tree_wants_the_kbuild_scripts(tmp_path: Path) -> None:
    arch = _fake_headers(tmp_path)
    shutil.rmtree(tmp_path / "usr" / "lib")
    with pytest.raises(harness.NetdevsimUnavailable, match="no kbuild scripts"):
        harness.fix_headers_tree(tmp_path, "6.1.0-56-amd64")
    (arch / "Makefile").unlink()
    with pytest.raises(harness.NetdevsimUnavailable, match="has no Makefile"):
        harness.fix_headers_tree(tmp_path, "6.1.0-56-amd64")


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
def test_extract_netdevsim_source_takes_only_the_driver(tmp_path: Path) -> None:
    # A miniature linux-source-6.1 .deb: usr/src/linux-source-6.1.tar.xz inside.
    tree = tmp_path / "tree" / "linux-source-6.1"
    for name in ("drivers/net/netdevsim/Makefile", "drivers/net/netdevsim/dev.c", "Makefile"):
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(name)
    package = tmp_path / "pkg"
    (package / "DEBIAN").mkdir(parents=True)
    (package / "DEBIAN" / "control").write_text(
        "Package: linux-source-6.1\nVersion: 6.1.192-2\nArchitecture: all\n"
        "Maintainer: test <test@example.org>\nDescription: test\n"
    )
    (package / "usr" / "src").mkdir(parents=True)
    subprocess.run(
        ["tar", "-cJf", str(package / "usr/src/linux-source-6.1.tar.xz"), "linux-source-6.1"],
        cwd=tree.parent,
        check=True,
    )
    deb = tmp_path / "linux-source-6.1_6.1.192-2_all.deb"
    subprocess.run(
        ["dpkg-deb", "-Zxz", "-b", str(package), str(deb)], capture_output=True, check=True
    )
    dest = tmp_path / "src"
    with (tmp_path / "log").open("wb") as log:
        harness.extract_netdevsim_source(deb, "6.1", dest, log)
        assert sorted(p.name for p in dest.iterdir()) == ["Makefile", "dev.c"]
        assert (dest / "dev.c").read_text() == "drivers/net/netdevsim/dev.c"
        with pytest.raises(harness.NetdevsimUnavailable, match="could not extract"):
            harness.extract_netdevsim_source(deb, "6.12", tmp_path / "other", log)


def test_kernel_has_netdevsim_ignores_our_own_build(tmp_path: Path) -> None:
    (tmp_path / "modules.builtin").write_text("kernel/net/core/devlink.ko\n")
    (tmp_path / "modules.dep").write_text("updates/netdevsim.ko: kernel/net/psample/psample.ko\n")
    assert not harness.kernel_has_netdevsim(tmp_path)
    (tmp_path / "modules.dep").write_text("kernel/drivers/net/netdevsim/netdevsim.ko.xz:\n")
    assert harness.kernel_has_netdevsim(tmp_path)


def _fake_kernel(tmp_path: Path) -> harness.Kernel:
    kernel = harness.Kernel("linux-image-test", "1.0-1", "6.1.0-99-amd64", tmp_path / "k")
    kernel.modules.mkdir(parents=True)
    (kernel.modules / "modules.dep").write_text("kernel/net/psample/psample.ko:\n")
    return kernel


def test_a_failed_netdevsim_build_is_recorded_and_retried_on_refresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NETDM_VM_NETDEVSIM", raising=False)
    kernel = _fake_kernel(tmp_path)
    attempts = []

    def fail(kernel: harness.Kernel, work: Path, log: object, *, updated: bool) -> None:
        attempts.append(updated)
        raise harness.NetdevsimUnavailable("apt has no linux-source-6.1 1.0-1")

    monkeypatch.setattr(harness, "_build_netdevsim", fail)
    assert "has not been built" in str(harness.netdevsim_unavailable_reason(kernel))
    reason = harness.ensure_netdevsim(kernel)
    assert reason is not None
    assert reason.startswith("netdevsim could not be built for 6.1.0-99-amd64: apt has no ")
    assert "prepare --refresh" in reason
    assert harness.ensure_netdevsim(kernel) == reason  # recorded: not tried again
    assert harness.netdevsim_unavailable_reason(kernel) == reason
    assert harness.ensure_netdevsim(kernel, refresh=True) == reason
    assert attempts == [False, True]
    assert not list(kernel.directory.glob(".tmp-netdevsim-*"))
    env = harness._guest_env(None, tmp_path, kernel)
    assert env["NETDM_VM_NETDEVSIM_ERROR"] == reason


def test_a_successful_netdevsim_build_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NETDM_VM_NETDEVSIM", raising=False)
    kernel = _fake_kernel(tmp_path)
    builds = []

    def build(
        kernel: harness.Kernel, work: Path, log: object, *, updated: bool
    ) -> dict[str, object]:
        builds.append(work)
        (work / "headers").mkdir()
        (kernel.modules / "updates").mkdir(exist_ok=True)
        (kernel.modules / harness.NETDEVSIM_MODULE).write_bytes(b"\x7fELF")
        return {"source": "built"}

    monkeypatch.setattr(harness, "_build_netdevsim", build)
    assert harness.ensure_netdevsim(kernel) is None
    assert harness.ensure_netdevsim(kernel, refresh=True) is None
    assert len(builds) == 1
    assert (kernel.directory / "headers").is_dir()
    assert "NETDM_VM_NETDEVSIM_ERROR" not in harness._guest_env(None, tmp_path, kernel)
    # The module went missing (someone cleaned up): prepare builds it again.
    (kernel.modules / harness.NETDEVSIM_MODULE).unlink()
    assert "missing" in str(harness.netdevsim_unavailable_reason(kernel))
    assert harness.ensure_netdevsim(kernel) is None
    assert len(builds) == 2
    # NETDM_VM_NETDEVSIM=0 never builds, but a module that is there stays usable.
    monkeypatch.setenv("NETDM_VM_NETDEVSIM", "0")
    assert harness.netdevsim_unavailable_reason(kernel) is None
    shutil.rmtree(kernel.directory / "netdevsim")
    assert "NETDM_VM_NETDEVSIM=0" in str(harness.ensure_netdevsim(kernel))
    assert len(builds) == 2


def test_a_kernel_with_netdevsim_needs_no_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NETDM_VM_NETDEVSIM", raising=False)
    kernel = _fake_kernel(tmp_path)
    (kernel.modules / "modules.dep").write_text("kernel/drivers/net/netdevsim/netdevsim.ko:\n")
    monkeypatch.setattr(harness, "_build_netdevsim", None)  # would fail if called
    assert harness.ensure_netdevsim(kernel) is None


@pytest.mark.parametrize(
    ("setting", "spec", "line"),
    [
        (None, "linux-image-amd64", "6.1"),
        ("6.1", "linux-image-amd64", "6.1"),
        ("6.12", "linux-image-6.12-amd64", "6.12"),
        ("linux-image-6.12-amd64", "linux-image-6.12-amd64", "6.12"),
        ("linux-image-6.1.0-57-amd64", "linux-image-6.1.0-57-amd64", None),
        ("/tmp/k.deb", "/tmp/k.deb", None),
    ],
)
def test_kernel_lines_name_their_metapackages(
    monkeypatch: pytest.MonkeyPatch, setting: str | None, spec: str, line: str | None
) -> None:
    if setting is None:
        monkeypatch.delenv("NETDM_VM_KERNEL", raising=False)
    else:
        monkeypatch.setenv("NETDM_VM_KERNEL", setting)
    assert harness.kernel_spec() == spec
    assert harness.kernel_line() == line


def test_a_line_refuses_another_lines_version() -> None:
    harness.check_kernel_line("6.1", "6.1.192-3")
    harness.check_kernel_line("6.12", "6.12.118-1~deb12u1")
    harness.check_kernel_line(None, "6.12.118-1~deb12u1")
    with pytest.raises(harness.VMError, match="not Linux 6.1"):
        harness.check_kernel_line("6.1", "6.12.118-1~deb12u1")
    with pytest.raises(harness.VMError, match="not Linux 6.12"):
        harness.check_kernel_line("6.12", "6.1.192-3")
