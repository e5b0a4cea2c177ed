"""The per-packet JSON line's header fragments: look-alikes are not taken for what was cached.

Strategy: ``packet_json_line`` caches the JSON of the link and layer-3 header
fields (``link`` to ``ttl``) by those fields, and writes a constant tail when
there are no TCP, ICMP or ARP fields and no notes.  The property test in
test_packets.py compares lines of generated headers with ``json.dumps`` of
``packet_to_json``, but two generated headers rarely share all but one field.
Here each field of real headers is changed in turn, after the original was
cached, so that a field left out of a cache key or of the tail's test shows.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from netdm.engine.headers import PacketHeaders, describe_packet
from netdm.output.packets import packet_json_line, packet_to_json
from netdm.proto.events import InPort, PacketAlert

# Real frames' headers: UDP over loopback, a TCP SYN, ARP, IPv6 in a VLAN, an ICMP echo.
_FRAMES = {
    "udp": bytes.fromhex(
        "000000000000000000000000080045000080d2bb40004011696f7f0000017f000002"
        "8c03d431006cfe8000010203"
    ),
    "tcp": bytes.fromhex(
        "02000000000202000000000108004500003c1c4640004006f06ac0a80001c0a80002"
        "d4310050000003e8000000005002faf0fe300000"
    ),
    "arp": bytes.fromhex(
        "ffffffffffff020000000001080600010800060400010200000000010a0000010000000000000a000002"
    ),
    "ipv6-vlan": bytes.fromhex(
        "02000000000202000000000181000064"
        "86dd6000000000081140fe800000000000000000000000000001ff020000000000000000000000000001"
        "0035003500080000"
    ),
}
_ALERT = PacketAlert(
    origin=0,
    pc=0xFFFFFFFF818BCAE2,
    symbol="__udp4_lib_rcv+0x9a2/0xc30",
    reason="NO_SOCKET",
    in_port=InPort(ifindex=1),
    timestamp_ns=1_795_695_353_217_291_300,
    proto=0x0800,
    payload=b"\x00" * 14,
    orig_len=142,
)


def _reference(alert: PacketAlert, headers: PacketHeaders) -> str:
    record = packet_to_json(alert, headers=headers)
    return json.dumps(record, ensure_ascii=True, allow_nan=False, separators=(",", ":"))


_CANDIDATES: dict[str, list[Any]] = {
    "str | None": [None, "x", "\x1b", "IPv4"],
    "int | None": [None, 0, 1, 17, 0x0800],
    "bool": [False, True],
    "tuple[int, ...]": [(), (7,), (1, 2)],
    "tuple[str, ...]": [(), ("note",), ("a", "b")],
}


def _others(field: dataclasses.Field[Any], value: Any) -> list[Any]:
    """Values the field may hold instead of ``value``: another of its type, or None."""
    candidates = list(_CANDIDATES[str(field.type)])
    if isinstance(value, str):
        candidates.append(value + "x")
    elif isinstance(value, int) and not isinstance(value, bool):
        candidates.append(value + 1)
    return [candidate for candidate in candidates if candidate != value]


@pytest.mark.parametrize("frame", sorted(_FRAMES))
def test_each_header_field_changed_after_caching_gives_its_own_line(frame: str) -> None:
    data = _FRAMES[frame]
    headers = describe_packet(int.from_bytes(data[12:14], "big"), data)
    assert headers.l3 is not None and headers.src is not None and not headers.notes
    for field in dataclasses.fields(PacketHeaders):
        for value in _others(field, getattr(headers, field.name)):
            variant = dataclasses.replace(headers, **{field.name: value})
            assert packet_json_line(_ALERT, headers=headers) == _reference(_ALERT, headers)
            line = packet_json_line(_ALERT, headers=variant)
            assert line == _reference(_ALERT, variant), (frame, field.name, value)
