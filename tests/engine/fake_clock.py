"""A clock for the run loop's tests: it moves only when the code under test waits.

Wall and monotonic time advance together, by what a sleep or a timed-out
wait asked for; ``at(seconds, action)`` runs ``action`` once the clock has
reached ``seconds`` after the start, so a scripted event (a signal, a loss)
happens at the same point of every run.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from netdm.engine.run_loop import RunClock

START_NS = 1_700_000_000 * 1_000_000_000  # the wall clock's epoch time at the start
MONOTONIC_START = 1000.0


class FakeClock:
    def __init__(self) -> None:
        self.elapsed_ns = 0
        self.sleeps: list[float] = []
        self._scheduled: list[tuple[int, Callable[[], None]]] = []

    def wall_ns(self) -> int:
        return START_NS + self.elapsed_ns

    def monotonic(self) -> float:
        return MONOTONIC_START + self.elapsed_ns / 1e9

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.elapsed_ns += max(math.ceil(seconds * 1e9), 0)  # a positive wait always moves it
        due = [entry for entry in self._scheduled if entry[0] <= self.elapsed_ns]
        self._scheduled = [entry for entry in self._scheduled if entry[0] > self.elapsed_ns]
        for _, action in due:
            action()

    def at(self, seconds: float, action: Callable[[], None]) -> None:
        self._scheduled.append((round(seconds * 1e9), action))

    @property
    def run_clock(self) -> RunClock:
        return RunClock(self.wall_ns, self.monotonic, self.sleep)
