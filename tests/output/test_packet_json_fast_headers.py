"""The JSON line's headers written straight from the payload, proven equal to the general way.

Strategy: for the common packets of a storm (Ethernet, IPv4 without options or
IPv6 without extension headers, then a whole UDP, TCP, ICMP or ICMPv6 header)
``HeaderJson.of_payload`` (``netdm.output.packet_json_headers``) reads the
payload with one ``struct`` unpack and writes the headers' JSON from a cache
keyed by the bytes the link and layer-3 fields are made of, without building a
``PacketHeaders``.  Its
contract: exactly ``json.dumps(headers_to_json(describe_packet(proto,
payload)))``, for any ``proto`` and payload.  So the tests generate frames on
the fast path and just beside it (another IHL or version, a fragment bit, a
header cut short, a bad TCP data offset, an EtherType or ``proto`` that does
not match), from small pools of MACs, addresses and TTLs so that look-alikes
hit the cache, and compare every answer, the first and the cached one, with
that reference.  Real storm packets have each byte changed after they were
cached, and the caches are run past their bounds.

Then the rest of the per-packet path that was made faster with it: the time
fragment (``timestamp_ns`` converted once), ``packet_json_writer`` (what
``PacketPrinter`` calls: the line and its newline), and
``IntervalAggregator.add_packet`` building the drop site without ``DropSite.of``.
"""

from __future__ import annotations

import io
import json
import struct
from dataclasses import replace
from datetime import timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from netdm.engine.aggregate import IntervalAggregator
from netdm.engine.headers import describe_packet
from netdm.engine.symbols import SymbolTable
from netdm.output import packet_json, packet_json_headers
from netdm.output.packet_json_headers import HeaderJson
from netdm.output.packets import headers_to_json, packet_json_line, packet_json_writer
from netdm.output.render import PacketPrinter
from netdm.proto.decode import DropSite
from netdm.proto.events import PacketAlert
from tests.engine.construct_oracle import check_with_construct
from tests.engine.test_headers import frames as general_frames
from tests.engine.test_headers import tcp_headers
from tests.output.test_packets import (
    SYMBOLS,
    UDP_ALERT,
    alerts,
    reference_json_line,
    software_alert,
)


def _budget(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def reference_headers_json(proto: int | None, payload: bytes | None) -> str:
    """What the line's ``"headers"`` value is defined as."""
    headers = describe_packet(proto, payload or b"")
    return json.dumps(headers_to_json(headers), ensure_ascii=True, separators=(",", ":"))


# The header writer of packet_json_line and of every packet_json_writer.
SHARED = packet_json.SHARED_LINES.headers


def assert_fast_equal(
    proto: int | None, payload: bytes | None, fast: HeaderJson = SHARED
) -> None:
    expected = reference_headers_json(proto, payload)
    assert fast.of_payload(proto, payload) == expected, (proto, payload)
    assert fast.of_payload(proto, payload) == expected  # again, from the caches


# --------------------------------------------------------------------------- frames

# Small pools: frames that share them share a cache entry, and differ in the rest.
_MACS = [bytes(12), bytes.fromhex("020000000002020000000001"), bytes.fromhex("ffffffffffff") * 2]
_IPV4_ADDRESSES = [bytes.fromhex("7f0000017f000001"), bytes.fromhex("c0000201c6336407")]
_IPV6_ADDRESSES = [
    bytes(15) + b"\x01" + bytes(15) + b"\x01",  # ::1 to ::1
    bytes.fromhex("20010db8000000000000000000000001") * 2,
    bytes(10) + b"\xff\xff\x7f\x00\x00\x01" + bytes(16),  # IPv4-mapped: ipaddress's text
]
_TTLS = [64, 1, 255]
u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
rarely = st.integers(0, 9).map(lambda roll: roll == 0)  # one time in ten: a step aside


@st.composite
def usually(draw: st.DrawFn, value: Any, otherwise: st.SearchStrategy[Any]) -> Any:
    """``value``, or one time in ten something from ``otherwise``."""
    return draw(otherwise) if draw(rarely) else value


@st.composite
def pooled(draw: st.DrawFn, pool: list[Any], otherwise: st.SearchStrategy[Any]) -> Any:
    """One of a few values (a storm's repeats), or one time in ten something else."""
    return draw(otherwise) if draw(rarely) else draw(st.sampled_from(pool))


@st.composite
def transport(draw: st.DrawFn, protocol: int) -> bytes:
    """The header of ``protocol`` (rarely noise), then some data."""
    if draw(rarely):
        header = draw(st.binary(max_size=24))
    elif protocol == 6:
        header = draw(tcp_headers())
    elif protocol in (1, 58):
        icmp_type = draw(st.one_of(st.sampled_from([0, 3, 8, 11, 128, 129, 135]), u8))
        header = bytes([icmp_type, draw(st.sampled_from([0, 1, 3, 4]))]) + draw(
            st.binary(min_size=2, max_size=2)
        )
    else:
        header = draw(st.binary(min_size=8, max_size=24))
    return header + draw(st.binary(max_size=8))


@st.composite
def ipv4_packets(draw: st.DrawFn) -> bytes:
    ihl_byte = draw(usually(0x45, st.one_of(st.sampled_from([0x46, 0x44, 0x55, 0x35, 0x4F]), u8)))
    options_size = 4 * max((ihl_byte & 0xF) - 5, 0)
    options = draw(st.binary(min_size=options_size, max_size=options_size))
    fragment = draw(
        st.one_of(
            st.sampled_from([0, 0x4000]),  # DF: still not a fragment
            usually(0x8000, st.sampled_from([0x2000, 0x0001, 0x1FFF, 0x6001, 0xC000])),
            usually(0, u16),
        )
    )
    protocol = draw(pooled([17, 6, 1, 58], st.one_of(st.sampled_from([0, 43, 44, 47]), u8)))
    addresses = draw(pooled(_IPV4_ADDRESSES, st.binary(min_size=8, max_size=8)))
    fixed = struct.pack(
        "!BBHHHBBH8s", ihl_byte, draw(u8), draw(u16), draw(u16), fragment,
        draw(pooled(_TTLS, u8)), protocol, draw(u16), addresses,
    )  # fmt: skip
    return fixed + options + draw(transport(protocol))


@st.composite
def ipv6_packets(draw: st.DrawFn) -> bytes:
    version = draw(usually(6, st.integers(0, 15)))
    first_word = (version << 28) | draw(st.integers(0, 0xFFFFFFF))
    protocol = draw(pooled([17, 6, 1, 58], st.one_of(st.sampled_from([0, 43, 44, 60]), u8)))
    addresses = draw(pooled(_IPV6_ADDRESSES, st.binary(min_size=32, max_size=32)))
    fixed = struct.pack(
        "!IHBB32s", first_word, draw(u16), protocol, draw(pooled(_TTLS, u8)), addresses
    )
    return fixed + draw(transport(protocol))


@st.composite
def storm_frames(draw: st.DrawFn) -> tuple[int | None, bytes | None]:
    """``(proto, payload)``: about half on the fast path, the rest a step or two beside it."""
    kind = draw(st.sampled_from(["ipv4", "ipv6"]))
    ethertype = 0x0800 if kind == "ipv4" else 0x86DD
    packet = draw(ipv4_packets() if kind == "ipv4" else ipv6_packets())
    outer = draw(usually(ethertype, st.one_of(st.sampled_from([0x0800, 0x86DD, 0x8100]), u16)))
    frame = draw(pooled(_MACS, st.binary(min_size=12, max_size=12))) + outer.to_bytes(2, "big")
    frame += packet
    if draw(rarely):
        frame = frame[: draw(st.integers(0, len(frame)))]
    proto = draw(usually(ethertype, st.sampled_from([None, 0, 0x0800, 0x86DD, 0x8100, 0x0806])))
    return proto, None if draw(rarely) and draw(rarely) else frame


@_budget(1000)
@given(storm_frames())
@example((0x0800, None))
@example((0x0800, b""))
def test_fast_headers_are_the_general_headers(frame: tuple[int | None, bytes | None]) -> None:
    assert_fast_equal(*frame)


@_budget(300)
@given(general_frames())
def test_fast_headers_of_every_kind_of_frame(frame: tuple[int | None, bytes]) -> None:
    """test_headers.py's frames: VLANs, options, extension headers, ARP, bare layer 3."""
    assert_fast_equal(*frame)


@_budget(200)
@given(storm_frames(), st.sampled_from(["hex", "base64"]))
def test_json_line_with_fast_headers_is_json_dumps(
    frame: tuple[int | None, bytes | None], encoding: str
) -> None:
    proto, payload = frame
    alert = replace(UDP_ALERT, proto=proto, payload=payload, orig_len=len(payload or b""))
    expected = reference_json_line(alert, payload_encoding=encoding)
    assert packet_json_line(alert, payload_encoding=encoding) == expected  # type: ignore[arg-type]
    # The headers the decoder itself builds agree with construct parsing of the payload.
    check_with_construct(proto, payload or b"", describe_packet(proto, payload or b""))


# --------------------------------------------------------------------------- real storm packets

# From the storm capture (a 6.1 kernel's loopback drops), and frames of the other protocols.
STORM_FRAMES = {
    "ipv4-udp": (
        0x0800,
        "0000000000000000000000000800450000804c9840004011f61c7f0000017f000001"
        "9d570009006cfe7f000102030405060708090a0b0c0d0e0f101112131415",
    ),
    "ipv6-udp": (
        0x86DD,
        "00000000000000000000000086dd600afd28006c1140"
        "0000000000000000000000000000000100000000000000000000000000000001"
        "ee360009006c007f0001",
    ),
    "ipv6-icmpv6": (
        0x86DD,
        "00000000000000000000000086dd60069274009c3a40"
        "0000000000000000000000000000000100000000000000000000000000000001"
        "010409ce00000000600a",
    ),
    "ipv4-tcp-options": (
        0x0800,
        "02000000000202000000000108004500003c1c4640004006f06ac0a80001c0a80002"
        "d4310050000003e8000000007012faf0fe3000000204021804020101",
    ),
    "ipv4-icmp": (
        0x0800,
        "00000000000000000000000008004500002000004000400100007f0000017f000002"
        "0800f7fe0001000170696e67",
    ),
    "ipv6-tcp": (
        0x86DD,
        "02000000000202000000000186dd6000000000140640"
        "fe800000000000000000000000000001fe800000000000000000000000000002"
        "c35000160000000100000000501000ff00000000",
    ),
}
_L4_OFFSET = {0x0800: 34, 0x86DD: 54}
_TTL_OFFSET = {0x0800: 22, 0x86DD: 21}


@pytest.mark.parametrize("name", sorted(STORM_FRAMES))
def test_each_byte_of_a_storm_packet_changed_after_caching(name: str) -> None:
    """A look-alike differs from a cached packet in one byte: in a key, a value, a check."""
    proto, text = STORM_FRAMES[name]
    frame = bytes.fromhex(text)
    assert SHARED.of_payload(proto, frame) == reference_headers_json(proto, frame)
    for index in range(len(frame)):
        for value in {0, 1, 0x45, 0x80, 0xFF, frame[index] ^ 0x01, frame[index] ^ 0x10}:
            changed = frame[:index] + bytes([value]) + frame[index + 1 :]
            assert_fast_equal(proto, changed)
            assert_fast_equal(proto, frame)  # the original, cached again in between
    for length in range(len(frame) + 1):
        assert_fast_equal(proto, frame[:length])
    for other in (None, 0, 0x0800, 0x86DD, 0x0806, 0x8100, proto + 1):
        assert_fast_equal(other, frame)


def test_storm_frames_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path is taken for what it is for (the general one would give the same text)."""

    def no_general_path(*_args: object) -> object:
        raise AssertionError("general path taken")

    for proto, text in STORM_FRAMES.values():
        frame = bytes.fromhex(text)
        SHARED.of_payload(proto, frame)  # cached
        with monkeypatch.context() as patch:
            patch.setattr(packet_json_headers, "describe_packet", no_general_path)
            assert SHARED.of_payload(proto, frame) == reference_headers_json(proto, frame)


def test_fast_header_caches_stay_bounded_and_right() -> None:
    small = HeaderJson(max_entries=16)
    caches = [small.fast_heads, small.icmp_tails, small.tcp_flags, small.heads, small.texts]
    for index in range(200):
        for proto, text in STORM_FRAMES.values():
            frame = bytearray.fromhex(text)
            l4 = _L4_OFFSET[proto]
            frame[_TTL_OFFSET[proto]] = index % 256  # a new head
            frame[l4 - 1] = index // 3 % 256  # the destination address: a new head
            frame[l4] = index % 256  # the ICMP type (a new tail), or a port
            if l4 + 13 < len(frame):
                frame[l4 + 13] = index % 256  # the TCP flags, or data
            assert_fast_equal(proto, bytes(frame), small)
        assert all(len(cache) <= 16 for cache in caches)


# --------------------------------------------------------------------------- the rest of the line

time_stamps = st.one_of(
    st.none(),
    st.integers(0, 2**64 - 1),
    st.integers(-(10**12), 10**12),
    st.integers(999_999_990, 1_000_000_010),
)
time_zones = st.sampled_from(
    [timezone.utc, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-3), "x")]
)


@_budget(400)
@given(time_stamps, time_zones)
@example(0, timezone.utc)
@example(999_999_999, timezone.utc)
@example(1_000_000_000, timezone.utc)
@example(-1, timezone.utc)
@example(-1_000_000_000, timezone.utc)
@example(2**64 - 1, timezone.utc)
def test_time_and_timestamp_written_once(timestamp_ns: int | None, tz: timezone) -> None:
    alert = software_alert(b"", 0x0800, timestamp_ns=timestamp_ns)
    expected = reference_json_line(alert, tz=tz)
    assert packet_json_line(alert, tz=tz) == expected
    assert packet_json_line(alert, tz=tz) == expected


@_budget(150)
@given(
    st.lists(alerts, min_size=1, max_size=4),
    st.sampled_from(["hex", "base64"]),
    st.sampled_from([SymbolTable.from_kallsyms_text(""), SYMBOLS]),
)
def test_writer_and_printer_write_the_json_line_and_a_newline(
    batch: list[PacketAlert], encoding: Any, symbols: Any
) -> None:
    def resolve(ifindex: int) -> str | None:
        return {1: "lo", 7: "eth\x1b"}.get(ifindex)

    options: dict[str, Any] = {
        "resolve_ifname": resolve,
        "symbols": symbols,
        "payload_encoding": encoding,
    }
    expected = "".join(reference_json_line(alert, **options) + "\n" for alert in batch)
    write = packet_json_writer(**options)
    assert "".join(write(alert) for alert in batch) == expected
    out = io.StringIO()
    printer = PacketPrinter(
        out, symbols, json_lines=True, payload_encoding=encoding, resolve_ifname=resolve
    )
    for alert in batch:
        printer.packet(alert)
    assert out.getvalue() == expected


def test_writer_checks_the_payload_encoding_once() -> None:
    with pytest.raises(ValueError, match="payload_encoding"):
        packet_json_writer(payload_encoding="raw")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- counting


@_budget(100)
@given(st.lists(alerts, min_size=1, max_size=8), st.lists(st.floats(0, 12), min_size=8, max_size=8))
def test_add_packet_counts_each_packet_under_its_drop_site(
    batch: list[PacketAlert], times: list[float]
) -> None:
    """add_packet builds the DropSite itself: the same site, counted as add_drop_site does."""
    by_packet = IntervalAggregator(interval=5.0, start=0.0)
    by_site = IntervalAggregator(interval=5.0, start=0.0)
    closed_by_packet: list[Any] = []
    closed_by_site: list[Any] = []
    for alert, now in zip(batch, sorted(times)[: len(batch)], strict=True):
        closed_by_packet.extend(by_packet.add_packet(alert, now))
        closed_by_site.extend(by_site.add_drop_site(DropSite.of(alert), now))
        sites = by_packet._sites
        assert sites == by_site._sites
        assert all(type(site) is DropSite for site in sites)
        assert [tuple(site) for site in sites] == [tuple(site) for site in by_site._sites]
        assert [site._asdict() for site in sites] == [site._asdict() for site in by_site._sites]
    assert closed_by_packet == closed_by_site
    assert by_packet.flush(13.0) == by_site.flush(13.0)
