"""pcap and pcapng structures as construct declarations: the definition of the bytes.

Strategy: each structure netdm reads or writes is declared here the way its
specification draws it (draft-ietf-opsawg-pcap §4-5, draft-ietf-opsawg-pcapng
§3-4, tcpdump.org ``LINKTYPE_NETLINK``), parameterised by byte order because
both formats are written in the writer's host order.  The reader and writer
do not parse with construct (a block takes tens of microseconds, far too slow
for a million records): they use ``struct`` layouts that
:mod:`netdm.capture.layouts` reads off these declarations (their leading
fixed-size fields) when the first capture is opened, so nothing here is
written twice and ``import netdm.capture`` stays free of construct.  The
tests (``tests/capture/test_capture_definitions.py``) build and parse files
both ways and require equal fields, equal records and equal bytes.

A block's ``total_length`` is not rebuilt automatically: callers pass it
(``12 + len(body)``), and :func:`block` checks it against the trailing copy
when parsing.  Option lists are closed with ``Terminated`` inside the
length-bounded body, so a truncated option fails instead of vanishing
(construct's ``GreedyRange`` would swallow it).
"""

from __future__ import annotations

from construct import (
    Bytes,
    Check,
    Const,
    Construct,
    FixedSized,
    FocusedSeq,
    GreedyBytes,
    GreedyRange,
    Int16sb,
    Int16sl,
    Int16ub,
    Int16ul,
    Int32sb,
    Int32sl,
    Int32ub,
    Int32ul,
    Int64sb,
    Int64sl,
    Padding,
    Struct,
    Terminated,
    this,
)

from netdm.capture.formats import BYTE_ORDER_MAGIC, ByteOrder

_INTS = {
    "little": (Int16ul, Int32ul, Int32sl, Int64sl, Int16sl),
    "big": (Int16ub, Int32ub, Int32sb, Int64sb, Int16sb),
}


def _padding_to_4(length_field: str) -> Construct:
    return Padding(lambda ctx: -ctx[length_field] % 4)


def pcap_file_header(order: ByteOrder) -> Construct:
    """The 24-byte classic pcap file header (draft-ietf-opsawg-pcap §4)."""
    u16, u32, s32, _, _ = _INTS[order]
    return Struct(
        "magic" / u32,  # 0xA1B2C3D4 microseconds, 0xA1B23C4D nanoseconds
        "version_major" / u16,
        "version_minor" / u16,
        "thiszone" / s32,  # "Reserved1": always 0
        "sigfigs" / u32,  # "Reserved2": always 0
        "snaplen" / u32,
        "linktype" / u32,  # low 16 bits: LINKTYPE_; high bits: FCS length
    )


def pcap_record(order: ByteOrder) -> Construct:
    """A classic pcap record: 16-byte header and the captured bytes (§5)."""
    _, u32, _, _, _ = _INTS[order]
    return Struct(
        "ts_sec" / u32,
        "ts_frac" / u32,  # microseconds or nanoseconds, by the file's magic
        "captured_length" / u32,
        "original_length" / u32,
        "packet_data" / Bytes(this.captured_length),
    )


# LINKTYPE_NETLINK's pseudo-header, always big-endian ("SLL-like").
COOKED_HEADER = Struct(
    "pkttype" / Int16ub,  # unused by the format; netdm: PACKET_HOST / PACKET_OUTGOING
    "hatype" / Int16ub,  # ARPHRD_NETLINK (824)
    Padding(10),  # SLL address length and address: unused
    "protocol" / Int16ub,  # NETLINK_GENERIC (16), NETLINK_ROUTE (0), ...
)


def option(order: ByteOrder) -> Construct:
    """One pcapng option: code, length, value padded to 32 bits (§3.5)."""
    u16, _, _, _, _ = _INTS[order]
    return Struct(
        "code" / u16,
        "length" / u16,
        "value" / Bytes(this.length),
        _padding_to_4("length"),
    )


def options(order: ByteOrder) -> Construct:
    """The rest of a block body: options up to the end, opt_endofopt included if present."""
    return FocusedSeq("options", "options" / GreedyRange(option(order)), Terminated)


def block(order: ByteOrder, block_type: int, body: Construct) -> Construct:
    """A pcapng block: type, total length, body, and the total length again (§3.1)."""
    _, u32, _, _, _ = _INTS[order]
    return Struct(
        "block_type" / Const(block_type, u32),
        "total_length" / u32,
        "body" / FixedSized(this.total_length - 12, body),
        "trailing_length" / u32,
        Check(this.trailing_length == this.total_length),
    )


def shb_body(order: ByteOrder) -> Construct:
    """Section Header Block body (§4.1): the byte-order magic fixes the section's order."""
    u16, u32, _, s64, _ = _INTS[order]
    return Struct(
        "byte_order_magic" / Const(BYTE_ORDER_MAGIC, u32),
        "major_version" / u16,
        "minor_version" / u16,
        "section_length" / s64,  # -1: not given
        "options" / options(order),  # shb_hardware 2, shb_os 3, shb_userappl 4, opt_comment 1
    )


def idb_body(order: ByteOrder) -> Construct:
    """Interface Description Block body (§4.2)."""
    u16, u32, _, _, _ = _INTS[order]
    return Struct(
        "linktype" / u16,
        "reserved" / u16,
        "snaplen" / u32,  # 0: no limit
        "options" / options(order),  # if_name 2, if_description 3, if_tsresol 9, if_tsoffset 14
    )


def epb_body(order: ByteOrder) -> Construct:
    """Enhanced Packet Block body (§4.3)."""
    _, u32, _, _, _ = _INTS[order]
    return Struct(
        "interface_id" / u32,
        "timestamp_high" / u32,  # in units of the interface's if_tsresol
        "timestamp_low" / u32,
        "captured_length" / u32,
        "original_length" / u32,
        "packet_data" / Bytes(this.captured_length),
        _padding_to_4("captured_length"),
        "options" / options(order),  # epb_flags 2 (bits 0-1: 1 inbound, 2 outbound)
    )


def spb_body(order: ByteOrder) -> Construct:
    """Simple Packet Block body (§4.4): interface 0, no timestamp.

    The captured length is not stored: it is ``min(original_length, snaplen)``
    of interface 0, and the data is padded to 32 bits.
    """
    _, u32, _, _, _ = _INTS[order]
    return Struct("original_length" / u32, "packet_data_padded" / GreedyBytes)


def pb_body(order: ByteOrder) -> Construct:
    """The obsolete Packet Block body (Appendix A): an EPB with a 16-bit interface id."""
    u16, u32, _, _, _ = _INTS[order]
    return Struct(
        "interface_id" / u16,
        "drops_count" / u16,
        "timestamp_high" / u32,
        "timestamp_low" / u32,
        "captured_length" / u32,
        "original_length" / u32,
        "packet_data" / Bytes(this.captured_length),
        _padding_to_4("captured_length"),
        "options" / options(order),  # pack_flags 2, same bits as epb_flags
    )


def isb_body(order: ByteOrder) -> Construct:
    """Interface Statistics Block body (§4.6); netdm's symbols ride in its opt_comment."""
    _, u32, _, _, _ = _INTS[order]
    return Struct(
        "interface_id" / u32,
        "timestamp_high" / u32,
        "timestamp_low" / u32,
        "options" / options(order),  # isb_starttime 2, isb_endtime 3, opt_comment 1
    )


__all__ = [
    "BYTE_ORDER_MAGIC",
    "COOKED_HEADER",
    "block",
    "epb_body",
    "idb_body",
    "isb_body",
    "option",
    "options",
    "pb_body",
    "pcap_file_header",
    "pcap_record",
    "shb_body",
    "spb_body",
]
