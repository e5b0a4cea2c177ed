"""Capture bytes built by hand for the capture tests, and a NET_DM session as netdm records it.

Built with ``struct`` helpers that share no code with the reader (nor with
:mod:`netdm.capture.layouts`), so that a reader bug cannot hide in the test
data; :func:`outcome` runs a reader to its end and never raises anything but
what the tests compare.
"""

from __future__ import annotations

import io
import struct
import sys
from pathlib import Path
from typing import Any

from netdm.capture import NETLINK_GENERIC, CaptureError, CaptureReader, CaptureRecord, CaptureWriter
from netdm.capture.formats import ByteOrder, CaptureFormat
from netdm.proto import (
    DropPoint,
    FamilyInfo,
    InPort,
    PacketAlert,
    build_ack,
    build_family_reply,
    build_packet_alert,
    build_start,
    build_summary_alert,
)

FAMILY_ID = 0x1C
LE: ByteOrder = "little"
BE: ByteOrder = "big"
HOST: ByteOrder = LE if sys.byteorder == "little" else BE
T0 = 1_700_000_000_123_456_789  # an arbitrary nanosecond Unix time

# =========================================================================== hand-built bytes


def endian(order: ByteOrder) -> str:
    return "<" if order == LE else ">"


def nlmsg(order: ByteOrder, nl_type: int, flags: int, payload: bytes = b"", seq: int = 1) -> bytes:
    """A netlink message (header in ``order``) with an opaque payload."""
    payload += b"\x00" * (-len(payload) % 4)
    return struct.pack(endian(order) + "IHHII", 16 + len(payload), nl_type, flags, seq, 0) + payload


def cooked(protocol: int = NETLINK_GENERIC, pkttype: int = 4) -> bytes:
    return struct.pack(">HH10xH", pkttype, 824, protocol)


def ng_option(order: ByteOrder, code: int, value: bytes) -> bytes:
    return struct.pack(endian(order) + "HH", code, len(value)) + value + b"\x00" * (-len(value) % 4)


def ng_end(order: ByteOrder) -> bytes:
    return struct.pack(endian(order) + "HH", 0, 0)


def ng_block(
    order: ByteOrder,
    block_type: int,
    body: bytes,
    *,
    length: int | None = None,
    trailing: int | None = None,
) -> bytes:
    total = 12 + len(body)
    head = struct.pack(endian(order) + "II", block_type, total if length is None else length)
    return head + body + struct.pack(endian(order) + "I", total if trailing is None else trailing)


def ng_shb(order: ByteOrder, options: bytes = b"", major: int = 1) -> bytes:
    body = struct.pack(endian(order) + "IHHq", 0x1A2B3C4D, major, 0, -1)
    return ng_block(order, 0x0A0D0D0A, body + (options + ng_end(order) if options else b""))


def ng_idb(order: ByteOrder, linktype: int = 253, snaplen: int = 0, options: bytes = b"") -> bytes:
    body = struct.pack(endian(order) + "HHI", linktype, 0, snaplen)
    return ng_block(order, 1, body + (options + ng_end(order) if options else b""))


def ng_epb(
    order: ByteOrder,
    interface_id: int,
    ticks: int,
    packet: bytes,
    *,
    origlen: int | None = None,
    caplen: int | None = None,
    options: bytes = b"",
) -> bytes:
    body = struct.pack(
        endian(order) + "IIIII",
        interface_id,
        ticks >> 32,
        ticks & 0xFFFFFFFF,
        len(packet) if caplen is None else caplen,
        len(packet) if origlen is None else origlen,
    )
    padded = packet + b"\x00" * (-len(packet) % 4)
    return ng_block(order, 6, body + padded + (options + ng_end(order) if options else b""))


def ng_spb(order: ByteOrder, packet: bytes, origlen: int | None = None) -> bytes:
    body = struct.pack(endian(order) + "I", len(packet) if origlen is None else origlen)
    return ng_block(order, 3, body + packet + b"\x00" * (-len(packet) % 4))


def ng_pb(
    order: ByteOrder, interface_id: int, ticks: int, packet: bytes, options: bytes = b""
) -> bytes:
    body = struct.pack(
        endian(order) + "HHIIII",
        interface_id,
        0,
        ticks >> 32,
        ticks & 0xFFFFFFFF,
        len(packet),
        len(packet),
    )
    padded = packet + b"\x00" * (-len(packet) % 4)
    return ng_block(order, 2, body + padded + (options + ng_end(order) if options else b""))


def pcap_header(
    order: ByteOrder,
    *,
    magic: int = 0xA1B2C3D4,
    snaplen: int = 65535,
    linktype: int = 253,
    major: int = 2,
) -> bytes:
    return struct.pack(endian(order) + "IHHiIII", magic, major, 4, 0, 0, snaplen, linktype)


def pcap_record(
    order: ByteOrder,
    seconds: int,
    fraction: int,
    packet: bytes,
    *,
    origlen: int | None = None,
    caplen: int | None = None,
) -> bytes:
    head = struct.pack(
        endian(order) + "IIII",
        seconds,
        fraction,
        len(packet) if caplen is None else caplen,
        len(packet) if origlen is None else origlen,
    )
    return head + packet


# =========================================================================== traffic


def net_dm_traffic() -> list[tuple[bytes, bool]]:
    """A monitoring session as netdm records it: (datagram, sent by netdm)."""
    start = build_start(FAMILY_ID, seq=2)
    family = FamilyInfo(
        seq=1,
        family_id=FAMILY_ID,
        name="NET_DM",
        version=2,
        hdrsize=0,
        maxattr=23,
        ops=(1, 2, 3, 4, 5, 6, 7),
        mcast_groups={"events": 1},
    )
    alert = PacketAlert(
        origin=0,
        pc=0xFFFFFFFF81A2C3EA,
        symbol="__udp4_lib_rcv+0x1ea",
        reason="NO_SOCKET",
        in_port=InPort(ifindex=1, name="lo"),
        timestamp_ns=T0 - 5_000,
        proto=0x0800,
        payload=bytes.fromhex("450000200001000040110000") + bytes(20),
        orig_len=128,
    )
    return [
        (build_family_reply(family), False),
        (start, True),
        (build_ack(seq=2, port_id=4242, request=start), False),
        (build_summary_alert(FAMILY_ID, [DropPoint(pc=0xFFFFFFFF81A2C3EA, count=3)]), False),
        (build_packet_alert(FAMILY_ID, alert, pad_u64=True), False),
    ]


def write_capture(path: Path, fmt: CaptureFormat, **extra: Any) -> list[tuple[bytes, bool]]:
    traffic = net_dm_traffic()
    with CaptureWriter.open(
        path,
        format=fmt,
        kernel_release="6.1.0-test-amd64",
        hostname="testhost",
        hardware="x86_64",
        **extra,
    ) as writer:
        for index, (datagram, outgoing) in enumerate(traffic):
            writer.write(datagram, T0 + index * 1_000_001, outgoing=outgoing)
        writer.write_symbols(["ffffffff81a2c3ea t __udp4_lib_rcv"])
    return traffic


def outcome(
    source: bytes, *, keep_going: bool = False, fast: bool = True
) -> tuple[list[CaptureRecord], str | None, int]:
    """(records, error sentence or None, bad_records), never raising anything else."""
    records: list[CaptureRecord] = []
    try:
        reader = CaptureReader(io.BytesIO(source), keep_going=keep_going, _fast=fast)
    except CaptureError as error:
        return records, str(error), 0
    try:
        for record in reader:
            records.append(record)
    except CaptureError as error:
        return records, str(error), reader.bad_records
    return records, None, reader.bad_records


# =========================================================================== round trips
