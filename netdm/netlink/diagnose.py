"""Why is there no NET_DM family?  One sentence that says which case applies.

Strategy: the kernel only answers ENOENT.  The possible reasons are told apart
by reading files: the network namespace links in /proc, the kernel's build
configuration (/proc/config.gz or /boot/config-RELEASE), the module tree
(/lib/modules/RELEASE) and the loaded modules (/proc/modules).  Every path is a
field of :class:`SystemFiles` so tests can point them at a fake tree.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from netdm.netlink.control import KernelControl
    from netdm.netlink.transport import NetlinkTransport

CONFIG_SYMBOL = "CONFIG_NET_DROP_MONITOR"
MODULE_NAME = "drop_monitor"


@dataclass(frozen=True, slots=True)
class SystemFiles:
    """Where to look; the defaults are the running system's files."""

    release: str
    proc: Path = Path("/proc")
    boot: Path = Path("/boot")
    modules: Path = Path("/lib/modules")

    @classmethod
    def running(cls) -> SystemFiles:
        return cls(release=os.uname().release)


def kernel_config_value(files: SystemFiles, symbol: str = CONFIG_SYMBOL) -> tuple[str, str] | None:
    """``(value, source)`` for ``symbol`` in the kernel's build configuration.

    ``value`` is ``"y"``, ``"m"`` or ``"n"`` (for "is not set"); ``None`` when no
    configuration file is readable.
    """
    candidates = [
        (files.proc / "config.gz", True),
        (files.boot / f"config-{files.release}", False),
    ]
    for path, compressed in candidates:
        try:
            if compressed:
                with gzip.open(path, "rt", encoding="utf-8", errors="replace") as config:
                    text = config.read()
            else:
                text = path.read_text(encoding="utf-8", errors="replace")
        except (OSError, EOFError):
            continue
        for line in text.splitlines():
            if line.startswith(f"{symbol}="):
                return line.split("=", 1)[1].strip(), str(path)
            if line.strip() == f"# {symbol} is not set":
                return "n", str(path)
        return "n", str(path)
    return None


def in_initial_network_namespace(files: SystemFiles) -> bool | None:
    """Whether this process shares PID 1's network namespace (``None``: cannot tell)."""
    try:
        ours = os.stat(files.proc / "self" / "ns" / "net").st_ino
        init = os.stat(files.proc / "1" / "ns" / "net").st_ino
    except OSError:
        return None
    return ours == init


def module_file(files: SystemFiles) -> Path | None:
    """The drop_monitor module file of this kernel, if installed."""
    tree = files.modules / files.release
    if not tree.is_dir():
        return None
    for path in tree.rglob(f"{MODULE_NAME}.ko*"):
        return path
    return None


def module_loaded(files: SystemFiles) -> bool:
    try:
        text = (files.proc / "modules").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    return any(line.split(" ", 1)[0] == MODULE_NAME for line in text.splitlines())


def explain_missing_family(files: SystemFiles | None = None) -> str:
    """The sentence for "the NET_DM family does not resolve", naming the cause."""
    files = files or SystemFiles.running()
    release = files.release
    if in_initial_network_namespace(files) is False:
        return (
            "the NET_DM drop monitor exists only in the initial network namespace, and netdm "
            "runs in another one: run it on the host (a container needs --net=host)"
        )
    config = kernel_config_value(files)
    if config is not None and config[0] == "n":
        return (
            f"this kernel ({release}) was built without {CONFIG_SYMBOL} ({config[1]}), "
            "so it has no drop monitor"
        )
    if config is not None and config[0] == "y":
        return (
            f"this kernel ({release}) has the drop monitor built in ({config[1]}) but the "
            "NET_DM family did not resolve: is netdm in the initial network namespace?"
        )
    module = module_file(files)
    if module is None:
        where = files.modules / release
        if config is None:
            return (
                f"no NET_DM family, no {MODULE_NAME} module under {where} and no kernel "
                f"configuration to read: this kernel ({release}) probably lacks the drop monitor"
            )
        return (
            f"this kernel ({release}) builds the drop monitor as a module, but {MODULE_NAME} "
            f"is not installed under {where}: install the kernel's extra modules package"
        )
    if not module_loaded(files):
        return (
            f"the {MODULE_NAME} module ({module}) is not loaded and was not loaded "
            f"automatically: run 'modprobe {MODULE_NAME}' as root"
        )
    return (
        f"the {MODULE_NAME} module is loaded but the NET_DM family did not resolve: "
        "is netdm in the initial network namespace?"
    )


def open_kernel_control(
    receive_buffer: int = 256 * 1024,
) -> tuple[NetlinkTransport, KernelControl]:
    """A control socket whose :class:`FamilyNotFoundError` names the cause."""
    from netdm.errors import FamilyNotFoundError
    from netdm.netlink.control import KernelControl
    from netdm.netlink.transport import NetlinkTransport

    try:
        transport = NetlinkTransport(receive_buffer=receive_buffer)
    except FamilyNotFoundError:
        raise FamilyNotFoundError(explain_missing_family()) from None
    return transport, KernelControl(transport)


# --------------------------------------------------------------------------- netdm doctor

CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of ``netdm doctor``: ``ok`` or not, and what it means."""

    ok: bool
    message: str


def effective_capabilities(files: SystemFiles) -> int | None:
    """This process's effective capability bits (``CapEff`` in /proc/self/status)."""
    try:
        status = (files.proc / "self" / "status").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return None


def kernel_version(release: str) -> tuple[int, int]:
    """``(6, 1)`` from ``6.1.0-56-amd64``; ``(0, 0)`` when unreadable."""
    numbers = release.split("-", 1)[0].split(".")
    try:
        return int(numbers[0]), int(numbers[1])
    except (IndexError, ValueError):
        return 0, 0


def capability_findings(files: SystemFiles) -> list[Finding]:
    """Which NET_DM steps this process may take, by its capabilities and the kernel version."""
    capabilities = effective_capabilities(files)
    if capabilities is None:
        return [Finding(False, "cannot read this process's capabilities (/proc/self/status)")]
    net_admin = bool(capabilities >> CAP_NET_ADMIN & 1)
    sys_admin = bool(capabilities >> CAP_SYS_ADMIN & 1)
    version = kernel_version(files.release)
    findings = [
        Finding(
            net_admin,
            "CAP_NET_ADMIN "
            + ("held" if net_admin else "missing")
            + ": needed to configure the monitor (and to start/stop it on 6.7+)",
        ),
    ]
    if sys_admin:
        findings.append(Finding(True, "CAP_SYS_ADMIN held: may join the 'events' group"))
    else:
        when = (
            "this kernel needs it"
            if version >= (6, 7)
            else ("6.7+ and stable kernels with that change (Debian's 6.1 among them) need it")
        )
        findings.append(
            Finding(
                False, f"CAP_SYS_ADMIN missing: joining the 'events' group may be refused ({when})"
            )
        )
    return findings


def feature_findings(release: str, maxattr: int | None) -> list[Finding]:
    """What this kernel's drop monitor can do, from the family's maxattr or the version."""
    version = kernel_version(release)
    packet_mode = (maxattr or 0) >= 21 if maxattr is not None else version >= (5, 4)
    reasons = (maxattr or 0) >= 23 if maxattr is not None else version >= (5, 18)
    return [
        Finding(
            packet_mode,
            "packet mode (--packets) "
            + ("available" if packet_mode else "needs a 5.4 or newer kernel"),
        ),
        Finding(
            reasons, "drop reasons " + ("available" if reasons else "need a 5.18 or newer kernel")
        ),
    ]


def kallsyms_finding(files: SystemFiles) -> Finding:
    """Whether /proc/kallsyms gives real addresses (kernel.kptr_restrict).

    Per-CPU symbols sit at address 0 even when nothing is hidden, so only a
    file whose every address is zero means hidden.
    """
    try:
        with (files.proc / "kallsyms").open(encoding="ascii", errors="replace") as kallsyms:
            hidden = all(line.startswith("0000000000000000") for line in kallsyms)
    except OSError as error:
        return Finding(False, f"/proc/kallsyms is not readable ({error.strerror}): raw addresses")
    if hidden:
        return Finding(
            False,
            "/proc/kallsyms hides addresses (kernel.kptr_restrict): drop locations will "
            "print as raw addresses; run as root or pass --symbols",
        )
    return Finding(True, "/proc/kallsyms gives addresses: drop locations get names")
