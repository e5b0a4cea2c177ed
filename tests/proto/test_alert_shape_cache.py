"""The shape cache of full decoding equals the full decoder: events, errors, bounds.

Strategy: ``PacketAlertDecoder.decode`` must return exactly what
``decode_datagram`` (itself proven equal to the construct definitions in
test_proto_equivalence.py) returns for the same bytes: equal events, or
ProtocolError at the same offset with the same sentence.  It is fed generated
datagrams, mutated ones and noise, and above all *look-alikes*: datagrams of a
length it has learnt that differ from a learnt one in a few bytes, or in one
byte anywhere, so that every byte of a shape is tried both ways (a cache hit
must give the decoder's events with the new values; a changed header must not
be taken for the learnt one).  Then the pipeline with the cache is held to the
pipeline without it, and a storm replay to its output without the cache.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

import netdm.proto.alert_cache as alert_cache
from netdm.capture import read_capture, read_symbols
from netdm.engine.aggregate import IntervalAggregator, IntervalSummary
from netdm.engine.session import DatagramDecoder, NetDmDecoder, Pipeline, replay_capture
from netdm.engine.symbols import SymbolTable
from netdm.output.render import PacketPrinter, make_renderer
from netdm.proto import PacketAlert, ProtocolError, decode_datagram
from netdm.proto.alert_cache import PacketAlertDecoder
from netdm.proto.constants import NLA_F_NESTED, Attr, Cmd, Origin
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


@st.composite
def decoder_sessions(draw: Any) -> tuple[int, list[bytes]]:
    """A family id and a stream for one decoder: a few datagrams, then mostly look-alikes."""
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
            stream.append(build_message(draw(any_message(family_id, raw=True)), family_id))
    return family_id, stream


# --------------------------------------------------------------------------- the contract

Outcome = tuple[str, Any]


def _outcome(decode: Callable[[Any], list[Any]], data: Any) -> Outcome:
    try:
        return ("events", decode(data))
    except ProtocolError as error:
        return ("error", (error.offset, str(error)))


def assert_decodes_alike(decoder: PacketAlertDecoder, data: Any) -> Outcome:
    """The contract: what decode_datagram says about ``data``, events or error."""
    expected = _outcome(lambda datagram: decode_datagram(datagram, decoder.family_id), data)
    found = _outcome(decoder.decode, data)
    assert found == expected, bytes(data).hex()
    if found[0] == "events":  # == compares classes too; payloads must be bytes, as decoded
        for event, reference in zip(found[1], expected[1], strict=True):
            assert type(event) is type(reference)
            if isinstance(event, PacketAlert):
                assert type(event.payload) is type(reference.payload)  # type: ignore[union-attr]
    return found


@contextmanager
def full_decodes() -> Iterator[mock.MagicMock]:
    """Count the datagrams the cache hands to decode_datagram (the misses)."""
    with mock.patch.object(alert_cache, "decode_datagram", wraps=decode_datagram) as spy:
        yield spy


@example_budget(200)
@given(packet_alert_datagrams())
def test_packet_alerts_decode_as_the_full_decoder_learnt_and_remembered(
    case: tuple[int, bytes],
) -> None:
    family_id, data = case
    decoder = PacketAlertDecoder(family_id)
    with full_decodes() as spy:
        assert assert_decodes_alike(decoder, data)[0] == "events"  # learnt
        assert_decodes_alike(decoder, data)  # remembered
        assert spy.call_count == (1 if decoder.memory.remembered else 2)
    assert decoder.memory.remembered or len(data) > alert_cache.MAX_SHAPE_BYTES


@example_budget(100)
@given(datagrams(raw=True))
def test_other_datagrams_are_left_to_the_full_decoder(case: tuple[int, bytes]) -> None:
    family_id, data = case
    decoder = PacketAlertDecoder(family_id)
    assert_decodes_alike(decoder, data)
    assert_decodes_alike(decoder, data)


@example_budget(250)
@given(mutated(packet_alert_datagrams(max_messages=2)))
def test_damaged_packet_alerts_fail_where_the_full_decoder_fails(case: tuple[int, bytes]) -> None:
    family_id, data = case
    assert_decodes_alike(PacketAlertDecoder(family_id), data)


@example_budget(200)
@given(headed_noise())
def test_noise_behind_a_valid_header_fails_where_the_full_decoder_fails(
    case: tuple[int, bytes],
) -> None:
    family_id, data = case
    assert_decodes_alike(PacketAlertDecoder(family_id), data)


@example_budget(250)
@given(decoder_sessions())
def test_look_alikes_of_learnt_datagrams_decode_as_the_full_decoder(
    case: tuple[int, list[bytes]],
) -> None:
    """Values changed (a hit, new values), headers changed (a new walk, or damage)."""
    family_id, stream = case
    decoder = PacketAlertDecoder(family_id)
    for data in stream:
        assert_decodes_alike(decoder, data)


@example_budget(150)
@given(mutated(packet_alert_datagrams(max_messages=2)), st.data())
def test_learnt_then_damaged(case: tuple[int, bytes], data: st.DataObject) -> None:
    """A damaged datagram after its undamaged look-alike was learnt (any length)."""
    family_id, damaged = case
    learnt = data.draw(packet_alert_datagrams(family_id, max_messages=2))[1]
    decoder = PacketAlertDecoder(family_id)
    for datagram in (learnt, damaged, learnt, damaged):
        assert_decodes_alike(decoder, datagram)


def _alert(**changes: Any) -> PacketAlert:
    real = PacketAlert(
        origin=Origin.SW,
        pc=0xFFFFFFFF818BCAE2,
        symbol="__udp4_lib_rcv+0x9a2/0xc30",
        reason="NO_SOCKET",
        in_port=InPort(ifindex=1),
        timestamp_ns=1_795_695_353_217_291_300,
        proto=0x0800,
        payload=bytes(range(64)),
        orig_len=142,
    )
    return dataclasses.replace(real, **changes)


def _real_alert_datagrams() -> list[bytes]:
    """The 21 PACKET_ALERT datagrams a 6.1 kernel sent (captures/packet-udp-loopback)."""
    with read_capture(CAPTURES / "packet-udp-loopback.pcapng") as reader:
        records = [record.data for record in reader if not record.outgoing]
    alerts = [data for data in records if len(data) > 20 and data[16] == Cmd.PACKET_ALERT]
    assert len(alerts) >= 10
    return alerts


def _odd_alert() -> bytes:
    """An alert with everything the kernel may send, and more: a hardware drop's names,
    a named interface with an unknown child, a cookie, PAD, an unknown attribute, and a
    repeated timestamp and payload (the last ones count)."""
    alert = _alert(
        origin=Origin.HW,
        hw_trap_group_name="l3_drops",
        hw_trap_name="blackhole_route",
        in_port=InPort(7, "eth0", (RawAttribute(9, b"zz"),)),
        flow_action_cookie=b"\x01\x02\x03",
        unknown_attributes=(RawAttribute(200 | NLA_F_NESTED, b"xy"),),
    )
    data = build_packet_alert(FAMILY_ID, alert, pad_u64=True)
    extra = b"".join(
        part + b"\x00" * (-len(part) % 4)
        for part in (
            (12).to_bytes(2, "little") + Attr.TIMESTAMP.to_bytes(2, "little") + bytes(range(8)),
            (7).to_bytes(2, "little") + Attr.PAYLOAD.to_bytes(2, "little") + b"abc",
            (4).to_bytes(2, "little") + Attr.PAD.to_bytes(2, "little"),
        )
    )
    data = data + extra
    return len(data).to_bytes(4, "little") + data[4:]


def _one_byte_look_alikes(data: bytes) -> Iterator[bytes]:
    for at in range(len(data)):
        for new in {data[at] ^ 0x01, data[at] ^ 0x80, 0x00, 0xFF} - {data[at]}:
            yield data[:at] + bytes([new]) + data[at + 1 :]


@pytest.mark.parametrize("source", ["real", "odd"])
def test_every_byte_of_a_learnt_datagram_changed_decodes_as_the_full_decoder(source: str) -> None:
    """Each byte of a learnt datagram changed in turn: every shape byte is tried both ways."""
    bases = _real_alert_datagrams()[:4] if source == "real" else [_odd_alert()]
    for base in bases:
        hits = 0
        for look_alike in _one_byte_look_alikes(base):
            decoder = PacketAlertDecoder(FAMILY_ID if source == "odd" else _family_of(base))
            assert_decodes_alike(decoder, base)
            with full_decodes() as spy:
                assert_decodes_alike(decoder, look_alike)
                hits += spy.call_count == 0
        assert hits  # some bytes were varying values: remembered shapes answered for them


def _family_of(data: bytes) -> int:
    return int.from_bytes(data[4:6], "little")


def test_what_varies_is_read_and_what_does_not_is_remembered() -> None:
    decoder = PacketAlertDecoder(FAMILY_ID)
    first = build_packet_alert(FAMILY_ID, _alert())
    second = build_packet_alert(
        FAMILY_ID, _alert(timestamp_ns=42, payload=bytes(64), orig_len=9000)
    )
    with full_decodes() as spy:
        [alert] = assert_decodes_alike(decoder, first)[1]
        [again] = assert_decodes_alike(decoder, second)[1]
    assert spy.call_count == 1
    assert (again.timestamp_ns, again.payload, again.orig_len) == (42, bytes(64), 9000)
    assert again.in_port is alert.in_port and again.symbol is alert.symbol  # remembered
    for other in (_alert(pc=1), _alert(in_port=InPort(2)), _alert(proto=0x86DD)):
        assert_decodes_alike(decoder, build_packet_alert(FAMILY_ID, other))


def test_layouts_of_one_length_take_turns() -> None:
    """Same length, values elsewhere (a longer symbol, a shorter payload), interleaved."""
    decoder = PacketAlertDecoder(FAMILY_ID)
    first = build_packet_alert(FAMILY_ID, _alert(symbol="abcd+0x1/0x2", payload=bytes(64)))
    second = build_packet_alert(FAMILY_ID, _alert(symbol="abcdefgh+0x1/0x2", payload=bytes(60)))
    assert len(first) == len(second)
    with full_decodes() as spy:
        for data in [first, second] * 3 + [second, first]:
            assert_decodes_alike(decoder, data)
    assert len(decoder.memory.by_length[len(first)]) == 2
    assert spy.call_count == 2  # each decoded in full once, then remembered


@pytest.mark.parametrize("kind", ["timestamp_ns", "orig_len"])
def test_a_value_of_another_kind_in_the_same_place_is_read_as_its_kind(kind: str) -> None:
    """A cookie where a look-alike had its timestamp (or orig_len): same length, same
    spans, but bytes to read, not a number."""
    size = 8 if kind == "timestamp_ns" else 4
    number = _alert(**{kind: 0x0102030405060708 % 2 ** (8 * size)})
    if kind == "orig_len":  # the cookie goes where orig_len was: before the timestamp
        number = dataclasses.replace(number, timestamp_ns=None)
    cookie = dataclasses.replace(number, **{kind: None}, flow_action_cookie=bytes(size))
    decoder = PacketAlertDecoder(FAMILY_ID)
    for alert in (number, cookie, dataclasses.replace(cookie, flow_action_cookie=b"\xff" * size)):
        data = build_packet_alert(FAMILY_ID, alert)
        assert len(data) == len(build_packet_alert(FAMILY_ID, number))
        assert assert_decodes_alike(decoder, data)[1] == [alert]


def test_wrong_sized_varying_values_still_fail() -> None:
    """A timestamp of 4 bytes, an orig_len of 8: errors, after the right sizes were learnt."""
    good = build_packet_alert(FAMILY_ID, _alert())
    decoder = PacketAlertDecoder(FAMILY_ID)
    assert_decodes_alike(decoder, good)
    for kind, size in ((Attr.TIMESTAMP, 8), (Attr.ORIG_LEN, 4)):
        at = good.find((4 + size).to_bytes(2, "little") + kind.to_bytes(2, "little"))
        for wrong in (size - 4, size + 4):
            damaged = good[:at] + (4 + wrong).to_bytes(2, "little") + good[at + 2 :]
            assert assert_decodes_alike(decoder, damaged)[0] == "error"


def test_buffers_other_than_bytes_decode_alike() -> None:
    data = build_packet_alert(FAMILY_ID, _alert())
    decoder = PacketAlertDecoder(FAMILY_ID)
    for buffer in (bytearray(data), memoryview(data), data, memoryview(data).cast("H")):
        assert_decodes_alike(decoder, buffer)
        assert_decodes_alike(decoder, buffer)


def test_built_alerts_are_alerts(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the generated builders make: PacketAlert, frozen, hashable, equal; and the
    constructor when PacketAlert is no longer a plain slotted dataclass."""
    data = _odd_alert()
    expected = decode_datagram(data, FAMILY_ID)
    decoder = PacketAlertDecoder(FAMILY_ID)
    decoder.decode(data)
    [alert] = decoder.decode(data)
    assert [alert] == expected and hash(alert) == hash(expected[0])
    with pytest.raises(dataclasses.FrozenInstanceError):
        alert.pc = 1  # type: ignore[misc]
    monkeypatch.setattr(alert_cache, "_BUILDERS", {})
    monkeypatch.setattr(PacketAlert, "__post_init__", lambda self: None, raising=False)
    builder = alert_cache._builder(((5, 0),))
    assert "new" not in builder.__code__.co_names  # the constructor, not the slots
    assert builder(tuple(range(13)), ("new",)) == PacketAlert(*range(5), "new", *range(6, 13))


# --------------------------------------------------------------------------- bounds


def test_the_decoder_stops_learning_when_full_and_starts_over_later() -> None:
    decoder = PacketAlertDecoder(FAMILY_ID, ShapeMemory(max_shapes=4, forget_after_misses=3))
    stream = [build_packet_alert(FAMILY_ID, _alert(pc=pc)) for pc in range(12)]
    remembered = []
    for data in stream + stream:
        assert_decodes_alike(decoder, data)
        remembered.append(decoder.memory.remembered)
    # 4 learnt, then 3 decoded in full (the third of which starts over): 1, 2, ...
    assert remembered[:8] == [1, 2, 3, 4, 4, 4, 1, 2]
    assert max(remembered) == 4


def test_a_full_decoder_takes_no_more_memory() -> None:
    decoder = PacketAlertDecoder(FAMILY_ID)
    for pc in range(MAX_REMEMBERED_SHAPES + 10):
        assert_decodes_alike(decoder, build_packet_alert(FAMILY_ID, _alert(pc=pc)))
    assert decoder.memory.remembered == MAX_REMEMBERED_SHAPES
    layouts = decoder.memory.by_format.values()
    assert sum(len(known) for _, _, known in layouts) == MAX_REMEMBERED_SHAPES


def test_long_shapes_are_not_remembered() -> None:
    """Strings and unknown attributes are part of a shape: a long one is not kept."""
    decoder = PacketAlertDecoder(FAMILY_ID)
    big = RawAttribute(300, bytes(alert_cache.MAX_SHAPE_BYTES))
    data = build_packet_alert(FAMILY_ID, _alert(unknown_attributes=(big,)))
    with full_decodes() as spy:
        assert_decodes_alike(decoder, data)
        assert_decodes_alike(decoder, data)
    assert spy.call_count == 2 and decoder.memory.remembered == 0
    # A long payload is no part of a shape: remembered.
    assert_decodes_alike(decoder, build_packet_alert(FAMILY_ID, _alert(payload=bytes(1500))))
    assert decoder.memory.remembered == 1


def test_builders_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alert_cache, "_BUILDERS", {})
    monkeypatch.setattr(alert_cache, "_MAX_BUILDERS", 3)
    for value in range(10):
        builder = alert_cache._builder(((5, value),))
        values = (None,) * value + (value,)
        assert builder((None,) * 13, values).timestamp_ns == value
        assert len(alert_cache._BUILDERS) <= 3


@example_budget(100)
@given(
    st.lists(
        st.tuples(st.integers(0, 12), st.integers(0, 5)), max_size=6, unique_by=lambda s: s[0]
    ),
    st.lists(st.integers(), min_size=13, max_size=13),
    st.lists(st.integers(), min_size=6, max_size=6),
)
def test_a_builder_is_the_constructor(
    slots: list[tuple[int, int]], constants: list[int], values: list[int]
) -> None:
    arguments = list(constants)
    for argument, value in slots:
        arguments[argument] = values[value]
    built = alert_cache._builder(tuple(slots))(tuple(constants), tuple(values))
    assert built == PacketAlert(*arguments) and type(built) is PacketAlert


# --------------------------------------------------------------------------- the pipeline


def _run(
    stream: list[bytes], family_id: int, *, cache: bool
) -> tuple[list[PacketAlert], list[IntervalSummary], Pipeline]:
    alerts: list[PacketAlert] = []
    summaries: list[IntervalSummary] = []
    aggregator = IntervalAggregator(interval=1.0, start=0.0)
    pipeline = Pipeline(
        NetDmDecoder(family_id), aggregator, summaries.append, on_packet=alerts.append
    )
    if not cache:
        pipeline._decode = lambda datagram: decode_datagram(datagram, family_id)
    for index, data in enumerate(stream):
        pipeline.feed(data, index * 0.4)
    pipeline.finish(len(stream) * 0.4)
    return alerts, summaries, pipeline


@st.composite
def pipeline_streams(draw: Any) -> tuple[int, list[bytes]]:
    """Packet alerts (some remembered, some damaged) among replies, summaries and noise."""
    family_id, stream = draw(decoder_sessions())
    stream += [
        build_stats_new(family_id, StatsReply(0, draw(st.integers(0, 9)), 0)),
        build_summary_alert(family_id, [DropPoint(0xFFFFFFFF81000000, 3)]),
    ]
    return family_id, draw(st.permutations(stream))


@example_budget(100)
@given(pipeline_streams())
def test_pipelines_with_and_without_the_cache_agree(case: tuple[int, list[bytes]]) -> None:
    family_id, stream = case
    cached_alerts, cached_summaries, cached = _run(stream, family_id, cache=True)
    alerts, summaries, plain = _run(stream, family_id, cache=False)
    assert cached_alerts == alerts
    assert cached_summaries == summaries
    assert cached.totals == plain.totals and cached.addresses == plain.addresses


def test_the_full_path_uses_the_cache() -> None:
    aggregator = IntervalAggregator(interval=5.0, start=0.0)
    pipeline = Pipeline(NetDmDecoder(FAMILY_ID), aggregator, print, on_packet=lambda alert: None)
    assert not pipeline.lazy
    data = build_packet_alert(FAMILY_ID, _alert())
    with full_decodes() as spy:
        for _ in range(3):
            pipeline.feed(data, 1.0)
    assert spy.call_count == 1


def _replay_json(path: Path, *, cache: bool, payload_encoding: str = "hex") -> str:
    out = io.StringIO()
    symbols = SymbolTable.from_kallsyms_text(read_symbols(path), source_description="test")
    renderer = make_renderer(json_lines=True, out=out, symbols=symbols)
    printer = PacketPrinter(out, symbols, json_lines=True, payload_encoding=payload_encoding)

    def new_pipeline(decoder: DatagramDecoder, start: float) -> Pipeline:
        aggregator = IntervalAggregator(interval=2.0, start=start)
        pipeline = Pipeline(decoder, aggregator, renderer.interval, on_packet=printer.packet)
        if not cache:
            assert isinstance(decoder, NetDmDecoder)
            family_id = decoder.family_id
            pipeline._decode = lambda datagram: decode_datagram(datagram, family_id)
        return pipeline

    renderer.start()
    result = replay_capture(lambda: read_capture(path), new_pipeline)
    renderer.stop(result.totals)
    return out.getvalue()


def test_replays_print_the_same_json_with_and_without_the_cache(tmp_path: Path) -> None:
    from benchmarks.storm_capture import write_storm

    storm = write_storm(tmp_path / "storm.pcapng", 3000).path
    whole = write_storm(tmp_path / "whole.pcapng", 300, whole_packets=True).path
    for path, encoding in (
        (CAPTURES / "packet-udp-loopback.pcapng", "hex"),
        (storm, "hex"),
        (whole, "base64"),
    ):
        cached = _replay_json(path, cache=True, payload_encoding=encoding)
        assert cached == _replay_json(path, cache=False, payload_encoding=encoding)
        assert cached.count('"type":"packet"') >= 21
