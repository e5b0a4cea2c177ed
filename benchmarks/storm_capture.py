"""A drop storm on file: a large packet-mode capture grown from real recorded messages.

Strategy: ``captures/packet-udp-loopback.pcapng`` holds 21 PACKET_ALERT
datagrams from a 6.1 kernel.  They are decoded with :mod:`netdm.proto`, their
attributes varied (the pc among the real drop sites, with its symbol; the
reason; the input ifindex; IP id and UDP ports in the payload) and rebuilt
with :func:`netdm.proto.encode.build_packet_alert`, i.e. by the construct
definitions, into a pool of templates.  Building a million messages with
construct would take minutes, so each message of the storm is a template
with only its 8-byte ``NET_DM_ATTR_TIMESTAMP`` value replaced; everything
else is byte for byte what construct built.

The capture is laid out like the real one: its opening records (nlctrl
family request and reply, CONFIG_GET, CONFIG, START and their acks), then the
alerts about 20 µs apart, with the STATS_GET exchange of the real run once a
second, then its closing records (STOP, CONFIG restore).  The kernel symbols
of the real capture are copied too, so replays name functions.
"""

from __future__ import annotations

import dataclasses
import random
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from netdm.capture import CaptureRecord, CaptureWriter, read_capture, read_symbols
from netdm.engine.session import find_family_id
from netdm.proto import PacketAlert, StatsReply, decode_datagram
from netdm.proto.encode import build_packet_alert

REPO = Path(__file__).resolve().parent.parent
REAL_CAPTURE = REPO / "captures" / "packet-udp-loopback.pcapng"

ALERT_SPACING_NS = 20_000  # one alert every ~20 µs: 50,000 a second
JITTER_NS = 4_000  # so that timestamps are not a perfect ramp
KERNEL_TO_RECORD_NS = 35_000  # the kernel stamps the drop; netdm receives it a little later
STATS_EVERY_NS = 1_000_000_000  # packet mode polls STATS_GET once a second
TEMPLATES = 256
# With whole packets (trunc_len 0) every length from a minimal frame to the MTU comes by:
# enough templates that their shapes outnumber what DropSiteScanner remembers.
WHOLE_PACKET_TEMPLATES = 2048
WHOLE_PACKET_LENGTHS = (60, 1514)
TIMESTAMP_SENTINEL = 0x5EED_0000_0000_5EED  # found and replaced in each built template

# Drop reasons a 6.1 kernel reports for these functions (include/net/dropreason.h).
OTHER_REASONS = ("NOT_SPECIFIED", "UDP_CSUM", "SOCKET_RCVBUFF", "PKT_TOO_SMALL", "IP_CSUM")
IFINDEXES = (1, 1, 1, 2, 3, 7)
_U64 = struct.Struct("<Q")


@dataclass(frozen=True)
class RealRecords:
    """What the storm is grown from: the real capture, sorted into its parts."""

    family_id: int
    opening: list[CaptureRecord]  # up to the first alert: nlctrl, CONFIG, START, acks
    stats_exchange: list[CaptureRecord]  # STATS_GET, STATS_NEW, ack
    closing: list[CaptureRecord]  # after the last stats exchange: STOP, CONFIG restore
    alerts: list[PacketAlert]
    symbols: str


@dataclass(frozen=True)
class StormInfo:
    """What was written."""

    path: Path
    alerts: int
    records: int
    size_bytes: int
    templates: int
    first_ns: int
    last_ns: int


def load_real_records(path: Path = REAL_CAPTURE) -> RealRecords:
    """The real capture's records, sorted into opening, alerts, stats exchange and closing."""
    with read_capture(path) as reader:
        family_id, _ = find_family_id(reader)
    with read_capture(path) as reader:
        records = list(reader)
    alert_indexes: list[int] = []
    stats_indexes: list[int] = []
    alerts: list[PacketAlert] = []
    for index, record in enumerate(records):
        for event in decode_datagram(record.data, family_id):
            if isinstance(event, PacketAlert):
                alert_indexes.append(index)
                alerts.append(event)
            elif isinstance(event, StatsReply):
                stats_indexes.append(index)
    if not alerts or not stats_indexes:
        raise ValueError(f"{path}: expected packet alerts and STATS_NEW replies")
    first_stats, last_stats = stats_indexes[0], stats_indexes[-1]
    return RealRecords(
        family_id=family_id,
        opening=records[: alert_indexes[0]],
        stats_exchange=records[first_stats - 1 : first_stats + 2],
        closing=records[last_stats + 2 :],
        alerts=alerts,
        symbols=read_symbols(path),
    )


def _varied_payload(payload: bytes, rng: random.Random) -> bytes:
    """The real packet with another IP id and UDP ports (IPv4/IPv6 over Ethernet only)."""
    varied = bytearray(payload)
    ethertype = payload[12:14]
    if ethertype == b"\x08\x00" and len(payload) >= 38 and payload[23] == 17:  # IPv4, UDP
        varied[18:20] = rng.randrange(1 << 16).to_bytes(2, "big")  # IP id
        udp = 14 + (payload[14] & 0x0F) * 4
    elif ethertype == b"\x86\xdd" and len(payload) >= 58 and payload[20] == 17:  # IPv6, UDP
        udp = 54
    else:
        return payload
    varied[udp : udp + 2] = rng.randrange(32768, 61000).to_bytes(2, "big")  # source port
    if rng.random() < 0.3:
        varied[udp + 2 : udp + 4] = rng.choice((9, 53, 123, 161, 514)).to_bytes(2, "big")
    return bytes(varied)


def _template_alerts(
    real: Sequence[PacketAlert], count: int, seed: int, *, whole_packets: bool = False
) -> list[PacketAlert]:
    """``count`` variations of the real alerts (pc and symbol stay paired, as the kernel's).

    ``whole_packets``: as with trunc_len 0, the packet is all there, of any length.
    """
    rng = random.Random(seed)
    variants = []
    for _ in range(count):
        alert = rng.choice(real)
        reason = alert.reason if rng.random() < 0.8 else rng.choice(OTHER_REASONS)
        in_port = alert.in_port
        if in_port is not None:
            in_port = dataclasses.replace(in_port, ifindex=rng.choice(IFINDEXES))
        payload = None if alert.payload is None else _varied_payload(alert.payload, rng)
        orig_len = alert.orig_len
        if whole_packets and payload is not None:
            length = rng.randint(*WHOLE_PACKET_LENGTHS)
            payload = (payload + bytes(length))[:length]
            orig_len = length
        variants.append(
            dataclasses.replace(
                alert,
                reason=reason,
                in_port=in_port,
                payload=payload,
                orig_len=orig_len,
                timestamp_ns=TIMESTAMP_SENTINEL,
            )
        )
    return variants


def _templates(family_id: int, alerts: Sequence[PacketAlert]) -> list[tuple[bytes, int]]:
    """Each alert built by the construct definitions, and where its timestamp value sits."""
    sentinel = _U64.pack(TIMESTAMP_SENTINEL)
    built = []
    for alert in alerts:
        datagram = build_packet_alert(family_id, alert)
        at = datagram.find(sentinel)
        if at < 0 or datagram.find(sentinel, at + 1) >= 0:
            raise ValueError("cannot locate the timestamp in a built alert")
        built.append((datagram, at))
    return built


def write_storm(
    path: Path,
    alerts: int,
    *,
    seed: int = 1,
    real: RealRecords | None = None,
    whole_packets: bool = False,
) -> StormInfo:
    """Write a capture of ``alerts`` packet alerts to ``path``; see the module docstring.

    ``whole_packets``: every packet whole and of its own length (as with
    trunc_len 0), from :data:`WHOLE_PACKET_TEMPLATES` templates chosen evenly.
    """
    real = real or load_real_records()
    count = WHOLE_PACKET_TEMPLATES if whole_packets else TEMPLATES
    variants = _template_alerts(real.alerts, count, seed, whole_packets=whole_packets)
    templates = _templates(real.family_id, variants)
    rng = random.Random(seed + 1)
    # Most of a storm is one or two sites: weight the templates unevenly (Zipf-like).
    weights = [1.0 if whole_packets else 1.0 / (rank + 1) for rank in range(len(templates))]
    choices = rng.choices(range(len(templates)), weights, k=alerts)
    start_ns = real.opening[0].timestamp_ns
    records = 0
    with CaptureWriter.open(
        path, kernel_release="6.1.0-56-amd64", hostname="netdm-bench", application="netdm bench"
    ) as writer:
        for record in real.opening:  # as recorded, with their own spacing
            writer.write(record.data, record.timestamp_ns, outgoing=bool(record.outgoing))
            records += 1
        now_ns = real.opening[-1].timestamp_ns
        next_stats_ns = now_ns + STATS_EVERY_NS
        pack_timestamp = _U64.pack
        write = writer.write
        for choice in choices:
            now_ns += ALERT_SPACING_NS + rng.randrange(-JITTER_NS, JITTER_NS)
            if now_ns >= next_stats_ns:
                for offset_ns, record in enumerate(real.stats_exchange):
                    write(record.data, now_ns + offset_ns * 500, outgoing=bool(record.outgoing))
                records += len(real.stats_exchange)
                next_stats_ns += STATS_EVERY_NS
            datagram, at = templates[choice]
            stamp = pack_timestamp(now_ns - KERNEL_TO_RECORD_NS)
            write(datagram[:at] + stamp + datagram[at + 8 :], now_ns, outgoing=False)
        records += alerts
        end_ns = now_ns + 1_000_000
        for record in real.closing:  # stamped with the end, as netdm does (session.py)
            writer.write(record.data, end_ns, outgoing=bool(record.outgoing))
            records += 1
        writer.write_symbols(real.symbols.splitlines())
    return StormInfo(
        path=path,
        alerts=alerts,
        records=records,
        size_bytes=path.stat().st_size,
        templates=len(templates),
        first_ns=start_ns,
        last_ns=end_ns,
    )
