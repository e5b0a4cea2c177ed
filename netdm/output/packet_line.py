"""One line per dropped packet: the default output of ``netdm watch --packets``.

Strategy: a drop storm prints tens of thousands of these a second, so the
line is a join of a few columns, each cheap: kernel strings and clock
seconds repeat and their text is cached.  The layout (``docs/packet-mode.md``)::

    00:26:51.123456 __udp4_lib_rcv+0x5f7 NO_SOCKET lo(1) IPv4 UDP 127.0.0.1:40000 > 127.0.0.1:9 len 38/38

time, location, reason, interface, then what the headers say, optional
``(notes)``, and ``len captured/original``.  The first four columns never
contain a space (a space inside a kernel string prints as ``\\x20``) and a
missing value prints as ``-``, so ``awk '{print $3}'`` is always the reason.
Every string that came from the kernel or the payload goes through
:func:`netdm.textsafe.escape_for_terminal` first.
"""  # noqa: E501

from __future__ import annotations

import functools
from datetime import datetime, tzinfo
from typing import Literal

from netdm.engine.headers import (
    ARP_OPERATION_NAMES,
    ETHERTYPE_NAMES,
    PacketHeaders,
    icmp_description,
    tcp_flags_text,
)
from netdm.engine.packet_site import (
    ORIGIN_HARDWARE,
    IfnameResolver,
    headers_of,
    interface_name,
    software_location,
)
from netdm.engine.symbols import SymbolTable, format_address
from netdm.proto.events import PacketAlert
from netdm.textsafe import escape_for_terminal

__all__ = ["MISSING", "TimeFormat", "format_packet_line", "format_timestamp"]

TimeFormat = Literal["time", "datetime", "epoch"]

MISSING = "-"
_TCP_ACK = 0x10
_COLUMN_CACHE_SIZE = 4096
_CLOCK_CACHE_SIZE = 256


@functools.lru_cache(maxsize=_COLUMN_CACHE_SIZE)
def _column(text: str) -> str:
    """A kernel string as one whitespace-free column: escaped, spaces as ``\\x20``.

    Cached: a drop storm repeats the same few symbols, reasons and names.
    """
    return escape_for_terminal(text).replace(" ", "\\x20")


@functools.lru_cache(maxsize=_CLOCK_CACHE_SIZE)
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


def _location_column(alert: PacketAlert, symbols: SymbolTable | None) -> str:
    if alert.origin == ORIGIN_HARDWARE:
        name = _column(alert.hw_trap_name) if alert.hw_trap_name else MISSING
        if alert.hw_trap_group_name:
            return f"hw:{_column(alert.hw_trap_group_name)}/{name}"
        return f"hw:{name}"
    location = software_location(alert, symbols)
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
    packet = headers_of(alert, headers)
    ifname = interface_name(alert, resolve_ifname)
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
