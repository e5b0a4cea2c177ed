"""``netdm watch --packets -x``: a dropped packet's line, then its details and a hex dump.

Strategy: the verbose view is for reading a few drops closely, not for a
storm, so it is plain code: the line of :func:`netdm.output.packet_line.format_packet_line`,
then one indented line per fact (the drop, the time to the nanosecond, the
interface, the lengths, each decoded layer, the decoder's notes, unknown
attributes) and a ``tcpdump -X`` style dump of the payload.  Strings from the
kernel or the payload are escaped; payload bytes appear only as hex and as
an ASCII column in which anything but ``0x20``-``0x7e`` is a dot.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import tzinfo

from netdm.engine.headers import (
    ARP_OPERATION_NAMES,
    IP_PROTOCOL_NAMES,
    PacketHeaders,
    ethertype_name,
    icmp_description,
    tcp_flags_text,
)
from netdm.engine.packet_site import (
    ORIGIN_HARDWARE,
    ORIGIN_SOFTWARE,
    IfnameResolver,
    headers_of,
    interface_name,
)
from netdm.engine.symbols import SymbolTable, format_address
from netdm.output.packet_line import TimeFormat, format_packet_line, format_timestamp
from netdm.proto.events import PacketAlert, RawAttribute
from netdm.textsafe import escape_for_terminal

__all__ = ["DETAIL_INDENT", "format_packet_verbose", "hex_dump"]

DETAIL_INDENT = "    "

_DUMP_WIDTH = 16
_ASCII_COLUMN = bytes(byte if 0x20 <= byte < 0x7F else 0x2E for byte in range(256))


def hex_dump(data: bytes, *, indent: str = DETAIL_INDENT) -> list[str]:
    """``tcpdump -X`` style lines: offset, 16 bytes in groups of two, an ASCII column.

    ``    0x0000:  4500 0028 0001 4000 4011 3cc3 7f00 0001  E..(..@.@.<.....``

    The ASCII column shows ``0x20``-``0x7e`` as they are and every other
    byte as ``.``, so nothing in it can control a terminal.
    """
    lines = []
    for offset in range(0, len(data), _DUMP_WIDTH):
        chunk = data[offset : offset + _DUMP_WIDTH]
        groups = " ".join(chunk[start : start + 2].hex() for start in range(0, len(chunk), 2))
        text = chunk.translate(_ASCII_COLUMN).decode("ascii")
        lines.append(f"{indent}0x{offset:04x}:  {groups:<39}  {text}")
    return lines


def _drop_detail(alert: PacketAlert, symbols: SymbolTable | None) -> str:
    if alert.origin == ORIGIN_HARDWARE:
        parts = ["hardware drop"]
        if alert.hw_trap_name is not None:
            parts.append(f"trap {escape_for_terminal(alert.hw_trap_name)}")
        if alert.hw_trap_group_name is not None:
            parts.append(f"group {escape_for_terminal(alert.hw_trap_group_name)}")
    else:
        parts = ["software drop" if alert.origin == ORIGIN_SOFTWARE else f"origin {alert.origin}"]
        if alert.pc is not None:
            parts.append(f"pc {format_address(alert.pc)}")
        if alert.symbol is not None:
            parts.append(f"symbol {escape_for_terminal(alert.symbol)}")
        elif alert.pc is not None and symbols is not None:
            resolved = symbols.lookup(alert.pc)
            if resolved is not None:
                parts.append(f"symbol {escape_for_terminal(resolved.format())} (from symbols)")
    if alert.reason is not None:
        parts.append(f"reason {escape_for_terminal(alert.reason)}")
    if alert.flow_action_cookie is not None:
        parts.append(f"flow action cookie 0x{alert.flow_action_cookie.hex()}")
    return f"{DETAIL_INDENT}{', '.join(parts)}"


def _interface_detail(alert: PacketAlert, ifname: str | None) -> str | None:
    port = alert.in_port
    if port is None:
        return None
    parts = [escape_for_terminal(ifname) if ifname else "name unknown"]
    if port.ifindex is not None:
        parts.append(f"ifindex {port.ifindex}")
    return f"{DETAIL_INDENT}interface: {', '.join(parts)}"


def _packet_detail(alert: PacketAlert) -> str:
    captured = 0 if alert.payload is None else len(alert.payload)
    original = "?" if alert.orig_len is None else str(alert.orig_len)
    text = f"{DETAIL_INDENT}packet: {captured} of {original} bytes captured"
    if alert.proto is not None:
        name = ethertype_name(alert.proto)
        text += f", protocol {alert.proto:#06x}" + (f" ({name})" if name else "")
    return text


def _ethertype_detail(ethertype: int | None) -> str:
    if ethertype is None:
        return "?"
    name = ethertype_name(ethertype)
    return f"{ethertype:#06x}" + (f" ({name})" if name else "")


def _protocol_number_detail(number: int | None) -> str:
    if number is None:
        return "?"
    name = IP_PROTOCOL_NAMES.get(number)
    return f"{number}" + (f" ({name})" if name else "")


def _layer_details(headers: PacketHeaders) -> list[str]:
    lines = []
    if headers.link == "Ethernet":
        lines.append(
            f"Ethernet: {headers.eth_src} > {headers.eth_dst},"
            f" type {_ethertype_detail(headers.ethertype)}"
        )
    elif headers.ethertype is not None:
        lines.append(f"no link-layer header, type {_ethertype_detail(headers.ethertype)}")
    if headers.vlan_ids:
        lines.append(f"VLAN: {', '.join(map(str, headers.vlan_ids))}")
    if headers.l3 in ("IPv4", "IPv6") and headers.src is not None:
        ttl_name, length_name = (
            ("ttl", "total length") if headers.l3 == "IPv4" else ("hop limit", "payload length")
        )
        ip_line = (
            f"{headers.l3}: {headers.src} > {headers.dst}, {ttl_name} {headers.ttl},"
            f" {length_name} {headers.ip_length}, protocol"
            f" {_protocol_number_detail(headers.ip_proto)}"
        )
        if headers.fragment_offset is not None:
            ip_line += f", fragment offset {headers.fragment_offset}"
            if headers.more_fragments:
                ip_line += " (more fragments)"
        lines.append(ip_line)
    if headers.l3 == "ARP" and headers.arp_op is not None:
        name = ARP_OPERATION_NAMES.get(headers.arp_op)
        arp_line = f"ARP: operation {headers.arp_op}" + (f" ({name})" if name else "")
        if headers.src is not None:
            arp_line += f", sender {headers.arp_sender_mac} {headers.src}, target {headers.dst}"
        lines.append(arp_line)
    if headers.sport is not None:
        l4_line = f"{headers.l4}: port {headers.sport} > {headers.dport}"
        if headers.tcp_flags is not None:
            l4_line += (
                f", flags [{tcp_flags_text(headers.tcp_flags)}],"
                f" seq {headers.seq}, ack {headers.ack}"
            )
        lines.append(l4_line)
    if headers.icmp_type is not None and headers.icmp_code is not None:
        description = icmp_description(headers.l4, headers.icmp_type, headers.icmp_code)
        lines.append(
            f"{headers.l4}: {description} (type {headers.icmp_type}, code {headers.icmp_code})"
        )
    lines.extend(f"note: {note}" for note in headers.notes)
    return [f"{DETAIL_INDENT}{escape_for_terminal(line)}" for line in lines]


def _unknown_attribute_details(label: str, attributes: Iterable[RawAttribute]) -> list[str]:
    return [
        f"{DETAIL_INDENT}{label} {attribute.type}: {len(attribute.data)} bytes"
        + (f" {attribute.data.hex()}" if attribute.data else "")
        for attribute in attributes
    ]


def format_packet_verbose(
    alert: PacketAlert,
    *,
    resolve_ifname: IfnameResolver | None = None,
    symbols: SymbolTable | None = None,
    time_format: TimeFormat = "time",
    nanoseconds: bool = False,
    tz: tzinfo | None = None,
    headers: PacketHeaders | None = None,
    max_dump_bytes: int | None = None,
) -> list[str]:
    """The line of :func:`format_packet_line`, then indented details and a hex dump.

    Details: the drop (pc, full kernel symbol, reason, or trap and group and
    flow-action cookie), the time to the nanosecond, the interface, the
    lengths and protocol, each decoded layer, the decoder's notes, unknown
    attributes (type, length, hex), then the payload as ``tcpdump -X`` does
    (the first ``max_dump_bytes`` bytes only, when given).
    """
    packet = headers_of(alert, headers)
    ifname = interface_name(alert, resolve_ifname)
    lines = [
        format_packet_line(
            alert,
            resolve_ifname=lambda _ifindex: ifname,
            symbols=symbols,
            time_format=time_format,
            nanoseconds=nanoseconds,
            tz=tz,
            headers=packet,
        ),
        _drop_detail(alert, symbols),
    ]
    if alert.timestamp_ns is not None:
        when = format_timestamp(alert.timestamp_ns, time_format="datetime", nanoseconds=True, tz=tz)
        lines.append(f"{DETAIL_INDENT}time: {when} ({alert.timestamp_ns} ns since the epoch)")
    interface = _interface_detail(alert, ifname)
    if interface is not None:
        lines.append(interface)
    lines.append(_packet_detail(alert))
    if alert.payload:
        lines.extend(_layer_details(packet))
    lines.extend(_unknown_attribute_details("unknown attribute", alert.unknown_attributes))
    if alert.in_port is not None:
        lines.extend(
            _unknown_attribute_details(
                "unknown in_port attribute", alert.in_port.unknown_attributes
            )
        )
    if alert.payload:
        shown = alert.payload if max_dump_bytes is None else alert.payload[:max_dump_bytes]
        lines.extend(hex_dump(shown))
        if len(shown) < len(alert.payload):
            lines.append(f"{DETAIL_INDENT}({len(alert.payload) - len(shown)} more bytes)")
    return lines
