#!/usr/bin/env python3
"""Run commands as root inside a throwaway QEMU VM that boots a stock Debian kernel.

The host kernel may lack the NET_DM drop monitor, so tests that must talk to a
real one run here instead.  The guest boots the uncompressed ``vmlinux`` of a
Debian ``linux-image-*`` package through its PVH entry (qboot, TCG, no KVM),
mounts the host's ``/`` read-only over virtio-9p with a tmpfs overlay on top,
and runs one command with the host's own Python and tools.  The command's
output and exit code come back through a second, writable 9p share.

Everything downloaded or built lives in ``${NETDM_VM_CACHE:-~/.cache/netdm-vm}``;
nothing is installed into the host's ``/boot`` and nothing is written to the repo.
That includes netdevsim, which Debian's kernels lack and hardware-drop tests
need: built once per kernel from Debian's linux-source/headers/kbuild packages.

Usage (from the repo root, as root)::

    python tests/vm/harness.py prepare
    python tests/vm/harness.py run [--timeout S] -- CMD [ARG...]
    python tests/vm/harness.py pytest [--timeout S] [-- PYTEST_ARGS...]
    python tests/vm/harness.py info
    python tests/vm/harness.py --kernel 6.12 pytest     # or NETDM_VM_KERNEL=6.12

Library use: ``prepare()`` and ``run_in_vm()``; see docs/vm-harness.md.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import gzip
import hashlib
import json
import lzma
import os
import re
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

REPO_ROOT = Path(__file__).resolve().parents[2]

DEFAULT_KERNEL = "linux-image-amd64"
# Debian's kernel lines, by the short names NETDM_VM_KERNEL (and tests/run's
# NETDM_VM_KERNELS) accept.  bookworm's own kernel is 6.1 (linux-image-amd64 is
# its metapackage); 6.12 comes from bookworm-security.  Each resolves, pins and
# caches on its own: kernels/<package>_<version>.
KERNEL_LINES = {
    "6.1": "linux-image-amd64",
    "6.12": "linux-image-6.12-amd64",
}
QBOOT_ROM = Path("/usr/share/qemu/qboot.rom")
GUEST_HOSTNAME = "netdm-vm"

# Debian packages the harness needs on the host.  The guest shares the host's
# root, so the tools tests use inside the VM (ip, tc, tcpdump, dropwatch,
# modprobe) must be installed on the host as well.
HOST_PACKAGES = (
    "qemu-system-x86",  # qemu-system-x86_64
    "qemu-system-data",  # qboot.rom
    "busybox-static",  # the initramfs userland
    "kmod",  # depmod and modinfo on the host; modprobe in the guest
    "iproute2",  # ip, tc, and devlink (netdevsim's traps)
    "tcpdump",
    "dropwatch",
)

# Modules the initramfs loads to reach the shared root; Debian builds them as =m.
INITRAMFS_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay")

# Host variables forwarded into the guest unless the caller overrides them.
PASSTHROUGH_ENV = ("CI", "PYTEST_ADDOPTS", "PY_COLORS", "FORCE_COLOR", "NO_COLOR")
PASSTHROUGH_PREFIX = "NETDM_"

# `pytest` without arguments.  Hypothesis' pytest plugin imports all of hypothesis
# at startup, which costs ~15 s under TCG; @given works without the plugin.
DEFAULT_PYTEST_ARGS = ("-m", "kernel", "-ra", "-p", "no:hypothesispytest", "tests/kernel")

# Exit codes of the CLI when the guest command did not produce one.
EXIT_TIMEOUT = 124
EXIT_HARNESS = 125

# Bump when the layout of an unpacked kernel directory changes.
KERNEL_LAYOUT = 1


class VMError(RuntimeError):
    """The VM could not be prepared, booted, or did not report a result."""


class VMTimeoutError(VMError):
    """The guest did not finish before the timeout and was killed."""


@dataclass(frozen=True)
class Kernel:
    """A prepared kernel: everything needed to boot it."""

    package: str
    version: str
    release: str  # `uname -r` of this kernel
    directory: Path

    @property
    def vmlinux(self) -> Path:
        return self.directory / "vmlinux"

    @property
    def bzimage(self) -> Path:
        return self.directory / "root" / "boot" / f"vmlinuz-{self.release}"

    @property
    def modules(self) -> Path:
        return self.directory / "root" / "lib" / "modules" / self.release

    @property
    def initramfs(self) -> Path:
        return self.directory / "initramfs.cpio"


@dataclass(frozen=True)
class VMResult:
    returncode: int
    stdout: str
    stderr: str  # empty when run with merge_output=True
    duration: float  # seconds from qemu start to qemu exit
    kernel_release: str  # `uname -r` in the guest
    console_log: Path  # the guest's serial console of this run (kept for debugging)


# --------------------------------------------------------------------------- helpers


def cache_dir() -> Path:
    raw = os.environ.get("NETDM_VM_CACHE") or str(Path.home() / ".cache" / "netdm-vm")
    path = Path(raw).expanduser().resolve()
    # The path travels on the guest's kernel command line and in shell scripts.
    if re.search(r"\s", str(path)):
        raise VMError(f"the cache path {str(path)!r} contains whitespace; set NETDM_VM_CACHE")
    return path


def kernel_spec() -> str:
    """$NETDM_VM_KERNEL: a line ("6.1", "6.12"), a package, or a local .deb."""
    spec = os.environ.get("NETDM_VM_KERNEL") or DEFAULT_KERNEL
    return KERNEL_LINES.get(spec, spec)


def kernel_line() -> str | None:
    """The line $NETDM_VM_KERNEL names ("6.1", "6.12"), or None for a package or .deb."""
    spec = os.environ.get("NETDM_VM_KERNEL") or DEFAULT_KERNEL
    if spec in KERNEL_LINES:
        return spec
    return next((line for line, package in KERNEL_LINES.items() if package == spec), None)


def check_kernel_line(line: str | None, version: str) -> None:
    """Refuse a package of another line than the one asked for (6.1.x is not 6.12)."""
    if line is not None and not version.startswith(f"{line}."):
        raise VMError(
            f"NETDM_VM_KERNEL={line} resolved to version {version}, which is not Linux {line}; "
            f"the metapackage {KERNEL_LINES[line]} has moved to another line"
        )


def _progress(message: str) -> None:
    print(f"netdm-vm: {message}", file=sys.stderr, flush=True)


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _run(
    argv: Sequence[str],
    *,
    what: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """Run a host command; on failure raise one sentence plus the tail of its output."""
    try:
        proc = subprocess.run(
            list(argv),
            cwd=cwd,
            env=None if env is None else {**os.environ, **env},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError as exc:
        raise VMError(f"could not {what}: {argv[0]} is not installed") from exc
    if proc.returncode != 0:
        detail = _tail(proc.stderr or proc.stdout, 5)
        raise VMError(f"could not {what} ({argv[0]} exited with {proc.returncode}):\n{detail}")
    return proc.stdout


def _tool(name: str) -> str:
    # root's PATH has the sbin directories, other users' may not.
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/sbin/{name}"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise VMError(f"{name} is not installed; run `python tests/vm/harness.py prepare`")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise prepare() between concurrent harness runs sharing a cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- apt


_APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}
# apt's download sandbox user cannot write into root's cache directory.
_APT_OPTS = ("-o", "APT::Sandbox::User=root", "-q")


def _missing_packages(packages: Sequence[str]) -> list[str]:
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package} ${db:Status-Abbrev}\n", *packages],
        capture_output=True,
        text=True,
        check=False,
    )
    installed = {
        line.split()[0]
        for line in proc.stdout.splitlines()
        if len(line.split()) > 1 and line.split()[1].startswith("ii")
    }
    return [p for p in packages if p not in installed]


def _apt_update() -> None:
    _progress("apt-get update")
    _run(["apt-get", *_APT_OPTS, "update"], what="update the apt package lists", env=_APT_ENV)


def ensure_host_packages(packages: Sequence[str] = HOST_PACKAGES) -> None:
    missing = _missing_packages(packages)
    if not missing:
        return
    if os.geteuid() != 0:
        raise VMError(f"missing Debian packages {' '.join(missing)}; run prepare as root")
    _progress(f"installing {' '.join(missing)}")
    argv = ["apt-get", *_APT_OPTS, "install", "-y", "--no-install-recommends", *missing]
    try:
        _run(argv, what=f"install {' '.join(missing)}", env=_APT_ENV)
    except VMError:
        # A fresh machine may have no (or stale) package lists.
        _apt_update()
        _run(argv, what=f"install {' '.join(missing)}", env=_APT_ENV)


def _candidate(package: str) -> str | None:
    out = subprocess.run(
        ["apt-cache", "policy", package], capture_output=True, text=True, check=False
    ).stdout
    match = re.search(r"^\s*Candidate:\s*(\S+)", out, re.M)
    return match.group(1) if match and match.group(1) != "(none)" else None


def _resolve_image_package(spec: str) -> tuple[str, str]:
    """Follow metapackages (linux-image-amd64 -> linux-image-6.1.0-NN-amd64)."""
    name = spec
    for _ in range(5):
        if _candidate(name) is None:
            raise VMError(
                f"apt has no installable package {name!r}; check NETDM_VM_KERNEL and "
                "/etc/apt/sources.list.d (bookworm-security provides the newest kernels)"
            )
        deps = subprocess.run(
            ["apt-cache", "depends", "--important", name],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        images = re.findall(r"^\s*\|?Depends:\s*(linux-image-\S+)", deps, re.M)
        if not images:
            version = _candidate(name)
            assert version is not None
            return name, version
        name = images[0]
    raise VMError(f"could not resolve {spec!r} to a kernel image package")


def resolve_kernel(spec: str, *, refresh: bool) -> tuple[str, str, Path | None]:
    """Return (package, version, local .deb or None).  Pinned in the cache once resolved."""
    if spec.endswith(".deb"):
        deb = Path(spec).expanduser().resolve()
        if not deb.is_file():
            raise VMError(f"NETDM_VM_KERNEL points to {deb}, which does not exist")
        fields = _run(["dpkg-deb", "-f", str(deb), "Package", "Version"], what=f"read {deb.name}")
        found = dict(line.split(": ", 1) for line in fields.splitlines() if ": " in line)
        return found["Package"], found["Version"], deb
    pin = cache_dir() / "resolved" / f"{re.sub(r'[^A-Za-z0-9.+_-]', '_', spec)}.json"
    if pin.is_file() and not refresh:
        data = json.loads(pin.read_text())
        return str(data["package"]), str(data["version"]), None
    if refresh:
        _apt_update()
    try:
        package, version = _resolve_image_package(spec)
    except VMError:
        if refresh:
            raise
        _apt_update()
        package, version = _resolve_image_package(spec)
    pin.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(pin, json.dumps({"package": package, "version": version}).encode())
    return package, version, None


# --------------------------------------------------------------------------- kernel image


_COMPRESSORS = {
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"\x1f\x8b\x08": "gzip",
    b"\x5d\x00\x00": "lzma",
}


def _decompress(kind: str, data: bytes) -> bytes:
    """Decompress one stream; trailing bytes (the kernel appends its size) are ignored."""
    if kind == "xz":
        return lzma.LZMADecompressor(lzma.FORMAT_XZ).decompress(data)
    if kind == "lzma":
        return lzma.LZMADecompressor(lzma.FORMAT_ALONE).decompress(data)
    if kind == "gzip":
        return zlib.decompressobj(wbits=31).decompress(data)
    if kind == "zstd":
        ensure_host_packages(["zstd"])
        proc = subprocess.run(["zstd", "-dcq"], input=data, capture_output=True, check=False)
        return proc.stdout  # zstd complains about the trailing size word; the ELF is whole
    raise VMError(f"unsupported kernel compression {kind}")


def extract_vmlinux(bzimage: Path) -> bytes:
    """The ELF vmlinux inside a bzImage, located through the x86 boot-protocol header."""
    data = bzimage.read_bytes()
    candidates: list[int] = []
    if data[0x202:0x206] == b"HdrS":
        setup_sects = data[0x1F1] or 4
        payload_offset, _payload_length = struct.unpack_from("<II", data, 0x248)
        candidates.append((setup_sects + 1) * 512 + payload_offset)
    # Fallback: scan for compressor magics, like the kernel's scripts/extract-vmlinux.
    for magic in _COMPRESSORS:
        start = 0
        while (pos := data.find(magic, start)) >= 0:
            candidates.append(pos)
            start = pos + 1
    for pos in candidates:
        kind = next((k for m, k in _COMPRESSORS.items() if data.startswith(m, pos)), None)
        if kind is None:
            continue
        try:
            elf = _decompress(kind, data[pos:])
        except (lzma.LZMAError, OSError, ValueError):
            continue
        if elf.startswith(b"\x7fELF"):
            return elf
    raise VMError(f"could not find a compressed ELF kernel inside {bzimage.name}")


def has_pvh_entry(elf: bytes) -> bool:
    """True if the ELF carries XEN_ELFNOTE_PHYS32_ENTRY, which qemu needs for -kernel vmlinux."""
    if elf[4] != 2:  # ELFCLASS64 only; Debian amd64 kernels are
        return False
    (phoff,) = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for i in range(phnum):
        p_type, _flags, p_offset, _va, _pa, p_filesz = struct.unpack_from(
            "<IIQQQQ", elf, phoff + i * phentsize
        )
        if p_type != 4:  # PT_NOTE
            continue
        pos, end = p_offset, p_offset + p_filesz
        while pos + 12 <= end:
            namesz, descsz, n_type = struct.unpack_from("<III", elf, pos)
            name = elf[pos + 12 : pos + 12 + namesz].rstrip(b"\0")
            if name == b"Xen" and n_type == 18:
                return True
            pos += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return False


def _unpack_kernel(package: str, version: str, deb: Path | None, target: Path) -> str:
    """Download and unpack one kernel package into `target`; return its release."""
    work = target.with_name(f".tmp-{target.name}-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        if deb is None:
            _progress(f"downloading {package} {version}")
            _run(
                ["apt-get", *_APT_OPTS, "download", f"{package}={version}"],
                what=f"download {package} {version} with apt-get (is deb.debian.org reachable?)",
                cwd=work,
                env=_APT_ENV,
            )
            debs = list(work.glob("*.deb"))
            if len(debs) != 1:
                raise VMError(f"apt-get download of {package} produced no .deb file")
            deb = debs[0]
        _progress(f"unpacking {deb.name}")
        root = work / "root"
        _run(["dpkg-deb", "-x", str(deb), str(root)], what=f"unpack {deb.name}")
        if deb.parent == work:
            deb.unlink()  # 70 MB we no longer need
        releases = [p.name for p in (root / "lib" / "modules").iterdir() if p.is_dir()]
        if len(releases) != 1:
            raise VMError(f"{package} does not look like a kernel image package")
        release = releases[0]
        _progress(f"extracting vmlinux of {release}")
        elf = extract_vmlinux(root / "boot" / f"vmlinuz-{release}")
        if has_pvh_entry(elf):
            (work / "vmlinux").write_bytes(elf)  # booting bzImage instead is just slower
        _progress("running depmod")
        _run([_tool("depmod"), "-b", str(root), release], what=f"run depmod for {release}")
        manifest = {
            "package": package,
            "version": version,
            "release": release,
            "layout": KERNEL_LAYOUT,
        }
        (work / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(work, target)
        return release
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------- initramfs

# Stage 1 runs from the initramfs as PID 1 (busybox): load the 9p/overlay modules,
# build the guest root (host / read-only + tmpfs overlay) and switch to it.
STAGE1 = r"""#!/bin/sh
export PATH=/bin
fail() {
    echo "netdm-vm: stage 1 failed: $*"
    poweroff -f
    exit 1
}
mount -t proc proc /proc || fail "mount /proc"
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r ko; do
    insmod "/modules/$ko" || fail "insmod $ko"
done </modules/order

out=
for arg in $(cat /proc/cmdline); do
    case "$arg" in netdm.out=*) out="${arg#netdm.out=}" ;; esac
done
[ -n "$out" ] || fail "no netdm.out= on the kernel command line"

# cache=loose: the host root does not change under a run, and every 9p round
# trip is expensive under TCG (Python imports stat a lot).
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose netdm-root /lower \
    || fail "mount the host root over 9p"
mount -t tmpfs -o mode=0755 netdm-upper /upper
mkdir /upper/data /upper/work
mount -t overlay -o lowerdir=/lower,upperdir=/upper/data,workdir=/upper/work overlay /newroot \
    || fail "mount the overlay"

R=/newroot
mount -t proc proc $R/proc
mount -t sysfs sysfs $R/sys
mount -t devtmpfs devtmpfs $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts $R/dev/pts
mount -t tmpfs -o mode=1777 shm $R/dev/shm
mount -t tmpfs -o mode=0755 run $R/run
# /tmp stays the overlay of the host's /tmp: a checkout there (CI clones into
# temporary folders) must be visible; what the guest writes stays in the overlay.
mount -t tracefs tracefs $R/sys/kernel/tracing 2>/dev/null
mount -t debugfs debugfs $R/sys/kernel/debug 2>/dev/null

# The results share: written by the guest, read by the host, same path on both.
mkdir -p "$R$out" && mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 netdm-out "$R$out" \
    || fail "mount the results share"

# modprobe in the guest finds the unpacked package's (depmod'ed) modules.
mkdir -p "$R/lib/modules/$KVER" && mount --bind "/lower$MODDIR" "$R/lib/modules/$KVER" \
    || fail "bind-mount the kernel modules"

# A real file: a symlink into the 9p root costs a lookup on every localtime().
lt=$(readlink $R/etc/localtime)
if [ -n "$lt" ]; then
    case "$lt" in /*) src="$R$lt" ;; *) src="$R/etc/$lt" ;; esac
    cp "$src" $R/etc/.localtime && mv -f $R/etc/.localtime $R/etc/localtime
fi
hostname $HOSTNAME
echo $HOSTNAME >$R/etc/hostname
echo "127.0.1.1 $HOSTNAME" >>$R/etc/hosts
ip link set lo up

mkdir -p $R/run/netdm
cp /bin/busybox /stage2 $R/run/netdm/
exec switch_root $R /bin/sh /run/netdm/stage2 "$out"
"""

# Stage 2 runs in the guest root as PID 1 (the host's /bin/sh): run the job, report, power off.
STAGE2 = r"""#!/bin/sh
out="$1"
uname -r >"$out/kernel-release"
cd /
echo "netdm-vm: guest is up ($(uname -r)), running the command"
# Start from an empty environment: job.sh sets the one the caller asked for.
/run/netdm/busybox env -i /bin/sh "$out/job.sh" </dev/null >"$out/stdout" 2>"$out/stderr"
rc=$?
echo "$rc" >"$out/exit-code"
echo "netdm-vm: the command exited with $rc, powering off"
sync
/run/netdm/busybox poweroff -f
echo o >/proc/sysrq-trigger
"""


def _cpio_newc(entries: Sequence[tuple[str, int, bytes, tuple[int, int]]]) -> bytes:
    """A newc cpio archive of (name, mode, data, (rdev major, minor)) entries, owned by root."""
    out = bytearray()

    def add(name: str, mode: int, data: bytes, rdev: tuple[int, int], ino: int) -> None:
        encoded = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
        out.extend(b"070701" + b"".join(b"%08X" % f for f in fields) + encoded)
        out.extend(b"\0" * (-len(out) % 4))
        out.extend(data)
        out.extend(b"\0" * (-len(out) % 4))

    for ino, (name, mode, data, rdev) in enumerate(entries, start=1):
        add(name, mode, data, rdev, ino)
    add("TRAILER!!!", 0, b"", (0, 0), 0)
    return bytes(out)


def _module_load_order(modules_dir: Path, wanted: Sequence[str]) -> list[Path]:
    """Paths of `wanted` modules and their dependencies, dependencies first."""
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
        by_name[_module_name(path)] = path
    builtin = {
        _module_name(line)
        for line in (modules_dir / "modules.builtin").read_text().splitlines()
        if line
    }
    order: list[str] = []

    def visit(path: str) -> None:
        if path in order:
            return
        for dep in deps.get(path, []):
            visit(dep)
        order.append(path)

    for name in wanted:
        key = name.replace("-", "_")
        if key in by_name:
            visit(by_name[key])
        elif key not in builtin:
            raise VMError(f"the kernel has no module {name}, which the VM needs to boot")
    return [modules_dir / p for p in order]


def _module_name(path: str) -> str:
    base = path.rsplit("/", 1)[-1]
    return re.sub(r"\.ko(\.(xz|zst|gz))?$", "", base).replace("-", "_")


def _plain_module(path: Path) -> bytes:
    """busybox insmod wants an uncompressed .ko."""
    data = path.read_bytes()
    if path.suffix == ".xz":
        return lzma.decompress(data)
    if path.suffix == ".gz":
        return gzip.decompress(data)
    if path.suffix == ".zst":
        return _decompress("zstd", data)
    return data


def _is_static_elf(data: bytes) -> bool:
    """An ELF64 without a PT_INTERP program header runs without a dynamic loader."""
    if not data.startswith(b"\x7fELF") or data[4] != 2:
        return False
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    return all(struct.unpack_from("<I", data, phoff + i * phentsize)[0] != 3 for i in range(phnum))


def _busybox() -> Path:
    busybox = Path("/bin/busybox")
    if not busybox.is_file() or not _is_static_elf(busybox.read_bytes()):
        raise VMError("/bin/busybox is missing or not static; install busybox-static")
    return busybox


def build_initramfs(kernel: Kernel) -> None:
    """(Re)build the initramfs unless the one in the cache matches what we would build."""
    modules = _module_load_order(kernel.modules, INITRAMFS_MODULES)
    busybox = _busybox()
    config = (
        f"KVER={shlex.quote(kernel.release)}\n"
        f"MODDIR={shlex.quote(str(kernel.modules))}\n"
        f"HOSTNAME={GUEST_HOSTNAME}\n"
    )
    stage1 = STAGE1.replace("export PATH=/bin\n", f"export PATH=/bin\n{config}", 1)
    digest = hashlib.sha256()
    for part in (stage1.encode(), STAGE2.encode(), busybox.read_bytes()):
        digest.update(part)
    for mod in modules:
        digest.update(str(mod).encode())
    stamp = kernel.directory / "initramfs.sha256"
    if kernel.initramfs.is_file() and stamp.is_file() and stamp.read_text() == digest.hexdigest():
        return
    _progress(f"building the initramfs ({', '.join(m.name for m in modules)})")
    applets = subprocess.run(
        [str(busybox), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    entries: list[tuple[str, int, bytes, tuple[int, int]]] = []
    for d in ("bin", "dev", "proc", "sys", "lower", "upper", "newroot", "modules"):
        entries.append((d, 0o040755, b"", (0, 0)))
    entries.append(("dev/console", 0o020600, b"", (5, 1)))
    entries.append(("bin/busybox", 0o100755, busybox.read_bytes(), (0, 0)))
    entries += [(f"bin/{a}", 0o120777, b"busybox", (0, 0)) for a in applets if a != "busybox"]
    for mod in modules:
        name = _module_name(mod.name) + ".ko"
        entries.append((f"modules/{name}", 0o100644, _plain_module(mod), (0, 0)))
    order = "".join(_module_name(m.name) + ".ko\n" for m in modules).encode()
    entries.append(("modules/order", 0o100644, order, (0, 0)))
    entries.append(("init", 0o100755, stage1.encode(), (0, 0)))
    entries.append(("stage2", 0o100755, STAGE2.encode(), (0, 0)))
    _write_atomic(kernel.initramfs, _cpio_newc(entries))
    _write_atomic(stamp, digest.hexdigest().encode())


# --------------------------------------------------------------------------- netdevsim

# Debian builds its kernels without netdevsim (CONFIG_NETDEVSIM is not set): the
# driver that fakes a devlink device with packet traps, the one way to make a
# kernel report *hardware* drops without the hardware.  prepare() builds it once,
# out of tree, from the Debian packages that match the booted kernel (source,
# headers, kbuild), and installs it as lib/modules/<release>/updates/netdevsim.ko.

# Bump when the build or its result changes: results of older recipes are redone.
NETDEVSIM_RECIPE = 1
NETDEVSIM_MODULE = "updates/netdevsim.ko"  # relative to lib/modules/<release>
# Host tools the build needs besides the compiler that the headers package names.
NETDEVSIM_BUILD_TOOLS = ("make", "binutils", "xz-utils", "tar")
# Variables of an enclosing make or cross build that must not leak into kbuild.
_KBUILD_UNSET = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "ARCH", "CROSS_COMPILE", "KBUILD_OUTPUT")
_RETRY_HINT = "`python tests/vm/harness.py prepare --refresh` tries again"


class NetdevsimUnavailable(VMError):
    """netdevsim cannot be built for this kernel (one sentence; its tests skip with it)."""


@dataclass(frozen=True)
class BuildPackages:
    """The Debian packages netdevsim is built from, all at the kernel's version."""

    version: str
    source: str  # linux-source-6.1: the (Debian-patched) source tarball
    headers: str  # linux-headers-6.1.0-56-amd64: .config, Module.symvers, generated headers
    common: str  # linux-headers-6.1.0-56-common: the headers proper and the top Makefile
    kbuild: str  # linux-kbuild-6.1: scripts/ and tools/ (fixdep, modpost, objtool)
    compiler: str  # gcc-12: the compiler Debian built the kernel with

    @property
    def debs(self) -> tuple[str, str, str, str]:
        return (self.source, self.headers, self.common, self.kbuild)

    @property
    def series(self) -> str:
        return self.source.removeprefix("linux-source-")


def build_packages_from_depends(release: str, version: str, depends: str) -> BuildPackages:
    """Name the build's packages, given the ``Depends:`` of linux-headers-<release>.

    6.1: ``linux-headers-6.1.0-56-common (= 6.1.192-2), linux-kbuild-6.1 (>= 6.1.192-2),
    linux-compiler-gcc-12-x86``; 6.12: ``..., linux-kbuild-6.12.117+deb12, gcc-12``.
    """
    names = re.findall(r"(?:^|[,|])\s*([a-z0-9][a-z0-9.+-]*)", depends)
    common = next((n for n in names if re.fullmatch(r"linux-headers-.+-common", n)), None)
    kbuild = next((n for n in names if n.startswith("linux-kbuild-")), None)
    compilers = [m.group(1) for n in names if (m := re.search(r"(?:^|-)(gcc-\d+)(?:-|$)", n))]
    series = re.match(r"\d+\.\d+", version)
    if common is None or kbuild is None or series is None:
        raise NetdevsimUnavailable(
            f"linux-headers-{release} {version} does not name its -common headers and "
            "kbuild packages"
        )
    return BuildPackages(
        version=version,
        source=f"linux-source-{series.group(0)}",
        headers=f"linux-headers-{release}",
        common=common,
        kbuild=kbuild,
        compiler=compilers[0] if compilers else "gcc",
    )


def _apt_show(*packages: str, version: str) -> str | None:
    """``apt-cache show`` of exact versions, or None if apt lacks any of them."""
    proc = subprocess.run(
        ["apt-cache", "show", *(f"{package}={version}" for package in packages)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout if proc.returncode == 0 and proc.stdout.strip() else None


def _resolve_build_packages(kernel: Kernel, *, updated: bool) -> BuildPackages:
    """The packages, checked to be available from apt (after one apt-get update if not)."""
    missing = f"linux-headers-{kernel.release}"
    for attempt in range(2):
        if attempt:
            if updated:
                break
            _apt_update()  # the lists may predate the kernel's security update
        shown = _apt_show(f"linux-headers-{kernel.release}", version=kernel.version)
        if shown is None:
            continue
        match = re.search(r"^Depends:\s*(.*)$", shown, re.M)
        packages = build_packages_from_depends(
            kernel.release, kernel.version, match.group(1) if match else ""
        )
        others = (packages.source, packages.common, packages.kbuild)
        if _apt_show(*others, version=kernel.version) is not None:
            return packages
        missing = next((p for p in others if _apt_show(p, version=kernel.version) is None), "?")
    raise NetdevsimUnavailable(f"apt has no {missing} {kernel.version}")


def kernel_has_netdevsim(modules_dir: Path) -> bool:
    """True if the kernel's own modules include netdevsim (CONFIG_NETDEVSIM=m or =y)."""
    for index in ("modules.dep", "modules.builtin"):
        with contextlib.suppress(OSError):
            for line in (modules_dir / index).read_text().splitlines():
                path = line.partition(":")[0]
                if _module_name(path) == "netdevsim" and not path.startswith("updates/"):
                    return True
    return False


def fix_headers_tree(root: Path, release: str) -> Path:
    """Make headers unpacked under `root` (instead of /) usable; return the arch headers dir.

    The arch package's Makefile includes ``/usr/src/linux-headers-<abi>-common/Makefile``
    by absolute path: that include becomes relative, which also lets the tree move.
    Absolute ``scripts``/``tools`` symlinks (into linux-kbuild) become relative too.
    """
    src = root / "usr" / "src"
    arch = src / f"linux-headers-{release}"
    makefile = arch / "Makefile"
    if not makefile.is_file():
        raise NetdevsimUnavailable(f"linux-headers-{release} has no Makefile")

    def include(match: re.Match[str]) -> str:
        inside = root / match.group(2).lstrip("/")
        if not inside.exists():
            return match.group(0)
        return match.group(1) + os.path.relpath(inside, arch)

    text = makefile.read_text()
    fixed = re.sub(r"(?m)^(\s*-?include\s+)(/\S+)", include, text)
    if fixed != text:
        makefile.write_text(fixed)
    for tree in src.iterdir():
        for link in (tree / "scripts", tree / "tools"):
            if link.is_symlink() and os.readlink(link).startswith("/"):
                target = root / os.readlink(link).lstrip("/")
                link.unlink()
                link.symlink_to(os.path.relpath(target, tree))
    if not (arch / "scripts" / "Makefile.build").is_file():
        raise NetdevsimUnavailable(
            f"the unpacked linux-headers-{release} has no kbuild scripts (scripts/Makefile.build)"
        )
    return arch


def extract_netdevsim_source(deb: Path, series: str, dest: Path, log: BinaryIO) -> None:
    """Unpack only drivers/net/netdevsim/ of the tarball in linux-source-<series>.deb.

    A pipeline, .deb -> tarball -> xz -> tar, so the 140 MB tarball never lands
    on disk.  It still has to be decompressed whole: about 5 s with a separate
    multi-threaded xz (Debian's tarball has several xz blocks), 9 s with tar -J.
    """
    dest.mkdir(parents=True, exist_ok=True)
    top = f"linux-source-{series}"
    member = f"{top}/drivers/net/netdevsim"
    pipeline = (
        ["dpkg-deb", "--fsys-tarfile", str(deb)],
        ["tar", "-xO", "-f", "-", f"./usr/src/{top}.tar.xz"],
        ["xz", "-dc", "-T0"],
        ["tar", "-x", "-f", "-", "-C", str(dest), "--strip-components=4", member],
    )
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for argv in pipeline:
            upstream = procs[-1].stdout if procs else None
            last = len(procs) == len(pipeline) - 1
            procs.append(
                subprocess.Popen(
                    argv,
                    stdin=upstream or subprocess.DEVNULL,
                    stdout=log if last else subprocess.PIPE,
                    stderr=log,
                )
            )
            if upstream is not None:
                upstream.close()  # now only the new process holds the pipe's read end
        codes = [proc.wait() for proc in procs]
    except FileNotFoundError as exc:
        raise NetdevsimUnavailable(
            f"could not extract {member}: {exc.filename} is missing"
        ) from None
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if any(codes) or not (dest / "Makefile").is_file():
        raise NetdevsimUnavailable(
            f"could not extract {member} from {deb.name} "
            f"({', '.join(Path(a[0]).name for a in pipeline)} exited with "
            f"{', '.join(map(str, codes))})"
        )


def _logged(
    argv: Sequence[str],
    log: BinaryIO,
    *,
    what: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """Run one build step with its output appended to the build log."""
    log.write(f"$ {shlex.join(argv)}\n".encode())
    log.flush()
    try:
        code = subprocess.run(
            list(argv),
            cwd=cwd,
            env=None if env is None else dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        ).returncode
    except FileNotFoundError:
        raise NetdevsimUnavailable(f"could not {what}: {argv[0]} is not installed") from None
    if code != 0:
        raise NetdevsimUnavailable(f"could not {what} ({Path(argv[0]).name} exited with {code})")


def _netdevsim_dir(kernel: Kernel) -> Path:
    return kernel.directory / "netdevsim"


def _read_netdevsim_result(kernel: Kernel) -> dict[str, object] | None:
    try:
        data = json.loads((_netdevsim_dir(kernel) / "result.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("recipe") != NETDEVSIM_RECIPE:
        return None
    return data


def netdevsim_unavailable_reason(kernel: Kernel) -> str | None:
    """None if ``modprobe netdevsim`` works in the guest of `kernel`, else why not."""
    result = _read_netdevsim_result(kernel)
    if result is None and os.environ.get("NETDM_VM_NETDEVSIM") == "0":
        return f"netdevsim was not built for {kernel.release} (NETDM_VM_NETDEVSIM=0)"
    if result is None:
        return (
            f"netdevsim has not been built for {kernel.release}; "
            "`python tests/vm/harness.py prepare` builds it"
        )
    if result.get("ok") is not True:
        return str(result.get("error") or "netdevsim could not be built")
    if result.get("source") == "kernel" or (kernel.modules / NETDEVSIM_MODULE).is_file():
        return None
    return (
        f"netdevsim.ko is missing from {kernel.modules}; "
        "`python tests/vm/harness.py prepare` builds it again"
    )


def _build_netdevsim(
    kernel: Kernel, work: Path, log: BinaryIO, *, updated: bool
) -> dict[str, object]:
    """Download, unpack, build, install.  Raises NetdevsimUnavailable."""
    seconds: dict[str, float] = {}
    clock = time.monotonic()

    def lap(step: str) -> None:
        nonlocal clock
        now = time.monotonic()
        seconds[step] = round(now - clock, 1)
        clock = now

    packages = _resolve_build_packages(kernel, updated=updated)
    tools = [packages.compiler, *NETDEVSIM_BUILD_TOOLS]
    try:
        ensure_host_packages(tools)
    except VMError:
        raise NetdevsimUnavailable(f"could not install {' '.join(tools)} with apt-get") from None
    lap("resolve")

    debs_dir = work / "debs"
    debs_dir.mkdir()
    wanted = [f"{name}={packages.version}" for name in packages.debs]
    _progress(f"netdevsim: downloading {' '.join(wanted)}")
    _logged(
        ["apt-get", *_APT_OPTS, "download", *wanted],
        log,
        what=f"download {', '.join(packages.debs)} {packages.version} with apt-get",
        cwd=debs_dir,
        env={**os.environ, **_APT_ENV},
    )
    debs = {}
    for name in packages.debs:
        found = sorted(debs_dir.glob(f"{name}_*.deb"))
        if not found:
            raise NetdevsimUnavailable(f"apt-get download of {name} produced no .deb file")
        debs[name] = found[0]
    lap("download")

    headers = work / "headers"
    _progress("netdevsim: unpacking the headers and kbuild, extracting the netdevsim source")
    for name in (packages.headers, packages.common, packages.kbuild):
        _logged(["dpkg-deb", "-x", str(debs[name]), str(headers)], log, what=f"unpack {name}")
    arch = fix_headers_tree(headers, kernel.release)
    lap("unpack_headers")
    src = work / "src"
    extract_netdevsim_source(debs[packages.source], packages.series, src, log)
    shutil.rmtree(debs_dir)  # 150 MB, the source tarball most of it
    lap("extract_source")

    _progress(f"netdevsim: compiling with {packages.compiler}")
    env = {k: v for k, v in os.environ.items() if k not in _KBUILD_UNSET}
    env["LC_ALL"] = "C"
    _logged(
        ["make", "-C", str(arch), f"M={src}", "CONFIG_NETDEVSIM=m",
         # No BTF: it needs pahole and the kernel's vmlinux; the module loads without it.
         "CONFIG_DEBUG_INFO_BTF_MODULES=", f"-j{os.cpu_count() or 1}", "modules"],
        log,
        what="compile netdevsim",
        env=env,
    )  # fmt: skip
    lap("compile")
    module = src / "netdevsim.ko"
    modinfo = _tool("modinfo")
    vermagic = _run([modinfo, "-F", "vermagic", str(module)], what="read netdevsim.ko").split()
    if vermagic[:1] != [kernel.release]:
        raise NetdevsimUnavailable(
            f"the built netdevsim.ko is for {' '.join(vermagic[:1]) or 'no kernel'}, "
            f"not {kernel.release}"
        )
    depends = _run([modinfo, "-F", "depends", str(module)], what="read netdevsim.ko").strip()

    target = kernel.modules / NETDEVSIM_MODULE
    target.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(target, module.read_bytes())
    _progress("netdevsim: installing it and running depmod")
    _run(
        [_tool("depmod"), "-b", str(kernel.directory / "root"), kernel.release],
        what=f"run depmod for {kernel.release}",
    )
    lap("install")
    return {
        "source": "built",
        "packages": list(wanted),
        "compiler": packages.compiler,
        "step_seconds": seconds,
        "module": NETDEVSIM_MODULE,
        "depends": [d for d in depends.split(",") if d],
    }


def ensure_netdevsim(kernel: Kernel, *, refresh: bool = False) -> str | None:
    """Build and install netdevsim for `kernel` unless already done; return why not, or None.

    Idempotent; call it with the cache lock held (prepare() does).  A failure is
    recorded in the cache, so that later runs skip netdevsim's tests with that
    reason at no cost; `refresh` tries again.  Never raises for netdevsim's own
    failures: the VM stays usable for every other test.
    """
    result = _read_netdevsim_result(kernel)
    reason = netdevsim_unavailable_reason(kernel)
    if reason is None or os.environ.get("NETDM_VM_NETDEVSIM") == "0":
        return reason
    if result is not None and result.get("ok") is not True and not refresh:
        return reason  # a recorded failure
    # Only the lock holder creates these, so any that exist were left by a killed run.
    for stale in kernel.directory.glob(".tmp-netdevsim-*"):
        shutil.rmtree(stale, ignore_errors=True)
    state = _netdevsim_dir(kernel)
    work = kernel.directory / f".tmp-netdevsim-{os.getpid()}"
    work.mkdir()
    started = time.monotonic()
    try:
        out = work / "result"
        out.mkdir()
        with (out / "build.log").open("wb") as log:
            try:
                if kernel_has_netdevsim(kernel.modules):
                    outcome: dict[str, object] = {"source": "kernel"}
                else:
                    _progress(f"building netdevsim for {kernel.release} (once per kernel)")
                    outcome = _build_netdevsim(kernel, work, log, updated=refresh)
                outcome["ok"] = True
            except (VMError, OSError) as exc:  # VMError: NetdevsimUnavailable, or from _run
                why = str(exc).splitlines()[0].rstrip(":") if str(exc) else repr(exc)
                outcome = {
                    "ok": False,
                    "error": (
                        f"netdevsim could not be built for {kernel.release}: {why} "
                        f"(log: {state / 'build.log'}); {_RETRY_HINT}"
                    ),
                }
        outcome["recipe"] = NETDEVSIM_RECIPE
        outcome["seconds"] = round(time.monotonic() - started, 1)
        (out / "result.json").write_text(json.dumps(outcome, indent=1) + "\n")
        if outcome["ok"] is True and (work / "headers").is_dir():
            shutil.rmtree(kernel.directory / "headers", ignore_errors=True)
            os.replace(work / "headers", kernel.directory / "headers")
        shutil.rmtree(state, ignore_errors=True)
        os.replace(out, state)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    reason = netdevsim_unavailable_reason(kernel)
    if reason is None:
        _progress(f"netdevsim: ready in {time.monotonic() - started:.1f}s")
    return reason


# --------------------------------------------------------------------------- prepare


def _load_kernel(directory: Path) -> Kernel | None:
    try:
        data = json.loads((directory / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if data.get("layout") != KERNEL_LAYOUT:
        return None
    return Kernel(str(data["package"]), str(data["version"]), str(data["release"]), directory)


def _kernel_dir(package: str, version: str) -> Path:
    return cache_dir() / "kernels" / re.sub(r"[^A-Za-z0-9.+_-]", "_", f"{package}_{version}")


def prepare(*, refresh: bool = False, quiet: bool = False) -> Kernel:
    """Make sure everything the VM needs is installed, downloaded and built.  Idempotent.

    `refresh` re-resolves the kernel package against apt (after apt-get update);
    otherwise the package resolved the first time stays pinned in the cache.  It
    also retries a netdevsim build that failed before.  netdevsim failing to build
    is not an error here: see netdevsim_unavailable_reason().
    """
    started = time.monotonic()
    if shutil.which("apt-get") is None or shutil.which("dpkg-query") is None:
        raise VMError("the VM harness needs a Debian host (apt-get and dpkg were not found)")
    cache = cache_dir()
    with _locked(cache / "lock"):
        ensure_host_packages()
        if not QBOOT_ROM.is_file():
            raise VMError(f"{QBOOT_ROM} is missing; reinstall qemu-system-data")
        spec = kernel_spec()
        package, version, deb = resolve_kernel(spec, refresh=refresh)
        check_kernel_line(kernel_line(), version)
        kernel = _load_kernel(_kernel_dir(package, version))
        if kernel is None:
            try:
                _unpack_kernel(package, version, deb, _kernel_dir(package, version))
            except VMError:
                if refresh or deb is not None:
                    raise
                # The pinned version may have left the archive (superseded by a
                # security update): resolve again and take the current one.
                package, version, deb = resolve_kernel(spec, refresh=True)
                check_kernel_line(kernel_line(), version)
                _unpack_kernel(package, version, deb, _kernel_dir(package, version))
            kernel = _load_kernel(_kernel_dir(package, version))
            assert kernel is not None
        build_initramfs(kernel)
        netdevsim_missing = ensure_netdevsim(kernel, refresh=refresh)
    if not quiet:
        if netdevsim_missing:
            _progress(f"warning: {netdevsim_missing}")
        elapsed = time.monotonic() - started
        _progress(f"ready: kernel {kernel.release} ({package} {version}) in {elapsed:.1f}s")
    return kernel


# --------------------------------------------------------------------------- run


def _guest_env(env: Mapping[str, str] | None, outdir: Path, kernel: Kernel) -> dict[str, str]:
    python_bin = str(Path(sys.executable).parent)
    result = {
        "PATH": f"{python_bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "USER": "root",
        "LOGNAME": "root",
        "SHELL": "/bin/sh",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",  # the host root is shared read-only
        "NETDM_VM": "1",
        "NETDM_VM_OUTDIR": str(outdir),
        "NETDM_VM_KERNEL_RELEASE": kernel.release,
    }
    netdevsim_missing = netdevsim_unavailable_reason(kernel)
    if netdevsim_missing:
        result["NETDM_VM_NETDEVSIM_ERROR"] = netdevsim_missing  # the skip reason of its tests
    for name, value in os.environ.items():
        if name in PASSTHROUGH_ENV or name.startswith(PASSTHROUGH_PREFIX):
            result.setdefault(name, value)
    result.update(env or {})
    return result


def _job_script(
    command: Sequence[str] | str, env: Mapping[str, str], cwd: str, merge_output: bool
) -> str:
    lines = ["# generated by tests/vm/harness.py"]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
    if merge_output:
        lines.append("exec 2>&1")
    lines.append(f"cd {shlex.quote(cwd)} || exit 125")
    if isinstance(command, str):
        lines.append(f"exec /bin/sh -c {shlex.quote(command)}")
    else:
        lines.append("exec " + shlex.join(command))
    return "\n".join(lines) + "\n"


def tcg_thread() -> str:
    """$NETDM_VM_TCG_THREAD: "multi" (a host thread per vCPU) or "single" (round robin)."""
    value = os.environ.get("NETDM_VM_TCG_THREAD") or "multi"
    if value not in ("multi", "single"):
        raise VMError(f"NETDM_VM_TCG_THREAD must be multi or single, not {value!r}")
    return value


def _qemu_argv(kernel: Kernel, outdir: Path, console: Path) -> list[str]:
    memory = os.environ.get("NETDM_VM_MEMORY", "1024")
    cpus = os.environ.get("NETDM_VM_CPUS", "2")
    image = kernel.vmlinux if kernel.vmlinux.is_file() else kernel.bzimage
    qemu_path = str(outdir).replace(",", ",,")  # qemu's option syntax escapes commas
    append = [
        "console=ttyS0",
        "mitigations=off",  # retpolines etc. only cost time in an emulated CPU
        "panic=-1",  # a dead init reboots, and -no-reboot turns that into an exit
        f"netdm.out={outdir}",
        # Enabling a trace event in any tracefs instance also hooks sched_switch and
        # sched_wakeup to record task names, patching __schedule and ttwu_do_activate
        # while both vCPUs run them; under multi-threaded TCG that race panics 6.12
        # ("Oops: int3", about once per few hundred enables).  netdm reads raw
        # records and never needs the names.  New instances inherit the option.
        "trace_options=norecord-cmd",
    ]
    if os.environ.get("NETDM_VM_VERBOSE") != "1":
        append.append("quiet")
    append += os.environ.get("NETDM_VM_APPEND", "").split()
    return [
        _tool("qemu-system-x86_64"),
        "-nodefaults",
        "-no-user-config",
        "-machine", "pc",
        "-bios", str(QBOOT_ROM),
        "-accel", f"tcg,thread={tcg_thread()}",
        "-cpu", os.environ.get("NETDM_VM_CPU_MODEL", "max"),
        "-smp", cpus,
        "-m", memory,
        "-display", "none",
        "-serial", f"file:{console}",
        "-no-reboot",
        "-kernel", str(image),
        "-initrd", str(kernel.initramfs),
        "-append", " ".join(append),
        "-fsdev", "local,id=root,path=/,security_model=none,readonly=on,multidevs=remap",
        "-device", "virtio-9p-pci,fsdev=root,mount_tag=netdm-root",
        "-fsdev", f"local,id=out,path={qemu_path},security_model=none,multidevs=remap",
        "-device", "virtio-9p-pci,fsdev=out,mount_tag=netdm-out",
    ]  # fmt: skip


def _die_with_parent() -> None:
    """In the qemu child: get SIGKILLed if the harness dies, so no VM outlives it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class _Follower:
    """Copies what the guest appends to a results file to a host stream."""

    def __init__(self, path: Path, sink: BinaryIO) -> None:
        self.path, self.sink, self.offset = path, sink, 0

    def pump(self) -> None:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except FileNotFoundError:
            return
        if chunk:
            self.offset += len(chunk)
            self.sink.write(chunk)
            self.sink.flush()


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def _diagnostics(out: Path, console: Path) -> str:
    parts = []
    for name in ("stdout", "stderr"):
        text = _tail(_read_text(out / name), 10)
        if text:
            parts.append(f"command {name} tail:\n{text}")
    parts.append(f"console tail ({console}):\n{_tail(_read_text(console)) or '(empty)'}")
    return "\n".join(parts)


def run_in_vm(
    command: Sequence[str] | str,
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    merge_output: bool = False,
    stream: bool = False,
    outdir: Path | None = None,
) -> VMResult:
    """Boot the VM, run `command` as root in the guest, power off, and return its result.

    `command` is an argv list or a /bin/sh command string.  `cwd` defaults to the
    repo root.  `env` is added to a clean guest environment.  `merge_output` sends
    stderr to stdout (ordering kept).  `stream` echoes the guest's output to this
    process's stdout/stderr while it runs.  `outdir` is the results share (same path
    in the guest, $NETDM_VM_OUTDIR there); by default a temporary directory, removed
    afterwards unless the run fails.  Raises VMTimeoutError if the guest is still
    running after `timeout` seconds, VMError if it fails to boot or report.
    """
    kernel = prepare(quiet=True)
    out = Path(outdir or tempfile.mkdtemp(prefix="netdm-vm-")).resolve()
    if re.search(r"\s", str(out)):
        raise VMError(f"the results directory {str(out)!r} contains whitespace")
    out.mkdir(parents=True, exist_ok=True)
    keep = outdir is not None
    try:
        result = _boot(kernel, command, timeout, env, cwd, merge_output, stream, out)
    except VMError:
        keep = True  # for the post-mortem the error message points to
        raise
    finally:
        if (out / "console.log").exists():
            shutil.copyfile(out / "console.log", cache_dir() / "last-console.log")
        if not keep:
            shutil.rmtree(out, ignore_errors=True)
    if not keep:
        result = replace(result, console_log=cache_dir() / "last-console.log")
    return result


def _boot(
    kernel: Kernel,
    command: Sequence[str] | str,
    timeout: float,
    env: Mapping[str, str] | None,
    cwd: str | None,
    merge_output: bool,
    stream: bool,
    out: Path,
) -> VMResult:
    for stale in ("stdout", "stderr", "exit-code", "kernel-release", "console.log"):
        (out / stale).unlink(missing_ok=True)
    console = out / "console.log"
    job = _job_script(command, _guest_env(env, out, kernel), cwd or str(REPO_ROOT), merge_output)
    (out / "job.sh").write_text(job)
    followers = []
    if stream:
        followers = [
            _Follower(out / "stdout", sys.stdout.buffer),
            _Follower(out / "stderr", sys.stderr.buffer),
        ]
    started = time.monotonic()
    with (out / "qemu.log").open("wb") as qemu_log:
        proc = subprocess.Popen(
            _qemu_argv(kernel, out, console),
            stdin=subprocess.DEVNULL,
            stdout=qemu_log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
    try:
        while True:
            try:
                proc.wait(timeout=0.1)
                break
            except subprocess.TimeoutExpired:
                pass
            for follower in followers:
                follower.pump()
            if time.monotonic() - started > timeout:
                proc.kill()
                proc.wait()
                raise VMTimeoutError(
                    f"the VM command did not finish within {timeout:g}s and was killed; "
                    f"results kept in {out}.\n{_diagnostics(out, console)}"
                )
        for follower in followers:
            follower.pump()
    finally:
        if proc.poll() is None:  # interrupted: never leave a VM behind
            proc.kill()
            proc.wait()
    duration = time.monotonic() - started
    code = _read_text(out / "exit-code").strip()
    if not code.isdigit():
        raise VMError(
            f"the VM exited (qemu status {proc.returncode}) without reporting an exit code; "
            f"results kept in {out}.\nqemu said: {_tail(_read_text(out / 'qemu.log'), 5) or '-'}\n"
            f"{_diagnostics(out, console)}"
        )
    return VMResult(
        returncode=int(code),
        stdout=_read_text(out / "stdout"),
        stderr=_read_text(out / "stderr"),
        duration=duration,
        kernel_release=_read_text(out / "kernel-release").strip(),
        console_log=console,
    )


# --------------------------------------------------------------------------- CLI


def _parse_env(items: Sequence[str]) -> dict[str, str]:
    env = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            if name not in os.environ:
                continue
            value = os.environ[name]
        env[name] = value
    return env


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python tests/vm/harness.py",
        description="Run commands as root in a QEMU VM booting a stock Debian kernel.",
    )
    parser.add_argument(
        "--kernel",
        metavar="LINE|PACKAGE",
        help=f"the kernel to boot: {' or '.join(KERNEL_LINES)}, an image package or a .deb "
        "(sets $NETDM_VM_KERNEL; default: $NETDM_VM_KERNEL, else 6.1)",
    )
    sub = parser.add_subparsers(dest="action", required=True)
    p_prepare = sub.add_parser("prepare", help="install, download and build what the VM needs")
    p_prepare.add_argument(
        "--refresh", action="store_true", help="re-resolve the kernel package (apt-get update)"
    )
    sub.add_parser("info", help="print the cache location and the kernel that will boot")
    for name, helptext in (
        ("run", "run a command in the VM; exits with its exit code"),
        ("pytest", "run pytest in the VM (default: -m kernel tests/kernel)"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--timeout", type=float, default=900.0, help="seconds (default 900)")
        p.add_argument(
            "--env",
            action="append",
            default=[],
            metavar="NAME[=VALUE]",
            help="set (or pass through from the host) a guest environment variable",
        )
        p.add_argument("--cwd", help="working directory in the guest (default: repo root)")
        p.add_argument(
            "--outdir", type=Path, help="keep the results share here ($NETDM_VM_OUTDIR in guest)"
        )
        p.add_argument("args", nargs=argparse.REMAINDER, help="-- followed by the command")
    ns = parser.parse_args(argv)
    if ns.kernel:
        os.environ["NETDM_VM_KERNEL"] = ns.kernel  # also passed on to the guest
    # Unwind (and kill the VM) on SIGTERM too, e.g. when CI cancels a job.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))

    try:
        if ns.action == "prepare":
            prepare(refresh=ns.refresh)
            return 0
        if ns.action == "info":
            kernel = prepare(quiet=True)
            print(f"cache:    {cache_dir()}")
            print(f"package:  {kernel.package} {kernel.version}")
            print(f"release:  {kernel.release}")
            print(f"vmlinux:  {kernel.vmlinux if kernel.vmlinux.is_file() else kernel.bzimage}")
            print(f"initrd:   {kernel.initramfs}")
            missing = netdevsim_unavailable_reason(kernel)
            print(f"netdevsim: {missing or kernel.modules / NETDEVSIM_MODULE}")
            return 0
        args = list(ns.args)
        if args[:1] == ["--"]:
            args = args[1:]
        env = _parse_env(ns.env)
        if ns.action == "pytest":
            command = [sys.executable, "-m", "pytest", *(args or DEFAULT_PYTEST_ARGS)]
            env.setdefault("PYTHONUNBUFFERED", "1")  # stream pytest's progress as it happens
            merge = True
        else:
            if not args:
                parser.error("run needs a command after --")
            command, merge = args, False
        result = run_in_vm(
            command,
            timeout=ns.timeout,
            env=env,
            cwd=ns.cwd,
            merge_output=merge,
            stream=True,
            outdir=ns.outdir,
        )
        _progress(
            f"guest exited with {result.returncode} after {result.duration:.1f}s "
            f"(kernel {result.kernel_release})"
        )
        return result.returncode
    except VMTimeoutError as exc:
        _progress(f"error: {exc}")
        return EXIT_TIMEOUT
    except VMError as exc:
        _progress(f"error: {exc}")
        return EXIT_HARNESS
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
