"""The construct definitions are the capture format: netdm writes them, and reads as they say.

Strategy: :mod:`netdm.capture.schema` declares every structure; the reader and
the writer use ``struct`` layouts derived from it (:mod:`netdm.capture.layouts`).
What is proven here, with hypothesis where the input space is large:

* the writer's bytes parse with the definitions, and the definitions rebuild
  them byte for byte;
* every derived layout unpacks any bytes to the values construct parses from
  them (the fast paths' combined layouts too), and the block sizes and
  offsets are the definitions';
* files built *by construct* from generated fields (both byte orders, several
  sections and interfaces, every packet block, options, symbol comments,
  unknown blocks) read, on the fast path and on the general one, as the
  records computed from construct's own parse of the same bytes;
* after random damage, every record either path still yields is what
  construct parses at the record's offset.
"""

from __future__ import annotations

import io
import struct
import sys
from pathlib import Path
from typing import Any

from capture_bytes import (
    BE,
    HOST,
    LE,
    T0,
    cooked,
    endian,
    ng_epb,
    ng_idb,
    ng_option,
    ng_shb,
    outcome,
    write_capture,
)
from construct import GreedyBytes, Pass, Struct
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netdm.capture import CaptureError, CaptureReader, CaptureRecord, schema
from netdm.capture.formats import (
    BLOCK_EPB,
    BLOCK_IDB,
    BLOCK_ISB,
    BLOCK_PB,
    BLOCK_SHB,
    BLOCK_SPB,
    ByteOrder,
)
from netdm.capture.layouts import LAYOUTS

ORDERS: list[ByteOrder] = [LE, BE]
BODIES = {
    BLOCK_SHB: schema.shb_body,
    BLOCK_IDB: schema.idb_body,
    BLOCK_EPB: schema.epb_body,
    BLOCK_SPB: schema.spb_body,
    BLOCK_PB: schema.pb_body,
    BLOCK_ISB: schema.isb_body,
}
SYMBOLS_MARK = "netdm-kallsyms 1\n"
EXAMPLES = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# =========================================================================== the writer


def parse_blocks(data: bytes, order: ByteOrder) -> list[Any]:
    """Split a pcapng into blocks with the construct definitions."""
    bodies = {
        0x0A0D0D0A: schema.shb_body,
        1: schema.idb_body,
        5: schema.isb_body,
        6: schema.epb_body,
    }
    blocks = []
    offset = 0
    while offset < len(data):
        block_type, length = struct.unpack_from(endian(order) + "II", data, offset)
        definition = schema.block(order, block_type, bodies[block_type](order))
        blocks.append(definition.parse(data[offset : offset + length]))
        offset += length
    return blocks


def test_writer_output_parses_with_the_construct_definitions(tmp_path: Path) -> None:
    path = tmp_path / "def.pcapng"
    traffic = write_capture(path, "pcapng")
    data = path.read_bytes()
    shb, idb, *epbs, isb = parse_blocks(data, HOST)
    options = {option.code: option.value for option in shb.body.options}
    assert options[3] == b"Linux 6.1.0-test-amd64" and options[1] == b"host: testhost"
    assert (idb.body.linktype, idb.body.snaplen) == (253, 262144)
    assert [option.value for option in idb.body.options if option.code == 9] == [b"\x09"]
    for block, (datagram, outgoing) in zip(epbs, traffic, strict=True):
        header = schema.COOKED_HEADER.parse(block.body.packet_data)
        assert (header.pkttype, header.hatype, header.protocol) == (4 if outgoing else 0, 824, 16)
        assert block.body.packet_data[16:] == datagram
        [flags] = [o.value for o in block.body.options if o.code == 2]
        assert int.from_bytes(flags, sys.byteorder) == (2 if outgoing else 1)
    [comment] = [o.value for o in isb.body.options if o.code == 1]
    assert comment == b"netdm-kallsyms 1\nffffffff81a2c3ea t __udp4_lib_rcv\n"
    # And the definitions build the very bytes the fast writer wrote.
    bodies = {
        0x0A0D0D0A: schema.shb_body,
        1: schema.idb_body,
        5: schema.isb_body,
        6: schema.epb_body,
    }
    rebuilt = b"".join(
        schema.block(HOST, block.block_type, bodies[block.block_type](HOST)).build(block)
        for block in [shb, idb, *epbs, isb]
    )
    assert rebuilt == data


def test_pcap_writer_output_parses_with_the_construct_definitions(tmp_path: Path) -> None:
    path = tmp_path / "def.pcap"
    traffic = write_capture(path, "pcap")
    data = path.read_bytes()
    order = HOST
    header = schema.pcap_file_header(order).parse(data)
    assert (header.magic, header.snaplen, header.linktype) == (0xA1B23C4D, 262144, 253)
    offset = 24
    for index, (datagram, _) in enumerate(traffic):
        record = schema.pcap_record(order).parse(data[offset:])
        assert record.ts_sec * 10**9 + record.ts_frac == T0 + index * 1_000_001
        assert record.packet_data[16:] == datagram
        assert (
            schema.pcap_record(order).build(record)
            == data[offset : offset + 16 + record.captured_length]
        )
        offset += 16 + record.captured_length


@settings(max_examples=100, deadline=None)
@given(
    order=st.sampled_from([LE, BE]),
    ticks=st.integers(0, 2**64 - 1),
    datagram=st.binary(max_size=64),
    flags=st.sampled_from([None, 0, 1, 2, 3]),
    pkttype=st.sampled_from([0, 4]),
    extra_origlen=st.integers(0, 100),
)
def test_construct_built_blocks_read_as_the_definition_says(
    order: ByteOrder,
    ticks: int,
    datagram: bytes,
    flags: int | None,
    pkttype: int,
    extra_origlen: int,
) -> None:
    packet = cooked(pkttype=pkttype) + datagram
    options: list[dict[str, Any]] = []
    if flags is not None:
        value = struct.pack(endian(order) + "I", flags)
        options = [{"code": 2, "length": 4, "value": value}, {"code": 0, "length": 0, "value": b""}]
    body = {
        "interface_id": 0,
        "timestamp_high": ticks >> 32,
        "timestamp_low": ticks & 0xFFFFFFFF,
        "captured_length": len(packet),
        "original_length": len(packet) + extra_origlen,
        "packet_data": packet,
        "options": options,
    }
    definition = schema.block(order, 6, schema.epb_body(order))
    size = 12 + len(schema.epb_body(order).build(body))
    epb = definition.build({"total_length": size, "body": body, "trailing_length": size})
    hand_built = ng_epb(
        order,
        0,
        ticks,
        packet,
        origlen=len(packet) + extra_origlen,
        options=b"" if flags is None else ng_option(order, 2, options[0]["value"]),
    )
    assert epb == hand_built
    data = ng_shb(order) + ng_idb(order, options=ng_option(order, 9, b"\x09")) + epb
    for fast in (True, False):
        records, error, _ = outcome(data, fast=fast)
        assert error is None
        [record] = records
        assert record.timestamp_ns == ticks
        assert record.data == datagram
        assert record.original_length == len(datagram) + extra_origlen
        direction = (flags or 0) & 3
        expected = {1: False, 2: True}.get(direction, False if pkttype == 0 else None)
        if expected is None and len(datagram) >= 16:
            expected = bool(datagram[6 if order == LE else 7] & 1)
        assert record.outgoing is expected


def test_struct_layouts_have_the_sizes_of_the_definitions() -> None:
    for order in (LE, BE):
        layouts = LAYOUTS[order]
        assert layouts.pcap_file_header.size == schema.pcap_file_header(order).sizeof()
        assert layouts.pcap_record.size == 16
        assert layouts.pcap_record_cooked.size == 16 + schema.COOKED_HEADER.sizeof()
        assert layouts.epb_head_cooked.size == 8 + 20 + schema.COOKED_HEADER.sizeof()
        assert layouts.epb_netdm_tail.size == 16


# =========================================================================== layouts = construct


def fixed_prefix(definition: Any) -> Any:
    """The definition's leading subconstructs of a fixed size (construct's own ``sizeof``)."""
    subcons = []
    for subcon in definition.subcons:
        try:
            subcon.sizeof()
        except Exception:  # a size that depends on the data: the fixed part ends here
            break
        subcons.append(subcon)
    return Struct(*subcons)


def with_constants(prefix: Any, data: bytes) -> bytes:
    """``data`` with the bytes of the prefix's ``Const`` fields put in, so that it parses."""
    patched = bytearray(data)
    position = 0
    for subcon in prefix.subcons:
        inner = getattr(subcon, "subcon", None)
        if type(inner).__name__ == "Const":
            constant = inner.build(None)
            patched[position : position + len(constant)] = constant
        position += subcon.sizeof()
    return bytes(patched)


def parsed_fields(prefix: Any, data: bytes) -> list[int]:
    """The named fields construct parses from ``data``, in order (padding has no name)."""
    parsed = prefix.parse(data)
    return [parsed[subcon.name] for subcon in prefix.subcons if getattr(subcon, "name", None)]


def single_layouts(order: ByteOrder) -> list[tuple[str, struct.Struct, Any]]:
    """(name, derived layout, the definition it is derived from) of every one-piece layout."""
    layouts = LAYOUTS[order]
    pairs = [
        ("block_header", layouts.block_header, schema.block(order, BLOCK_EPB, Pass)),
        ("option_header", layouts.option_header, schema.option(order)),
        ("pcap_file_header", layouts.pcap_file_header, schema.pcap_file_header(order)),
        ("pcap_record", layouts.pcap_record, schema.pcap_record(order)),
        ("shb_fixed", layouts.shb_fixed, schema.shb_body(order)),
        ("idb_fixed", layouts.idb_fixed, schema.idb_body(order)),
        ("epb_fixed", layouts.epb_fixed, schema.epb_body(order)),
        ("spb_fixed", layouts.spb_fixed, schema.spb_body(order)),
        ("pb_fixed", layouts.pb_fixed, schema.pb_body(order)),
        ("isb_fixed", layouts.isb_fixed, schema.isb_body(order)),
        ("cooked_header", layouts.cooked_header, schema.COOKED_HEADER),
    ]
    pairs += [
        (f"shapes[{block_type}].fixed", layouts.shapes[block_type].fixed, body(order))
        for block_type, body in BODIES.items()
    ]
    return pairs


@EXAMPLES
@given(order=st.sampled_from(ORDERS), data=st.binary(min_size=64, max_size=64))
def test_every_derived_layout_unpacks_what_construct_parses(order: ByteOrder, data: bytes) -> None:
    for name, layout, definition in single_layouts(order):
        prefix = fixed_prefix(definition)
        assert layout.size == prefix.sizeof(), name
        sample = with_constants(prefix, data[: prefix.sizeof()])
        assert list(layout.unpack(sample)) == parsed_fields(prefix, sample), name


def swap16(value: int) -> int:
    return ((value & 0xFF) << 8) | (value >> 8)


@EXAMPLES
@given(order=st.sampled_from(ORDERS), data=st.binary(min_size=64, max_size=64))
def test_the_fast_paths_combined_layouts_are_the_definitions_side_by_side(
    order: ByteOrder, data: bytes
) -> None:
    """Record header and pseudo-header in one unpack; the pseudo-header's fields in file order."""
    layouts = LAYOUTS[order]
    pseudo = fixed_prefix(schema.COOKED_HEADER)
    in_file_order = (lambda v: v) if order == BE else swap16  # what the fast paths undo
    cases = [
        (layouts.pcap_record_cooked, [fixed_prefix(schema.pcap_record(order))]),
        (
            layouts.epb_head_cooked,
            [
                fixed_prefix(schema.block(order, BLOCK_EPB, Pass)),
                fixed_prefix(schema.epb_body(order)),
            ],
        ),
    ]
    for layout, heads in cases:
        expected: list[int] = []
        sample = b""
        for head in heads:
            part = with_constants(head, data[len(sample) : len(sample) + head.sizeof()])
            expected += parsed_fields(head, part)
            sample += part
        cooked_bytes = data[len(sample) : len(sample) + pseudo.sizeof()]
        header = pseudo.parse(cooked_bytes)
        expected += [in_file_order(header.pkttype), in_file_order(header.protocol)]
        assert layout.size == len(sample) + pseudo.sizeof()
        assert list(layout.unpack(sample + cooked_bytes)) == expected
    assert list(layouts.cooked_pkttype_and_protocol.unpack(data[:16])) == [
        pseudo.parse(data[:16]).pkttype,
        pseudo.parse(data[:16]).protocol,
    ]


@EXAMPLES
@given(
    order=st.sampled_from(ORDERS),
    code=st.integers(0, 0xFFFF),
    flags=st.integers(0, 0xFFFFFFFF),
    end_code=st.integers(0, 0xFFFF),
    trailing=st.integers(0, 0xFFFFFFFF),
)
def test_the_netdm_epb_tail_is_an_option_an_end_of_options_and_the_trailing_length(
    order: ByteOrder, code: int, flags: int, end_code: int, trailing: int
) -> None:
    value = fixed_prefix(schema.isb_body(order)).subcons[0].subcon.build(flags)  # a u32
    tail = (
        schema.option(order).build({"code": code, "length": 4, "value": value})
        + schema.option(order).build({"code": end_code, "length": 0, "value": b""})
        + fixed_prefix(schema.block(order, BLOCK_EPB, Pass)).subcons[1].subcon.build(trailing)
    )
    assert LAYOUTS[order].epb_netdm_tail.unpack(tail) == (code, 4, flags, end_code, 0, trailing)


EMPTY_PACKET = {
    "interface_id": 0,
    "timestamp_high": 0,
    "timestamp_low": 0,
    "captured_length": 0,
    "original_length": 0,
    "packet_data": b"",
    "options": [],
}
SMALLEST_BODIES: dict[int, dict[str, Any]] = {
    BLOCK_SHB: {"major_version": 1, "minor_version": 0, "section_length": -1, "options": []},
    BLOCK_IDB: {"linktype": 253, "reserved": 0, "snaplen": 0, "options": []},
    BLOCK_EPB: EMPTY_PACKET,
    BLOCK_SPB: {"original_length": 0, "packet_data_padded": b""},
    BLOCK_PB: {**EMPTY_PACKET, "drops_count": 0},
    BLOCK_ISB: {"interface_id": 0, "timestamp_high": 0, "timestamp_low": 0, "options": []},
}


def built_block(order: ByteOrder, block_type: int, body_definition: Any, body: Any) -> bytes:
    """A whole block built by construct, its total length counted from the built body."""
    size = 12 + len(body_definition.build(body))
    definition = schema.block(order, block_type, body_definition)
    built: bytes = definition.build({"total_length": size, "body": body, "trailing_length": size})
    return built


def test_block_sizes_and_offsets_are_the_definitions() -> None:
    for order in ORDERS:
        layouts = LAYOUTS[order]
        framing = fixed_prefix(schema.block(order, BLOCK_EPB, Pass))
        assert layouts.block_header_len == framing.sizeof()
        for block_type, body in BODIES.items():
            shape = layouts.shapes[block_type]
            smallest = built_block(order, block_type, body(order), SMALLEST_BODIES[block_type])
            assert shape.min_length == len(smallest), block_type
            assert shape.rest_offset == framing.sizeof() + fixed_prefix(body(order)).sizeof()
        assert layouts.block_min_len == len(built_block(order, 4, GreedyBytes, b""))
        pcap_header = fixed_prefix(schema.pcap_file_header(order))
        assert layouts.pcap_file_header_len == pcap_header.sizeof()
        assert layouts.pcap_linktype_offset == pcap_header.sizeof() - 4  # its last field
        assert layouts.pcap_version_offset == 4  # after the magic
        assert layouts.pcap_record_header_len == fixed_prefix(schema.pcap_record(order)).sizeof()
        assert layouts.cooked_header_len == schema.COOKED_HEADER.sizeof()
        assert layouts.option_header_len == fixed_prefix(schema.option(order)).sizeof()
        shb = built_block(order, BLOCK_SHB, schema.shb_body(order), SMALLEST_BODIES[BLOCK_SHB])
        magic = LAYOUTS[order].byte_order_magic_offset
        assert int.from_bytes(shb[magic : magic + 4], order) == 0x1A2B3C4D
        idb = built_block(order, BLOCK_IDB, schema.idb_body(order), SMALLEST_BODIES[BLOCK_IDB])
        linktype = layouts.idb_linktype_offset
        assert int.from_bytes(idb[linktype : linktype + 2], order) == 253


# =========================================================================== generated files


def option(code: int, value: bytes) -> dict[str, Any]:
    return {"code": code, "length": len(value), "value": value}


END = option(0, b"")


@st.composite
def option_lists(draw: st.DrawFn, order: ByteOrder, codes: list[int]) -> list[dict[str, Any]]:
    """Some options of ``codes`` (code 2 mostly as a u32: epb_flags), closed by
    opt_endofopt or not; sometimes none at all."""
    options = []
    for _ in range(draw(st.integers(0, 3))):
        code = draw(st.sampled_from(codes))
        if code == 2 and draw(st.integers(0, 4)):
            value = draw(st.integers(0, 0xFFFFFFFF)).to_bytes(4, order)
        else:
            value = draw(st.binary(max_size=10))
        options.append(option(code, value))
    if draw(st.booleans()):
        options.append(END)
    return options


@st.composite
def packets(draw: st.DrawFn) -> bytes:
    """A pseudo-header (either mark, any protocol) and a datagram, often a netlink header."""
    header = schema.COOKED_HEADER.build(
        {
            "pkttype": draw(st.sampled_from([0, 4, 1])),
            "hatype": 824,
            "protocol": draw(st.sampled_from([16, 0, 0x1234])),
        }
    )
    return header + draw(st.binary(max_size=40))


@st.composite
def pcapng_files(draw: st.DrawFn) -> bytes:
    """Sections of either byte order, built block by block with the construct definitions."""
    blocks = []
    for _ in range(draw(st.integers(1, 2))):
        order = draw(st.sampled_from(ORDERS))
        shb = {
            "major_version": 1,
            "minor_version": 0,
            "section_length": -1,
            "options": draw(option_lists(order, [1, 2, 3, 4])),
        }
        blocks.append(built_block(order, BLOCK_SHB, schema.shb_body(order), shb))
        interfaces = draw(st.integers(1, 3))
        for index in range(interfaces):
            options = []
            if draw(st.booleans()):
                resolution = draw(st.sampled_from([3, 6, 9, 12, 0x80 | 20, 0x80 | 30]))
                options.append(option(9, bytes([resolution])))
            if draw(st.booleans()):
                seconds = draw(st.integers(-(2**40), 2**40))
                options.append(option(14, seconds.to_bytes(8, order, signed=True)))
            options += draw(option_lists(order, [1, 2, 3]))
            idb = {
                "linktype": 253 if index == 0 else draw(st.sampled_from([253, 1])),
                "reserved": 0,
                "snaplen": draw(st.sampled_from([0, 65535, 262144])),
                "options": options,
            }
            blocks.append(built_block(order, BLOCK_IDB, schema.idb_body(order), idb))
        for _ in range(draw(st.integers(0, 6))):
            kind = draw(st.sampled_from([BLOCK_EPB, BLOCK_EPB, BLOCK_SPB, BLOCK_PB, BLOCK_ISB, 4]))
            ticks = draw(st.integers(0, 2**64 - 1))
            high, low = ticks >> 32, ticks & 0xFFFFFFFF
            packet = draw(packets())
            length = {"captured_length": len(packet), "packet_data": packet}
            original = len(packet) + draw(st.integers(0, 8))
            interface = draw(st.integers(0, interfaces - 1))
            if kind in (BLOCK_EPB, BLOCK_PB):
                body: Any = {
                    "interface_id": interface,
                    "timestamp_high": high,
                    "timestamp_low": low,
                    **length,
                    "original_length": original,
                    "options": draw(option_lists(order, [1, 2, 2, 0x8001])),
                }
                if kind == BLOCK_PB:
                    body["drops_count"] = draw(st.integers(0, 0xFFFF))
            elif kind == BLOCK_SPB:
                padded = packet + bytes(-len(packet) % 4)
                body = {"original_length": original, "packet_data_padded": padded}
            elif kind == BLOCK_ISB:
                comment = SYMBOLS_MARK + f"ffffffff81{ticks % 999999:06x} t f{low}\n"
                options = [option(1, comment.encode())] if draw(st.booleans()) else []
                body = {
                    "interface_id": interface,
                    "timestamp_high": high,
                    "timestamp_low": low,
                    "options": options + draw(option_lists(order, [1, 2, 3])),
                }
            else:  # a Name Resolution Block: not netdm's business, skipped whole
                body = draw(st.binary(max_size=12).map(lambda raw: raw + bytes(-len(raw) % 4)))
            definition = BODIES[kind](order) if kind in BODIES else GreedyBytes
            blocks.append(built_block(order, kind, definition, body))
    return b"".join(blocks)


def request_byte(order: ByteOrder) -> int:
    return 6 if order == LE else 7  # nlmsg_flags' low byte, where NLM_F_REQUEST is


def direction(flags: int, pkttype: int, datagram: bytes, order: ByteOrder) -> bool | None:
    """epb_flags bits 0-1, else the pseudo-header's mark, else the datagram's NLM_F_REQUEST."""
    if flags & 3 in (1, 2):
        return flags & 3 == 2
    if pkttype == 0:
        return False
    if len(datagram) >= 16:
        return bool(datagram[request_byte(order)] & 1)
    return None


def construct_pcapng_records(data: bytes) -> tuple[list[CaptureRecord], str]:
    """The records and symbols of a well-formed pcapng, by construct's parse of each block."""
    records: list[CaptureRecord] = []
    symbols = ""
    offset = 0
    order: ByteOrder = LE
    interfaces: list[Any] = []
    clocks: list[tuple[int, int]] = []
    last_ns = 0
    while offset < len(data):
        if data[offset : offset + 4] == b"\x0a\x0d\x0d\x0a":
            order = LE if data[offset + 8 : offset + 12] == b"\x4d\x3c\x2b\x1a" else BE
            interfaces, clocks, last_ns = [], [], 0
        block_type, length = struct.unpack_from(endian(order) + "II", data, offset)
        definition = BODIES[block_type](order) if block_type in BODIES else GreedyBytes
        block = schema.block(order, block_type, definition).parse(data[offset : offset + length])
        body = block.body
        options = [] if block_type in (BLOCK_SPB, 4) else list(body.options)
        if block_type == BLOCK_IDB:
            resolution, seconds = 6, 0
            for item in options:
                if item.code == 9 and item.value:
                    resolution = item.value[0]
                elif item.code == 14 and len(item.value) == 8:
                    seconds = int.from_bytes(item.value, order, signed=True)
            ticks = 2 ** (resolution & 0x7F) if resolution & 0x80 else 10**resolution
            interfaces.append(body)
            clocks.append((ticks, seconds * 10**9))
        elif block_type == BLOCK_ISB:
            for item in options:
                text = item.value.decode("utf-8", errors="replace")
                if item.code == 1 and text.startswith(SYMBOLS_MARK):
                    symbols += text[len(SYMBOLS_MARK) :]
        elif block_type in (BLOCK_EPB, BLOCK_PB, BLOCK_SPB):
            if block_type == BLOCK_SPB:
                interface_id, flags = 0, 0
                limit = interfaces[0].snaplen or 262144
                caplen = min(body.original_length, limit, len(body.packet_data_padded))
                packet = body.packet_data_padded[:caplen]
                timestamp = last_ns
            else:
                interface_id = body.interface_id
                flag_values = [o.value for o in options if o.code == 2 and len(o.value) == 4]
                flags = int.from_bytes(flag_values[0], order) if flag_values else 0
                packet = body.packet_data
                ticks, offset_ns = clocks[interface_id]
                stamp = (body.timestamp_high << 32) | body.timestamp_low
                timestamp = stamp * 10**9 // ticks + offset_ns
            if interfaces[interface_id].linktype == 253:
                header = schema.COOKED_HEADER.parse(packet)
                datagram = packet[16:]
                outgoing = direction(flags, header.pkttype, datagram, order)
                original = max(body.original_length - 16, 0)
                records.append(
                    CaptureRecord(timestamp, datagram, outgoing, header.protocol, offset, original)
                )
                last_ns = timestamp
        offset += length
    return records, symbols


def read_all(data: bytes, *, fast: bool, keep_going: bool = False) -> tuple[CaptureReader, Any]:
    """The reader after its walk, and its records (or the sentence that stopped it)."""
    reader = CaptureReader(io.BytesIO(data), keep_going=keep_going, _fast=fast)
    try:
        return reader, list(reader)
    except CaptureError as error:
        return reader, str(error)


@EXAMPLES
@given(pcapng_files())
def test_generated_pcapng_reads_as_construct_parses_it(data: bytes) -> None:
    records, symbols = construct_pcapng_records(data)
    for fast in (True, False):
        reader, read = read_all(data, fast=fast)
        assert read == records
        assert (reader.symbols, reader.bad_records) == (symbols, 0)


@st.composite
def pcap_files(draw: st.DrawFn) -> bytes:
    order = draw(st.sampled_from(ORDERS))
    header = {
        "magic": draw(st.sampled_from([0xA1B2C3D4, 0xA1B23C4D])),
        "version_major": 2,
        "version_minor": 4,
        "thiszone": 0,
        "sigfigs": 0,
        "snaplen": draw(st.sampled_from([0, 65535, 262144])),
        "linktype": 253 | draw(st.sampled_from([0, 0x10000000])),  # with FCS bits, or not
    }
    parts = [schema.pcap_file_header(order).build(header)]
    for _ in range(draw(st.integers(0, 6))):
        packet = draw(packets())
        record = {
            "ts_sec": draw(st.integers(0, 0xFFFFFFFF)),
            "ts_frac": draw(st.integers(0, 0xFFFFFFFF)),
            "captured_length": len(packet),
            "original_length": len(packet) + draw(st.integers(0, 8)),
            "packet_data": packet,
        }
        parts.append(schema.pcap_record(order).build(record))
    return b"".join(parts)


def pcap_order(data: bytes) -> ByteOrder:
    return LE if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else BE


def construct_pcap_record(data: bytes, offset: int, order: ByteOrder) -> tuple[CaptureRecord, int]:
    """The record at ``offset`` by construct's parse, and where the next one starts."""
    magic = schema.pcap_file_header(order).parse(data).magic
    frac_to_ns = 1000 if magic == 0xA1B2C3D4 else 1
    record = schema.pcap_record(order).parse(data[offset:])
    header = schema.COOKED_HEADER.parse(record.packet_data)
    datagram = record.packet_data[16:]
    expected = CaptureRecord(
        record.ts_sec * 10**9 + record.ts_frac * frac_to_ns,
        datagram,
        direction(0, header.pkttype, datagram, order),
        header.protocol,
        offset,
        max(record.original_length - 16, 0),
    )
    return expected, offset + 16 + record.captured_length


@EXAMPLES
@given(pcap_files())
def test_generated_pcap_reads_as_construct_parses_it(data: bytes) -> None:
    order = pcap_order(data)
    records = []
    offset = schema.pcap_file_header(order).sizeof()
    while offset < len(data):
        record, offset = construct_pcap_record(data, offset, order)
        records.append(record)
    for fast in (True, False):
        reader, read = read_all(data, fast=fast)
        assert read == records
        assert reader.bad_records == 0


# =========================================================================== damaged files


def section_order(reader: CaptureReader, offset: int) -> ByteOrder:
    """The byte order of the section the reader read the block at ``offset`` in."""
    return [section for section in reader.info.sections if section.offset <= offset][-1].byte_order


def assert_pcapng_record_is_the_definitions(
    data: bytes, record: CaptureRecord, order: ByteOrder
) -> None:
    block_type = struct.unpack_from(endian(order) + "I", data, record.offset)[0]
    block = fixed_prefix(schema.block(order, block_type, Pass)).parse(data[record.offset :])
    body_bytes = data[record.offset + 8 : record.offset + block.total_length - 4]
    if block.block_type == BLOCK_SPB:
        body = schema.spb_body(order).parse(body_bytes)
        assert record.data == body.packet_data_padded[16 : 16 + len(record.data)]
    else:
        definition = BODIES[block.block_type](order)
        through_data = [subcon.name for subcon in definition.subcons].index("packet_data") + 1
        body = Struct(*definition.subcons[:through_data]).parse(body_bytes)
        assert record.data == body.packet_data[16:]
        assert record.protocol == schema.COOKED_HEADER.parse(body.packet_data).protocol
    assert record.original_length == max(body.original_length - 16, 0)


@EXAMPLES
@given(
    st.one_of(pcapng_files(), pcap_files()),
    st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), min_size=1, max_size=4),
    st.booleans(),
)
def test_damaged_files_give_only_records_construct_parses_at_their_offsets(
    data: bytes, changes: list[tuple[int, int]], keep_going: bool
) -> None:
    mutated = bytearray(data)
    for position, value in changes:
        mutated[position % len(mutated)] = value
    damaged = bytes(mutated)
    assert outcome(damaged, keep_going=keep_going) == outcome(
        damaged, keep_going=keep_going, fast=False
    )
    try:
        reader, read = read_all(damaged, fast=True, keep_going=keep_going)
    except CaptureError:
        return  # no readable header: nothing was read
    records = read if isinstance(read, list) else []
    for record in records:
        if record.protocol > 0xFFFF:  # a tracepoint interface's record: no pseudo-header
            continue
        if reader.info.format == "pcap":
            order = reader.info.byte_order
            assert construct_pcap_record(damaged, record.offset, order)[0] == record
        else:
            assert_pcapng_record_is_the_definitions(
                damaged, record, section_order(reader, record.offset)
            )
