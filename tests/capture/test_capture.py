"""The capture layer: pcap/pcapng round trips, foreign files, damage, and Wireshark.

Test files are built here: netdm's own with :class:`CaptureWriter`, everything
else (big-endian files, other writers' layouts, damage) by hand with the
``struct`` helpers of ``capture_bytes``, which do not share code with the
reader.  The construct definitions and the proof that the reader agrees with
them are in ``test_capture_definitions.py``.  The invariant the property
tests state: a reader either returns records, or returns records and then
raises :class:`CaptureError`, never anything else, and the fast path and the
general (reference) path agree on every input.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from capture_bytes import (
    BE,
    FAMILY_ID,
    HOST,
    LE,
    T0,
    cooked,
    net_dm_traffic,
    ng_block,
    ng_end,
    ng_epb,
    ng_idb,
    ng_option,
    ng_pb,
    ng_shb,
    ng_spb,
    nlmsg,
    outcome,
    pcap_header,
    pcap_record,
    write_capture,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netdm.capture import (
    NETLINK_GENERIC,
    CaptureError,
    CaptureReader,
    CaptureRecord,
    CaptureWriter,
    read_capture,
    read_symbols,
)
from netdm.capture.formats import ByteOrder, CaptureFormat

# =========================================================================== round trips


@pytest.mark.parametrize("fmt", ["pcapng", "pcap"])
def test_round_trip_keeps_bytes_nanoseconds_and_direction(
    tmp_path: Path, fmt: CaptureFormat
) -> None:
    path = tmp_path / f"watch.{fmt}"
    traffic = write_capture(path, fmt)
    with read_capture(path) as reader:
        records = list(reader)
    assert [record.data for record in records] == [datagram for datagram, _ in traffic]
    assert [record.outgoing for record in records] == [outgoing for _, outgoing in traffic]
    assert [record.timestamp_ns for record in records] == [
        T0 + index * 1_000_001 for index in range(len(traffic))
    ]
    assert {record.protocol for record in records} == {NETLINK_GENERIC}
    assert [record.original_length for record in records] == [len(d) for d, _ in traffic]
    assert not any(record.truncated for record in records)
    assert reader.bad_records == 0
    assert reader.symbols == "ffffffff81a2c3ea t __udp4_lib_rcv\n"


def test_pcapng_metadata(tmp_path: Path) -> None:
    path = tmp_path / "watch.pcapng"
    write_capture(path, "pcapng", application="netdm 9.9")
    with read_capture(path) as reader:
        info = reader.info
        assert (info.format, info.version, info.linktype) == ("pcapng", (1, 0), 253)
        assert info.byte_order == HOST
        [section] = info.sections
        assert section.application == "netdm 9.9"
        assert section.os == "Linux 6.1.0-test-amd64"
        assert section.kernel_release == "6.1.0-test-amd64"
        assert section.hardware == "x86_64"
        assert section.hostname == "testhost"
        [interface] = section.interfaces
        assert (interface.linktype, interface.snaplen, interface.tsresol) == (253, 262144, 9)
        assert interface.ticks_per_second == 1_000_000_000


def test_pcap_metadata(tmp_path: Path) -> None:
    path = tmp_path / "watch.pcap"
    write_capture(path, "pcap")
    with read_capture(path) as reader:
        info = reader.info
        assert (info.format, info.version, info.linktype, info.snaplen) == (
            "pcap",
            (2, 4),
            253,
            262144,
        )
        assert info.ticks_per_second == 1_000_000_000
        assert info.sections == []


def test_writer_defaults_come_from_uname(tmp_path: Path) -> None:
    path = tmp_path / "default.pcapng"
    with CaptureWriter.open(path) as writer:
        writer.write(b"", 0, outgoing=False)
    section = read_capture(path).info.sections[0]
    assert section.kernel_release == os.uname().release
    assert section.hostname == os.uname().nodename
    assert section.application is not None and section.application.startswith("netdm ")


def test_writer_to_a_stream_and_reader_from_short_reads() -> None:
    class Trickle(io.RawIOBase):
        """A pipe-like stream: at most 7 bytes per read."""

        def __init__(self, data: bytes) -> None:
            self._data = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            return self._data.read(min(size, 7) if size >= 0 else 7)

    sink = io.BytesIO()
    writer = CaptureWriter(sink, kernel_release="6.1", hostname="h")
    for index, (datagram, outgoing) in enumerate(net_dm_traffic()):
        writer.write(datagram, T0 + index, outgoing=outgoing)
    writer.write_symbols(["ffffffff81000000 T _stext"])
    writer.close()
    whole = list(read_capture(io.BytesIO(sink.getvalue())))
    trickled = read_capture(Trickle(sink.getvalue()))  # type: ignore[arg-type]
    assert list(trickled) == whole
    assert trickled.path == "<stream>"
    assert trickled.symbols == "ffffffff81000000 T _stext\n"


def test_writer_cuts_oversized_datagrams_at_the_snapshot_length(tmp_path: Path) -> None:
    path = tmp_path / "big.pcapng"
    huge = nlmsg(LE, FAMILY_ID, 0, bytes(300_000))
    with CaptureWriter.open(path, hostname="h", kernel_release="r") as writer:
        writer.write(huge, T0, outgoing=False)
    [record] = read_capture(path)
    assert len(record.data) == 262144 - 16
    assert record.original_length == len(huge)
    assert record.truncated


def test_writer_rejects_misuse(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown capture format"):
        CaptureWriter.open(tmp_path / "x", format="erf")  # type: ignore[arg-type]
    writer = CaptureWriter(io.BytesIO(), format="pcap", hostname="h", kernel_release="r")
    with pytest.raises(ValueError, match="timestamp_ns must not be negative"):
        writer.write(b"", -1, outgoing=False)
    with pytest.raises(ValueError, match="beyond classic pcap"):
        writer.write(b"", 2**32 * 10**9, outgoing=False)
    with pytest.raises(ValueError, match="no place for symbols"):
        writer.write_symbols(["ffffffff81000000 T _stext"])
    writer.close()
    writer.close()
    assert writer.closed
    with pytest.raises(ValueError, match="closed"):
        writer.write(b"", 0, outgoing=False)


def test_flush_makes_records_readable_before_close(tmp_path: Path) -> None:
    path = tmp_path / "live.pcapng"
    writer = CaptureWriter.open(path, hostname="h", kernel_release="r")
    for index in range(3):
        writer.write(nlmsg(LE, FAMILY_ID, 0, b"abcd"), T0 + index, outgoing=False)
    writer.flush(sync=True)
    # What a SIGKILL right now would leave: every record so far, nothing else needed.
    assert len(list(read_capture(path))) == 3
    writer.close()


# =========================================================================== symbols


def test_pcapng_symbols_blocks_concatenate_and_read_up_front(tmp_path: Path) -> None:
    path = tmp_path / "symbols.pcapng"
    many = [
        f"ffffffffc0{index:06x} t function_number_{index}\t[module_{index % 7}]"
        for index in range(3000)
    ]
    with CaptureWriter.open(path, hostname="h", kernel_release="r") as writer:
        writer.write_symbols([])  # nothing: no block
        writer.write(nlmsg(LE, FAMILY_ID, 0), T0, outgoing=False)
        writer.write_symbols(["ffffffff81a2c3ea t __udp4_lib_rcv\n", "", "  "])
        writer.write(nlmsg(LE, FAMILY_ID, 0), T0 + 1, outgoing=False)
        writer.write_symbols(many)  # > 64 KiB: several comments in one block
    expected = "ffffffff81a2c3ea t __udp4_lib_rcv\n" + "".join(line + "\n" for line in many)
    assert read_symbols(path) == expected
    reader = read_capture(path)
    assert reader.symbols == ""  # not reached yet: the blocks come after the records
    assert len(list(reader)) == 2
    assert reader.symbols == expected


def test_pcap_symbols_side_file(tmp_path: Path) -> None:
    path = tmp_path / "watch.pcap"
    side = tmp_path / "watch.pcap.symbols"
    side.write_text("ffffffff80000000 T stale_from_another_boot\n")
    with CaptureWriter.open(path, format="pcap", hostname="h", kernel_release="r") as writer:
        assert not side.exists()  # stale symbols would name the wrong functions
        writer.write_symbols(["ffffffff81a2c3ea t __udp4_lib_rcv"])
        writer.write_symbols(["ffffffffc0a01000 t nf_hook_slow\t[nf_tables]"])
    text = "ffffffff81a2c3ea t __udp4_lib_rcv\nffffffffc0a01000 t nf_hook_slow\t[nf_tables]\n"
    assert side.read_text() == text
    assert read_capture(path).symbols == text
    assert read_symbols(path) == text


def test_symbol_lines_too_long_for_one_option_are_refused() -> None:
    writer = CaptureWriter(io.BytesIO(), hostname="h", kernel_release="r")
    with pytest.raises(ValueError, match="too long"):
        writer.write_symbols(["x" * 70_000])


# =========================================================================== foreign files


def test_big_endian_pcapng_with_every_packet_block_and_several_clocks() -> None:
    request = nlmsg(BE, FAMILY_ID, 0x1, b"\x01\x02\x00\x00")  # NLM_F_REQUEST
    reply = nlmsg(BE, FAMILY_ID, 0x0, b"\x02\x02\x00\x00")
    data = b"".join(
        [
            ng_shb(BE, ng_option(BE, 4, b"dumpcap (Wireshark) 4.0")),
            ng_idb(BE),  # no if_tsresol: microseconds
            ng_idb(
                BE, options=ng_option(BE, 9, b"\x03") + ng_option(BE, 14, struct.pack(">q", 100))
            ),
            ng_idb(BE, options=ng_option(BE, 9, b"\x8a")),  # 2^-10 seconds
            ng_epb(BE, 0, 1_700_000_000_000_001, cooked() + request),
            ng_block(BE, 4, b"\x00\x00\x00\x00"),  # NRB (empty): skipped
            ng_epb(BE, 1, 5, cooked() + reply),
            ng_block(BE, 0xBAD, b"\x00\x00\x00\x00data"),  # custom block: skipped
            ng_epb(BE, 2, 3 * 1024 + 512, cooked() + reply),
            ng_spb(BE, cooked() + reply),  # no timestamp: repeats the previous one
            ng_pb(BE, 0, 7, cooked(pkttype=0) + request),
            ng_block(BE, 0x0A, b"\x00" * 8),  # DSB: skipped
            ng_block(BE, 0x12345678, b"abcd"),  # unknown: skipped
        ]
    )
    records, error, _ = outcome(data)
    assert error is None
    assert [record.timestamp_ns for record in records] == [
        1_700_000_000_000_001_000,  # microseconds
        100_005_000_000,  # milliseconds, plus if_tsoffset 100 s
        3_500_000_000,  # 2^-10 s ticks
        3_500_000_000,  # the SPB repeats it
        7_000,
    ]
    assert [record.outgoing for record in records] == [True, False, False, False, False]
    assert [record.data for record in records] == [request, reply, reply, reply, request]
    info = read_capture(io.BytesIO(data)).info
    assert info.byte_order == BE and info.sections[0].application == "dumpcap (Wireshark) 4.0"


def test_pcapng_sections_of_both_byte_orders() -> None:
    le_message = nlmsg(LE, 16, 0x1)
    be_message = nlmsg(BE, 16, 0x1)
    data = b"".join(
        [
            ng_shb(LE),
            ng_idb(LE, options=ng_option(LE, 9, b"\x09")),
            ng_epb(LE, 0, 11, cooked() + le_message),
            ng_shb(BE),
            ng_idb(BE, linktype=1),  # a new section forgets the old interfaces
            ng_idb(BE),
            ng_epb(BE, 1, 22, cooked() + be_message),
        ]
    )
    reader = read_capture(io.BytesIO(data))
    records = list(reader)
    assert [(r.timestamp_ns, r.outgoing) for r in records] == [(11, True), (22_000, True)]
    assert [section.byte_order for section in reader.info.sections] == [LE, BE]
    assert [len(section.interfaces) for section in reader.info.sections] == [1, 2]


def test_pcapng_skips_other_link_types_next_to_a_netlink_interface() -> None:
    data = b"".join(
        [
            ng_shb(LE),
            ng_idb(LE, linktype=1),
            ng_idb(LE),
            ng_epb(LE, 0, 1, b"\xff" * 60),  # an Ethernet frame
            ng_epb(LE, 1, 2, cooked() + nlmsg(LE, 16, 0)),
        ]
    )
    reader = read_capture(io.BytesIO(data))
    assert len(list(reader)) == 1
    assert (reader.foreign_records, reader.bad_records) == (1, 0)


@pytest.mark.parametrize(
    ("order", "magic", "fraction", "expected_ns"),
    [
        (LE, 0xA1B2C3D4, 654_321, 654_321_000),
        (BE, 0xA1B2C3D4, 654_321, 654_321_000),
        (LE, 0xA1B23C4D, 654_321_987, 654_321_987),
        (BE, 0xA1B23C4D, 654_321_987, 654_321_987),
    ],
)
def test_classic_pcap_byte_orders_and_resolutions(
    order: ByteOrder, magic: int, fraction: int, expected_ns: int
) -> None:
    message = nlmsg(order, FAMILY_ID, 0)
    data = pcap_header(order, magic=magic) + pcap_record(
        order, 1_700_000_000, fraction, cooked() + message
    )
    [record] = read_capture(io.BytesIO(data))
    assert record.timestamp_ns == 1_700_000_000 * 10**9 + expected_ns
    assert record.data == message and record.outgoing is False and record.offset == 24


def test_nlmon_capture_gives_every_protocol_and_direction_by_request_flag() -> None:
    """tcpdump on nlmon0: pkttype 4 on every record, all netlink protocols."""
    route_dump = nlmsg(LE, 18, 0x301)  # RTM_GETLINK, NLM_F_REQUEST|NLM_F_DUMP
    route_reply = nlmsg(LE, 16, 0x2)  # RTM_NEWLINK, NLM_F_MULTI
    generic_request = nlmsg(LE, 0x10, 0x5)
    data = pcap_header(LE, snaplen=262144) + b"".join(
        pcap_record(LE, 1, index, cooked(protocol, pkttype=4) + message)
        for index, (protocol, message) in enumerate(
            [(0, route_dump), (0, route_reply), (16, generic_request), (16, b"\x01\x02")]
        )
    )
    records = list(read_capture(io.BytesIO(data)))
    assert [(r.protocol, r.outgoing) for r in records] == [
        (0, True),
        (0, False),
        (16, True),
        (16, None),  # no netlink header to look at
    ]
    assert [r for r in records if r.protocol == NETLINK_GENERIC][0].data == generic_request


def test_dwdump_snap_cuts_are_reported_declared_or_not() -> None:
    """dwdump: microseconds, snaplen trunc+2048, and len == caplen even when it cut."""
    whole = nlmsg(LE, FAMILY_ID, 0, bytes(200))
    cut_silently = whole[:100]  # recv() into a short buffer; dwdump says len == caplen
    declared = pcap_record(LE, 5, 1, cooked() + whole[:60], origlen=16 + len(whole))
    data = (
        pcap_header(LE, snaplen=64 + 2048)
        + pcap_record(LE, 5, 0, cooked() + whole)
        + pcap_record(LE, 5, 1, cooked() + cut_silently)
        + declared
    )
    records = list(read_capture(io.BytesIO(data)))
    assert [r.truncated for r in records] == [False, True, True]
    assert [r.original_length for r in records] == [216, 100, 216]


def test_truncated_property_walks_several_messages() -> None:
    two = nlmsg(LE, 16, 0, b"abc") + nlmsg(LE, 16, 0, b"defgh")
    assert not CaptureRecord(0, two, None, 16, 0, len(two)).truncated
    assert CaptureRecord(0, two[:-4], None, 16, 0, len(two) - 4).truncated
    assert CaptureRecord(0, two + b"\x10\x00", None, 16, 0, len(two) + 2).truncated
    assert not CaptureRecord(0, b"", None, 16, 0, 0).truncated
    assert not CaptureRecord(0, struct.pack("<I", 4) + bytes(12), None, 16, 0, 16).truncated
    big_endian = nlmsg(BE, 16, 0, b"abc")
    assert not CaptureRecord(0, big_endian, None, 16, 0, len(big_endian)).truncated


# =========================================================================== damage


def le_pcapng(*blocks: bytes) -> bytes:
    return ng_shb(LE) + ng_idb(LE, options=ng_option(LE, 9, b"\x09")) + b"".join(blocks)


GOOD = cooked() + nlmsg(LE, FAMILY_ID, 0, b"\x01\x02\x00\x00")
HEAD = len(le_pcapng())


def sentence(tmp_path: Path, name: str, data: bytes) -> tuple[int, str, int]:
    """Read ``data`` as the file ``name``: (records before the error, sentence, offset)."""
    path = tmp_path / name
    path.write_bytes(data)
    count = 0
    with pytest.raises(CaptureError) as caught:
        for _ in read_capture(path):
            count += 1
    error = caught.value
    assert isinstance(error, ValueError)
    assert str(error).startswith(str(path) + " ")
    return count, str(error).removeprefix(str(path) + " "), error.offset


def test_empty_file(tmp_path: Path) -> None:
    assert sentence(tmp_path, "e.pcap", b"") == (
        0,
        "is empty: there is no capture header at offset 0",
        0,
    )


@pytest.mark.parametrize(
    ("data", "looks_like"),
    [
        (b"hello, this is a text file\n", "text 'hello, this is a'"),
        (
            b"\x1f\x8b\x08\x00\x00\x00\x00\x00",
            "gzip-compressed data (decompress it first): 1f 8b 08 00 00 00 00 00",
        ),
        (b"\x00\x01\x02\x03\x04\x05\x06\x07\x08", "the bytes 00 01 02 03 04 05 06 07"),
        (
            b"\x34\xcd\xb2\xa1" + bytes(20),
            "a modified (Kuznetzov) pcap, which netdm does not read: 34 cd b2 a1 00 00 00 00",
        ),
    ],
)
def test_not_a_capture(tmp_path: Path, data: bytes, looks_like: str) -> None:
    assert sentence(tmp_path, "x.pcap", data) == (
        0,
        f"is not a pcap or pcapng capture: at offset 0 it starts with {looks_like}",
        0,
    )


def test_cut_headers(tmp_path: Path) -> None:
    assert sentence(tmp_path, "a.pcap", pcap_header(LE)[:10])[1] == (
        "ends in the middle of its pcap file header at offset 0 (it is 24 bytes long; "
        "10 are present)"
    )
    assert sentence(tmp_path, "b.pcap", b"\xd4\xc3")[1] == (
        "ends in the middle of its file header at offset 0 (2 bytes are present)"
    )
    assert sentence(tmp_path, "c.pcapng", ng_shb(LE)[:10])[1] == (
        "ends in the middle of a Section Header Block at offset 0 (it is at least 28 bytes "
        "long; 10 are present)"
    )
    assert sentence(tmp_path, "d.pcapng", ng_shb(LE)[:20])[1] == (
        "ends in the middle of a Section Header Block at offset 0 (it is 28 bytes long; "
        "20 are present)"
    )


def test_last_record_cut_pcap(tmp_path: Path) -> None:
    data = pcap_header(LE) + pcap_record(LE, 1, 0, GOOD) * 2
    offset = 24 + 16 + len(GOOD)
    assert sentence(tmp_path, "cut.pcap", data[:-5]) == (
        1,
        f"ends in the middle of a record at offset {offset} (it is {16 + len(GOOD)} bytes "
        f"long; {16 + len(GOOD) - 5} are present)",
        offset,
    )
    assert sentence(tmp_path, "cut2.pcap", data[: offset + 3])[1] == (
        f"ends in the middle of a record at offset {offset} (it is at least 16 bytes long; "
        "3 are present)"
    )


def test_last_record_cut_pcapng(tmp_path: Path) -> None:
    block = ng_epb(LE, 0, 1, GOOD)
    data = le_pcapng(block, block)
    offset = HEAD + len(block)
    assert sentence(tmp_path, "cut.pcapng", data[:-1]) == (
        1,
        f"ends in the middle of a record at offset {offset} (it is {len(block)} bytes long; "
        f"{len(block) - 1} are present)",
        offset,
    )
    isb = ng_block(LE, 5, bytes(12))
    assert sentence(tmp_path, "cut.isb.pcapng", le_pcapng(block, isb)[:-2])[1] == (
        f"ends in the middle of an Interface Statistics Block at offset {offset} (it is "
        f"{len(isb)} bytes long; {len(isb) - 2} are present)"
    )


@pytest.mark.parametrize(
    ("bad_block", "reason"),
    [
        (
            ng_epb(LE, 0, 1, GOOD)[:4] + struct.pack("<I", 43) + ng_epb(LE, 0, 1, GOOD)[8:],
            "has a corrupt block at offset {o}: its total length 43 is not a multiple of 4",
        ),
        (
            struct.pack("<II", 6, 8) + bytes(8),
            "has a corrupt block at offset {o}: its total length 8 is shorter than the 12 "
            "bytes of a block",
        ),
        (
            ng_epb(LE, 0, 1, GOOD)[:-4] + struct.pack("<I", 4),
            "has a corrupt block at offset {o}: its trailing length 4 differs from its leading "
            "length 68",
        ),
        (
            struct.pack("<II", 6, 0xFFFFFF00) + bytes(40),
            "has a corrupt block at offset {o}: its length 4294967040 runs past the end of the "
            "file (48 bytes are left)",
        ),
        (
            ng_epb(LE, 0, 1, GOOD, caplen=500),
            "has a corrupt block at offset {o}: its captured length 500 does not fit in its "
            "total length 68",
        ),
        (
            ng_epb(LE, 3, 1, GOOD),
            "has a record at offset {o} for interface 3, but its section (offset 0) has "
            "described 1 interface",
        ),
        (
            ng_epb(LE, 0, 1, GOOD[:8]),
            "has a record at offset {o} of 8 bytes, too short for the 16-byte netlink "
            "pseudo-header",
        ),
        (
            ng_epb(LE, 0, 1, GOOD, options=ng_option(LE, 2, b"\x01\x00\x00\x00")[:2] + b"\x40\x00"),
            "has a corrupt record at offset {o}: its option 2 of 64 bytes at offset +0 runs "
            "past the end of its options",
        ),
        (
            ng_block(LE, 6, bytes(16)),
            "has a corrupt block at offset {o}: its total length 28 is shorter than the 32 "
            "bytes of an Enhanced Packet Block",
        ),
    ],
    ids=[
        "length-not-multiple-of-4",
        "length-below-minimum",
        "trailing-length-mismatch",
        "length-past-eof",
        "caplen-does-not-fit",
        "unknown-interface",
        "shorter-than-pseudo-header",
        "option-past-end",
        "epb-too-short",
    ],
)
def test_corrupt_pcapng_blocks(tmp_path: Path, bad_block: bytes, reason: str) -> None:
    good = ng_epb(LE, 0, 1, GOOD)
    data = le_pcapng(good, bad_block)
    count, text, offset = sentence(tmp_path, "bad.pcapng", data)
    assert (count, text, offset) == (1, reason.format(o=HEAD + len(good)), HEAD + len(good))


def test_pcapng_snapshot_length_lie(tmp_path: Path) -> None:
    data = ng_shb(LE) + ng_idb(LE, snaplen=40) + ng_epb(LE, 0, 1, GOOD + bytes(40))
    offset = len(ng_shb(LE) + ng_idb(LE, snaplen=40))
    assert sentence(tmp_path, "lie.pcapng", data)[1] == (
        f"has a corrupt record at offset {offset}: its captured length {len(GOOD) + 40} exceeds "
        "the snapshot length 40"
    )


def test_corrupt_section_headers(tmp_path: Path) -> None:
    shb = bytearray(ng_shb(LE))
    shb[8:12] = b"\x11\x22\x33\x44"
    assert sentence(tmp_path, "bom.pcapng", bytes(shb))[1] == (
        "has a corrupt Section Header Block at offset 0: its byte-order magic 11223344 is "
        "neither 1a2b3c4d nor 4d3c2b1a"
    )
    assert sentence(tmp_path, "v2.pcapng", ng_shb(LE, major=2))[1] == (
        "has a Section Header Block at offset 0 of pcapng version 2.0; netdm reads version 1.x"
    )
    assert sentence(tmp_path, "v3.pcap", pcap_header(LE, major=3))[1] == (
        "has pcap version 3.4 at offset 4; netdm reads version 2.x"
    )


def test_pcap_length_lies_and_short_records(tmp_path: Path) -> None:
    record = pcap_record(LE, 1, 0, GOOD)
    lie = pcap_record(LE, 1, 0, GOOD, caplen=70_000)
    assert sentence(tmp_path, "lie.pcap", pcap_header(LE) + record + lie) == (
        1,
        f"has a corrupt record at offset {24 + len(record)}: its captured length 70000 exceeds "
        "the snapshot length 65535",
        24 + len(record),
    )
    short = pcap_record(LE, 1, 0, GOOD[:10])
    assert sentence(tmp_path, "short.pcap", pcap_header(LE) + short)[1] == (
        "has a record at offset 24 of 10 bytes, too short for the 16-byte netlink pseudo-header"
    )


def test_other_link_types(tmp_path: Path) -> None:
    assert sentence(tmp_path, "eth.pcap", pcap_header(LE, linktype=1)) == (
        0,
        "declares link type 1 (Ethernet) at offset 20, not netlink (253)",
        20,
    )
    data = ng_shb(LE) + ng_idb(LE, linktype=1) + ng_epb(LE, 0, 1, b"\xff" * 60)
    idb_offset = len(ng_shb(LE))
    record_offset = idb_offset + len(ng_idb(LE, linktype=1))
    assert sentence(tmp_path, "eth.pcapng", data) == (
        0,
        f"declares link type 1 (Ethernet) at offset {idb_offset + 8}, not netlink (253), for "
        f"the record at offset {record_offset}",
        idb_offset + 8,
    )


# =========================================================================== keep going


def test_keep_going_skips_framed_damage_in_pcapng() -> None:
    good = ng_epb(LE, 0, 1, GOOD)
    data = le_pcapng(
        good,
        ng_epb(LE, 9, 1, GOOD),  # unknown interface
        good,
        good[:-4] + struct.pack("<I", 12),  # trailing length mismatch
        good,
        ng_epb(LE, 0, 1, GOOD[:4]),  # too short for the pseudo-header
        good,
        good[:-3],  # cut
    )
    reader = read_capture(io.BytesIO(data), keep_going=True)
    assert len(list(reader)) == 4
    assert reader.bad_records == 4
    assert [problem.split(" ", 3)[1:3] for problem in reader.problems] == [
        ["has", "a"],
        ["has", "a"],
        ["has", "a"],
        ["ends", "in"],
    ]


def test_keep_going_stops_at_a_pcap_length_lie_and_counts_it() -> None:
    record = pcap_record(LE, 1, 0, GOOD)
    data = (
        pcap_header(LE)
        + record
        + pcap_record(LE, 1, 0, GOOD[:3])  # framed: skipped
        + record
        + pcap_record(LE, 1, 0, GOOD, caplen=1 << 30)  # no resynchronisation possible
        + record
    )
    reader = read_capture(io.BytesIO(data), keep_going=True)
    assert len(list(reader)) == 2
    assert reader.bad_records == 2
    assert "corrupt record" in reader.problems[-1]


class RecordingStream(io.BytesIO):
    """A file object that remembers how much each read() asked for."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.requests: list[int] = []

    def read(self, size: int | None = -1) -> bytes:
        self.requests.append(-1 if size is None else size)
        return super().read(size)


LYING_LENGTHS = [
    # a pcapng block whose total length says 4 GiB
    le_pcapng(ng_epb(LE, 0, 1, GOOD)) + struct.pack("<II", 6, 0xFFFFFFF0) + bytes(40),
    # a classic pcap whose snapshot length allows anything, and a record claiming 4 GiB
    pcap_header(LE, snaplen=0xFFFFFFFF) + pcap_record(LE, 1, 0, GOOD, caplen=0xFFFFFFF0),
]


@pytest.mark.parametrize("data", LYING_LENGTHS, ids=["pcapng", "pcap"])
def test_a_lying_length_asks_the_file_for_a_bounded_read(data: bytes) -> None:
    """Found by tests/fuzz: read(4 GiB) on a real file allocates 4 GiB before it finds the end."""
    for keep_going in (False, True):
        stream = RecordingStream(data)
        records, error, _ = outcome_of(stream, keep_going=keep_going)
        assert error is not None and "offset" in error
        assert len(records) == (1 if data.startswith(le_pcapng()) else 0)
        assert max(stream.requests) <= 16 * 1024 * 1024


def test_a_lying_length_is_a_capture_error_under_an_address_space_limit(tmp_path: Path) -> None:
    """The real symptom, in a child with RLIMIT_AS at 1 GiB: MemoryError, not CaptureError."""
    pytest.importorskip("resource")
    paths = []
    for index, data in enumerate(LYING_LENGTHS):
        path = tmp_path / f"lying-{index}.capture"
        path.write_bytes(data)
        paths.append(str(path))
    script = """if True:
        import resource, sys
        from netdm.capture import CaptureError, read_capture
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, hard))
        for path in sys.argv[1:]:
            try:
                list(read_capture(path))
            except CaptureError as error:
                print("CaptureError at", error.offset)
    """
    result = subprocess.run(
        [sys.executable, "-c", script, *paths],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )
    assert result.returncode == 0, result.stderr
    block = len(le_pcapng(ng_epb(LE, 0, 1, GOOD)))
    assert result.stdout.splitlines() == [f"CaptureError at {block}", "CaptureError at 24"]


def outcome_of(
    stream: io.BytesIO, *, keep_going: bool
) -> tuple[list[CaptureRecord], str | None, int]:
    records: list[CaptureRecord] = []
    try:
        reader = CaptureReader(stream, keep_going=keep_going)
        for record in reader:
            records.append(record)
    except CaptureError as error:
        return records, str(error), 0
    return records, "; ".join(reader.problems) or None, reader.bad_records


def test_keep_going_keeps_only_the_first_few_sentences() -> None:
    bad = ng_epb(LE, 5, 1, GOOD)
    reader = read_capture(io.BytesIO(le_pcapng(*[bad] * 25)), keep_going=True)
    assert list(reader) == []
    assert (reader.bad_records, len(reader.problems)) == (25, 10)


def test_keep_going_does_not_hide_a_bad_header() -> None:
    with pytest.raises(CaptureError, match="is empty"):
        read_capture(io.BytesIO(b""), keep_going=True)
    with pytest.raises(CaptureError, match="not netlink"):
        read_capture(io.BytesIO(pcap_header(LE, linktype=1)), keep_going=True)


# =========================================================================== every cut


def small_captures() -> list[tuple[bytes, list[int]]]:
    """Small valid captures and the offsets where a cut leaves a valid file."""
    pcapng = le_pcapng(
        ng_epb(LE, 0, 1, GOOD),
        ng_spb(LE, GOOD),
        ng_epb(LE, 0, 2, GOOD, options=ng_option(LE, 2, b"\x02\x00\x00\x00")),
        ng_block(LE, 5, bytes(12) + ng_option(LE, 1, b"netdm-kallsyms 1\nfff t f\n") + ng_end(LE)),
    )
    boundaries = []
    offset = 0
    while offset < len(pcapng):
        offset += struct.unpack_from("<I", pcapng, offset + 4)[0]
        boundaries.append(offset)
    pcap = pcap_header(BE, magic=0xA1B23C4D) + b"".join(
        pcap_record(BE, 1, index, cooked() + nlmsg(BE, 16, 0, b"x" * index)) for index in range(3)
    )
    pcap_boundaries = [24]
    for index in range(3):
        pcap_boundaries.append(pcap_boundaries[-1] + 16 + 16 + len(nlmsg(BE, 16, 0, b"x" * index)))
    return [(pcapng, boundaries), (pcap, pcap_boundaries)]


@pytest.mark.parametrize("fast", [True, False])
def test_cut_at_every_byte(fast: bool) -> None:
    for data, boundaries in small_captures():
        full, error, _ = outcome(data, fast=fast)
        assert error is None and full
        for cut in range(len(data)):
            records, error, _ = outcome(data[:cut], fast=fast)
            assert records == full[: len(records)], cut
            if error is None:
                assert cut in boundaries, cut
            else:
                assert "<stream> " in error and "offset" in error, error
            kept, kept_error, bad = outcome(data[:cut], keep_going=True, fast=fast)
            assert kept == records
            if cut >= boundaries[0]:
                assert kept_error is None and bad == (0 if error is None else 1)


# =========================================================================== properties


PREFIXES = [
    b"",
    pcap_header(LE),
    pcap_header(BE, magic=0xA1B23C4D, snaplen=0),
    le_pcapng(),
    ng_shb(BE) + ng_idb(BE, snaplen=100),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PREFIXES), st.binary(max_size=200), st.booleans())
def test_arbitrary_bytes_give_records_or_capture_error(
    prefix: bytes, tail: bytes, keep_going: bool
) -> None:
    fast = outcome(prefix + tail, keep_going=keep_going)
    assert fast == outcome(prefix + tail, keep_going=keep_going, fast=False)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([data for data, _ in small_captures()]),
    st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=4),
    st.booleans(),
)
def test_mutated_captures_give_records_or_capture_error(
    data: bytes, changes: list[tuple[int, int]], keep_going: bool
) -> None:
    mutated = bytearray(data)
    for position, value in changes:
        mutated[position % len(mutated)] = value
    fast = outcome(bytes(mutated), keep_going=keep_going)
    assert fast == outcome(bytes(mutated), keep_going=keep_going, fast=False)


def test_importing_the_capture_layer_loads_neither_construct_nor_pyroute2() -> None:
    code = (
        "import sys, netdm.capture\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'construct', 'pyroute2'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


# =========================================================================== Wireshark


def tshark_output(*args: str) -> str:
    env = {**os.environ, "HOME": "/nonexistent"}  # no personal preferences
    result = subprocess.run(
        ["tshark", *args], capture_output=True, text=True, check=True, env=env, timeout=60
    )
    return result.stdout


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
@pytest.mark.parametrize("fmt", ["pcapng", "pcap"])
def test_tshark_decodes_netlink_genl_and_net_dm(tmp_path: Path, fmt: CaptureFormat) -> None:
    path = tmp_path / f"watch.{fmt}"
    write_capture(path, fmt)
    verbose = tshark_output("-r", str(path), "-V")
    assert "Malformed" not in verbose
    assert "Expert Info (Error" not in verbose
    assert "Linux netlink (cooked header)" in verbose
    assert "Linux Generic Netlink protocol" in verbose
    assert "CTRL_CMD_NEWFAMILY" in verbose
    assert "Family Name: NET_DM" in verbose
    fields = tshark_output("-r", str(path), "-Y", "net_dm", "-T", "fields", "-e", "net_dm.cmd")
    assert fields.split() == ["3", "1", "5"]  # START, ALERT, PACKET_ALERT
    symbol = tshark_output(
        "-r", str(path), "-Y", "net_dm.symbol", "-T", "fields", "-e", "net_dm.symbol"
    )
    assert symbol.strip() == "__udp4_lib_rcv+0x1ea"
    if fmt == "pcapng":
        assert "Direction: Outbound" in verbose and "Direction: Inbound" in verbose


@pytest.mark.skipif(shutil.which("capinfos") is None, reason="capinfos is not installed")
def test_capinfos_shows_the_section_header_options(tmp_path: Path) -> None:
    path = tmp_path / "watch.pcapng"
    write_capture(path, "pcapng")
    result = subprocess.run(["capinfos", str(path)], capture_output=True, text=True, check=True)
    for line in (
        "Capture hardware:    x86_64",
        "Capture oper-sys:    Linux 6.1.0-test-amd64",
        "Capture application: netdm ",
        "Capture comment:     host: testhost",
        "Number of packets:   5",
        "File timestamp precision:  nanoseconds (9)",
    ):
        assert line in result.stdout
