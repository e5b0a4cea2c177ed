"""Packet headers: the struct fast path agrees with construct parsing, on any bytes.

Strategy: frames of every kind (Ethernet with 0-3 VLAN tags, loopback's
all-zero Ethernet, bare layer 3; IPv4 with options and fragments, IPv6 with
extension-header chains, ARP; TCP, UDP, ICMP, ICMPv6, other protocols) are
*built with the construct definitions* in ``netdm.engine.header_definitions``,
so the definitions say what a well-formed header is.  The fast decoder's
answer must then be what construct *parses* from the same bytes
(``construct_oracle.check_with_construct``) on each frame, on every prefix
of it (a payload cut by ``trunc_len``), on frames with bytes overwritten,
and on random bytes, and it may never raise.  Hand-written frames pin down
what the decoded fields and notes mean; the ``struct`` layouts derived from
the definitions are pinned to the formats they must come out as.
"""

from __future__ import annotations

import ipaddress
import os
import struct
import subprocess
import sys

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from netdm.engine.headers import (
    ETHERTYPE_NAMES,
    IP_PROTOCOL_NAMES,
    PacketHeaders,
    describe_packet,
    header_definitions,
    icmp_description,
    payload_is_ethernet,
    tcp_flags_text,
)
from tests.engine.construct_oracle import check_with_construct

DEFINITIONS = header_definitions()
_SCALE = int(os.environ.get("NETDM_HEADERS_SOAK", "1"))

Frame = tuple[int | None, bytes]


def _budget(examples: int) -> settings:
    return settings(
        max_examples=examples * _SCALE,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def assert_same(proto: int | None, payload: bytes) -> PacketHeaders:
    """``describe_packet``, after checking every field of it with construct parsing."""
    fast = describe_packet(proto, payload)
    check_with_construct(proto, payload, fast)
    return fast


# --------------------------------------------------------------------------- strategies

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
macs = st.binary(min_size=6, max_size=6).map(lambda raw: raw.hex(":"))
ipv4_addresses = st.binary(min_size=4, max_size=4).map(lambda raw: str(ipaddress.IPv4Address(raw)))
_hextets = st.lists(
    st.one_of(st.just(0), st.just(0), st.sampled_from([1, 0xFFFF]), u16), min_size=8, max_size=8
)
ipv6_addresses = st.one_of(
    _hextets.map(lambda words: b"".join(word.to_bytes(2, "big") for word in words)),
    st.binary(min_size=4, max_size=4).map(lambda v4: bytes(10) + b"\xff\xff" + v4),  # mapped
    st.binary(min_size=4, max_size=4).map(lambda v4: bytes(12) + v4),  # compatible
    st.binary(min_size=16, max_size=16),
).map(lambda raw: str(ipaddress.IPv6Address(raw)))
tails = st.binary(max_size=24)
rarely = st.integers(0, 7).map(lambda roll: roll == 0)  # true one time in eight
ethertypes = st.one_of(st.sampled_from(sorted(ETHERTYPE_NAMES)), u16)


@st.composite
def tcp_headers(draw: st.DrawFn) -> bytes:
    data_offset = draw(st.integers(0, 4)) if draw(rarely) else draw(st.integers(5, 15))
    fields = {
        "sport": draw(u16),
        "dport": draw(u16),
        "seq": draw(u32),
        "ack": draw(u32),
        "offset_flags": {
            "data_offset": data_offset,
            "reserved": draw(st.integers(0, 7)),
            "ae": draw(st.booleans()),
            **{name: draw(st.booleans()) for name in ("cwr", "ece", "urg", "ack")},
            **{name: draw(st.booleans()) for name in ("psh", "rst", "syn", "fin")},
        },
        "window": draw(u16),
        "checksum": draw(u16),
        "urgent_pointer": draw(u16),
    }
    if data_offset < 5:
        return bytes(DEFINITIONS.tcp_fixed.build(fields))
    options = draw(st.binary(min_size=(data_offset - 5) * 4, max_size=(data_offset - 5) * 4))
    return bytes(DEFINITIONS.tcp.build({**fields, "options": options}))


def udp_headers() -> st.SearchStrategy[bytes]:
    return st.builds(
        lambda sport, dport, length, checksum: bytes(
            DEFINITIONS.udp.build(
                {"sport": sport, "dport": dport, "length": length, "checksum": checksum}
            )
        ),
        u16,
        u16,
        u16,
        u16,
    )


def icmp_headers(definition_name: str) -> st.SearchStrategy[bytes]:
    definition = getattr(DEFINITIONS, definition_name)
    return st.builds(
        lambda icmp_type, code, checksum: bytes(
            definition.build({"type": icmp_type, "code": code, "checksum": checksum})
        ),
        st.one_of(st.sampled_from([0, 3, 8, 11, 128, 129, 135]), u8),
        u8,
        u16,
    )


@st.composite
def transports(draw: st.DrawFn) -> tuple[int, bytes]:
    """An IP protocol number and its header (plus a few bytes of data)."""
    kind = draw(st.sampled_from(["tcp", "udp", "icmp", "icmpv6", "other"]))
    if kind == "tcp":
        protocol, header = 6, draw(tcp_headers())
    elif kind == "udp":
        protocol, header = 17, draw(udp_headers())
    elif kind == "icmp":
        protocol, header = 1, draw(icmp_headers("icmp"))
    elif kind == "icmpv6":
        protocol, header = 58, draw(icmp_headers("icmpv6"))
    else:
        protocol = draw(st.one_of(st.sampled_from(sorted(IP_PROTOCOL_NAMES)), u8))
        header = draw(st.binary(max_size=16))
    return protocol, header + draw(tails)


@st.composite
def ipv4_packets(draw: st.DrawFn) -> bytes:
    protocol, transport = draw(transports())
    ihl = (
        draw(st.integers(0, 4)) if draw(rarely) else draw(st.one_of(st.just(5), st.integers(5, 15)))
    )
    fragmented = draw(rarely)
    fields = {
        "version_ihl": {
            "version": draw(st.integers(0, 15)) if draw(rarely) else 4,
            "ihl": ihl,
        },
        "tos": draw(u8),
        "total_length": draw(u16),
        "identification": draw(u16),
        "flags_fragment": {
            "reserved": draw(st.booleans()),
            "dont_fragment": draw(st.booleans()),
            "more_fragments": fragmented and draw(st.booleans()),
            "fragment_offset": draw(st.integers(0, 0x1FFF)) if fragmented else 0,
        },
        "ttl": draw(u8),
        "protocol": protocol,
        "checksum": draw(u16),
        "src": draw(ipv4_addresses),
        "dst": draw(ipv4_addresses),
    }
    if ihl < 5:
        header = bytes(DEFINITIONS.ipv4_fixed.build(fields))
    else:
        options = draw(st.binary(min_size=(ihl - 5) * 4, max_size=(ihl - 5) * 4))
        header = bytes(DEFINITIONS.ipv4.build({**fields, "options": options}))
    return header + transport


@st.composite
def ipv6_packets(draw: st.DrawFn) -> bytes:
    protocol, transport = draw(transports())
    chain = draw(st.lists(st.sampled_from([0, 43, 60, 44]), max_size=4))
    extensions = b""
    next_header = protocol
    for header_type in reversed(chain):
        if header_type == 44:
            fragment = {
                "offset": draw(st.one_of(st.just(0), st.just(0), st.integers(0, 0x1FFF))),
                "reserved": draw(st.integers(0, 3)),
                "more_fragments": draw(st.booleans()),
            }
            built = DEFINITIONS.ipv6_fragment.build(
                {
                    "next_header": next_header,
                    "reserved": draw(u8),
                    "fragment": fragment,
                    "identification": draw(u32),
                }
            )
        else:
            units = draw(st.integers(0, 3))
            built = DEFINITIONS.ipv6_extension.build(
                {
                    "next_header": next_header,
                    "header_length": units,
                    "data": draw(st.binary(min_size=units * 8 + 6, max_size=units * 8 + 6)),
                }
            )
        extensions = bytes(built) + extensions
        next_header = header_type
    header = DEFINITIONS.ipv6.build(
        {
            "version_class_flow": {
                "version": draw(st.integers(0, 15)) if draw(rarely) else 6,
                "traffic_class": draw(u8),
                "flow_label": draw(st.integers(0, 0xFFFFF)),
            },
            "payload_length": draw(u16),
            "next_header": next_header,
            "hop_limit": draw(u8),
            "src": draw(ipv6_addresses),
            "dst": draw(ipv6_addresses),
        }
    )
    return bytes(header) + extensions + transport


@st.composite
def arp_packets(draw: st.DrawFn) -> bytes:
    operation = draw(st.one_of(st.sampled_from([1, 2]), u16))
    if not draw(rarely):
        built = DEFINITIONS.arp_ethernet_ipv4.build(
            {
                "operation": operation,
                "sender_hardware_address": draw(macs),
                "sender_protocol_address": draw(ipv4_addresses),
                "target_hardware_address": draw(macs),
                "target_protocol_address": draw(ipv4_addresses),
            }
        )
    else:
        hlen, plen = draw(st.integers(0, 8)), draw(st.integers(0, 8))
        built = DEFINITIONS.arp.build(
            {
                "htype": draw(st.one_of(st.just(1), u16)),
                "ptype": draw(st.one_of(st.just(0x0800), u16)),
                "hlen": hlen,
                "plen": plen,
                "operation": operation,
                "sender_hardware_address": draw(st.binary(min_size=hlen, max_size=hlen)),
                "sender_protocol_address": draw(st.binary(min_size=plen, max_size=plen)),
                "target_hardware_address": draw(st.binary(min_size=hlen, max_size=hlen)),
                "target_protocol_address": draw(st.binary(min_size=plen, max_size=plen)),
            }
        )
    return bytes(built) + draw(tails)


@st.composite
def layer3_packets(draw: st.DrawFn) -> tuple[int, bytes]:
    """An EtherType and a layer-3 packet of that type."""
    kind = draw(st.sampled_from(["ipv4", "ipv6", "arp", "other"]))
    if kind == "ipv4":
        return 0x0800, draw(ipv4_packets())
    if kind == "ipv6":
        return 0x86DD, draw(ipv6_packets())
    if kind == "arp":
        return 0x0806, draw(arp_packets())
    return draw(ethertypes), draw(st.binary(max_size=48))


@st.composite
def frames(draw: st.DrawFn) -> Frame:
    """``(proto, payload)`` as the kernel would send them, mostly; sometimes a wrong proto."""
    ethertype, packet = draw(layer3_packets())
    link = draw(st.sampled_from(["ethernet", "loopback", "raw"]))
    if link == "raw":
        proto: int | None = ethertype
        payload = packet
    else:
        tags = b""
        inner = ethertype
        for _ in range(draw(st.integers(0, 3)) if link == "ethernet" else 0):
            tag = {
                "tci": {
                    "pcp": draw(st.integers(0, 7)),
                    "dei": draw(st.booleans()),
                    "vid": draw(st.integers(0, 4095)),
                },
                "ethertype": inner,
            }
            tags = bytes(DEFINITIONS.vlan_tag.build(tag)) + tags
            inner = draw(st.sampled_from([0x8100, 0x88A8, 0x9100]))
        zero = "00:00:00:00:00:00"
        header = DEFINITIONS.ethernet.build(
            {
                "dst": zero if link == "loopback" else draw(macs),
                "src": zero if link == "loopback" else draw(macs),
                "ethertype": inner,
            }
        )
        proto, payload = inner, bytes(header) + tags + packet
    if draw(rarely):  # what the kernel sends when skb->protocol is unset, or nonsense
        proto = draw(st.one_of(st.sampled_from([0, None]), u16))
    return proto, payload


# --------------------------------------------------------------------------- properties


@_budget(400)
@given(frames())
def test_built_frames_decode_equally(frame: Frame) -> None:
    assert_same(*frame)


@_budget(120)
@given(frames())
def test_every_truncation_decodes_equally(frame: Frame) -> None:
    proto, payload = frame
    for length in range(len(payload) + 1):
        assert_same(proto, payload[:length])


@_budget(200)
@given(frames(), st.data())
def test_overwritten_bytes_decode_equally(frame: Frame, data: st.DataObject) -> None:
    proto, payload = frame
    mutable = bytearray(payload)
    for _ in range(data.draw(st.integers(1, 4))):
        if mutable:
            mutable[data.draw(st.integers(0, len(mutable) - 1))] = data.draw(u8)
    assert_same(proto, bytes(mutable))


@_budget(300)
@given(
    st.one_of(st.none(), st.sampled_from([0, 0x0800, 0x86DD, 0x0806, 0x8100]), u16),
    st.binary(max_size=128),
)
@example(0x0800, b"")
@example(None, b"")
@example(0x8100, bytes(12) + b"\x81\x00" * 40)
def test_random_bytes_decode_equally(proto: int | None, payload: bytes) -> None:
    assert_same(proto, payload)


# --------------------------------------------------------------------------- known frames

LOOPBACK = bytes(12)


def ipv4(
    protocol: int,
    transport: bytes,
    src: str = "127.0.0.1",
    dst: str = "127.0.0.1",
    *,
    ttl: int = 64,
    fragment_offset: int = 0,
    more: bool = False,
) -> bytes:
    return (
        bytes(
            DEFINITIONS.ipv4.build(
                {
                    "version_ihl": {"version": 4, "ihl": 5},
                    "tos": 0,
                    "total_length": 20 + len(transport),
                    "identification": 1,
                    "flags_fragment": {
                        "reserved": False,
                        "dont_fragment": not (more or fragment_offset),
                        "more_fragments": more,
                        "fragment_offset": fragment_offset // 8,
                    },
                    "ttl": ttl,
                    "protocol": protocol,
                    "checksum": 0,
                    "src": src,
                    "dst": dst,
                    "options": b"",
                }
            )
        )
        + transport
    )


def udp(sport: int, dport: int, data: bytes = b"") -> bytes:
    return (
        bytes(
            DEFINITIONS.udp.build(
                {"sport": sport, "dport": dport, "length": 8 + len(data), "checksum": 0}
            )
        )
        + data
    )


UDP_LOOPBACK = LOOPBACK + b"\x08\x00" + ipv4(17, udp(40000, 9, b"hello world!"))


def test_udp_to_closed_port_on_loopback() -> None:
    headers = assert_same(0x0800, UDP_LOOPBACK)
    assert headers == PacketHeaders(
        link="Ethernet",
        eth_src="00:00:00:00:00:00",
        eth_dst="00:00:00:00:00:00",
        ethertype=0x0800,
        l3_offset=14,
        l3="IPv4",
        src="127.0.0.1",
        dst="127.0.0.1",
        ip_proto=17,
        ttl=64,
        ip_length=40,
        l4="UDP",
        l4_offset=34,
        sport=40000,
        dport=9,
    )


def test_the_same_packet_without_ethernet_header_is_raw_ipv4() -> None:
    headers = assert_same(0x0800, UDP_LOOPBACK[14:])
    assert headers.link is None and headers.l3_offset == 0
    assert (headers.src, headers.sport, headers.dport) == ("127.0.0.1", 40000, 9)


def test_tcp_syn() -> None:
    tcp = bytes(
        DEFINITIONS.tcp.build(
            {
                "sport": 51000,
                "dport": 80,
                "seq": 123456789,
                "ack": 0,
                "offset_flags": {
                    "data_offset": 6,
                    "reserved": 0,
                    "ae": False,
                    **dict.fromkeys(["cwr", "ece", "urg", "ack", "psh", "rst", "fin"], False),
                    "syn": True,
                },
                "window": 64240,
                "checksum": 0,
                "urgent_pointer": 0,
                "options": b"\x02\x04\x05\xb4",
            }
        )
    )
    frame = bytes.fromhex("020000000002020000000001") + b"\x08\x00"
    headers = assert_same(0x0800, frame + ipv4(6, tcp, "10.0.0.1", "10.0.0.2"))
    assert (headers.l4, headers.sport, headers.dport) == ("TCP", 51000, 80)
    assert headers.tcp_flags == 0x02 and tcp_flags_text(headers.tcp_flags) == "S"
    assert headers.seq == 123456789 and headers.notes == ()
    assert headers.eth_src == "02:00:00:00:00:01"
    # Cut inside the options: the fixed header is still there.
    cut = assert_same(0x0800, (frame + ipv4(6, tcp, "10.0.0.1", "10.0.0.2"))[:-2])
    assert cut.tcp_flags == 0x02 and cut.notes == ("truncated TCP options",)


def test_tcp_flag_letters_follow_tcpdump() -> None:
    assert tcp_flags_text(0x12) == "S."
    assert tcp_flags_text(0x18) == "P."
    assert tcp_flags_text(0x11) == "F."
    assert tcp_flags_text(0x04) == "R"
    assert tcp_flags_text(0) == "none"


def test_arp_request() -> None:
    arp = bytes(
        DEFINITIONS.arp_ethernet_ipv4.build(
            {
                "operation": "request",
                "sender_hardware_address": "02:00:00:00:00:01",
                "sender_protocol_address": "192.0.2.1",
                "target_hardware_address": "00:00:00:00:00:00",
                "target_protocol_address": "192.0.2.2",
            }
        )
    )
    frame = b"\xff" * 6 + bytes.fromhex("020000000001") + b"\x08\x06" + arp + bytes(18)
    headers = assert_same(0x0806, frame)
    assert (headers.l3, headers.arp_op) == ("ARP", 1)
    assert (headers.src, headers.dst) == ("192.0.2.1", "192.0.2.2")
    assert headers.arp_sender_mac == "02:00:00:00:00:01"
    assert headers.eth_dst == "ff:ff:ff:ff:ff:ff"


def test_arp_of_another_hardware_type_keeps_the_operation() -> None:
    arp = bytes.fromhex("0006 0800 0604 0002") + bytes(20)
    headers = assert_same(0x0806, arp)
    assert headers.arp_op == 2 and headers.src is None
    assert headers.notes == ("ARP for hardware type 6, protocol 0x0800 not decoded",)


def ipv6(next_header: int, rest: bytes, src: str, dst: str) -> bytes:
    return (
        bytes(
            DEFINITIONS.ipv6.build(
                {
                    "version_class_flow": {"version": 6, "traffic_class": 0, "flow_label": 0},
                    "payload_length": len(rest),
                    "next_header": next_header,
                    "hop_limit": 255,
                    "src": src,
                    "dst": dst,
                }
            )
        )
        + rest
    )


def test_ipv6_udp_in_a_vlan_tag() -> None:
    tag = DEFINITIONS.vlan_tag.build(
        {"tci": {"pcp": 3, "dei": False, "vid": 100}, "ethertype": 0x86DD}
    )
    packet = ipv6(17, udp(5353, 53, b"q"), "2001:db8::1", "2001:db8::2")
    frame = bytes.fromhex("020000000002020000000001") + b"\x81\x00" + bytes(tag) + packet
    headers = assert_same(0x8100, frame)
    assert headers.vlan_ids == (100,) and headers.ethertype == 0x86DD
    assert headers.l3_offset == 18
    assert (headers.src, headers.dst, headers.ttl) == ("2001:db8::1", "2001:db8::2", 255)
    assert (headers.l4, headers.sport, headers.dport) == ("UDP", 5353, 53)


def test_stacked_vlan_tags() -> None:
    outer = DEFINITIONS.vlan_tag.build(
        {"tci": {"pcp": 0, "dei": False, "vid": 10}, "ethertype": 0x8100}
    )
    inner = DEFINITIONS.vlan_tag.build(
        {"tci": {"pcp": 0, "dei": False, "vid": 20}, "ethertype": 0x0800}
    )
    frame = bytes(12) + b"\x88\xa8" + bytes(outer) + bytes(inner) + ipv4(17, udp(1, 2))
    headers = assert_same(0x88A8, frame)
    assert headers.vlan_ids == (10, 20) and headers.sport == 1
    assert assert_same(0x88A8, frame[:20]).notes == ("truncated VLAN tag",)


def test_ipv6_extension_headers_are_skipped() -> None:
    hop_by_hop = bytes([43, 0]) + bytes(6)
    routing = bytes([44, 1]) + bytes(14)
    fragment = bytes([17, 0, 0, 1]) + bytes(4)  # offset 0, more fragments
    packet = ipv6(0, hop_by_hop + routing + fragment + udp(7, 8), "::1", "::1")
    headers = assert_same(0x86DD, packet)
    assert headers.ip_proto == 17 and headers.sport == 7
    assert headers.fragment_offset == 0 and headers.more_fragments
    assert headers.l4_offset == 40 + 8 + 16 + 8
    truncated = assert_same(0x86DD, packet[:50])
    assert truncated.ip_proto == 43 and truncated.l4 is None
    assert truncated.notes == ("truncated IPv6 extension header",)


def test_later_fragments_have_no_transport_header() -> None:
    packet = ipv4(17, b"not a udp header", fragment_offset=1480)
    headers = assert_same(0x0800, packet)
    assert headers.fragment_offset == 1480 and not headers.more_fragments
    assert headers.l4 == "UDP" and headers.sport is None and headers.l4_offset is None


def test_icmp_echo_request() -> None:
    echo = bytes(DEFINITIONS.icmp.build({"type": "echo_request", "code": 0, "checksum": 0}))
    headers = assert_same(0x0800, ipv4(1, echo + bytes(4), "192.0.2.1", "192.0.2.2"))
    assert (headers.l4, headers.icmp_type, headers.icmp_code) == ("ICMP", 8, 0)
    assert icmp_description("ICMP", 8, 0) == "echo request"
    assert icmp_description("ICMP", 3, 3) == "port unreachable"
    assert icmp_description("ICMPv6", 135, 0) == "neighbor solicitation"
    assert icmp_description("ICMPv6", 1, 4) == "port unreachable"
    assert icmp_description("ICMP", 8, 5) == "echo request code 5"
    assert icmp_description("ICMP", 99, 1) == "type 99 code 1"


def test_truncated_ipv4_header_keeps_what_came_before() -> None:
    headers = assert_same(0x0800, UDP_LOOPBACK[:30])
    assert headers.link == "Ethernet" and headers.l3 == "IPv4" and headers.src is None
    assert headers.notes == ("truncated IPv4 header",)
    partial_udp = assert_same(0x0800, UDP_LOOPBACK[:38])
    assert (partial_udp.sport, partial_udp.dport) == (40000, 9)
    assert partial_udp.notes == ("truncated UDP header",)


def test_wrong_ip_version_and_header_lengths() -> None:
    not_ipv4 = bytearray(ipv4(17, udp(1, 2)))
    not_ipv4[0] = 0x65
    assert assert_same(0x0800, bytes(not_ipv4)).notes == ("not IPv4 (version 6)",)
    short_ihl = bytearray(ipv4(17, udp(1, 2)))
    short_ihl[0] = 0x43
    headers = assert_same(0x0800, bytes(short_ihl))
    assert headers.src == "127.0.0.1" and headers.sport is None
    assert headers.notes == ("bad IPv4 header length 12",)


def test_link_layer_rule() -> None:
    assert payload_is_ethernet(0x0800, UDP_LOOPBACK)
    assert not payload_is_ethernet(0x0800, UDP_LOOPBACK[14:])
    assert not payload_is_ethernet(0x0800, UDP_LOOPBACK[:13])
    assert not payload_is_ethernet(0x0004, bytes(12) + b"\x00\x04" + bytes(10))
    assert payload_is_ethernet(0, UDP_LOOPBACK) and payload_is_ethernet(None, UDP_LOOPBACK)
    guessed = assert_same(0, UDP_LOOPBACK)
    assert guessed.notes == ("no protocol from the kernel: guessed Ethernet",)
    assert guessed.sport == 40000
    assert assert_same(None, b"\x45" * 20).notes == (
        "no protocol from the kernel: link layer unknown",
    )
    assert assert_same(0x0800, b"").notes == ("no payload",)


def test_ipv6_text_matches_ipaddress_for_embedded_ipv4() -> None:
    for text in ["::ffff:1.2.3.4", "::1.2.3.4", "::", "::1", "1:0:0:2:0:0:0:3", "1:0:2::"]:
        packed = ipaddress.IPv6Address(text).packed
        headers = assert_same(0x86DD, ipv6(59, b"", text, text))
        assert headers.src == str(ipaddress.IPv6Address(packed))


def test_help_loads_neither_construct_nor_the_header_decoder() -> None:
    """The fast decoder's layouts are derived from the construct definitions when it is
    imported, so importing it loads construct (as every ``netdm watch`` does anyway, through
    the session).  What must stay cheap is the command line itself: ``import netdm.cli`` and
    ``netdm --help`` load neither construct nor the packet modules."""
    code = "\n".join(
        [
            "import sys, contextlib",
            "sys.argv = ['netdm', '--help']",
            "import netdm.cli.main",
            "with contextlib.suppress(SystemExit):",
            "    netdm.cli.main.main()",
            "loaded = ('construct', 'netdm.engine.headers', 'netdm.output.packet_json')",
            "print(*(name in sys.modules for name in loaded))",
        ]
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert output.strip().splitlines()[-1] == "False False False"


def test_fast_layouts_are_the_definitions_laid_out() -> None:
    """What the derivation gives, pinned: the formats the decoder was written against."""
    from netdm.engine import headers

    expected = {
        "_ETHERNET": "!6s6sH",
        "_VLAN_TAG": "!HH",
        "_ARP_FIXED": "!HHBBH",
        "_ARP_ETHERNET_IPV4": "!8x6s4s6x4s",
        "_IPV4": "!B1xH2xHBB2x4s4s",
        "_IPV6": "!IHBB16s16s",
        "_IPV6_FRAGMENT": "!B1xH",
        "_PORTS": "!HH",
        "TCP_SEQ_ACK_OFFSET_FLAGS": "!4xLLH",
    }
    for name, layout in expected.items():
        assert getattr(headers, name).format == layout, name
        assert isinstance(getattr(headers, name), struct.Struct)
    assert (headers._VLAN_ID_MASK, headers._IPV4_IHL_MASK, headers.IPV4_MORE_FRAGMENTS) == (
        0x0FFF,
        0x0F,
        0x2000,
    )
    assert (headers.IPV4_FRAGMENT_OFFSET_MASK, headers._IPV6_FRAGMENT_OFFSET_MASK) == (
        0x1FFF,
        0xFFF8,
    )
    assert (headers.IPV4_VERSION_SHIFT, headers.IPV6_VERSION_SHIFT) == (4, 28)
    assert (headers.TCP_DATA_OFFSET_SHIFT, headers.TCP_DATA_OFFSET_MASK) == (12, 0x0F)
    assert headers.TCP_FLAGS_MASK == 0xFF and headers._IPV6_MORE_FRAGMENTS == 1
    assert headers._ARP_ETHERNET_IPV4_KIND == (1, 0x0800, 6, 4)
    assert (
        DEFINITIONS.ethernet.sizeof(),
        DEFINITIONS.vlan_tag.sizeof(),
    ) == (headers.ETHERNET_HEADER_LEN, headers.VLAN_TAG_LEN)
