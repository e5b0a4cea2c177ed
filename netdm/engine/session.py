"""A monitoring session: a source of datagrams → decode → aggregate → render.

Strategy: :class:`Pipeline` is the one path every datagram takes, whether it
came from a live socket (:class:`LiveMonitor`) or a recorded capture
(:func:`replay_capture`); it is told the time by its caller.

:class:`LiveMonitor` owns the kernel side: it saves the drop monitor's
configuration, switches to summary mode if needed, starts monitoring, and on
every way out — end of ``--duration``/``--count``, a signal, a closed pipe,
an error — lets the kernel flush its last batch, stops monitoring and
restores what it found.

Recording and replay agree by construction: every datagram is written to the
capture with the time the pipeline was given for it (the run's *logical*
clock: arrival time, except that the kernel's last batches, drained after the
end of the run, are stamped with the end).  Replay feeds the records at their
timestamps, starts its windows where the live run started them (at the ack
of START, or at the first reply when netdm only listened) and ends at the
last record (the STOP exchange, stamped with the end), so it prints the same
summaries.  What the events socket lost is the exception: notifications the
kernel never queued are not in the capture, nor are ENOBUFS or the socket's
``Drops`` counter, so a replay counts ``enobufs`` and ``socket_dropped`` as 0.
"""

from __future__ import annotations

import errno
import signal
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Protocol

from netdm.engine.aggregate import IntervalAggregator, IntervalSummary
from netdm.errors import BadInputError, FamilyNotFoundError, KernelRequestError
from netdm.netlink.control import KernelConfig, KernelControl
from netdm.proto import ProtocolError, decode_datagram
from netdm.proto.alert_cache import PacketAlertDecoder
from netdm.proto.constants import FAMILY_NAME, AlertMode, Cmd
from netdm.proto.decode import DropSite, DropSiteScanner
from netdm.proto.events import FamilyInfo, PacketAlert, StatsReply, SummaryAlert

if TYPE_CHECKING:
    from netdm.capture import CaptureReader
    from netdm.engine.symbols import SymbolTable
    from netdm.netlink.transport import NetlinkTransport

# The kernel sends each CPU's summary about one second after that CPU's first
# drop, and STOP discards what is unsent: wait this long before stopping.
KERNEL_BATCH_GRACE = 1.25
# Upper bound on how long the loop sleeps, so signals and deadlines are noticed.
MAX_WAIT = 0.25
# Alerts arriving at or after the end of the run still belong to its last interval.
END_EPSILON_NS = 1_000_000
# How often a capture being written is flushed to disk (and its symbols added).
RECORD_FLUSH_SECONDS = 1.0
# How often packet mode reads the kernel's tail-drop counters (STATS_GET).
STATS_POLL_SECONDS = 1.0
# The events socket's Drops counter (/proc/net/netlink, a table scan) is read at every
# interval's end, at the end of the run, and after a new ENOBUFS, but for ENOBUFS at most
# this often: a reader that keeps overflowing sees ENOBUFS many times a second.
SOCKET_DROPS_MIN_GAP = 1.0
# In a storm, datagrams already queued are taken this many at a time before the
# per-pass work (clock, losses, STATS poll, window tick, capture flush) runs again.
RECEIVE_BATCH = 256
# After a batch that drained the socket, wait this long before reading again.  In a storm
# this turns a wakeup per datagram (a context switch, costlier than the datagram) into a
# read of many every 2 ms; a burst this long fits the socket buffer many times over.
STORM_PAUSE = 0.002

NS_PER_SECOND = 1_000_000_000
NETLINK_GENERIC = 16
GENL_ID_CTRL = 0x10


def seconds(timestamp_ns: int) -> float:
    """The one conversion from record/clock nanoseconds to the pipeline's float seconds."""
    return timestamp_ns / NS_PER_SECOND


@dataclass
class RunTotals:
    """Counts over the whole run, for the closing line."""

    intervals: int = 0
    drops: int = 0
    decode_errors: int = 0
    enobufs: int = 0
    socket_dropped: int = 0  # notifications the kernel could not queue on netdm's socket
    sw_tail_drops: int = 0
    hw_tail_drops: int = 0
    tracefs_lost: int = 0  # tracepoint source: events its ring buffers had no room for
    filtered: int = 0  # packet alerts a client-side filter left out


class Pipeline:
    """Decode datagrams, aggregate their alerts into intervals, hand intervals on.

    When nothing looks at the packets (no ``on_packet``, no ``packet_filter``,
    the aggregator's default key), packet alerts take the lazy path: only
    their drop sites are read from the bytes (:class:`DropSiteScanner`, proven
    equal to the full decoder), several times faster in a drop storm.
    ``need_packets=True`` forces full decoding, which remembers the shapes of
    packet alerts (:class:`PacketAlertDecoder`, proven equal too).
    """

    def __init__(
        self,
        family_id: int,
        aggregator: IntervalAggregator,
        on_interval: Callable[[IntervalSummary], None],
        *,
        on_packet: Callable[[PacketAlert], None] | None = None,
        packet_filter: Callable[[PacketAlert], bool] | None = None,
        need_packets: bool | None = None,
    ) -> None:
        self.family_id = family_id
        self._aggregator = aggregator
        self._on_interval = on_interval
        self._on_packet = on_packet
        self._packet_filter = packet_filter
        self.totals = RunTotals()
        self.addresses: set[int] = set()  # every drop location's pc, for a capture's symbols
        self._kernel_stats: tuple[int, int] | None = None  # last cumulative tail drops seen
        packets_looked_at = on_packet is not None or packet_filter is not None
        if need_packets is None:
            need_packets = packets_looked_at or not aggregator.counts_drop_sites
        elif not need_packets and (packets_looked_at or not aggregator.counts_drop_sites):
            raise ValueError("need_packets=False, but a hook, filter or custom key needs them")
        self.lazy = not need_packets
        self._scan_drop_sites = DropSiteScanner(family_id).scan if self.lazy else None
        # decode_datagram, remembering the shapes of packet alerts (a storm's look-alikes)
        self._decode = PacketAlertDecoder(family_id).decode

    def _emit(self, closed: Sequence[IntervalSummary]) -> None:
        for summary in closed:
            self.totals.intervals += 1
            self.totals.drops += summary.total
            self._on_interval(summary)

    def feed(self, datagram: bytes, now: float) -> None:
        """One datagram received at ``now`` (epoch seconds)."""
        try:
            if self._scan_drop_sites is not None:
                sites = self._scan_drop_sites(datagram)
                if sites is not None:  # only packet alerts: count their drop sites
                    self.feed_drop_sites(sites, now)
                    return
            events = self._decode(datagram)
        except ProtocolError:
            self.add_losses(now, decode_errors=1)
            return
        for event in events:
            if isinstance(event, PacketAlert):  # first: a storm is made of them
                if self._packet_filter is not None and not self._packet_filter(event):
                    self.totals.filtered += 1
                    continue
                if event.pc:
                    self.addresses.add(event.pc)
                if self._on_packet is not None:
                    self._on_packet(event)
                closed = self._aggregator.add_packet(event, now)
                if closed:
                    self._emit(closed)
            elif isinstance(event, SummaryAlert):
                self.addresses.update(point.pc for point in event.drop_points)
                self._emit(self._aggregator.add_summary(event, now))
            elif isinstance(event, StatsReply):
                self.kernel_stats(event.sw_dropped or 0, event.hw_dropped or 0, now)

    def feed_drop_sites(self, sites: Iterable[DropSite], now: float) -> None:
        """Drops that arrive as drop sites (lazy packet alerts, the tracepoint), all at ``now``."""
        add_drop_site = self._aggregator.add_drop_site
        addresses = self.addresses
        for site in sites:
            if site.pc:
                addresses.add(site.pc)
            closed = add_drop_site(site, now)
            if closed:
                self._emit(closed)

    def kernel_stats(self, sw_dropped: int, hw_dropped: int, now: float) -> None:
        """The kernel's cumulative tail-drop counters; their growth is counted as losses."""
        previous, self._kernel_stats = self._kernel_stats, (sw_dropped, hw_dropped)
        if previous is None:
            return
        sw_delta, hw_delta = sw_dropped - previous[0], hw_dropped - previous[1]
        if sw_delta > 0 or hw_delta > 0:
            self.totals.sw_tail_drops += max(sw_delta, 0)
            self.totals.hw_tail_drops += max(hw_delta, 0)
            self._emit(
                self._aggregator.add_losses(
                    sw_tail_drops=max(sw_delta, 0), hw_tail_drops=max(hw_delta, 0), now=now
                )
            )

    def add_losses(
        self,
        now: float,
        *,
        enobufs: int = 0,
        socket_dropped: int = 0,
        decode_errors: int = 0,
        tracefs_lost: int = 0,
    ) -> None:
        if enobufs or socket_dropped or decode_errors or tracefs_lost:
            self.totals.enobufs += enobufs
            self.totals.socket_dropped += socket_dropped
            self.totals.decode_errors += decode_errors
            self.totals.tracefs_lost += tracefs_lost
            self._emit(
                self._aggregator.add_losses(
                    enobufs=enobufs,
                    socket_dropped=socket_dropped,
                    decode_errors=decode_errors,
                    tracefs_lost=tracefs_lost,
                    now=now,
                )
            )

    @property
    def open_window(self) -> tuple[float, float]:
        """``(start, end)`` of the window being counted: a time in it adds to it."""
        return self._aggregator.open_window

    def tick(self, now: float) -> None:
        self._emit(self._aggregator.tick(now))

    def finish(self, now: float) -> None:
        last = self._aggregator.flush(now)
        if last is not None:
            self._emit([last])


PipelineFactory = Callable[[int, float], Pipeline]


class Recorder(Protocol):
    """Where a live run writes what it sends and receives (a CaptureWriter)."""

    def write(self, datagram: bytes, timestamp_ns: int, *, outgoing: bool) -> None: ...

    def write_symbols(self, lines: Iterable[str]) -> None: ...

    def flush(self) -> None: ...


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
    packet_mode: bool = False
    trunc_len: int = 128
    queue_len: int = 1000
    software: bool = True
    hardware: bool = False

    def deadline_ns(self, start_ns: int) -> int | None:
        """When the run ends by itself: after ``duration`` or ``count`` intervals."""
        ends = []
        if self.duration is not None:
            ends.append(start_ns + round(self.duration * NS_PER_SECOND))
        if self.count is not None:
            ends.append(start_ns + round(self.count * self.interval * NS_PER_SECOND))
        return min(ends) if ends else None


class CaptureSymbols:
    """Adds the kallsyms lines of newly seen drop locations to a capture."""

    def __init__(self, recorder: Recorder, symbols: SymbolTable | None) -> None:
        self._recorder = recorder
        self._symbols = symbols
        self._written: set[int] = set()

    def update(self, addresses: set[int]) -> None:
        if self._symbols is None:
            return
        new = addresses - self._written
        if new:
            lines = self._symbols.kallsyms_lines(new)
            if lines:
                self._recorder.write_symbols(lines)
            self._written |= new


class LiveMonitor:
    """Monitoring against the running kernel, with its state restored on exit."""

    def __init__(
        self,
        settings: WatchSettings,
        pipeline_factory: PipelineFactory,
        on_started: Callable[[], None],
        *,
        clock_ns: Callable[[], int] = time.time_ns,
        recorder: Recorder | None = None,
        symbols: SymbolTable | None = None,
    ) -> None:
        self.settings = settings
        self._pipeline_factory = pipeline_factory
        self._on_started = on_started
        self._clock_ns = clock_ns
        self._recorder = recorder
        self._capture_symbols = CaptureSymbols(recorder, symbols) if recorder else None
        self.stop = StopRequest()
        self.saved_config: KernelConfig | None = None
        self.pipeline: Pipeline | None = None
        self._last_reply_ns: int | None = None
        self._frozen_record_ns: int | None = None  # set at the end: see the module docstring
        self._last_flush = time.monotonic()
        self._control: KernelControl | None = None  # packet mode: polled for tail drops
        self._next_stats_poll = time.monotonic() + STATS_POLL_SECONDS
        # The events socket's Drops counter when last read; None: /proc/net/netlink unreadable.
        self._socket_drops_seen: int | None = None
        self._enobufs_seen = 0
        self._oversized_seen = 0
        self._next_socket_drops_read = 0.0  # monotonic; only limits the reads after ENOBUFS

    # ------------------------------------------------------------------ recording

    def _observe_control(self, outgoing: bool, datagram: bytes) -> None:
        """Every request and reply on the control socket: timed, and recorded."""
        now_ns = self._frozen_record_ns or self._clock_ns()
        if not outgoing:
            self._last_reply_ns = now_ns
        if self._recorder:
            self._recorder.write(datagram, now_ns, outgoing=outgoing)

    def _record_event(self, datagram: bytes, now_ns: int) -> None:
        if self._recorder:
            self._recorder.write(datagram, now_ns, outgoing=False)

    def _flush_recording(self, *, force: bool = False) -> None:
        if not self._recorder or self.pipeline is None:
            return
        if force or time.monotonic() - self._last_flush >= RECORD_FLUSH_SECONDS:
            assert self._capture_symbols is not None
            self._capture_symbols.update(self.pipeline.addresses)
            self._recorder.flush()
            self._last_flush = time.monotonic()

    # ------------------------------------------------------------------ the run

    def run(self) -> RunTotals:
        from netdm.netlink.transport import NetlinkTransport

        try:
            control_socket = NetlinkTransport(receive_buffer=256 * 1024)
        except FamilyNotFoundError:
            from netdm.netlink.diagnose import explain_missing_family

            raise FamilyNotFoundError(explain_missing_family()) from None
        with control_socket:
            events_transport = (
                NetlinkTransport(receive_buffer=self.settings.receive_buffer)
                if self.settings.receive_buffer
                else NetlinkTransport()
            )
            with events_transport as events_socket, stop_on_signals(self.stop):
                control = KernelControl(control_socket, observer=self._observe_control)
                try:
                    return self._monitor(control, events_socket)
                finally:
                    self._flush_recording(force=True)

    def _monitor(self, control: KernelControl, events_socket: NetlinkTransport) -> RunTotals:
        settings = self.settings
        restore: KernelConfig | None = None
        started = False
        end_ns: int | None = None
        try:
            if self._recorder:
                # First in the capture: the family's id and name, for Wireshark and replay.
                control.describe_family(FAMILY_NAME)
            if not settings.passive:
                self.saved_config = control.get_config()
                wanted = self._wanted_config()
                if self.saved_config is not None and self.saved_config != wanted:
                    restore = self.saved_config
                    control.set_config(
                        alert_mode=wanted.alert_mode,
                        trunc_len=wanted.trunc_len,
                        queue_len=wanted.queue_len,
                    )
                elif self.saved_config is None and settings.packet_mode:
                    raise KernelRequestError(
                        "packet mode needs a 5.4 or newer kernel; this one has no CONFIG_GET",
                        errno.EOPNOTSUPP,
                    )
            # Join before START so that no alert sent right after START is missed.
            events_socket.join_events()
            from netdm.netlink.batch_receive import packet_alert_slot_size  # ctypes: live runs only

            largest_alert = packet_alert_slot_size(settings.trunc_len)
            if settings.packet_mode and not settings.passive and largest_alert is not None:
                # A storm's alerts, many per system call (netdm set the length that bounds them).
                events_socket.enable_batches(largest_alert)
            self._socket_drops_seen = events_socket.read_kernel_drops()
            baseline = None
            if settings.packet_mode and not settings.passive:
                # Tail drops are cumulative since module load: count from here.
                baseline = control.get_stats()
                self._control = control
            if not settings.passive:
                control.start(sw=settings.software, hw=settings.hardware)
                started = True
            start_ns = self._last_reply_ns or self._clock_ns()
            pipeline = self._pipeline_factory(events_socket.family_id, seconds(start_ns))
            self.pipeline = pipeline
            if baseline is not None:
                pipeline.kernel_stats(baseline.sw_dropped, baseline.hw_dropped, seconds(start_ns))
            self._on_started()
            end_ns = self._receive_until_done(pipeline, events_socket, start_ns)
            if started and not self.stop.urgent:
                self._drain_kernel_batches(pipeline, events_socket, end_ns)
            # The last interval's losses, those of the drain included.
            last_instant = seconds(within_run(end_ns, end_ns))
            self._next_stats_poll = 0.0
            self._poll_kernel_stats(pipeline, last_instant)
            self._count_oversized(pipeline, events_socket, last_instant)
            self._count_enobufs(pipeline, events_socket, last_instant)
            self._read_socket_drops(pipeline, events_socket, last_instant)
            self._frozen_record_ns = end_ns
            pipeline.finish(seconds(end_ns))
            return pipeline.totals
        finally:
            if end_ns is not None:
                self._frozen_record_ns = end_ns
            try:
                if started:
                    control.stop(sw=settings.software, hw=settings.hardware)
            finally:
                if restore is not None:
                    control.set_config(
                        alert_mode=restore.alert_mode,
                        trunc_len=restore.trunc_len,
                        queue_len=restore.queue_len,
                    )

    def _wanted_config(self) -> KernelConfig:
        """The configuration this run needs; summary mode keeps trunc/queue as found."""
        settings = self.settings
        if settings.packet_mode:
            return KernelConfig(AlertMode.PACKET, settings.trunc_len, settings.queue_len)
        assert self.saved_config is not None
        return KernelConfig(
            AlertMode.SUMMARY, self.saved_config.trunc_len, self.saved_config.queue_len
        )

    def _poll_kernel_stats(self, pipeline: Pipeline, now: float) -> None:
        """Packet mode: the kernel's tail-drop counters, about once a second."""
        if self._control is None or time.monotonic() < self._next_stats_poll:
            return
        self._next_stats_poll = time.monotonic() + STATS_POLL_SECONDS
        counters = self._control.get_stats()
        if counters is not None:
            pipeline.kernel_stats(counters.sw_dropped, counters.hw_dropped, now)

    def _count_oversized(
        self, pipeline: Pipeline, events_socket: NetlinkTransport, now: float
    ) -> None:
        """Messages longer than the batch slots: cut by the kernel, so undecodable."""
        oversized = events_socket.losses.oversized
        if oversized != self._oversized_seen:
            pipeline.add_losses(now, decode_errors=oversized - self._oversized_seen)
            self._oversized_seen = oversized

    def _count_enobufs(
        self, pipeline: Pipeline, events_socket: NetlinkTransport, now: float
    ) -> None:
        """New ENOBUFS since the last look; then how many notifications they cost."""
        enobufs = events_socket.losses.enobufs
        if enobufs == self._enobufs_seen:
            return
        pipeline.add_losses(now, enobufs=enobufs - self._enobufs_seen)
        self._enobufs_seen = enobufs
        if time.monotonic() >= self._next_socket_drops_read:
            self._read_socket_drops(pipeline, events_socket, now)

    def _read_socket_drops(
        self, pipeline: Pipeline, events_socket: NetlinkTransport, now: float
    ) -> None:
        """Count the notifications the kernel discarded for the events socket since last read.

        ENOBUFS only says that the receive queue overflowed; while it stays
        congested the kernel discards every notification for the socket and
        counts each in the socket's ``Drops`` (``sk_drops``).  The growth since
        the last read goes to the window ``now`` falls in.
        """
        if self._socket_drops_seen is None:  # /proc/net/netlink unreadable: ENOBUFS only
            return
        dropped = events_socket.read_kernel_drops()
        if dropped is None:
            return
        self._next_socket_drops_read = time.monotonic() + SOCKET_DROPS_MIN_GAP
        if dropped > self._socket_drops_seen:
            pipeline.add_losses(now, socket_dropped=dropped - self._socket_drops_seen)
        self._socket_drops_seen = dropped

    def _receive_until_done(
        self, pipeline: Pipeline, events_socket: NetlinkTransport, start_ns: int
    ) -> int:
        """Receive until duration, count or a stop request; return the end time (ns)."""
        deadline_ns = self.settings.deadline_ns(start_ns)
        while True:
            now_ns = self._clock_ns()
            if self.stop.requested:
                return now_ns
            if deadline_ns is not None and now_ns >= deadline_ns:
                return deadline_ns
            wait = MAX_WAIT
            if deadline_ns is not None:
                wait = min(wait, seconds(deadline_ns - now_ns))
            datagrams = events_socket.receive_many(wait, RECEIVE_BATCH)
            now_ns = within_run(self._clock_ns(), deadline_ns)
            now = seconds(now_ns)
            window_start, window_end = pipeline.open_window
            if now >= window_end:  # the window closes below: its socket losses go in it first
                self._read_socket_drops(pipeline, events_socket, window_start)
            for datagram in datagrams:
                self._record_event(datagram, now_ns)
                pipeline.feed(datagram, now)
            self._count_oversized(pipeline, events_socket, now)
            self._count_enobufs(pipeline, events_socket, now)
            self._poll_kernel_stats(pipeline, now)
            pipeline.tick(now)
            self._flush_recording()
            if 0 < len(datagrams) < RECEIVE_BATCH:
                # The queue is drained: let the next datagrams gather instead of waking for each.
                time.sleep(STORM_PAUSE)

    def _drain_kernel_batches(
        self, pipeline: Pipeline, events_socket: NetlinkTransport, end_ns: int
    ) -> None:
        """Take the batches the kernel still holds into the last interval."""
        grace_end = time.monotonic() + KERNEL_BATCH_GRACE
        last_instant_ns = within_run(end_ns, end_ns)
        while not self.stop.urgent:
            remaining = grace_end - time.monotonic()
            if remaining <= 0:
                return
            for datagram in events_socket.receive_many(min(remaining, MAX_WAIT), RECEIVE_BATCH):
                self._record_event(datagram, last_instant_ns)
                pipeline.feed(datagram, seconds(last_instant_ns))


def within_run(now_ns: int, end_ns: int | None) -> int:
    """``now_ns``, but inside the run: a time at ``end_ns`` would open a new interval."""
    return now_ns if end_ns is None or now_ns < end_ns else end_ns - END_EPSILON_NS


# ---------------------------------------------------------------------- replay


def _is_alert(datagram: bytes, family_id: int) -> bool:
    """A kernel notification of ``family_id``: ALERT or PACKET_ALERT."""
    return (
        len(datagram) >= 20
        and int.from_bytes(datagram[4:6], "little") == family_id
        and datagram[16] in (Cmd.ALERT, Cmd.PACKET_ALERT)
    )


def _is_net_dm_command(datagram: bytes, family_id: int, cmd: Cmd) -> bool:
    """A message of ``family_id`` with command ``cmd`` (a request, or a reply like STATS_NEW)."""
    return (
        len(datagram) >= 20
        and int.from_bytes(datagram[4:6], "little") == family_id
        and datagram[16] == cmd
    )


def find_family_id(reader: CaptureReader) -> tuple[int, str]:
    """NET_DM's id in a capture, and how it was learnt.

    From the nlctrl reply naming NET_DM (netdm and dwdump write one first);
    failing that, from the first datagram that looks and decodes like a NET_DM
    notification (a generic-netlink multicast with version 2, seq and port 0,
    and command ALERT or PACKET_ALERT).
    """
    guess: int | None = None
    for record in reader:
        data = record.data
        if record.protocol != NETLINK_GENERIC or len(data) < 20:
            continue
        nl_type = int.from_bytes(data[4:6], "little")
        if nl_type == GENL_ID_CTRL:
            try:
                events = decode_datagram(data, 0)
            except ProtocolError:
                continue
            for event in events:
                if isinstance(event, FamilyInfo) and event.name == FAMILY_NAME:
                    return event.family_id, "from the capture's nlctrl reply"
        elif guess is None and nl_type > GENL_ID_CTRL and _looks_like_net_dm_alert(data):
            guess = nl_type
    if guess is not None:
        return guess, "recognised from its alerts (the capture has no nlctrl reply)"
    raise BadInputError(
        f"{reader.path}: no NET_DM messages found (no nlctrl reply naming NET_DM and "
        "nothing that decodes as a drop alert); if the family id is known, pass --family-id"
    )


def _looks_like_net_dm_alert(data: bytes) -> bool:
    flags_seq_pid = data[6:16]
    if flags_seq_pid != bytes(10) or data[17] != 2:
        return False
    nl_type = int.from_bytes(data[4:6], "little")
    if data[16] not in (Cmd.ALERT, Cmd.PACKET_ALERT):
        return False
    try:
        events = decode_datagram(data, nl_type)
    except ProtocolError:
        return False
    return all(isinstance(event, (SummaryAlert, PacketAlert)) for event in events)


@dataclass
class ReplayResult:
    """What a replay did, besides its intervals."""

    totals: RunTotals
    family_id: int
    family_source: str
    records: int
    bad_records: int


def replay_capture(
    open_reader: Callable[[], CaptureReader],
    pipeline_factory: PipelineFactory,
    *,
    family_id: int | None = None,
) -> ReplayResult:
    """Feed a capture through the same pipeline as a live run, on its own clock.

    ``open_reader`` is called once or twice (a first pass finds the family id
    when it is not given).
    """
    if family_id is None:
        with open_reader() as scout:
            family_id, family_source = find_family_id(scout)
    else:
        family_source = "given with --family-id"
    pipeline: Pipeline | None = None
    start_ns: int | None = None  # the live run's: the START ack, else the first reply
    awaiting_start_ack = False
    stats_baseline: bytes | None = None
    last_ns: int | None = None
    records = 0
    with open_reader() as reader:
        # A record unpacked once: this loop runs per datagram, a million times for a storm.
        for timestamp_ns, data, outgoing, protocol, _offset, _original_length in reader:
            if protocol != NETLINK_GENERIC:
                continue
            if outgoing:
                # Requests carry no drops, but netdm's START marks where its windows begin.
                if _is_net_dm_command(data, family_id, Cmd.START):
                    awaiting_start_ack = True
                continue
            records += 1
            last_ns = timestamp_ns
            if pipeline is None:
                if start_ns is None or awaiting_start_ack:
                    start_ns = timestamp_ns
                    awaiting_start_ack = False
                if _is_net_dm_command(data, family_id, Cmd.STATS_NEW):
                    stats_baseline = data  # live, taken before START: see LiveMonitor
                if not _is_alert(data, family_id):
                    continue
                pipeline = pipeline_factory(family_id, seconds(start_ns))
                if stats_baseline is not None:
                    pipeline.feed(stats_baseline, seconds(start_ns))
            pipeline.feed(data, timestamp_ns / NS_PER_SECOND)  # seconds(), inlined
        bad_records = reader.bad_records
    if last_ns is None:
        raise BadInputError(f"{reader.path}: the capture holds no netlink records to replay")
    if pipeline is None:
        pipeline = pipeline_factory(family_id, seconds(start_ns or last_ns))
    # As the live run did: windows closed just before the end, then the last one at the end.
    pipeline.tick(seconds(within_run(last_ns, last_ns)))
    pipeline.finish(seconds(last_ns))
    return ReplayResult(pipeline.totals, family_id, family_source, records, bad_records)
