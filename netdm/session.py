"""A monitoring session: a source of datagrams → decode → aggregate → render.

Strategy: :class:`Pipeline` is the one path every datagram takes, whether it
came from a live socket or (later) a recorded capture; it is told the time by
its caller.  :class:`LiveMonitor` owns the kernel side: it saves the drop
monitor's configuration, switches to summary mode if needed, starts
monitoring, and on every way out — end of ``--duration``/``--count``, a
signal, a closed pipe, an error — lets the kernel flush its last batch,
stops monitoring and restores what it found.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING

from netdm.aggregate import IntervalAggregator, IntervalSummary
from netdm.control import KernelConfig, KernelControl
from netdm.errors import FamilyNotFoundError
from netdm.proto import ProtocolError, decode_datagram
from netdm.proto.constants import AlertMode
from netdm.proto.events import PacketAlert, SummaryAlert

if TYPE_CHECKING:
    from netdm.transport import NetlinkTransport

# The kernel sends each CPU's summary about one second after that CPU's first
# drop, and STOP discards what is unsent: wait this long before stopping.
KERNEL_BATCH_GRACE = 1.25
# Upper bound on how long the loop sleeps, so signals and deadlines are noticed.
MAX_WAIT = 0.25
# Alerts arriving at or after the end of the run still belong to its last interval.
END_EPSILON = 1e-3


class IntervalSink:
    """Where finished intervals go (a renderer)."""

    def interval(self, summary: IntervalSummary) -> None:
        raise NotImplementedError


@dataclass
class RunTotals:
    """Counts over the whole run, for the closing line."""

    intervals: int = 0
    drops: int = 0
    decode_errors: int = 0
    enobufs: int = 0


class Pipeline:
    """Decode datagrams, aggregate their alerts into intervals, hand intervals on."""

    def __init__(
        self,
        family_id: int,
        aggregator: IntervalAggregator,
        on_interval: Callable[[IntervalSummary], None],
    ) -> None:
        self.family_id = family_id
        self._aggregator = aggregator
        self._on_interval = on_interval
        self.totals = RunTotals()

    def _emit(self, closed: list[IntervalSummary]) -> None:
        for summary in closed:
            self.totals.intervals += 1
            self.totals.drops += summary.total
            self._on_interval(summary)

    def feed(self, datagram: bytes, now: float) -> None:
        """One datagram received at ``now`` (epoch seconds)."""
        try:
            events = decode_datagram(datagram, self.family_id)
        except ProtocolError:
            self.totals.decode_errors += 1
            self._emit(self._aggregator.add_losses(decode_errors=1, now=now))
            return
        for event in events:
            if isinstance(event, SummaryAlert):
                self._emit(self._aggregator.add_summary(event, now))
            elif isinstance(event, PacketAlert):
                self._emit(self._aggregator.add_packet(event, now))

    def add_losses(self, now: float, *, enobufs: int = 0) -> None:
        if enobufs:
            self.totals.enobufs += enobufs
            self._emit(self._aggregator.add_losses(enobufs=enobufs, now=now))

    def tick(self, now: float) -> None:
        self._emit(self._aggregator.tick(now))

    def finish(self, now: float) -> None:
        last = self._aggregator.flush(now)
        if last is not None:
            self._emit([last])


class StopRequest:
    """Set by signal handlers; the loop checks it at least every MAX_WAIT seconds."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.urgent = False  # a second signal: skip the grace period

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        if self.reason is not None:
            self.urgent = True
        self.reason = signal.Signals(signum).name

    @property
    def requested(self) -> bool:
        return self.reason is not None


@contextmanager
def stop_on_signals(stop: StopRequest) -> Iterator[None]:
    """Route SIGINT, SIGTERM and SIGHUP to ``stop`` for the duration of the block."""
    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {signum: signal.signal(signum, stop) for signum in handled}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@dataclass
class WatchSettings:
    """What ``netdm watch`` was asked to do."""

    interval: float = 5.0
    duration: float | None = None
    count: int | None = None
    passive: bool = False
    receive_buffer: int | None = None

    def deadline(self, start: float) -> float | None:
        """When the run ends by itself: after ``duration`` or ``count`` intervals."""
        ends = []
        if self.duration is not None:
            ends.append(start + self.duration)
        if self.count is not None:
            ends.append(start + self.count * self.interval)
        return min(ends) if ends else None


class LiveMonitor:
    """Monitoring against the running kernel, with its state restored on exit."""

    def __init__(
        self,
        settings: WatchSettings,
        pipeline_factory: Callable[[int, float], Pipeline],
        on_started: Callable[[], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._pipeline_factory = pipeline_factory
        self._on_started = on_started
        self._clock = clock
        self.stop = StopRequest()
        self.saved_config: KernelConfig | None = None
        self.pipeline: Pipeline | None = None

    def run(self) -> RunTotals:
        from netdm.transport import NetlinkTransport

        try:
            control_socket = NetlinkTransport(receive_buffer=256 * 1024)
        except FamilyNotFoundError:
            from netdm.diagnose import explain_missing_family

            raise FamilyNotFoundError(explain_missing_family()) from None
        with control_socket:
            events_transport = (
                NetlinkTransport(receive_buffer=self.settings.receive_buffer)
                if self.settings.receive_buffer
                else NetlinkTransport()
            )
            with events_transport as events_socket, stop_on_signals(self.stop):
                control = KernelControl(control_socket)
                return self._monitor(control, events_socket)

    def _monitor(self, control: KernelControl, events_socket: NetlinkTransport) -> RunTotals:
        settings = self.settings
        restore: KernelConfig | None = None
        started = False
        try:
            if not settings.passive:
                self.saved_config = control.get_config()
                if self.saved_config and self.saved_config.alert_mode != AlertMode.SUMMARY:
                    restore = self.saved_config
                    control.set_config(alert_mode=AlertMode.SUMMARY)
            # Join before START so that no alert sent right after START is missed.
            events_socket.join_events()
            if not settings.passive:
                control.start(sw=True)
                started = True
            start = self._clock()
            pipeline = self._pipeline_factory(events_socket.family_id, start)
            self.pipeline = pipeline
            self._on_started()
            end = self._receive_until_done(pipeline, events_socket, start)
            if started and not self.stop.urgent:
                self._drain_kernel_batches(pipeline, events_socket, end)
            pipeline.finish(end)
            return pipeline.totals
        finally:
            try:
                if started:
                    control.stop(sw=True)
            finally:
                if restore is not None:
                    control.set_config(
                        alert_mode=restore.alert_mode,
                        trunc_len=restore.trunc_len,
                        queue_len=restore.queue_len,
                    )

    def _receive_until_done(
        self, pipeline: Pipeline, events_socket: NetlinkTransport, start: float
    ) -> float:
        """Receive until duration, count or a stop request; return the end time."""
        deadline = self.settings.deadline(start)
        enobufs_seen = 0
        while True:
            now = self._clock()
            if self.stop.requested:
                return now
            if deadline is not None and now >= deadline:
                return deadline
            wait = MAX_WAIT if deadline is None else min(MAX_WAIT, deadline - now)
            datagram = events_socket.receive(wait)
            now = _within(self._clock(), deadline)
            if events_socket.losses.enobufs != enobufs_seen:
                pipeline.add_losses(now, enobufs=events_socket.losses.enobufs - enobufs_seen)
                enobufs_seen = events_socket.losses.enobufs
            if datagram is not None:
                pipeline.feed(datagram, now)
            pipeline.tick(now)

    def _drain_kernel_batches(
        self, pipeline: Pipeline, events_socket: NetlinkTransport, end: float
    ) -> None:
        """Take the batches the kernel still holds into the last interval."""
        grace_end = time.monotonic() + KERNEL_BATCH_GRACE
        while not self.stop.urgent:
            remaining = grace_end - time.monotonic()
            if remaining <= 0:
                return
            datagram = events_socket.receive(min(remaining, MAX_WAIT))
            if datagram is not None:
                pipeline.feed(datagram, _within(end, end))


def _within(now: float, end: float | None) -> float:
    """``now``, but inside the run: a time at ``end`` would open a new interval."""
    return now if end is None or now < end else end - END_EPSILON
