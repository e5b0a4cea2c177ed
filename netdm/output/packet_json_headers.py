"""The ``"headers"`` object of a packet's JSON line, written as text, fast for a storm.

Strategy: ``--packets --json`` writes one line per dropped packet, and the
headers are half of it.  :class:`HeaderJson` writes the text of
:func:`netdm.output.packet_json.headers_to_json` (``json.dumps`` of it,
compact, ASCII) two ways:

* :meth:`HeaderJson.of_headers`, from a decoded
  :class:`~netdm.engine.headers.PacketHeaders`: the link and layer-3 fields
  (cached by those fields), the rest in place, and the constant tail of
  nulls of a packet with no TCP, ICMP or ARP fields and no notes.
* :meth:`HeaderJson.of_payload`, from the payload's bytes.  A storm's packets
  are mostly Ethernet, then IPv4 without options or IPv6 without extension
  headers, then UDP, TCP, ICMP or ICMPv6, whole.  For those the text comes
  from one unpack of the payload, without a ``PacketHeaders``: the link and
  layer-3 part from a cache keyed by the bytes it is made of, the rest in
  place.  Anything else (VLAN tags, IPv4 options or fragments, IPv6
  extension headers, other protocols, a header cut short, no or another
  protocol from the kernel) goes the general way,
  ``of_headers(describe_packet(...))``.  The unpack formats are the construct
  definitions laid end to end
  (:func:`~netdm.engine.header_definitions.struct_layout`), not offsets of
  its own.  ``tests/output/test_packet_json_fast_headers.py`` holds the two
  ways equal, byte for byte, over generated and mutated frames.

Every cache maps what a fragment depends on to its text and empties itself
when it holds ``max_entries``: a storm repeats a few sites and addresses.
"""

from __future__ import annotations

import json
from typing import Any

from netdm.capture.link_layer import ETHERTYPE_IPV4, ETHERTYPE_IPV6
from netdm.engine.header_definitions import header_definitions, struct_layout
from netdm.engine.headers import (
    ARP_OPERATION_NAMES,
    IP_PROTOCOL_NAMES,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPV4_FIELDS,
    IPV4_FRAGMENT_OFFSET_MASK,
    IPV4_MORE_FRAGMENTS,
    IPV4_VERSION_SHIFT,
    IPV6_VERSION_SHIFT,
    TCP_DATA_OFFSET_MASK,
    TCP_DATA_OFFSET_SHIFT,
    TCP_FLAGS_MASK,
    TCP_SEQ_ACK_OFFSET_FLAGS,
    PacketHeaders,
    describe_packet,
    ethertype_name,
    icmp_description,
    tcp_flags_text,
)

__all__ = ["FRAGMENT_CACHE_SIZE", "FragmentCaches", "HeaderJson", "encode_json_string"]

FRAGMENT_CACHE_SIZE = 4096
encode_json_string = json.encoder.encode_basestring_ascii  # what json.dumps uses, in C

# The layouts are the construct definitions laid end to end (netdm.engine.header_definitions).
_D = header_definitions()
# MACs, EtherType, version/IHL, total length, flags/fragment offset, TTL, protocol, source
# and destination, the first four transport bytes (ports, or ICMP type/code and checksum).
_ETHERNET_IPV4 = struct_layout(
    (_D.ethernet, None), (_D.ipv4_fixed, IPV4_FIELDS), (_D.ports, None), merge_bytes=True
)
_ETHERNET_IPV4_L4 = _D.ethernet.sizeof() + _D.ipv4_fixed.sizeof()  # no IPv4 options
# MACs, EtherType, version/class/flow label, payload length, next header, hop limit, source
# and destination, the first four transport bytes.
_ETHERNET_IPV6 = struct_layout(
    (_D.ethernet, None), (_D.ipv6, None), (_D.ports, None), merge_bytes=True
)
_ETHERNET_IPV6_L4 = _D.ethernet.sizeof() + _D.ipv6.sizeof()
_TCP_HEADER_LEN = _D.tcp_fixed.sizeof()
_UDP_HEADER_LEN = _D.udp.sizeof()
# Version 4 and an IHL of 5 (no options), as the first byte of the header.
_IPV4_PLAIN = 4 << IPV4_VERSION_SHIFT | _D.ipv4_fixed.sizeof() // 4
# MF and the fragment offset: either makes a fragment.
_IPV4_FRAGMENT_BITS = IPV4_MORE_FRAGMENTS | IPV4_FRAGMENT_OFFSET_MASK

# The tail of a packet with no TCP, ICMP or ARP fields and no notes.
NO_TRANSPORT_DETAILS_JSON = (
    '"tcp_flags":null,"tcp_flags_text":null,"seq":null,"ack":null,'
    '"icmp_type":null,"icmp_code":null,"icmp_description":null,'
    '"arp_op":null,"arp_op_name":null,"arp_sender_mac":null,"notes":[]}'
)
_NO_PORTS_JSON = '"sport":null,"dport":null,'
_NO_TCP_JSON = '"tcp_flags":null,"tcp_flags_text":null,"seq":null,"ack":null,'
_AFTER_ICMP_JSON = '"arp_op":null,"arp_op_name":null,"arp_sender_mac":null,"notes":[]}'
_AFTER_TCP_JSON = '"icmp_type":null,"icmp_code":null,"icmp_description":null,' + _AFTER_ICMP_JSON
_NOT_A_FRAGMENT_JSON = '"fragment_offset":null,"more_fragments":false,'


def _number_json(value: int | None) -> str:
    return "null" if value is None else str(value)


class FragmentCaches:
    """Caches of JSON fragments that empty themselves when full."""

    def __init__(self, max_entries: int = FRAGMENT_CACHE_SIZE) -> None:
        """``max_entries``: how much each cache holds before it empties itself."""
        self.max_entries = max_entries

    def remember(self, cache: dict[Any, Any], key: Any, value: Any) -> Any:
        """Store ``value`` under ``key``, first emptying a full ``cache``; return ``value``."""
        if len(cache) >= self.max_entries:
            cache.clear()
        cache[key] = value
        return value


class HeaderJson(FragmentCaches):
    """The headers' JSON text, from :class:`PacketHeaders` or from the payload's bytes."""

    def __init__(self, max_entries: int = FRAGMENT_CACHE_SIZE) -> None:
        """``max_entries``: how much each cache holds before it empties itself."""
        super().__init__(max_entries)
        self.texts: dict[str, str] = {}  # a string (as it is) -> its JSON form
        self.heads: dict[tuple[Any, ...], str] = {}  # link and layer-3 fields -> their JSON
        # (MACs, addresses, TTL, protocol) -> "link" to "ttl".  IPv4 and IPv6 keys differ in
        # the addresses' length (8 or 32 bytes).
        self.fast_heads: dict[tuple[bytes, bytes, int, int], str] = {}
        # (protocol, transport offset, first 16 bits) -> "l4" to the end, for ICMP and ICMPv6.
        self.icmp_tails: dict[tuple[int, int, int], str] = {}
        self.tcp_flags: dict[int, str] = {}  # flags byte -> its "tcp_flags_text" value

    def caches(self) -> list[dict[Any, str]]:
        """Every cache, for tests of their bounds."""
        return [self.texts, self.heads, self.fast_heads, self.icmp_tails, self.tcp_flags]

    def json_text(self, text: str | None) -> str:
        """``json.dumps(text)`` (ASCII): ``null``, or the quoted, escaped string."""
        if text is None:
            return "null"
        encoded = self.texts.get(text)
        if encoded is None:
            encoded = self.remember(self.texts, text, encode_json_string(text))
        return encoded

    # ----------------------------------------------------------------------- decoded headers

    def of_headers(self, h: PacketHeaders) -> str:
        """:func:`~netdm.output.packet_json.headers_to_json` of ``h`` as JSON text."""
        key = (
            h.link,
            h.eth_src,
            h.eth_dst,
            h.vlan_ids,
            h.ethertype,
            h.l3_offset,
            h.l3,
            h.src,
            h.dst,
            h.ip_proto,
            h.ttl,
        )
        head = self.heads.get(key)
        if head is None:
            head = self.remember(self.heads, key, self._head(h))
        ip_length, fragment_offset = h.ip_length, h.fragment_offset
        l4, l4_offset, sport, dport = h.l4, h.l4_offset, h.sport, h.dport
        null = "null"
        return (
            f'{head}"ip_length":{null if ip_length is None else ip_length},'
            f'"fragment_offset":{null if fragment_offset is None else fragment_offset},'
            f'"more_fragments":{"true" if h.more_fragments else "false"},'
            f'"l4":{null if l4 is None else self.json_text(l4)},'
            f'"l4_offset":{null if l4_offset is None else l4_offset},'
            f'"sport":{null if sport is None else sport},'
            f'"dport":{null if dport is None else dport},'
            f"{self._tail(h)}"
        )

    def _head(self, h: PacketHeaders) -> str:
        """``"link"`` to ``"ttl"`` of the headers' JSON, and the comma after them."""
        vlan_ids = h.vlan_ids
        text = self.json_text
        return (
            f'{{"link":{text(h.link)},"eth_src":{text(h.eth_src)},'
            f'"eth_dst":{text(h.eth_dst)},'
            f'"vlan_ids":[{",".join(map(str, vlan_ids)) if vlan_ids else ""}],'
            f'"ethertype":{_number_json(h.ethertype)},'
            f'"ethertype_name":{text(ethertype_name(h.ethertype))},'
            f'"l3_offset":{_number_json(h.l3_offset)},'
            f'"l3":{text(h.l3)},"src":{text(h.src)},"dst":{text(h.dst)},'
            f'"ip_proto":{_number_json(h.ip_proto)},"ttl":{_number_json(h.ttl)},'
        )

    def _tail(self, h: PacketHeaders) -> str:
        """``"tcp_flags"`` to ``"notes"`` of the headers' JSON, and the closing brace."""
        flags, seq, ack = h.tcp_flags, h.seq, h.ack
        icmp_type, icmp_code, arp_op = h.icmp_type, h.icmp_code, h.arp_op
        notes = h.notes
        if (
            flags is None
            and seq is None
            and ack is None
            and icmp_type is None
            and icmp_code is None
            and arp_op is None
            and h.arp_sender_mac is None
            and not notes
        ):
            return NO_TRANSPORT_DETAILS_JSON
        icmp = None
        if icmp_type is not None and icmp_code is not None:
            icmp = icmp_description(h.l4, icmp_type, icmp_code)
        null = "null"
        text = self.json_text
        arp_name = null if arp_op is None else text(ARP_OPERATION_NAMES.get(arp_op))
        return (
            f'"tcp_flags":{null if flags is None else flags},'
            f'"tcp_flags_text":{null if flags is None else text(tcp_flags_text(flags))},'
            f'"seq":{null if seq is None else seq},"ack":{null if ack is None else ack},'
            f'"icmp_type":{null if icmp_type is None else icmp_type},'
            f'"icmp_code":{null if icmp_code is None else icmp_code},'
            f'"icmp_description":{text(icmp)},'
            f'"arp_op":{null if arp_op is None else arp_op},'
            f'"arp_op_name":{arp_name},'
            f'"arp_sender_mac":{text(h.arp_sender_mac)},'
            f'"notes":[{",".join(map(text, notes)) if notes else ""}]}}'
        )

    # ----------------------------------------------------------------------- from bytes

    def of_payload(self, proto: int | None, payload: bytes | None) -> str:
        """``of_headers(describe_packet(proto, payload or b""))``, fast for a storm's packets.

        Why the cached head is right: on the fast path the fields from ``link``
        to ``ttl`` are fixed by the path (Ethernet, no VLAN tag, the EtherType,
        the layer-3 offset 14 and its name) or made of the key's bytes (the
        MACs, the addresses, the protocol, the TTL).  The head is first written
        by the general path, from this packet's own ``PacketHeaders``.
        """
        if payload is not None:
            size = len(payload)
            l4_offset = 0  # where the transport header starts, once layer 3 is known plain
            if proto == ETHERTYPE_IPV4 and size >= _ETHERNET_IPV4.size:
                (
                    macs,
                    ethertype,
                    version_ihl,
                    ip_length,
                    fragment,
                    ttl,
                    protocol,
                    addresses,
                    first,
                    second,
                ) = _ETHERNET_IPV4.unpack_from(payload)
                if (
                    ethertype == ETHERTYPE_IPV4
                    and version_ihl == _IPV4_PLAIN
                    and not fragment & _IPV4_FRAGMENT_BITS
                ):
                    l4_offset = _ETHERNET_IPV4_L4
            elif proto == ETHERTYPE_IPV6 and size >= _ETHERNET_IPV6.size:
                (
                    macs,
                    ethertype,
                    version_flow,
                    ip_length,
                    protocol,
                    ttl,
                    addresses,
                    first,
                    second,
                ) = _ETHERNET_IPV6.unpack_from(payload)
                if ethertype == ETHERTYPE_IPV6 and version_flow >> IPV6_VERSION_SHIFT == 6:
                    l4_offset = _ETHERNET_IPV6_L4
            if l4_offset:  # then ethertype == proto: the payload agrees with the alert
                key = (macs, addresses, ttl, protocol)
                if protocol == IPPROTO_UDP:  # the most common: written here, one call less
                    if size >= l4_offset + _UDP_HEADER_LEN:
                        head = self.fast_heads.get(key) or self._fast_head(key, ethertype, payload)
                        return (
                            f'{head}"ip_length":{ip_length},"fragment_offset":null,'
                            f'"more_fragments":false,"l4":"UDP","l4_offset":{l4_offset},'
                            f'"sport":{first},"dport":{second},{NO_TRANSPORT_DETAILS_JSON}'
                        )
                else:
                    rest = self._transport(payload, size, protocol, l4_offset, first, second)
                    if rest is not None:
                        head = self.fast_heads.get(key) or self._fast_head(key, ethertype, payload)
                        return f'{head}"ip_length":{ip_length},{_NOT_A_FRAGMENT_JSON}{rest}'
        return self.of_headers(describe_packet(proto, payload or b""))

    def _fast_head(self, key: tuple[bytes, bytes, int, int], proto: int, payload: bytes) -> str:
        """The ``"link"`` to ``"ttl"`` text of a packet on the fast path, by the general path."""
        text: str = self.remember(self.fast_heads, key, self._head(describe_packet(proto, payload)))
        return text

    def _transport(
        self, payload: bytes, size: int, protocol: int, offset: int, first: int, second: int
    ) -> str | None:
        """``"l4"`` to the end for a whole TCP, ICMP or ICMPv6 header at ``offset``.

        ``first``/``second``: its first two 16-bit words.  ``None`` for anything
        else: the general path then decodes the packet.  (UDP is written by the
        caller.)
        """
        if protocol == IPPROTO_TCP:
            if size - offset < _TCP_HEADER_LEN:
                return None
            seq, ack, offset_flags = TCP_SEQ_ACK_OFFSET_FLAGS.unpack_from(payload, offset)
            flags = offset_flags & TCP_FLAGS_MASK
            header_len = (offset_flags >> TCP_DATA_OFFSET_SHIFT & TCP_DATA_OFFSET_MASK) * 4
            if not _TCP_HEADER_LEN <= header_len <= size - offset:
                return None  # a bad header length or cut options: a note
            flags_text = self.tcp_flags.get(flags) or self.remember(
                self.tcp_flags, flags, self.json_text(tcp_flags_text(flags))
            )
            return (
                f'"l4":"TCP","l4_offset":{offset},"sport":{first},"dport":{second},'
                f'"tcp_flags":{flags},"tcp_flags_text":{flags_text},"seq":{seq},"ack":{ack},'
                f"{_AFTER_TCP_JSON}"
            )
        if protocol in (IPPROTO_ICMP, IPPROTO_ICMPV6):  # its four bytes were unpacked
            key = (protocol, offset, first)
            text = self.icmp_tails.get(key)
            if text is None:
                l4 = IP_PROTOCOL_NAMES[protocol]
                icmp_type, icmp_code = first >> 8, first & 0xFF
                description = icmp_description(l4, icmp_type, icmp_code)
                text = self.remember(
                    self.icmp_tails,
                    key,
                    f'"l4":{self.json_text(l4)},"l4_offset":{offset},{_NO_PORTS_JSON}'
                    f'{_NO_TCP_JSON}"icmp_type":{icmp_type},"icmp_code":{icmp_code},'
                    f'"icmp_description":{self.json_text(description)},'
                    f"{_AFTER_ICMP_JSON}",
                )
            return text
        return None
