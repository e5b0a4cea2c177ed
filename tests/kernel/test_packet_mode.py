"""`netdm watch --packets` against a real kernel: every dropped packet, decoded.

Drops whose packets are known: UDP datagrams with a 200-byte payload to the
closed port 127.0.0.1:9 (freed by ``__udp4_lib_rcv``, reason NO_SOCKET), and
datagrams to 127.0.0.2:54321 dropped by a tc flower rule on loopback's ingress
(the kernel selftest drop_monitor_tests.sh does the same on a dummy device).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from kernel_helpers import (
    DEFAULT_CONFIG,
    NetdmProcess,
    kernel_control,
    tc_drop_rule_on_loopback,
)

from netdm.netlink.control import KernelConfig, KernelControl
from netdm.proto.constants import AlertMode

PAYLOAD = bytes(range(200))
TRUNC_LEN = 64
BURST = 300
# Ethernet (loopback's all-zero one) + IPv4 + UDP + payload
ORIG_LEN = 14 + 20 + 8 + len(PAYLOAD)


@pytest.fixture(name="control")
def control_fixture() -> Iterator[KernelControl]:
    yield from kernel_control()


def send(count: int, address: str, port: int) -> int:
    """``count`` datagrams; returns the source port they came from."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.bind(("127.0.0.1", 0))
        for _ in range(count):
            sender.sendto(PAYLOAD, (address, port))
        return int(sender.getsockname()[1])


def packet_objects(lines: list[str]) -> list[dict[str, Any]]:
    objects = [json.loads(line) for line in lines if line.startswith("{")]
    return [obj for obj in objects if obj["type"] == "packet"]


def test_udp_drops_arrive_decoded_and_truncated(control: KernelControl) -> None:
    before = KernelConfig(AlertMode.SUMMARY, 0, 1000)
    netdm = NetdmProcess(
        "watch",
        "--packets",
        "--json",
        "--trunc-len",
        str(TRUNC_LEN),
        "--queue-len",
        "2000",
        "--duration",
        "6",
    )
    netdm.wait_for_line('"type":"start"')
    source_port = send(25, "127.0.0.1", 9)
    returncode, lines, stderr = netdm.finish()
    assert returncode == 0, stderr
    ours = [
        obj
        for obj in packet_objects(lines)
        if obj["headers"].get("dport") == 9 and obj["headers"].get("sport") == source_port
    ]
    assert len(ours) == 25  # every one reported: the queue is long enough
    for packet in ours:
        assert packet["origin"] == "sw"
        assert packet["symbol"].startswith("__udp4_lib_rcv+")
        assert packet["reason"] == "NO_SOCKET"
        assert packet["in_port"]["ifindex"] == 1
        assert packet["in_port"]["name"] == "lo"
        assert packet["proto"] == 0x0800
        assert packet["captured_len"] == TRUNC_LEN
        assert packet["orig_len"] == ORIG_LEN
        assert packet["headers"]["dst"] == "127.0.0.1"
        assert packet["headers"]["l4"] == "UDP"
    intervals = [json.loads(line) for line in lines if '"type":"interval"' in line]
    counted = sum(
        entry["count"]
        for i in intervals
        for entry in i["entries"]
        if entry["symbol"] == "__udp4_lib_rcv"
    )
    assert counted >= 25
    assert control.get_config() == before  # packet mode, trunc and queue all restored


@pytest.fixture
def tc_drop_on_loopback() -> Iterator[None]:
    if shutil.which("tc") is None:
        pytest.skip("tc (iproute2) is not installed")
    with tc_drop_rule_on_loopback():
        yield


@pytest.mark.usefixtures("tc_drop_on_loopback")
def test_tc_flower_drops_and_text_lines(control: KernelControl) -> None:
    control.set_config(alert_mode=AlertMode.PACKET, trunc_len=100, queue_len=10)
    netdm = NetdmProcess("watch", "--packets", "--duration", "5", "--protocol", "udp")
    netdm.wait_for_line("Monitoring for dropped packets")
    source_port = send(8, "127.0.0.2", 54321)
    returncode, lines, stderr = netdm.finish()
    assert returncode == 0, stderr
    expected_flow = f"127.0.0.1:{source_port} > 127.0.0.2:54321"
    ours = [line for line in lines if expected_flow in line]
    assert len(ours) == 8, lines
    for line in ours:
        assert " lo(1) IPv4 UDP " in line
        assert line.endswith(f"len 128/{ORIG_LEN}")  # netdm's default --trunc-len
        reason = line.split()[2]
        assert reason and reason != "-"
    # The previous, non-default configuration is what netdm restores.
    assert control.get_config() == KernelConfig(AlertMode.PACKET, 100, 10)
    control.set_config(
        alert_mode=DEFAULT_CONFIG.alert_mode,
        trunc_len=DEFAULT_CONFIG.trunc_len,
        queue_len=DEFAULT_CONFIG.queue_len,
    )


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed")
def test_packets_json_pipes_into_jq(control: KernelControl) -> None:
    jq = subprocess.Popen(
        ["jq", "-c", 'select(.type == "packet") | .headers.dport'],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    netdm = NetdmProcess("watch", "--packets", "--json", "--duration", "4")
    netdm.wait_for_line('"type":"start"')
    send(3, "127.0.0.1", 9)
    returncode, lines, stderr = netdm.finish()
    assert returncode == 0, stderr
    output, _ = jq.communicate("\n".join(lines) + "\n", timeout=30)
    assert jq.returncode == 0
    assert output.split().count("9") >= 3


def test_tiny_queue_under_a_burst_counts_tail_drops(control: KernelControl) -> None:
    """Queue length 1 and a burst: the kernel discards alerts, netdm counts them."""
    netdm = NetdmProcess(
        "watch",
        "--packets",
        "--json",
        "-q",
        "--queue-len",
        "1",
        "--interval",
        "1",
        "--duration",
        "4",
    )
    netdm.wait_for_line('"type":"start"')
    # The kernel drains each CPU's queue from a work item on that CPU.  A real-time
    # sender on one CPU keeps that worker off it for the whole burst, so the one-packet
    # queue overflows however the emulated CPUs happen to be scheduled.
    os.sched_setaffinity(0, {0})
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    try:
        send(BURST, "127.0.0.1", 9)
    finally:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    returncode, lines, stderr = netdm.finish()
    assert returncode == 0, stderr
    objects = [json.loads(line) for line in lines]
    [stop] = [obj for obj in objects if obj["type"] == "stop"]
    lost = stop["lost"]["sw_tail_drops"]
    assert lost > 0, stop
    per_interval = sum(o["lost"]["sw_tail_drops"] for o in objects if o["type"] == "interval")
    assert per_interval == lost
    seen = sum(
        entry["count"]
        for o in objects
        if o["type"] == "interval"
        for entry in o["entries"]
        if entry["symbol"] == "__udp4_lib_rcv"
    )
    assert seen + lost >= BURST  # every drop either reported or counted as lost


def test_jumbo_payload_arrives_whole(control: KernelControl) -> None:
    """A 60,000-byte datagram with --trunc-len 0: a ~60 KB message, never cut."""
    netdm = NetdmProcess("watch", "--packets", "--json", "--trunc-len", "0", "--duration", "4")
    netdm.wait_for_line('"type":"start"')
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.sendto(bytes(60_000), ("127.0.0.1", 9))
    returncode, lines, stderr = netdm.finish()
    assert returncode == 0, stderr
    jumbo = [p for p in packet_objects(lines) if p["orig_len"] == 14 + 20 + 8 + 60_000]
    assert len(jumbo) == 1
    assert jumbo[0]["captured_len"] == jumbo[0]["orig_len"]
    assert len(jumbo[0]["payload"]) == 2 * jumbo[0]["orig_len"]  # hex
