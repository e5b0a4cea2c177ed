"""The live NET_DM monitor: the kernel's drop monitor driven for one run, and left as found.

Strategy: :class:`LiveMonitor` owns the kernel side.  It saves the drop
monitor's configuration, switches to the mode the run needs, starts
monitoring, and on every way out — end of ``--duration``/``--count``, a
signal, a closed pipe, an error — lets the kernel flush its last batch,
stops monitoring and restores what it found.  The passes between START and
STOP are the shared :class:`~netdm.engine.run_loop.RunLoop`'s; one pass here
is a batch of datagrams from the events socket and the loss counters read
beside it.  Sockets come from an injected factory and time from a
:class:`~netdm.engine.run_loop.RunClock`, so tests need no kernel or clock.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from netdm.engine.pipeline import (
    NetDmDecoder,
    Pipeline,
    PipelineFactory,
    RunTotals,
    seconds,
    within_run,
)
from netdm.engine.run_loop import (
    Recorder,
    RecordingFlush,
    RunClock,
    RunLoop,
    StopRequest,
    WatchSettings,
    stop_on_signals,
)
from netdm.errors import FamilyNotFoundError, KernelRequestError
from netdm.netlink.control import KernelConfig, KernelControl
from netdm.proto.constants import FAMILY_NAME, AlertMode

if TYPE_CHECKING:
    from netdm.engine.symbols import SymbolTable
    from netdm.netlink.transport import NetlinkTransport

# The kernel sends each CPU's summary about one second after that CPU's first
# drop, and STOP discards what is unsent: wait this long before stopping.
KERNEL_BATCH_GRACE = 1.25
# Upper bound on how long the loop waits, so signals and deadlines are noticed.
MAX_WAIT = 0.25
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
# The control socket's SO_RCVBUF: replies only, a few at a time.
CONTROL_RECEIVE_BUFFER = 256 * 1024

# Opens a NET_DM socket with this SO_RCVBUF (None: the transport's default).
TransportFactory = Callable[[int | None], "NetlinkTransport"]


def open_netlink_transport(receive_buffer: int | None) -> NetlinkTransport:
    """The real socket (pyroute2 is imported only when a live run needs it)."""
    from netdm.netlink.transport import NetlinkTransport

    return NetlinkTransport(receive_buffer=receive_buffer) if receive_buffer else NetlinkTransport()


class LiveMonitor:
    """Monitoring against the running kernel, with its state restored on exit."""

    def __init__(
        self,
        settings: WatchSettings,
        pipeline_factory: PipelineFactory,
        on_started: Callable[[], None],
        *,
        clock: RunClock | None = None,
        open_transport: TransportFactory = open_netlink_transport,
        recorder: Recorder | None = None,
        symbols: SymbolTable | None = None,
    ) -> None:
        clock = clock or RunClock()  # the wall clock, time.monotonic and time.sleep
        self.settings = settings
        self._pipeline_factory = pipeline_factory
        self._on_started = on_started
        self._clock = clock
        self._open_transport = open_transport
        self._recorder = recorder
        self._recording = RecordingFlush(recorder, symbols, clock.monotonic) if recorder else None
        self.stop = StopRequest()
        self._loop = RunLoop(
            settings, self.stop, clock, max_wait=MAX_WAIT, recording=self._recording
        )
        self.saved_config: KernelConfig | None = None
        self._restore: KernelConfig | None = None  # what to set back on the way out
        self.pipeline: Pipeline | None = None
        self._last_reply_ns: int | None = None
        self._frozen_record_ns: int | None = None  # set at the end: see netdm.engine.replay
        self._first_stats_poll = clock.monotonic() + STATS_POLL_SECONDS

    def _observe_control(self, outgoing: bool, datagram: bytes) -> None:
        """Every request and reply on the control socket: timed, and recorded."""
        now_ns = self._frozen_record_ns or self._clock.wall_ns()
        if not outgoing:
            self._last_reply_ns = now_ns
        if self._recorder:
            self._recorder.write(datagram, now_ns, outgoing=outgoing)

    def run(self) -> RunTotals:
        try:
            control_socket = self._open_transport(CONTROL_RECEIVE_BUFFER)
        except FamilyNotFoundError:
            from netdm.netlink.diagnose import explain_missing_family

            raise FamilyNotFoundError(explain_missing_family()) from None
        with control_socket:
            events_transport = self._open_transport(self.settings.receive_buffer)
            with events_transport as events_socket, stop_on_signals(self.stop):
                control = KernelControl(control_socket, observer=self._observe_control)
                try:
                    return self._monitor(control, events_socket)
                finally:
                    if self._recording is not None:
                        self._recording.flush(self.pipeline, force=True)

    def _monitor(self, control: KernelControl, events_socket: NetlinkTransport) -> RunTotals:
        settings = self.settings
        self._restore = None
        started = False
        try:
            if self._recorder:
                # First in the capture: the family's id and name, for Wireshark and replay.
                control.describe_family(FAMILY_NAME)
            if not settings.passive:
                self._switch_config(control)
            socket_drops_baseline = self._join_events(events_socket)
            baseline = None
            stats_control = None
            if settings.packet_mode and not settings.passive:
                # Tail drops are cumulative since module load: count from here.
                baseline = control.get_stats()
                stats_control = control
            if not settings.passive:
                control.start(sw=settings.software, hw=settings.hardware)
                started = True
            start_ns = self._last_reply_ns or self._clock.wall_ns()
            decoder = NetDmDecoder(events_socket.family_id)
            pipeline = self._pipeline_factory(decoder, seconds(start_ns))
            self.pipeline = pipeline
            if baseline is not None:
                pipeline.kernel_stats(baseline.sw_dropped, baseline.hw_dropped, seconds(start_ns))
            self._on_started()
            source = EventsSource(
                pipeline,
                events_socket,
                self._clock,
                recorder=self._recorder,
                started=started,
                stats_control=stats_control,
                first_stats_poll=self._first_stats_poll,
                socket_drops_baseline=socket_drops_baseline,
            )
            return self._loop.run(source, pipeline, start_ns)
        finally:
            if self._loop.end_ns is not None:
                self._frozen_record_ns = self._loop.end_ns
            try:
                if started:
                    control.stop(sw=settings.software, hw=settings.hardware)
            finally:
                restore = self._restore
                if restore is not None:
                    control.set_config(
                        alert_mode=restore.alert_mode,
                        trunc_len=restore.trunc_len,
                        queue_len=restore.queue_len,
                    )

    def _switch_config(self, control: KernelControl) -> None:
        """Save the kernel's configuration, and switch it if this run needs another."""
        self.saved_config = control.get_config()
        wanted = self._wanted_config()
        if self.saved_config is not None and self.saved_config != wanted:
            self._restore = self.saved_config  # before the request: it may half-succeed
            control.set_config(
                alert_mode=wanted.alert_mode,
                trunc_len=wanted.trunc_len,
                queue_len=wanted.queue_len,
            )
        elif self.saved_config is None and self.settings.packet_mode:
            raise KernelRequestError(
                "packet mode needs a 5.4 or newer kernel; this one has no CONFIG_GET",
                errno.EOPNOTSUPP,
            )

    def _join_events(self, events_socket: NetlinkTransport) -> int | None:
        """Join the alerts' multicast group; the socket's Drops counter so far (the baseline)."""
        settings = self.settings
        # Join before START so that no alert sent right after START is missed.
        events_socket.join_events()
        from netdm.netlink.batch_receive import packet_alert_slot_size  # ctypes: live runs only

        largest_alert = packet_alert_slot_size(settings.trunc_len)
        if settings.packet_mode and not settings.passive and largest_alert is not None:
            # A storm's alerts, many per system call (netdm set the length that bounds them).
            events_socket.enable_batches(largest_alert)
        return events_socket.read_kernel_drops()

    def _wanted_config(self) -> KernelConfig:
        """The configuration this run needs; summary mode keeps trunc/queue as found."""
        settings = self.settings
        if settings.packet_mode:
            return KernelConfig(AlertMode.PACKET, settings.trunc_len, settings.queue_len)
        assert self.saved_config is not None
        return KernelConfig(
            AlertMode.SUMMARY, self.saved_config.trunc_len, self.saved_config.queue_len
        )


class EventsSource:
    """The events socket as the run loop's source: batches of alerts, and the losses beside.

    Losses are read from three places: the socket's ENOBUFS and oversized
    counts, its ``Drops`` counter in /proc/net/netlink, and (packet mode) the
    kernel's tail-drop counters, polled with STATS_GET through ``stats_control``.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        events_socket: NetlinkTransport,
        clock: RunClock,
        *,
        recorder: Recorder | None,
        started: bool,
        stats_control: KernelControl | None,
        first_stats_poll: float,
        socket_drops_baseline: int | None,
    ) -> None:
        self._pipeline = pipeline
        self._events_socket = events_socket
        self._clock_ns = clock.wall_ns
        self._monotonic = clock.monotonic
        self._recorder = recorder
        self._started = started  # netdm sent START: the kernel's last batches are netdm's
        self._control = stats_control
        self._next_stats_poll = first_stats_poll
        # The events socket's Drops counter when last read; None: /proc/net/netlink unreadable.
        self._socket_drops_seen = socket_drops_baseline
        self._enobufs_seen = 0
        self._oversized_seen = 0
        self._next_socket_drops_read = 0.0  # monotonic; only limits the reads after ENOBUFS

    def receive(self, now_ns: int, wait: float, deadline_ns: int | None) -> tuple[int, float]:
        pipeline = self._pipeline
        datagrams = self._events_socket.receive_many(wait, RECEIVE_BATCH)
        now_ns = within_run(self._clock_ns(), deadline_ns)
        now = seconds(now_ns)
        window_start, window_end = pipeline.open_window
        if now >= window_end:  # the window closes below: its socket losses go in it first
            self._read_socket_drops(window_start)
        recorder = self._recorder
        for datagram in datagrams:
            if recorder:
                recorder.write(datagram, now_ns, outgoing=False)
            pipeline.feed(datagram, now)
        self._count_oversized(now)
        self._count_enobufs(now)
        self._poll_kernel_stats(now)
        # The queue is drained: let the next datagrams gather instead of waking for each.
        return now_ns, STORM_PAUSE if 0 < len(datagrams) < RECEIVE_BATCH else 0.0

    def drain(self, last_instant_ns: int, grace: Callable[[float], Iterator[float]]) -> None:
        """Take the batches the kernel still holds into the last interval (if netdm started it)."""
        if not self._started:
            return
        last_instant = seconds(last_instant_ns)
        for wait in grace(KERNEL_BATCH_GRACE):
            for datagram in self._events_socket.receive_many(wait, RECEIVE_BATCH):
                if self._recorder:
                    self._recorder.write(datagram, last_instant_ns, outgoing=False)
                self._pipeline.feed(datagram, last_instant)

    def settle(self, last_instant_ns: int) -> None:
        last_instant = seconds(last_instant_ns)
        self._next_stats_poll = 0.0
        self._poll_kernel_stats(last_instant)
        self._count_oversized(last_instant)
        self._count_enobufs(last_instant)
        self._read_socket_drops(last_instant)

    def _poll_kernel_stats(self, now: float) -> None:
        """Packet mode: the kernel's tail-drop counters, about once a second."""
        if self._control is None or self._monotonic() < self._next_stats_poll:
            return
        self._next_stats_poll = self._monotonic() + STATS_POLL_SECONDS
        counters = self._control.get_stats()
        if counters is not None:
            self._pipeline.kernel_stats(counters.sw_dropped, counters.hw_dropped, now)

    def _count_oversized(self, now: float) -> None:
        """Messages longer than the batch slots: cut by the kernel, so undecodable."""
        oversized = self._events_socket.losses.oversized
        if oversized != self._oversized_seen:
            self._pipeline.add_losses(now, decode_errors=oversized - self._oversized_seen)
            self._oversized_seen = oversized

    def _count_enobufs(self, now: float) -> None:
        """New ENOBUFS since the last look; then how many notifications they cost."""
        enobufs = self._events_socket.losses.enobufs
        if enobufs == self._enobufs_seen:
            return
        self._pipeline.add_losses(now, enobufs=enobufs - self._enobufs_seen)
        self._enobufs_seen = enobufs
        if self._monotonic() >= self._next_socket_drops_read:
            self._read_socket_drops(now)

    def _read_socket_drops(self, now: float) -> None:
        """Count the notifications the kernel discarded for the events socket since last read.

        ENOBUFS only says that the receive queue overflowed; while it stays
        congested the kernel discards every notification for the socket and
        counts each in the socket's ``Drops`` (``sk_drops``).  The growth since
        the last read goes to the window ``now`` falls in.
        """
        if self._socket_drops_seen is None:  # /proc/net/netlink unreadable: ENOBUFS only
            return
        dropped = self._events_socket.read_kernel_drops()
        if dropped is None:
            return
        self._next_socket_drops_read = self._monotonic() + SOCKET_DROPS_MIN_GAP
        if dropped > self._socket_drops_seen:
            self._pipeline.add_losses(now, socket_dropped=dropped - self._socket_drops_seen)
        self._socket_drops_seen = dropped
