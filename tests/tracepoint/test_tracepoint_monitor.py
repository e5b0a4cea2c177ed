"""TracepointMonitor's loop against a scripted tracefs instance, on a fake clock.

The real kernel's tracefs is in test_tracepoint_live.py; here the instance
hands out ring-buffer pages at set times, so the run loop's passes, pauses,
lost-event polls, the drain after ``disable`` and the records written are
the same in every run, and nothing sleeps.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from netdm.engine.aggregate import IntervalAggregator, IntervalSummary
from netdm.engine.pipeline import DatagramDecoder, Pipeline
from netdm.engine.run_loop import WatchSettings
from netdm.engine.tracepoint_monitor import (
    LOST_POLL_SECONDS,
    POLL_SECONDS,
    TracepointDecoder,
    TracepointMonitor,
)
from netdm.proto.errors import ProtocolError
from netdm.tracepoint.format import PageLayout, parse_event_format
from netdm.tracepoint.ringbuffer import KfreeSkbDecoder, kfree_skb_construct
from tests.engine.fake_clock import START_NS, FakeClock

DATA = Path(__file__).parent / "data"
EVENT = parse_event_format((DATA / "kfree_skb-6.18.format").read_text())
LAYOUT = PageLayout()
UDP_PC = 0xFFFFFFFF818BCAE2


def record(location: int = UDP_PC, reason: int = 2) -> bytes:
    values = {field.name: 0 for field in EVENT.fields}
    values.update(common_type=EVENT.event_id, location=location, reason=reason)
    return bytes(kfree_skb_construct(EVENT).build(values))


def page(records: Iterable[bytes]) -> bytes:
    """A ring-buffer page of 40-byte kfree_skb records, as the kernel writes them."""
    data = b"".join(struct.pack("<I", (1 << 5) | len(entry) // 4) + entry for entry in records)
    whole = struct.pack("<QQ", 0, len(data)) + data
    return whole + bytes(LAYOUT.page_size - len(whole))


class FakeInstance:
    """A tracefs instance whose buffers fill at scripted times (seconds after the start)."""

    def __init__(self, clock: FakeClock, pages_at: dict[float, list[bytes]]) -> None:
        self.clock = clock
        self.event_format = EVENT
        self.page_layout = LAYOUT
        self.pending = sorted(pages_at.items())
        self.lost_at: dict[float, int] = {}
        self.disabled = False
        self.entered = self.exited = False
        self.lost_reads = 0

    def __enter__(self) -> FakeInstance:
        self.entered = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.exited = True

    def _now(self) -> float:
        return self.clock.elapsed_ns / 1e9

    def read_pages(self) -> Iterator[bytes]:
        while self.pending and self.pending[0][0] <= self._now():
            yield from self.pending.pop(0)[1]

    def disable(self) -> None:
        self.disabled = True
        # What the kernel still held: in the buffers, whatever time it was written.
        self.pending = [(0.0, [entry for _, pages in self.pending for entry in pages])]

    def lost_events(self) -> int:
        self.lost_reads += 1
        return max((lost for at, lost in self.lost_at.items() if at <= self._now()), default=0)


class Recorder:
    def __init__(self) -> None:
        self.records: list[tuple[int, int]] = []  # (timestamp, pc)
        self.lost: list[tuple[int, int]] = []
        self.closed = False
        self.flushes = 0

    def write(self, datagram: bytes, timestamp_ns: int, *, outgoing: bool) -> None:
        self.records.append((timestamp_ns, KfreeSkbDecoder(EVENT).drop_site(datagram).pc))

    def write_lost(self, lost_events: int, timestamp_ns: int) -> None:
        self.lost.append((lost_events, timestamp_ns))

    def write_symbols(self, lines: Iterable[str]) -> None:
        pass

    def flush(self) -> None:
        self.flushes += 1

    def close(self) -> None:
        self.closed = True


def run(
    instance: FakeInstance, clock: FakeClock, settings: WatchSettings, recorder: Recorder | None
) -> tuple[TracepointMonitor, list[IntervalSummary]]:
    summaries: list[IntervalSummary] = []

    def new_pipeline(decoder: DatagramDecoder, start: float) -> Pipeline:
        assert isinstance(decoder, TracepointDecoder)
        aggregator = IntervalAggregator(interval=settings.interval, start=start, by_reason=True)
        return Pipeline(decoder, aggregator, summaries.append)

    monitor = TracepointMonitor(
        settings,
        new_pipeline,
        on_started=lambda: None,
        clock=clock.run_clock,
        open_recorder=(lambda _format: recorder) if recorder else None,  # type: ignore[arg-type,return-value]
        instance=instance,  # type: ignore[arg-type]  # a fake, not tracefs
    )
    monitor.run()
    return monitor, summaries


def counts(summaries: list[IntervalSummary]) -> list[int]:
    return [sum(entry.count for entry in summary.entries) for summary in summaries]


def test_records_count_in_the_window_they_were_read_in() -> None:
    clock = FakeClock()
    instance = FakeInstance(clock, {0.25: [page([record()] * 3)], 1.5: [page([record()] * 4)]})
    monitor, summaries = run(instance, clock, WatchSettings(interval=1.0, duration=3.0), None)
    assert counts(summaries) == [3, 4, 0]
    assert monitor.pipeline is not None and monitor.pipeline.totals.drops == 7
    assert instance.entered and instance.exited and instance.disabled
    # Empty buffers: a POLL_SECONDS pause (never past the deadline); none after a read.
    assert set(clock.sleeps) == {POLL_SECONDS}
    assert clock.elapsed_ns == 3_000_000_000  # the pauses only: a read takes no time here


def test_what_the_buffers_hold_at_the_end_goes_to_the_last_interval() -> None:
    clock = FakeClock()
    instance = FakeInstance(clock, {0.0: [page([record()])], 60.0: [page([record()] * 5)]})
    _, summaries = run(instance, clock, WatchSettings(interval=1.0, duration=2.0), None)
    assert counts(summaries) == [1, 5]
    assert summaries[-1].end == pytest.approx(START_NS / 1e9 + 2.0)


def test_lost_events_are_polled_about_once_a_second_and_at_the_end() -> None:
    clock = FakeClock()
    instance = FakeInstance(clock, {})
    instance.lost_at = {0.55: 4, 2.5: 9}
    recorder = Recorder()
    monitor, summaries = run(instance, clock, WatchSettings(interval=1.0, duration=3.0), recorder)
    assert monitor.pipeline is not None and monitor.pipeline.totals.tracefs_lost == 9
    assert [summary.losses.tracefs_lost for summary in summaries] == [0, 4, 5]
    # At the start (where the windows begin), when a poll saw more, and at the end.
    assert [lost for lost, _ in recorder.lost] == [0, 4, 9, 9]
    assert recorder.lost[0][1] == START_NS and recorder.lost[-1][1] == START_NS + 3 * 10**9
    assert instance.lost_reads == 1 + 2 + 1  # baseline, polls at 1 s and 2 s, the end
    assert LOST_POLL_SECONDS == 1.0
    assert recorder.closed and recorder.flushes >= 1


def test_records_are_written_with_the_time_they_were_fed_at() -> None:
    clock = FakeClock()
    instance = FakeInstance(clock, {0.5: [page([record(1), record(2)])], 9.0: [page([record(3)])]})
    recorder = Recorder()
    run(instance, clock, WatchSettings(interval=1.0, duration=1.0), recorder)
    end_instant = START_NS + 10**9 - 1_000_000  # the drained record: just inside the run
    fed_at = START_NS + 500_000_000
    assert recorder.records == [(fed_at, 1), (fed_at, 2), (end_instant, 3)]


def test_the_tracepoint_decoder_reads_drop_sites_and_refuses_netlink() -> None:
    decoder = TracepointDecoder(KfreeSkbDecoder(EVENT))
    [site] = decoder.scan(record(7, 3))
    assert site == KfreeSkbDecoder(EVENT).drop_site(record(7, 3))
    assert (site.pc, site.reason) == (7, "NO_SOCKET")
    with pytest.raises(ProtocolError):
        decoder.decode(record())
    with pytest.raises(ProtocolError):
        decoder.scan(b"\x00" * 3)
