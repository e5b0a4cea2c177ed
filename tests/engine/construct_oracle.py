"""The construct definitions as the oracle of the fast header decoder.

Strategy: :func:`check_with_construct` takes what ``describe_packet`` said
about a payload and checks every claim by *parsing the payload with the
construct definitions* at the offsets the decoder reported: each field it
gives is what construct parses there, each header it decoded without a note
parses whole, each note names the header construct cannot parse (or the
version, length or kind construct reads), and what it leaves unset is unset
because the walk stopped there.  The only rules spelled out here are the
protocol's, not the decoder's code: which EtherType and IP protocol lead to
which header, that tags and IPv6 extension headers chain, that only the
first fragment has a transport header.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from construct import ConstructError

from netdm.engine.headers import (
    IP_PROTOCOL_NAMES,
    TCP_FLAG_BITS,
    VLAN_TPIDS,
    PacketHeaders,
    header_definitions,
    payload_is_ethernet,
)

D = header_definitions()
_DEFAULTS = asdict(PacketHeaders())
_IPV6_EXTENSIONS = {0, 43, 60}
_IPV6_FRAGMENT = 44


def _number(value: Any) -> int:
    """An integer from a parsed construct ``Enum`` value (named or not)."""
    return int(getattr(value, "intvalue", value))


class _Check:
    def __init__(self, payload: bytes, headers: PacketHeaders) -> None:
        self.payload = payload
        self.headers = headers
        self.claims: dict[str, Any] = {}  # every field checked so far
        self.stop: str | None = None  # the note that ends the walk, if any

    def parse(self, definition: Any, offset: int) -> Any:
        try:
            return definition.parse(self.payload[offset:])
        except ConstructError:
            return None

    def expect(self, **fields: Any) -> None:
        for name, value in fields.items():
            actual = getattr(self.headers, name)
            assert actual == value, (name, actual, value, self.payload.hex(), self.headers)
            self.claims[name] = value

    def stopped(self, note: str) -> None:
        self.stop = note

    def finish(self, leading_notes: tuple[str, ...]) -> None:
        """Every field not checked is the default; the notes are the guess and the stop."""
        expected_notes = leading_notes + (() if self.stop is None else (self.stop,))
        assert self.headers.notes == expected_notes, (self.headers.notes, expected_notes)
        ip_proto = self.claims.get("ip_proto")
        l4 = None if ip_proto is None else IP_PROTOCOL_NAMES.get(ip_proto)
        assert self.headers.l4 == l4
        for name, default in _DEFAULTS.items():
            if name not in self.claims and name not in ("notes", "l4"):
                assert getattr(self.headers, name) == default, (name, self.headers)

    # ----------------------------------------------------------------------- layers

    def layer3(self, offset: int, ethertype: int) -> None:
        self.expect(ethertype=ethertype, l3_offset=offset)
        if ethertype == 0x0800:
            self.ipv4(offset)
        elif ethertype == 0x86DD:
            self.ipv6(offset)
        elif ethertype == 0x0806:
            self.arp(offset)

    def ipv4(self, offset: int) -> None:
        self.expect(l3="IPv4")
        fixed = self.parse(D.ipv4_fixed, offset)
        if fixed is None:
            return self.stopped("truncated IPv4 header")
        if fixed.version_ihl.version != 4:
            return self.stopped(f"not IPv4 (version {fixed.version_ihl.version})")
        protocol = _number(fixed.protocol)
        self.expect(
            src=fixed.src,
            dst=fixed.dst,
            ttl=fixed.ttl,
            ip_proto=protocol,
            ip_length=fixed.total_length,
        )
        fragment = fixed.flags_fragment
        if fragment.fragment_offset or fragment.more_fragments:
            self.expect(
                fragment_offset=fragment.fragment_offset * 8,
                more_fragments=fragment.more_fragments,
            )
        header_len = fixed.version_ihl.ihl * 4
        if header_len < D.ipv4_fixed.sizeof():
            return self.stopped(f"bad IPv4 header length {header_len}")
        whole = self.parse(D.ipv4, offset)
        if whole is None:
            return self.stopped("truncated IPv4 options")
        if not fragment.fragment_offset:  # only the first fragment has a transport header
            self.layer4(offset + D.ipv4_fixed.sizeof() + len(whole.options), protocol)

    def ipv6(self, offset: int) -> None:
        self.expect(l3="IPv6")
        header = self.parse(D.ipv6, offset)
        if header is None:
            return self.stopped("truncated IPv6 header")
        version = header.version_class_flow.version
        if version != 6:
            return self.stopped(f"not IPv6 (version {version})")
        self.expect(
            src=header.src, dst=header.dst, ttl=header.hop_limit, ip_length=header.payload_length
        )
        next_header = _number(header.next_header)
        position = offset + D.ipv6.sizeof()
        fragment: Any = None  # the last fragment header's fields count (a chain may hold two)
        while next_header in _IPV6_EXTENSIONS or next_header == _IPV6_FRAGMENT:
            if next_header == _IPV6_FRAGMENT:
                header = self.parse(D.ipv6_fragment, position)
                if header is None:
                    self.expect(ip_proto=next_header)
                    self.expect_fragment(fragment)
                    return self.stopped("truncated IPv6 fragment header")
                fragment = header
                next_header = _number(header.next_header)
                position += D.ipv6_fragment.sizeof()
            else:
                extension = self.parse(D.ipv6_extension, position)
                if extension is None:
                    self.expect(ip_proto=next_header)
                    self.expect_fragment(fragment)
                    return self.stopped("truncated IPv6 extension header")
                next_header = _number(extension.next_header)
                position += len(D.ipv6_extension.build(extension))
        self.expect(ip_proto=next_header)
        self.expect_fragment(fragment)
        if fragment is None or not fragment.fragment.offset:
            self.layer4(position, next_header)

    def expect_fragment(self, fragment: Any) -> None:
        if fragment is not None:
            self.expect(
                fragment_offset=fragment.fragment.offset * 8,
                more_fragments=fragment.fragment.more_fragments,
            )

    def layer4(self, offset: int, protocol: int) -> None:
        self.expect(l4_offset=offset)
        if protocol in (6, 17):
            name = "TCP" if protocol == 6 else "UDP"
            ports = self.parse(D.ports, offset)
            if ports is None:
                return self.stopped(f"truncated {name} header")
            self.expect(sport=ports.sport, dport=ports.dport)
            if protocol == 17:
                if self.parse(D.udp, offset) is None:
                    self.stopped("truncated UDP header")
                return None
            self.tcp(offset)
        elif protocol in (1, 58):
            definition, name = (D.icmp, "ICMP") if protocol == 1 else (D.icmpv6, "ICMPv6")
            header = self.parse(definition, offset)
            if header is None:
                return self.stopped(f"truncated {name} header")
            self.expect(icmp_type=_number(header.type), icmp_code=header.code)
        return None

    def tcp(self, offset: int) -> None:
        fixed = self.parse(D.tcp_fixed, offset)
        if fixed is None:
            return self.stopped("truncated TCP header")
        flags = fixed.offset_flags
        self.expect(
            seq=fixed.seq,
            ack=fixed.ack,
            tcp_flags=sum(bit for name, bit, _letter in TCP_FLAG_BITS if flags[name]),
        )
        header_len = flags.data_offset * 4
        if header_len < D.tcp_fixed.sizeof():
            return self.stopped(f"bad TCP header length {header_len}")
        if self.parse(D.tcp, offset) is None:
            return self.stopped("truncated TCP options")
        return None

    def arp(self, offset: int) -> None:
        self.expect(l3="ARP")
        fixed = self.parse(D.arp_fixed, offset)
        if fixed is None:
            return self.stopped("truncated ARP header")
        self.expect(arp_op=_number(fixed.operation))
        if self.parse(D.arp, offset) is None:
            return self.stopped("truncated ARP header")
        known = self.parse(D.arp_ethernet_ipv4, offset)
        if known is None:
            kind = f"hardware type {fixed.htype}, protocol {_number(fixed.ptype):#06x}"
            return self.stopped(f"ARP for {kind} not decoded")
        self.expect(
            arp_sender_mac=known.sender_hardware_address,
            src=known.sender_protocol_address,
            dst=known.target_protocol_address,
        )
        return None


def check_with_construct(proto: int | None, payload: bytes, headers: PacketHeaders) -> None:
    """Assert that ``headers`` is what construct parsing of ``payload`` says; see the module."""
    check = _Check(payload, headers)
    leading: tuple[str, ...] = ()
    if not payload:
        check.expect(ethertype=proto or None)
        check.stopped("no payload")
    elif payload_is_ethernet(proto, payload):
        if not proto:
            leading = ("no protocol from the kernel: guessed Ethernet",)
        ethernet = D.ethernet.parse(payload)
        check.expect(link="Ethernet", eth_src=ethernet.src, eth_dst=ethernet.dst)
        ethertype, offset, vlan_ids = _number(ethernet.ethertype), D.ethernet.sizeof(), []
        while ethertype in VLAN_TPIDS:
            tag = check.parse(D.vlan_tag, offset)
            if tag is None:
                check.expect(vlan_ids=tuple(vlan_ids), ethertype=ethertype)
                check.stopped("truncated VLAN tag")
                break
            vlan_ids.append(tag.tci.vid)
            ethertype, offset = _number(tag.ethertype), offset + D.vlan_tag.sizeof()
        else:
            check.expect(vlan_ids=tuple(vlan_ids))
            check.layer3(offset, ethertype)
    elif proto:
        check.layer3(0, proto)
    else:
        check.stopped("no protocol from the kernel: link layer unknown")
    check.finish(leading)
