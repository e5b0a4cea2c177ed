"""Drop alerts → one summary per interval (five seconds by default).

Strategy: time is cut into windows ``[start + k*interval, start + (k+1)*interval)``
aligned to the ``start`` given to the aggregator.  The clock is never read
here: every call says what time it is (``now``, epoch seconds, so that the
renderer can print dates), which makes replaying a capture give the same
windows as the live run did.  An event belongs to the window that contains
its ``now``; a ``now`` at or past the end of the open window first closes it
(and the call returns it).  Windows are never reopened: a ``now`` earlier
than the open window (a clock stepped back) counts into the open window.

A window holds one counter per distinct :class:`DropLocation`.  Summary
alerts are keyed by address (``pc``) and counts of the same pc from several
CPUs or messages are summed; packet alerts are keyed by the function name in
the kernel's symbol string, with the ``+0xoff/0xsize`` stripped, and
optionally by drop reason.  Turning a pc into a name is the renderer's job
(with :class:`netdm.engine.symbols.SymbolTable`).  Hardware drops (devlink traps)
are kept apart from software drop points.

Empty windows are real results (nothing was dropped), so :meth:`tick`
returns them.  When ``now`` jumps over several windows at once (a quiet hour
in a capture), the whole windows skipped are returned as *one* quiet summary
spanning them, instead of 720 empty ones; its ``end - start`` is then a
multiple of the interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from netdm.engine.symbols import parse_kernel_symbol
from netdm.proto.constants import Origin
from netdm.proto.decode import DropSite
from netdm.proto.events import PacketAlert, SummaryAlert

DEFAULT_INTERVAL = 5.0
# Epoch seconds near 1.7e9 are floats with a resolution of about 0.2 µs: far shorter windows
# would not have distinct boundaries.
# Longer quiet gaps (in windows) are folded into one summary instead of one per window.
MAX_QUIET_WINDOWS = 10_000
MIN_INTERVAL = 0.001
# Drop sites whose location is remembered; a storm has a few dozen, and past this the
# memory starts over (a flood of ever-new symbols must not grow it without bound).
MAX_REMEMBERED_SITES = 4096

DropOrigin = Literal["sw", "hw"]


@dataclass(frozen=True, slots=True)
class DropLocation:
    """Where drops happened: what a window counts by.

    * software drop point from a summary alert: ``pc`` (0 is the kernel's
      "a device's rx_dropped counter grew" heuristic, not an address);
    * software drop from a packet alert: ``function`` and ``module`` from the
      kernel's symbol string (``pc`` only when the alert had no symbol);
    * hardware drop: ``origin="hw"`` with the devlink ``trap_name`` (and
      ``trap_group`` from packet alerts);
    * ``reason`` is set only when counting by reason (packet mode, 5.18+).
    """

    origin: DropOrigin = "sw"
    pc: int | None = None
    function: str | None = None
    module: str | None = None
    trap_name: str | None = None
    trap_group: str | None = None
    reason: str | None = None

    @property
    def is_rx_dropped_heuristic(self) -> bool:
        """True for summary entries with pc 0: a device's rx_dropped counter grew."""
        return self.origin == "sw" and self.pc == 0 and self.function is None

    def sort_key(self) -> tuple[str, str, int, str, str, str, str]:
        """A total order over locations, for output that does not depend on arrival order."""
        return (
            self.origin,
            self.function or "",
            -1 if self.pc is None else self.pc,
            self.module or "",
            self.trap_name or "",
            self.trap_group or "",
            self.reason or "",
        )


@dataclass(frozen=True, slots=True)
class DropCount:
    """How many drops one location had in one window."""

    location: DropLocation
    count: int


@dataclass(frozen=True, slots=True)
class LossCounts:
    """What the client knows it missed in a window.

    ``enobufs``: times the socket receive buffer overflowed (each lost one or
    more notifications).  ``socket_dropped``: how many notifications the
    kernel discarded because that buffer was full, exactly (the socket's
    ``Drops`` counter in /proc/net/netlink; 0 where it cannot be read, and in
    replays, which do not record it).  ``decode_errors``: messages
    that could not be decoded.  ``sw_tail_drops`` / ``hw_tail_drops``:
    packets the kernel's per-CPU queues dropped in packet mode (deltas of
    ``NET_DM_ATTR_STATS`` / ``HW_STATS``).  ``tracefs_lost``: drop events
    the tracepoint source's ring buffers had no room for.  The units differ,
    so there is no total.
    """

    enobufs: int = 0
    decode_errors: int = 0
    sw_tail_drops: int = 0
    hw_tail_drops: int = 0
    tracefs_lost: int = 0
    socket_dropped: int = 0

    @property
    def any(self) -> bool:
        """Whether anything at all was lost."""
        return bool(
            self.enobufs
            or self.socket_dropped
            or self.decode_errors
            or self.sw_tail_drops
            or self.hw_tail_drops
            or self.tracefs_lost
        )


@dataclass(frozen=True, slots=True)
class IntervalSummary:
    """The drops of one window ``[start, end)`` (epoch seconds).

    ``entries`` are software drop locations, ``hw_entries`` hardware traps;
    both sorted by count, largest first, then by location.  ``partial`` is
    true for the last window of a run, cut short at exit.  A quiet stretch
    that ``now`` jumped over is one summary longer than the interval.
    """

    start: float
    end: float
    entries: tuple[DropCount, ...] = ()
    hw_entries: tuple[DropCount, ...] = ()
    losses: LossCounts = LossCounts()
    partial: bool = False

    @property
    def sw_total(self) -> int:
        """Software drops (a pc-0 entry adds rx_dropped detections, as the kernel counts)."""
        return sum(entry.count for entry in self.entries)

    @property
    def hw_total(self) -> int:
        """Drops by hardware traps."""
        return sum(entry.count for entry in self.hw_entries)

    @property
    def total(self) -> int:
        """All drops of the window, software and hardware."""
        return self.sw_total + self.hw_total

    @property
    def quiet(self) -> bool:
        """Nothing dropped and nothing lost."""
        return not self.entries and not self.hw_entries and not self.losses.any


def packet_location(alert: PacketAlert | DropSite, *, by_reason: bool = False) -> DropLocation:
    """The default key of a packet alert (or of its drop site: the same fields).

    Hardware alerts: the trap (name and group).  Software alerts: the function
    of the kernel's symbol string (``udp_queue_rcv_one_skb+0x3a/0x80`` counts
    as ``udp_queue_rcv_one_skb``), or the pc when there is no symbol; with
    ``by_reason`` also the drop reason.
    """
    reason = alert.reason if by_reason else None
    if alert.origin == Origin.HW:
        return DropLocation(
            origin="hw",
            trap_name=alert.hw_trap_name,
            trap_group=alert.hw_trap_group_name,
            reason=reason,
        )
    if alert.symbol:
        symbol = parse_kernel_symbol(alert.symbol)
        return DropLocation(function=symbol.name, module=symbol.module, reason=reason)
    return DropLocation(pc=alert.pc, reason=reason)


def _sorted_counts(counts: dict[DropLocation, int]) -> tuple[DropCount, ...]:
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0].sort_key()))
    return tuple(DropCount(location, count) for location, count in ordered)


def _check_time(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number of seconds, not {value!r}")


class IntervalAggregator:
    """Counts drops per location in consecutive windows of ``interval`` seconds.

    ``start`` is where the first window begins (the time monitoring started,
    or the first event of a capture).  ``key`` maps a packet alert to its
    location (default :func:`packet_location`, with ``by_reason``, worked out
    once per distinct :class:`~netdm.proto.decode.DropSite` when the window
    closes; :meth:`add_drop_site` needs the default).  Every
    ``add_*`` and :meth:`tick` returns the windows that ``now`` closed, oldest
    first; :meth:`flush` ends the run.
    """

    def __init__(
        self,
        interval: float,
        start: float,
        key: Callable[[PacketAlert], DropLocation] | None = None,
        *,
        by_reason: bool = False,
    ) -> None:
        _check_time("start", start)
        _check_time("interval", interval)
        if interval < MIN_INTERVAL:
            raise ValueError(f"interval must be at least {MIN_INTERVAL} s, not {interval!r}")
        self.interval = interval
        self.start = start
        self._key = key  # None: packet_location(), worked out once per distinct drop site
        self._by_reason = by_reason
        # Whether add_drop_site() may be used: a custom key may look at the packet.
        self.counts_drop_sites = key is None
        self._window = 0  # index of the open window
        self._open_from, self._open_until = self.open_window  # for tick's quick test
        self._sw: dict[DropLocation, int] = {}
        self._hw: dict[DropLocation, int] = {}
        # Packet alerts counted by drop site; turned into locations when the window closes.
        self._sites: dict[DropSite, int] = {}
        self._site_locations: dict[DropSite, DropLocation] = {}
        self._losses = LossCounts()
        self._finished = False

    # --- window arithmetic (multiplication, not accumulation: no drift)

    def _window_start(self, index: int) -> float:
        return self.start + index * self.interval

    def _window_at(self, now: float) -> int:
        index = math.floor((now - self.start) / self.interval)
        while now < self._window_start(index):  # float rounding at a boundary
            index -= 1
        while now >= self._window_start(index + 1):
            index += 1
        return index

    def _count_sites(self) -> None:
        """Move the open window's drop-site counts to its location counts."""
        locations = self._site_locations
        if len(locations) > MAX_REMEMBERED_SITES:
            locations.clear()
        for site, count in self._sites.items():
            location = locations.get(site)
            if location is None:
                location = locations[site] = packet_location(site, by_reason=self._by_reason)
            self._count(self._hw if location.origin == "hw" else self._sw, location, count)
        self._sites = {}

    def _close_open_window(self, end: float, *, partial: bool = False) -> IntervalSummary:
        if self._sites:
            self._count_sites()
        summary = IntervalSummary(
            start=self._window_start(self._window),
            end=end,
            entries=_sorted_counts(self._sw),
            hw_entries=_sorted_counts(self._hw),
            losses=self._losses,
            partial=partial,
        )
        self._sw, self._hw, self._losses = {}, {}, LossCounts()
        return summary

    # --- public API

    @property
    def open_window(self) -> tuple[float, float]:
        """``(start, end)`` of the window events are counted into now."""
        return self._window_start(self._window), self._window_start(self._window + 1)

    def tick(self, now: float) -> list[IntervalSummary]:
        """The windows that ended by ``now`` (empty ones included), oldest first.

        Every skipped window comes back on its own, so live monitoring (which
        ticks often) and a replay (which ticks at each record) produce the
        same sequence.  Only a gap longer than ``MAX_QUIET_WINDOWS`` windows
        (a capture paused for days) is folded into one quiet summary.
        """
        if self._open_from <= now < self._open_until:  # the usual case, and the hot path
            return []
        if self._finished:
            raise RuntimeError("the aggregator was flushed; make a new one")
        _check_time("now", now)
        target = self._window_at(now)
        if target <= self._window:
            return []
        closed = [self._close_open_window(self._window_start(self._window + 1))]
        quiet_end = min(target, self._window + 1 + MAX_QUIET_WINDOWS)
        for window in range(self._window + 1, quiet_end):
            start, end = self._window_start(window), self._window_start(window + 1)
            closed.append(IntervalSummary(start=start, end=end))
        if quiet_end < target:
            closed.append(
                IntervalSummary(start=self._window_start(quiet_end), end=self._window_start(target))
            )
        self._window = target
        self._open_from, self._open_until = self.open_window
        return closed

    def add_summary(self, alert: SummaryAlert, now: float) -> list[IntervalSummary]:
        """Count a summary alert's drop points and hardware entries at ``now``."""
        closed = self.tick(now)
        for point in alert.drop_points:
            self._count(self._sw, DropLocation(pc=point.pc), point.count)
        for entry in alert.hw_entries:
            self._count(self._hw, DropLocation(origin="hw", trap_name=entry.trap_name), entry.count)
        return closed

    def add_packet(self, alert: PacketAlert, now: float) -> list[IntervalSummary]:
        """Count one dropped packet at ``now``, under its key."""
        # tick()'s own first test, inlined: this runs once per packet in per-packet output.
        closed = [] if self._open_from <= now < self._open_until else self.tick(now)
        if self._key is None:  # counted as add_drop_site() counts
            # DropSite.of(alert), without the classmethod and NamedTuple.__new__ calls.
            site = tuple.__new__(
                DropSite,
                (
                    alert.origin,
                    alert.pc,
                    alert.symbol,
                    alert.reason,
                    alert.hw_trap_group_name,
                    alert.hw_trap_name,
                ),
            )
            sites = self._sites
            sites[site] = sites.get(site, 0) + 1
        else:
            location = self._key(alert)
            self._count(self._hw if location.origin == "hw" else self._sw, location, 1)
        return closed

    def add_drop_site(self, site: DropSite, now: float) -> Sequence[IntervalSummary]:
        """:meth:`add_packet` for an alert's drop site alone (only with the default key)."""
        # tick()'s own first test, inlined: this runs once per packet in a drop storm.
        closed = () if self._open_from <= now < self._open_until else self.tick(now)
        sites = self._sites
        sites[site] = sites.get(site, 0) + 1
        return closed

    def add_losses(
        self,
        *,
        enobufs: int = 0,
        decode_errors: int = 0,
        sw_tail_drops: int = 0,
        hw_tail_drops: int = 0,
        tracefs_lost: int = 0,
        socket_dropped: int = 0,
        now: float,
    ) -> list[IntervalSummary]:
        """Record what was lost at ``now``: see :class:`LossCounts` for the meanings."""
        counts = (
            enobufs,
            decode_errors,
            sw_tail_drops,
            hw_tail_drops,
            tracefs_lost,
            socket_dropped,
        )
        if min(counts) < 0:
            raise ValueError(f"loss counts cannot be negative: {counts}")
        closed = self.tick(now)
        losses = self._losses
        self._losses = LossCounts(
            enobufs=losses.enobufs + enobufs,
            decode_errors=losses.decode_errors + decode_errors,
            sw_tail_drops=losses.sw_tail_drops + sw_tail_drops,
            hw_tail_drops=losses.hw_tail_drops + hw_tail_drops,
            tracefs_lost=losses.tracefs_lost + tracefs_lost,
            socket_dropped=losses.socket_dropped + socket_dropped,
        )
        return closed

    def flush(self, now: float) -> IntervalSummary | None:
        """End the run: the open window, closed at ``now``.

        If ``now`` lies inside the open window the summary is ``partial`` and
        ends at ``now``; if it lies past the window's end (no :meth:`tick`
        since), the window is complete and ends where it should.  ``None``
        when the open window has neither drops nor length.  The aggregator
        accepts nothing afterwards.
        """
        if self._finished:
            raise RuntimeError("the aggregator was already flushed")
        _check_time("now", now)
        self._finished = True
        self._open_from = self._open_until = math.nan  # tick() must take the slow path: it raises
        if self._sites:
            self._count_sites()
        window_start, window_end = self.open_window
        end = max(window_start, min(now, window_end))
        if end == window_start and not self._sw and not self._hw and not self._losses.any:
            return None
        return self._close_open_window(end, partial=end < window_end)

    @staticmethod
    def _count(counts: dict[DropLocation, int], location: DropLocation, count: int) -> None:
        if count > 0:
            counts[location] = counts.get(location, 0) + count
