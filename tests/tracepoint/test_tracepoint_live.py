"""The tracepoint source against this machine's own kernel: real drops, real tracefs.

These run on the host (the development machines' kernel has no NET_DM but
has tracefs and ``skb:kfree_skb``), as root; elsewhere they skip, saying why.
Drops are UDP datagrams to a closed port on loopback: the kernel frees each
one in ``__udp4_lib_rcv`` with reason ``NO_SOCKET``.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netdm.engine.aggregate import IntervalAggregator, IntervalSummary
from netdm.engine.session import DatagramDecoder, Pipeline, WatchSettings
from netdm.engine.symbols import SymbolTable
from netdm.engine.tracepoint_monitor import TracepointMonitor
from netdm.tracepoint.tracefs import (
    EVENT_NAME,
    EVENT_SYSTEM,
    TracefsInstance,
    TracepointUnavailableError,
    find_tracefs,
)


def _tracefs_or_reason() -> tuple[Path | None, str]:
    if os.geteuid() != 0:
        return None, "needs root (tracefs instances)"
    try:
        tracefs = find_tracefs()
    except Exception as error:  # noqa: BLE001 - any reason is a reason to skip
        return None, f"no tracefs: {error}"
    if not (tracefs / "events" / EVENT_SYSTEM / EVENT_NAME / "format").exists():
        return None, "this kernel has no skb:kfree_skb tracepoint"
    return tracefs, ""


TRACEFS, WHY_NOT = _tracefs_or_reason()
pytestmark = pytest.mark.skipif(TRACEFS is None, reason=WHY_NOT)

UDP_DROP_SYMBOL = "__udp4_lib_rcv"
NETDM = [sys.executable, "-m", "netdm"]


def closed_udp_port() -> int:
    """A loopback UDP port nobody listens on (bound once, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def send_udp_drops(count: int, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for _ in range(count):
            sender.sendto(b"netdm", ("127.0.0.1", port))


def netdm_instances() -> list[str]:
    assert TRACEFS is not None
    return sorted(entry.name for entry in (TRACEFS / "instances").glob("netdm-*"))


def udp_drops_in_text(output: str) -> int:
    return sum(
        int(count)
        for count in re.findall(rf"^(\d+) packets? dropped at {UDP_DROP_SYMBOL}$", output, re.M)
    )


@pytest.fixture
def no_leftover_instances() -> Iterator[None]:
    before = netdm_instances()
    yield
    assert netdm_instances() == before, "a tracefs instance was left behind"


def test_watch_prints_five_second_summaries_of_udp_drops(no_leftover_instances: None) -> None:
    """The issue's check: `netdm watch --duration 12` on this kernel, via the tracepoint."""
    port = closed_udp_port()
    bursts = (60, 25, 40)
    process = subprocess.Popen(
        [*NETDM, "watch", "--duration", "12"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    first_line = process.stdout.readline()
    for burst in bursts:  # about 1 s, 4.5 s and 8 s into the run: three windows
        time.sleep(1.0 if burst == bursts[0] else 3.5)
        send_udp_drops(burst, port)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert first_line.startswith("Monitoring for dropped packets (skb:kfree_skb tracepoint")
    assert "using the skb:kfree_skb tracepoint" in err
    timestamps = re.findall(r"^\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}$", out, re.M)
    assert len(timestamps) >= 2, out  # the drops fell into at least two five-second windows
    assert udp_drops_in_text(out) == sum(bursts), out
    assert out.rstrip().splitlines()[-2] == "Stopping dropped packet monitor"


def test_json_by_reason_names_the_reason(no_leftover_instances: None) -> None:
    port = closed_udp_port()
    process = subprocess.Popen(
        [*NETDM, "watch", "--source", "tracepoint", "--json", "--by-reason", "--duration", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    start = json.loads(process.stdout.readline())
    send_udp_drops(30, port)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert start["type"] == "start" and start["source"] == "tracepoint" and start["version"] == 1
    records = [json.loads(line) for line in out.splitlines()]
    udp = [
        entry
        for record in records
        if record["type"] == "interval"
        for entry in record["entries"]
        if entry["symbol"] == UDP_DROP_SYMBOL
    ]
    assert sum(entry["count"] for entry in udp) == 30
    assert {entry["reason"] for entry in udp} == {"NO_SOCKET"}
    assert records[-1]["type"] == "stop"
    assert records[-1]["lost"]["tracefs_lost"] == 0


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_prints_the_last_interval_and_removes_the_instance(
    signum: int, no_leftover_instances: None
) -> None:
    port = closed_udp_port()
    process = subprocess.Popen(
        [*NETDM, "watch", "--source", "tracepoint"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    process.stdout.readline()
    assert any(name == f"netdm-{process.pid}" for name in netdm_instances())
    send_udp_drops(17, port)
    time.sleep(0.5)
    process.send_signal(signum)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert udp_drops_in_text(out) == 17, out
    assert f"netdm-{process.pid}" not in netdm_instances()


def test_record_and_replay_print_the_same(tmp_path: Path, no_leftover_instances: None) -> None:
    port = closed_udp_port()
    capture = tmp_path / "tracepoint.pcapng"
    process = subprocess.Popen(
        [*NETDM, "watch", "--source", "tracepoint", "-i", "1", "-d", "3.5", "-w", str(capture)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    process.stdout.readline()
    send_udp_drops(20, port)
    time.sleep(1.2)
    send_udp_drops(5, port)
    live, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    replay = subprocess.run(
        [*NETDM, "watch", "-i", "1", "-r", str(capture)], capture_output=True, text=True, check=True
    )
    assert replay.stdout.splitlines()[0] == "Monitoring for dropped packets"
    assert replay.stdout.splitlines()[1:] == live.splitlines()
    assert udp_drops_in_text(live) == 25


def test_a_stale_instance_of_a_dead_netdm_is_removed(no_leftover_instances: None) -> None:
    assert TRACEFS is not None
    pid = 2**22 + 12345  # above pid_max's default range: no such process
    stale = TRACEFS / "instances" / f"netdm-{pid}"
    stale.mkdir()
    try:
        with TracefsInstance() as instance:
            assert stale.name in instance.stale_removed
            assert not stale.exists()
    finally:
        if stale.exists():
            stale.rmdir()


def test_a_full_buffer_counts_what_it_lost(no_leftover_instances: None) -> None:
    """A ring buffer of one page per CPU, a burst far bigger: received + lost = sent."""
    port = closed_udp_port()
    summaries: list[IntervalSummary] = []
    sent = 3000

    def new_pipeline(decoder: DatagramDecoder, start: float) -> Pipeline:
        return Pipeline(decoder, IntervalAggregator(interval=60, start=start), summaries.append)

    monitor = TracepointMonitor(
        WatchSettings(interval=60, duration=4),
        new_pipeline,
        on_started=lambda: None,
        instance=TracefsInstance(buffer_kb=4),
    )
    # The sender runs while the monitor's loop sleeps between reads.
    sender = threading.Timer(0.5, send_udp_drops, args=(sent, port))
    sender.start()
    totals = monitor.run()
    sender.join()
    symbols = SymbolTable.load()
    udp = 0
    for summary in summaries:
        for entry in summary.entries:
            resolved = symbols.lookup(entry.location.pc or 0)
            if resolved is not None and resolved.name == UDP_DROP_SYMBOL:
                udp += entry.count
    assert totals.tracefs_lost > 0, "a 4 KiB buffer held a 3000-drop burst: no loss to count"
    assert 0 < udp < sent
    # Nothing lost that is not counted (this quiet machine drops nothing else meanwhile).
    assert udp + totals.tracefs_lost == sent


def test_no_tracepoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TracepointUnavailableError, match="no skb:kfree_skb tracepoint"):
        TracefsInstance(tmp_path).open()


def test_a_buffer_the_kernel_refuses_is_a_clear_error(no_leftover_instances: None) -> None:
    """ENOMEM while setting up: one sentence, and the half-made instance removed."""
    with pytest.raises(TracepointUnavailableError, match="cannot set up the tracefs instance"):
        TracefsInstance(buffer_kb=10**12).open()


@pytest.mark.parametrize("mode", [[], ["--json"]])
def test_a_reader_that_goes_away_ends_a_quiet_run_within_an_interval(
    mode: list[str], no_leftover_instances: None
) -> None:
    # Nothing is dropped, so nothing is printed after the banner: only the run loop's
    # check of stdout can notice that the pipe's reader is gone.
    read_end, write_end = os.pipe()
    process = subprocess.Popen(
        [*NETDM, "watch", "--source", "tracepoint", "--interval", "1", "-d", "60", *mode],
        stdout=write_end,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        deadline = time.monotonic() + 10
        lines = 0
        while lines < 2 and time.monotonic() < deadline:
            ready, _, _ = select.select([reader], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            chunk = os.read(reader.fileno(), 4096)
            if not chunk:
                break
            lines += chunk.count(b"\n")
        assert f"netdm-{process.pid}" in netdm_instances()
    closed_at = time.monotonic()
    try:
        _, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert time.monotonic() - closed_at < 5
    assert "Error" not in err and "Traceback" not in err, err
    assert not [name for name in netdm_instances() if name == f"netdm-{process.pid}"]


@pytest.fixture
def stale_instance() -> Iterator[Path]:
    assert TRACEFS is not None
    pid = 4194000  # above pid_max's default range: no such process
    stale = TRACEFS / "instances" / f"netdm-{pid}"
    try:
        stale.mkdir()
    except OSError as error:
        pytest.skip(f"tracefs instances are not writable here: {error}")
    try:
        yield stale
    finally:
        if stale.exists():
            stale.rmdir()


def test_doctor_names_a_stale_instance_and_stop_removes_it(stale_instance: Path) -> None:
    doctor = subprocess.run([*NETDM, "doctor"], capture_output=True, text=True)
    assert (
        f"problem  stale tracefs instance left by a killed netdm: {stale_instance} "
        "(fix: netdm stop)\n"
    ) in doctor.stdout, doctor.stdout
    stop = subprocess.run([*NETDM, "stop"], capture_output=True, text=True)
    assert not stale_instance.exists()
    assert stop.stdout.startswith(
        f"removed 1 stale tracefs instance left by a killed netdm ({stale_instance.name})\n"
    ), stop.stdout
    # NET_DM's part is as it was: this host has none, so `stop` still says so and exits 3.
    no_net_dm = subprocess.run([*NETDM, "stop"], capture_output=True, text=True)
    assert (no_net_dm.returncode, no_net_dm.stdout) == (stop.returncode, "")
    assert no_net_dm.stderr == stop.stderr
    doctor = subprocess.run([*NETDM, "doctor"], capture_output=True, text=True)
    assert "stale tracefs" not in doctor.stdout
