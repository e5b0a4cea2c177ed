"""`netdm config`, `netdm stats` and `netdm stop` against a real kernel."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import pytest
from kernel_helpers import DEFAULT_CONFIG, kernel_control, run_netdm

from netdm.errors import AlreadyRunningError
from netdm.netlink.control import KernelConfig, KernelControl
from netdm.proto.constants import AlertMode


@pytest.fixture(name="control")
def control_fixture() -> Iterator[KernelControl]:
    yield from kernel_control()


def test_config_shows_and_changes_the_configuration(control: KernelControl) -> None:
    shown = run_netdm("config", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == {"alert_mode": "summary", "trunc_len": 0, "queue_len": 1000}
    changed = run_netdm("config", "--mode", "packet", "--trunc-len", "128", "--queue-len", "77")
    assert changed.returncode == 0, changed.stderr
    assert changed.stdout.splitlines() == [
        "alert mode: packet",
        "truncation length: 128",
        "queue length: 77 packets per CPU",
    ]
    assert control.get_config() == KernelConfig(AlertMode.PACKET, 128, 77)


def test_config_is_refused_while_monitoring(control: KernelControl) -> None:
    control.start(sw=True)
    refused = run_netdm("config", "--queue-len", "5")
    assert refused.returncode == 6
    assert refused.stderr.startswith("Error: the drop monitor cannot be configured")
    assert control.get_config() == DEFAULT_CONFIG


def test_stats_reads_the_counters(control: KernelControl) -> None:
    shown = run_netdm("stats", "--json")
    assert shown.returncode == 0, shown.stderr
    counters = json.loads(shown.stdout)
    expected = control.get_stats()
    assert expected is not None
    assert counters == {"sw_dropped": expected.sw_dropped, "hw_dropped": expected.hw_dropped}


def test_stop_stops_a_monitor_left_running(control: KernelControl) -> None:
    control.start(sw=True)
    with_stop = run_netdm("stop")
    assert with_stop.returncode == 0, with_stop.stderr
    assert with_stop.stdout == "drop monitoring is stopped\n"
    control.start(sw=True)  # would be EAGAIN had it still been running
    with contextlib.suppress(AlreadyRunningError):
        control.start(sw=True)
