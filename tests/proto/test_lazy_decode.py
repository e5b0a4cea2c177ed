"""The lazy summary path equals the full decoder: drop sites, errors and summaries.

Strategy: ``scan_drop_sites`` reads only what a summary key needs, and
``DropSiteScanner`` skips even that for datagrams shaped like one it has seen.
Both are held to ``decode_datagram`` (itself proven equal to the construct
definitions in test_proto_equivalence.py) on generated datagrams, mutated ones
and noise: the same drop sites, or ProtocolError at the same offset with the
same sentence, or (``None``) a datagram that is not all packet alerts.  Then
the pipeline is held to itself: the lazy and the full path give the same
summaries, totals and addresses, and ``netdm watch -r`` prints the same bytes.
"""

from __future__ import annotations

import dataclasses
import io
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netdm.capture import read_capture, read_symbols
from netdm.engine.aggregate import IntervalAggregator, IntervalSummary, packet_location
from netdm.engine.session import DatagramDecoder, NetDmDecoder, Pipeline, replay_capture
from netdm.engine.symbols import SymbolTable
from netdm.output.render import make_renderer
from netdm.proto import PacketAlert, ProtocolError, decode_datagram
from netdm.proto.constants import NLA_F_NESTED, Attr, Origin, PortAttr
from netdm.proto.decode import DropSite, DropSiteScanner, scan_drop_sites
from netdm.proto.encode import build_packet_alert, build_stats_new, build_summary_alert
from netdm.proto.events import DropPoint, InPort, RawAttribute, StatsReply
from netdm.proto.shapes import MAX_REMEMBERED_SHAPES, ShapeMemory
from tests.proto.netdm_proto_strategies import (
    any_message,
    build_message,
    datagrams,
    example_budget,
    family_ids,
    headed_noise,
    mutated,
    packet_alert_datagrams,
    same_length_variant,
)

CAPTURES = Path(__file__).resolve().parents[2] / "captures"
FAMILY_ID = 0x20

# --------------------------------------------------------------------------- strategies


def _mixed(family_id: int) -> st.SearchStrategy[bytes]:
    """Any message of the family's world, as a one-message datagram."""
    return any_message(family_id).map(lambda message: build_message(message, family_id))


# --------------------------------------------------------------------------- the contract


Outcome = tuple[str, Any]


def _full(data: bytes, family_id: int) -> Outcome:
    try:
        return ("events", decode_datagram(data, family_id))
    except ProtocolError as error:
        return ("error", (error.offset, str(error)))


def _lazy(scan: Any, data: bytes) -> Outcome:
    try:
        sites = scan(data)
    except ProtocolError as error:
        return ("error", (error.offset, str(error)))
    return ("not packet alerts", None) if sites is None else ("sites", sites)


def assert_agrees(lazy: Outcome, full: Outcome, data: bytes) -> None:
    """The contract of scan_drop_sites, as its docstring states it."""
    context = data.hex()
    only_packet_alerts = full[0] == "events" and all(
        isinstance(event, PacketAlert) for event in full[1]
    )
    if lazy[0] == "error":
        assert full == lazy, context  # same offset, same sentence
    elif lazy[0] == "sites":
        assert only_packet_alerts, context
        assert lazy[1] == tuple(DropSite.of(alert) for alert in full[1]), context
    else:  # gave up: then the full decoder must have something else to say
        assert not only_packet_alerts, context


def assert_scan_agrees(data: bytes, family_id: int) -> Outcome:
    lazy = _lazy(lambda datagram: scan_drop_sites(datagram, family_id), data)
    assert_agrees(lazy, _full(data, family_id), data)
    return lazy


@example_budget(150)
@given(packet_alert_datagrams())
def test_packet_alerts_give_the_full_decoders_drop_sites(case: tuple[int, bytes]) -> None:
    """Unknown types, PAD, NLA_F_NESTED/NET_BYTEORDER, repeats, raw strings, several messages."""
    family_id, data = case
    kind, sites = assert_scan_agrees(data, family_id)
    assert kind == "sites" and sites


@example_budget(100)
@given(datagrams(raw=True))
def test_other_datagrams_are_left_to_the_full_decoder(case: tuple[int, bytes]) -> None:
    family_id, data = case
    assert_scan_agrees(data, family_id)


@example_budget(250)
@given(mutated(packet_alert_datagrams(max_messages=2)))
def test_damaged_packet_alerts_fail_where_the_full_decoder_fails(case: tuple[int, bytes]) -> None:
    family_id, data = case
    assert_scan_agrees(data, family_id)


@example_budget(150)
@given(mutated(datagrams(raw=True, max_messages=2)))
def test_damaged_datagrams_fail_where_the_full_decoder_fails(case: tuple[int, bytes]) -> None:
    family_id, data = case
    assert_scan_agrees(data, family_id)


@example_budget(300)
@given(headed_noise())
def test_noise_behind_a_valid_header_fails_where_the_full_decoder_fails(
    case: tuple[int, bytes],
) -> None:
    family_id, data = case
    assert_scan_agrees(data, family_id)


# --------------------------------------------------------------------------- remembering scanner


@st.composite
def scanner_sessions(draw: Any) -> tuple[int, list[bytes]]:
    """A family id and a stream for one scanner: a few datagrams, then mostly look-alikes.

    Look-alikes have the length of one seen before and differ from it in a few
    bytes: where no decision depends on them (a cache hit must give the same
    sites), in a value a drop site is made of (a different site), or in a header
    (a different walk, or damage).
    """
    family_id = draw(family_ids)
    bases = [
        data
        for _, data in draw(
            st.lists(packet_alert_datagrams(family_id, max_messages=2), min_size=1, max_size=3)
        )
    ]
    stream = list(bases)
    for _ in range(draw(st.integers(1, 12))):
        choice = draw(st.integers(0, 9))
        base = draw(st.sampled_from(bases))
        if choice < 7:
            stream.append(same_length_variant(base, draw))
        elif choice < 9:
            stream.append(base)
        else:
            stream.append(draw(_mixed(family_id)))
    return family_id, stream


@example_budget(150)
@given(scanner_sessions())
def test_remembered_shapes_give_what_a_full_scan_gives(case: tuple[int, list[bytes]]) -> None:
    family_id, stream = case
    scanner = DropSiteScanner(family_id)
    for data in stream:
        lazy = _lazy(scanner.scan, data)
        assert lazy == _lazy(lambda datagram: scan_drop_sites(datagram, family_id), data)
        assert_agrees(lazy, _full(data, family_id), data)


def _alert(**changes: Any) -> PacketAlert:
    real = PacketAlert(
        origin=Origin.SW,
        pc=0xFFFFFFFF818BCAE2,
        symbol="__udp4_lib_rcv+0x9a2/0xc30",
        reason="NO_SOCKET",
        in_port=InPort(ifindex=1),
        timestamp_ns=1_795_695_353_217_291_300,
        proto=0x0800,
        payload=bytes(64),
        orig_len=142,
    )
    return dataclasses.replace(real, **changes)


def test_a_look_alike_of_another_layout_is_not_taken_for_the_one_seen() -> None:
    """Same length, same bytes where the first one had its drop site: a different walk."""
    scanner = DropSiteScanner(FAMILY_ID)
    first = build_packet_alert(FAMILY_ID, _alert(symbol="abcd+0x1/0x2", reason="NO_SOCKET"))
    # The symbol four bytes longer and the reason four shorter: the same length.
    second = build_packet_alert(FAMILY_ID, _alert(symbol="abcdefgh+0x1/0x2", reason="NO_SO"))
    assert len(first) == len(second)
    assert scanner.scan(first) == (DropSite.of(decode_datagram(first, FAMILY_ID)[0]),)  # type: ignore[arg-type]
    assert scanner.scan(second) == (DropSite(0, _alert().pc, "abcdefgh+0x1/0x2", "NO_SO"),)


def test_what_a_drop_site_is_not_made_of_does_not_matter() -> None:
    """Timestamp, packet, interface, unknown and PAD values: a remembered shape answers."""
    scanner = DropSiteScanner(FAMILY_ID)
    extra = (RawAttribute(Attr.PAD, bytes(4)), RawAttribute(200 | NLA_F_NESTED, b"xy"))
    first = _alert(in_port=InPort(1, "lo"), unknown_attributes=extra)
    second = _alert(
        in_port=InPort(7, "ab"),
        timestamp_ns=42,
        payload=bytes(range(64)),
        orig_len=9000,
        proto=0x86DD,
        unknown_attributes=(
            RawAttribute(Attr.PAD, b"\x01\x02\x03\x04"),
            RawAttribute(200 | NLA_F_NESTED, b"zz"),
        ),
    )
    sites = scanner.scan(build_packet_alert(FAMILY_ID, first))
    assert scanner.scan(build_packet_alert(FAMILY_ID, second)) is sites  # the remembered tuple
    assert scanner.memory.remembered == 1


def test_wrong_sized_values_a_drop_site_skips_still_fail() -> None:
    """A timestamp of 4 bytes or a broken IN_PORT nest is an error on both paths."""
    good = build_packet_alert(FAMILY_ID, _alert())
    timestamp_at = good.find(struct.pack("<HH", 12, Attr.TIMESTAMP))
    short_timestamp = (
        good[:timestamp_at] + struct.pack("<HH", 8, Attr.TIMESTAMP) + good[timestamp_at + 4 :]
    )
    port_at = good.find(struct.pack("<HH", 8, PortAttr.NETDEV_IFINDEX))
    broken_port = (
        good[:port_at] + struct.pack("<HH", 9, PortAttr.NETDEV_IFINDEX) + good[port_at + 4 :]
    )
    for data in (short_timestamp, broken_port):
        scanner = DropSiteScanner(FAMILY_ID)
        scanner.scan(good)  # its shape is remembered: the damage must not be taken for it
        assert _lazy(scanner.scan, data)[0] == "error"
        assert_agrees(_lazy(scanner.scan, data), _full(data, FAMILY_ID), data)


def test_buffers_other_than_bytes_are_scanned_alike() -> None:
    data = build_packet_alert(FAMILY_ID, _alert())
    scanner = DropSiteScanner(FAMILY_ID)
    expected = scan_drop_sites(data, FAMILY_ID)
    assert scanner.scan(bytearray(data)) == expected
    assert scanner.scan(memoryview(data)) == expected
    assert scan_drop_sites(memoryview(data), FAMILY_ID) == expected


def test_layouts_of_one_length_take_turns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two sites whose datagrams have the same length but not the same layout, interleaved."""
    first = build_packet_alert(FAMILY_ID, _alert(symbol="abcd+0x1/0x2", reason="NO_SOCKET"))
    second = build_packet_alert(FAMILY_ID, _alert(symbol="abcdefgh+0x1/0x2", reason="NO_SO"))
    scanner = DropSiteScanner(FAMILY_ID)
    learnt: list[bytes] = []
    remember = scanner._scan_and_remember

    def scan_and_remember(data: bytes) -> tuple[DropSite, ...] | None:
        learnt.append(data)
        return remember(data)

    monkeypatch.setattr(scanner, "_scan_and_remember", scan_and_remember)
    for data in [first, second] * 3 + [second, first]:
        assert scanner.scan(data) == scan_drop_sites(data, FAMILY_ID)
    assert learnt == [first, second]  # each scanned in full once, then remembered


def test_the_scanner_stops_learning_when_full_and_starts_over_later() -> None:
    scanner = DropSiteScanner(FAMILY_ID, ShapeMemory(max_shapes=4, forget_after_misses=3))
    stream = [build_packet_alert(FAMILY_ID, _alert(pc=pc, symbol=None)) for pc in range(12)]
    remembered = []
    for data in stream + stream:
        assert scanner.scan(data) == scan_drop_sites(data, FAMILY_ID)
        remembered.append(scanner.memory.remembered)
    # 4 learnt, then 3 scanned in full (the third of which starts over): 1, 2, ...
    assert remembered[:8] == [1, 2, 3, 4, 4, 4, 1, 2]
    assert max(remembered) == 4


def test_a_full_scanner_takes_no_more_memory() -> None:
    scanner = DropSiteScanner(FAMILY_ID)
    for pc in range(MAX_REMEMBERED_SHAPES + 10):
        data = build_packet_alert(FAMILY_ID, _alert(pc=pc, symbol=None))
        assert scanner.scan(data) == (DropSite(0, pc, None, "NO_SOCKET"),)
    assert scanner.memory.remembered == MAX_REMEMBERED_SHAPES
    layouts = scanner.memory.by_format.values()
    assert sum(len(known) for _, known in layouts) == MAX_REMEMBERED_SHAPES


# --------------------------------------------------------------------------- the pipeline


def _run(
    stream: list[bytes], family_id: int, *, need_packets: bool | None, by_reason: bool
) -> tuple[Pipeline, list[IntervalSummary]]:
    summaries: list[IntervalSummary] = []
    aggregator = IntervalAggregator(interval=1.0, start=0.0, by_reason=by_reason)
    pipeline = Pipeline(
        NetDmDecoder(family_id), aggregator, summaries.append, need_packets=need_packets
    )
    for index, data in enumerate(stream):
        pipeline.feed(data, index * 0.4)
    pipeline.finish(len(stream) * 0.4)
    return pipeline, summaries


@st.composite
def pipeline_streams(draw: Any) -> tuple[int, list[bytes]]:
    """Packet alerts (some remembered, some damaged) among replies, summaries and noise."""
    family_id, stream = draw(scanner_sessions())
    stream += [
        build_stats_new(family_id, StatsReply(0, draw(st.integers(0, 9)), 0)),
        build_summary_alert(family_id, [DropPoint(0xFFFFFFFF81000000, 3)]),
    ]
    return family_id, draw(st.permutations(stream))


@example_budget(100)
@given(pipeline_streams(), st.booleans())
def test_lazy_and_full_pipelines_give_the_same_summaries(
    case: tuple[int, list[bytes]], by_reason: bool
) -> None:
    family_id, stream = case
    lazy, lazy_summaries = _run(stream, family_id, need_packets=None, by_reason=by_reason)
    full, full_summaries = _run(stream, family_id, need_packets=True, by_reason=by_reason)
    assert lazy.lazy and not full.lazy
    assert lazy_summaries == full_summaries
    assert lazy.totals == full.totals
    assert lazy.addresses == full.addresses


def test_the_pipeline_takes_the_lazy_path_only_when_nothing_needs_the_packet() -> None:
    def aggregator(**options: Any) -> IntervalAggregator:
        return IntervalAggregator(interval=5.0, start=0.0, **options)

    assert Pipeline(NetDmDecoder(FAMILY_ID), aggregator(), print).lazy
    assert Pipeline(NetDmDecoder(FAMILY_ID), aggregator(by_reason=True), print).lazy
    assert not Pipeline(NetDmDecoder(FAMILY_ID), aggregator(), print, on_packet=print).lazy
    assert not Pipeline(NetDmDecoder(FAMILY_ID), aggregator(), print, packet_filter=bool).lazy
    assert not Pipeline(NetDmDecoder(FAMILY_ID), aggregator(key=packet_location), print).lazy
    assert not Pipeline(NetDmDecoder(FAMILY_ID), aggregator(), print, need_packets=True).lazy
    with pytest.raises(ValueError, match="need_packets"):
        Pipeline(NetDmDecoder(FAMILY_ID), aggregator(), print, on_packet=print, need_packets=False)


def _replay(path: Path, *, json_lines: bool, need_packets: bool | None) -> str:
    out = io.StringIO()
    symbols = SymbolTable.from_kallsyms_text(read_symbols(path), source_description="test")
    renderer = make_renderer(json_lines=json_lines, out=out, symbols=symbols)

    def new_pipeline(decoder: DatagramDecoder, start: float) -> Pipeline:
        aggregator = IntervalAggregator(interval=2.0, start=start)
        return Pipeline(decoder, aggregator, renderer.interval, need_packets=need_packets)

    renderer.start()
    result = replay_capture(lambda: read_capture(path), new_pipeline)
    renderer.stop(result.totals)
    return out.getvalue()


@pytest.mark.parametrize("json_lines", [False, True])
def test_replays_of_real_and_storm_captures_print_the_same_bytes(
    tmp_path: Path, json_lines: bool
) -> None:
    from benchmarks.storm_capture import write_storm

    storm = write_storm(tmp_path / "storm.pcapng", 3000).path
    for path in (CAPTURES / "packet-udp-loopback.pcapng", storm):
        lazy = _replay(path, json_lines=json_lines, need_packets=None)
        assert lazy == _replay(path, json_lines=json_lines, need_packets=True)
        assert "__udp4_lib_rcv" in lazy
