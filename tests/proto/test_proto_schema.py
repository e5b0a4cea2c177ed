"""The construct definitions round-trip, and avoid construct's silent-data-loss traps.

Strategy: the schema is the definition of the format, so it must be
symmetric: ``parse(build(x)) == x`` for generated containers and
``build(parse(data)) == data`` for the bytes they give (the construct
gallery's ``common()`` check).  Then the traps from the style notes, each
pinned by a small case: GreedyRange swallowing a truncated element, Switch
dropping unknown types, a fixed-size value shorter than its field.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from typing import Any

import pytest
from construct import ConstructError, GreedyBytes
from hypothesis import HealthCheck, given, settings

from netdm.proto.constants import Attr, PortAttr
from netdm.proto.schema import (
    U32,
    Datagram,
    GenlMsgHdr,
    InPortNest,
    MalformedAt,
    NetDmAlertMsg,
    NetlinkMessage,
    NlMsgHdr,
    NulTerminatedString,
    nlattr,
    nlattr_list,
)
from tests.proto.netdm_proto_strategies import any_message, datagrams, family_ids

_RAW_COPY_KEYS = {"data", "value", "offset1", "offset2", "length"}


def plain(value: Any) -> Any:
    """A parsed container as plain dicts and lists, RawCopy reduced to its value."""
    if isinstance(value, dict):
        if set(value) == _RAW_COPY_KEYS:
            return {"value": plain(value["value"])}
        return {key: plain(item) for key, item in value.items() if not key.startswith("_")}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(family_ids.flatmap(lambda family_id: any_message(family_id).map(lambda m: (family_id, m))))
def test_message_round_trip(case: tuple[int, dict[str, Any]]) -> None:
    family_id, message = case
    data = NetlinkMessage.build(message, family_id=family_id)
    parsed = NetlinkMessage.parse(data, family_id=family_id)
    assert plain(parsed) == plain(message)
    assert NetlinkMessage.build(parsed, family_id=family_id) == data


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datagrams(v36=False))  # a v3.6 alert rebuilds as a modern one, on purpose
def test_datagram_reparses_to_the_same_messages(case: tuple[int, bytes]) -> None:
    family_id, data = case
    messages = Datagram.parse(data, family_id=family_id)
    rebuilt = Datagram.build(messages, family_id=family_id)
    assert plain(Datagram.parse(rebuilt, family_id=family_id)) == plain(messages)


def test_headers() -> None:
    header = {
        "nlmsg_len": 40,
        "nlmsg_type": 0x1C,
        "nlmsg_flags": 5,
        "nlmsg_seq": 1,
        "nlmsg_pid": 7,
    }
    data = struct.pack("<IHHII", 40, 0x1C, 5, 1, 7)
    assert NlMsgHdr.build(header) == data and NlMsgHdr.parse(data) == header
    assert GenlMsgHdr.build({"cmd": 5, "version": 2, "reserved": 0}) == b"\x05\x02\x00\x00"


def test_alert_msg_counts_its_points() -> None:
    points = [{"pc": 0xFFFFFFFF81ABCDEF, "count": 3}]
    data = NetDmAlertMsg.build({"points": points})
    assert data == bytes.fromhex("01000000 efcdab81ffffffff 03000000")
    assert NetDmAlertMsg.parse(data) == {"entries": 1, "points": points}
    with pytest.raises(ConstructError):
        NetDmAlertMsg.parse(data + bytes(12))  # entries says 1, 2 points follow


def test_greedy_range_does_not_swallow_a_truncated_last_attribute() -> None:
    ports = InPortNest.build([{"nla_type": PortAttr.NETDEV_IFINDEX, "value": 4}])
    assert InPortNest.parse(ports) == [{"nla_type": 0, "value": 4}]
    with pytest.raises(MalformedAt) as caught:
        InPortNest.parse(ports + b"\x08\x00\x01\x00ab")  # claims 8 bytes, has 6
    assert caught.value.offset == 8


def test_switch_keeps_unknown_types_as_bytes() -> None:
    attributes = nlattr_list({Attr.PC: U32})
    data = attributes.build([{"nla_type": 0x8000 | 77, "value": b"\x01\x02\x03"}])
    assert data == b"\x07\x00\x4d\x80\x01\x02\x03\x00"
    assert attributes.parse(data) == [{"nla_type": 0x8000 | 77, "value": b"\x01\x02\x03"}]


def test_fixed_size_values_fill_their_attribute() -> None:
    element = nlattr({1: U32})
    with pytest.raises(ConstructError):
        element.parse(b"\x06\x00\x01\x00\x01\x00\x00\x00")  # 2 bytes
    with pytest.raises(ConstructError):
        element.parse(b"\x0c\x00\x01\x00" + bytes(8))  # 8 bytes


def test_nested_offsets_are_absolute() -> None:
    inner = b"\x05\x00\x00\x00\x01\x00\x00\x00"  # IFINDEX with 1 byte
    outer = nlattr_list({Attr.IN_PORT: InPortNest})
    with pytest.raises(MalformedAt) as caught:
        outer.parse(b"\x04\x00\x08\x00" + struct.pack("<HH", 12, Attr.IN_PORT) + inner)
    assert caught.value.offset == 8  # the inner attribute, counted from the outer start


def test_strings_are_nul_terminated_utf8_with_surrogateescape() -> None:
    string = NulTerminatedString(GreedyBytes)
    assert string.build("eth0") == b"eth0\x00"
    assert string.parse(b"eth0\x00\x00\x00") == "eth0"
    assert string.parse(b"\xc3") == "\udcc3"
    assert string.build("\udcc3") == b"\xc3\x00"


def test_the_protocol_layer_does_no_io() -> None:
    """h11's promise: importing netdm.proto pulls in no networking and no pyroute2."""
    code = (
        "import sys, netdm.proto; "
        "print(sorted(m for m in ('pyroute2', 'socket', 'select', 'asyncio') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
