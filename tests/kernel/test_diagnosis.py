"""The "why not" cases, produced for real in the VM: namespace, capabilities, module."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from kernel_helpers import REPO, kernel_control

from netdm.errors import ExitCode
from netdm.netlink.control import KernelControl


@pytest.fixture(name="control")
def control_fixture() -> Iterator[KernelControl]:
    yield from kernel_control()


def netdm_as(prefix: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "netdm", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_doctor_is_happy_as_root() -> None:
    result = netdm_as([], "doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok       NET_DM family id" in result.stdout
    assert "problem" not in result.stdout
    assert "ok       drop reasons available" in result.stdout  # 6.1 and 6.12 > 5.18


@pytest.fixture
def namespace() -> Iterator[str]:
    subprocess.run(["ip", "netns", "add", "netdm-elsewhere"], check=True)
    try:
        yield "netdm-elsewhere"
    finally:
        subprocess.run(["ip", "netns", "del", "netdm-elsewhere"], check=False)


def test_another_network_namespace_is_named(namespace: str) -> None:
    in_namespace = ["ip", "netns", "exec", namespace]
    result = netdm_as(in_namespace, "watch", "--source", "netdm", "--duration", "1")
    assert result.returncode == ExitCode.NO_FAMILY
    assert "only in the initial network namespace" in result.stderr
    assert "Traceback" not in result.stderr
    # --source auto (the default) falls back to the tracepoint, and says why.
    fallback = netdm_as(in_namespace, "watch", "--duration", "1")
    assert fallback.returncode == 0, fallback.stderr
    assert fallback.stdout.startswith(
        "Monitoring for dropped packets (skb:kfree_skb tracepoint; NET_DM is not available)"
    )
    assert "only in the initial network namespace" in fallback.stderr


def test_missing_cap_sys_admin_is_named(control: KernelControl) -> None:
    drop = ["setpriv", "--inh-caps=-all", "--bounding-set=-sys_admin"]
    result = netdm_as(drop, "watch", "--duration", "1")
    assert result.returncode == ExitCode.PERMISSION, result.stderr
    assert "CAP_SYS_ADMIN" in result.stderr and "'events'" in result.stderr
    doctor = netdm_as(drop, "doctor")
    assert "problem  CAP_SYS_ADMIN missing" in doctor.stdout


def test_missing_cap_net_admin_is_named(control: KernelControl) -> None:
    drop = ["setpriv", "--inh-caps=-all", "--bounding-set=-net_admin"]
    result = netdm_as(drop, "config", "--mode", "packet")
    assert result.returncode == ExitCode.PERMISSION, result.stderr
    assert "CAP_NET_ADMIN" in result.stderr
    assert "Traceback" not in result.stderr


def test_unloaded_module_is_loaded_by_resolving_the_family() -> None:
    if subprocess.run(["rmmod", "drop_monitor"], capture_output=True).returncode != 0:
        pytest.skip("drop_monitor is in use and cannot be unloaded")
    result = netdm_as([], "doctor")
    assert result.returncode == 0, result.stdout
    assert "resolving it loaded the drop_monitor module" in result.stdout
