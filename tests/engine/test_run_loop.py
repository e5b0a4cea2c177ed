"""The one run loop of both live sources, driven by a scripted source on a fake clock."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import pytest

from netdm.engine.aggregate import IntervalAggregator, IntervalSummary
from netdm.engine.pipeline import NetDmDecoder, Pipeline, seconds, within_run
from netdm.engine.run_loop import (
    RECORD_FLUSH_SECONDS,
    RecordingFlush,
    RunLoop,
    StopRequest,
    WatchSettings,
)
from netdm.proto.decode import DropSite
from tests.engine.fake_clock import START_NS, FakeClock

SITE = DropSite(0, 0xFFFFFFFF81ABCDEF, None, None)


class ScriptedSource:
    """A source whose passes wait out ``wait``, with one drop site at each given pass."""

    def __init__(self, clock: FakeClock, pipeline: Pipeline, drops_at: Iterable[int] = ()) -> None:
        self.clock = clock
        self.pipeline = pipeline
        self.drops_at = set(drops_at)
        self.waits: list[float] = []
        self.calls: list[str] = []
        self.pause = 0.0
        self.on_pass: Callable[[int], None] = lambda number: None

    def receive(self, now_ns: int, wait: float, deadline_ns: int | None) -> tuple[int, float]:
        number = len(self.waits)
        self.waits.append(wait)
        self.on_pass(number)
        if number in self.drops_at:
            self.pipeline.feed_drop_sites([SITE], seconds(now_ns))
        else:
            self.clock.advance(wait)
        return within_run(self.clock.wall_ns(), deadline_ns), self.pause

    def drain(self, last_instant_ns: int, grace: Callable[[float], Iterator[float]]) -> None:
        self.calls.append("drain")
        self.pipeline.feed_drop_sites([SITE], seconds(last_instant_ns))

    def settle(self, last_instant_ns: int) -> None:
        self.calls.append("settle")


def loop_and_pipeline(
    settings: WatchSettings,
    clock: FakeClock,
    stop: StopRequest | None = None,
    max_wait: float = 0.25,
) -> tuple[RunLoop, Pipeline, list[IntervalSummary]]:
    intervals: list[IntervalSummary] = []
    aggregator = IntervalAggregator(interval=settings.interval, start=seconds(clock.wall_ns()))
    pipeline = Pipeline(NetDmDecoder(0x1C), aggregator, intervals.append)
    loop = RunLoop(settings, stop or StopRequest(), clock.run_clock, max_wait=max_wait)
    return loop, pipeline, intervals


def test_the_deadline_ends_the_passes_exactly_and_bounds_their_waits() -> None:
    clock = FakeClock()
    loop, pipeline, intervals = loop_and_pipeline(WatchSettings(interval=1.0, duration=0.6), clock)
    source = ScriptedSource(clock, pipeline)
    totals = loop.run(source, pipeline, clock.wall_ns())
    assert source.waits == pytest.approx([0.25, 0.25, 0.1])  # the last one stops at the deadline
    assert loop.end_ns == START_NS + 600_000_000
    assert source.calls == ["drain", "settle"]
    assert totals.intervals == 1 and totals.drops == 1  # the drain's drop: the last interval
    assert intervals[-1].end == pytest.approx(seconds(START_NS) + 0.6)


def test_count_is_intervals_and_each_one_is_ticked_closed() -> None:
    clock = FakeClock()
    loop, pipeline, intervals = loop_and_pipeline(WatchSettings(interval=0.5, count=3), clock)
    source = ScriptedSource(clock, pipeline, drops_at=[0, 3, 5])
    loop.run(source, pipeline, clock.wall_ns())
    assert loop.end_ns == START_NS + 1_500_000_000
    # Passes 3 and 5 at 0.5 s and 0.75 s (the quiet passes wait 0.25 s); the drain's at the end.
    assert [sum(entry.count for entry in interval.entries) for interval in intervals] == [1, 2, 1]
    assert [interval.partial for interval in intervals] == [False, False, False]


def test_a_stop_request_ends_the_run_at_the_time_it_was_seen() -> None:
    clock, stop = FakeClock(), StopRequest()
    loop, pipeline, _ = loop_and_pipeline(WatchSettings(interval=10.0), clock, stop)
    source = ScriptedSource(clock, pipeline)
    source.on_pass = lambda number: stop(15, None) if number == 3 else None  # SIGTERM
    loop.run(source, pipeline, clock.wall_ns())
    assert stop.reason == "SIGTERM"
    assert loop.end_ns == START_NS + 4 * 250_000_000
    assert source.calls == ["drain", "settle"]


def test_the_pause_a_pass_asks_for_is_slept_on_the_injected_clock() -> None:
    clock = FakeClock()
    loop, pipeline, _ = loop_and_pipeline(WatchSettings(duration=1.0), clock, max_wait=0.1)
    source = ScriptedSource(clock, pipeline)
    source.pause = 0.002
    loop.run(source, pipeline, clock.wall_ns())
    assert clock.sleeps and set(clock.sleeps) == {0.002}


def test_end_ns_is_known_when_the_drain_fails() -> None:
    clock = FakeClock()
    loop, pipeline, _ = loop_and_pipeline(WatchSettings(duration=0.3), clock)
    source = ScriptedSource(clock, pipeline)

    def failing_drain(last_instant_ns: int, grace: Callable[[float], Iterator[float]]) -> None:
        raise BrokenPipeError

    source.drain = failing_drain  # type: ignore[method-assign]
    with pytest.raises(BrokenPipeError):
        loop.run(source, pipeline, clock.wall_ns())
    assert loop.end_ns == START_NS + 300_000_000


def test_grace_waits_to_its_end_unless_a_second_signal_came() -> None:
    clock, stop = FakeClock(), StopRequest()
    loop = RunLoop(WatchSettings(), stop, clock.run_clock, max_wait=0.25)
    waits = []
    for wait in loop.grace(0.6):
        waits.append(wait)
        clock.advance(wait)
    assert waits == pytest.approx([0.25, 0.25, 0.1])
    stop(2, None)
    stop(2, None)  # a second SIGINT: no more waiting
    assert stop.urgent
    assert list(loop.grace(0.6)) == []


class Writer:
    def __init__(self) -> None:
        self.flushes = 0
        self.symbol_lines: list[str] = []

    def write(self, datagram: bytes, timestamp_ns: int, *, outgoing: bool) -> None:
        pass

    def write_symbols(self, lines: Iterable[str]) -> None:
        self.symbol_lines.extend(lines)

    def flush(self) -> None:
        self.flushes += 1


def test_a_recording_is_flushed_about_once_a_second_of_its_clock() -> None:
    clock, writer = FakeClock(), Writer()
    recording = RecordingFlush(writer, None, clock.monotonic)
    loop = RunLoop(
        WatchSettings(duration=3.0),
        StopRequest(),
        clock.run_clock,
        max_wait=0.25,
        recording=recording,
    )
    intervals: list[IntervalSummary] = []
    aggregator = IntervalAggregator(interval=5.0, start=seconds(clock.wall_ns()))
    pipeline = Pipeline(NetDmDecoder(0x1C), aggregator, intervals.append)
    loop.run(ScriptedSource(clock, pipeline), pipeline, clock.wall_ns())
    assert writer.flushes == 3 // RECORD_FLUSH_SECONDS
    recording.flush(pipeline, force=True)
    assert writer.flushes == 4
    recording.flush(None, force=True)  # no pipeline yet: nothing to flush
    assert writer.flushes == 4


def test_a_reader_gone_ends_the_passes_as_a_broken_pipe_checked_every_half_second() -> None:
    clock = FakeClock()
    checks: list[int] = []

    def reader_gone() -> bool:
        checks.append(clock.wall_ns())
        return len(checks) == 3

    settings = WatchSettings(interval=10.0)
    intervals: list[IntervalSummary] = []
    aggregator = IntervalAggregator(interval=settings.interval, start=seconds(clock.wall_ns()))
    pipeline = Pipeline(NetDmDecoder(0x1C), aggregator, intervals.append)
    loop = RunLoop(settings, StopRequest(), clock.run_clock, max_wait=0.25, reader_gone=reader_gone)
    source = ScriptedSource(clock, pipeline)
    with pytest.raises(BrokenPipeError):
        loop.run(source, pipeline, clock.wall_ns())
    assert [check - START_NS for check in checks] == [0, 500_000_000, 1_000_000_000]
    assert source.calls == []  # no drain: nobody is left to read the last interval
