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
