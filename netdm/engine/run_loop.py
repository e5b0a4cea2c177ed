"""The one run loop of a live source: until a stop request, the deadline or the count.

Strategy: :class:`RunLoop` owns what the NET_DM monitor and the tracepoint
monitor share — the stop request (set by signal handlers), the deadline of
``--duration``/``--count``, the interval ticks, the periodic flush of a
capture being written, the pause between passes, and the end: the final
drain, the last losses and the last interval.  What a pass reads and how the
source drains is the source's (:class:`LoopSource`).  Time comes from a
:class:`RunClock`, so tests drive the loop on a fake clock without sleeping.
"""

from __future__ import annotations

import errno
import select
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Protocol

from netdm.engine.pipeline import NS_PER_SECOND, Pipeline, RunTotals, seconds, within_run

if TYPE_CHECKING:
    from netdm.engine.symbols import SymbolTable

# How often a capture being written is flushed to disk (and its symbols added).
RECORD_FLUSH_SECONDS = 1.0
# How often the loop looks whether the reader of stdout went away (see stdout_closed).
READER_CHECK_SECONDS = 0.5


def stdout_closed() -> bool:
    """Whether stdout's reader went away, found without writing anything.

    A pipe whose read end is closed reports POLLERR on its write end (a
    socket whose peer shut down, POLLHUP).  A terminal, a file or /dev/null
    report neither; no stdout at all is not "closed" here.
    """
    try:
        fd = sys.__stdout__.fileno() if sys.__stdout__ is not None else -1
    except (OSError, ValueError):
        return False
    if fd < 0:
        return False
    try:
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        events = poller.poll(0)
    except (OSError, ValueError):
        return False
    return any(revents & (select.POLLERR | select.POLLHUP) for _, revents in events)


@dataclass(frozen=True)
class RunClock:
    """The time a live run reads and waits on: the wall clock's for its records and windows,
    the monotonic one for its own pacing."""

    wall_ns: Callable[[], int] = time.time_ns
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


class StopRequest:
    """Set by signal handlers; the loop checks it at least once a pass."""

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


class Recorder(Protocol):
    """Where a live run writes what it sends and receives (a CaptureWriter)."""

    def write(self, datagram: bytes, timestamp_ns: int, *, outgoing: bool) -> None: ...

    def write_symbols(self, lines: Iterable[str]) -> None: ...

    def flush(self) -> None: ...


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


class RecordingFlush:
    """A capture being written: its new symbols and its buffers to disk, about once a second."""

    def __init__(
        self, recorder: Recorder, symbols: SymbolTable | None, monotonic: Callable[[], float]
    ) -> None:
        self._recorder = recorder
        self._capture_symbols = CaptureSymbols(recorder, symbols)
        self._monotonic = monotonic
        self._last_flush = monotonic()

    def flush(self, pipeline: Pipeline | None, *, force: bool = False) -> None:
        """Flush if a second has passed (or ``force``); nothing before there is a pipeline."""
        if pipeline is None:
            return
        if force or self._monotonic() - self._last_flush >= RECORD_FLUSH_SECONDS:
            self._capture_symbols.update(pipeline.addresses)
            self._recorder.flush()
            self._last_flush = self._monotonic()


class LoopSource(Protocol):
    """A live source as the run loop drives it."""

    def receive(self, now_ns: int, wait: float, deadline_ns: int | None) -> tuple[int, float]:
        """One pass: feed what has come (waiting at most ``wait`` seconds for it).

        Returns the time (ns) it was fed at, where the loop ticks the windows,
        and how long to pause before the next pass (0: none).
        """
        ...

    def drain(self, last_instant_ns: int, grace: Callable[[float], Iterator[float]]) -> None:
        """After the end: what the kernel still holds, into the last interval.

        ``grace(seconds)`` gives the waits of a drain that takes its time
        (:meth:`RunLoop.grace`).
        """
        ...

    def settle(self, last_instant_ns: int) -> None:
        """The last interval's losses, the drain's included."""
        ...


class RunLoop:
    """Passes of a source until a stop request or the deadline, then the end of the run.

    ``max_wait`` bounds each pass's wait, so that signals and the deadline are
    noticed in time.  :attr:`end_ns` is known once the passes are over, even
    if the drain after them fails.  About every ``READER_CHECK_SECONDS`` it
    asks ``reader_gone`` (stdout's reader closed, :func:`stdout_closed`) and
    then ends the run as a write to that reader would: a BrokenPipeError,
    which the sources' ``with`` blocks clean up after and the CLI ends quietly.
    """

    def __init__(
        self,
        settings: WatchSettings,
        stop: StopRequest,
        clock: RunClock,
        *,
        max_wait: float,
        recording: RecordingFlush | None = None,
        reader_gone: Callable[[], bool] = stdout_closed,
    ) -> None:
        self._settings = settings
        self._reader_gone = reader_gone
        self._stop = stop
        self._clock = clock
        self.max_wait = max_wait
        self._recording = recording
        self.end_ns: int | None = None

    def run(self, source: LoopSource, pipeline: Pipeline, start_ns: int) -> RunTotals:
        """Passes, the drain, the last losses and the last interval; the run's totals."""
        end_ns = self.end_ns = self._receive_until_done(source, pipeline, start_ns)
        last_instant_ns = within_run(end_ns, end_ns)
        source.drain(last_instant_ns, self.grace)
        source.settle(last_instant_ns)
        pipeline.finish(seconds(end_ns))
        return pipeline.totals

    def _receive_until_done(self, source: LoopSource, pipeline: Pipeline, start_ns: int) -> int:
        """Passes until duration, count or a stop request; the end time (ns)."""
        deadline_ns = self._settings.deadline_ns(start_ns)
        clock_ns, sleep, stop, recording, monotonic = (
            self._clock.wall_ns,
            self._clock.sleep,
            self._stop,
            self._recording,
            self._clock.monotonic,
        )
        next_reader_check = monotonic()
        while True:
            now_ns = clock_ns()
            if stop.requested:
                return now_ns
            if monotonic() >= next_reader_check:
                next_reader_check = monotonic() + READER_CHECK_SECONDS
                if self._reader_gone():
                    raise BrokenPipeError(errno.EPIPE, "the reader of stdout went away")
            if deadline_ns is not None and now_ns >= deadline_ns:
                return deadline_ns
            wait = self.max_wait
            if deadline_ns is not None:
                wait = min(wait, seconds(deadline_ns - now_ns))
            fed_ns, pause = source.receive(now_ns, wait, deadline_ns)
            pipeline.tick(seconds(fed_ns))
            if recording is not None:
                recording.flush(pipeline)
            if pause > 0:
                sleep(pause)

    def grace(self, grace_seconds: float) -> Iterator[float]:
        """A drain's waits, each at most ``max_wait``: for ``grace_seconds``, or to a 2nd signal."""
        monotonic = self._clock.monotonic
        grace_end = monotonic() + grace_seconds
        while not self._stop.urgent:
            remaining = grace_end - monotonic()
            if remaining <= 0:
                return
            yield min(remaining, self.max_wait)
