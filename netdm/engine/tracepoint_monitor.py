"""The tracepoint source's live loop and replay, through the same Pipeline as NET_DM.

Strategy: the loop reads every CPU's ring buffer without blocking, turns
each ``skb:kfree_skb`` record into a drop site (the pc of the freeing
function and the drop reason, exactly what a NET_DM summary counts) and
feeds them to :class:`netdm.engine.pipeline.Pipeline` at the time they were
read; the passes, the deadline and the end are the shared
:class:`~netdm.engine.run_loop.RunLoop`'s.  When the buffers are empty it
sleeps :data:`POLL_SECONDS`, so a drop is counted at most that late; a
five-second window is what matters here.

Recording writes each record with the time the pipeline was given for it,
a lost-events count at the start (the first record: where the windows
begin), about once a second while events are lost, and at the end (the last
record: where the run ended), so that a replay prints the same summaries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

from netdm.engine.pipeline import Pipeline, PipelineFactory, RunTotals, seconds, within_run
from netdm.engine.replay import ReplayResult
from netdm.engine.run_loop import (
    RECORD_FLUSH_SECONDS,
    CaptureSymbols,
    RecordingFlush,
    RunClock,
    RunLoop,
    StopRequest,
    WatchSettings,
    stop_on_signals,
)
from netdm.engine.symbols import SymbolTable
from netdm.errors import BadInputError
from netdm.proto.decode import DropSite
from netdm.proto.errors import ProtocolError
from netdm.proto.events import Event
from netdm.tracepoint.format import parse_event_format
from netdm.tracepoint.ringbuffer import ByteOrder, KfreeSkbDecoder, page_records
from netdm.tracepoint.tracefs import DEFAULT_BUFFER_KB, TracefsInstance

if TYPE_CHECKING:
    from netdm.capture import CaptureReader

__all__ = [
    "LOST_POLL_SECONDS",
    "POLL_SECONDS",
    "RECORD_FLUSH_SECONDS",
    "CaptureSymbols",
    "TracepointDecoder",
    "TracepointMonitor",
    "TracepointRecorder",
    "replay_tracepoint_capture",
]

# How long the loop sleeps when every CPU's buffer was empty.
POLL_SECONDS = 0.1
# How often the per-CPU lost-event counters are read.
LOST_POLL_SECONDS = 1.0
# What a replay reports as the family: a tracepoint capture has no netlink family.
NO_FAMILY = 0


class TracepointDecoder:
    """A tracepoint pipeline's decoder: its records are ``skb:kfree_skb`` events, not netlink.

    A record is one drop site (:meth:`scan`); it holds no NET_DM event, so
    :meth:`decode` refuses it.  The loop and the replay feed whole pages of
    records at once through :meth:`drop_sites` instead of one by one.
    """

    def __init__(self, records: KfreeSkbDecoder) -> None:
        self.drop_site = records.drop_site

    def scan(self, datagram: bytes) -> Sequence[DropSite]:
        return (self.drop_site(datagram),)

    def decode(self, datagram: bytes) -> Sequence[Event]:
        raise ProtocolError("a kfree_skb record holds a drop site, not NET_DM events", 0)

    def drop_sites(
        self, records: Iterable[bytes], pipeline: Pipeline, now: float
    ) -> Iterator[DropSite]:
        """The drop site of each record; a record that is not one counts as a decode error."""
        drop_site = self.drop_site
        for record in records:
            try:
                yield drop_site(record)
            except ProtocolError:
                pipeline.add_losses(now, decode_errors=1)


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
        clock: RunClock | None = None,
        open_recorder: Callable[[str], TracepointRecorder] | None = None,
        symbols: SymbolTable | None = None,
        instance: TracefsInstance | None = None,
        buffer_kb: int = DEFAULT_BUFFER_KB,
    ) -> None:
        clock = clock or RunClock()  # the wall clock, time.monotonic and time.sleep
        self.settings = settings
        self._pipeline_factory = pipeline_factory
        self._on_started = on_started
        self._clock = clock
        self._open_recorder = open_recorder
        self._symbols = symbols
        self.instance = instance or TracefsInstance(buffer_kb=buffer_kb)
        self.stop = StopRequest()
        self.pipeline: Pipeline | None = None
        self._recorder: TracepointRecorder | None = None
        self._recording: RecordingFlush | None = None

    def run(self) -> RunTotals:
        with self.instance as instance, stop_on_signals(self.stop):
            assert instance.event_format is not None
            if self._open_recorder is not None:
                self._recorder = self._open_recorder(instance.event_format.text)
                self._recording = RecordingFlush(
                    self._recorder, self._symbols, self._clock.monotonic
                )
            try:
                return self._monitor(instance)
            finally:
                if self._recorder is not None and self._recording is not None:
                    self._recording.flush(self.pipeline, force=True)
                    self._recorder.close()

    def _monitor(self, instance: TracefsInstance) -> RunTotals:
        assert instance.event_format is not None
        decoder = TracepointDecoder(KfreeSkbDecoder(instance.event_format))
        start_ns = self._clock.wall_ns()
        pipeline = self.pipeline = self._pipeline_factory(decoder, seconds(start_ns))
        lost_seen = instance.lost_events()  # a fresh instance: 0
        if self._recorder is not None:
            self._recorder.write_lost(0, start_ns)
        self._on_started()
        source = _BuffersSource(instance, pipeline, decoder, self._recorder, self._clock, lost_seen)
        loop = RunLoop(
            self.settings, self.stop, self._clock, max_wait=POLL_SECONDS, recording=self._recording
        )
        totals = loop.run(source, pipeline, start_ns)
        if self._recorder is not None:
            assert loop.end_ns is not None
            self._recorder.write_lost(totals.tracefs_lost, loop.end_ns)
        return totals


class _BuffersSource:
    """The instance's per-CPU ring buffers as the run loop's source."""

    def __init__(
        self,
        instance: TracefsInstance,
        pipeline: Pipeline,
        decoder: TracepointDecoder,
        recorder: TracepointRecorder | None,
        clock: RunClock,
        lost_seen: int,
    ) -> None:
        self._instance = instance
        self._pipeline = pipeline
        self._decoder = decoder
        self._recorder = recorder
        self._monotonic = clock.monotonic
        self._lost_seen = lost_seen
        self._next_lost_poll = clock.monotonic() + LOST_POLL_SECONDS

    def receive(self, now_ns: int, wait: float, deadline_ns: int | None) -> tuple[int, float]:
        """The buffers never block: read them, and if they were empty pause for ``wait``."""
        read_any = self._read(now_ns)
        if self._monotonic() >= self._next_lost_poll:
            self._next_lost_poll = self._monotonic() + LOST_POLL_SECONDS
            self._poll_lost(now_ns)
        return now_ns, 0.0 if read_any else wait

    def drain(self, last_instant_ns: int, grace: Callable[[float], Iterator[float]]) -> None:
        """What the buffers still hold happened before the end: all of it, at once."""
        self._instance.disable()
        while self._read(last_instant_ns):
            pass

    def settle(self, last_instant_ns: int) -> None:
        self._poll_lost(last_instant_ns)

    def _read(self, now_ns: int) -> bool:
        """Everything the buffers have now, fed at ``now_ns``; False if they were empty."""
        instance, pipeline, recorder = self._instance, self._pipeline, self._recorder
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
            if recorder is not None:
                for record in records:
                    recorder.write(record, now_ns, outgoing=False)
            pipeline.feed_drop_sites(self._decoder.drop_sites(records, pipeline, now), now)
        return read_any

    def _poll_lost(self, now_ns: int) -> None:
        lost = self._instance.lost_events()
        if lost > self._lost_seen:
            self._pipeline.add_losses(seconds(now_ns), tracefs_lost=lost - self._lost_seen)
            self._lost_seen = lost
            if self._recorder is not None:
                self._recorder.write_lost(self._pipeline.totals.tracefs_lost, now_ns)


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
        decoder = TracepointDecoder(KfreeSkbDecoder(event_format, byte_order))
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
            pipeline.feed_drop_sites(decoder.drop_sites(pending, pipeline, now), now)
            pending.clear()

    for record in reader:
        if record.protocol not in (RECORD_TRACEPOINT, RECORD_TRACEPOINT_LOST):
            continue
        records += 1
        if pipeline is None:
            pipeline = pipeline_factory(decoder, seconds(record.timestamp_ns))
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
