"""The header layouts of a dropped packet, defined once with construct, and laid out for ``struct``.

Strategy: :func:`header_definitions` is the definition of record of every
header netdm decodes (Ethernet II, 802.1Q/802.1ad tags, ARP, IPv4 with
options and fragments, IPv6 with its common extension headers, TCP, UDP,
ICMP, ICMPv6).  The fast decoder (:mod:`netdm.engine.headers`) and the JSON
line's header writer (:mod:`netdm.output.packet_json_headers`) do not spell
formats or offsets of their own: :func:`struct_layout` turns a definition
(or several, end to end) into a :class:`struct.Struct` that reads exactly
the named fields, and :func:`bit_field` gives a bit field's shift and mask
inside its ``BitStruct``.  The property tests in
``tests/engine/test_headers.py`` then compare the decoder with construct
*parsing* of the same bytes.  construct is imported only inside
:func:`header_definitions`.
"""

from __future__ import annotations

import functools
import ipaddress
import struct
from dataclasses import dataclass
from typing import Any

from netdm.capture.link_layer import ETHERTYPE_IPV4
from netdm.engine.header_names import (
    ARP_HARDWARE_ETHERNET,
    ARP_OPERATION_NAMES,
    ETHERTYPE_NAMES,
    ICMP_TYPE_NAMES,
    ICMPV6_TYPE_NAMES,
    IP_PROTOCOL_NAMES,
    TCP_FLAG_BITS,
)

__all__ = [
    "BitField",
    "HeaderDefinitions",
    "bit_field",
    "const_value",
    "header_definitions",
    "struct_layout",
]



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




# --------------------------------------------------------------------------- laid out for struct

_UNSIGNED_BY_SIZE = {1: "B", 2: "H", 4: "I"}


def _field_format(field: Any) -> str:
    """The ``struct`` code of one fixed-size field: its integer, its bytes, or its bits."""
    from construct import Adapter, Bytes, Const, FormatField, Renamed

    inner = field
    while isinstance(inner, (Renamed, Adapter, Const)):  # Enum is an Adapter
        inner = inner.subcon
    size = int(field.sizeof())
    if isinstance(inner, FormatField):
        fmtstr: str = inner.fmtstr
        byte_order, code = fmtstr[0], fmtstr[1:]
        if byte_order != ">" or struct.calcsize("!" + code) != size:
            raise ValueError(f"{field.name}: not a big-endian integer ({inner.fmtstr})")
        return code
    if isinstance(inner, Bytes):
        return f"{size}s"
    return _UNSIGNED_BY_SIZE[size]  # a BitStruct: read whole, split by bit_field()


def _merged(codes: list[str], kinds: str) -> list[str]:
    """Adjacent codes of ``kinds`` as one (``6s6s`` → ``12s``, ``2x2x`` → ``4x``)."""
    merged: list[str] = []
    for code in codes:
        kind = code[-1]
        if kind in kinds and merged and merged[-1][-1] == kind and merged[-1][:-1].isdigit():
            merged[-1] = f"{int(merged[-1][:-1]) + int(code[:-1])}{kind}"
        else:
            merged.append(code)
    return merged


def struct_layout(
    *parts: tuple[Any, tuple[str, ...] | None], merge_bytes: bool = False
) -> struct.Struct:
    """A network-order ``struct`` that reads the named fields of ``parts``, laid end to end.

    Each part is a fixed-size construct ``Struct`` and the names of the fields
    to read, in their order (``None``: every field).  Other fields become pad
    bytes; pad after the last field read is left off.  ``merge_bytes``: read
    adjacent byte strings as one.  Raises :class:`ValueError` for a name the
    definition lacks or gives in another order.
    """
    codes: list[str] = []
    for definition, names in parts:
        wanted = [field.name for field in definition.subcons] if names is None else list(names)
        read = [field.name for field in definition.subcons if field.name in wanted]
        if read != wanted:
            raise ValueError(f"fields {wanted} are not those of the definition, in order")
        for field in definition.subcons:
            if field.name in wanted:
                codes.append(_field_format(field))
            else:
                codes.append(f"{int(field.sizeof())}x")
    while codes and codes[-1].endswith("x"):
        codes.pop()
    return struct.Struct("!" + "".join(_merged(codes, "xs" if merge_bytes else "x")))


@dataclass(frozen=True)
class BitField:
    """Where a bit field sits in the integer its ``BitStruct`` is read as."""

    shift: int
    mask: int  # after the shift

    @property
    def in_place(self) -> int:
        """The field's bits, not shifted."""
        return self.mask << self.shift


def bit_field(definition: Any, struct_field: str, name: str) -> BitField:
    """The shift and mask of ``name`` in the ``BitStruct`` field ``struct_field`` of ``definition``."""  # noqa: E501
    from construct import BitsInteger, Flag

    (outer,) = [field for field in definition.subcons if field.name == struct_field]
    bits = int(outer.sizeof()) * 8
    position = 0
    for field in outer.subcon.subcon.subcons:  # Renamed(Transformed(Struct))
        inner = field.subcon
        if inner is Flag:
            width = 1
        elif isinstance(inner, BitsInteger):
            width = int(inner.length)
        else:
            raise ValueError(f"{struct_field}.{field.name}: not a bit field")
        position += width
        if field.name == name:
            return BitField(bits - position, (1 << width) - 1)
    raise ValueError(f"{struct_field} has no field {name}")


def const_value(definition: Any, name: str) -> int:
    """The value a ``Const`` field of ``definition`` must hold."""
    (field,) = [field for field in definition.subcons if field.name == name]
    return int(field.subcon.value)
