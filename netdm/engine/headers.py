"""Decode the headers of a dropped packet, fast: ``struct`` reads laid out by the construct definitions.

Strategy: in packet mode every drop brings the first bytes of the packet,
starting at the MAC header, and a drop storm brings tens of thousands of
them a second.  The header layouts are *defined* once, with construct, in
:mod:`netdm.engine.header_definitions`; this module reads them with
``struct`` formats, pad bytes and bit masks *derived* from those
definitions when it is imported (:func:`~netdm.engine.header_definitions.struct_layout`,
:func:`~netdm.engine.header_definitions.bit_field`), so it spells no offset
of its own: only the walk from header to header is written here.  The
property tests in ``tests/engine/test_headers.py`` build frames of every
kind with the construct definitions, cut them at every length and mix in
random bytes, and hold every field :func:`describe_packet` returns to what
construct parses at the offsets it reports.  Deriving loads construct
(it is loaded anyway by every ``netdm watch``); ``netdm --help`` and
``import netdm.cli`` do not import this module.

Which link layer?  The rule of :func:`netdm.capture.link_layer.payload_is_ethernet`
(Wireshark's): Ethernet when ``proto`` ≥ 0x600 equals bytes 12-13,
otherwise a bare layer-3 packet of EtherType ``proto``.  When the kernel
sent no protocol (``proto`` 0 or missing), the payload is taken for Ethernet
if bytes 12-13 hold a common EtherType (IPv4, IPv6, ARP, a VLAN tag), with a
note saying so, and is left undecoded otherwise.

Decoding never raises.  Whatever cannot be decoded (a payload cut short by
``trunc_len``, a wrong IP version, an impossible header length) ends the
walk; the fields decoded so far are kept and :attr:`PacketHeaders.notes`
says why it stopped, e.g. ``truncated IPv4 header``.  A partial TCP or UDP
header still gives its ports when the first four bytes are there.

The names of everything about headers are re-exported here
(:mod:`netdm.engine.header_names`, :mod:`netdm.capture.link_layer`), so
``from netdm.engine.headers import ...`` keeps working.
"""  # noqa: E501

from __future__ import annotations

import ipaddress
import socket
from dataclasses import fields
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
from netdm.engine.header_definitions import (
    HeaderDefinitions,
    bit_field,
    const_value,
    header_definitions,
    struct_layout,
)
from netdm.engine.header_names import (
    ARP_HARDWARE_ETHERNET,
    ARP_OPERATION_NAMES,
    ETHERTYPE_NAMES,
    ICMP_CODE_NAMES,
    ICMP_TYPE_NAMES,
    ICMPV6_CODE_NAMES,
    ICMPV6_TYPE_NAMES,
    IP_PROTOCOL_NAMES,
    IPPROTO_DSTOPTS,
    IPPROTO_FRAGMENT,
    IPPROTO_HOPOPTS,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_ROUTING,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPV6_EXTENSION_HEADERS,
    IPV6_SKIPPED_HEADERS,
    NOTE_GUESSED_ETHERNET,
    NOTE_NO_PAYLOAD,
    NOTE_TRUNCATED_ARP,
    NOTE_TRUNCATED_ICMP,
    NOTE_TRUNCATED_ICMPV6,
    NOTE_TRUNCATED_IPV4,
    NOTE_TRUNCATED_IPV4_OPTIONS,
    NOTE_TRUNCATED_IPV6,
    NOTE_TRUNCATED_IPV6_EXTENSION,
    NOTE_TRUNCATED_IPV6_FRAGMENT,
    NOTE_TRUNCATED_TCP,
    NOTE_TRUNCATED_TCP_OPTIONS,
    NOTE_TRUNCATED_UDP,
    NOTE_TRUNCATED_VLAN,
    NOTE_UNKNOWN_LINK,
    TCP_FLAG_BITS,
    PacketHeaders,
    ethertype_name,
    icmp_description,
    note_arp_not_decoded,
    note_bad_ipv4_header_length,
    note_bad_tcp_header_length,
    note_wrong_version,
    tcp_flags_text,
)

__all__ = [
    "ARP_HARDWARE_ETHERNET",
    "ARP_OPERATION_NAMES",
    "ETHERNET_HEADER_LEN",
    "ETHERTYPE_ARP",
    "ETHERTYPE_IPV4",
    "ETHERTYPE_IPV6",
    "ETHERTYPE_NAMES",
    "ETHERTYPE_QINQ",
    "ETHERTYPE_QINQ_OLD",
    "ETHERTYPE_VLAN",
    "GUESSABLE_ETHERTYPES",
    "ICMPV6_CODE_NAMES",
    "ICMPV6_TYPE_NAMES",
    "ICMP_CODE_NAMES",
    "ICMP_TYPE_NAMES",
    "IPPROTO_DSTOPTS",
    "IPPROTO_FRAGMENT",
    "IPPROTO_HOPOPTS",
    "IPPROTO_ICMP",
    "IPPROTO_ICMPV6",
    "IPPROTO_ROUTING",
    "IPPROTO_TCP",
    "IPPROTO_UDP",
    "IPV4_FIELDS",
    "IPV4_FRAGMENT_OFFSET_MASK",
    "IPV4_MORE_FRAGMENTS",
    "IPV4_VERSION_SHIFT",
    "IPV6_VERSION_SHIFT",
    "TCP_DATA_OFFSET_MASK",
    "TCP_DATA_OFFSET_SHIFT",
    "TCP_FLAGS_MASK",
    "TCP_SEQ_ACK_OFFSET_FLAGS",
    "IPV6_EXTENSION_HEADERS",
    "IP_PROTOCOL_NAMES",
    "MIN_ETHERTYPE",
    "TCP_FLAG_BITS",
    "VLAN_TAG_LEN",
    "VLAN_TPIDS",
    "HeaderDefinitions",
    "PacketHeaders",
    "describe_packet",
    "ethertype_name",
    "header_definitions",
    "icmp_description",
    "payload_is_ethernet",
    "tcp_flags_text",
]

# --------------------------------------------------------------------------- the layouts

_D = header_definitions()
_ETHERNET = struct_layout((_D.ethernet, None))
_VLAN_TAG = struct_layout((_D.vlan_tag, None))
_ARP_FIXED = struct_layout((_D.arp_fixed, None))
# From the start of the ARP header: sender MAC and IPv4 address, target IPv4 address.
_ARP_ETHERNET_IPV4 = struct_layout(
    (
        _D.arp_ethernet_ipv4,
        ("sender_hardware_address", "sender_protocol_address", "target_protocol_address"),
    )
)
_ARP_ETHERNET_IPV4_KIND = tuple(
    const_value(_D.arp_ethernet_ipv4, name) for name in ("htype", "ptype", "hlen", "plen")
)
# The IPv4 fields the decoders read (the others are pad).
IPV4_FIELDS = ("version_ihl", "total_length", "flags_fragment", "ttl", "protocol", "src", "dst")
_IPV4 = struct_layout((_D.ipv4_fixed, IPV4_FIELDS))
_IPV6 = struct_layout((_D.ipv6, None))
_IPV6_FRAGMENT = struct_layout((_D.ipv6_fragment, ("next_header", "fragment")))
_PORTS = struct_layout((_D.ports, None))
# From the start of the TCP header (the ports are pad): seq, ack, data offset and flags.
TCP_SEQ_ACK_OFFSET_FLAGS = struct_layout((_D.tcp_fixed, ("seq", "ack", "offset_flags")))
_IPV4_HEADER_LEN = _D.ipv4_fixed.sizeof()
_IPV6_HEADER_LEN = _D.ipv6.sizeof()
_IPV6_FRAGMENT_HEADER_LEN = _D.ipv6_fragment.sizeof()
_TCP_HEADER_LEN = _D.tcp_fixed.sizeof()
_UDP_HEADER_LEN = _D.udp.sizeof()
_ICMP_HEADER_LEN = _D.icmp.sizeof()
_PORTS_LEN = _D.ports.sizeof()
IPV4_VERSION_SHIFT = bit_field(_D.ipv4_fixed, "version_ihl", "version").shift
_IPV4_IHL_MASK = bit_field(_D.ipv4_fixed, "version_ihl", "ihl").in_place
IPV4_MORE_FRAGMENTS = bit_field(_D.ipv4_fixed, "flags_fragment", "more_fragments").in_place
IPV4_FRAGMENT_OFFSET_MASK = bit_field(_D.ipv4_fixed, "flags_fragment", "fragment_offset").in_place
IPV6_VERSION_SHIFT = bit_field(_D.ipv6, "version_class_flow", "version").shift
# The offset in place is the offset in 8-byte units times 8: the offset in bytes.
_IPV6_FRAGMENT_OFFSET_MASK = bit_field(_D.ipv6_fragment, "fragment", "offset").in_place
_IPV6_MORE_FRAGMENTS = bit_field(_D.ipv6_fragment, "fragment", "more_fragments").in_place
_VLAN_ID_MASK = bit_field(_D.vlan_tag, "tci", "vid").in_place
_TCP_DATA_OFFSET = bit_field(_D.tcp_fixed, "offset_flags", "data_offset")
TCP_DATA_OFFSET_SHIFT, TCP_DATA_OFFSET_MASK = _TCP_DATA_OFFSET.shift, _TCP_DATA_OFFSET.mask
TCP_FLAGS_MASK = 0
for _name, _bit, _letter in TCP_FLAG_BITS:
    TCP_FLAGS_MASK |= bit_field(_D.tcp_fixed, "offset_flags", _name).in_place

# --------------------------------------------------------------------------- the walk

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
    anywhere.  This is the ``struct`` fast path; property tests hold every
    field it returns to construct parsing (tests/engine/construct_oracle.py).
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
    version = version_ihl >> IPV4_VERSION_SHIFT
    if version != 4:
        draft["notes"] += (note_wrong_version("IPv4", version),)
        return
    draft["src"] = _ADDRESS_TEXT.get(source) or _ipv4_text(source)
    draft["dst"] = _ADDRESS_TEXT.get(destination) or _ipv4_text(destination)
    draft["ttl"] = ttl
    draft["ip_proto"] = protocol
    draft["ip_length"] = total_length
    fragment_offset = (fragment & IPV4_FRAGMENT_OFFSET_MASK) * 8
    more_fragments = bool(fragment & IPV4_MORE_FRAGMENTS)
    if fragment_offset or more_fragments:
        draft["fragment_offset"] = fragment_offset
        draft["more_fragments"] = more_fragments
    header_len = (version_ihl & _IPV4_IHL_MASK) * 4
    if header_len < _IPV4_HEADER_LEN:
        draft["notes"] += (note_bad_ipv4_header_length(header_len),)
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
    version = first_word >> IPV6_VERSION_SHIFT
    if version != 6:
        draft["notes"] += (note_wrong_version("IPv6", version),)
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
            following, fragment = _IPV6_FRAGMENT.unpack_from(payload, position)
            draft["fragment_offset"] = fragment & _IPV6_FRAGMENT_OFFSET_MASK  # 8-byte units
            draft["more_fragments"] = bool(fragment & _IPV6_MORE_FRAGMENTS)
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
        draft["seq"], draft["ack"], offset_flags = TCP_SEQ_ACK_OFFSET_FLAGS.unpack_from(
            payload, offset
        )
        draft["tcp_flags"] = offset_flags & TCP_FLAGS_MASK
        header_len = (offset_flags >> TCP_DATA_OFFSET_SHIFT & TCP_DATA_OFFSET_MASK) * 4
        if header_len < _TCP_HEADER_LEN:
            draft["notes"] += (note_bad_tcp_header_length(header_len),)
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
    if (hardware_type, protocol_type, hardware_len, protocol_len) != _ARP_ETHERNET_IPV4_KIND:
        draft["notes"] += (note_arp_not_decoded(hardware_type, protocol_type),)
        return
    sender_mac, sender_ip, target_ip = _ARP_ETHERNET_IPV4.unpack_from(payload, offset)
    draft["arp_sender_mac"] = sender_mac.hex(":")
    draft["src"] = _ADDRESS_TEXT.get(sender_ip) or _ipv4_text(sender_ip)
    draft["dst"] = _ADDRESS_TEXT.get(target_ip) or _ipv4_text(target_ip)
