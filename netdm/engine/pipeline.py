"""The one path every datagram takes: decode → aggregate → hand closed intervals on.

Strategy: :class:`Pipeline` is told the time by its caller (a live loop or a
replay) and learns the bytes' meaning from a *decoder* object: NET_DM
datagrams of one family id (:class:`NetDmDecoder`), or a source of its own
such as the tracepoint's.  Nothing here reads a clock or a socket.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from netdm.engine.aggregate import IntervalAggregator, IntervalSummary
from netdm.proto import ProtocolError
from netdm.proto.alert_cache import PacketAlertDecoder
from netdm.proto.decode import DropSite, DropSiteScanner
from netdm.proto.events import Event, PacketAlert, StatsReply, SummaryAlert

# Alerts arriving at or after the end of the run still belong to its last interval.
END_EPSILON_NS = 1_000_000
NS_PER_SECOND = 1_000_000_000


def seconds(timestamp_ns: int) -> float:
    """The one conversion from record/clock nanoseconds to the pipeline's float seconds."""
    return timestamp_ns / NS_PER_SECOND


def within_run(now_ns: int, end_ns: int | None) -> int:
    """``now_ns``, but inside the run: a time at ``end_ns`` would open a new interval."""
    return now_ns if end_ns is None or now_ns < end_ns else end_ns - END_EPSILON_NS


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


class DatagramDecoder(Protocol):
    """What a pipeline needs to read a source's datagrams; both raise ProtocolError."""

    def decode(self, datagram: bytes) -> Sequence[Event]:
        """Every event in ``datagram``."""
        ...

    def scan(self, datagram: bytes) -> Sequence[DropSite] | None:
        """The drop sites of a datagram of packet alerts only; None for any other."""
        ...


class NetDmDecoder:
    """NET_DM datagrams of one family id, through the proto layer's remembering decoders.

    The bound methods are attributes, not wrappers: the pipeline calls them
    once a datagram, a million times in a storm.
    """

    def __init__(self, family_id: int) -> None:
        self.family_id = family_id
        # decode_datagram, remembering the shapes of packet alerts (a storm's look-alikes)
        self.decode: Callable[[bytes], Sequence[Event]] = PacketAlertDecoder(family_id).decode
        # scan_drop_sites, remembering them the same way (proven equal to the full decoder)
        self.scan: Callable[[bytes], Sequence[DropSite] | None] = DropSiteScanner(
            family_id
        ).scan


class Pipeline:
    """Decode datagrams, aggregate their alerts into intervals, hand intervals on.

    When nothing looks at the packets (no ``on_packet``, no ``packet_filter``,
    the aggregator's default key), packet alerts take the lazy path: only
    their drop sites are read from the bytes (``decoder.scan``), several
    times faster in a drop storm.  ``need_packets=True`` forces full decoding
    (``decoder.decode``).
    """

    def __init__(
        self,
        decoder: DatagramDecoder,
        aggregator: IntervalAggregator,
        on_interval: Callable[[IntervalSummary], None],
        *,
        on_packet: Callable[[PacketAlert], None] | None = None,
        packet_filter: Callable[[PacketAlert], bool] | None = None,
        need_packets: bool | None = None,
    ) -> None:
        self.decoder = decoder
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
        self._scan_drop_sites = decoder.scan if self.lazy else None
        self._decode = decoder.decode

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


# Builds the pipeline of a run: its source's decoder, and when its windows start (seconds).
PipelineFactory = Callable[[DatagramDecoder, float], Pipeline]
