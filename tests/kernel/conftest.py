"""Gate for tests that need a real kernel with the NET_DM drop monitor.

Everything under tests/kernel/ gets the ``kernel`` marker, and every ``kernel``
test collected in the same session runs only where a real NET_DM is reachable:
as root, with the NET_DM generic-netlink family resolvable (resolving it
autoloads drop_monitor.ko).  Elsewhere these tests are skipped with the reason.
The project runs them in a VM booting a stock Debian kernel:

    python tests/vm/harness.py pytest            # = pytest -m kernel tests/kernel, in the VM

Hardware drops come from netdevsim, which Debian does not build; the harness
builds it (see docs/vm-harness.md).  The ``netdevsim`` fixture gives a test a
fresh netdevsim device, or skips it with the reason netdevsim is unavailable.
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

KERNEL_TESTS_DIR = Path(__file__).resolve().parent
VM_HINT = "these tests run in the project's VM via `python tests/vm/harness.py pytest`"


@dataclass(frozen=True)
class NetDmFamily:
    """NET_DM as the running kernel registered it (the id differs between boots)."""

    family_id: int
    mcast_groups: dict[str, int]


def resolve_net_dm() -> NetDmFamily:
    """Resolve NET_DM by name over generic netlink.  Raises OSError if it is not there."""
    # pyroute2 logs an ERROR for an unknown family; the probe handles that itself.
    logging.getLogger("pyroute2").setLevel(logging.CRITICAL)
    from pyroute2.netlink import genlmsg
    from pyroute2.netlink.generic import GenericNetlinkSocket

    sock = GenericNetlinkSocket()
    try:
        sock.bind("NET_DM", genlmsg)
        return NetDmFamily(int(sock.prid), dict(sock.mcast_groups))
    finally:
        sock.close()


@functools.cache
def net_dm_unavailable_reason() -> str | None:
    """None if NET_DM is usable here, else why not (cached for the session)."""
    release = os.uname().release
    if os.geteuid() != 0:
        return f"the drop monitor needs root (running as uid {os.geteuid()}): {VM_HINT}"
    try:
        resolve_net_dm()
    except Exception as exc:  # pyroute2 raises NetlinkError (an OSError) or its own errors
        if getattr(exc, "code", None) == errno.ENOENT or isinstance(exc, FileNotFoundError):
            return f"no NET_DM drop monitor on this kernel ({release}): {VM_HINT}"
        return f"cannot resolve NET_DM on this kernel ({release}: {exc!r}): {VM_HINT}"
    return None


def _is_kernel_test(item: pytest.Item) -> bool:
    return KERNEL_TESTS_DIR in Path(str(item.path)).resolve().parents


@pytest.hookimpl(tryfirst=True)  # before `-m kernel` deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _is_kernel_test(item) and item.get_closest_marker("kernel") is None:
            item.add_marker(pytest.mark.kernel)


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    # After deselection, so the probe runs only if a kernel test is going to run.
    # This hook sees the whole session, so tests marked `kernel` outside
    # tests/kernel/ are gated too (when this directory is collected).
    selected = [item for item in session.items if item.get_closest_marker("kernel") is not None]
    if selected and (reason := net_dm_unavailable_reason()) is not None:
        for item in selected:
            item.add_marker(pytest.mark.skip(reason=reason))


def pytest_report_header(config: pytest.Config) -> str:
    # Shown when pytest is pointed at tests/kernel (as the VM harness does).
    uname = os.uname()
    where = "in the netdm VM" if os.environ.get("NETDM_VM") == "1" else "on the host"
    return f"kernel: {uname.release} {uname.version} ({where})"


@pytest.fixture(scope="session")
def kernel_release() -> str:
    """`uname -r` of the kernel the tests talk to (in the VM: the Debian package's)."""
    return os.uname().release


@pytest.fixture(scope="session")
def in_vm() -> bool:
    """True inside the project's VM (tests/vm/harness.py sets NETDM_VM=1)."""
    return os.environ.get("NETDM_VM") == "1"


@pytest.fixture(scope="session")
def net_dm_family() -> NetDmFamily:
    """NET_DM's family id and multicast groups, resolved by name (skips if absent)."""
    reason = net_dm_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    return resolve_net_dm()


@pytest.fixture(scope="session")
def vm_outdir() -> Path | None:
    """A directory the host can read after the VM run (None outside the VM)."""
    raw = os.environ.get("NETDM_VM_OUTDIR")
    return Path(raw) if raw else None


# --------------------------------------------------------------------------- netdevsim

NETDEVSIM_BUS = Path("/sys/bus/netdevsim")
NETDEVSIM_ID = 1337
# Under TCG a device takes a fraction of a second to appear; allow for a loaded host.
NETDEVSIM_TIMEOUT = 30.0


def _devlink_tool() -> str | None:
    for candidate in (shutil.which("devlink"), "/usr/sbin/devlink", "/sbin/devlink"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@functools.cache
def netdevsim_unavailable_reason() -> str | None:
    """None if ``modprobe netdevsim`` works here and devlink is installed, else why not."""
    release = os.uname().release
    if os.geteuid() != 0:
        return f"netdevsim needs root (running as uid {os.geteuid()}): {VM_HINT}"
    if _devlink_tool() is None:
        return "the devlink tool is not installed (Debian package iproute2)"
    try:
        proc = subprocess.run(
            ["modprobe", "netdevsim"], capture_output=True, text=True, timeout=120, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"could not run modprobe netdevsim on {release}: {exc}"
    if proc.returncode == 0 and NETDEVSIM_BUS.is_dir():
        return None
    # In the VM, the harness says why it could not build the module.
    from_harness = os.environ.get("NETDM_VM_NETDEVSIM_ERROR")
    if from_harness:
        return from_harness
    said = proc.stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
    return f"no netdevsim module on this kernel ({release}; modprobe: {said[0]}): {VM_HINT}"


@dataclass(frozen=True)
class DevlinkTrap:
    """One packet trap, as ``devlink -j trap show`` lists it."""

    name: str
    type: str  # "drop", "exception" or "control"
    action: str  # "drop", "trap" or "mirror"
    group: str
    generic: bool


@dataclass(frozen=True)
class NetdevsimDevice:
    """A netdevsim device with one port, up (netdevsim reports traps only on running ports)."""

    id: int
    ifname: str
    ifindex: int

    @property
    def handle(self) -> str:
        """The devlink handle, e.g. ``netdevsim/netdevsim1337``."""
        return f"netdevsim/netdevsim{self.id}"

    @property
    def sysfs(self) -> Path:
        return NETDEVSIM_BUS / "devices" / f"netdevsim{self.id}"

    def devlink(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``devlink ARGS``; raise with its stderr if it fails."""
        tool = _devlink_tool()
        assert tool is not None
        proc = subprocess.run([tool, *args], capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise AssertionError(f"devlink {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    def traps(self) -> dict[str, DevlinkTrap]:
        """This device's traps by name (``devlink trap show DEV`` wants a trap name too)."""
        listing = json.loads(self.devlink("-j", "trap", "show").stdout or "{}")
        return {
            entry["name"]: DevlinkTrap(
                name=entry["name"],
                type=entry["type"],
                action=entry["action"],
                group=entry["group"],
                generic=bool(entry.get("generic")),
            )
            for entry in listing.get("trap", {}).get(self.handle, [])
        }

    def set_trap_action(self, trap: str, action: str) -> str:
        """``devlink trap set DEV trap TRAP action ACTION``; returns devlink's warning, if any.

        The kernel refuses to change non-drop traps, with a warning but exit status 0.
        """
        proc = self.devlink("trap", "set", self.handle, "trap", trap, "action", action)
        return proc.stderr.strip()


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = NETDEVSIM_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


def delete_netdevsim(device_id: int) -> None:
    """Delete netdevsim device `device_id` (no udev in the VM: poll until it is gone)."""
    directory = NETDEVSIM_BUS / "devices" / f"netdevsim{device_id}"
    if not directory.exists():
        return
    (NETDEVSIM_BUS / "del_device").write_text(f"{device_id}")
    _wait_for(lambda: not directory.exists(), f"netdevsim{device_id} to go away")


def create_netdevsim(device_id: int = NETDEVSIM_ID, ports: int = 1) -> NetdevsimDevice:
    """A new netdevsim device with its first port's interface up.  Replaces a leftover one."""
    delete_netdevsim(device_id)
    (NETDEVSIM_BUS / "new_device").write_text(f"{device_id} {ports}")
    net = NETDEVSIM_BUS / "devices" / f"netdevsim{device_id}" / "net"
    _wait_for(lambda: net.is_dir() and len(os.listdir(net)) >= ports, f"netdevsim{device_id}")
    ifname = sorted(os.listdir(net))[0]
    ifindex = int((net / ifname / "ifindex").read_text())
    subprocess.run(["ip", "link", "set", "dev", ifname, "up"], check=True, timeout=60)
    return NetdevsimDevice(device_id, ifname, ifindex)


@pytest.fixture
def netdevsim() -> Iterator[NetdevsimDevice]:
    """A fresh netdevsim device (``netdevsim/netdevsim1337``, one port, up), deleted afterwards.

    Skips, with the reason, where netdevsim cannot be loaded: the VM harness
    passes on why it could not build the module.
    """
    reason = netdevsim_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    device = create_netdevsim()
    try:
        yield device
    finally:
        delete_netdevsim(device.id)
