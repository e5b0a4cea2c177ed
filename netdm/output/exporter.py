"""Interval summaries → Prometheus metrics, served over HTTP (``netdm exporter``).

Strategy: :class:`DropMetrics` is one more consumer of the interval stream,
beside the text and JSON renderers: the pipeline hands it every closed
:class:`~netdm.engine.aggregate.IntervalSummary` and it adds the counts to
cumulative counters.  It knows nothing about where the summaries come from
(NET_DM in summary or packet mode today, another source later), only what a
summary holds.  It is a prometheus_client *custom collector*: it keeps plain
counts under a lock and builds the metric families at each scrape, so that
the scrape thread never sees half an interval, and no ``_created`` series
are emitted.  :class:`~netdm.output.metrics_http.MetricsServer` serves a
registry on ``/metrics`` from one background thread (a selector loop with
time limits and a bounded number of connections) and stops when told.

Label cardinality is bounded.  Counters are cumulative, so a label value,
once exported, has to stay (a series that vanished would read as a counter
reset).  Hence the rule is "first come, first kept": the first
``max_locations`` distinct locations *of each origin* get a label of their
own and every later one is counted under ``location="other"``; likewise the
first ``max_reasons`` distinct drop reasons, later ones under
``reason="other"``.  Drops are never lost, only folded.  At most
``2 × (max_locations + 1) × (max_reasons + 1)`` drop series can exist (and
in practice a location has one to three reasons).

Metric names, labels and an example scrape: docs/exporter.md.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from netdm import __version__
from netdm.engine.aggregate import DropCount, IntervalSummary
from netdm.engine.symbols import SymbolTable
from netdm.output.metrics_http import MetricsServer
from netdm.output.render import UNKNOWN_LOCATION
from netdm.textsafe import replace_invalid_text

__all__ = [
    "DEFAULT_MAX_LOCATIONS",
    "DEFAULT_MAX_REASONS",
    "OTHER",
    "DropMetrics",
    "MetricsServer",
    "new_registry",
    "parse_listen_address",
]

# Enough for every drop point a busy host shows in practice (a storm has a few dozen).
DEFAULT_MAX_LOCATIONS = 50
# Kernels name about 70 (6.1) to 130 (6.12+) reasons; a host sees a dozen or two of them.
DEFAULT_MAX_REASONS = 64
# The label value that later locations and reasons are folded into.
OTHER = "other"
# Hardware traps always have a name; this is for an alert that came without one.
UNNAMED_TRAP = "(unnamed)"
ORIGINS = ("sw", "hw")

DropKey = tuple[str, str, str]  # (origin, location, reason)


@dataclass(frozen=True)
class _Counts:
    """What one scrape reads: a copy taken under the lock."""

    drops: dict[DropKey, int]
    rx_dropped_detections: int
    enobufs: int
    socket_dropped: int
    decode_errors: int
    tail_drops: dict[str, int]
    tracefs_lost: int
    intervals: int
    up: bool
    started_at: float | None
    last_interval_end: float | None
    label_values: dict[str, int]


class DropMetrics:
    """The exporter's sink and Prometheus collector.

    Feed it with :meth:`monitoring_started`, :meth:`interval` for every
    closed window, and :meth:`monitoring_stopped`; register it in a
    :class:`~prometheus_client.CollectorRegistry` to have it scraped.
    ``symbols`` names summary-mode addresses as the renderers do;
    ``source``, ``alert_mode`` and ``origin`` are only reported
    (``netdm_monitor_info``).  Safe to scrape from other threads.
    """

    def __init__(
        self,
        symbols: SymbolTable,
        *,
        max_locations: int = DEFAULT_MAX_LOCATIONS,
        max_reasons: int = DEFAULT_MAX_REASONS,
        source: str = "netdm",
        alert_mode: str = "summary",
        origin: str = "sw",
        version: str = __version__,
    ) -> None:
        if max_locations < 1 or max_reasons < 1:
            raise ValueError("max_locations and max_reasons must be at least 1")
        self._symbols = symbols
        self.max_locations = max_locations
        self.max_reasons = max_reasons
        self._info = {"source": source, "alert_mode": alert_mode, "origin": origin}
        self._version = version
        self._lock = threading.Lock()
        # Label values that have a series of their own (the cardinality rule above).
        self._locations: dict[str, set[str]] = {origin: set() for origin in ORIGINS}
        self._reasons: set[str] = set()
        self._drops: dict[DropKey, int] = {}
        self._rx_dropped_detections = 0
        self._enobufs = 0
        self._socket_dropped = 0
        self._decode_errors = 0
        self._tail_drops = dict.fromkeys(ORIGINS, 0)
        self._tracefs_lost = 0
        self._intervals = 0
        self._up = False
        self._started_at: float | None = None
        self._last_interval_end: float | None = None

    # ------------------------------------------------------------------ the sink

    def monitoring_started(self, at: float) -> None:
        """Monitoring runs from ``at`` (epoch seconds: where the first window starts)."""
        with self._lock:
            self._up = True
            self._started_at = at

    def monitoring_stopped(self) -> None:
        """Monitoring ended (the last, partial interval has been counted)."""
        with self._lock:
            self._up = False

    def interval(self, summary: IntervalSummary) -> None:
        """Add one closed window's drops and losses to the counters."""
        # Names are worked out before taking the lock: a scrape never waits for symbol lookups.
        software = [
            (self._software_name(entry), entry)
            for entry in summary.entries
            if not entry.location.is_rx_dropped_heuristic
        ]
        hardware = [(self._hardware_name(entry), entry) for entry in summary.hw_entries]
        rx_dropped = sum(
            entry.count for entry in summary.entries if entry.location.is_rx_dropped_heuristic
        )
        losses = summary.losses
        with self._lock:
            for origin, named in (("sw", software), ("hw", hardware)):
                for name, entry in named:
                    key = (origin, self._location_label(origin, name), self._reason_label(entry))
                    self._drops[key] = self._drops.get(key, 0) + entry.count
            self._rx_dropped_detections += rx_dropped
            self._enobufs += losses.enobufs
            self._socket_dropped += losses.socket_dropped
            self._decode_errors += losses.decode_errors
            self._tail_drops["sw"] += losses.sw_tail_drops
            self._tail_drops["hw"] += losses.hw_tail_drops
            self._tracefs_lost += losses.tracefs_lost
            self._intervals += 1
            self._last_interval_end = summary.end

    def _software_name(self, entry: DropCount) -> str:
        """The function's name, as the text renderer prints it without -v."""
        location = entry.location
        if location.function is not None:
            name = location.function
        elif location.pc is not None:
            name = self._symbols.display_name(location.pc)  # raw 0xffff… when unresolved
        else:
            name = UNKNOWN_LOCATION
        return replace_invalid_text(name)  # label values must encode as UTF-8

    @staticmethod
    def _hardware_name(entry: DropCount) -> str:
        return replace_invalid_text(entry.location.trap_name or UNNAMED_TRAP)

    def _location_label(self, origin: str, name: str) -> str:
        kept = self._locations[origin]
        if name in kept:
            return name
        if len(kept) < self.max_locations:
            kept.add(name)
            return name
        return OTHER

    def _reason_label(self, entry: DropCount) -> str:
        reason = entry.location.reason
        if reason is None:  # summary mode, or a kernel before 5.18
            return ""
        reason = replace_invalid_text(reason)
        if reason in self._reasons:
            return reason
        if len(self._reasons) < self.max_reasons:
            self._reasons.add(reason)
            return reason
        return OTHER

    # ------------------------------------------------------------------ the collector

    def _snapshot(self) -> _Counts:
        with self._lock:
            return _Counts(
                drops=dict(self._drops),
                rx_dropped_detections=self._rx_dropped_detections,
                enobufs=self._enobufs,
                socket_dropped=self._socket_dropped,
                decode_errors=self._decode_errors,
                tail_drops=dict(self._tail_drops),
                tracefs_lost=self._tracefs_lost,
                intervals=self._intervals,
                up=self._up,
                started_at=self._started_at,
                last_interval_end=self._last_interval_end,
                label_values={
                    "location": sum(len(kept) for kept in self._locations.values()),
                    "reason": len(self._reasons),
                },
            )

    def collect(self) -> Iterable[Metric]:
        """The metric families, built from one consistent snapshot (called at each scrape)."""
        counts = self._snapshot()
        return list(self._families(counts))

    def _families(self, counts: _Counts) -> Iterator[Metric]:
        drops = CounterMetricFamily(
            "netdm_drops",
            "Packets the kernel dropped, by origin (sw: a kernel function freed them; "
            "hw: a device's devlink trap), location (function, or trap name for hw) "
            "and drop reason (packet mode, 5.18+; empty otherwise). Locations and reasons "
            'past the label limits are counted under "other".',
            labels=("origin", "location", "reason"),
        )
        for key in sorted(counts.drops):
            drops.add_metric(list(key), counts.drops[key])
        yield drops
        yield CounterMetricFamily(
            "netdm_device_rx_dropped_detections",
            "Times the kernel saw a device's rx_dropped counter grow (summary mode; "
            "driver drops: a count of detections, not of packets).",
            value=counts.rx_dropped_detections,
        )
        yield CounterMetricFamily(
            "netdm_socket_overflows",
            "Times netdm's netlink socket receive buffer overflowed (ENOBUFS); each lost "
            "one or more drop notifications, so drop counts are low.",
            value=counts.enobufs,
        )
        yield CounterMetricFamily(
            "netdm_socket_dropped_notifications",
            "Drop notifications lost because netdm's netlink socket receive buffer was full "
            "(the kernel's exact count, 0 where /proc/net/netlink is unreadable); the drops "
            "they carried are missing from netdm_drops_total.",
            value=counts.socket_dropped,
        )
        yield CounterMetricFamily(
            "netdm_decode_errors",
            "NET_DM messages netdm could not decode (their drops are not counted).",
            value=counts.decode_errors,
        )
        tail = CounterMetricFamily(
            "netdm_kernel_queue_drops",
            "Packet mode: alerts the kernel discarded because a per-CPU queue was full "
            "(NET_DM tail drops); these drops are missing from netdm_drops_total.",
            labels=("origin",),
        )
        for origin in ORIGINS:
            tail.add_metric([origin], counts.tail_drops[origin])
        yield tail
        yield CounterMetricFamily(
            "netdm_tracefs_lost",
            "Tracepoint source: drop events its tracefs ring buffers had no room for "
            "(always 0 with the NET_DM source).",
            value=counts.tracefs_lost,
        )
        yield CounterMetricFamily(
            "netdm_intervals",
            "Aggregation intervals counted so far.",
            value=counts.intervals,
        )
        yield GaugeMetricFamily(
            "netdm_monitor_up",
            "1 while netdm is monitoring drops, 0 before monitoring started and after it stopped.",
            value=1 if counts.up else 0,
        )
        if counts.started_at is not None:
            yield GaugeMetricFamily(
                "netdm_monitor_start_time_seconds",
                "When monitoring started, seconds since the epoch.",
                value=counts.started_at,
            )
        if counts.last_interval_end is not None:
            yield GaugeMetricFamily(
                "netdm_last_interval_end_time_seconds",
                "End of the last interval counted, seconds since the epoch: the counters "
                "are as fresh as this.",
                value=counts.last_interval_end,
            )
        limits = GaugeMetricFamily(
            "netdm_label_values",
            "Distinct location (per origin, summed) and reason label values with a series "
            "of their own; compare with netdm_label_values_limit.",
            labels=("label",),
        )
        for label, used in counts.label_values.items():
            limits.add_metric([label], used)
        yield limits
        limit = GaugeMetricFamily(
            "netdm_label_values_limit",
            "The limits (--max-locations per origin, --max-reasons) past which label values "
            'are counted as "other".',
            labels=("label",),
        )
        limit.add_metric(["location"], self.max_locations)
        limit.add_metric(["reason"], self.max_reasons)
        yield limit
        build = GaugeMetricFamily("netdm_build_info", "netdm's version.", labels=("version",))
        build.add_metric([self._version], 1)
        yield build
        info = GaugeMetricFamily(
            "netdm_monitor_info",
            "What is monitored: the source of drop events, the alert mode and the origins.",
            labels=tuple(self._info),
        )
        info.add_metric(list(self._info.values()), 1)
        yield info


def new_registry(metrics: DropMetrics) -> CollectorRegistry:
    """A registry with ``metrics`` and the exporter process's own (``process_*``, ``python_info``).

    Private, not prometheus_client's global one, so nothing else ends up on /metrics.
    """
    registry = CollectorRegistry()
    registry.register(metrics)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


# ---------------------------------------------------------------------- the HTTP side


def parse_listen_address(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPV6]:PORT`` or ``:PORT`` (every IPv4 address) → (host, port).

    Raises ValueError with a sentence for anything else.
    """
    host, colon, port_text = text.rpartition(":")
    if not colon or not port_text.isdigit():
        raise ValueError(f"{text!r} is not ADDRESS:PORT (e.g. 127.0.0.1:9977, [::1]:9977, :9977)")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"port {port} is out of range (0-65535)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"put an IPv6 address in brackets: [{host}]:{port}")
    return host or "0.0.0.0", port
