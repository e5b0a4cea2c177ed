"""A dropped packet as JSON: a dict for programs, and the same as one line, fast, for ``jq``.

Strategy: :func:`packet_to_json` is the definition (schema in
``docs/packet-mode.md``): every field of the alert and of its decoded
headers, strings through :func:`netdm.textsafe.replace_invalid_text` so
``json.dumps(..., ensure_ascii=True)`` always works.  ``--packets --json``
prints one line per dropped packet, so :class:`PacketJsonLines` writes that
``json.dumps`` directly instead, byte for byte, about three times faster:
the fragments that repeat in a storm are cached (everything a drop site
decides, the interface, the protocol name, the second of the timestamp,
each string's JSON form; the headers by
:class:`~netdm.output.packet_json_headers.HeaderJson`), numbers are
formatted in place, and strings go through the encoder ``json.dumps``
itself uses.  The property tests in ``tests/output/test_packets.py`` and
``tests/output/test_packet_json_fast_headers.py`` hold the line to the
``json.dumps`` of the dict over generated alerts, headers and frames.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone, tzinfo
from typing import Any, Literal

from netdm.engine.headers import (
    ARP_OPERATION_NAMES,
    PacketHeaders,
    ethertype_name,
    icmp_description,
    tcp_flags_text,
)
from netdm.engine.packet_site import (
    ORIGIN_HARDWARE,
    IfnameResolver,
    headers_of,
    interface_name,
    origin_name,
    resolve_quietly,
    software_location,
)
from netdm.engine.symbols import SymbolTable, format_address
from netdm.output.packet_json_headers import (
    FRAGMENT_CACHE_SIZE,
    FragmentCaches,
    HeaderJson,
    encode_json_string,
)
from netdm.proto.events import PacketAlert, RawAttribute
from netdm.textsafe import replace_invalid_text

__all__ = [
    "PacketJsonLines",
    "PayloadEncoding",
    "headers_to_json",
    "packet_json_line",
    "packet_json_writer",
    "packet_to_json",
]

PayloadEncoding = Literal["hex", "base64"]
_NS_PER_SECOND = 1_000_000_000
_NO_PORT_JSON = '{"ifindex":null,"name":null,"unknown_attributes":[]}'


# --------------------------------------------------------------------------- the definition


def _text(value: str | None) -> str | None:
    return None if value is None else replace_invalid_text(value)


def _attributes_json(attributes: Iterable[RawAttribute]) -> list[dict[str, Any]]:
    return [{"type": attribute.type, "data": attribute.data.hex()} for attribute in attributes]


def _iso_timestamp(timestamp_ns: int, tz: tzinfo) -> str:
    """ISO 8601 with nanoseconds and the offset: ``2020-11-16T23:26:51.123456789+00:00``."""
    seconds, fraction_ns = divmod(timestamp_ns, _NS_PER_SECOND)
    try:
        moment = datetime.fromtimestamp(seconds, tz)
    except (OverflowError, OSError, ValueError):
        return f"{seconds}.{fraction_ns:09d}"
    text = moment.isoformat(timespec="seconds")
    date_and_time, offset = text[:19], text[19:]
    return f"{date_and_time}.{fraction_ns:09d}{offset}"


def _check_payload_encoding(payload_encoding: str) -> None:
    if payload_encoding not in ("hex", "base64"):
        raise ValueError(f"payload_encoding must be 'hex' or 'base64', not {payload_encoding!r}")


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
    _check_payload_encoding(payload_encoding)
    packet = headers_of(alert, headers)
    payload = alert.payload
    location = None if alert.origin == ORIGIN_HARDWARE else software_location(alert, symbols)
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
        "origin": origin_name(alert.origin),
        "pc": None if alert.pc is None else format_address(alert.pc),
        "symbol": _text(alert.symbol),
        "function": None if location is None else _text(location.function),
        "offset": None if location is None else location.offset,
        "module": None if location is None else _text(location.module),
        "reason": _text(alert.reason),
        "in_port": {
            "ifindex": None if port is None else port.ifindex,
            "name": _text(interface_name(alert, resolve_ifname)),
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


# --------------------------------------------------------------------------- the fast line


def _number_json(value: int | None) -> str:
    return "null" if value is None else str(value)


def _quoted(ascii_text: str) -> str:
    """A string known to need no escaping (hex digits) in quotes."""
    return f'"{ascii_text}"'


def _attributes_json_text(attributes: Iterable[RawAttribute]) -> str:
    items = ",".join(
        f'{{"type":{attribute.type},"data":"{attribute.data.hex()}"}}' for attribute in attributes
    )
    return f"[{items}]"


class PacketJsonLines(FragmentCaches):
    """:func:`packet_to_json` as compact ASCII JSON text, with its caches bounded.

    Each cache maps what a fragment depends on to its text and empties
    itself when it holds ``max_entries``: a storm repeats a few sites,
    interfaces and seconds.
    """

    def __init__(self, max_entries: int = FRAGMENT_CACHE_SIZE) -> None:
        """``max_entries``: how much each cache holds before it empties itself."""
        super().__init__(max_entries)
        self.headers = HeaderJson(max_entries)
        self.kernel_texts: dict[str, str] = {}  # kernel string -> JSON of replace_invalid_text
        self.drop_sites: dict[tuple[Any, ...], tuple[str, str]] = {}
        self.in_ports: dict[tuple[Any, ...], str] = {}
        self.protos: dict[int | None, str] = {}
        self.seconds: dict[tuple[int, tzinfo], tuple[str, str]] = {}

    def caches(self) -> list[dict[Any, Any]]:
        """Every cache (the headers' too), for tests of their bounds."""
        own: list[dict[Any, Any]] = [
            self.kernel_texts,
            self.drop_sites,
            self.in_ports,
            self.protos,
            self.seconds,
        ]
        return own + self.headers.caches()

    def line(
        self,
        resolve_ifname: IfnameResolver | None,
        symbols: SymbolTable | None,
        payload_encoding: PayloadEncoding,
        tz: tzinfo,
        headers: PacketHeaders | None,
        end: str,
        alert: PacketAlert,
    ) -> str:
        """:func:`packet_json_line` of checked options, then ``end``; the alert last, for partials."""  # noqa: E501
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
            headers_json = self.headers.of_payload(proto, payload)
        else:
            headers_json = self.headers.of_headers(headers)
        site_head, site_tail = self._drop_site(alert, symbols)
        orig_len = alert.orig_len
        cookie = alert.flow_action_cookie
        unknown = alert.unknown_attributes
        return (
            f'{{"type":"packet","time":{self._time(alert.timestamp_ns, tz)},{site_head},'
            f'"in_port":{self._in_port(alert, resolve_ifname)},'
            f"{self.protos.get(proto) or self._proto(proto)},"
            f'"orig_len":{"null" if orig_len is None else orig_len},"captured_len":{payload_json},'
            f'"headers":{headers_json},{site_tail},'
            f'"flow_action_cookie":{"null" if cookie is None else _quoted(cookie.hex())},'
            f'"unknown_attributes":{_attributes_json_text(unknown) if unknown else "[]"}}}{end}'
        )

    def _kernel_text(self, text: str | None) -> str:
        """``json.dumps(_text(text))``: undecodable bytes become U+FFFD first."""
        if text is None:
            return "null"
        encoded = self.kernel_texts.get(text)
        if encoded is None:
            encoded = self.remember(
                self.kernel_texts, text, encode_json_string(replace_invalid_text(text))
            )
        return encoded

    def _time(self, timestamp_ns: int | None, tz: tzinfo) -> str:
        """The ``time`` value of :func:`_iso_timestamp` and the ``timestamp_ns`` member after it.

        The second's text is cached.  From 1,000,000,000 ns on, the nanoseconds are the last
        nine digits of ``timestamp_ns``'s decimal, which is written anyway: one conversion.
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
            parts = self.seconds.get(key)
        except TypeError:  # a tzinfo that cannot be hashed: not cached
            parts = _second_json(seconds, tz)
        if parts is None:
            parts = self.remember(self.seconds, key, _second_json(seconds, tz))
        return f'{parts[0]}{fraction}{parts[1]},"timestamp_ns":{digits}'

    def _drop_site(self, alert: PacketAlert, symbols: SymbolTable | None) -> tuple[str, str]:
        """``"origin"`` to ``"reason"``, and ``"hw_trap_group"`` and ``"hw_trap_name"``.

        Cached by drop site, unless the location comes from ``symbols`` (no symbol
        string, a pc): the table is not part of the key.
        """
        origin, pc, symbol = alert.origin, alert.pc, alert.symbol
        if origin != ORIGIN_HARDWARE and not symbol and pc is not None and symbols is not None:
            return self._drop_site_fragments(alert, symbols)
        key = (origin, pc, symbol, alert.reason, alert.hw_trap_group_name, alert.hw_trap_name)
        fragments = self.drop_sites.get(key)
        if fragments is None:
            fragments = self.remember(
                self.drop_sites, key, self._drop_site_fragments(alert, symbols)
            )
        return fragments

    def _drop_site_fragments(
        self, alert: PacketAlert, symbols: SymbolTable | None
    ) -> tuple[str, str]:
        location = None if alert.origin == ORIGIN_HARDWARE else software_location(alert, symbols)
        kernel_text, text = self._kernel_text, self.headers.json_text
        if location is None:
            where = '"function":null,"offset":null,"module":null'
        else:
            where = (
                f'"function":{kernel_text(location.function)},'
                f'"offset":{_number_json(location.offset)},'
                f'"module":{kernel_text(location.module)}'
            )
        pc = alert.pc
        head = (
            f'"origin":{text(origin_name(alert.origin))},'
            f'"pc":{"null" if pc is None else text(format_address(pc))},'
            f'"symbol":{kernel_text(alert.symbol)},{where},'
            f'"reason":{kernel_text(alert.reason)}'
        )
        tail = (
            f'"hw_trap_group":{kernel_text(alert.hw_trap_group_name)},'
            f'"hw_trap_name":{kernel_text(alert.hw_trap_name)}'
        )
        return head, tail

    def _in_port(self, alert: PacketAlert, resolve_ifname: IfnameResolver | None) -> str:
        port = alert.in_port
        if port is None:
            return _NO_PORT_JSON
        # interface_name(alert, resolve_ifname), inlined; the resolver is asked every time.
        name = port.name
        if not name:
            ifindex = port.ifindex
            name = (
                None
                if ifindex is None or resolve_ifname is None
                else resolve_quietly(resolve_ifname, ifindex)
            )
        if port.unknown_attributes:
            return self._in_port_text(port.ifindex, name, port.unknown_attributes)
        key = (port.ifindex, name)
        text = self.in_ports.get(key)
        if text is None:
            text = self.remember(self.in_ports, key, self._in_port_text(port.ifindex, name, ()))
        return text

    def _in_port_text(
        self, ifindex: int | None, name: str | None, unknown: Sequence[RawAttribute]
    ) -> str:
        return (
            f'{{"ifindex":{_number_json(ifindex)},"name":{self._kernel_text(name)},'
            f'"unknown_attributes":{_attributes_json_text(unknown)}}}'
        )

    def _proto(self, proto: int | None) -> str:
        text: str = self.remember(
            self.protos,
            proto,
            f'"proto":{_number_json(proto)},'
            f'"proto_name":{self.headers.json_text(ethertype_name(proto))}',
        )
        return text


def _second_json(seconds: int, tz: tzinfo) -> tuple[str, str]:
    """The JSON text around the nanoseconds in :func:`_iso_timestamp` of one second."""
    try:
        moment = datetime.fromtimestamp(seconds, tz)
    except (OverflowError, OSError, ValueError):
        return encode_json_string(f"{seconds}.")[:-1], '"'
    text = moment.isoformat(timespec="seconds")
    date_and_time, offset = text[:19], text[19:]
    # JSON escapes character by character, so the string may be encoded in two pieces.
    return encode_json_string(f"{date_and_time}.")[:-1], encode_json_string(offset)[1:]


# The caches of packet_json_line and of every packet_json_writer.
SHARED_LINES = PacketJsonLines()


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
    separators=(",", ":"))``, but written directly by :class:`PacketJsonLines`
    (the module docstring says how).  The headers of a common packet
    (Ethernet, IPv4 or IPv6, UDP, TCP or ICMP) are written from the payload's
    bytes without decoding them into :class:`PacketHeaders` (see
    :meth:`netdm.output.packet_json_headers.HeaderJson.of_payload`).
    """
    _check_payload_encoding(payload_encoding)
    return SHARED_LINES.line(resolve_ifname, symbols, payload_encoding, tz, headers, "", alert)


def packet_json_writer(
    *,
    resolve_ifname: IfnameResolver | None = None,
    symbols: SymbolTable | None = None,
    payload_encoding: PayloadEncoding = "hex",
    tz: tzinfo = timezone.utc,
    lines: PacketJsonLines | None = None,
) -> Callable[[PacketAlert], str]:
    """``alert -> packet_json_line(alert, ...) + "\\n"``, with these options bound once.

    What ``--packets --json`` calls for every packet: the options are checked
    once, and the function is called with positional arguments only (a
    ``functools.partial`` with keywords costs a dict per call).  ``lines``:
    whose caches to use (those of :func:`packet_json_line` by default).
    """
    _check_payload_encoding(payload_encoding)
    return functools.partial(
        PacketJsonLines.line,
        SHARED_LINES if lines is None else lines,
        resolve_ifname,
        symbols,
        payload_encoding,
        tz,
        None,
        "\n",
    )
