"""Intervals: windows aligned to the start, merged counts, gaps, losses, the last window."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import netdm.engine.aggregate
from netdm.engine.aggregate import (
    DropCount,
    DropLocation,
    IntervalAggregator,
    IntervalSummary,
    LossCounts,
    packet_location,
)
from netdm.proto.constants import Origin
from netdm.proto.events import DropPoint, HardwareEntry, InPort, PacketAlert, SummaryAlert

START = 1605569206.0  # Mon Nov 16 23:26:46 2020 UTC
UNIX_STREAM_RECVMSG = 0xFFFFFFFF81A2C3EA
TUN_DO_READ = 0xFFFFFFFFC0B0001C


def summary(*points: tuple[int, int], hw: tuple[tuple[str, int], ...] = ()) -> SummaryAlert:
    return SummaryAlert(
        drop_points=tuple(DropPoint(pc, count) for pc, count in points),
        hw_entries=tuple(HardwareEntry(name, count) for name, count in hw),
    )


def software_packet(symbol: str | None, *, pc: int = 0, reason: str | None = None) -> PacketAlert:
    return PacketAlert(
        origin=Origin.SW,
        pc=pc,
        symbol=symbol,
        reason=reason,
        in_port=InPort(ifindex=2),
        timestamp_ns=1605569206_123456789,
        proto=0x0800,
        payload=b"\x00" * 14,
        orig_len=98,
    )


def hardware_packet(trap: str, group: str = "l3_drops") -> PacketAlert:
    return PacketAlert(
        origin=Origin.HW,
        hw_trap_group_name=group,
        hw_trap_name=trap,
        in_port=InPort(ifindex=3, name="swp1"),
    )


def at(pc: int) -> DropLocation:
    return DropLocation(pc=pc)


# --- windows


def test_counts_of_one_pc_from_several_cpus_are_merged_in_a_window() -> None:
    aggregator = IntervalAggregator(5, START)
    assert (
        aggregator.add_summary(summary((UNIX_STREAM_RECVMSG, 1000), (TUN_DO_READ, 4)), START + 1.0)
        == []
    )
    assert aggregator.add_summary(summary((UNIX_STREAM_RECVMSG, 762)), START + 1.01) == []
    closed = aggregator.tick(START + 5.0)
    assert closed == [
        IntervalSummary(
            start=START,
            end=START + 5.0,
            entries=(DropCount(at(UNIX_STREAM_RECVMSG), 1762), DropCount(at(TUN_DO_READ), 4)),
        )
    ]
    assert closed[0].total == 1766


def test_an_event_after_the_window_end_closes_the_window_first() -> None:
    aggregator = IntervalAggregator(5, START)
    aggregator.add_summary(summary((TUN_DO_READ, 1)), START + 4.9)
    closed = aggregator.add_summary(summary((TUN_DO_READ, 2)), START + 5.2)
    assert [(s.start, s.end, s.total) for s in closed] == [(START, START + 5, 1)]
    last = aggregator.flush(START + 10.0)
    assert last is not None
    assert (last.start, last.end, last.total, last.partial) == (START + 5, START + 10, 2, False)


def test_tick_inside_the_window_closes_nothing() -> None:
    aggregator = IntervalAggregator(5, START)
    assert aggregator.tick(START) == []
    assert aggregator.tick(START + 4.999) == []
    assert aggregator.open_window == (START, START + 5)


def test_empty_windows_are_results() -> None:
    aggregator = IntervalAggregator(5, START)
    closed = aggregator.tick(START + 5.0) + aggregator.tick(START + 10.0)
    assert [(s.start, s.end, s.quiet) for s in closed] == [
        (START, START + 5, True),
        (START + 5, START + 10, True),
    ]


def test_a_gap_yields_every_quiet_window_as_live_ticking_would() -> None:
    aggregator = IntervalAggregator(5, START)
    aggregator.add_summary(summary((TUN_DO_READ, 4)), START + 1)
    closed = aggregator.add_summary(summary((TUN_DO_READ, 9)), START + 3601)
    assert [(s.start - START, s.end - START) for s in closed] == [
        (5.0 * n, 5.0 * (n + 1)) for n in range(720)
    ]
    assert closed[0].total == 4
    assert all(s.quiet for s in closed[1:])
    assert aggregator.open_window == (START + 3600, START + 3605)


def test_a_gap_of_days_is_folded_after_max_quiet_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netdm.engine.aggregate, "MAX_QUIET_WINDOWS", 3)
    aggregator = IntervalAggregator(5, START)
    closed = aggregator.tick(START + 100)
    assert [(s.start - START, s.end - START) for s in closed] == [
        (0, 5), (5, 10), (10, 15), (15, 20), (20, 100)
    ]


def test_a_clock_stepping_back_counts_into_the_open_window() -> None:
    aggregator = IntervalAggregator(5, START)
    aggregator.tick(START + 6)
    assert aggregator.add_summary(summary((TUN_DO_READ, 3)), START + 2) == []
    assert aggregator.add_summary(summary((TUN_DO_READ, 3)), START - 100) == []
    closed = aggregator.tick(START + 10)
    assert [(s.start - START, s.total) for s in closed] == [(5, 6)]


def test_window_boundaries_do_not_drift() -> None:
    aggregator = IntervalAggregator(0.1, 0.1)
    ends = []
    for step in range(1, 1001):
        ends += [s.end for s in aggregator.tick(0.1 + step * 0.1)]
    assert len(ends) == 1000
    assert ends[-1] == 0.1 + 1000 * 0.1


def test_flush_returns_the_partial_last_window() -> None:
    aggregator = IntervalAggregator(5, START)
    aggregator.add_summary(summary((TUN_DO_READ, 2)), START + 6)
    aggregator.tick(START + 7)
    last = aggregator.flush(START + 7.5)
    assert last is not None
    assert (last.start, last.end, last.partial, last.total) == (START + 5, START + 7.5, True, 2)


def test_flush_of_an_empty_window_of_no_length_is_none() -> None:
    aggregator = IntervalAggregator(5, START)
    assert aggregator.flush(START) is None


def test_flush_of_a_quiet_partial_window_is_a_result() -> None:
    aggregator = IntervalAggregator(5, START)
    last = aggregator.flush(START + 2)
    assert last == IntervalSummary(start=START, end=START + 2, partial=True)


def test_nothing_is_accepted_after_flush() -> None:
    aggregator = IntervalAggregator(5, START)
    aggregator.flush(START + 1)
    with pytest.raises(RuntimeError):
        aggregator.add_summary(summary((TUN_DO_READ, 1)), START + 2)
    with pytest.raises(RuntimeError):
        aggregator.flush(START + 2)


@pytest.mark.parametrize("interval", [0, -5, 1e-9, math.nan, math.inf])
def test_bad_interval(interval: float) -> None:
    with pytest.raises(ValueError, match="interval"):
        IntervalAggregator(interval, START)


def test_bad_now() -> None:
    aggregator = IntervalAggregator(5, START)
    with pytest.raises(ValueError, match="now"):
        aggregator.tick(math.nan)


# --- what is counted


def test_hardware_entries_are_kept_apart() -> None:
    aggregator = IntervalAggregator(5, START)
    aggregator.add_summary(
        summary((TUN_DO_READ, 1), hw=(("blackhole_route", 7), ("ttl_value_is_too_small", 2))),
        START,
    )
    aggregator.add_summary(summary(hw=(("blackhole_route", 1),)), START + 1)
    (closed,) = aggregator.tick(START + 5)
    assert closed.entries == (DropCount(at(TUN_DO_READ), 1),)
    assert closed.hw_entries == (
        DropCount(DropLocation(origin="hw", trap_name="blackhole_route"), 8),
        DropCount(DropLocation(origin="hw", trap_name="ttl_value_is_too_small"), 2),
    )
    assert (closed.sw_total, closed.hw_total, closed.total) == (1, 10, 11)


def test_pc_zero_is_the_rx_dropped_heuristic() -> None:
    aggregator = IntervalAggregator(5, START)
    aggregator.add_summary(summary((0, 1), (TUN_DO_READ, 1)), START)
    (closed,) = aggregator.tick(START + 5)
    assert [entry.location.is_rx_dropped_heuristic for entry in closed.entries] == [True, False]


def test_zero_counts_are_not_entries() -> None:
    aggregator = IntervalAggregator(5, START)
    aggregator.add_summary(summary((TUN_DO_READ, 0)), START)
    (closed,) = aggregator.tick(START + 5)
    assert closed.quiet


def test_ties_are_ordered_by_location_not_by_arrival() -> None:
    results = []
    for order in ([1, 2, 3], [3, 1, 2]):
        aggregator = IntervalAggregator(5, START)
        for pc in order:
            aggregator.add_summary(summary((0xFFFFFFFF81000000 + pc, 5)), START)
        results.append(aggregator.tick(START + 5))
    assert results[0] == results[1]
    assert [entry.location.pc for entry in results[0][0].entries] == [
        0xFFFFFFFF81000001,
        0xFFFFFFFF81000002,
        0xFFFFFFFF81000003,
    ]


def test_packets_count_by_function_without_offset() -> None:
    aggregator = IntervalAggregator(5, START)
    for symbol in (
        "udp_queue_rcv_one_skb+0x3a/0x80",
        "udp_queue_rcv_one_skb+0x50/0x80",
        "nlmon_xmit+0x10/0x40 [nlmon]",
    ):
        aggregator.add_packet(software_packet(symbol, pc=0xFFFFFFFF81B00000), START + 1)
    aggregator.add_packet(software_packet(None, pc=0xFFFFFFFF81ABCDEF), START + 2)
    (closed,) = aggregator.tick(START + 5)
    assert closed.entries == (
        DropCount(DropLocation(function="udp_queue_rcv_one_skb"), 2),
        DropCount(DropLocation(pc=0xFFFFFFFF81ABCDEF), 1),
        DropCount(DropLocation(function="nlmon_xmit", module="nlmon"), 1),
    )


def test_packets_by_reason() -> None:
    aggregator = IntervalAggregator(5, START, by_reason=True)
    for reason in ("NO_SOCKET", "NO_SOCKET", "TCP_CSUM"):
        aggregator.add_packet(software_packet("tcp_v4_rcv+0x9a/0xe60", reason=reason), START)
    (closed,) = aggregator.tick(START + 5)
    assert closed.entries == (
        DropCount(DropLocation(function="tcp_v4_rcv", reason="NO_SOCKET"), 2),
        DropCount(DropLocation(function="tcp_v4_rcv", reason="TCP_CSUM"), 1),
    )


def test_hardware_packets_count_by_trap() -> None:
    aggregator = IntervalAggregator(5, START)
    aggregator.add_packet(hardware_packet("blackhole_route"), START)
    aggregator.add_packet(hardware_packet("blackhole_route"), START + 1)
    (closed,) = aggregator.tick(START + 5)
    assert closed.entries == ()
    assert closed.hw_entries == (
        DropCount(DropLocation(origin="hw", trap_name="blackhole_route", trap_group="l3_drops"), 2),
    )


def test_a_custom_key() -> None:
    def by_interface(alert: PacketAlert) -> DropLocation:
        name = alert.in_port.name if alert.in_port and alert.in_port.name else "?"
        return DropLocation(origin="hw", trap_name=name)

    aggregator = IntervalAggregator(5, START, key=by_interface)
    aggregator.add_packet(hardware_packet("blackhole_route"), START)
    (closed,) = aggregator.tick(START + 5)
    assert closed.hw_entries == (DropCount(DropLocation(origin="hw", trap_name="swp1"), 1),)


def test_packet_location_default() -> None:
    assert packet_location(software_packet("tcp_v4_rcv+0x9a/0xe60", reason="NO_SOCKET")) == (
        DropLocation(function="tcp_v4_rcv")
    )
    assert packet_location(
        software_packet("tcp_v4_rcv+0x9a/0xe60", reason="NO_SOCKET"), by_reason=True
    ) == DropLocation(function="tcp_v4_rcv", reason="NO_SOCKET")


def test_losses_add_up_per_window() -> None:
    aggregator = IntervalAggregator(5, START)
    aggregator.add_losses(enobufs=1, now=START)
    aggregator.add_losses(enobufs=2, decode_errors=1, sw_tail_drops=30, now=START + 1)
    aggregator.add_losses(socket_dropped=700, now=START + 2)
    aggregator.add_losses(socket_dropped=50, now=START + 3)
    closed = aggregator.add_losses(hw_tail_drops=4, now=START + 6)
    assert closed[0].losses == LossCounts(
        enobufs=3, decode_errors=1, sw_tail_drops=30, socket_dropped=750
    )
    assert not closed[0].quiet
    assert closed[0].total == 0
    aggregator.add_losses(socket_dropped=1, now=START + 6.5)
    last = aggregator.flush(START + 7)
    assert last is not None
    assert last.losses == LossCounts(hw_tail_drops=4, socket_dropped=1)


def test_socket_drops_alone_make_a_window_lossy() -> None:
    aggregator = IntervalAggregator(5, START)
    aggregator.add_losses(socket_dropped=3, now=START + 1)
    [closed] = aggregator.tick(START + 5)
    assert closed.losses.any and not closed.quiet
    assert closed.losses.socket_dropped == 3


def test_negative_losses_are_refused() -> None:
    with pytest.raises(ValueError):
        IntervalAggregator(5, START).add_losses(enobufs=-1, now=START)
    with pytest.raises(ValueError):
        IntervalAggregator(5, START).add_losses(socket_dropped=-1, now=START)


# --- determinism


_events = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=60, allow_nan=False),
        st.sampled_from([0, UNIX_STREAM_RECVMSG, TUN_DO_READ, 0xFFFFFFFF81000000]),
        st.integers(min_value=0, max_value=1000),
    ),
    max_size=40,
).map(sorted)


def _run(
    events: list[tuple[float, int, int]], ticks: list[float], interval: float, end: float
) -> list[IntervalSummary]:
    aggregator = IntervalAggregator(interval, START)
    closed: list[IntervalSummary] = []
    pending_ticks = sorted(ticks)
    for offset, pc, count in events:
        while pending_ticks and pending_ticks[0] <= offset:
            closed += aggregator.tick(START + pending_ticks.pop(0))
        closed += aggregator.add_summary(summary((pc, count)), START + offset)
    last = aggregator.flush(START + end)
    return closed + ([last] if last is not None else [])


@settings(max_examples=200, deadline=None)
@given(
    events=_events,
    ticks=st.lists(st.floats(min_value=0, max_value=60, allow_nan=False), max_size=20),
    interval=st.sampled_from([0.5, 1.0, 5.0, 7.3]),
)
def test_same_inputs_same_windows_and_no_drop_lost(
    events: list[tuple[float, int, int]], ticks: list[float], interval: float
) -> None:
    windows = _run(events, ticks, interval, end=61)
    assert windows == _run(events, ticks, interval, end=61)
    assert sum(w.total for w in windows) == sum(count for _t, _pc, count in events)
    assert windows[0].start == START
    for earlier, later in zip(windows, windows[1:], strict=False):
        assert earlier.end == later.start
        assert not earlier.partial
    for window in windows:
        steps = (window.start - START) / interval
        assert abs(steps - round(steps)) < 1e-6
        assert window.end > window.start
        assert len({entry.location for entry in window.entries}) == len(window.entries)
    # Extra ticks only split quiet stretches differently: the windows with drops are the same.
    without_ticks = _run(events, [], interval, end=61)
    assert [w for w in windows if not w.quiet] == [w for w in without_ticks if not w.quiet]
