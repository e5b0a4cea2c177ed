"""LiveMonitor's life cycle against a scripted kernel (no sockets, no wall clock).

The real kernel is exercised in tests/kernel/; here a small fake that speaks
the same bytes lets us check every way out quickly: normal end, EAGAIN after a
configuration change, a signal, undecodable datagrams, ENOBUFS.  Time is a
fake clock (tests/engine/fake_clock.py) that moves only when the monitor
waits, so every run is the same run, and none of them sleeps.
"""

from __future__ import annotations

import errno
import os
import signal
import struct
import time
from collections import deque
from dataclasses import dataclass, field

import pytest

import netdm.netlink.transport
from netdm.engine.aggregate import IntervalAggregator, IntervalSummary
from netdm.engine.session import (
    KERNEL_BATCH_GRACE,
    MAX_WAIT,
    STORM_PAUSE,
    DatagramDecoder,
    LiveMonitor,
    Pipeline,
    WatchSettings,
)
from netdm.errors import AlreadyRunningError, BusyError
from netdm.netlink.control import KernelConfig
from netdm.proto import encode
from netdm.proto.constants import AlertMode, Attr, Cmd
from netdm.proto.events import ConfigReply, DropPoint, StatsReply
from tests.engine.fake_clock import START_NS, FakeClock

FAMILY_ID = 0x1C
PC = 0xFFFFFFFF81ABCDEF


@dataclass
class FakeKernel:
    """The drop monitor's global state, and the alerts it will multicast."""

    config: KernelConfig = KernelConfig(AlertMode.SUMMARY, 0, 1000)
    running: bool = False
    requests: list[str] = field(default_factory=list)
    pending_alerts: deque[bytes] = field(default_factory=deque)
    alerts_when_started: list[bytes] = field(default_factory=list)
    enobufs_when_started: int = 0
    oversized_when_started: int = 0  # messages cut by too-small batch slots
    # The events socket's Drops counter (/proc/net/netlink): grows at START and with each alert.
    socket_drops_at_join: int = 0
    socket_drops_when_started: int = 0
    socket_drops_per_alert: int = 0
    netlink_table_readable: bool = True
    start_error: int = 0
    listeners: list[FakeTransport] = field(default_factory=list)
    clock: FakeClock = field(default_factory=FakeClock)

    def handle(self, request: bytes) -> list[bytes]:
        _, _, _, seq, _ = struct.unpack_from("<IHHII", request)
        cmd = Cmd(request[16])
        self.requests.append(cmd.name)
        attributes = dict(_attributes(request[20:]))
        replies: list[bytes] = []
        error = 0
        if cmd == Cmd.CONFIG_GET:
            replies.append(
                encode.build_config_new(
                    FAMILY_ID,
                    ConfigReply(
                        seq,
                        int(self.config.alert_mode),
                        self.config.trunc_len,
                        self.config.queue_len,
                    ),
                )
            )
        elif cmd == Cmd.CONFIG:
            if self.running:
                error = -errno.EBUSY
            else:
                self.config = KernelConfig(
                    AlertMode(attributes[Attr.ALERT_MODE][0])
                    if Attr.ALERT_MODE in attributes
                    else self.config.alert_mode,
                    _u32(attributes.get(Attr.TRUNC_LEN), self.config.trunc_len),
                    _u32(attributes.get(Attr.QUEUE_LEN), self.config.queue_len),
                )
        elif cmd == Cmd.START:
            if self.running or self.start_error:
                error = self.start_error or -errno.EAGAIN
            else:
                self.running = True
                self.pending_alerts.extend(self.alerts_when_started)
                for listener in self.listeners:
                    listener.losses.enobufs += self.enobufs_when_started
                    listener.losses.oversized += self.oversized_when_started
                    listener.kernel_drops += self.socket_drops_when_started
        elif cmd == Cmd.STATS_GET:
            replies.append(encode.build_stats_new(FAMILY_ID, StatsReply(seq, 0, 0)))
        elif cmd == Cmd.STOP:
            self.running = False
            self.pending_alerts.clear()  # STOP discards unsent batches
        replies.append(encode.build_ack(seq, 0, request, error))
        return replies


def _attributes(data: bytes) -> list[tuple[int, bytes]]:
    found, offset = [], 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("<HH", data, offset)
        found.append((kind & 0x3FFF, data[offset + 4 : offset + length]))
        offset += (length + 3) & ~3
    return found


def _u32(value: bytes | None, default: int) -> int:
    return default if value is None else int(struct.unpack("<I", value)[0])


class FakeTransport:
    """Stands in for NetlinkTransport; all instances share one FakeKernel."""

    def __init__(self, kernel: FakeKernel, receive_buffer: int | None = None) -> None:
        self.kernel = kernel
        self.receive_buffer = receive_buffer
        self.family_id = FAMILY_ID
        self.losses = netdm.netlink.transport.SocketLosses()
        self.replies: deque[bytes] = deque()
        self.joined = False
        self.kernel_drops = 0
        self.drops_reads = 0
        self.batch_slot_size: int | None = None

    def __enter__(self) -> FakeTransport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass

    def close(self) -> None:
        pass

    def join_events(self) -> None:
        self.joined = True
        self.kernel_drops = self.kernel.socket_drops_at_join
        self.kernel.listeners.append(self)

    def send(self, data: bytes) -> None:
        self.replies.extend(self.kernel.handle(data))

    def receive(self, timeout: float | None) -> bytes | None:
        if self.replies:
            return self.replies.popleft()
        if self.joined and self.kernel.running and self.kernel.pending_alerts:
            self.kernel_drops += self.kernel.socket_drops_per_alert
            return self.kernel.pending_alerts.popleft()
        self.kernel.clock.advance(timeout or 0.0)  # nothing came: the wait ran out
        return None

    def enable_batches(self, largest_message: int) -> bool:
        self.batch_slot_size = largest_message
        return True

    def receive_many(self, timeout: float | None, limit: int) -> list[bytes]:
        return netdm.netlink.transport.receive_one_at_a_time(self.receive, timeout, limit)

    def read_kernel_drops(self) -> int | None:
        self.drops_reads += 1
        return self.kernel_drops if self.kernel.netlink_table_readable else None


@pytest.fixture
def kernel() -> FakeKernel:
    return FakeKernel()


def run_monitor(
    kernel: FakeKernel, settings: WatchSettings
) -> tuple[LiveMonitor, list[IntervalSummary]]:
    intervals: list[IntervalSummary] = []

    def new_pipeline(decoder: DatagramDecoder, start: float) -> Pipeline:
        aggregator = IntervalAggregator(interval=settings.interval, start=start)
        return Pipeline(decoder, aggregator, intervals.append)

    def open_transport(receive_buffer: int | None) -> FakeTransport:
        return FakeTransport(kernel, receive_buffer)

    monitor = LiveMonitor(
        settings,
        new_pipeline,
        on_started=lambda: None,
        clock=kernel.clock.run_clock,
        open_transport=open_transport,  # type: ignore[arg-type]  # a fake, not a socket
    )
    monitor.run()
    return monitor, intervals


def summary_alert(count: int) -> bytes:
    return encode.build_summary_alert(FAMILY_ID, [DropPoint(PC, count)])


def counted(intervals: list[IntervalSummary]) -> int:
    return sum(entry.count for interval in intervals for entry in interval.entries)


def test_normal_run_counts_alerts_and_leaves_the_kernel_as_found(kernel: FakeKernel) -> None:
    kernel.alerts_when_started = [summary_alert(3), summary_alert(4)]
    _, intervals = run_monitor(kernel, WatchSettings(interval=0.2, duration=0.5))
    assert counted(intervals) == 7
    assert kernel.requests == ["CONFIG_GET", "START", "STOP"]
    assert not kernel.running


def test_packet_mode_left_by_another_tool_is_switched_and_restored(kernel: FakeKernel) -> None:
    kernel.config = KernelConfig(AlertMode.PACKET, 128, 50)
    run_monitor(kernel, WatchSettings(interval=0.2, duration=0.2))
    assert kernel.requests == ["CONFIG_GET", "CONFIG", "START", "STOP", "CONFIG"]
    assert kernel.config == KernelConfig(AlertMode.PACKET, 128, 50)


def test_eagain_after_config_change_still_restores(kernel: FakeKernel) -> None:
    kernel.config = KernelConfig(AlertMode.PACKET, 128, 50)
    kernel.start_error = -errno.EAGAIN  # as if another monitor had started in between
    with pytest.raises(AlreadyRunningError, match="--passive"):
        run_monitor(kernel, WatchSettings(interval=0.2, duration=0.2))
    assert kernel.requests == ["CONFIG_GET", "CONFIG", "START", "CONFIG"]
    assert kernel.config == KernelConfig(AlertMode.PACKET, 128, 50)


def test_config_busy_is_one_sentence(kernel: FakeKernel) -> None:
    kernel.config = KernelConfig(AlertMode.PACKET, 0, 1000)
    kernel.running = True
    with pytest.raises(BusyError, match="cannot be configured while monitoring is on"):
        run_monitor(kernel, WatchSettings(interval=0.2, duration=0.2))


def test_signal_ends_the_run_cleanly(kernel: FakeKernel) -> None:
    kernel.alerts_when_started = [summary_alert(5)]
    kernel.clock.at(0.3, lambda: os.kill(os.getpid(), signal.SIGTERM))
    monitor, intervals = run_monitor(kernel, WatchSettings(interval=10.0))
    assert monitor.stop.reason == "SIGTERM"
    assert counted(intervals) == 5
    assert intervals[-1].partial
    assert kernel.requests[-1] == "STOP"


def test_passive_sends_no_request(kernel: FakeKernel) -> None:
    kernel.running = True
    kernel.pending_alerts.append(summary_alert(2))
    _, intervals = run_monitor(kernel, WatchSettings(interval=0.2, duration=0.3, passive=True))
    assert kernel.requests == []
    assert counted(intervals) == 2


def test_undecodable_datagrams_and_enobufs_are_counted(kernel: FakeKernel) -> None:
    kernel.alerts_when_started = [b"\x05\x00\x00", summary_alert(1)]
    kernel.enobufs_when_started = 2
    monitor, intervals = run_monitor(kernel, WatchSettings(interval=0.2, duration=0.5))
    assert monitor.pipeline is not None
    assert monitor.pipeline.totals.decode_errors == 1
    assert monitor.pipeline.totals.enobufs == 2
    assert sum(interval.losses.decode_errors for interval in intervals) == 1
    assert sum(interval.losses.enobufs for interval in intervals) == 2
    assert counted(intervals) == 1


@pytest.mark.parametrize(
    ("settings", "slot_size"),
    [
        (WatchSettings(interval=0.2, duration=0.2, packet_mode=True, trunc_len=64), 64 + 4096),
        (WatchSettings(interval=0.2, duration=0.2, packet_mode=True, trunc_len=0), None),
        (WatchSettings(interval=0.2, duration=0.2), None),
    ],
    ids=["packet mode", "whole packets", "summary mode"],
)
def test_batches_only_where_netdm_bounded_the_alerts(
    kernel: FakeKernel, settings: WatchSettings, slot_size: int | None
) -> None:
    """recvmmsg slots must hold the longest alert: known only when netdm set trunc_len."""
    run_monitor(kernel, settings)
    [events_socket] = kernel.listeners
    assert events_socket.batch_slot_size == slot_size


def test_passive_packet_mode_takes_one_datagram_per_call(kernel: FakeKernel) -> None:
    kernel.config = KernelConfig(AlertMode.PACKET, 0, 1000)
    kernel.running = True  # another tool's trunc_len: no bound known
    run_monitor(kernel, WatchSettings(interval=0.2, duration=0.2, packet_mode=True, passive=True))
    [events_socket] = kernel.listeners
    assert events_socket.batch_slot_size is None


def test_messages_cut_by_the_batch_slots_are_decode_errors(kernel: FakeKernel) -> None:
    kernel.alerts_when_started = [summary_alert(1)]
    kernel.oversized_when_started = 2
    monitor, intervals = run_monitor(kernel, WatchSettings(interval=0.2, duration=0.5))
    assert monitor.pipeline is not None
    assert monitor.pipeline.totals.decode_errors == 2
    assert sum(interval.losses.decode_errors for interval in intervals) == 2
    assert counted(intervals) == 1


def test_socket_drops_give_the_exact_loss_beside_enobufs(kernel: FakeKernel) -> None:
    kernel.alerts_when_started = [summary_alert(1)]
    kernel.enobufs_when_started = 2
    kernel.socket_drops_when_started = 300
    monitor, intervals = run_monitor(kernel, WatchSettings(interval=0.2, duration=0.5))
    assert monitor.pipeline is not None
    assert monitor.pipeline.totals.socket_dropped == 300
    assert monitor.pipeline.totals.enobufs == 2
    # Read when the ENOBUFS was seen: the exact count lands in the same window.
    [lossy] = [interval for interval in intervals if interval.losses.any]
    assert (lossy.losses.enobufs, lossy.losses.socket_dropped) == (2, 300)


def test_socket_drops_before_monitoring_are_not_counted(kernel: FakeKernel) -> None:
    kernel.socket_drops_at_join = 1000  # what the counter says before START: the baseline
    kernel.socket_drops_when_started = 12
    monitor, intervals = run_monitor(kernel, WatchSettings(interval=0.2, duration=0.5))
    assert monitor.pipeline is not None
    assert monitor.pipeline.totals.socket_dropped == 12
    assert sum(interval.losses.socket_dropped for interval in intervals) == 12


def test_socket_drops_at_the_end_go_to_the_last_interval(kernel: FakeKernel) -> None:
    """No ENOBUFS and no interval boundary: only the read at stop sees them."""
    kernel.alerts_when_started = [summary_alert(1), summary_alert(1)]
    kernel.socket_drops_per_alert = 9
    monitor, intervals = run_monitor(kernel, WatchSettings(interval=10.0, duration=0.3))
    assert monitor.pipeline is not None
    [last] = intervals
    assert last.partial
    assert last.losses.socket_dropped == 18 == monitor.pipeline.totals.socket_dropped
    assert last.losses.enobufs == 0


def test_socket_drops_are_read_at_each_interval_boundary(kernel: FakeKernel) -> None:
    """Drops without ENOBUFS (a congested socket keeps dropping) reach the window they were in."""

    def drop_40() -> None:
        for listener in kernel.listeners:
            listener.kernel_drops += 40

    kernel.clock.at(1.0, drop_40)
    monitor, intervals = run_monitor(kernel, WatchSettings(interval=0.5, duration=2.0))
    events_socket = kernel.listeners[0]
    assert events_socket.drops_reads >= 1 + 3 + 1  # baseline, three boundaries, stop
    lossy = [number for number, i in enumerate(intervals) if i.losses.socket_dropped]
    assert [intervals[number].losses.socket_dropped for number in lossy] == [40]
    # Not the first window (closed before the drops), not the last (the stop read).
    assert 0 < lossy[0] < len(intervals) - 1


def test_unreadable_netlink_table_leaves_enobufs_alone(kernel: FakeKernel) -> None:
    kernel.netlink_table_readable = False
    kernel.alerts_when_started = [summary_alert(1)]
    kernel.enobufs_when_started = 3
    kernel.socket_drops_when_started = 300
    monitor, intervals = run_monitor(kernel, WatchSettings(interval=0.2, duration=0.5))
    assert monitor.pipeline is not None
    assert monitor.pipeline.totals.enobufs == 3
    assert monitor.pipeline.totals.socket_dropped == 0
    assert kernel.listeners[0].drops_reads == 1  # tried once, then never again
    assert sum(interval.losses.enobufs for interval in intervals) == 3


def test_count_ends_after_that_many_intervals(kernel: FakeKernel) -> None:
    started = time.monotonic()
    _, intervals = run_monitor(kernel, WatchSettings(interval=0.2, count=3))
    assert len(intervals) == 3
    assert time.monotonic() - started < 5
    # On the fake clock: the three intervals, then the kernel's grace, and nothing else.
    assert kernel.clock.elapsed_ns / 1e9 == pytest.approx(3 * 0.2 + KERNEL_BATCH_GRACE)


def test_a_second_signal_skips_the_grace_but_still_stops(kernel: FakeKernel) -> None:
    kernel.alerts_when_started = [summary_alert(5)]
    for at in (0.3, 0.31):
        kernel.clock.at(at, lambda: os.kill(os.getpid(), signal.SIGINT))
    monitor, intervals = run_monitor(kernel, WatchSettings(interval=10.0))
    assert monitor.stop.reason == "SIGINT" and monitor.stop.urgent
    assert kernel.clock.elapsed_ns / 1e9 < 0.31 + MAX_WAIT  # no KERNEL_BATCH_GRACE
    assert counted(intervals) == 5
    assert kernel.requests[-1] == "STOP"


def test_the_kernel_batches_are_drained_for_the_grace_then_stopped(kernel: FakeKernel) -> None:
    """A batch sent after the end (``--duration``) still counts, in the last interval."""
    kernel.alerts_when_started = [summary_alert(1)]
    kernel.clock.at(
        0.5 + KERNEL_BATCH_GRACE / 2, lambda: kernel.pending_alerts.append(summary_alert(6))
    )
    _, intervals = run_monitor(kernel, WatchSettings(interval=0.2, duration=0.5))
    assert counted(intervals) == 7
    assert counted(intervals[-1:]) == 6  # the batch drained after the end: the last interval
    assert intervals[-1].end == pytest.approx(START_NS / 1e9 + 0.5)
    assert kernel.requests[-1] == "STOP"


def test_a_drained_queue_pauses_before_the_next_read(kernel: FakeKernel) -> None:
    """After a batch smaller than RECEIVE_BATCH the loop waits STORM_PAUSE, on its clock."""
    kernel.alerts_when_started = [summary_alert(1), summary_alert(2)]
    _, intervals = run_monitor(kernel, WatchSettings(interval=0.2, duration=0.4))
    assert counted(intervals) == 3
    assert kernel.clock.sleeps == [STORM_PAUSE]  # one batch of two; the other passes waited
