"""`netdm exporter` on this machine's kernel, which has no NET_DM: the tracepoint feeds it."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from test_tracepoint_live import (
    TRACEFS,
    UDP_DROP_SYMBOL,
    WHY_NOT,
    closed_udp_port,
    netdm_instances,
    send_udp_drops,
)

pytestmark = pytest.mark.skipif(TRACEFS is None, reason=WHY_NOT)


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def udp_drops(metrics: str) -> float:
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith("netdm_drops_total{") and f'location="{UDP_DROP_SYMBOL}"' in line:
            assert 'reason="NO_SOCKET"' in line, line
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_exporter_counts_udp_drops_through_the_tracepoint() -> None:
    before = netdm_instances()
    port = closed_udp_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "netdm", "exporter", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert "skb:kfree_skb tracepoint" in first, first
        match = re.search(r"metrics at (http://\S+)", first)
        assert match, first
        url = match[1]
        send_udp_drops(23, port)
        time.sleep(2.5)  # two one-second intervals: the counters have grown
        metrics = scrape(url)
        assert udp_drops(metrics) == 23
        assert 'source="tracepoint"' in metrics
        assert "netdm_monitor_up 1.0" in metrics
        assert "netdm_tracefs_lost_total 0.0" in metrics
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "using the skb:kfree_skb tracepoint" in err
    assert netdm_instances() == before
