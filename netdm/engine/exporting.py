"""The exporter's run: which source and alert mode, then the watch life cycle.

Strategy: the choice is made before anything is served or configured.
``--mode auto`` asks the family's features once: packet mode pays an alert
per packet (and kernel queues that overflow under a storm), worth it only
for the drop reasons of 5.18+.  When that question finds no NET_DM,
``--source auto`` falls back to the tracepoint as `watch` does
(:mod:`netdm.engine.sources`).  The metrics are the interval sink; this
module knows them only by the three calls it makes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from netdm.errors import FamilyNotFoundError

if TYPE_CHECKING:
    from netdm.engine.aggregate import IntervalSummary
    from netdm.engine.session import DatagramDecoder, Pipeline, RunTotals


@dataclass(frozen=True, slots=True)
class ExporterSource:
    """Where the exporter's drops come from, and in which alert mode."""

    tracepoint: bool
    packet_mode: bool = False
    net_dm_missing: str | None = None  # why --source auto chose the tracepoint

    @property
    def source(self) -> Literal["netdm", "tracepoint"]:
        return "tracepoint" if self.tracepoint else "netdm"

    @property
    def alert_mode(self) -> Literal["none", "packet", "summary"]:
        if self.tracepoint:
            return "none"
        return "packet" if self.packet_mode else "summary"

    @property
    def by_reason(self) -> bool:
        # Packet mode is chosen for the reasons, and the tracepoint always has them
        # (summary alerts carry none).
        return self.packet_mode or self.tracepoint

    def describe(self) -> str:
        """The parenthesis of the start line."""
        if self.tracepoint:
            return "skb:kfree_skb tracepoint, by reason"
        return "packet mode, by reason" if self.packet_mode else "summary mode"


def choose_exporter_source(source: str, mode: str, origin: str) -> ExporterSource:
    """``--source``, ``--mode`` and ``--origin`` decided against this kernel."""
    from netdm.engine.sources import tracepoint_instead

    if source == "tracepoint":
        return ExporterSource(tracepoint=True)
    try:
        return ExporterSource(tracepoint=False, packet_mode=packet_mode_for(mode))
    except FamilyNotFoundError as error:
        if origin != "sw":  # hardware drops have no tracepoint to fall back to
            raise
        return ExporterSource(tracepoint=True, net_dm_missing=tracepoint_instead(source, error))


def packet_mode_for(mode: str) -> bool:
    """``--mode auto``: packet mode when the kernel sends drop reasons (5.18+), else summary."""
    if mode != "auto":
        return mode == "packet"
    from netdm.netlink.diagnose import open_kernel_control
    from netdm.proto.constants import Attr

    transport, _control = open_kernel_control()
    with transport:
        features = transport.features
    return features.has_packet_mode and (features.maxattr or 0) >= Attr.REASON


class MetricsSink(Protocol):
    """What the run needs of the metrics (:class:`netdm.output.exporter.DropMetrics`)."""

    def monitoring_started(self, at: float) -> None: ...

    def interval(self, summary: IntervalSummary) -> None: ...

    def monitoring_stopped(self) -> None: ...


def run_exporter(
    metrics: MetricsSink,
    choice: ExporterSource,
    on_started: Callable[[], None],
    *,
    interval: float,
    trunc_len: int,
    queue_len: int,
    origin: str,
    rcvbuf: int | None,
) -> RunTotals:
    """The watch life cycle (LiveMonitor or TracepointMonitor), the metrics as interval sink."""
    from netdm.engine.aggregate import IntervalAggregator
    from netdm.engine.session import Pipeline, WatchSettings
    from netdm.engine.sources import run_net_dm, run_tracepoint

    settings = WatchSettings(
        interval=interval,
        receive_buffer=rcvbuf,
        packet_mode=choice.packet_mode,
        trunc_len=trunc_len,
        queue_len=queue_len,
        software=origin in ("sw", "all"),
        hardware=origin in ("hw", "all"),
    )

    def new_pipeline(decoder: DatagramDecoder, start: float) -> Pipeline:
        metrics.monitoring_started(start)
        aggregator = IntervalAggregator(interval=interval, start=start, by_reason=choice.by_reason)
        return Pipeline(decoder, aggregator, metrics.interval)

    try:
        if choice.tracepoint:
            # The fallback was announced when it was chosen: no "no drop source" rewording.
            return run_tracepoint(settings, new_pipeline, lambda _started: on_started())
        return run_net_dm(settings, new_pipeline, on_started)
    finally:
        metrics.monitoring_stopped()
