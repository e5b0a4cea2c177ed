"""Gate for tests that need a real kernel with the NET_DM drop monitor.

Everything under tests/kernel/ gets the ``kernel`` marker, and every ``kernel``
test collected in the same session runs only where a real NET_DM is reachable:
as root, with the NET_DM generic-netlink family resolvable (resolving it
autoloads drop_monitor.ko).  Elsewhere these tests are skipped with the reason.
The project runs them in a VM booting a stock Debian kernel:

    python tests/vm/harness.py pytest            # = pytest -m kernel tests/kernel, in the VM
"""

from __future__ import annotations

import errno
import functools
import logging
import os
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
