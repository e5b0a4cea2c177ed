"""`netdm watch` and the kernel's drop monitor, against a real kernel.

These run as root where NET_DM exists (the project's VM).  Drops are made by
sending UDP datagrams to a closed port on loopback: each one is freed by
``__udp4_lib_rcv`` (reason NO_SOCKET), one drop per datagram.  The drop
monitor is global, so every test leaves it stopped, in its default
configuration.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator

import pytest
from kernel_helpers import (
    DEFAULT_CONFIG,
    UDP_DROP_FUNCTION,
    WEEKDAYS,
    NetdmProcess,
    drops_at,
    kernel_control,
    run_netdm,
    send_udp_drops,
)

from netdm.errors import AlreadyRunningError, ExitCode
from netdm.netlink.control import KernelConfig, KernelControl
from netdm.proto.constants import AlertMode


@pytest.fixture(name="control")
def control_fixture() -> Iterator[KernelControl]:
    yield from kernel_control()


def test_start_and_stop_are_acknowledged(control: KernelControl) -> None:
    control.start(sw=True)
    with pytest.raises(AlreadyRunningError, match="already running"):
        control.start(sw=True)
    control.stop(sw=True)
    # STOP when stopped still succeeds on 5.4+, with an extended-ack warning.
    control.stop(sw=True)
    assert any("already set" in warning for warning in control.warnings)


def test_config_get_reflects_config(control: KernelControl) -> None:
    assert control.get_config() == DEFAULT_CONFIG
    control.set_config(alert_mode=AlertMode.PACKET, trunc_len=96, queue_len=321)
    assert control.get_config() == KernelConfig(AlertMode.PACKET, 96, 321)
    control.set_config(queue_len=500)  # attributes left out keep their value
    assert control.get_config() == KernelConfig(AlertMode.PACKET, 96, 500)


def test_watch_counts_udp_drops_in_five_second_summaries(control: KernelControl) -> None:
    """The issue's acceptance run: `netdm watch --duration 12`, counts add up to what was sent."""
    netdm = NetdmProcess("watch", "--duration", "12")
    netdm.wait_for_line("Monitoring for dropped packets")
    started = time.monotonic()
    bursts = [(0.5, 40, 0), (5.5, 70, 1), (9.5, 30, 0)]  # (seconds in, datagrams, CPU)
    for at, count, cpu in bursts:
        time.sleep(max(0.0, started + at - time.monotonic()))
        send_udp_drops(count, cpu=cpu % (os.cpu_count() or 1))
    returncode, lines, stderr = netdm.finish()
    assert returncode == 0, stderr
    assert lines[-2:] == ["Stopping dropped packet monitor", lines[-1]]
    assert lines[-1].startswith("Total: ")
    assert drops_at(lines, UDP_DROP_FUNCTION) == sum(count for _, count, _ in bursts)
    interval_headers = [line for line in lines if line[:3] in WEEKDAYS]
    assert len(interval_headers) >= 2, lines  # drops in at least two of the 5-second intervals
    assert control.get_config() == DEFAULT_CONFIG


def test_watch_json_lines(control: KernelControl) -> None:
    netdm = NetdmProcess("watch", "--json", "--interval", "2", "--duration", "4")
    netdm.wait_for_line('"type":"start"')
    send_udp_drops(25)
    returncode, lines, stderr = netdm.finish()
    assert returncode == 0, stderr
    objects = [json.loads(line) for line in lines]
    intervals = [obj for obj in objects if obj["type"] == "interval"]
    counted = sum(
        entry["count"]
        for interval in intervals
        for entry in interval["entries"]
        if entry["symbol"] == UDP_DROP_FUNCTION
    )
    assert counted == 25
    assert all(entry["address"].startswith("0xffff") for i in intervals for entry in i["entries"])


def test_watch_switches_to_summary_and_restores_packet_mode(control: KernelControl) -> None:
    before = KernelConfig(AlertMode.PACKET, 96, 321)
    control.set_config(alert_mode=before.alert_mode, trunc_len=96, queue_len=321)
    netdm = NetdmProcess("watch", "--duration", "3")
    netdm.wait_for_line("Monitoring for dropped packets")
    during = control.get_config()
    returncode, _, stderr = netdm.finish()
    assert returncode == 0, stderr
    assert during is not None and during.alert_mode == AlertMode.SUMMARY
    assert control.get_config() == before


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signal_stops_monitoring_and_prints_last_interval(
    control: KernelControl, signum: signal.Signals
) -> None:
    control.set_config(alert_mode=AlertMode.PACKET, trunc_len=64, queue_len=100)
    netdm = NetdmProcess("watch")
    netdm.wait_for_line("Monitoring for dropped packets")
    send_udp_drops(15)
    netdm.process.send_signal(signum)
    returncode, lines, stderr = netdm.finish()
    assert returncode == 0, stderr
    assert "Traceback" not in stderr
    # The kernel's last batch arrived before STOP: the partial interval is complete.
    assert drops_at(lines, UDP_DROP_FUNCTION) == 15
    assert "Stopping dropped packet monitor" in lines
    assert control.get_config() == KernelConfig(AlertMode.PACKET, 64, 100)
    control.start(sw=True)  # succeeds only because netdm stopped monitoring


def test_second_monitor_is_told_about_passive(control: KernelControl) -> None:
    control.start(sw=True)
    result = run_netdm("watch", "--duration", "1")
    assert result.returncode == ExitCode.ALREADY_RUNNING
    assert result.stderr.startswith("Error: drop monitoring is already running")
    assert "--passive" in result.stderr
    assert "Traceback" not in result.stderr


def test_passive_listens_to_someone_elses_monitor(control: KernelControl) -> None:
    control.start(sw=True)
    netdm = NetdmProcess("watch", "--passive", "--interval", "1", "--duration", "4")
    netdm.wait_for_line("Monitoring for dropped packets")
    send_udp_drops(12)
    returncode, lines, stderr = netdm.finish()
    assert returncode == 0, stderr
    assert drops_at(lines, UDP_DROP_FUNCTION) == 12
    # Passive never stops what it did not start.
    with pytest.raises(AlreadyRunningError):
        control.start(sw=True)


def test_closed_pipe_stops_monitoring_and_restores(control: KernelControl) -> None:
    """`netdm watch --json | head -1`: the reader goes away, the kernel is left as found."""
    control.set_config(alert_mode=AlertMode.PACKET, trunc_len=32, queue_len=200)
    netdm = NetdmProcess("watch", "--json", "--interval", "0.5")
    netdm.wait_for_line('"type":"start"')  # what `head -1` reads, then it exits
    assert netdm.process.stdout is not None
    netdm.process.stdout.close()
    returncode = netdm.process.wait(timeout=60)
    assert netdm.process.stderr is not None
    stderr = netdm.process.stderr.read()
    assert returncode == 0, stderr
    assert "Traceback" not in stderr
    assert control.get_config() == KernelConfig(AlertMode.PACKET, 32, 200)
    control.start(sw=True)  # succeeds only because netdm stopped monitoring
