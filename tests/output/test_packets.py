"""Packet mode output: the line, the verbose view, JSON, filters and the pcap writer.

Strategy: realistic alerts (a UDP datagram to a closed port on loopback, a
TCP SYN, ARP, IPv6 UDP in a VLAN, an ICMP echo, a netdevsim hardware drop)
pin the exact text; hypothesis throws arbitrary kernel strings and payloads
at every view to show that nothing raises, no control character reaches a
terminal and the JSON always parses; the pcap file is read back byte by byte
and, when they are installed, by tshark and tcpdump.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import struct
import subprocess
from dataclasses import replace
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netdm.engine.headers import PacketHeaders, describe_packet
from netdm.engine.symbols import SymbolTable
from netdm.output import packet_json
from netdm.output.packets import (
    LINKTYPE_LINUX_SLL2,
    PacketFilter,
    PcapPacketSink,
    caching_resolver,
    format_packet_line,
    format_packet_verbose,
    format_timestamp,
    hex_dump,
    normalize_reason,
    packet_json_line,
    packet_to_json,
    parse_filter_arguments,
    sll2_frame,
)
from netdm.proto.events import InPort, PacketAlert, RawAttribute
from tests.engine.test_headers import DEFINITIONS, UDP_LOOPBACK, ipv4, ipv6, udp

UTC = timezone.utc
DROP_TIME_NS = 1605572811_123456789  # 2020-11-17 00:26:51.123456789 UTC
UDP4_LIB_RCV = 0xFFFFFFFF81B4C5F7
SYMBOLS = SymbolTable.from_kallsyms_text(
    "ffffffff81000000 T _text\n"
    "ffffffff81b4c000 T __udp4_lib_rcv\n"
    "ffffffff81b4ca90 T udp_v4_early_demux\n"
    "ffffffffc0b00000 t tun_do_read\t[tun]\n",
    source_description="test kallsyms",
)


def names(ifindex: int) -> str | None:
    return {1: "lo", 2: "eth0"}.get(ifindex)


def software_alert(payload: bytes, proto: int, **changes: object) -> PacketAlert:
    fields: dict[str, object] = {
        "origin": 0,
        "pc": UDP4_LIB_RCV,
        "symbol": "__udp4_lib_rcv+0x5f7/0xa90",
        "reason": "NO_SOCKET",
        "in_port": InPort(ifindex=1),
        "timestamp_ns": DROP_TIME_NS,
        "proto": proto,
        "payload": payload,
        "orig_len": len(payload),
    }
    fields.update(changes)
    return PacketAlert(**fields)  # type: ignore[arg-type]


def line(alert: PacketAlert, **options: object) -> str:
    return format_packet_line(alert, resolve_ifname=names, tz=UTC, **options)  # type: ignore[arg-type]


# The kernel's payload for `echo -n hello world! > /dev/udp/127.0.0.1/9` with nothing listening.
UDP_ALERT = software_alert(UDP_LOOPBACK, 0x0800)


def tcp_syn_frame() -> bytes:
    tcp = DEFINITIONS.tcp.build(
        {
            "sport": 51000,
            "dport": 80,
            "seq": 2864434397,
            "ack": 0,
            "offset_flags": {
                "data_offset": 5,
                "reserved": 0,
                "ae": False,
                **dict.fromkeys(["cwr", "ece", "urg", "ack", "psh", "rst", "fin"], False),
                "syn": True,
            },
            "window": 64240,
            "checksum": 0,
            "urgent_pointer": 0,
            "options": b"",
        }
    )
    ethernet = bytes.fromhex("020000000002 020000000001 0800")
    return ethernet + ipv4(6, bytes(tcp), "192.0.2.1", "198.51.100.7")


def arp_request_frame() -> bytes:
    arp = DEFINITIONS.arp_ethernet_ipv4.build(
        {
            "operation": "request",
            "sender_hardware_address": "02:00:00:00:00:01",
            "sender_protocol_address": "192.0.2.1",
            "target_hardware_address": "00:00:00:00:00:00",
            "target_protocol_address": "192.0.2.2",
        }
    )
    return b"\xff" * 6 + bytes.fromhex("020000000001 0806") + bytes(arp) + bytes(18)


def ipv6_vlan_frame() -> bytes:
    tag = DEFINITIONS.vlan_tag.build(
        {"tci": {"pcp": 0, "dei": False, "vid": 100}, "ethertype": 0x86DD}
    )
    packet = ipv6(17, udp(5353, 53, b"query"), "2001:db8::1", "2001:db8::2")
    return bytes.fromhex("333300000001 020000000001 8100") + bytes(tag) + packet


def icmp_echo_frame() -> bytes:
    icmp = DEFINITIONS.icmp.build({"type": "echo_request", "code": 0, "checksum": 0})
    ethernet = bytes(12) + b"\x08\x00"
    return ethernet + ipv4(1, bytes(icmp) + b"\x00\x01\x00\x01" + b"ping", "127.0.0.1", "127.0.0.2")


# netdevsim's blackhole_route trap (tools/testing/selftests/drivers/net/netdevsim/devlink_trap.sh).
HARDWARE_ALERT = PacketAlert(
    origin=1,
    hw_trap_group_name="l3_drops",
    hw_trap_name="blackhole_route",
    in_port=InPort(ifindex=5, name="eni1np1"),
    flow_action_cookie=bytes.fromhex("deadbeef"),
    timestamp_ns=DROP_TIME_NS + 1000,
    proto=0x0800,
    payload=tcp_syn_frame(),
    orig_len=len(tcp_syn_frame()),
)


# --------------------------------------------------------------------------- the line


def test_udp_to_a_closed_port_on_loopback() -> None:
    assert line(UDP_ALERT) == (
        "00:26:51.123456 __udp4_lib_rcv+0x5f7 NO_SOCKET lo(1)"
        " IPv4 UDP 127.0.0.1:40000 > 127.0.0.1:9 len 54/54"
    )


def test_nanoseconds_and_time_formats() -> None:
    assert line(UDP_ALERT, nanoseconds=True).startswith("00:26:51.123456789 ")
    assert line(UDP_ALERT, time_format="datetime").startswith("2020-11-17T00:26:51.123456 ")
    assert line(UDP_ALERT, time_format="epoch").startswith("1605572811.123456 ")
    assert format_timestamp(None) == "-"
    assert format_timestamp(5, time_format="epoch", nanoseconds=True) == "0.000000005"


def test_local_time_by_default() -> None:
    from datetime import datetime

    expected = datetime.fromtimestamp(DROP_TIME_NS // 10**9).strftime("%H:%M:%S")
    assert format_packet_line(UDP_ALERT).startswith(f"{expected}.123456 ")


def test_tcp_syn() -> None:
    alert = software_alert(
        tcp_syn_frame(),
        0x0800,
        symbol="tcp_v4_rcv+0x9a/0xe60",
        reason="NO_SOCKET",
        in_port=InPort(ifindex=2),
    )
    assert line(alert) == (
        "00:26:51.123456 tcp_v4_rcv+0x9a NO_SOCKET eth0(2)"
        " IPv4 TCP 192.0.2.1:51000 > 198.51.100.7:80 [S] seq 2864434397 len 54/54"
    )


def test_arp_request() -> None:
    alert = software_alert(
        arp_request_frame(), 0x0806, symbol="arp_rcv+0x1d5/0x240", reason="NOT_SPECIFIED"
    )
    assert line(alert).endswith(
        " arp_rcv+0x1d5 NOT_SPECIFIED lo(1) ARP request who-has 192.0.2.2 tell 192.0.2.1 len 60/60"
    )


def test_ipv6_udp_in_a_vlan() -> None:
    alert = software_alert(ipv6_vlan_frame(), 0x8100, in_port=InPort(ifindex=2))
    assert line(alert).endswith(
        " eth0(2) vlan 100 IPv6 UDP [2001:db8::1]:5353 > [2001:db8::2]:53 len 71/71"
    )


def test_icmp_echo() -> None:
    alert = software_alert(icmp_echo_frame(), 0x0800, symbol="icmp_rcv+0x2b/0x3a0", reason=None)
    assert line(alert).endswith(
        " icmp_rcv+0x2b - lo(1) IPv4 ICMP 127.0.0.1 > 127.0.0.2 echo request len 46/46"
    )


def test_hardware_drop_from_netdevsim() -> None:
    assert line(HARDWARE_ALERT) == (
        "00:26:51.123457 hw:l3_drops/blackhole_route - eni1np1(5)"
        " IPv4 TCP 192.0.2.1:51000 > 198.51.100.7:80 [S] seq 2864434397 len 54/54"
    )


def test_location_falls_back_to_symbols_then_the_address() -> None:
    no_symbol = software_alert(UDP_LOOPBACK, 0x0800, symbol=None)
    assert line(no_symbol, symbols=SYMBOLS).split()[1] == "__udp4_lib_rcv+0x5f7"
    assert line(no_symbol).split()[1] == "0xffffffff81b4c5f7"
    nothing = software_alert(UDP_LOOPBACK, 0x0800, symbol=None, pc=None)
    assert line(nothing).split()[1] == "-"
    module = software_alert(UDP_LOOPBACK, 0x0800, symbol="tun_do_read+0x1c/0x40 [tun]")
    assert line(module).split()[1] == "tun_do_read+0x1c[tun]"
    cut = software_alert(UDP_LOOPBACK, 0x0800, symbol="a_very_long_function_name_cut_by_the_k")
    assert line(cut).split()[1] == "a_very_long_function_name_cut_by_the_k"


def test_interface_column() -> None:
    def gone(_ifindex: int) -> str | None:
        raise OSError(6, "No such device or address")

    alert = software_alert(UDP_LOOPBACK, 0x0800, in_port=InPort(ifindex=9))
    assert format_packet_line(alert, resolve_ifname=gone, tz=UTC).split()[3] == "-(9)"
    assert format_packet_line(alert, tz=UTC).split()[3] == "-(9)"
    no_port = software_alert(UDP_LOOPBACK, 0x0800, in_port=None)
    assert line(no_port).split()[3] == "-"
    empty_port = software_alert(UDP_LOOPBACK, 0x0800, in_port=InPort())
    assert line(empty_port).split()[3] == "-"


def test_caching_resolver_asks_once_and_swallows_errors() -> None:
    calls: list[int] = []

    def resolve(ifindex: int) -> str | None:
        calls.append(ifindex)
        if ifindex == 9:
            raise OSError("gone")
        return f"if{ifindex}"

    cached = caching_resolver(resolve)
    assert [cached(1), cached(1), cached(9), cached(9)] == ["if1", "if1", None, None]
    assert calls == [1, 9]


def test_truncated_and_odd_payloads_say_so() -> None:
    truncated = software_alert(UDP_LOOPBACK[:30], 0x0800, orig_len=54)
    assert line(truncated).endswith(" IPv4 (truncated IPv4 header) len 30/54")
    no_payload = PacketAlert(in_port=InPort(ifindex=1), orig_len=1500)
    assert line(no_payload) == "- - - lo(1) - (no payload) len 0/1500"
    empty = software_alert(b"", 0x0800, orig_len=None)
    assert line(empty).endswith(" lo(1) IPv4 (no payload) len 0/-")
    lldp = software_alert(bytes(12) + b"\x88\xcc" + bytes(20), 0x88CC)
    assert line(lldp).endswith(" lo(1) LLDP len 34/34")
    unknown = software_alert(bytes(12) + b"\x88\xb5" + bytes(20), 0x88B5)
    assert line(unknown).endswith(" lo(1) ethertype 0x88b5 len 34/34")
    fragment = software_alert(ipv4(17, b"rest of it", fragment_offset=1480), 0x0800)
    assert line(fragment).endswith(" IPv4 UDP 127.0.0.1 > 127.0.0.1 frag 1480 len 30/30")


@pytest.mark.parametrize(
    "frame",
    [UDP_LOOPBACK, tcp_syn_frame(), arp_request_frame(), ipv6_vlan_frame(), icmp_echo_frame()],
    ids=["udp", "tcp", "arp", "ipv6-vlan", "icmp"],
)
def test_every_truncation_renders(frame: bytes) -> None:
    proto = (frame[12] << 8) | frame[13]
    for length in range(len(frame) + 1):
        alert = software_alert(frame[:length], proto, orig_len=len(frame))
        text = line(alert)
        assert text.endswith(f" len {length}/{len(frame)}")
        assert "\n" not in text
        verbose = format_packet_verbose(alert, resolve_ifname=names, tz=UTC)
        assert verbose[0] == text
        json.loads(packet_json_line(alert))


# --------------------------------------------------------------------------- terminal safety

kernel_text = st.lists(
    st.one_of(
        st.characters(),
        st.sampled_from(["\x1b", "\x1b[2J", "\x9b", "\x7f", "\n", "\r", "\u202e", " ", "\\"]),
        st.integers(0xDC80, 0xDCFF).map(chr),  # undecodable bytes kept by surrogateescape
    ),
    max_size=20,
).map("".join)
alerts = st.builds(
    PacketAlert,
    origin=st.sampled_from([0, 1, 2]),
    pc=st.one_of(st.none(), st.integers(0, 2**64 - 1)),
    symbol=st.one_of(st.none(), kernel_text),
    reason=st.one_of(st.none(), kernel_text),
    in_port=st.one_of(
        st.none(),
        st.builds(
            InPort,
            ifindex=st.one_of(st.none(), st.integers(0, 2**32 - 1)),
            name=st.one_of(st.none(), kernel_text),
            unknown_attributes=st.lists(
                st.builds(RawAttribute, st.integers(0, 0xFFFF), st.binary(max_size=8)), max_size=2
            ).map(tuple),
        ),
    ),
    timestamp_ns=st.one_of(st.none(), st.integers(0, 2**64 - 1)),
    proto=st.one_of(
        st.none(), st.sampled_from([0, 0x0800, 0x86DD, 0x0806, 0x8100]), st.integers(0, 0xFFFF)
    ),
    payload=st.one_of(
        st.none(), st.binary(max_size=80), st.just(UDP_LOOPBACK), st.just(ipv6_vlan_frame())
    ),
    orig_len=st.one_of(st.none(), st.integers(0, 2**32 - 1)),
    hw_trap_group_name=st.one_of(st.none(), kernel_text),
    hw_trap_name=st.one_of(st.none(), kernel_text),
    flow_action_cookie=st.one_of(st.none(), st.binary(max_size=8)),
    unknown_attributes=st.lists(
        st.builds(RawAttribute, st.integers(0, 0xFFFF), st.binary(max_size=8)), max_size=2
    ).map(tuple),
)


def assert_terminal_safe(text: str) -> None:
    assert text.isprintable(), repr(text)  # no C0/C1 control, no bidi override, no surrogate
    text.encode("utf-8")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(alerts, st.one_of(st.none(), kernel_text))
def test_nothing_from_the_kernel_or_payload_reaches_the_terminal_raw(
    alert: PacketAlert, resolved: str | None
) -> None:
    text = format_packet_line(alert, resolve_ifname=lambda _index: resolved, symbols=SYMBOLS)
    assert_terminal_safe(text)
    columns = text.split(" ")
    assert len(columns) >= 6  # time, location, reason, interface: never split by a space
    if alert.reason:
        assert columns[2] != "-"
    for verbose_line in format_packet_verbose(
        alert, resolve_ifname=lambda _index: resolved, symbols=SYMBOLS, nanoseconds=True
    ):
        assert_terminal_safe(verbose_line)


def assert_valid_unicode(value: object) -> None:
    if isinstance(value, str):
        value.encode("utf-8")  # strict: a lone surrogate raises
    elif isinstance(value, dict):
        for key, item in value.items():
            assert_valid_unicode(key)
            assert_valid_unicode(item)
    elif isinstance(value, list):
        for item in value:
            assert_valid_unicode(item)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(alerts, st.sampled_from(["hex", "base64"]))
def test_json_always_serialises_and_parses(alert: PacketAlert, encoding: str) -> None:
    record = packet_to_json(alert, resolve_ifname=names, symbols=SYMBOLS, payload_encoding=encoding)  # type: ignore[arg-type]
    text = json.dumps(record, ensure_ascii=True)
    assert_valid_unicode(json.loads(text))  # no lone surrogate: jq and strict parsers accept it
    jsonl = packet_json_line(alert, payload_encoding=encoding)  # type: ignore[arg-type]
    assert jsonl.isascii() and "\x7f" not in jsonl and "\n" not in jsonl
    decoded = json.loads(jsonl)
    payload = alert.payload
    if payload is None:
        assert decoded["payload"] is None
    elif encoding == "hex":
        assert bytes.fromhex(decoded["payload"]) == payload
    else:
        assert base64.b64decode(decoded["payload"]) == payload


def test_escaped_kernel_strings_in_the_line() -> None:
    alert = software_alert(
        UDP_LOOPBACK,
        0x0800,
        symbol="evil\x1b[2J+0x1/0x2",
        reason="NO SOCKET\x07",
        in_port=InPort(ifindex=4, name="eth\x1b]0;pwned\x07"),
    )
    text = line(alert)
    assert "\x1b" not in text and "\x07" not in text
    assert text.split(" ")[1:4] == [
        "evil\\x1b[2J+0x1",
        "NO\\x20SOCKET\\x07",
        "eth\\x1b]0;pwned\\x07(4)",
    ]


# --------------------------------------------------------------------------- verbose


def test_verbose_view_of_a_hardware_drop() -> None:
    alert = PacketAlert(
        origin=1,
        hw_trap_group_name="l3_drops",
        hw_trap_name="blackhole_route",
        in_port=InPort(ifindex=5, name="eni1np1", unknown_attributes=(RawAttribute(7, b"\x01"),)),
        flow_action_cookie=bytes.fromhex("deadbeef"),
        timestamp_ns=DROP_TIME_NS,
        proto=0x0800,
        payload=UDP_LOOPBACK,
        orig_len=1500,
        unknown_attributes=(RawAttribute(99, b"\xca\xfe"), RawAttribute(100, b"")),
    )
    assert format_packet_verbose(alert, tz=UTC) == [
        "00:26:51.123456 hw:l3_drops/blackhole_route - eni1np1(5)"
        " IPv4 UDP 127.0.0.1:40000 > 127.0.0.1:9 len 54/1500",
        "    hardware drop, trap blackhole_route, group l3_drops, flow action cookie 0xdeadbeef",
        "    time: 2020-11-17T00:26:51.123456789 (1605572811123456789 ns since the epoch)",
        "    interface: eni1np1, ifindex 5",
        "    packet: 54 of 1500 bytes captured, protocol 0x0800 (IPv4)",
        "    Ethernet: 00:00:00:00:00:00 > 00:00:00:00:00:00, type 0x0800 (IPv4)",
        "    IPv4: 127.0.0.1 > 127.0.0.1, ttl 64, total length 40, protocol 17 (UDP)",
        "    UDP: port 40000 > 9",
        "    unknown attribute 99: 2 bytes cafe",
        "    unknown attribute 100: 0 bytes",
        "    unknown in_port attribute 7: 1 bytes 01",
        "    0x0000:  0000 0000 0000 0000 0000 0000 0800 4500  ..............E.",
        "    0x0010:  0028 0001 4000 4011 0000 7f00 0001 7f00  .(..@.@.........",
        "    0x0020:  0001 9c40 0009 0014 0000 6865 6c6c 6f20  ...@......hello ",
        "    0x0030:  776f 726c 6421                           world!",
    ]


def test_verbose_view_of_tcp_arp_vlan() -> None:
    tcp = format_packet_verbose(software_alert(tcp_syn_frame(), 0x0800), tz=UTC)
    assert "    TCP: port 51000 > 80, flags [S], seq 2864434397, ack 0" in tcp
    assert (
        "    software drop, pc 0xffffffff81b4c5f7, symbol __udp4_lib_rcv+0x5f7/0xa90,"
        " reason NO_SOCKET" in tcp
    )
    arp = format_packet_verbose(software_alert(arp_request_frame(), 0x0806), tz=UTC)
    assert (
        "    ARP: operation 1 (request), sender 02:00:00:00:00:01 192.0.2.1,"
        " target 192.0.2.2" in arp
    )
    vlan = format_packet_verbose(software_alert(ipv6_vlan_frame(), 0x8100), tz=UTC)
    assert "    VLAN: 100" in vlan
    assert (
        "    IPv6: 2001:db8::1 > 2001:db8::2, hop limit 255, payload length 13,"
        " protocol 17 (UDP)" in vlan
    )
    icmp = format_packet_verbose(software_alert(icmp_echo_frame(), 0x0800), tz=UTC)
    assert "    ICMP: echo request (type 8, code 0)" in icmp
    cut = format_packet_verbose(software_alert(UDP_LOOPBACK[:30], 0x0800), tz=UTC)
    assert "    note: truncated IPv4 header" in cut
    limited = format_packet_verbose(UDP_ALERT, tz=UTC, max_dump_bytes=16)
    assert limited[-1] == "    (38 more bytes)"


def test_hex_dump_layout() -> None:
    data = bytes(range(0x1B, 0x1B + 18)) + b"\x7f\xff"
    assert hex_dump(data, indent="") == [
        "0x0000:  1b1c 1d1e 1f20 2122 2324 2526 2728 292a  ..... !\"#$%&'()*",
        "0x0010:  2b2c 7fff                                +,..",
    ]
    assert hex_dump(b"") == []


# --------------------------------------------------------------------------- JSON


def test_json_of_a_software_drop() -> None:
    record = packet_to_json(UDP_ALERT, resolve_ifname=names)
    headers = record.pop("headers")
    assert record == {
        "type": "packet",
        "time": "2020-11-17T00:26:51.123456789+00:00",
        "timestamp_ns": DROP_TIME_NS,
        "origin": "sw",
        "pc": "0xffffffff81b4c5f7",
        "symbol": "__udp4_lib_rcv+0x5f7/0xa90",
        "function": "__udp4_lib_rcv",
        "offset": 0x5F7,
        "module": None,
        "reason": "NO_SOCKET",
        "in_port": {"ifindex": 1, "name": "lo", "unknown_attributes": []},
        "proto": 0x0800,
        "proto_name": "IPv4",
        "orig_len": 54,
        "captured_len": 54,
        "payload_encoding": "hex",
        "payload": UDP_LOOPBACK.hex(),
        "hw_trap_group": None,
        "hw_trap_name": None,
        "flow_action_cookie": None,
        "unknown_attributes": [],
    }
    assert headers["l3"] == "IPv4" and headers["l4"] == "UDP"
    assert (headers["src"], headers["sport"], headers["dst"], headers["dport"]) == (
        "127.0.0.1",
        40000,
        "127.0.0.1",
        9,
    )
    assert headers["vlan_ids"] == [] and headers["notes"] == []
    assert json.loads(json.dumps(packet_to_json(UDP_ALERT)))["headers"] == headers


def test_json_of_a_hardware_drop_and_symbol_resolution() -> None:
    record = packet_to_json(HARDWARE_ALERT, payload_encoding="base64")
    assert record["origin"] == "hw" and record["pc"] is None
    assert (record["hw_trap_group"], record["hw_trap_name"]) == ("l3_drops", "blackhole_route")
    assert record["flow_action_cookie"] == "deadbeef"
    assert record["in_port"]["name"] == "eni1np1"
    assert base64.b64decode(record["payload"]) == HARDWARE_ALERT.payload
    assert record["headers"]["tcp_flags"] == 2 and record["headers"]["tcp_flags_text"] == "S"
    resolved = packet_to_json(software_alert(UDP_LOOPBACK, 0x0800, symbol=None), symbols=SYMBOLS)
    assert (resolved["symbol"], resolved["function"], resolved["offset"]) == (
        None,
        "__udp4_lib_rcv",
        0x5F7,
    )


def test_json_replaces_undecodable_bytes() -> None:
    alert = software_alert(
        UDP_LOOPBACK, 0x0800, reason="BAD\udcff", symbol="f\udc80+0x1/0x2", unknown_attributes=()
    )
    record = packet_to_json(alert)
    assert record["reason"] == "BAD\ufffd" and record["function"] == "f\ufffd"
    assert json.loads(packet_json_line(alert))["reason"] == "BAD\ufffd"
    with pytest.raises(ValueError, match="payload_encoding"):
        packet_to_json(alert, payload_encoding="raw")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="payload_encoding"):
        packet_json_line(alert, payload_encoding="raw")  # type: ignore[arg-type]


# packet_json_line writes its JSON directly, with caches; it must stay byte for byte the
# json.dumps of packet_to_json's dict, which is how it was first written.


def reference_json_line(alert: PacketAlert, **options: Any) -> str:
    record = packet_to_json(alert, **options)
    line = json.dumps(record, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return line.replace("\x7f", "\\u007f")


optional_ints = st.one_of(st.none(), st.integers(0, 2**64 - 1))
optional_texts = st.one_of(st.none(), kernel_text)
# Any PacketHeaders a caller could pass, not only what describe_packet makes.
packet_headers = st.builds(
    PacketHeaders,
    link=optional_texts,
    eth_src=optional_texts,
    eth_dst=optional_texts,
    vlan_ids=st.lists(st.integers(0, 4095), max_size=3).map(tuple),
    ethertype=st.one_of(st.none(), st.sampled_from([0x0800, 0x86DD, 0x8100]), optional_ints),
    l3_offset=optional_ints,
    l3=optional_texts,
    src=optional_texts,
    dst=optional_texts,
    ip_proto=optional_ints,
    ttl=optional_ints,
    ip_length=optional_ints,
    fragment_offset=optional_ints,
    more_fragments=st.booleans(),
    l4=st.one_of(st.none(), st.sampled_from(["TCP", "UDP", "ICMP", "ICMPv6"]), kernel_text),
    l4_offset=optional_ints,
    sport=optional_ints,
    dport=optional_ints,
    tcp_flags=st.one_of(st.none(), st.integers(0, 255)),
    seq=optional_ints,
    ack=optional_ints,
    icmp_type=st.one_of(st.none(), st.integers(0, 255)),
    icmp_code=st.one_of(st.none(), st.integers(0, 255)),
    arp_op=st.one_of(st.none(), st.integers(0, 10), optional_ints),
    arp_sender_mac=optional_texts,
    notes=st.lists(kernel_text, max_size=3).map(tuple),
)
time_zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-3), "x\x1b")]
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    alerts,
    st.one_of(st.none(), packet_headers),
    st.sampled_from(["hex", "base64"]),
    time_zones,
    st.sampled_from([None, SYMBOLS]),
    st.one_of(st.none(), kernel_text),
)
def test_json_line_is_json_dumps_of_packet_to_json(
    alert: PacketAlert,
    headers: PacketHeaders | None,
    encoding: str,
    tz: timezone,
    symbols: SymbolTable | None,
    resolved: str | None,
) -> None:
    options: dict[str, Any] = {
        "resolve_ifname": lambda _index: resolved,
        "symbols": symbols,
        "payload_encoding": encoding,
        "tz": tz,
        "headers": headers,
    }
    expected = reference_json_line(alert, **options)
    assert packet_json_line(alert, **options) == expected
    assert packet_json_line(alert, **options) == expected  # again, from the caches


@pytest.mark.parametrize(
    "frame",
    [UDP_LOOPBACK, tcp_syn_frame(), arp_request_frame(), ipv6_vlan_frame(), icmp_echo_frame()],
    ids=["udp", "tcp", "arp", "ipv6-vlan", "icmp"],
)
def test_json_line_of_every_truncation_and_of_look_alikes(frame: bytes) -> None:
    """A storm's shape: the same sites and interfaces, packets cut and changed."""
    proto = (frame[12] << 8) | frame[13]
    for length in range(len(frame) + 1):
        for alert in (
            software_alert(frame[:length], proto, orig_len=len(frame)),
            replace(HARDWARE_ALERT, payload=frame[:length], timestamp_ns=DROP_TIME_NS + length),
        ):
            assert packet_json_line(alert, resolve_ifname=names) == reference_json_line(
                alert, resolve_ifname=names
            )


def test_json_line_caches_stay_bounded_and_right() -> None:
    """More distinct sites, names, protocols and seconds than the caches hold."""
    shared = packet_json.SHARED_LINES  # the caches of packet_json_line
    for index in range(3 * shared.max_entries):
        alert = software_alert(
            UDP_LOOPBACK,
            index % 0x10000,
            reason=f"REASON_{index}",
            symbol=f"f{index % 5000}+0x1/0x2",
            in_port=InPort(ifindex=index, name=f"if{index}"),
            timestamp_ns=DROP_TIME_NS + index * 1_000_000_000,
        )
        if index % 97 == 0:
            assert packet_json_line(alert) == reference_json_line(alert)
        else:
            packet_json_line(alert)
    caches = [
        shared.headers.texts,
        shared.kernel_texts,
        shared.drop_sites,
        shared.in_ports,
        shared.protos,
        shared.seconds,
    ]
    assert all(len(cache) <= shared.max_entries for cache in shared.caches())
    assert all(len(cache) <= shared.max_entries for cache in caches)


def test_json_line_names_a_pc_by_the_symbol_table_of_each_call() -> None:
    """A location found through ``symbols`` is not cached under the drop site alone."""
    for symbol in (None, ""):
        alert = software_alert(UDP_LOOPBACK, 0x0800, symbol=symbol)
        for table in (SYMBOLS, None, SYMBOLS, SymbolTable.from_kallsyms_text("")):
            line = packet_json_line(alert, symbols=table)
            assert line == reference_json_line(alert, symbols=table)
            expected = "__udp4_lib_rcv" if table is SYMBOLS else None
            assert json.loads(line)["function"] == expected


def test_json_line_asks_the_resolver_every_time() -> None:
    """Interface names are not cached: a resolver may learn a new name."""
    names_now = {1: "old"}
    alert = software_alert(UDP_LOOPBACK, 0x0800)
    assert json.loads(packet_json_line(alert, resolve_ifname=names_now.get))["in_port"] == {
        "ifindex": 1,
        "name": "old",
        "unknown_attributes": [],
    }
    names_now[1] = "new\x1b"
    line = packet_json_line(alert, resolve_ifname=names_now.get)
    assert json.loads(line)["in_port"]["name"] == "new\x1b" and "\x1b" not in line


# --------------------------------------------------------------------------- filters


def test_reason_filters() -> None:
    no_socket = software_alert(UDP_LOOPBACK, 0x0800, reason="NO_SOCKET")
    unspecified = software_alert(UDP_LOOPBACK, 0x0800, reason="NOT_SPECIFIED")
    reasonless = software_alert(UDP_LOOPBACK, 0x0800, reason=None)
    include = PacketFilter(include_reasons=frozenset({"skb_drop_reason_no_socket"}))
    assert include.matches(no_socket)
    assert not include.matches(unspecified) and not include.matches(reasonless)
    assert not include.matches(HARDWARE_ALERT)
    exclude = PacketFilter(exclude_reasons=frozenset({"not_specified"}))
    assert exclude.matches(no_socket) and exclude.matches(reasonless)
    assert not exclude.matches(unspecified)
    glob = PacketFilter(include_reasons=frozenset({"NO_*"}))
    assert glob.matches(no_socket) and not glob.matches(unspecified)
    both = PacketFilter.from_options(reasons=["NO_*,NOT_*"], exclude_reasons=["NOT_SPECIFIED"])
    assert both.matches(no_socket) and not both.matches(unspecified)
    assert normalize_reason(" Skb_Drop_Reason_TCP_CSUM ") == "TCP_CSUM"


def test_location_filters() -> None:
    udp_drop = UDP_ALERT
    tcp_drop = software_alert(tcp_syn_frame(), 0x0800, symbol="tcp_v4_rcv+0x9a/0xe60")
    module_drop = software_alert(UDP_LOOPBACK, 0x0800, symbol="tun_do_read+0x1c/0x40 [tun]")
    by_glob = PacketFilter(locations=frozenset({"__udp*"}))
    assert by_glob.matches(udp_drop) and not by_glob.matches(tcp_drop)
    exact = PacketFilter(locations=frozenset({"tun_do_read", "tcp_v4_rcv"}))
    assert exact.matches(module_drop) and exact.matches(tcp_drop) and not exact.matches(udp_drop)
    assert not PacketFilter(locations=frozenset({"__UDP*"})).matches(udp_drop)  # case sensitive
    pc_only = software_alert(UDP_LOOPBACK, 0x0800, symbol=None)
    assert by_glob.matches(pc_only, symbols=SYMBOLS) and not by_glob.matches(pc_only)
    traps = PacketFilter(locations=frozenset({"blackhole_*"}))
    assert traps.matches(HARDWARE_ALERT) and not traps.matches(udp_drop)


def test_interface_filters() -> None:
    by_name = PacketFilter(interfaces=frozenset({"lo"}))
    assert by_name.matches(UDP_ALERT, ifname="lo")
    assert not by_name.matches(UDP_ALERT)  # no name known, and ifindex 1 is not "lo"
    assert PacketFilter(interfaces=frozenset({"1"})).matches(UDP_ALERT)
    assert PacketFilter(interfaces=frozenset({"eni*"})).matches(HARDWARE_ALERT)
    assert not PacketFilter(interfaces=frozenset({"eth*"})).matches(HARDWARE_ALERT)
    no_port = software_alert(UDP_LOOPBACK, 0x0800, in_port=None)
    assert not by_name.matches(no_port)


def test_protocol_filters() -> None:
    tcp = software_alert(tcp_syn_frame(), 0x0800)
    arp = software_alert(arp_request_frame(), 0x0806)
    vlan = software_alert(ipv6_vlan_frame(), 0x8100)
    icmp = software_alert(icmp_echo_frame(), 0x0800)

    def accepted(*protocols: str) -> list[str]:
        chosen = PacketFilter(protocols=frozenset(protocols))
        candidates = {"udp": UDP_ALERT, "tcp": tcp, "arp": arp, "vlan": vlan, "icmp": icmp}
        return sorted(name for name, alert in candidates.items() if chosen.matches(alert))

    assert accepted("udp") == ["udp", "vlan"]
    assert accepted("tcp", "arp") == ["arp", "tcp"]
    assert accepted("ipv4") == accepted("ip") == ["icmp", "tcp", "udp"]
    assert accepted("ip6") == accepted("IPv6") == ["vlan"]
    assert accepted("0x86dd") == accepted("34525") == ["vlan"]
    assert accepted("0x8100") == accepted("vlan") == ["vlan"]
    assert accepted("0x0806") == ["arp"]
    assert accepted("icmp") == ["icmp"] and accepted("icmpv6") == []
    headers = describe_packet(tcp.proto, tcp.payload or b"")
    assert PacketFilter(protocols=frozenset({"tcp"})).matches(tcp, headers)
    with pytest.raises(ValueError, match="unknown protocol"):
        PacketFilter(protocols=frozenset({"tcpp"}))
    with pytest.raises(ValueError, match="larger than"):
        PacketFilter(protocols=frozenset({"0x10000"}))


def test_origin_filters_and_combinations() -> None:
    assert PacketFilter(origins=frozenset({"hardware"})).matches(HARDWARE_ALERT)
    assert not PacketFilter(origins=frozenset({"sw"})).matches(HARDWARE_ALERT)
    with pytest.raises(ValueError, match="origin"):
        PacketFilter(origins=frozenset({"firmware"}))
    combined = PacketFilter.from_options(reasons=["NO_SOCKET"], protocols=["tcp"])
    assert not combined.matches(UDP_ALERT)  # reason matches, protocol does not
    assert combined.matches(software_alert(tcp_syn_frame(), 0x0800))
    assert not PacketFilter().active and PacketFilter().matches(UDP_ALERT)
    single = PacketFilter(include_reasons="no_socket")  # type: ignore[arg-type]
    assert single.include_reasons == frozenset({"NO_SOCKET"})
    assert combined.active and combined.needs_headers


def test_parse_filter_arguments() -> None:
    parsed = parse_filter_arguments(
        [
            "--reason",
            "NO_SOCKET",
            "--exclude-reason=NOT_SPECIFIED",
            "--location",
            "udp*",
            "--interface",
            "lo",
            "--protocol",
            "udp,tcp",
            "--protocol=ip",
            "--origin",
            "sw",
        ]
    )
    assert parsed == PacketFilter(
        include_reasons=frozenset({"NO_SOCKET"}),
        exclude_reasons=frozenset({"NOT_SPECIFIED"}),
        locations=frozenset({"udp*"}),
        interfaces=frozenset({"lo"}),
        protocols=frozenset({"udp", "tcp", "ipv4"}),
        origins=frozenset({"sw"}),
    )
    assert parse_filter_arguments([]) == PacketFilter()
    for bad in (["--reason"], ["--reason="], ["--colour", "red"], ["NO_SOCKET"]):
        with pytest.raises(ValueError):
            parse_filter_arguments(bad)


# --------------------------------------------------------------------------- pcap


def read_pcap(data: bytes) -> tuple[tuple[int, ...], list[tuple[int, int, int, int, bytes]]]:
    header = struct.unpack_from("=IHHiIII", data)
    records = []
    position = 24
    while position < len(data):
        seconds, nanoseconds, captured, original = struct.unpack_from("=IIII", data, position)
        position += 16
        records.append(
            (seconds, nanoseconds, captured, original, data[position : position + captured])
        )
        position += captured
    return header, records


def test_pcap_records_bytes() -> None:
    stream = io.BytesIO()
    sink = PcapPacketSink(stream)
    raw = software_alert(UDP_LOOPBACK[14:], 0x0800, in_port=InPort(ifindex=7), orig_len=1000)
    for alert in (
        UDP_ALERT,
        software_alert(ipv6_vlan_frame(), 0x8100, in_port=InPort(ifindex=2)),
        raw,
    ):
        sink.write(alert)
    sink.close()
    assert sink.packets_written == 3
    header, records = read_pcap(stream.getvalue())
    assert header == (0xA1B23C4D, 2, 4, 0, 0, 262144, LINKTYPE_LINUX_SLL2)
    seconds, nanoseconds, captured, original, frame = records[0]
    assert (seconds, nanoseconds) == (1605572811, 123456789)
    assert (captured, original) == (20 + 40, 20 + 40)
    # protocol, reserved, ifindex, ARPHRD_LOOPBACK, PACKET_HOST, address length, zero MAC
    assert frame[:20] == bytes.fromhex("0800 0000 00000001 0304 00 06 0000000000000000")
    assert frame[20:] == UDP_LOOPBACK[14:]
    vlan_frame = records[1][4]
    # 802.1Q kept after the header, as libpcap does; multicast destination, ARPHRD_ETHER.
    assert vlan_frame[:20] == bytes.fromhex("8100 0000 00000002 0001 02 06 0200000000010000")
    assert vlan_frame[20:] == ipv6_vlan_frame()[14:]
    raw_frame = records[2]
    assert raw_frame[2:4] == (60, 1020)
    assert raw_frame[4][:20] == bytes.fromhex("0800 0000 00000007 fffe 00 00 0000000000000000")
    assert sll2_frame(raw)[20:] == UDP_LOOPBACK[14:]


def test_pcap_sink_opens_and_closes_its_file(tmp_path: Path) -> None:
    path = tmp_path / "drops.pcap"
    with PcapPacketSink.open(path) as sink:
        sink.write(HARDWARE_ALERT)
        sink.write(PacketAlert(origin=0, proto=0x0800))  # no payload, no time: a header only
    header, records = read_pcap(path.read_bytes())
    assert header[-1] == LINKTYPE_LINUX_SLL2 and len(records) == 2
    assert records[1][:4] == (0, 0, 20, 20)


def write_sample_capture(path: Path) -> None:
    with PcapPacketSink.open(path) as sink:
        sink.write(UDP_ALERT)
        sink.write(software_alert(UDP_LOOPBACK[14:], 0x0800, in_port=InPort(ifindex=7)))
        sink.write(software_alert(ipv6_vlan_frame(), 0x8100, in_port=InPort(ifindex=2)))
        sink.write(HARDWARE_ALERT)
        sink.write(software_alert(arp_request_frame(), 0x0806, in_port=InPort(ifindex=2)))


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_tshark_reads_the_dropped_packets(tmp_path: Path) -> None:
    path = tmp_path / "drops.pcap"
    write_sample_capture(path)
    fields = [
        "frame.time_epoch",
        "sll.ifindex",
        "sll.etype",
        "vlan.id",
        "ip.src",
        "ip.dst",
        "ipv6.dst",
        "udp.srcport",
        "udp.dstport",
        "tcp.dstport",
        "tcp.flags.syn",
        "arp.dst.proto_ipv4",
        "frame.len",
        "frame.cap_len",
    ]
    command = ["tshark", "-r", str(path), "-T", "fields", "-E", "separator=|"]
    for name in fields:
        command += ["-e", name]
    result = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60)
    rows = [row.split("|") for row in result.stdout.splitlines()]
    assert [row[0] for row in rows][:2] == ["1605572811.123456789", "1605572811.123456789"]
    assert [row[1:3] for row in rows] == [
        ["1", "0x0800"],
        ["7", "0x0800"],
        ["2", "0x8100"],
        ["5", "0x0800"],
        ["2", "0x0806"],
    ]
    udp_loopback, udp_raw, udp_vlan, tcp_syn, arp = rows
    assert udp_loopback[4:9] == ["127.0.0.1", "127.0.0.1", "", "40000", "9"]
    assert udp_raw[4:9] == ["127.0.0.1", "127.0.0.1", "", "40000", "9"]
    assert udp_vlan[3] == "100" and udp_vlan[6:9] == ["2001:db8::2", "5353", "53"]
    assert tcp_syn[4:6] == ["192.0.2.1", "198.51.100.7"] and tcp_syn[9:11] == ["80", "1"]
    assert arp[11] == "192.0.2.2"
    assert udp_loopback[12:14] == ["60", "60"]


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")
def test_tcpdump_reads_the_dropped_packets(tmp_path: Path) -> None:
    path = tmp_path / "drops.pcap"
    write_sample_capture(path)
    result = subprocess.run(
        ["tcpdump", "-nn", "-tt", "-r", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "LINUX_SLL2" in result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 5
    assert lines[0].startswith("1605572811.123456 ")
    assert "127.0.0.1.40000 > 127.0.0.1.9: UDP, length 12" in lines[0]
    assert "127.0.0.1.40000 > 127.0.0.1.9: UDP, length 12" in lines[1]
    assert "2001:db8::1.5353 > 2001:db8::2.53" in lines[2]
    assert "192.0.2.1.51000 > 198.51.100.7.80: Flags [S]" in lines[3]
    assert "Request who-has 192.0.2.2 tell 192.0.2.1" in lines[4]
