"""Packet mode, presented: one line per dropped packet, a verbose view, JSON, filters, pcap.

Strategy: a :class:`~netdm.proto.events.PacketAlert` arrives for every
dropped packet, so everything here works on one alert at a time and does
little per call.  The payload's headers are decoded once with
:func:`netdm.engine.headers.describe_packet` (the ``struct`` fast path; callers that
filter first can pass the :class:`~netdm.engine.headers.PacketHeaders` on), and the
three views are built from the alert plus those headers:

* :func:`format_packet_line`: one tcpdump-like line, the default output of
  ``netdm watch --packets``::

      00:26:51.123456 __udp4_lib_rcv+0x5f7 NO_SOCKET lo(1) IPv4 UDP 127.0.0.1:40000 > 127.0.0.1:9 len 38/38

  time, location, reason, interface, then what the headers say, optional
  ``(notes)``, and ``len captured/original``.  The first four columns never
  contain a space (a space inside a kernel string prints as ``\\x20``) and a
  missing value prints as ``-``, so ``awk '{print $3}'`` is always the reason.
* :func:`format_packet_verbose`: that line, then indented details of every
  layer, the unknown attributes and a ``tcpdump -X`` style hex dump.
* :func:`packet_to_json` / :func:`packet_json_line`: every field, for ``jq``.

The exact formats are documented in ``docs/packet-mode.md``.  Every string
that came from the kernel (symbol, reason, interface and trap names) or from
the payload (addresses) goes through
:func:`netdm.textsafe.escape_for_terminal` before it reaches text output;
payload bytes only ever appear as hex and as an ASCII column in which
anything but ``0x20``-``0x7e`` is a dot.  JSON strings go through
:func:`netdm.textsafe.replace_invalid_text`, so ``json.dumps(...,
ensure_ascii=True)`` always works.

:class:`PacketFilter` decides, on the client side, which drops to show
(reasons, locations, interfaces, protocols, origins); :class:`PcapPacketSink`
writes the dropped packets themselves to a classic pcap file with link type
``LINKTYPE_LINUX_SLL2``, which keeps the EtherType and the input ifindex.
"""  # noqa: E501

from __future__ import annotations

import base64
import fnmatch
import functools
import json
import os
import re
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo
from types import TracebackType
from typing import Any, BinaryIO, Literal

from netdm.engine.headers import (
    ARP_OPERATION_NAMES,
    ETHERNET_HEADER_LEN,
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    ETHERTYPE_NAMES,
    IP_PROTOCOL_NAMES,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    PacketHeaders,
    describe_packet,
    ethertype_name,
    icmp_description,
    payload_is_ethernet,
    tcp_flags_text,
)
from netdm.engine.symbols import SymbolTable, format_address, parse_kernel_symbol
from netdm.proto.events import PacketAlert, RawAttribute
from netdm.textsafe import escape_for_terminal, replace_invalid_text

__all__ = [
    "LINKTYPE_LINUX_SLL2",
    "IfnameResolver",
    "PacketFilter",
    "PayloadEncoding",
    "PcapPacketSink",
    "TimeFormat",
    "caching_resolver",
    "format_packet_line",
    "format_packet_verbose",
    "format_timestamp",
    "headers_to_json",
    "hex_dump",
    "normalize_reason",
    "packet_json_line",
    "packet_json_writer",
    "packet_to_json",
    "parse_filter_arguments",
    "sll2_frame",
]

TimeFormat = Literal["time", "datetime", "epoch"]
PayloadEncoding = Literal["hex", "base64"]
IfnameResolver = Callable[[int], "str | None"]

ORIGIN_SOFTWARE = 0
ORIGIN_HARDWARE = 1
MISSING = "-"
DETAIL_INDENT = "    "
_TCP_ACK = 0x10
_REASON_PREFIX = "SKB_DROP_REASON_"


# --------------------------------------------------------------------------- small pieces


@functools.lru_cache(maxsize=4096)
def _column(text: str) -> str:
    """A kernel string as one whitespace-free column: escaped, spaces as ``\\x20``.

    Cached: a drop storm repeats the same few symbols, reasons and names.
    """
    return escape_for_terminal(text).replace(" ", "\\x20")


@functools.lru_cache(maxsize=256)
def _clock(seconds: int, time_format: str, tz: tzinfo | None) -> str:
    try:
        moment = datetime.fromtimestamp(seconds, tz)
    except (OverflowError, OSError, ValueError):
        return str(seconds)
    if time_format == "time":
        return moment.strftime("%H:%M:%S")
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


def format_timestamp(
    timestamp_ns: int | None,
    *,
    time_format: TimeFormat = "time",
    nanoseconds: bool = False,
    tz: tzinfo | None = None,
) -> str:
    """The kernel's drop time as text; ``-`` when the alert had none.

    ``time_format``: ``"time"`` (``00:26:51.123456``, like tcpdump),
    ``"datetime"`` (``2020-11-17T00:26:51.123456``) or ``"epoch"``
    (``1605572811.123456``).  Microseconds unless ``nanoseconds``.  ``tz``
    is the time zone (``None``: local time).
    """
    if timestamp_ns is None:
        return MISSING
    seconds, fraction_ns = divmod(timestamp_ns, 1_000_000_000)
    fraction = f"{fraction_ns:09d}" if nanoseconds else f"{fraction_ns // 1000:06d}"
    if time_format == "epoch":
        return f"{seconds}.{fraction}"
    return f"{_clock(seconds, time_format, tz)}.{fraction}"


def _iso_timestamp(timestamp_ns: int, tz: tzinfo) -> str:
    """ISO 8601 with nanoseconds and the offset: ``2020-11-16T23:26:51.123456789+00:00``."""
    seconds, fraction_ns = divmod(timestamp_ns, 1_000_000_000)
    try:
        moment = datetime.fromtimestamp(seconds, tz)
    except (OverflowError, OSError, ValueError):
        return f"{seconds}.{fraction_ns:09d}"
    text = moment.isoformat(timespec="seconds")
    date_and_time, offset = text[:19], text[19:]
    return f"{date_and_time}.{fraction_ns:09d}{offset}"


def caching_resolver(resolve: IfnameResolver, max_entries: int = 1024) -> IfnameResolver:
    """Wrap an ifindex→name function (``socket.if_indextoname``) with a small cache.

    Exceptions (``OSError`` for an index that no longer exists) become
    ``None``, and are remembered too; the cache empties itself when full.
    """
    names: dict[int, str | None] = {}

    def cached(ifindex: int) -> str | None:
        try:
            return names[ifindex]
        except KeyError:
            pass
        if len(names) >= max_entries:
            names.clear()
        names[ifindex] = _resolve_quietly(resolve, ifindex)
        return names[ifindex]

    return cached


def _resolve_quietly(resolve: IfnameResolver, ifindex: int) -> str | None:
    try:
        return resolve(ifindex)
    except (OSError, ValueError, OverflowError, TypeError):
        return None


def _interface_name(alert: PacketAlert, resolve_ifname: IfnameResolver | None) -> str | None:
    """The kernel's name (hardware drops), else the resolver's, else ``None``."""
    port = alert.in_port
    if port is None:
        return None
    if port.name:
        return port.name
    if port.ifindex is None or resolve_ifname is None:
        return None
    return _resolve_quietly(resolve_ifname, port.ifindex)


@dataclass(frozen=True, slots=True)
class _Location:
    function: str | None
    offset: int | None
    module: str | None


@functools.lru_cache(maxsize=4096)
def _kernel_symbol_location(symbol: str) -> _Location:
    parsed = parse_kernel_symbol(symbol)
    return _Location(parsed.name, parsed.offset, parsed.module)


def _software_location(alert: PacketAlert, symbols: SymbolTable | None) -> _Location | None:
    """Function, offset, module: from the kernel's ``%pS`` string, else the pc via ``symbols``."""
    if alert.symbol:
        return _kernel_symbol_location(alert.symbol)
    if alert.pc is not None and symbols is not None:
        resolved = symbols.lookup(alert.pc)
        if resolved is not None:
            return _Location(resolved.name, resolved.offset, resolved.module)
    return None


def _location_column(alert: PacketAlert, symbols: SymbolTable | None) -> str:
    if alert.origin == ORIGIN_HARDWARE:
        name = _column(alert.hw_trap_name) if alert.hw_trap_name else MISSING
        if alert.hw_trap_group_name:
            return f"hw:{_column(alert.hw_trap_group_name)}/{name}"
        return f"hw:{name}"
    location = _software_location(alert, symbols)
    if location is not None and location.function:
        text = _column(location.function)
        if location.offset is not None:
            text += f"+{location.offset:#x}"
        if location.module:
            text += f"[{_column(location.module)}]"
        return text
    if alert.pc is not None:
        return format_address(alert.pc)
    return MISSING


def _interface_column(alert: PacketAlert, name: str | None) -> str:
    ifindex = None if alert.in_port is None else alert.in_port.ifindex
    shown = _column(name) if name else MISSING
    if ifindex is None:
        return shown
    return f"{shown}({ifindex})"


def _endpoint(address: str, port: int | None, l3: str | None) -> str:
    address = escape_for_terminal(address)
    if port is None:
        return address
    return f"[{address}]:{port}" if l3 == "IPv6" else f"{address}:{port}"


def _ethertype_text(headers: PacketHeaders) -> str:
    ethertype = headers.ethertype
    if ethertype is None:
        return MISSING
    name = ETHERTYPE_NAMES.get(ethertype)
    if name is not None:
        return name
    if headers.link == "Ethernet" and ethertype < 0x600:
        return f"802.3 length {ethertype}"
    return f"ethertype {ethertype:#06x}"


def _arp_summary(headers: PacketHeaders) -> str:
    operation = headers.arp_op
    if operation is None:
        return "ARP"
    src = None if headers.src is None else escape_for_terminal(headers.src)
    dst = None if headers.dst is None else escape_for_terminal(headers.dst)
    if src is not None and dst is not None:
        if operation == 1:
            return f"ARP request who-has {dst} tell {src}"
        if operation == 2 and headers.arp_sender_mac is not None:
            return f"ARP reply {src} is-at {escape_for_terminal(headers.arp_sender_mac)}"
    name = ARP_OPERATION_NAMES.get(operation, f"op {operation}")
    if src is not None and dst is not None:
        return f"ARP {name} {src} > {dst}"
    return f"ARP {name}"


def _ip_summary(headers: PacketHeaders) -> list[str]:
    parts = [headers.l3 or ""]
    if headers.src is None or headers.dst is None:
        return parts
    parts.append(headers.l4 or f"proto {headers.ip_proto}")
    parts.append(
        f"{_endpoint(headers.src, headers.sport, headers.l3)}"
        f" > {_endpoint(headers.dst, headers.dport, headers.l3)}"
    )
    if headers.tcp_flags is not None:
        tcp = f"[{tcp_flags_text(headers.tcp_flags)}] seq {headers.seq}"
        if headers.tcp_flags & _TCP_ACK:
            tcp += f" ack {headers.ack}"
        parts.append(tcp)
    if headers.icmp_type is not None and headers.icmp_code is not None:
        parts.append(icmp_description(headers.l4, headers.icmp_type, headers.icmp_code))
    if headers.fragment_offset is not None:
        parts.append(f"frag {headers.fragment_offset}{'+' if headers.more_fragments else ''}")
    return parts


def _headers_summary(headers: PacketHeaders) -> str:
    parts: list[str] = []
    if headers.vlan_ids:
        parts.append("vlan " + ",".join(map(str, headers.vlan_ids)))
    if headers.l3 in ("IPv4", "IPv6"):
        parts.extend(_ip_summary(headers))
    elif headers.l3 == "ARP":
        parts.append(_arp_summary(headers))
    else:
        parts.append(_ethertype_text(headers))
    if headers.notes:
        parts.append(f"({'; '.join(headers.notes)})")
    return " ".join(parts)


def _lengths(alert: PacketAlert) -> str:
    captured = 0 if alert.payload is None else len(alert.payload)
    original = MISSING if alert.orig_len is None else str(alert.orig_len)
    return f"len {captured}/{original}"


def _headers_of(alert: PacketAlert, headers: PacketHeaders | None) -> PacketHeaders:
    if headers is not None:
        return headers
    return describe_packet(alert.proto, alert.payload or b"")


# --------------------------------------------------------------------------- one line


def format_packet_line(
    alert: PacketAlert,
    *,
    resolve_ifname: IfnameResolver | None = None,
    symbols: SymbolTable | None = None,
    time_format: TimeFormat = "time",
    nanoseconds: bool = False,
    tz: tzinfo | None = None,
    headers: PacketHeaders | None = None,
) -> str:
    """One line for one dropped packet (the layout is in ``docs/packet-mode.md``)::

        00:26:51.123456 __udp4_lib_rcv+0x5f7 NO_SOCKET lo(1) IPv4 UDP 127.0.0.1:40000 > 127.0.0.1:9 len 38/38
        00:26:52.000001 hw:l3_drops/blackhole_route - swp1(3) IPv4 TCP 192.0.2.1:1 > 198.51.100.1:80 [S] seq 1 len 54/54

    ``resolve_ifname`` maps an ifindex to a name when the kernel sent none
    (software drops); exceptions it raises count as "no name".  ``symbols``
    names the pc when the kernel sent no symbol string.  ``headers`` saves
    decoding the payload again when the caller already did.  No control
    character from the kernel or the payload reaches the result.
    """  # noqa: E501
    packet = _headers_of(alert, headers)
    ifname = _interface_name(alert, resolve_ifname)
    return " ".join(
        (
            format_timestamp(
                alert.timestamp_ns, time_format=time_format, nanoseconds=nanoseconds, tz=tz
            ),
            _location_column(alert, symbols),
            _column(alert.reason) if alert.reason else MISSING,
            _interface_column(alert, ifname),
            _headers_summary(packet),
            _lengths(alert),
        )
    )


# --------------------------------------------------------------------------- verbose

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
    packet = _headers_of(alert, headers)
    ifname = _interface_name(alert, resolve_ifname)
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


# --------------------------------------------------------------------------- JSON


def _text(value: str | None) -> str | None:
    return None if value is None else replace_invalid_text(value)


def _attributes_json(attributes: Iterable[RawAttribute]) -> list[dict[str, Any]]:
    return [{"type": attribute.type, "data": attribute.data.hex()} for attribute in attributes]


def _origin_name(origin: int) -> str:
    if origin == ORIGIN_SOFTWARE:
        return "sw"
    if origin == ORIGIN_HARDWARE:
        return "hw"
    return str(origin)


def headers_to_json(headers: PacketHeaders) -> dict[str, Any]:
    """The decoded headers as a JSON object: every :class:`PacketHeaders` field plus names."""
    flags = headers.tcp_flags
    icmp = None
    if headers.icmp_type is not None and headers.icmp_code is not None:
        icmp = icmp_description(headers.l4, headers.icmp_type, headers.icmp_code)
    return {
        "link": headers.link,
        "eth_src": headers.eth_src,
        "eth_dst": headers.eth_dst,
        "vlan_ids": list(headers.vlan_ids),
        "ethertype": headers.ethertype,
        "ethertype_name": ethertype_name(headers.ethertype),
        "l3_offset": headers.l3_offset,
        "l3": headers.l3,
        "src": headers.src,
        "dst": headers.dst,
        "ip_proto": headers.ip_proto,
        "ttl": headers.ttl,
        "ip_length": headers.ip_length,
        "fragment_offset": headers.fragment_offset,
        "more_fragments": headers.more_fragments,
        "l4": headers.l4,
        "l4_offset": headers.l4_offset,
        "sport": headers.sport,
        "dport": headers.dport,
        "tcp_flags": flags,
        "tcp_flags_text": None if flags is None else tcp_flags_text(flags),
        "seq": headers.seq,
        "ack": headers.ack,
        "icmp_type": headers.icmp_type,
        "icmp_code": headers.icmp_code,
        "icmp_description": icmp,
        "arp_op": headers.arp_op,
        "arp_op_name": None if headers.arp_op is None else ARP_OPERATION_NAMES.get(headers.arp_op),
        "arp_sender_mac": headers.arp_sender_mac,
        "notes": list(headers.notes),
    }


def packet_to_json(
    alert: PacketAlert,
    *,
    resolve_ifname: IfnameResolver | None = None,
    symbols: SymbolTable | None = None,
    payload_encoding: PayloadEncoding = "hex",
    tz: tzinfo = timezone.utc,
    headers: PacketHeaders | None = None,
) -> dict[str, Any]:
    """Every field of a packet alert as a JSON-ready dict (schema in ``docs/packet-mode.md``).

    Strings from the kernel keep their text; undecodable bytes (lone
    surrogates) become U+FFFD, so ``json.dumps(..., ensure_ascii=True)``
    always succeeds and strict parsers accept the result.  ``time`` is ISO
    8601 in ``tz`` (UTC by default) with nanoseconds; ``timestamp_ns`` is
    the kernel's integer.  ``payload`` is hex, or base64 when asked.
    """
    if payload_encoding not in ("hex", "base64"):
        raise ValueError(f"payload_encoding must be 'hex' or 'base64', not {payload_encoding!r}")
    packet = _headers_of(alert, headers)
    payload = alert.payload
    location = None if alert.origin == ORIGIN_HARDWARE else _software_location(alert, symbols)
    port = alert.in_port
    if payload is None:
        encoded = None
    elif payload_encoding == "hex":
        encoded = payload.hex()
    else:
        encoded = base64.b64encode(payload).decode("ascii")
    return {
        "type": "packet",
        "time": None if alert.timestamp_ns is None else _iso_timestamp(alert.timestamp_ns, tz),
        "timestamp_ns": alert.timestamp_ns,
        "origin": _origin_name(alert.origin),
        "pc": None if alert.pc is None else format_address(alert.pc),
        "symbol": _text(alert.symbol),
        "function": None if location is None else _text(location.function),
        "offset": None if location is None else location.offset,
        "module": None if location is None else _text(location.module),
        "reason": _text(alert.reason),
        "in_port": {
            "ifindex": None if port is None else port.ifindex,
            "name": _text(_interface_name(alert, resolve_ifname)),
            "unknown_attributes": [] if port is None else _attributes_json(port.unknown_attributes),
        },
        "proto": alert.proto,
        "proto_name": ethertype_name(alert.proto),
        "orig_len": alert.orig_len,
        "captured_len": 0 if payload is None else len(payload),
        "payload_encoding": payload_encoding,
        "payload": encoded,
        "headers": headers_to_json(packet),
        "hw_trap_group": _text(alert.hw_trap_group_name),
        "hw_trap_name": _text(alert.hw_trap_name),
        "flow_action_cookie": None
        if alert.flow_action_cookie is None
        else alert.flow_action_cookie.hex(),
        "unknown_attributes": _attributes_json(alert.unknown_attributes),
    }


def packet_json_line(
    alert: PacketAlert,
    *,
    resolve_ifname: IfnameResolver | None = None,
    symbols: SymbolTable | None = None,
    payload_encoding: PayloadEncoding = "hex",
    tz: tzinfo = timezone.utc,
    headers: PacketHeaders | None = None,
) -> str:
    """:func:`packet_to_json` as one compact ASCII line (no newline), DEL escaped too.

    Byte for byte ``json.dumps(packet_to_json(...), ensure_ascii=True,
    separators=(",", ":"))``, but written directly, about three times faster
    (``--packets --json`` prints one per dropped packet).  How: the fragments
    that repeat in a storm are cached (everything a drop site decides, the
    interface, the protocol name, the second of the timestamp, each string's
    JSON form), numbers are formatted in place, and strings go through the
    encoder ``json.dumps`` itself uses (``encode_basestring_ascii``, which
    escapes everything outside ``0x20``-``0x7e``: DEL and all non-ASCII).  The
    headers of a common packet (Ethernet, IPv4 or IPv6, UDP, TCP or ICMP) are
    written from the payload's bytes without decoding them into
    :class:`PacketHeaders` (see :func:`_payload_headers_json`).  The property
    tests in ``tests/output/test_packets.py`` and
    ``tests/output/test_packet_json_fast_headers.py`` hold it to the ``json.dumps`` of
    :func:`packet_to_json` over generated alerts, headers and frames.
    """
    _check_payload_encoding(payload_encoding)
    return _json_line(resolve_ifname, symbols, payload_encoding, tz, headers, "", alert)


def packet_json_writer(
    *,
    resolve_ifname: IfnameResolver | None = None,
    symbols: SymbolTable | None = None,
    payload_encoding: PayloadEncoding = "hex",
    tz: tzinfo = timezone.utc,
) -> Callable[[PacketAlert], str]:
    """``alert -> packet_json_line(alert, ...) + "\\n"``, with these options bound once.

    What ``--packets --json`` calls for every packet: the options are checked
    once, and the function is called with positional arguments only (a
    ``functools.partial`` with keywords costs a dict per call).
    """
    _check_payload_encoding(payload_encoding)
    return functools.partial(_json_line, resolve_ifname, symbols, payload_encoding, tz, None, "\n")


def _check_payload_encoding(payload_encoding: str) -> None:
    if payload_encoding not in ("hex", "base64"):
        raise ValueError(f"payload_encoding must be 'hex' or 'base64', not {payload_encoding!r}")


def _json_line(
    resolve_ifname: IfnameResolver | None,
    symbols: SymbolTable | None,
    payload_encoding: PayloadEncoding,
    tz: tzinfo,
    headers: PacketHeaders | None,
    end: str,
    alert: PacketAlert,
) -> str:
    """:func:`packet_json_line` of checked options, then ``end``; the alert last, for partials."""
    payload = alert.payload
    proto = alert.proto
    if payload is None:
        payload_json = f'0,"payload_encoding":"{payload_encoding}","payload":null'
    elif payload_encoding == "hex":
        payload_json = f'{len(payload)},"payload_encoding":"hex","payload":"{payload.hex()}"'
    else:
        encoded = base64.b64encode(payload).decode("ascii")
        payload_json = f'{len(payload)},"payload_encoding":"base64","payload":"{encoded}"'
    if headers is None:
        headers_json = _payload_headers_json(proto, payload)
    else:
        headers_json = _headers_json(headers)
    site_head, site_tail = _drop_site_json(alert, symbols)
    orig_len = alert.orig_len
    cookie = alert.flow_action_cookie
    unknown = alert.unknown_attributes
    return (
        f'{{"type":"packet","time":{_time_json(alert.timestamp_ns, tz)},{site_head},'
        f'"in_port":{_in_port_json(alert, resolve_ifname)},'
        f"{_PROTOS.get(proto) or _proto_json(proto)},"
        f'"orig_len":{"null" if orig_len is None else orig_len},"captured_len":{payload_json},'
        f'"headers":{headers_json},{site_tail},'
        f'"flow_action_cookie":{"null" if cookie is None else _quoted(cookie.hex())},'
        f'"unknown_attributes":{_attributes_json_text(unknown) if unknown else "[]"}}}{end}'
    )


# The fast JSON line's caches.  Each maps what a fragment depends on to its text, and
# empties itself when full: a storm repeats a few sites, interfaces and seconds.
_FRAGMENT_CACHE_SIZE = 4096
_NS_PER_SECOND = 1_000_000_000
_encode_json_string = json.encoder.encode_basestring_ascii  # what json.dumps uses, in C
_JSON_TEXTS: dict[str, str] = {}  # a string (as it is) -> its JSON form
_KERNEL_JSON_TEXTS: dict[str, str] = {}  # a kernel string -> JSON of replace_invalid_text(it)
_DROP_SITES: dict[tuple[Any, ...], tuple[str, str]] = {}
_IN_PORTS: dict[tuple[Any, ...], str] = {}
_PROTOS: dict[int | None, str] = {}
_SECONDS: dict[tuple[int, tzinfo], tuple[str, str]] = {}
_NO_PORT_JSON = '{"ifindex":null,"name":null,"unknown_attributes":[]}'


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> Any:
    if len(cache) >= _FRAGMENT_CACHE_SIZE:
        cache.clear()
    cache[key] = value
    return value


def _quoted(ascii_text: str) -> str:
    """A string known to need no escaping (hex digits) in quotes."""
    return f'"{ascii_text}"'


def _json_text(text: str | None) -> str:
    """``json.dumps(text)`` (ASCII): ``null``, or the quoted, escaped string."""
    if text is None:
        return "null"
    encoded = _JSON_TEXTS.get(text)
    if encoded is None:
        encoded = _remember(_JSON_TEXTS, text, _encode_json_string(text))
    return encoded


def _kernel_json_text(text: str | None) -> str:
    """``json.dumps(_text(text))``: undecodable bytes become U+FFFD first."""
    if text is None:
        return "null"
    encoded = _KERNEL_JSON_TEXTS.get(text)
    if encoded is None:
        encoded = _remember(
            _KERNEL_JSON_TEXTS, text, _encode_json_string(replace_invalid_text(text))
        )
    return encoded


def _number_json(value: int | None) -> str:
    return "null" if value is None else str(value)


def _time_json(timestamp_ns: int | None, tz: tzinfo) -> str:
    """The ``time`` value of :func:`_iso_timestamp` and the ``timestamp_ns`` member after it.

    The second's text is cached.  From 1,000,000,000 ns on, the nanoseconds are the last nine
    digits of ``timestamp_ns``'s decimal, which is written anyway: one conversion, not two.
    """
    if timestamp_ns is None:
        return 'null,"timestamp_ns":null'
    seconds = timestamp_ns // _NS_PER_SECOND
    digits = str(timestamp_ns)
    if timestamp_ns >= _NS_PER_SECOND:
        fraction = digits[-9:]
    else:
        fraction = f"{timestamp_ns % _NS_PER_SECOND:09d}"
    key = (seconds, tz)
    try:
        parts = _SECONDS.get(key)
    except TypeError:  # a tzinfo that cannot be hashed: not cached
        parts = _second_json(seconds, tz)
    if parts is None:
        parts = _remember(_SECONDS, key, _second_json(seconds, tz))
    return f'{parts[0]}{fraction}{parts[1]},"timestamp_ns":{digits}'


def _second_json(seconds: int, tz: tzinfo) -> tuple[str, str]:
    """The JSON text around the nanoseconds in :func:`_iso_timestamp` of one second."""
    try:
        moment = datetime.fromtimestamp(seconds, tz)
    except (OverflowError, OSError, ValueError):
        return _encode_json_string(f"{seconds}.")[:-1], '"'
    text = moment.isoformat(timespec="seconds")
    date_and_time, offset = text[:19], text[19:]
    # JSON escapes character by character, so the string may be encoded in two pieces.
    return _encode_json_string(f"{date_and_time}.")[:-1], _encode_json_string(offset)[1:]


def _drop_site_json(alert: PacketAlert, symbols: SymbolTable | None) -> tuple[str, str]:
    """``"origin"`` to ``"reason"``, and ``"hw_trap_group"`` and ``"hw_trap_name"``.

    Cached by drop site, unless the location comes from ``symbols`` (no symbol
    string, a pc): the table is not part of the key.
    """
    origin, pc, symbol = alert.origin, alert.pc, alert.symbol
    if origin != ORIGIN_HARDWARE and not symbol and pc is not None and symbols is not None:
        return _drop_site_fragments(alert, symbols)
    key = (origin, pc, symbol, alert.reason, alert.hw_trap_group_name, alert.hw_trap_name)
    fragments = _DROP_SITES.get(key)
    if fragments is None:
        fragments = _remember(_DROP_SITES, key, _drop_site_fragments(alert, symbols))
    return fragments


def _drop_site_fragments(alert: PacketAlert, symbols: SymbolTable | None) -> tuple[str, str]:
    location = None if alert.origin == ORIGIN_HARDWARE else _software_location(alert, symbols)
    if location is None:
        where = '"function":null,"offset":null,"module":null'
    else:
        where = (
            f'"function":{_kernel_json_text(location.function)},'
            f'"offset":{_number_json(location.offset)},'
            f'"module":{_kernel_json_text(location.module)}'
        )
    pc = alert.pc
    head = (
        f'"origin":{_json_text(_origin_name(alert.origin))},'
        f'"pc":{"null" if pc is None else _json_text(format_address(pc))},'
        f'"symbol":{_kernel_json_text(alert.symbol)},{where},'
        f'"reason":{_kernel_json_text(alert.reason)}'
    )
    tail = (
        f'"hw_trap_group":{_kernel_json_text(alert.hw_trap_group_name)},'
        f'"hw_trap_name":{_kernel_json_text(alert.hw_trap_name)}'
    )
    return head, tail


def _in_port_json(alert: PacketAlert, resolve_ifname: IfnameResolver | None) -> str:
    port = alert.in_port
    if port is None:
        return _NO_PORT_JSON
    # _interface_name(alert, resolve_ifname), inlined; the resolver is asked every time.
    name = port.name
    if not name:
        ifindex = port.ifindex
        name = (
            None
            if ifindex is None or resolve_ifname is None
            else _resolve_quietly(resolve_ifname, ifindex)
        )
    if port.unknown_attributes:
        return _in_port_text(port.ifindex, name, port.unknown_attributes)
    key = (port.ifindex, name)
    text = _IN_PORTS.get(key)
    if text is None:
        text = _remember(_IN_PORTS, key, _in_port_text(port.ifindex, name, ()))
    return text


def _in_port_text(ifindex: int | None, name: str | None, unknown: Sequence[RawAttribute]) -> str:
    return (
        f'{{"ifindex":{_number_json(ifindex)},"name":{_kernel_json_text(name)},'
        f'"unknown_attributes":{_attributes_json_text(unknown)}}}'
    )


def _proto_json(proto: int | None) -> str:
    text = _PROTOS.get(proto)
    if text is None:
        text = _remember(
            _PROTOS,
            proto,
            f'"proto":{_number_json(proto)},"proto_name":{_json_text(ethertype_name(proto))}',
        )
    return text


def _attributes_json_text(attributes: Iterable[RawAttribute]) -> str:
    items = ",".join(
        f'{{"type":{attribute.type},"data":"{attribute.data.hex()}"}}' for attribute in attributes
    )
    return f"[{items}]"


def _headers_json(h: PacketHeaders) -> str:
    """:func:`headers_to_json` as JSON text.

    Two parts repeat in a storm and are not rebuilt field by field: the link
    and layer-3 fields, from ``link`` to ``ttl`` (cached by those fields),
    and, for a packet with no TCP, ICMP or ARP header and no note (UDP, say),
    the constant tail of nulls.
    """
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
    head = _HEADER_HEADS.get(key)
    if head is None:
        head = _remember(_HEADER_HEADS, key, _headers_head_json(h))
    ip_length, fragment_offset = h.ip_length, h.fragment_offset
    l4, l4_offset, sport, dport = h.l4, h.l4_offset, h.sport, h.dport
    null = "null"
    return (
        f'{head}"ip_length":{null if ip_length is None else ip_length},'
        f'"fragment_offset":{null if fragment_offset is None else fragment_offset},'
        f'"more_fragments":{"true" if h.more_fragments else "false"},'
        f'"l4":{null if l4 is None else _json_text(l4)},'
        f'"l4_offset":{null if l4_offset is None else l4_offset},'
        f'"sport":{null if sport is None else sport},"dport":{null if dport is None else dport},'
        f"{_headers_tail_json(h)}"
    )


_HEADER_HEADS: dict[tuple[Any, ...], str] = {}  # link and layer-3 fields -> their JSON
# The tail of a packet with no TCP, ICMP or ARP fields and no notes.
_NO_TRANSPORT_DETAILS_JSON = (
    '"tcp_flags":null,"tcp_flags_text":null,"seq":null,"ack":null,'
    '"icmp_type":null,"icmp_code":null,"icmp_description":null,'
    '"arp_op":null,"arp_op_name":null,"arp_sender_mac":null,"notes":[]}'
)


def _headers_head_json(h: PacketHeaders) -> str:
    """``"link"`` to ``"ttl"`` of :func:`headers_to_json`, and the comma after them."""
    vlan_ids = h.vlan_ids
    return (
        f'{{"link":{_json_text(h.link)},"eth_src":{_json_text(h.eth_src)},'
        f'"eth_dst":{_json_text(h.eth_dst)},'
        f'"vlan_ids":[{",".join(map(str, vlan_ids)) if vlan_ids else ""}],'
        f'"ethertype":{_number_json(h.ethertype)},'
        f'"ethertype_name":{_json_text(ethertype_name(h.ethertype))},'
        f'"l3_offset":{_number_json(h.l3_offset)},'
        f'"l3":{_json_text(h.l3)},"src":{_json_text(h.src)},"dst":{_json_text(h.dst)},'
        f'"ip_proto":{_number_json(h.ip_proto)},"ttl":{_number_json(h.ttl)},'
    )


def _headers_tail_json(h: PacketHeaders) -> str:
    """``"tcp_flags"`` to ``"notes"`` of :func:`headers_to_json`, and the closing brace."""
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
        return _NO_TRANSPORT_DETAILS_JSON
    icmp = None
    if icmp_type is not None and icmp_code is not None:
        icmp = icmp_description(h.l4, icmp_type, icmp_code)
    null = "null"
    return (
        f'"tcp_flags":{null if flags is None else flags},'
        f'"tcp_flags_text":{null if flags is None else _json_text(tcp_flags_text(flags))},'
        f'"seq":{null if seq is None else seq},"ack":{null if ack is None else ack},'
        f'"icmp_type":{null if icmp_type is None else icmp_type},'
        f'"icmp_code":{null if icmp_code is None else icmp_code},'
        f'"icmp_description":{_json_text(icmp)},'
        f'"arp_op":{null if arp_op is None else arp_op},'
        f'"arp_op_name":{null if arp_op is None else _json_text(ARP_OPERATION_NAMES.get(arp_op))},'
        f'"arp_sender_mac":{_json_text(h.arp_sender_mac)},'
        f'"notes":[{",".join(map(_json_text, notes)) if notes else ""}]}}'
    )


# --------------------------------------------------------------------------- headers from bytes
#
# A storm's packets are mostly Ethernet, then IPv4 without options or IPv6 without extension
# headers, then UDP, TCP, ICMP or ICMPv6, whole.  For those, _payload_headers_json writes the
# header JSON straight from one unpack of the payload, without a PacketHeaders: the link and
# layer-3 part from a cache keyed by the bytes it is made of, the rest in place.  Anything
# else (VLAN tags, IPv4 options or fragments, IPv6 extension headers, other protocols, a
# header cut short, no or another protocol from the kernel) goes the general way,
# _headers_json(describe_packet(...)).  tests/output/test_packet_json_fast_headers.py holds the two
# equal, byte for byte, over generated and mutated frames.

# MACs, EtherType, version/IHL, total length, flags/fragment offset, TTL, protocol, source
# and destination, the first four transport bytes (ports, or ICMP type/code and checksum).
_ETHERNET_IPV4 = struct.Struct("!12sHBxHxxHBBxx8sHH")
_ETHERNET_IPV4_L4 = ETHERNET_HEADER_LEN + 20  # the IHL is 5: no options
# MACs, EtherType, version/class/flow label, payload length, next header, hop limit, source
# and destination, the first four transport bytes.
_ETHERNET_IPV6 = struct.Struct("!12sHIHBB32sHH")
_ETHERNET_IPV6_L4 = ETHERNET_HEADER_LEN + 40
_TCP_REST = struct.Struct("!IIBB")  # after the ports: seq, ack, data offset, flags
_TCP_HEADER_LEN = 20
_UDP_HEADER_LEN = 8
_IPV4_FRAGMENT_BITS = 0x3FFF  # MF and the fragment offset: either makes a fragment
# (MACs, addresses, TTL, protocol) -> "link" to "ttl".  IPv4 and IPv6 keys differ in the
# addresses' length (8 or 32 bytes).
_FAST_HEADS: dict[tuple[bytes, bytes, int, int], str] = {}
# (protocol, transport offset, first 16 bits) -> "l4" to the end, for ICMP and ICMPv6.
_ICMP_TAILS: dict[tuple[int, int, int], str] = {}
_TCP_FLAGS_JSON: dict[int, str] = {}  # flags byte -> its "tcp_flags_text" value
_NO_PORTS_JSON = '"sport":null,"dport":null,'
_NO_TCP_JSON = '"tcp_flags":null,"tcp_flags_text":null,"seq":null,"ack":null,'
_AFTER_ICMP_JSON = '"arp_op":null,"arp_op_name":null,"arp_sender_mac":null,"notes":[]}'
_AFTER_TCP_JSON = '"icmp_type":null,"icmp_code":null,"icmp_description":null,' + _AFTER_ICMP_JSON
_NOT_A_FRAGMENT_JSON = '"fragment_offset":null,"more_fragments":false,'


def _payload_headers_json(proto: int | None, payload: bytes | None) -> str:
    """``_headers_json(describe_packet(proto, payload or b""))``, fast for a storm's packets.

    Why the cached head is right: on the fast path the fields from ``link`` to
    ``ttl`` are fixed by the path (Ethernet, no VLAN tag, the EtherType, the
    layer-3 offset 14 and its name) or made of the key's bytes (the MACs, the
    addresses, the protocol, the TTL).  The head is first written by the
    general path, from this packet's own ``PacketHeaders``.
    """
    if payload is not None:
        size = len(payload)
        l4_offset = 0  # where the transport header starts, once layer 3 is known to be plain
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
                and version_ihl == 0x45
                and not fragment & _IPV4_FRAGMENT_BITS
            ):
                l4_offset = _ETHERNET_IPV4_L4
        elif proto == ETHERTYPE_IPV6 and size >= _ETHERNET_IPV6.size:
            macs, ethertype, version_flow, ip_length, protocol, ttl, addresses, first, second = (
                _ETHERNET_IPV6.unpack_from(payload)
            )
            if ethertype == ETHERTYPE_IPV6 and version_flow >> 28 == 6:
                l4_offset = _ETHERNET_IPV6_L4
        if l4_offset:  # then ethertype == proto: the payload agrees with the alert
            key = (macs, addresses, ttl, protocol)
            if protocol == IPPROTO_UDP:  # the most common: written here, one call less
                if size >= l4_offset + _UDP_HEADER_LEN:
                    head = _FAST_HEADS.get(key) or _fast_head(key, ethertype, payload)
                    return (
                        f'{head}"ip_length":{ip_length},"fragment_offset":null,'
                        f'"more_fragments":false,"l4":"UDP","l4_offset":{l4_offset},'
                        f'"sport":{first},"dport":{second},{_NO_TRANSPORT_DETAILS_JSON}'
                    )
            else:
                rest = _transport_json(payload, size, protocol, l4_offset, first, second)
                if rest is not None:
                    head = _FAST_HEADS.get(key) or _fast_head(key, ethertype, payload)
                    return f'{head}"ip_length":{ip_length},{_NOT_A_FRAGMENT_JSON}{rest}'
    return _headers_json(describe_packet(proto, payload or b""))


def _fast_head(key: tuple[bytes, bytes, int, int], proto: int, payload: bytes) -> str:
    """The ``"link"`` to ``"ttl"`` text of a packet on the fast path, by the general path."""
    text: str = _remember(_FAST_HEADS, key, _headers_head_json(describe_packet(proto, payload)))
    return text


def _transport_json(
    payload: bytes, size: int, protocol: int, offset: int, first: int, second: int
) -> str | None:
    """``"l4"`` to the end of the headers' JSON for a whole TCP, ICMP or ICMPv6 header at
    ``offset`` (``first``/``second``: its first two 16-bit words), or ``None`` for anything
    else: the general path then decodes the packet.  (UDP is written by the caller.)"""
    if protocol == IPPROTO_TCP:
        if size - offset < _TCP_HEADER_LEN:
            return None
        seq, ack, data_offset, flags = _TCP_REST.unpack_from(payload, offset + 4)
        if not _TCP_HEADER_LEN <= (data_offset >> 4) * 4 <= size - offset:
            return None  # a bad header length or cut options: a note
        flags_text = _TCP_FLAGS_JSON.get(flags) or _remember(
            _TCP_FLAGS_JSON, flags, _json_text(tcp_flags_text(flags))
        )
        return (
            f'"l4":"TCP","l4_offset":{offset},"sport":{first},"dport":{second},'
            f'"tcp_flags":{flags},"tcp_flags_text":{flags_text},"seq":{seq},"ack":{ack},'
            f"{_AFTER_TCP_JSON}"
        )
    if protocol in (IPPROTO_ICMP, IPPROTO_ICMPV6):  # its four bytes were unpacked: all there
        key = (protocol, offset, first)
        text = _ICMP_TAILS.get(key)
        if text is None:
            l4 = IP_PROTOCOL_NAMES[protocol]
            icmp_type, icmp_code = first >> 8, first & 0xFF
            text = _remember(
                _ICMP_TAILS,
                key,
                f'"l4":{_json_text(l4)},"l4_offset":{offset},{_NO_PORTS_JSON}{_NO_TCP_JSON}'
                f'"icmp_type":{icmp_type},"icmp_code":{icmp_code},'
                f'"icmp_description":{_json_text(icmp_description(l4, icmp_type, icmp_code))},'
                f"{_AFTER_ICMP_JSON}",
            )
        return text
    return None


# --------------------------------------------------------------------------- filters

_ORIGIN_ALIASES = {
    "sw": "sw",
    "software": "sw",
    "0": "sw",
    "hw": "hw",
    "hardware": "hw",
    "1": "hw",
}
_PROTOCOL_ALIASES = {"ip": "ipv4", "ip4": "ipv4", "ip6": "ipv6", "icmp6": "icmpv6"}
_PROTOCOL_TOKENS = frozenset(
    {"ipv4", "ipv6", "arp", "vlan"}
    | {name.lower() for name in IP_PROTOCOL_NAMES.values()}
    | {name.lower() for name in ETHERTYPE_NAMES.values()}
)
_NUMBER = re.compile(r"(?:0x[0-9a-f]+|[0-9]+)\Z")


def normalize_reason(reason: str) -> str:
    """``"skb_drop_reason_no_socket"`` → ``"NO_SOCKET"``: upper case, without the enum prefix."""
    reason = reason.strip().upper()
    if reason.startswith(_REASON_PREFIX):
        reason = reason[len(_REASON_PREFIX) :]
    return reason


def _split_values(values: Iterable[str]) -> list[str]:
    """Option values, each possibly a comma-separated list; empty items are dropped."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def _values(values: Iterable[str]) -> list[str]:
    """The values of one criterion; a lone string is one value, not its characters."""
    return [values] if isinstance(values, str) else list(values)


def _glob_matcher(patterns: Iterable[str]) -> re.Pattern[str] | None:
    patterns = sorted(patterns)
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(pattern)})" for pattern in patterns))


def _normalize_protocol(value: str) -> str | int:
    text = value.strip().lower()
    if _NUMBER.match(text):
        number = int(text, 0) if text.startswith("0x") else int(text)
        if number > 0xFFFF:
            raise ValueError(f"EtherType {value!r} is larger than 0xffff")
        return number
    text = _PROTOCOL_ALIASES.get(text, text)
    if text not in _PROTOCOL_TOKENS:
        known = ", ".join(sorted(_PROTOCOL_TOKENS))
        raise ValueError(f"unknown protocol {value!r}; use an EtherType such as 0x0800 or: {known}")
    return text


def _normalize_origin(value: str) -> str:
    try:
        return _ORIGIN_ALIASES[value.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown origin {value!r}; use sw or hw") from None


@dataclass(frozen=True)
class PacketFilter:
    """Which dropped packets to show, decided on the client side.

    Each set is one criterion; an empty set accepts everything.  A packet
    must pass every criterion, and passes one when it matches any value in
    its set (``--reason A --reason B`` is A or B; ``--reason A --protocol
    udp`` is A and UDP).

    * ``include_reasons`` / ``exclude_reasons``: drop reasons, case
      insensitive, with or without the ``SKB_DROP_REASON_`` prefix, glob
      patterns allowed (``TCP_*``).  A drop without a reason (hardware,
      kernels before 5.18) never matches ``include_reasons`` and is never
      excluded.
    * ``locations``: glob patterns over the function name (the kernel's
      symbol string without ``+0xoff/0xsize`` and module, else the pc's name
      from the symbol table), or, for hardware drops, the trap name.
      Case sensitive, as symbols are.
    * ``interfaces``: interface names (glob patterns) or ifindex numbers.
    * ``protocols``: ``ipv4`` (``ip``), ``ipv6`` (``ip6``), ``arp``, ``vlan``,
      ``tcp``, ``udp``, ``icmp``, ``icmpv6`` (``icmp6``), any other IP
      protocol or EtherType name netdm knows (``gre``, ``sctp``, ``lldp``),
      or an EtherType number (``0x0800``, ``2048``) matched against the
      kernel's ``proto`` and the EtherType after VLAN tags.
    * ``origins``: ``sw`` / ``hw`` (``software`` / ``hardware``).

    Values are normalised and checked on construction; a bad protocol or
    origin raises :class:`ValueError`.
    """

    include_reasons: frozenset[str] = frozenset()
    exclude_reasons: frozenset[str] = frozenset()
    locations: frozenset[str] = frozenset()
    interfaces: frozenset[str] = frozenset()
    protocols: frozenset[str] = frozenset()
    origins: frozenset[str] = frozenset()
    _include_reason_matcher: re.Pattern[str] | None = field(
        init=False, repr=False, compare=False, default=None
    )
    _exclude_reason_matcher: re.Pattern[str] | None = field(
        init=False, repr=False, compare=False, default=None
    )
    _location_matcher: re.Pattern[str] | None = field(
        init=False, repr=False, compare=False, default=None
    )
    _interface_matcher: re.Pattern[str] | None = field(
        init=False, repr=False, compare=False, default=None
    )
    _protocol_names: frozenset[str] = field(
        init=False, repr=False, compare=False, default=frozenset()
    )
    _protocol_numbers: frozenset[int] = field(
        init=False, repr=False, compare=False, default=frozenset()
    )

    def __post_init__(self) -> None:
        def store(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        include = frozenset(map(normalize_reason, _values(self.include_reasons)))
        exclude = frozenset(map(normalize_reason, _values(self.exclude_reasons)))
        protocols = [_normalize_protocol(protocol) for protocol in _values(self.protocols)]
        locations = frozenset(_values(self.locations))
        interfaces = frozenset(_values(self.interfaces))
        store("include_reasons", include)
        store("exclude_reasons", exclude)
        store("locations", locations)
        store("interfaces", interfaces)
        store(
            "protocols",
            frozenset(p if isinstance(p, str) else f"{p:#06x}" for p in protocols),
        )
        store("origins", frozenset(map(_normalize_origin, _values(self.origins))))
        store("_include_reason_matcher", _glob_matcher(include))
        store("_exclude_reason_matcher", _glob_matcher(exclude))
        store("_location_matcher", _glob_matcher(locations))
        store("_interface_matcher", _glob_matcher(interfaces))
        store("_protocol_names", frozenset(p for p in protocols if isinstance(p, str)))
        store("_protocol_numbers", frozenset(p for p in protocols if isinstance(p, int)))

    @classmethod
    def from_options(
        cls,
        *,
        reasons: Iterable[str] = (),
        exclude_reasons: Iterable[str] = (),
        locations: Iterable[str] = (),
        interfaces: Iterable[str] = (),
        protocols: Iterable[str] = (),
        origins: Iterable[str] = (),
    ) -> PacketFilter:
        """A filter from repeated command-line option values; each may be ``a,b,c``."""
        return cls(
            include_reasons=frozenset(_split_values(reasons)),
            exclude_reasons=frozenset(_split_values(exclude_reasons)),
            locations=frozenset(_split_values(locations)),
            interfaces=frozenset(_split_values(interfaces)),
            protocols=frozenset(_split_values(protocols)),
            origins=frozenset(_split_values(origins)),
        )

    @property
    def active(self) -> bool:
        """Whether the filter rejects anything at all."""
        return bool(
            self.include_reasons
            or self.exclude_reasons
            or self.locations
            or self.interfaces
            or self.protocols
            or self.origins
        )

    @property
    def needs_headers(self) -> bool:
        """Whether :meth:`matches` decodes the payload (only for ``protocols``)."""
        return bool(self.protocols)

    def matches(
        self,
        alert: PacketAlert,
        headers: PacketHeaders | None = None,
        ifname: str | None = None,
        *,
        symbols: SymbolTable | None = None,
    ) -> bool:
        """Whether ``alert`` passes every criterion.

        ``headers`` (decoded here when needed and not given), ``ifname`` (the
        resolved interface name; the alert's own name is used otherwise) and
        ``symbols`` (to name a pc when the alert has no symbol string) are
        what the caller already knows.
        """
        if self.origins and _origin_name(alert.origin) not in self.origins:
            return False
        if not self._reason_passes(alert.reason):
            return False
        if self._location_matcher is not None and not self._location_passes(alert, symbols):
            return False
        if self.interfaces and not self._interface_passes(alert, ifname):
            return False
        return not self.protocols or self._protocol_passes(alert, headers)

    def _reason_passes(self, reason: str | None) -> bool:
        include, exclude = self._include_reason_matcher, self._exclude_reason_matcher
        if include is None and exclude is None:
            return True
        if reason is None:
            return include is None
        normalized = normalize_reason(reason)
        if include is not None and not include.match(normalized):
            return False
        return exclude is None or not exclude.match(normalized)

    def _location_passes(self, alert: PacketAlert, symbols: SymbolTable | None) -> bool:
        assert self._location_matcher is not None
        if alert.origin == ORIGIN_HARDWARE:
            name = alert.hw_trap_name
        else:
            location = _software_location(alert, symbols)
            name = None if location is None else location.function
        return name is not None and self._location_matcher.match(name) is not None

    def _interface_passes(self, alert: PacketAlert, ifname: str | None) -> bool:
        port = alert.in_port
        if port is not None and port.ifindex is not None and str(port.ifindex) in self.interfaces:
            return True
        name = ifname if ifname is not None else (None if port is None else port.name)
        matcher = self._interface_matcher
        return name is not None and matcher is not None and matcher.match(name) is not None

    def _protocol_passes(self, alert: PacketAlert, headers: PacketHeaders | None) -> bool:
        packet = _headers_of(alert, headers)
        numbers = self._protocol_numbers
        if numbers and (alert.proto in numbers or packet.ethertype in numbers):
            return True
        names = self._protocol_names
        if not names:
            return False
        candidates = {
            packet.l3,
            packet.l4,
            ethertype_name(packet.ethertype),
            ethertype_name(alert.proto),
        }
        if packet.vlan_ids:
            candidates.add("vlan")
        return any(candidate is not None and candidate.lower() in names for candidate in candidates)


_FILTER_OPTIONS = {
    "--reason": "reasons",
    "--exclude-reason": "exclude_reasons",
    "--location": "locations",
    "--interface": "interfaces",
    "--protocol": "protocols",
    "--origin": "origins",
}


def parse_filter_arguments(arguments: Sequence[str]) -> PacketFilter:
    """A :class:`PacketFilter` from command-line words.

    ``["--reason", "NO_SOCKET", "--exclude-reason=NOT_SPECIFIED", "--location",
    "*udp*", "--interface", "lo", "--protocol", "udp,tcp"]``: every option may
    repeat, take ``=value``, and hold a comma-separated list.  Options are
    ``--reason``, ``--exclude-reason``, ``--location``, ``--interface``,
    ``--protocol`` and ``--origin``.  Raises :class:`ValueError` for an
    unknown option, a missing value, or a bad protocol or origin.
    """
    values: dict[str, list[str]] = {name: [] for name in _FILTER_OPTIONS.values()}
    position = 0
    while position < len(arguments):
        word = arguments[position]
        option, has_value, value = word.partition("=")
        if option not in _FILTER_OPTIONS:
            raise ValueError(f"unknown filter option {word!r}")
        if not has_value:
            position += 1
            if position >= len(arguments):
                raise ValueError(f"{option} needs a value")
            value = arguments[position]
        if not value.strip():
            raise ValueError(f"{option} needs a value")
        values[_FILTER_OPTIONS[option]].append(value)
        position += 1
    return PacketFilter.from_options(**values)


# --------------------------------------------------------------------------- pcap

LINKTYPE_LINUX_SLL2 = 276
PCAP_MAGIC_NANOSECONDS = 0xA1B23C4D
PCAP_SNAPLEN = 262144
SLL2_HEADER_LEN = 20
ARPHRD_ETHER = 1
ARPHRD_LOOPBACK = 772
ARPHRD_NONE = 0xFFFE  # tun devices: no link-layer header
PACKET_HOST = 0
PACKET_BROADCAST = 1
PACKET_MULTICAST = 2
_PCAP_FILE_HEADER = struct.Struct("=IHHiIII")  # host byte order, as libpcap writes
_PCAP_RECORD_HEADER = struct.Struct("=IIII")
# protocol, reserved, ifindex, ARPHRD type, packet type, address length, address: network order
_SLL2_HEADER = struct.Struct("!HHIHBB8s")
_ZERO_MAC = bytes(6)
_MAX_U32 = 0xFFFFFFFF


def sll2_frame(alert: PacketAlert) -> bytes:
    """The packet of ``alert`` as a ``LINKTYPE_LINUX_SLL2`` frame: 20-byte header, then data.

    Ethernet payloads (see :func:`netdm.engine.headers.payload_is_ethernet`) lose
    their 14-byte Ethernet header: the EtherType goes into the protocol
    field, the source MAC into the link-layer address, broadcast/multicast
    destinations into the packet type; 802.1Q/802.1ad tags stay at the
    start of the data, as libpcap writes tagged frames in cooked captures.
    Bare layer-3 payloads keep every byte, with ``proto`` as the protocol.
    The interface index is the alert's input ifindex (0 when unknown).
    """
    payload = alert.payload or b""
    proto = alert.proto or 0
    ifindex = 0
    if alert.in_port is not None and alert.in_port.ifindex is not None:
        ifindex = alert.in_port.ifindex & _MAX_U32
    if payload_is_ethernet(alert.proto, payload):
        destination, source = payload[0:6], payload[6:12]
        protocol = (payload[12] << 8) | payload[13]
        if destination == b"\xff" * 6:
            packet_type = PACKET_BROADCAST
        elif destination[0] & 1:
            packet_type = PACKET_MULTICAST
        else:
            packet_type = PACKET_HOST
        hardware_type = (
            ARPHRD_LOOPBACK if source == _ZERO_MAC and destination == _ZERO_MAC else ARPHRD_ETHER
        )
        header = _SLL2_HEADER.pack(protocol, 0, ifindex, hardware_type, packet_type, 6, source)
        return header + payload[ETHERNET_HEADER_LEN:]
    header = _SLL2_HEADER.pack(proto & 0xFFFF, 0, ifindex, ARPHRD_NONE, PACKET_HOST, 0, b"")
    return header + payload


class PcapPacketSink:
    """``--write-packets FILE``: the dropped packets as a classic pcap file.

    Nanosecond pcap (magic ``0xa1b23c4d``) in host byte order, link type
    ``LINKTYPE_LINUX_SLL2`` (276), one record per alert: the kernel's drop
    time, :func:`sll2_frame` as data, ``caplen`` its length and ``len`` the
    packet's original length adjusted the same way (``orig_len`` minus the
    14 Ethernet bytes removed, plus the 20-byte SLL2 header).  Alerts
    without a timestamp get time 0.  Writes go to a buffered file and are
    not flushed per packet; call :meth:`flush` now and then, :meth:`close`
    at the end (or use ``with``).
    """

    def __init__(self, stream: BinaryIO, *, close_stream: bool = False) -> None:
        """Write the file header to ``stream``; ``close_stream``: :meth:`close` closes it."""
        self._stream = stream
        self._close_stream = close_stream
        self.packets_written = 0
        stream.write(
            _PCAP_FILE_HEADER.pack(
                PCAP_MAGIC_NANOSECONDS, 2, 4, 0, 0, PCAP_SNAPLEN, LINKTYPE_LINUX_SLL2
            )
        )

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> PcapPacketSink:
        """Create (or truncate) ``path`` and write the pcap file header."""
        return cls(open(path, "wb"), close_stream=True)  # noqa: SIM115 (closed by close())

    def write(self, alert: PacketAlert) -> None:
        """Append one record for ``alert``."""
        frame = sll2_frame(alert)
        captured = len(frame)
        original = captured
        if alert.orig_len is not None:
            original = max(captured, alert.orig_len + captured - len(alert.payload or b""))
        seconds, nanoseconds = divmod(alert.timestamp_ns or 0, 1_000_000_000)
        record = _PCAP_RECORD_HEADER.pack(
            min(seconds, _MAX_U32), nanoseconds, captured, min(original, _MAX_U32)
        )
        self._stream.write(record + frame)
        self.packets_written += 1

    def flush(self) -> None:
        """Hand what was written to the operating system."""
        self._stream.flush()

    def close(self) -> None:
        """Flush, and close the file when this sink opened it."""
        if self._stream.closed:
            return
        self._stream.flush()
        if self._close_stream:
            self._stream.close()

    def __enter__(self) -> PcapPacketSink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
