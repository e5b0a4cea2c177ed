"""netdm's own socket overflowing: every notification it lost is counted, exactly.

``--rcvbuf 4096`` is the smallest buffer netdm accepts; the kernel doubles it
to 8 KiB, room for a handful of packet alerts.  A burst of UDP drops to the
closed port 127.0.0.1:9 (freed by ``__udp4_lib_rcv``), sent while netdm
watches in packet mode, overflows it: the kernel discards what does not fit
and counts each in the socket's ``Drops`` (/proc/net/netlink), which netdm
reports as ``socket_dropped``.  Every drop sent is then either counted at
``__udp4_lib_rcv``, lost on netdm's socket, or lost in the kernel's per-CPU
queue (a tail drop): the three add up to the burst, exactly.  (The VM is quiet:
nothing else drops meanwhile, as tests/tracepoint/test_tracepoint_live.py
also assumes.)
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from kernel_helpers import (
    UDP_DROP_FUNCTION,
    NetdmProcess,
    drops_at,
    kernel_control,
    send_udp_drops,
)

from netdm.netlink.control import KernelControl

BURST = 3000
# The smallest --rcvbuf netdm accepts.
TINY_RCVBUF = "4096"
# Long enough that the kernel's queue seldom overflows: the socket is what this tests.
QUEUE_LEN = "10000"
LOST_NOTIFICATIONS = re.compile(
    r"(\d+) notifications? \(socket buffer (?:overflowed (\d+) times?|full)\)"
)
TAIL_DROPS = re.compile(r"(\d+) packets? \(kernel queue full\)")


@pytest.fixture(name="control")
def control_fixture() -> Iterator[KernelControl]:
    yield from kernel_control()


def watch_a_burst(*output: str) -> list[str]:
    """``netdm watch --packets -q`` with a tiny buffer while BURST drops are sent."""
    netdm = NetdmProcess(
        "watch",
        "--packets",
        "-q",
        *output,
        "--rcvbuf",
        TINY_RCVBUF,
        "--queue-len",
        QUEUE_LEN,
        "--interval",
        "2",
        "--duration",
        "10",
    )
    netdm.wait_for_line("Monitoring for dropped packets" if not output else '"type":"start"')
    send_udp_drops(BURST)
    returncode, lines, stderr = netdm.finish(timeout=120)
    assert returncode == 0, stderr
    return lines


@pytest.mark.usefixtures("control")
def test_json_counts_every_notification_the_socket_lost() -> None:
    objects: list[dict[str, Any]] = [json.loads(line) for line in watch_a_burst("--json")]
    [stop] = [obj for obj in objects if obj["type"] == "stop"]
    intervals = [obj for obj in objects if obj["type"] == "interval"]
    lost = stop["lost"]
    for key in ("socket_dropped", "enobufs", "sw_tail_drops"):
        assert lost[key] == sum(interval["lost"][key] for interval in intervals), key
    counted = sum(
        entry["count"]
        for interval in intervals
        for entry in interval["entries"]
        if entry["symbol"] == UDP_DROP_FUNCTION
    )
    report = f"counted {counted}, lost {lost}, sent {BURST}"
    assert lost["socket_dropped"] > 0, report  # an 8 KiB buffer cannot hold the burst
    assert lost["enobufs"] > 0, report  # and the kernel said that it overflowed
    assert counted + lost["socket_dropped"] + lost["sw_tail_drops"] == BURST, report
    print(report)  # shown with -s: how the burst split


@pytest.mark.usefixtures("control")
def test_text_says_how_many_notifications_were_lost() -> None:
    lines = watch_a_burst()
    totals = [line for line in lines if line.startswith("Total: ")]
    assert len(totals) == 1, lines
    lost = LOST_NOTIFICATIONS.search(totals[0])
    assert lost is not None, totals[0]
    socket_dropped = int(lost.group(1))
    assert socket_dropped > 0
    tail = TAIL_DROPS.search(totals[0])
    tail_drops = int(tail.group(1)) if tail else 0
    # The windows' "(lost: ...)" lines add up to the total's.
    per_window = sum(
        int(found.group(1))
        for line in lines
        if line.startswith("(lost: ")
        for found in [LOST_NOTIFICATIONS.search(line)]
        if found is not None
    )
    assert per_window == socket_dropped, lines
    counted = drops_at(lines, UDP_DROP_FUNCTION)
    assert counted + socket_dropped + tail_drops == BURST, (counted, totals[0])
    print(totals[0])  # shown with -s
