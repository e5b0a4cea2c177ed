"""Packet headers of a dropped packet: construct definitions, and a fast decoder proven equal.

Strategy: in packet mode every drop brings the first bytes of the packet,
starting at the MAC header, and a drop storm brings tens of thousands of
them a second.  The header layouts are *defined* once, with construct, in
:func:`header_definitions` (Ethernet II, stacked 802.1Q/802.1ad tags, ARP,
IPv4 with options and fragments, IPv6 with its common extension headers,
TCP, UDP, ICMP, ICMPv6); :func:`describe_packet_reference` decodes with those
definitions only.  :func:`describe_packet` is the hot path: ``struct`` reads
at known offsets, no construct.  The property tests in
``tests/engine/test_headers.py`` build frames of every kind with the construct
definitions, cut them at every length and mix in random bytes, and require
both decoders to return the same :class:`PacketHeaders` and never raise.
construct is imported only inside :func:`header_definitions`, so importing
this module (``netdm --help``, live packet rendering) does not load it.

Which link layer?  The kernel's payload starts at the MAC header, which is
Ethernet for Ethernet devices and loopback (all-zero addresses) but nothing
at all for tun and IP tunnels.  The rule is Wireshark's NET_DM dissector's:
the payload is Ethernet when it is at least 14 bytes long, ``proto`` (the
skb's EtherType) is at least 0x600, and bytes 12-13 equal ``proto``;
otherwise it is a bare layer-3 packet of EtherType ``proto``.  When the
kernel sent no protocol (``proto`` 0 or missing), the payload is taken for
Ethernet if bytes 12-13 hold a common EtherType (IPv4, IPv6, ARP, a VLAN
tag), with a note saying so, and is left undecoded otherwise.

Decoding never raises.  Whatever cannot be decoded (a payload cut short by
``trunc_len``, a wrong IP version, an impossible header length) ends the
walk; the fields decoded so far are kept and :attr:`PacketHeaders.notes`
says why it stopped, e.g. ``truncated IPv4 header``.  A partial TCP or UDP
header still gives its ports when the first four bytes are there.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import struct
from dataclasses import dataclass, fields
from typing import Any

from netdm.capture.link_layer import (
    ETHERNET_HEADER_LEN,
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    ETHERTYPE_QINQ,
    ETHERTYPE_QINQ_OLD,
    ETHERTYPE_VLAN,
    GUESSABLE_ETHERTYPES,
    MIN_ETHERTYPE,
    VLAN_TAG_LEN,
    VLAN_TPIDS,
    payload_is_ethernet,
)

__all__ = [
    "ARP_OPERATION_NAMES",
    "ETHERTYPE_NAMES",
    "ICMPV6_TYPE_NAMES",
    "ICMP_TYPE_NAMES",
    "IP_PROTOCOL_NAMES",
    "HeaderDefinitions",
    "PacketHeaders",
    "describe_packet",
    "describe_packet_reference",
    "ethertype_name",
    "header_definitions",
    "icmp_description",
    "payload_is_ethernet",
    "tcp_flags_text",
]

# --------------------------------------------------------------------------- numbers and names

ETHERTYPE_NAMES: dict[int, str] = {
    ETHERTYPE_IPV4: "IPv4",
    ETHERTYPE_ARP: "ARP",
    0x0842: "Wake-on-LAN",
    0x6558: "TEB",
    0x8035: "RARP",
    ETHERTYPE_VLAN: "802.1Q",
    ETHERTYPE_IPV6: "IPv6",
    0x8808: "Ethernet-flow-control",
    0x8847: "MPLS",
    0x8848: "MPLS-multicast",
    0x8863: "PPPoE-discovery",
    0x8864: "PPPoE-session",
    0x888E: "EAPOL",
    ETHERTYPE_QINQ: "802.1ad",
    0x88CC: "LLDP",
    0x88E5: "MACsec",
    0x88F7: "PTP",
    0x8906: "FCoE",
    0x894F: "NSH",
    ETHERTYPE_QINQ_OLD: "QinQ",
}

IPPROTO_HOPOPTS = 0
IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ROUTING = 43
IPPROTO_FRAGMENT = 44
IPPROTO_ICMPV6 = 58
IPPROTO_DSTOPTS = 60
IPV6_EXTENSION_HEADERS = frozenset({IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_DSTOPTS})
IPV6_SKIPPED_HEADERS = IPV6_EXTENSION_HEADERS | {IPPROTO_FRAGMENT}

# Transport (and tunnel) protocols by IP protocol number.  Extension-header numbers are absent
# on purpose: a walk that stops at one has no transport protocol.
IP_PROTOCOL_NAMES: dict[int, str] = {
    IPPROTO_ICMP: "ICMP",
    2: "IGMP",
    4: "IPIP",
    IPPROTO_TCP: "TCP",
    IPPROTO_UDP: "UDP",
    33: "DCCP",
    41: "IPv6-in-IP",
    47: "GRE",
    50: "ESP",
    51: "AH",
    IPPROTO_ICMPV6: "ICMPv6",
    89: "OSPF",
    103: "PIM",
    112: "VRRP",
    115: "L2TP",
    132: "SCTP",
    136: "UDPLite",
    137: "MPLS-in-IP",
}

ICMP_TYPE_NAMES: dict[int, str] = {
    0: "echo reply",
    3: "destination unreachable",
    4: "source quench",
    5: "redirect",
    8: "echo request",
    9: "router advertisement",
    10: "router solicitation",
    11: "time exceeded",
    12: "parameter problem",
    13: "timestamp request",
    14: "timestamp reply",
}
ICMP_CODE_NAMES: dict[int, dict[int, str]] = {
    3: {
        0: "net unreachable",
        1: "host unreachable",
        2: "protocol unreachable",
        3: "port unreachable",
        4: "fragmentation needed",
        5: "source route failed",
        6: "destination network unknown",
        7: "destination host unknown",
        9: "network administratively prohibited",
        10: "host administratively prohibited",
        13: "communication administratively prohibited",
    },
    5: {0: "redirect for network", 1: "redirect for host"},
    11: {0: "TTL exceeded in transit", 1: "fragment reassembly time exceeded"},
}
ICMPV6_TYPE_NAMES: dict[int, str] = {
    1: "destination unreachable",
    2: "packet too big",
    3: "time exceeded",
    4: "parameter problem",
    128: "echo request",
    129: "echo reply",
    130: "multicast listener query",
    131: "multicast listener report",
    132: "multicast listener done",
    133: "router solicitation",
    134: "router advertisement",
    135: "neighbor solicitation",
    136: "neighbor advertisement",
    137: "redirect",
    143: "multicast listener report v2",
}
ICMPV6_CODE_NAMES: dict[int, dict[int, str]] = {
    1: {
        0: "no route to destination",
        1: "administratively prohibited",
        2: "beyond scope of source address",
        3: "address unreachable",
        4: "port unreachable",
        5: "source address failed policy",
        6: "reject route",
    },
    3: {0: "hop limit exceeded in transit", 1: "fragment reassembly time exceeded"},
}

ARP_OPERATION_NAMES: dict[int, str] = {
    1: "request",
    2: "reply",
    3: "RARP request",
    4: "RARP reply",
    8: "InARP request",
    9: "InARP reply",
}
ARP_HARDWARE_ETHERNET = 1

# TCP flag bits of header byte 13, most significant first, with tcpdump's letters.
TCP_FLAG_BITS: tuple[tuple[str, int, str], ...] = (
    ("cwr", 0x80, "W"),
    ("ece", 0x40, "E"),
    ("urg", 0x20, "U"),
    ("ack", 0x10, "."),
    ("psh", 0x08, "P"),
    ("rst", 0x04, "R"),
    ("syn", 0x02, "S"),
    ("fin", 0x01, "F"),
)
_TCP_LETTERS_IN_TCPDUMP_ORDER = tuple(
    (bit, letter)
    for wanted in ("syn", "fin", "psh", "rst", "urg", "ece", "cwr", "ack")
    for name, bit, letter in TCP_FLAG_BITS
    if name == wanted
)

# --------------------------------------------------------------------------- notes

NOTE_NO_PAYLOAD = "no payload"
NOTE_GUESSED_ETHERNET = "no protocol from the kernel: guessed Ethernet"
NOTE_UNKNOWN_LINK = "no protocol from the kernel: link layer unknown"
NOTE_TRUNCATED_VLAN = "truncated VLAN tag"
NOTE_TRUNCATED_ARP = "truncated ARP header"
NOTE_TRUNCATED_IPV4 = "truncated IPv4 header"
NOTE_TRUNCATED_IPV4_OPTIONS = "truncated IPv4 options"
NOTE_TRUNCATED_IPV6 = "truncated IPv6 header"
NOTE_TRUNCATED_IPV6_EXTENSION = "truncated IPv6 extension header"
NOTE_TRUNCATED_IPV6_FRAGMENT = "truncated IPv6 fragment header"
NOTE_TRUNCATED_TCP = "truncated TCP header"
NOTE_TRUNCATED_TCP_OPTIONS = "truncated TCP options"
NOTE_TRUNCATED_UDP = "truncated UDP header"
NOTE_TRUNCATED_ICMP = "truncated ICMP header"
NOTE_TRUNCATED_ICMPV6 = "truncated ICMPv6 header"


def _note_wrong_version(l3: str, version: int) -> str:
    return f"not {l3} (version {version})"


def _note_bad_ipv4_header_length(length: int) -> str:
    return f"bad IPv4 header length {length}"


def _note_bad_tcp_header_length(length: int) -> str:
    return f"bad TCP header length {length}"


def _note_arp_not_decoded(hardware_type: int, protocol_type: int) -> str:
    return f"ARP for hardware type {hardware_type}, protocol {protocol_type:#06x} not decoded"


# --------------------------------------------------------------------------- the result


@dataclass(frozen=True)
class PacketHeaders:
    """What the headers of one dropped packet say; ``None`` where unknown.

    * ``link``: ``"Ethernet"``, or ``None`` for a bare layer-3 payload (or an
      unknown link layer).  ``eth_src``/``eth_dst``: ``"aa:bb:cc:dd:ee:ff"``.
    * ``vlan_ids``: the VLAN IDs of the 802.1Q/802.1ad tags, outermost first.
    * ``ethertype``: the layer-3 EtherType (after the tags), or ``proto`` for
      a bare layer-3 payload; ``l3_offset``: where that header starts.
    * ``l3``: ``"IPv4"``, ``"IPv6"``, ``"ARP"`` when the EtherType says so
      (even when the header then turned out truncated), else ``None``.
    * ``src``/``dst``: IP addresses (ARP: sender and target protocol
      addresses), as :mod:`ipaddress` prints them.
    * ``ip_proto``: the IPv4 protocol, or the last IPv6 next-header value
      reached (extension headers skipped); ``l4`` its name when it is a
      transport protocol (``"TCP"``, ``"UDP"``, ``"ICMP"``, ``"ICMPv6"``, ...).
    * ``ttl``: IPv4 TTL or IPv6 hop limit.  ``ip_length``: IPv4 total length
      or IPv6 payload length, as the header says.
    * ``fragment_offset``: in bytes, set for fragments (IPv4 with MF or an
      offset, IPv6 with a fragment header); ``more_fragments``: the MF bit.
      Only the fragment at offset 0 has a transport header to decode.
    * ``l4_offset``: where the transport header starts; ``sport``/``dport``,
      ``tcp_flags`` (header byte 13, ``FIN`` = 0x01), ``seq``/``ack`` (raw
      numbers, ``ack`` even without the ACK flag), ``icmp_type``/``icmp_code``.
    * ``arp_op``, ``arp_sender_mac``: ARP operation and sender hardware address.
    * ``notes``: why decoding stopped early, or what was guessed.
    """

    link: str | None = None
    eth_src: str | None = None
    eth_dst: str | None = None
    vlan_ids: tuple[int, ...] = ()
    ethertype: int | None = None
    l3_offset: int | None = None
    l3: str | None = None
    src: str | None = None
    dst: str | None = None
    ip_proto: int | None = None
    ttl: int | None = None
    ip_length: int | None = None
    fragment_offset: int | None = None
    more_fragments: bool = False
    l4: str | None = None
    l4_offset: int | None = None
    sport: int | None = None
    dport: int | None = None
    tcp_flags: int | None = None
    seq: int | None = None
    ack: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    arp_op: int | None = None
    arp_sender_mac: str | None = None
    notes: tuple[str, ...] = ()


# --------------------------------------------------------------------------- names for output


def ethertype_name(ethertype: int | None) -> str | None:
    """``"IPv4"`` for 0x0800 and so on; ``None`` for EtherTypes without a name here."""
    if ethertype is None:
        return None
    return ETHERTYPE_NAMES.get(ethertype)


def tcp_flags_text(flags: int) -> str:
    """tcpdump's flag letters: ``S`` SYN, ``F`` FIN, ``P`` PSH, ``R`` RST, ``U`` URG,
    ``E`` ECE, ``W`` CWR, ``.`` ACK (``"S."`` for a SYN-ACK); ``"none"`` for no flag."""
    text = "".join(letter for bit, letter in _TCP_LETTERS_IN_TCPDUMP_ORDER if flags & bit)
    return text or "none"


def icmp_description(l4: str | None, icmp_type: int, icmp_code: int) -> str:
    """A short phrase for an ICMP or ICMPv6 type and code.

    The code's name when the type has named codes (``port unreachable``),
    else the type's name (``echo request``, with ``code N`` when the code is
    not 0), else ``type N code M``.
    """
    if l4 == "ICMPv6":
        type_names, code_names = ICMPV6_TYPE_NAMES, ICMPV6_CODE_NAMES
    else:
        type_names, code_names = ICMP_TYPE_NAMES, ICMP_CODE_NAMES
    code_name = code_names.get(icmp_type, {}).get(icmp_code)
    if code_name is not None:
        return code_name
    type_name = type_names.get(icmp_type)
    if type_name is None:
        return f"type {icmp_type} code {icmp_code}"
    return type_name if icmp_code == 0 else f"{type_name} code {icmp_code}"


# --------------------------------------------------------------------------- fast decoder

_ETHERNET = struct.Struct("!6s6sH")
_VLAN_TAG = struct.Struct("!HH")
_ARP_FIXED = struct.Struct("!HHBBH")
_ARP_ETHERNET_IPV4 = struct.Struct("!6s4s6s4s")
# version/IHL, total length, flags/fragment offset, TTL, protocol, source, destination
_IPV4 = struct.Struct("!BxHxxHBBxx4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
_IPV6_FRAGMENT = struct.Struct("!BBH")
_PORTS = struct.Struct("!HH")
_TCP_SEQ_ACK_OFFSET_FLAGS = struct.Struct("!IIBB")
_IPV4_HEADER_LEN = 20
_IPV6_HEADER_LEN = 40
_IPV6_FRAGMENT_HEADER_LEN = 8
_TCP_HEADER_LEN = 20
_UDP_HEADER_LEN = 8
_ICMP_HEADER_LEN = 4
_PORTS_LEN = 4
_IPV4_MORE_FRAGMENTS = 0x2000
_IPV4_FRAGMENT_OFFSET_MASK = 0x1FFF
_IPV6_FRAGMENT_OFFSET_MASK = 0xFFF8
_VLAN_ID_MASK = 0x0FFF

_inet_ntop = socket.inet_ntop
_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6


# Packed address → text.  A drop storm repeats a few addresses; the cache is emptied when full.
_ADDRESS_TEXT: dict[bytes, str] = {}
ADDRESS_CACHE_SIZE = 4096


def _remembered(packed: bytes, text: str) -> str:
    if len(_ADDRESS_TEXT) >= ADDRESS_CACHE_SIZE:
        _ADDRESS_TEXT.clear()
    _ADDRESS_TEXT[packed] = text
    return text


def _ipv4_text(packed: bytes) -> str:
    """``str(ipaddress.IPv4Address(packed))``, by ``inet_ntop``, remembered."""
    return _remembered(packed, _inet_ntop(_AF_INET, packed))


def _ipv6_text(packed: bytes) -> str:
    """``str(ipaddress.IPv6Address(packed))``, about five times faster, remembered.

    glibc's ``inet_ntop`` compresses zeros exactly as :mod:`ipaddress` does
    (the longest run of two or more zero groups, the first on a tie) but
    writes IPv4-mapped and IPv4-compatible addresses with a dotted quad;
    those go to :mod:`ipaddress`.  The property tests hold the two equal.
    The cache is shared with IPv4: the keys' lengths (4, 16) keep them apart.
    """
    text = _inet_ntop(_AF_INET6, packed)
    if "." in text:
        text = str(ipaddress.IPv6Address(packed))
    return _remembered(packed, text)


_DEFAULT_FIELDS: dict[str, Any] = {field.name: field.default for field in fields(PacketHeaders)}
_new_object = object.__new__
_set_attribute = object.__setattr__


def _headers_from_fields(values: dict[str, Any]) -> PacketHeaders:
    """A :class:`PacketHeaders` whose ``__dict__`` is ``values`` (a copy of the defaults).

    A frozen dataclass's ``__init__`` assigns each of its 26 fields through
    ``object.__setattr__``, which alone took 3 µs a packet, more than the
    decoding; installing the finished dict is one step.  The instance is the
    same as the constructor's (the property tests compare them with ``==``).
    """
    ip_proto = values["ip_proto"]
    if ip_proto is not None:
        values["l4"] = IP_PROTOCOL_NAMES.get(ip_proto)
    headers = _new_object(PacketHeaders)
    _set_attribute(headers, "__dict__", values)
    return headers


def describe_packet(proto: int | None, payload: bytes) -> PacketHeaders:
    """Decode the headers of a dropped packet's ``payload``; never raises.

    ``proto`` is the alert's EtherType (host order, 0 or ``None`` when the
    kernel gave none); ``payload`` starts at the MAC header and may be cut
    anywhere.  This is the ``struct`` fast path, equal by property tests to
    :func:`describe_packet_reference`.
    """
    draft = _DEFAULT_FIELDS.copy()
    if not payload:
        draft["ethertype"] = proto or None
        draft["notes"] = (NOTE_NO_PAYLOAD,)
        return _headers_from_fields(draft)
    if payload_is_ethernet(proto, payload):
        if not proto:
            draft["notes"] = (NOTE_GUESSED_ETHERNET,)
        _decode_ethernet(payload, draft)
    elif proto:
        _decode_l3(payload, 0, proto, draft)
    else:
        draft["notes"] = (NOTE_UNKNOWN_LINK,)
    return _headers_from_fields(draft)


def _decode_ethernet(payload: bytes, draft: dict[str, Any]) -> None:
    destination, source, ethertype = _ETHERNET.unpack_from(payload)
    draft["link"] = "Ethernet"
    draft["eth_dst"] = destination.hex(":")
    draft["eth_src"] = source.hex(":")
    offset = ETHERNET_HEADER_LEN
    if ethertype in VLAN_TPIDS:
        vlan_ids: list[int] = []
        length = len(payload)
        while ethertype in VLAN_TPIDS:
            if length - offset < VLAN_TAG_LEN:
                draft["vlan_ids"] = tuple(vlan_ids)
                draft["ethertype"] = ethertype
                draft["notes"] += (NOTE_TRUNCATED_VLAN,)
                return
            tci, ethertype = _VLAN_TAG.unpack_from(payload, offset)
            vlan_ids.append(tci & _VLAN_ID_MASK)
            offset += VLAN_TAG_LEN
        draft["vlan_ids"] = tuple(vlan_ids)
    _decode_l3(payload, offset, ethertype, draft)


def _decode_l3(payload: bytes, offset: int, ethertype: int, draft: dict[str, Any]) -> None:
    draft["ethertype"] = ethertype
    draft["l3_offset"] = offset
    if ethertype == ETHERTYPE_IPV4:
        _decode_ipv4(payload, offset, draft)
    elif ethertype == ETHERTYPE_IPV6:
        _decode_ipv6(payload, offset, draft)
    elif ethertype == ETHERTYPE_ARP:
        _decode_arp(payload, offset, draft)


def _decode_ipv4(payload: bytes, offset: int, draft: dict[str, Any]) -> None:
    draft["l3"] = "IPv4"
    available = len(payload) - offset
    if available < _IPV4_HEADER_LEN:
        draft["notes"] += (NOTE_TRUNCATED_IPV4,)
        return
    version_ihl, total_length, fragment, ttl, protocol, source, destination = _IPV4.unpack_from(
        payload, offset
    )
    version = version_ihl >> 4
    if version != 4:
        draft["notes"] += (_note_wrong_version("IPv4", version),)
        return
    draft["src"] = _ADDRESS_TEXT.get(source) or _ipv4_text(source)
    draft["dst"] = _ADDRESS_TEXT.get(destination) or _ipv4_text(destination)
    draft["ttl"] = ttl
    draft["ip_proto"] = protocol
    draft["ip_length"] = total_length
    fragment_offset = (fragment & _IPV4_FRAGMENT_OFFSET_MASK) * 8
    more_fragments = bool(fragment & _IPV4_MORE_FRAGMENTS)
    if fragment_offset or more_fragments:
        draft["fragment_offset"] = fragment_offset
        draft["more_fragments"] = more_fragments
    header_len = (version_ihl & 0x0F) * 4
    if header_len < _IPV4_HEADER_LEN:
        draft["notes"] += (_note_bad_ipv4_header_length(header_len),)
        return
    if available < header_len:
        draft["notes"] += (NOTE_TRUNCATED_IPV4_OPTIONS,)
        return
    if fragment_offset:
        return
    _decode_l4(payload, offset + header_len, protocol, draft)


def _decode_ipv6(payload: bytes, offset: int, draft: dict[str, Any]) -> None:
    draft["l3"] = "IPv6"
    length = len(payload)
    if length - offset < _IPV6_HEADER_LEN:
        draft["notes"] += (NOTE_TRUNCATED_IPV6,)
        return
    first_word, payload_length, next_header, hop_limit, source, destination = _IPV6.unpack_from(
        payload, offset
    )
    version = first_word >> 28
    if version != 6:
        draft["notes"] += (_note_wrong_version("IPv6", version),)
        return
    draft["src"] = _ADDRESS_TEXT.get(source) or _ipv6_text(source)
    draft["dst"] = _ADDRESS_TEXT.get(destination) or _ipv6_text(destination)
    draft["ttl"] = hop_limit
    draft["ip_length"] = payload_length
    position = offset + _IPV6_HEADER_LEN
    while next_header in IPV6_SKIPPED_HEADERS:
        remaining = length - position
        if next_header == IPPROTO_FRAGMENT:
            if remaining < _IPV6_FRAGMENT_HEADER_LEN:
                draft["ip_proto"] = next_header
                draft["notes"] += (NOTE_TRUNCATED_IPV6_FRAGMENT,)
                return
            following, _reserved, fragment = _IPV6_FRAGMENT.unpack_from(payload, position)
            draft["fragment_offset"] = fragment & _IPV6_FRAGMENT_OFFSET_MASK
            draft["more_fragments"] = bool(fragment & 1)
            next_header = following
            position += _IPV6_FRAGMENT_HEADER_LEN
        else:
            if remaining < 2 or remaining < (payload[position + 1] + 1) * 8:
                draft["ip_proto"] = next_header
                draft["notes"] += (NOTE_TRUNCATED_IPV6_EXTENSION,)
                return
            next_header, extension_len = payload[position], (payload[position + 1] + 1) * 8
            position += extension_len
    draft["ip_proto"] = next_header
    if draft["fragment_offset"]:
        return
    _decode_l4(payload, position, next_header, draft)


def _decode_l4(payload: bytes, offset: int, protocol: int, draft: dict[str, Any]) -> None:
    draft["l4_offset"] = offset
    available = len(payload) - offset
    if protocol == IPPROTO_TCP:
        if available < _PORTS_LEN:
            draft["notes"] += (NOTE_TRUNCATED_TCP,)
            return
        draft["sport"], draft["dport"] = _PORTS.unpack_from(payload, offset)
        if available < _TCP_HEADER_LEN:
            draft["notes"] += (NOTE_TRUNCATED_TCP,)
            return
        draft["seq"], draft["ack"], data_offset, draft["tcp_flags"] = (
            _TCP_SEQ_ACK_OFFSET_FLAGS.unpack_from(payload, offset + _PORTS_LEN)
        )
        header_len = (data_offset >> 4) * 4
        if header_len < _TCP_HEADER_LEN:
            draft["notes"] += (_note_bad_tcp_header_length(header_len),)
        elif available < header_len:
            draft["notes"] += (NOTE_TRUNCATED_TCP_OPTIONS,)
    elif protocol == IPPROTO_UDP:
        if available < _PORTS_LEN:
            draft["notes"] += (NOTE_TRUNCATED_UDP,)
            return
        draft["sport"], draft["dport"] = _PORTS.unpack_from(payload, offset)
        if available < _UDP_HEADER_LEN:
            draft["notes"] += (NOTE_TRUNCATED_UDP,)
    elif protocol in (IPPROTO_ICMP, IPPROTO_ICMPV6):
        if available < _ICMP_HEADER_LEN:
            draft["notes"] += (
                NOTE_TRUNCATED_ICMP if protocol == IPPROTO_ICMP else NOTE_TRUNCATED_ICMPV6,
            )
            return
        draft["icmp_type"] = payload[offset]
        draft["icmp_code"] = payload[offset + 1]


def _decode_arp(payload: bytes, offset: int, draft: dict[str, Any]) -> None:
    draft["l3"] = "ARP"
    available = len(payload) - offset
    if available < _ARP_FIXED.size:
        draft["notes"] += (NOTE_TRUNCATED_ARP,)
        return
    hardware_type, protocol_type, hardware_len, protocol_len, operation = _ARP_FIXED.unpack_from(
        payload, offset
    )
    draft["arp_op"] = operation
    if available < _ARP_FIXED.size + 2 * (hardware_len + protocol_len):
        draft["notes"] += (NOTE_TRUNCATED_ARP,)
        return
    if (hardware_type, protocol_type, hardware_len, protocol_len) != (
        ARP_HARDWARE_ETHERNET,
        ETHERTYPE_IPV4,
        6,
        4,
    ):
        draft["notes"] += (_note_arp_not_decoded(hardware_type, protocol_type),)
        return
    sender_mac, sender_ip, _target_mac, target_ip = _ARP_ETHERNET_IPV4.unpack_from(
        payload, offset + _ARP_FIXED.size
    )
    draft["arp_sender_mac"] = sender_mac.hex(":")
    draft["src"] = _ADDRESS_TEXT.get(sender_ip) or _ipv4_text(sender_ip)
    draft["dst"] = _ADDRESS_TEXT.get(target_ip) or _ipv4_text(target_ip)


# --------------------------------------------------------------------------- construct definitions


@dataclass(frozen=True)
class HeaderDefinitions:
    """The header layouts as construct structs: the definition of record.

    Each struct parses from its first byte and builds from a dict.
    Addresses parse to text (``"aa:bb:cc:dd:ee:ff"``, ``"192.0.2.1"``,
    ``"2001:db8::1"``) and build from text; EtherTypes, ICMP types and ARP
    operations are :class:`construct.Enum` values (build from names or
    numbers).  ``*_fixed`` structs are the fixed-size part of a header that
    has a variable tail (options, addresses); ``ports`` is the first four
    bytes of TCP and UDP, what a truncated header still tells.
    """

    ethernet: Any
    vlan_tag: Any
    arp_fixed: Any
    arp: Any
    arp_ethernet_ipv4: Any
    ipv4_fixed: Any
    ipv4: Any
    ipv6: Any
    ipv6_extension: Any
    ipv6_fragment: Any
    ports: Any
    tcp_fixed: Any
    tcp: Any
    udp: Any
    icmp: Any
    icmpv6: Any


def _identifier(name: str) -> str:
    return "".join(character if character.isalnum() else "_" for character in name).lower()


def _enum_members(names: dict[int, str]) -> dict[str, int]:
    return {_identifier(name): number for number, name in names.items()}


@functools.cache
def header_definitions() -> HeaderDefinitions:
    """Build (once) and return the construct definitions of every header netdm decodes."""
    from construct import (
        Adapter,
        BitsInteger,
        BitStruct,
        Bytes,
        Const,
        Enum,
        Flag,
        Int8ub,
        Int16ub,
        Int32ub,
        Nibble,
        Octet,
        Struct,
        this,
    )

    class MacAddress(Adapter):  # type: ignore[misc]
        """Six bytes ⇄ ``"aa:bb:cc:dd:ee:ff"``."""

        def _decode(self, obj: bytes, context: Any, path: Any) -> str:
            return ":".join(f"{byte:02x}" for byte in obj)

        def _encode(self, obj: str, context: Any, path: Any) -> bytes:
            return bytes(int(part, 16) for part in obj.split(":"))

    class IPv4Address(Adapter):  # type: ignore[misc]
        """Four bytes ⇄ dotted quad, by :mod:`ipaddress`."""

        def _decode(self, obj: bytes, context: Any, path: Any) -> str:
            return str(ipaddress.IPv4Address(obj))

        def _encode(self, obj: str, context: Any, path: Any) -> bytes:
            return ipaddress.IPv4Address(obj).packed

    class IPv6Address(Adapter):  # type: ignore[misc]
        """Sixteen bytes ⇄ RFC 5952 text, by :mod:`ipaddress`."""

        def _decode(self, obj: bytes, context: Any, path: Any) -> str:
            return str(ipaddress.IPv6Address(obj))

        def _encode(self, obj: str, context: Any, path: Any) -> bytes:
            return ipaddress.IPv6Address(obj).packed

    mac_address = MacAddress(Bytes(6))
    ipv4_address = IPv4Address(Bytes(4))
    ipv6_address = IPv6Address(Bytes(16))
    ethertype = Enum(Int16ub, **_enum_members(ETHERTYPE_NAMES))

    ethernet = Struct("dst" / mac_address, "src" / mac_address, "ethertype" / ethertype)
    vlan_tag = Struct(
        "tci" / BitStruct("pcp" / BitsInteger(3), "dei" / Flag, "vid" / BitsInteger(12)),
        "ethertype" / ethertype,
    )

    arp_fixed_fields = [
        "htype" / Int16ub,
        "ptype" / ethertype,
        "hlen" / Int8ub,
        "plen" / Int8ub,
        "operation" / Enum(Int16ub, **_enum_members(ARP_OPERATION_NAMES)),
    ]
    arp_fixed = Struct(*arp_fixed_fields)
    arp = Struct(
        *arp_fixed_fields,
        "sender_hardware_address" / Bytes(this.hlen),
        "sender_protocol_address" / Bytes(this.plen),
        "target_hardware_address" / Bytes(this.hlen),
        "target_protocol_address" / Bytes(this.plen),
    )
    arp_ethernet_ipv4 = Struct(
        "htype" / Const(ARP_HARDWARE_ETHERNET, Int16ub),
        "ptype" / Const(ETHERTYPE_IPV4, Int16ub),
        "hlen" / Const(6, Int8ub),
        "plen" / Const(4, Int8ub),
        "operation" / Enum(Int16ub, **_enum_members(ARP_OPERATION_NAMES)),
        "sender_hardware_address" / mac_address,
        "sender_protocol_address" / ipv4_address,
        "target_hardware_address" / mac_address,
        "target_protocol_address" / ipv4_address,
    )

    ip_protocol = Enum(Int8ub, **_enum_members(IP_PROTOCOL_NAMES))
    ipv4_fixed_fields = [
        "version_ihl" / BitStruct("version" / Nibble, "ihl" / Nibble),
        "tos" / Int8ub,
        "total_length" / Int16ub,
        "identification" / Int16ub,
        "flags_fragment"
        / BitStruct(
            "reserved" / Flag,
            "dont_fragment" / Flag,
            "more_fragments" / Flag,
            "fragment_offset" / BitsInteger(13),  # in units of 8 bytes
        ),
        "ttl" / Int8ub,
        "protocol" / ip_protocol,
        "checksum" / Int16ub,
        "src" / ipv4_address,
        "dst" / ipv4_address,
    ]
    ipv4_fixed = Struct(*ipv4_fixed_fields)
    ipv4 = Struct(*ipv4_fixed_fields, "options" / Bytes(this.version_ihl.ihl * 4 - 20))

    ipv6 = Struct(
        "version_class_flow"
        / BitStruct("version" / Nibble, "traffic_class" / Octet, "flow_label" / BitsInteger(20)),
        "payload_length" / Int16ub,
        "next_header" / ip_protocol,
        "hop_limit" / Int8ub,
        "src" / ipv6_address,
        "dst" / ipv6_address,
    )
    # Hop-by-hop options (0), routing (43), destination options (60): length in 8-byte units,
    # not counting the first 8 bytes.
    ipv6_extension = Struct(
        "next_header" / ip_protocol,
        "header_length" / Int8ub,
        "data" / Bytes(this.header_length * 8 + 6),
    )
    ipv6_fragment = Struct(
        "next_header" / ip_protocol,
        "reserved" / Int8ub,
        "fragment"
        / BitStruct(
            "offset" / BitsInteger(13),  # in units of 8 bytes
            "reserved" / BitsInteger(2),
            "more_fragments" / Flag,
        ),
        "identification" / Int32ub,
    )

    port_fields = ["sport" / Int16ub, "dport" / Int16ub]
    ports = Struct(*port_fields)
    tcp_fixed_fields = [
        *port_fields,
        "seq" / Int32ub,
        "ack" / Int32ub,
        "offset_flags"
        / BitStruct(
            "data_offset" / Nibble,  # in 4-byte words
            "reserved" / BitsInteger(3),
            "ae" / Flag,
            *(name / Flag for name, _bit, _letter in TCP_FLAG_BITS),
        ),
        "window" / Int16ub,
        "checksum" / Int16ub,
        "urgent_pointer" / Int16ub,
    ]
    tcp_fixed = Struct(*tcp_fixed_fields)
    tcp = Struct(*tcp_fixed_fields, "options" / Bytes(this.offset_flags.data_offset * 4 - 20))
    udp = Struct(*port_fields, "length" / Int16ub, "checksum" / Int16ub)
    icmp = Struct(
        "type" / Enum(Int8ub, **_enum_members(ICMP_TYPE_NAMES)),
        "code" / Int8ub,
        "checksum" / Int16ub,
    )
    icmpv6 = Struct(
        "type" / Enum(Int8ub, **_enum_members(ICMPV6_TYPE_NAMES)),
        "code" / Int8ub,
        "checksum" / Int16ub,
    )
    return HeaderDefinitions(
        ethernet=ethernet,
        vlan_tag=vlan_tag,
        arp_fixed=arp_fixed,
        arp=arp,
        arp_ethernet_ipv4=arp_ethernet_ipv4,
        ipv4_fixed=ipv4_fixed,
        ipv4=ipv4,
        ipv6=ipv6,
        ipv6_extension=ipv6_extension,
        ipv6_fragment=ipv6_fragment,
        ports=ports,
        tcp_fixed=tcp_fixed,
        tcp=tcp,
        udp=udp,
        icmp=icmp,
        icmpv6=icmpv6,
    )


# --------------------------------------------------------------------------- reference decoder


def _number(value: Any) -> int:
    """An integer from a parsed construct ``Enum`` value (named or not)."""
    return int(getattr(value, "intvalue", value))


class _ReferenceDecoder:
    """:func:`describe_packet_reference`: every read is a construct parse of a definition."""

    def __init__(self, payload: bytes) -> None:
        from construct import ConstructError

        self.definitions = header_definitions()
        self.parse_error: type[Exception] = ConstructError
        self.payload = payload
        self.fields: dict[str, Any] = {}
        self.notes: list[str] = []

    def parse(self, definition: Any, offset: int) -> Any:
        """``definition`` parsed at ``offset``, or ``None`` when the bytes run out or misfit."""
        try:
            return definition.parse(self.payload[offset:])
        except self.parse_error:
            return None

    def result(self) -> PacketHeaders:
        ip_proto = self.fields.get("ip_proto")
        return PacketHeaders(
            l4=None if ip_proto is None else IP_PROTOCOL_NAMES.get(ip_proto),
            notes=tuple(self.notes),
            **self.fields,
        )

    def decode(self, proto: int | None) -> PacketHeaders:
        if not self.payload:
            self.fields["ethertype"] = proto or None
            self.notes.append(NOTE_NO_PAYLOAD)
            return self.result()
        ethernet = self.parse(self.definitions.ethernet, 0)
        outer = None if ethernet is None else _number(ethernet.ethertype)
        if proto:
            is_ethernet = outer is not None and proto >= MIN_ETHERTYPE and outer == proto
        else:
            is_ethernet = outer in GUESSABLE_ETHERTYPES
            if is_ethernet:
                self.notes.append(NOTE_GUESSED_ETHERNET)
        if is_ethernet:
            self.ethernet(ethernet)
        elif proto:
            self.layer3(0, proto)
        else:
            self.notes.append(NOTE_UNKNOWN_LINK)
        return self.result()

    def ethernet(self, header: Any) -> None:
        self.fields.update(link="Ethernet", eth_src=header.src, eth_dst=header.dst)
        ethertype = _number(header.ethertype)
        offset = self.definitions.ethernet.sizeof()
        vlan_ids: list[int] = []
        while ethertype in VLAN_TPIDS:
            tag = self.parse(self.definitions.vlan_tag, offset)
            if tag is None:
                self.fields.update(vlan_ids=tuple(vlan_ids), ethertype=ethertype)
                self.notes.append(NOTE_TRUNCATED_VLAN)
                return
            vlan_ids.append(tag.tci.vid)
            ethertype = _number(tag.ethertype)
            offset += self.definitions.vlan_tag.sizeof()
        self.fields["vlan_ids"] = tuple(vlan_ids)
        self.layer3(offset, ethertype)

    def layer3(self, offset: int, ethertype: int) -> None:
        self.fields.update(ethertype=ethertype, l3_offset=offset)
        if ethertype == ETHERTYPE_IPV4:
            self.ipv4(offset)
        elif ethertype == ETHERTYPE_IPV6:
            self.ipv6(offset)
        elif ethertype == ETHERTYPE_ARP:
            self.arp(offset)

    def ipv4(self, offset: int) -> None:
        self.fields["l3"] = "IPv4"
        header = self.parse(self.definitions.ipv4_fixed, offset)
        if header is None:
            self.notes.append(NOTE_TRUNCATED_IPV4)
            return
        if header.version_ihl.version != 4:
            self.notes.append(_note_wrong_version("IPv4", header.version_ihl.version))
            return
        protocol = _number(header.protocol)
        self.fields.update(
            src=header.src,
            dst=header.dst,
            ttl=header.ttl,
            ip_proto=protocol,
            ip_length=header.total_length,
        )
        fragment = header.flags_fragment
        if fragment.fragment_offset or fragment.more_fragments:
            self.fields.update(
                fragment_offset=fragment.fragment_offset * 8,
                more_fragments=fragment.more_fragments,
            )
        header_len = header.version_ihl.ihl * 4
        if header_len < self.definitions.ipv4_fixed.sizeof():
            self.notes.append(_note_bad_ipv4_header_length(header_len))
            return
        if self.parse(self.definitions.ipv4, offset) is None:
            self.notes.append(NOTE_TRUNCATED_IPV4_OPTIONS)
            return
        if fragment.fragment_offset:
            return
        self.layer4(offset + header_len, protocol)

    def ipv6(self, offset: int) -> None:
        self.fields["l3"] = "IPv6"
        header = self.parse(self.definitions.ipv6, offset)
        if header is None:
            self.notes.append(NOTE_TRUNCATED_IPV6)
            return
        version = header.version_class_flow.version
        if version != 6:
            self.notes.append(_note_wrong_version("IPv6", version))
            return
        self.fields.update(
            src=header.src,
            dst=header.dst,
            ttl=header.hop_limit,
            ip_length=header.payload_length,
        )
        next_header = _number(header.next_header)
        position = offset + self.definitions.ipv6.sizeof()
        while next_header in IPV6_SKIPPED_HEADERS:
            if next_header == IPPROTO_FRAGMENT:
                fragment = self.parse(self.definitions.ipv6_fragment, position)
                if fragment is None:
                    self.fields["ip_proto"] = next_header
                    self.notes.append(NOTE_TRUNCATED_IPV6_FRAGMENT)
                    return
                self.fields.update(
                    fragment_offset=fragment.fragment.offset * 8,
                    more_fragments=fragment.fragment.more_fragments,
                )
                position += self.definitions.ipv6_fragment.sizeof()
            else:
                extension = self.parse(self.definitions.ipv6_extension, position)
                if extension is None:
                    self.fields["ip_proto"] = next_header
                    self.notes.append(NOTE_TRUNCATED_IPV6_EXTENSION)
                    return
                next_header = _number(extension.next_header)
                position += 2 + len(extension.data)
                continue
            next_header = _number(fragment.next_header)
        self.fields["ip_proto"] = next_header
        if self.fields.get("fragment_offset"):
            return
        self.layer4(position, next_header)

    def layer4(self, offset: int, protocol: int) -> None:
        self.fields["l4_offset"] = offset
        definitions = self.definitions
        if protocol == IPPROTO_TCP:
            self.tcp(offset)
        elif protocol == IPPROTO_UDP:
            ports = self.parse(definitions.ports, offset)
            if ports is None:
                self.notes.append(NOTE_TRUNCATED_UDP)
                return
            self.fields.update(sport=ports.sport, dport=ports.dport)
            if self.parse(definitions.udp, offset) is None:
                self.notes.append(NOTE_TRUNCATED_UDP)
        elif protocol in (IPPROTO_ICMP, IPPROTO_ICMPV6):
            is_icmp = protocol == IPPROTO_ICMP
            header = self.parse(definitions.icmp if is_icmp else definitions.icmpv6, offset)
            if header is None:
                self.notes.append(NOTE_TRUNCATED_ICMP if is_icmp else NOTE_TRUNCATED_ICMPV6)
                return
            self.fields.update(icmp_type=_number(header.type), icmp_code=header.code)

    def tcp(self, offset: int) -> None:
        definitions = self.definitions
        ports = self.parse(definitions.ports, offset)
        if ports is None:
            self.notes.append(NOTE_TRUNCATED_TCP)
            return
        self.fields.update(sport=ports.sport, dport=ports.dport)
        header = self.parse(definitions.tcp_fixed, offset)
        if header is None:
            self.notes.append(NOTE_TRUNCATED_TCP)
            return
        flags = header.offset_flags
        self.fields.update(
            seq=header.seq,
            ack=header.ack,
            tcp_flags=sum(bit for name, bit, _letter in TCP_FLAG_BITS if flags[name]),
        )
        header_len = flags.data_offset * 4
        if header_len < definitions.tcp_fixed.sizeof():
            self.notes.append(_note_bad_tcp_header_length(header_len))
        elif self.parse(definitions.tcp, offset) is None:
            self.notes.append(NOTE_TRUNCATED_TCP_OPTIONS)

    def arp(self, offset: int) -> None:
        self.fields["l3"] = "ARP"
        fixed = self.parse(self.definitions.arp_fixed, offset)
        if fixed is None:
            self.notes.append(NOTE_TRUNCATED_ARP)
            return
        self.fields["arp_op"] = _number(fixed.operation)
        if self.parse(self.definitions.arp, offset) is None:
            self.notes.append(NOTE_TRUNCATED_ARP)
            return
        known = self.parse(self.definitions.arp_ethernet_ipv4, offset)
        if known is None:
            self.notes.append(_note_arp_not_decoded(fixed.htype, _number(fixed.ptype)))
            return
        self.fields.update(
            arp_sender_mac=known.sender_hardware_address,
            src=known.sender_protocol_address,
            dst=known.target_protocol_address,
        )


def describe_packet_reference(proto: int | None, payload: bytes) -> PacketHeaders:
    """:func:`describe_packet`, decoded with the construct definitions only.

    Slow (it loads construct and parses each header with a
    :class:`HeaderDefinitions` struct); it exists to prove the fast path
    right.  Never raises.
    """
    return _ReferenceDecoder(payload).decode(proto)
