"""The tracepoint source's live loop and replay, through the same Pipeline as NET_DM.

Strategy: the loop reads every CPU's ring buffer without blocking, turns
each ``skb:kfree_skb`` record into a drop site (the pc of the freeing
function and the drop reason, exactly what a NET_DM summary counts) and
feeds them to :class:`netdm.engine.session.Pipeline` at the time they were read.
When the buffers are empty it sleeps :data:`POLL_SECONDS`, so a drop is
counted at most that late; a five-second window is what matters here.

Recording writes each record with the time the pipeline was given for it,
a lost-events count at the start (the first record: where the windows
begin), about once a second while events are lost, and at the end (the last
record: where the run ended), so that a replay prints the same summaries.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Protocol

from netdm.engine.session import (
    NS_PER_SECOND,
    RECORD_FLUSH_SECONDS,
    CaptureSymbols,
    Pipeline,
    PipelineFactory,
    ReplayResult,
    RunTotals,
    StopRequest,
    WatchSettings,
    seconds,
    stop_on_signals,
    within_run,
)
from netdm.engine.symbols import SymbolTable
from netdm.errors import BadInputError
from netdm.proto.decode import DropSite
from netdm.proto.errors import ProtocolError
from netdm.tracepoint.format import parse_event_format
from netdm.tracepoint.ringbuffer import ByteOrder, KfreeSkbDecoder, page_records
from netdm.tracepoint.tracefs import DEFAULT_BUFFER_KB, TracefsInstance

if TYPE_CHECKING:
    from netdm.capture import CaptureReader

# How long the loop sleeps when every CPU's buffer was empty.
POLL_SECONDS = 0.1
# How often the per-CPU lost-event counters are read.
LOST_POLL_SECONDS = 1.0
# The family id a tracepoint pipeline is built with: it decodes no netlink at all.
NO_FAMILY = 0


class TracepointRecorder(Protocol):
    """Where a tracepoint run writes its records (a CaptureWriter with tracepoint_format)."""

    def write(self, datagram: bytes, timestamp_ns: int, *, outgoing: bool) -> None: ...

    def write_lost(self, lost_events: int, timestamp_ns: int) -> None: ...

    def write_symbols(self, lines: Iterable[str]) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class TracepointMonitor:
    """Monitoring through ``skb:kfree_skb``, in a tracefs instance removed on every way out."""

    def __init__(
        self,
        settings: WatchSettings,
        pipeline_factory: PipelineFactory,
        on_started: Callable[[], None],
        *,
        clock_ns: Callable[[], int] = time.time_ns,
        open_recorder: Callable[[str], TracepointRecorder] | None = None,
        symbols: SymbolTable | None = None,
        instance: TracefsInstance | None = None,
        buffer_kb: int = DEFAULT_BUFFER_KB,
    ) -> None:
        self.settings = settings
        self._pipeline_factory = pipeline_factory
        self._on_started = on_started
        self._clock_ns = clock_ns
        self._open_recorder = open_recorder
        self._symbols = symbols
        self.instance = instance or TracefsInstance(buffer_kb=buffer_kb)
        self.stop = StopRequest()
        self.pipeline: Pipeline | None = None
        self._recorder: TracepointRecorder | None = None
        self._capture_symbols: CaptureSymbols | None = None
        self._lost_seen = 0
        self._last_flush = time.monotonic()

    def run(self) -> RunTotals:
        with self.instance as instance, stop_on_signals(self.stop):
            assert instance.event_format is not None
            if self._open_recorder is not None:
                self._recorder = self._open_recorder(instance.event_format.text)
                self._capture_symbols = CaptureSymbols(self._recorder, self._symbols)
            try:
                return self._monitor(instance)
            finally:
                if self._recorder is not None:
                    self._flush_recording(force=True)
                    self._recorder.close()

    def _monitor(self, instance: TracefsInstance) -> RunTotals:
        assert instance.event_format is not None
        decoder = KfreeSkbDecoder(instance.event_format)
        start_ns = self._clock_ns()
        pipeline = self.pipeline = self._pipeline_factory(NO_FAMILY, seconds(start_ns))
        self._lost_seen = instance.lost_events()  # a fresh instance: 0
        if self._recorder is not None:
            self._recorder.write_lost(0, start_ns)
        self._on_started()
        deadline_ns = self.settings.deadline_ns(start_ns)
        next_lost_poll = time.monotonic() + LOST_POLL_SECONDS
        while True:
            now_ns = self._clock_ns()
            if self.stop.requested:
                end_ns = now_ns
                break
            if deadline_ns is not None and now_ns >= deadline_ns:
                end_ns = deadline_ns
                break
            read_any = self._read(instance, pipeline, decoder, now_ns)
            if time.monotonic() >= next_lost_poll:
                next_lost_poll = time.monotonic() + LOST_POLL_SECONDS
                self._poll_lost(instance, pipeline, now_ns)
            pipeline.tick(seconds(now_ns))
            self._flush_recording()
            if not read_any:
                wait = POLL_SECONDS
                if deadline_ns is not None:
                    wait = min(wait, (deadline_ns - now_ns) / NS_PER_SECOND)
                if wait > 0:
                    time.sleep(wait)
        # What the buffers still hold happened before the end: into the last interval.
        instance.disable()
        last_instant_ns = within_run(end_ns, end_ns)
        while self._read(instance, pipeline, decoder, last_instant_ns):
            pass
        self._poll_lost(instance, pipeline, last_instant_ns)
        pipeline.finish(seconds(end_ns))
        if self._recorder is not None:
            self._recorder.write_lost(pipeline.totals.tracefs_lost, end_ns)
        return pipeline.totals

    def _read(
        self, instance: TracefsInstance, pipeline: Pipeline, decoder: KfreeSkbDecoder, now_ns: int
    ) -> bool:
        """Everything the buffers have now, fed at ``now_ns``; False if they were empty."""
        now = seconds(now_ns)
        layout = instance.page_layout
        read_any = False
        for page in instance.read_pages():
            read_any = True
            try:
                records = page_records(page, layout).records
            except ProtocolError:
                pipeline.add_losses(now, decode_errors=1)
                continue
            if self._recorder is not None:
                for record in records:
                    self._recorder.write(record, now_ns, outgoing=False)
            pipeline.feed_drop_sites(_drop_sites(records, decoder, pipeline, now), now)
        return read_any

    def _poll_lost(self, instance: TracefsInstance, pipeline: Pipeline, now_ns: int) -> None:
        lost = instance.lost_events()
        if lost > self._lost_seen:
            pipeline.add_losses(seconds(now_ns), tracefs_lost=lost - self._lost_seen)
            self._lost_seen = lost
            if self._recorder is not None:
                self._recorder.write_lost(pipeline.totals.tracefs_lost, now_ns)

    def _flush_recording(self, *, force: bool = False) -> None:
        if self._recorder is None or self._capture_symbols is None or self.pipeline is None:
            return
        if not force and time.monotonic() - self._last_flush < RECORD_FLUSH_SECONDS:
            return
        self._last_flush = time.monotonic()
        self._capture_symbols.update(self.pipeline.addresses)
        self._recorder.flush()


def _drop_sites(
    records: Iterable[bytes], decoder: KfreeSkbDecoder, pipeline: Pipeline, now: float
) -> Iterator[DropSite]:
    """The drop site of each record; a record that is not one counts as a decode error."""
    drop_site = decoder.drop_site
    for record in records:
        try:
            yield drop_site(record)
        except ProtocolError:
            pipeline.add_losses(now, decode_errors=1)


# ---------------------------------------------------------------------- replay


def replay_tracepoint_capture(
    reader: CaptureReader, pipeline_factory: PipelineFactory
) -> ReplayResult:
    """Feed a tracepoint capture through the pipeline, on its own clock, as the live run did."""
    from netdm.capture.formats import RECORD_TRACEPOINT, RECORD_TRACEPOINT_LOST
    from netdm.capture.read import capture_tracepoint_format

    format_text = capture_tracepoint_format(reader.info)
    if format_text is None:
        raise BadInputError(f"{reader.path}: not a tracepoint capture (no event format in it)")
    try:
        event_format = parse_event_format(format_text)
        byte_order: ByteOrder = reader.info.byte_order
        decoder = KfreeSkbDecoder(event_format, byte_order)
    except ProtocolError as error:
        raise BadInputError(
            f"{reader.path}: its tracepoint event format is unreadable: {error.reason}"
        ) from None
    pipeline: Pipeline | None = None
    lost_seen = 0
    records = 0
    last_ns: int | None = None
    pending: list[bytes] = []  # consecutive records of one timestamp, fed together
    pending_ns = 0

    def feed_pending() -> None:
        if pipeline is not None and pending:
            now = seconds(pending_ns)
            pipeline.feed_drop_sites(_drop_sites(pending, decoder, pipeline, now), now)
            pending.clear()

    for record in reader:
        if record.protocol not in (RECORD_TRACEPOINT, RECORD_TRACEPOINT_LOST):
            continue
        records += 1
        if pipeline is None:
            pipeline = pipeline_factory(NO_FAMILY, seconds(record.timestamp_ns))
        if record.timestamp_ns != pending_ns:
            feed_pending()
            pending_ns = record.timestamp_ns
        last_ns = record.timestamp_ns
        if record.protocol == RECORD_TRACEPOINT:
            pending.append(record.data)
        else:
            feed_pending()
            lost = int.from_bytes(record.data, "little")
            if lost > lost_seen:
                pipeline.add_losses(seconds(record.timestamp_ns), tracefs_lost=lost - lost_seen)
                lost_seen = lost
    feed_pending()
    if pipeline is None or last_ns is None:
        raise BadInputError(f"{reader.path}: the capture holds no tracepoint records to replay")
    pipeline.tick(seconds(within_run(last_ns, last_ns)))
    pipeline.finish(seconds(last_ns))
    return ReplayResult(
        pipeline.totals, NO_FAMILY, "tracepoint capture", records, reader.bad_records
    )
