"""Encoding: requests byte for byte, and kernel-side builders round-tripping through both decoders.

Strategy: requests are few and small, so their bytes are written out in full.
The kernel-side builders are checked by property: any event built into bytes
decodes, with the fast and the construct decoder alike, to the same event.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netdm.proto import (
    Ack,
    ConfigReply,
    Done,
    DropPoint,
    ErrorReply,
    Event,
    FamilyInfo,
    HardwareEntry,
    InPort,
    PacketAlert,
    RawAttribute,
    StatsReply,
    SummaryAlert,
    build_ack,
    build_config,
    build_config_get,
    build_config_new,
    build_done,
    build_family_reply,
    build_getfamily,
    build_packet_alert,
    build_start,
    build_stats_get,
    build_stats_new,
    build_stop,
    build_summary_alert,
    decode_datagram,
)
from netdm.proto.constants import NLA_F_NESTED, NLA_F_NET_BYTEORDER, NLA_TYPE_MASK, Attr
from tests.proto.netdm_proto_strategies import texts, u16, u32, u64
from tests.proto.reference_decoder import decode_datagram_reference

FAMILY = 0x1C


def hexbytes(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def decodes_to(data: bytes, family_id: int, event: Event) -> None:
    assert decode_datagram(data, family_id) == [event]
    assert decode_datagram_reference(data, family_id) == [event]


# --------------------------------------------------------------------------- requests

REQUEST_HEADER = "1c 00 05 00"  # type 0x1c, NLM_F_REQUEST | NLM_F_ACK


@pytest.mark.parametrize(
    ("built", "expected"),
    [
        (
            build_getfamily("NET_DM", 1),
            "20 00 00 00 10 00 05 00 01 00 00 00 00 00 00 00 03 02 00 00"
            " 0b 00 02 00 4e 45 54 5f 44 4d 00 00",
        ),
        (
            build_config(FAMILY, 2, alert_mode=1, trunc_len=128, queue_len=1000),
            f"2c 00 00 00 {REQUEST_HEADER} 02 00 00 00 00 00 00 00 02 02 00 00"
            " 05 00 01 00 01 00 00 00 08 00 09 00 80 00 00 00 08 00 0b 00 e8 03 00 00",
        ),
        (
            build_config(FAMILY, 2, trunc_len=0),
            f"1c 00 00 00 {REQUEST_HEADER} 02 00 00 00 00 00 00 00 02 02 00 00"
            " 08 00 09 00 00 00 00 00",
        ),
        (
            build_start(FAMILY, 3),
            f"18 00 00 00 {REQUEST_HEADER} 03 00 00 00 00 00 00 00 03 02 00 00 04 00 14 00",
        ),
        (
            build_start(FAMILY, 3, sw=False, hw=False),  # the kernel starts software anyway
            f"14 00 00 00 {REQUEST_HEADER} 03 00 00 00 00 00 00 00 03 02 00 00",
        ),
        (
            build_stop(FAMILY, 4, sw=False, hw=True),
            f"18 00 00 00 {REQUEST_HEADER} 04 00 00 00 00 00 00 00 04 02 00 00 04 00 15 00",
        ),
        (
            build_stop(FAMILY, 4, sw=True, hw=True),
            f"1c 00 00 00 {REQUEST_HEADER} 04 00 00 00 00 00 00 00 04 02 00 00"
            " 04 00 14 00 04 00 15 00",
        ),
        (
            build_config_get(FAMILY, 5),
            f"14 00 00 00 {REQUEST_HEADER} 05 00 00 00 00 00 00 00 06 02 00 00",
        ),
        (
            build_stats_get(FAMILY, 6),
            f"14 00 00 00 {REQUEST_HEADER} 06 00 00 00 00 00 00 00 08 02 00 00",
        ),
    ],
    ids=[
        "getfamily",
        "config",
        "config-trunc",
        "start",
        "start-no-flags",
        "stop-hw",
        "stop-both",
        "config-get",
        "stats-get",
    ],
)
def test_request_bytes(built: bytes, expected: str) -> None:
    assert built == hexbytes(expected)


def test_done() -> None:
    decodes_to(build_done(7, 99), FAMILY, Done(seq=7))


@pytest.mark.parametrize(
    "build",
    [
        lambda: build_ack(1, 1, bytes(16), error=5),
        lambda: build_ack(1, 1, bytes(15)),
        lambda: build_config(FAMILY, 1, alert_mode=256),
        lambda: build_packet_alert(FAMILY, PacketAlert(origin=70000)),
        lambda: build_summary_alert(FAMILY, [DropPoint(-1, 0)]),
    ],
    ids=["positive-error", "short-request", "u8-overflow", "u16-overflow", "negative-pc"],
)
def test_builders_reject_values_that_do_not_fit(build: Callable[[], bytes]) -> None:
    with pytest.raises(ValueError):
        build()


# --------------------------------------------------------------------------- kernel side


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


def raw_attributes(known: set[int], max_size: int = 3) -> st.SearchStrategy[Any]:
    kinds = st.integers(0, NLA_TYPE_MASK).filter(lambda kind: kind not in known | {Attr.PAD})
    flags = st.sampled_from([0, NLA_F_NESTED, NLA_F_NET_BYTEORDER])
    attribute = st.builds(
        RawAttribute, type=st.builds(int.__or__, kinds, flags), data=st.binary(max_size=12)
    )
    return st.lists(attribute, max_size=max_size).map(tuple)


in_ports = st.builds(
    InPort, ifindex=optional(u32), name=optional(texts), unknown_attributes=raw_attributes({0, 1})
)
packet_alerts = st.builds(
    PacketAlert,
    origin=u16,
    pc=optional(u64),
    symbol=optional(texts),
    reason=optional(texts),
    in_port=optional(in_ports),
    timestamp_ns=optional(u64),
    proto=optional(u16),
    payload=optional(st.binary(max_size=64)),
    orig_len=optional(u32),
    hw_trap_group_name=optional(texts),
    hw_trap_name=optional(texts),
    flow_action_cookie=optional(st.binary(max_size=16)),
    unknown_attributes=raw_attributes({0, 2, 3, 4, 5, 6, 7, 10, 14, 15, 16, 22, 23}),
)


def u64_value_offsets(data: bytes) -> list[int]:
    """Where PC and TIMESTAMP values sit in a packet alert."""
    offsets, offset = [], 20
    while offset < len(data):
        length, kind = struct.unpack_from("<HH", data, offset)
        if kind & NLA_TYPE_MASK in (Attr.PC, Attr.TIMESTAMP):
            offsets.append(offset + 4)
        offset += (length + 3) & ~3
    return offsets


@settings(max_examples=150, deadline=None)
@given(packet_alerts, st.booleans())
def test_packet_alert_round_trip(alert: PacketAlert, pad_u64: bool) -> None:
    data = build_packet_alert(FAMILY, alert, pad_u64=pad_u64)
    decodes_to(data, FAMILY, alert)
    if pad_u64:  # what nla_put_u64_64bit gives on arm32 and friends (reference §4.2)
        assert all(offset % 8 == 0 for offset in u64_value_offsets(data))


summary_alerts = st.builds(
    SummaryAlert,
    drop_points=st.lists(st.builds(DropPoint, pc=u64, count=u32), max_size=64).map(tuple),
    hw_entries=st.lists(st.builds(HardwareEntry, trap_name=texts, count=u32), max_size=4).map(
        tuple
    ),
    unknown_attributes=raw_attributes({0, 17}),
)


@settings(max_examples=100, deadline=None)
@given(summary_alerts)
def test_summary_alert_round_trip(alert: SummaryAlert) -> None:
    data = build_summary_alert(
        FAMILY, alert.drop_points, alert.hw_entries, alert.unknown_attributes
    )
    decodes_to(data, FAMILY, alert)


@settings(max_examples=100, deadline=None)
@given(
    st.builds(
        ConfigReply,
        seq=u32,
        alert_mode=optional(st.integers(0, 255)),
        trunc_len=optional(u32),
        queue_len=optional(u32),
        unknown_attributes=raw_attributes({1, 9, 11}),
    ),
    u32,
)
def test_config_reply_round_trip(reply: ConfigReply, port_id: int) -> None:
    decodes_to(build_config_new(FAMILY, reply, port_id=port_id), FAMILY, reply)


@settings(max_examples=100, deadline=None)
@given(
    st.builds(
        StatsReply,
        seq=u32,
        sw_dropped=optional(u64),
        hw_dropped=optional(u64),
        unknown_attributes=raw_attributes({12, 13}),
    ),
    st.booleans(),
)
def test_stats_reply_round_trip(reply: StatsReply, pad_u64: bool) -> None:
    decodes_to(build_stats_new(FAMILY, reply, pad_u64=pad_u64), FAMILY, reply)


@settings(max_examples=100, deadline=None)
@given(
    st.builds(
        FamilyInfo,
        seq=u32,
        family_id=u16,
        name=texts,
        version=optional(u32),
        hdrsize=optional(u32),
        maxattr=optional(u32),
        ops=st.lists(u32, max_size=6).map(tuple),
        mcast_groups=st.dictionaries(texts, u32, max_size=3),
    )
)
def test_family_reply_round_trip(info: FamilyInfo) -> None:
    decodes_to(build_family_reply(info), 0, info)


requests = st.sampled_from(
    [
        build_start(FAMILY, 11, hw=True),
        build_stop(FAMILY, 12),
        build_config(FAMILY, 13, alert_mode=1),
        build_getfamily("NET_DM", 14),
        build_stats_get(FAMILY, 15),
    ]
)


@settings(max_examples=150, deadline=None)
@given(
    requests,
    u32,
    u32,
    st.one_of(st.just(0), st.integers(-4095, -1)),
    optional(texts),
    optional(u32),
    optional(st.booleans()),
)
def test_ack_and_error_round_trip(
    request: bytes,
    seq: int,
    port_id: int,
    error: int,
    message: str | None,
    offset: int | None,
    capped: bool | None,
) -> None:
    data = build_ack(seq, port_id, request, error, message, offset, capped=capped)
    echoes_payload = capped is False or (capped is None and error != 0)
    expected: Event
    if error == 0:
        expected = Ack(seq=seq, port_id=port_id, message=message)
    else:
        expected = ErrorReply(
            seq=seq,
            port_id=port_id,
            errno=-error,
            message=message,
            attribute_offset=offset,
            request_type=struct.unpack_from("<H", request, 4)[0],
            request_cmd=request[16] if echoes_payload else None,
        )
    decodes_to(data, FAMILY, expected)
