"""Decoding, example by example: the reference's worked bytes, kernel-shaped messages, edges.

Strategy: each test states bytes (hex written out as the kernel lays them
down, reference §4.4, §6.1, §6.2) and the events they must give.  Every case
goes through both decoders (the fast one and the construct reference), so
these examples pin the format itself, not one implementation of it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest

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
    OtherMessage,
    PacketAlert,
    ProtocolError,
    RawAttribute,
    StatsReply,
    SummaryAlert,
    UnknownCommand,
    build_ack,
    build_family_reply,
    build_packet_alert,
    build_start,
    build_stats_new,
    build_summary_alert,
    decode_datagram,
    decode_message,
)
from tests.proto.reference_decoder import decode_datagram_reference

FAMILY = 0x1C
Decoder = Callable[[bytes, int], list[Event]]
DECODERS = pytest.mark.parametrize(
    "decode", [decode_datagram, decode_datagram_reference], ids=["fast", "construct"]
)


def hexbytes(text: str) -> bytes:
    """Hex with spaces, newlines and ``#`` comments."""
    return bytes.fromhex("".join(line.split("#")[0] for line in text.splitlines()))


def nlattr(nla_type: int, data: bytes) -> bytes:
    return struct.pack("<HH", 4 + len(data), nla_type) + data + bytes(-len(data) % 4)


def net_dm(cmd: int, attributes: bytes, *, nlmsg_len: int | None = None, seq: int = 0) -> bytes:
    length = 20 + len(attributes) if nlmsg_len is None else nlmsg_len
    return struct.pack("<IHHIIBBH", length, FAMILY, 0, seq, 0, cmd, 2, 0) + attributes


def fails_at(decode: Decoder, data: bytes, offset: int) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode(data, FAMILY)
    assert caught.value.offset == offset, caught.value


# --------------------------------------------------------------------------- worked examples

SUMMARY_ALERT = hexbytes("""
    28 00 00 00 1c 00 00 00 00 00 00 00 00 00 00 00  # nlmsghdr len=40 type=0x1c
    01 02 00 00                                      # genl cmd=1 (ALERT) version=2
    14 00 00 00                                      # nla_len=20 type=0
    01 00 00 00                                      # entries=1
    ef cd ab 81 ff ff ff ff 03 00 00 00              # pc (LE u64), count=3
""")
SUMMARY_EVENT = SummaryAlert(drop_points=(DropPoint(pc=0xFFFFFFFF81ABCDEF, count=3),))
START_BOTH = hexbytes(
    "1c 00 00 00 1c 00 05 00 01 00 00 00 00 00 00 00  03 02 00 00  04 00 14 00  04 00 15 00"
)

# 6.1 software drop (reference §6.1): a UDP packet to a closed port on lo.
PAYLOAD = hexbytes("""
    00 aa bb cc dd ee 00 11 22 33 44 55 08 00        # ethernet, IPv4
    45 00 00 1c 00 01 00 00 40 11 00 00 c0 00 02 01 c0 00 02 0a   # 192.0.2.1 -> .10, UDP
    30 39 d4 31 00 08 00 00                          # 12345 -> 54321
""")
SW_PACKET_ALERT = (
    hexbytes("""
    b8 00 00 00 1c 00 00 00 00 00 00 00 00 00 00 00  # nlmsghdr len=184
    05 02 00 00                                      # PACKET_ALERT
    06 00 0e 00 00 00 00 00                          # ORIGIN u16 0 (SW) + pad
    0c 00 02 00 cc bb aa 81 ff ff ff ff              # PC u64
    0e 00 17 00 4e 4f 5f 53 4f 43 4b 45 54 00 00 00  # REASON "NO_SOCKET"
    25 00 03 00 75 64 70 5f 71 75 65 75 65 5f 72 63  # SYMBOL "udp_queue_rcv_one_skb+0x3a/0x4c0"
    76 5f 6f 6e 65 5f 73 6b 62 2b 30 78 33 61 2f 30
    78 34 63 30 00 00 00 00
    0c 00 04 80 08 00 00 00 01 00 00 00              # IN_PORT|NESTED { IFINDEX 1 }
    0c 00 05 00 15 cd 85 3d fe 9c 97 17              # TIMESTAMP ns
    08 00 0a 00 2a 00 00 00                          # ORIG_LEN 42
    06 00 06 00 00 08 00 00                          # PROTO 0x0800 (host order)
    2e 00 07 00                                      # PAYLOAD, 42 bytes + 2 pad
""")
    + PAYLOAD
    + bytes(2)
)
SW_EVENT = PacketAlert(
    origin=0,
    pc=0xFFFFFFFF81AABBCC,
    reason="NO_SOCKET",
    symbol="udp_queue_rcv_one_skb+0x3a/0x4c0",
    in_port=InPort(ifindex=1),
    timestamp_ns=1_700_000_000_123_456_789,
    orig_len=42,
    proto=0x0800,
    payload=PAYLOAD,
)
# netdevsim hardware drop (reference §6.2, the selftest's blackhole_route trap).
HW_PACKET_ALERT = (
    hexbytes("""
    a4 00 00 00 1c 00 00 00 00 00 00 00 00 00 00 00  # nlmsghdr len=164
    05 02 00 00
    06 00 0e 00 01 00 00 00                          # ORIGIN 1 (HW)
    0d 00 0f 00 6c 33 5f 64 72 6f 70 73 00 00 00 00  # HW_TRAP_GROUP_NAME "l3_drops"
    14 00 10 00 62 6c 61 63 6b 68 6f 6c 65 5f 72 6f  # HW_TRAP_NAME "blackhole_route"
    75 74 65 00
    18 00 04 80 08 00 00 00 05 00 00 00              # IN_PORT { IFINDEX 5,
    0c 00 01 00 65 6e 69 31 6e 70 31 00              #   NETDEV_NAME "eni1np1" }
    0c 00 05 00 15 cd 85 3d fe 9c 97 17              # TIMESTAMP
    08 00 0a 00 2a 00 00 00                          # ORIG_LEN
    06 00 06 00 00 08 00 00                          # PROTO
    2e 00 07 00
""")
    + PAYLOAD
    + bytes(2)
)
HW_EVENT = PacketAlert(
    origin=1,
    hw_trap_group_name="l3_drops",
    hw_trap_name="blackhole_route",
    in_port=InPort(ifindex=5, name="eni1np1"),
    timestamp_ns=1_700_000_000_123_456_789,
    orig_len=42,
    proto=0x0800,
    payload=PAYLOAD,
)


@DECODERS
def test_reference_summary_alert_example(decode: Decoder) -> None:
    assert decode(SUMMARY_ALERT, FAMILY) == [SUMMARY_EVENT]
    assert build_summary_alert(FAMILY, SUMMARY_EVENT.drop_points) == SUMMARY_ALERT


@DECODERS
def test_reference_start_example_is_a_request(decode: Decoder) -> None:
    assert build_start(FAMILY, 1, sw=True, hw=True) == START_BOTH
    assert decode(START_BOTH, FAMILY) == [
        OtherMessage(nl_type=FAMILY, flags=5, seq=1, port_id=0, payload=START_BOTH[16:])
    ]


@DECODERS
@pytest.mark.parametrize(
    ("data", "event"), [(SW_PACKET_ALERT, SW_EVENT), (HW_PACKET_ALERT, HW_EVENT)], ids=["sw", "hw"]
)
def test_kernel_shaped_packet_alerts(decode: Decoder, data: bytes, event: PacketAlert) -> None:
    assert decode(data, FAMILY) == [event]
    assert build_packet_alert(FAMILY, event) == data  # the kernel's attribute order


@DECODERS
def test_hardware_summary_has_no_points_and_hw_entries(decode: Decoder) -> None:
    entries = (HardwareEntry("blackhole_route", 7), HardwareEntry("ttl_value_is_too_small", 1))
    data = build_summary_alert(FAMILY, (), entries)
    assert data[20:28] == hexbytes("08 00 00 00 00 00 00 00")  # type 0, entries = 0
    assert decode(data, FAMILY) == [SummaryAlert(drop_points=(), hw_entries=entries)]


@DECODERS
def test_napi_heuristic_drop_point_has_pc_zero(decode: Decoder) -> None:
    points = (DropPoint(0, 1), DropPoint(0xFFFFFFFFC0DE0000, 64))
    assert decode(build_summary_alert(FAMILY, points), FAMILY) == [SummaryAlert(points)]


# --------------------------------------------------------------------------- framing


@DECODERS
def test_bytes_whole_separate_and_concatenated(decode: Decoder) -> None:
    messages = [SUMMARY_ALERT, SW_PACKET_ALERT, HW_PACKET_ALERT]
    events = [SUMMARY_EVENT, SW_EVENT, HW_EVENT]
    assert [decode(message, FAMILY)[0] for message in messages] == events
    assert decode(b"".join(messages), FAMILY) == events


@DECODERS
@pytest.mark.parametrize("junk", [b"\x00", b"\xff" * 3, bytes(15)])
def test_trailing_junk_shorter_than_a_header(decode: Decoder, junk: bytes) -> None:
    fails_at(decode, SUMMARY_ALERT + junk, len(SUMMARY_ALERT))


@DECODERS
def test_last_message_may_lack_its_padding(decode: Decoder) -> None:
    odd_request = struct.pack("<IHHII", 21, FAMILY, 5, 7, 0) + b"\x03\x02\x00\x00\xff"
    error = build_ack(7, 1, odd_request, error=-22)  # echoes 5 payload bytes: nlmsg_len 41
    assert len(error) == 41
    assert decode(SUMMARY_ALERT + error, FAMILY) == [
        SUMMARY_EVENT,
        ErrorReply(seq=7, port_id=1, errno=22, request_type=FAMILY, request_cmd=3),
    ]


@DECODERS
def test_message_padding_between_messages_is_skipped(decode: Decoder) -> None:
    odd = struct.pack("<IHHII", 17, 0x42, 0, 9, 0) + b"x"  # nlmsg_len 17, then 3 pad bytes
    assert decode(odd + b"\0\0\0" + SUMMARY_ALERT, FAMILY) == [
        OtherMessage(nl_type=0x42, flags=0, seq=9, port_id=0, payload=b"x"),
        SUMMARY_EVENT,
    ]


@DECODERS
@pytest.mark.parametrize(
    ("data", "offset"),
    [
        (struct.pack("<IHHII", 15, FAMILY, 0, 0, 0), 0),  # nlmsg_len < 16
        (SUMMARY_ALERT[:-1], 0),  # nlmsg_len past the datagram
        (SUMMARY_ALERT + struct.pack("<IHHII", 99, 3, 0, 0, 0), 40),  # second one too long
        (net_dm(5, b"", nlmsg_len=18) + b"\0\0", 0),  # no genlmsghdr
    ],
    ids=["short-nlmsg_len", "past-end", "second-past-end", "no-genlmsghdr"],
)
def test_bad_message_lengths(decode: Decoder, data: bytes, offset: int) -> None:
    fails_at(decode, data, offset)


@DECODERS
def test_decode_accepts_bytearray_and_memoryview(decode: Decoder) -> None:
    assert decode(bytearray(SUMMARY_ALERT), FAMILY) == [SUMMARY_EVENT]  # type: ignore[arg-type]
    assert decode(memoryview(SUMMARY_ALERT), FAMILY) == [SUMMARY_EVENT]  # type: ignore[arg-type]


def test_decode_message_wants_exactly_one() -> None:
    assert decode_message(SUMMARY_ALERT, FAMILY) == SUMMARY_EVENT
    with pytest.raises(ProtocolError):
        decode_message(SUMMARY_ALERT * 2, FAMILY)
    with pytest.raises(ProtocolError):
        decode_message(b"", FAMILY)


@DECODERS
def test_unknown_family_id_leaves_net_dm_messages_raw(decode: Decoder) -> None:
    [event] = decode(SUMMARY_ALERT, 0)
    assert event == OtherMessage(
        nl_type=FAMILY, flags=0, seq=0, port_id=0, payload=SUMMARY_ALERT[16:]
    )


@DECODERS
def test_v36_summary_alert_without_genlmsg_end(decode: Decoder) -> None:
    """v3.6 left nlmsg_len at 20; the type-0 attribute follows (reference §4.4)."""
    data = bytearray(SUMMARY_ALERT)
    data[0] = 20
    assert decode(bytes(data), FAMILY) == [SUMMARY_EVENT]


# --------------------------------------------------------------------------- attributes

PACKET_ALERT = 5


@DECODERS
def test_unknown_attributes_are_kept_raw(decode: Decoder) -> None:
    newer = nlattr(24, b"\x01\x02\x03") + nlattr(0x8000 | 99, nlattr(1, b"x"))
    data = net_dm(PACKET_ALERT, nlattr(14, b"\0\0") + newer)
    assert decode(data, FAMILY) == [
        PacketAlert(
            origin=0,
            unknown_attributes=(
                RawAttribute(24, b"\x01\x02\x03"),
                RawAttribute(0x8000 | 99, nlattr(1, b"x")),
            ),
        )
    ]


@DECODERS
def test_unknown_command_is_kept_with_its_attributes(decode: Decoder) -> None:
    data = net_dm(42, nlattr(8, b"") + nlattr(3, b"abc\0"), seq=5)
    assert decode(data, FAMILY) == [
        UnknownCommand(cmd=42, seq=5, attributes=(RawAttribute(3, b"abc\0"),))  # PAD skipped
    ]


@DECODERS
@pytest.mark.parametrize("nested_flag", [0, 0x8000])
def test_in_port_nest_with_and_without_nla_f_nested(decode: Decoder, nested_flag: int) -> None:
    port = nlattr(0, struct.pack("<I", 3)) + nlattr(1, b"eth0\0") + nlattr(7, b"?")
    data = net_dm(PACKET_ALERT, nlattr(4 | nested_flag, port))
    assert decode(data, FAMILY) == [
        PacketAlert(
            in_port=InPort(ifindex=3, name="eth0", unknown_attributes=(RawAttribute(7, b"?"),))
        )
    ]


@DECODERS
def test_empty_in_port_nest(decode: Decoder) -> None:
    """Transmit-path drops: skb_iif == 0, the nest opens and closes empty (reference §4.3)."""
    data = net_dm(PACKET_ALERT, nlattr(4 | 0x8000, b""))
    assert decode(data, FAMILY) == [PacketAlert(in_port=InPort())]


@DECODERS
def test_pad_before_u64_values_and_inside_stats(decode: Decoder) -> None:
    alert = net_dm(PACKET_ALERT, nlattr(8, b"") + nlattr(2, struct.pack("<Q", 0xABC)))
    assert decode(alert, FAMILY) == [PacketAlert(pc=0xABC)]
    dropped = nlattr(8, b"") + nlattr(0, struct.pack("<Q", 12))
    stats = net_dm(9, nlattr(12 | 0x8000, dropped) + nlattr(13, dropped), seq=4)
    assert decode(stats, FAMILY) == [StatsReply(seq=4, sw_dropped=12, hw_dropped=12)]


@DECODERS
def test_kernel_style_u64_padding_from_the_builder(decode: Decoder) -> None:
    reply = StatsReply(seq=1, sw_dropped=2**40, hw_dropped=0)
    data = build_stats_new(FAMILY, reply, pad_u64=True)
    assert data[24:28] == hexbytes("04 00 08 00")  # PAD inside STATS before STATS_DROPPED
    assert decode(data, FAMILY) == [reply]


@DECODERS
def test_hw_entries_nest_with_and_without_nla_f_nested(decode: Decoder) -> None:
    entry = nlattr(16, b"trap\0") + nlattr(8, b"") + nlattr(19, struct.pack("<I", 2))
    for flag in (0, 0x8000):
        entries = nlattr(18 | flag, entry) + nlattr(8, b"")
        data = net_dm(1, nlattr(0, bytes(4)) + nlattr(17 | flag, entries))
        assert decode(data, FAMILY) == [SummaryAlert((), (HardwareEntry("trap", 2),))]


@DECODERS
def test_last_of_two_equal_attributes_wins(decode: Decoder) -> None:
    data = net_dm(7, nlattr(9, struct.pack("<I", 1)) + nlattr(9, struct.pack("<I", 2)), seq=3)
    assert decode(data, FAMILY) == [ConfigReply(seq=3, trunc_len=2)]


@DECODERS
@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"tcp_v4_rcv+0x9a/0xe60\0", "tcp_v4_rcv+0x9a/0xe60"),
        (b"no_nul_at_all", "no_nul_at_all"),
        (b"cut\0here\0", "cut"),
        (b"\xff\xfebad+0x1/0x2\0", "\udcff\udcfebad+0x1/0x2"),  # surrogateescape
    ],
)
def test_strings(decode: Decoder, raw: bytes, text: str) -> None:
    [event] = decode(net_dm(PACKET_ALERT, nlattr(3, raw)), FAMILY)
    assert isinstance(event, PacketAlert) and event.symbol == text
    assert text.encode("utf-8", "surrogateescape") == raw.split(b"\0")[0]


# --------------------------------------------------------------------------- malformed attributes


@DECODERS
@pytest.mark.parametrize(
    ("attributes", "offset"),
    [
        (b"\x03\x00\x02\x00", 20),  # nla_len < 4
        (nlattr(10, bytes(4))[:6], 20),  # truncated last attribute
        (nlattr(14, b"\0\0") + b"\x10\x00\x02\x00" + bytes(4), 28),  # runs past the message
        (nlattr(14, b"\0\0") + b"\x00\x00", 28),  # 2 trailing bytes
        (nlattr(10, b"\x01\x00"), 20),  # u32 with 2 bytes
        (nlattr(2, bytes(4)), 20),  # u64 with 4 bytes
        (nlattr(14, b"\0\0") + nlattr(4, nlattr(0, b"\1")), 32),  # inside IN_PORT
        (nlattr(4, nlattr(1, b"a\0") + b"\x09\x00\x01\x00ab"), 32),  # child past its nest
    ],
    ids=[
        "short-nla_len",
        "truncated",
        "past-message",
        "trailing",
        "u32-2",
        "u64-4",
        "nested",
        "child",
    ],
)
def test_malformed_attributes_name_the_innermost_offset(
    decode: Decoder, attributes: bytes, offset: int
) -> None:
    fails_at(decode, net_dm(PACKET_ALERT, attributes), offset)


@DECODERS
@pytest.mark.parametrize("entries", [0, 2, 0xFFFFFFFF])
def test_summary_entries_must_match_the_length(decode: Decoder, entries: int) -> None:
    struct_bytes = struct.pack("<I", entries) + struct.pack("<QI", 1, 1)
    fails_at(decode, net_dm(1, nlattr(0, struct_bytes)), 20)


@DECODERS
def test_hw_entry_needs_name_and_count(decode: Decoder) -> None:
    entries = nlattr(18, nlattr(16, b"trap\0"))
    fails_at(decode, net_dm(1, nlattr(0, bytes(4)) + nlattr(17, entries)), 32)


@DECODERS
def test_flags_in_requests_must_be_empty(decode: Decoder) -> None:
    fails_at(decode, net_dm(3, nlattr(20, b"\x01")), 20)


# --------------------------------------------------------------------------- errors and acks

STOP = hexbytes("18 00 00 00 1c 00 05 00 02 00 00 00 00 00 00 00  04 02 00 00  04 00 14 00")


@DECODERS
def test_modern_ack_is_capped(decode: Decoder) -> None:
    data = build_ack(2, 4242, STOP)
    assert struct.unpack_from("<IHH", data) == (36, 2, 0x100)  # NLM_F_CAPPED
    assert decode(data, FAMILY) == [Ack(seq=2, port_id=4242)]


@DECODERS
def test_ack_with_extended_ack_warning(decode: Decoder) -> None:
    """5.4+: STOP when stopped succeeds with a warning (reference §8)."""
    data = build_ack(2, 4242, STOP, message="Trace state already set to requested state")
    assert decode(data, FAMILY) == [
        Ack(seq=2, port_id=4242, message="Trace state already set to requested state")
    ]


@DECODERS
def test_pre_4_12_ack_without_flags_or_payload(decode: Decoder) -> None:
    data = struct.pack("<IHHIIi", 36, 2, 0, 2, 4242, 0) + STOP[:16]
    assert decode(data, FAMILY) == [Ack(seq=2, port_id=4242)]


@DECODERS
@pytest.mark.parametrize("capped", [False, True])
@pytest.mark.parametrize("extended", [False, True])
def test_error_reply(decode: Decoder, capped: bool, extended: bool) -> None:
    message = "Trace state already set to requested state" if extended else None
    offset = 20 if extended else None
    data = build_ack(1, 77, START_BOTH, -11, message, offset, capped=capped)
    assert decode(data, FAMILY) == [
        ErrorReply(
            seq=1,
            port_id=77,
            errno=11,
            message=message,
            attribute_offset=offset,
            request_type=FAMILY,
            request_cmd=None if capped else 3,
        )
    ]


@DECODERS
def test_error_with_positive_code_is_malformed(decode: Decoder) -> None:
    fails_at(decode, SUMMARY_ALERT + struct.pack("<IHHIIi", 36, 2, 0x100, 0, 0, 5) + bytes(16), 40)


@DECODERS
def test_error_echo_longer_than_the_message(decode: Decoder) -> None:
    data = bytearray(build_ack(1, 77, START_BOTH, -11, "x"))
    data[20] = 200  # echoed nlmsg_len, with NLM_F_ACK_TLVS set
    fails_at(decode, bytes(data), 0)


@DECODERS
def test_done_and_other_messages(decode: Decoder) -> None:
    done = struct.pack("<IHHIIi", 20, 3, 2, 9, 0, 0)
    noop = struct.pack("<IHHII", 16, 1, 0, 8, 0)
    assert decode(done + noop, FAMILY) == [
        Done(seq=9),
        OtherMessage(nl_type=1, flags=0, seq=8, port_id=0, payload=b""),
    ]


# --------------------------------------------------------------------------- nlctrl

NEWFAMILY = hexbytes("""
    88 00 00 00 10 00 00 00 01 00 00 00 d2 04 00 00  # nlmsghdr len=136 type=GENL_ID_CTRL
    01 02 00 00                                      # CTRL_CMD_NEWFAMILY
    0b 00 02 00 4e 45 54 5f 44 4d 00 00              # FAMILY_NAME "NET_DM"
    06 00 01 00 1c 00 00 00                          # FAMILY_ID 0x1c
    08 00 03 00 02 00 00 00                          # VERSION 2
    08 00 04 00 00 00 00 00                          # HDRSIZE 0
    08 00 05 00 17 00 00 00                          # MAXATTR 23
    2c 00 06 00                                      # OPS
    14 00 01 00 08 00 01 00 02 00 00 00 08 00 02 00 0b 00 00 00   # 1: {ID 2, FLAGS 0xb}
    14 00 02 00 08 00 01 00 06 00 00 00 08 00 02 00 0a 00 00 00   # 2: {ID 6, FLAGS 0xa}
    1c 00 07 00                                      # MCAST_GROUPS
    18 00 01 00 08 00 02 00 01 00 00 00              # 1: {ID 1,
    0b 00 01 00 65 76 65 6e 74 73 00 00              #     NAME "events"}
""")


@DECODERS
def test_family_reply(decode: Decoder) -> None:
    assert decode(NEWFAMILY, 0) == [
        FamilyInfo(
            seq=1,
            family_id=0x1C,
            name="NET_DM",
            version=2,
            hdrsize=0,
            maxattr=23,
            ops=(2, 6),
            mcast_groups={"events": 1},
        )
    ]


def test_family_reply_matches_ctrl_fill_info_layout() -> None:
    info = decode_datagram(NEWFAMILY, 0)[0]
    assert isinstance(info, FamilyInfo)
    assert build_family_reply(info, port_id=1234, op_flags={2: 0xB, 6: 0xA}) == NEWFAMILY


@DECODERS
def test_family_reply_needs_id_and_name(decode: Decoder) -> None:
    data = bytearray(NEWFAMILY)
    data[34] = 9  # FAMILY_ID becomes an unknown ctrl attribute
    fails_at(decode, bytes(data), 0)


@DECODERS
def test_other_ctrl_commands_stay_raw(decode: Decoder) -> None:
    data = bytearray(NEWFAMILY)
    data[16] = 7  # CTRL_CMD_NEWMCAST_GRP
    [event] = decode(bytes(data), 0)
    assert isinstance(event, OtherMessage) and event.payload == bytes(data[16:])
