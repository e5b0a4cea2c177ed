"""Choosing the drop source: NET_DM, the tracepoint, and when auto may fall back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import netdm.engine.exporting
import netdm.engine.session
import netdm.engine.tracepoint_monitor
from netdm.engine.exporting import ExporterSource, choose_exporter_source
from netdm.engine.session import RunTotals, WatchSettings
from netdm.engine.sources import StartedSource, run_live, tracepoint_instead
from netdm.errors import FamilyNotFoundError
from netdm.tracepoint.tracefs import TracepointUnavailableError

MISSING = FamilyNotFoundError("this kernel has no drop monitor")


def test_auto_falls_back_with_the_reason() -> None:
    assert tracepoint_instead("auto", MISSING) == "this kernel has no drop monitor"


def test_an_explicit_netdm_source_never_falls_back() -> None:
    with pytest.raises(FamilyNotFoundError) as raised:
        tracepoint_instead("netdm", MISSING)
    assert raised.value is MISSING


def test_options_only_net_dm_honours_name_themselves() -> None:
    with pytest.raises(FamilyNotFoundError) as raised:
        tracepoint_instead("auto", MISSING, ["--packets", "--rcvbuf"])
    assert str(raised.value) == (
        "this kernel has no drop monitor (--packets, --rcvbuf need NET_DM; without them "
        "netdm would fall back to the skb:kfree_skb tracepoint)"
    )


class FakeMonitor:
    fails_with: Exception | None = None

    def __init__(
        self, settings: WatchSettings, factory: Any, on_started: Callable[[], None], **kw: Any
    ) -> None:
        self.on_started = on_started

    def run(self) -> RunTotals:
        if self.fails_with is not None:
            raise self.fails_with
        self.on_started()
        return RunTotals(intervals=1)


class NoNetDm(FakeMonitor):
    fails_with = MISSING


class NoTracepoint(FakeMonitor):
    fails_with = TracepointUnavailableError("tracefs is not mounted")


def live(monkeypatch: pytest.MonkeyPatch, source: str, net_dm: type, tracepoint: type) -> Any:
    monkeypatch.setattr(netdm.engine.session, "LiveMonitor", net_dm)
    monkeypatch.setattr(netdm.engine.tracepoint_monitor, "TracepointMonitor", tracepoint)
    started: list[StartedSource] = []
    totals = run_live(source, WatchSettings(), unused_pipeline, started.append)
    return totals, started


def unused_pipeline(decoder: Any, start: float) -> Any:
    raise AssertionError("the fake monitors make no pipeline")


def test_run_live_uses_net_dm_when_it_is_there(monkeypatch: pytest.MonkeyPatch) -> None:
    totals, started = live(monkeypatch, "auto", FakeMonitor, NoTracepoint)
    assert totals.intervals == 1 and started == [StartedSource("netdm")]


def test_run_live_falls_back_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    totals, started = live(monkeypatch, "auto", NoNetDm, FakeMonitor)
    assert started == [StartedSource("tracepoint", "this kernel has no drop monitor")]


def test_run_live_with_neither_source_names_both(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TracepointUnavailableError) as raised:
        live(monkeypatch, "auto", NoNetDm, NoTracepoint)
    assert str(raised.value) == (
        "no drop source here: this kernel has no drop monitor; and tracefs is not mounted"
    )


def test_an_asked_for_tracepoint_keeps_its_own_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TracepointUnavailableError, match="^tracefs is not mounted$"):
        live(monkeypatch, "tracepoint", FakeMonitor, NoTracepoint)


def no_net_dm(mode: str) -> bool:
    raise MISSING


def test_the_exporter_falls_back_for_software_drops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netdm.engine.exporting, "packet_mode_for", no_net_dm)
    choice = choose_exporter_source("auto", "auto", "sw")
    assert choice == ExporterSource(tracepoint=True, net_dm_missing=str(MISSING))
    assert (choice.source, choice.alert_mode, choice.by_reason) == ("tracepoint", "none", True)
    for source, origin in (("netdm", "sw"), ("auto", "hw"), ("auto", "all")):
        with pytest.raises(FamilyNotFoundError):
            choose_exporter_source(source, "auto", origin)


def test_the_exporter_modes() -> None:
    assert choose_exporter_source("tracepoint", "packet", "sw") == ExporterSource(tracepoint=True)
    packet = choose_exporter_source("netdm", "packet", "sw")
    summary = choose_exporter_source("auto", "summary", "all")
    assert (packet.alert_mode, packet.by_reason, packet.describe()) == (
        "packet",
        True,
        "packet mode, by reason",
    )
    assert (summary.alert_mode, summary.by_reason, summary.describe()) == (
        "summary",
        False,
        "summary mode",
    )
