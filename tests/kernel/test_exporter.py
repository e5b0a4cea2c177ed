"""`netdm exporter` against a real kernel: drops sent = drops scraped, kernel left as found.

The exporter serves on a free loopback port (``--listen 127.0.0.1:0``; it
prints the URL once monitoring has started).  Drops are UDP datagrams to the
closed port 127.0.0.1:9, each freed by ``__udp4_lib_rcv`` (reason NO_SOCKET
in packet mode), scraped over loopback with urllib as Prometheus would.
When the run has an output directory (``harness.py run --outdir``), the
last scrape of each mode is saved there for docs/exporter.md.
"""

from __future__ import annotations

import re
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from kernel_helpers import (
    DEFAULT_CONFIG,
    UDP_DROP_FUNCTION,
    NetdmProcess,
    kernel_control,
    send_udp_drops,
)
from prometheus_client.parser import text_string_to_metric_families

from netdm.netlink.control import KernelConfig, KernelControl
from netdm.proto.constants import AlertMode

SENT = 37
# Summary alerts come in per-CPU batches about a second apart; the guest is slow.
COUNT_TIMEOUT = 60.0
URL = re.compile(r"metrics at (http://\S+/metrics)")


@pytest.fixture(name="control")
def control_fixture() -> Iterator[KernelControl]:
    yield from kernel_control()


def scrape(url: str) -> tuple[str, dict[str, list[tuple[dict[str, str], float]]]]:
    """The /metrics text, and its samples by name."""
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200
        text = response.read().decode()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return text, samples


def udp_drops(samples: dict[str, list[tuple[dict[str, str], float]]]) -> float:
    """netdm_drops_total at the UDP drop location, summed over reasons."""
    return sum(
        value
        for labels, value in samples.get("netdm_drops_total", [])
        if labels["origin"] == "sw" and labels["location"] == UDP_DROP_FUNCTION
    )


def single(samples: dict[str, list[tuple[dict[str, str], float]]], name: str) -> float:
    [(_, value)] = samples[name]
    return value


@pytest.mark.parametrize(
    ("mode", "alert_mode", "reason"),
    [("auto", AlertMode.PACKET, "NO_SOCKET"), ("summary", AlertMode.SUMMARY, "")],
)
def test_exporter_counts_udp_drops_and_restores_the_kernel(
    control: KernelControl,
    vm_outdir: Path | None,
    mode: str,
    alert_mode: AlertMode,
    reason: str,
) -> None:
    assert control.get_config() == DEFAULT_CONFIG
    netdm = NetdmProcess("exporter", "--listen", "127.0.0.1:0", "--mode", mode)
    netdm.wait_for_line("metrics at http://")
    match = URL.search(netdm.lines[-1])
    assert match, netdm.lines
    url = match.group(1)
    # auto picks packet mode on a kernel with drop reasons (5.18+; the VM boots 6.1 and 6.12).
    during = control.get_config()
    assert during is not None and during.alert_mode == alert_mode
    if alert_mode == AlertMode.PACKET:
        assert (during.trunc_len, during.queue_len) == (64, 1000)

    _, samples = scrape(url)
    assert single(samples, "netdm_monitor_up") == 1
    assert udp_drops(samples) == 0
    send_udp_drops(SENT)
    deadline = time.monotonic() + COUNT_TIMEOUT
    while udp_drops(samples) < SENT and time.monotonic() < deadline:
        time.sleep(0.5)
        _, samples = scrape(url)
    # Two more intervals: nothing counted twice, nothing arriving late.
    time.sleep(2.5)
    text, samples = scrape(url)
    assert udp_drops(samples) == SENT, text
    [(labels, _)] = [
        (labels, value)
        for labels, value in samples["netdm_drops_total"]
        if labels["location"] == UDP_DROP_FUNCTION
    ]
    assert labels["reason"] == reason
    assert single(samples, "netdm_intervals_total") >= 2
    assert single(samples, "netdm_last_interval_end_time_seconds") > single(
        samples, "netdm_monitor_start_time_seconds"
    )
    [(info, _)] = samples["netdm_monitor_info"]
    assert info == {"source": "netdm", "alert_mode": alert_mode.name.lower(), "origin": "sw"}
    for labels, value in samples["netdm_kernel_queue_drops_total"]:
        assert value == 0, labels
    assert single(samples, "netdm_socket_overflows_total") == 0
    assert single(samples, "netdm_decode_errors_total") == 0
    if vm_outdir is not None:
        (vm_outdir / f"exporter-scrape-{mode}.txt").write_text(text)

    netdm.process.send_signal(signal.SIGTERM)
    returncode, lines, stderr = netdm.finish()
    assert returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "Stopping dropped packet monitor" in lines
    assert control.get_config() == DEFAULT_CONFIG  # the configuration netdm found
    control.start(sw=True)  # succeeds only because netdm stopped monitoring


def test_exporter_restores_a_packet_mode_configuration_left_by_another_tool(
    control: KernelControl,
) -> None:
    before = KernelConfig(AlertMode.PACKET, 96, 321)
    control.set_config(alert_mode=before.alert_mode, trunc_len=96, queue_len=321)
    netdm = NetdmProcess("exporter", "--listen", "127.0.0.1:0", "--mode", "summary")
    netdm.wait_for_line("metrics at http://")
    during = control.get_config()
    netdm.process.send_signal(signal.SIGINT)
    returncode, _, stderr = netdm.finish()
    assert returncode == 0, stderr
    assert during is not None and during.alert_mode == AlertMode.SUMMARY
    assert control.get_config() == before
