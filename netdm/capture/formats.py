"""Numbers of the pcap and pcapng formats: magics, block types, option codes, link types.

Strategy: every number here is quoted from its specification, so a grep
finds it: the pcap file format (draft-ietf-opsawg-pcap, libpcap's
``pcap/pcap.h``), the pcapng format (draft-ietf-opsawg-pcapng), and
tcpdump.org's ``LINKTYPE_NETLINK`` page for the 16-byte cooked pseudo-header.
The *definitions* of the structures are the construct declarations in
:mod:`netdm.capture.schema`; their sizes, offsets and ``struct`` layouts are
derived from them in :mod:`netdm.capture.layouts`, not written here.  This
module imports nothing, so ``import netdm.capture`` costs no construct import.
"""

from __future__ import annotations

from typing import Any, Literal

ByteOrder = Literal["little", "big"]
CaptureFormat = Literal["pcap", "pcapng"]

# --------------------------------------------------------------------------- classic pcap
PCAP_MAGIC_MICROSECONDS = 0xA1B2C3D4
PCAP_MAGIC_NANOSECONDS = 0xA1B23C4D
PCAP_VERSION = (2, 4)

# --------------------------------------------------------------------------- pcapng
BLOCK_SHB = 0x0A0D0D0A  # Section Header Block (palindromic: readable in either order)
BLOCK_IDB = 0x00000001  # Interface Description Block
BLOCK_PB = 0x00000002  # Packet Block (obsolete)
BLOCK_SPB = 0x00000003  # Simple Packet Block
BLOCK_NRB = 0x00000004  # Name Resolution Block
BLOCK_ISB = 0x00000005  # Interface Statistics Block
BLOCK_EPB = 0x00000006  # Enhanced Packet Block
BLOCK_DSB = 0x0000000A  # Decryption Secrets Block
BLOCK_CB_COPY = 0x00000BAD  # Custom Block, may be copied
BLOCK_CB_NOCOPY = 0x40000BAD  # Custom Block, must not be copied
BYTE_ORDER_MAGIC = 0x1A2B3C4D
PCAPNG_VERSION = (1, 0)
SECTION_LENGTH_UNKNOWN = -1

# Option codes.  Codes 0 and 1 are common to every block.
OPT_ENDOFOPT = 0
OPT_COMMENT = 1
SHB_HARDWARE = 2
SHB_OS = 3
SHB_USERAPPL = 4
IF_NAME = 2
IF_DESCRIPTION = 3
IF_TSRESOL = 9
IF_OS = 12
IF_TSOFFSET = 14
IF_HARDWARE = 15
EPB_FLAGS = 2  # also pack_flags of the obsolete Packet Block
ISB_STARTTIME = 2
ISB_ENDTIME = 3
ISB_IFDROP = 5
OPTION_VALUE_MAX = 0xFFFF  # an option's length is a u16

# epb_flags bits 0-1: inbound/outbound direction (0 = not available).
EPB_FLAGS_DIRECTION_MASK = 0x3
EPB_FLAGS_INBOUND = 0x1
EPB_FLAGS_OUTBOUND = 0x2

DEFAULT_TSRESOL = 6  # microseconds, when an IDB has no if_tsresol
NANOSECOND_TSRESOL = 9

# --------------------------------------------------------------------------- LINKTYPE_NETLINK
LINKTYPE_NETLINK = 253
ARPHRD_NETLINK = 824
NETLINK_GENERIC = 16
PACKET_HOST = 0  # sll_pkttype "to us": netdm's mark for what it received
PACKET_OUTGOING = 4  # "by us": netdm's mark for what it sent; libpcap on nlmon marks everything so
NLMSG_HDRLEN = 16
NLM_F_REQUEST = 0x1

# libpcap's and Wireshark's ceiling for a packet (MAXIMUM_SNAPLEN, WTAP_MAX_PACKET_SIZE_STANDARD).
MAX_SNAPLEN = 262144
# A block longer than this that runs past the end of the file is damage, not a cut-off write
# (Wireshark's MAX_BLOCK_SIZE is 16 MiB as well).
MAX_PLAUSIBLE_BLOCK = 16 * 1024 * 1024

# How netdm's pcapng capture carries kallsyms lines: opt_comment options of an Interface
# Statistics Block, each starting with this line (see docs/captures.md).
SYMBOLS_COMMENT_MARK = "netdm-kallsyms 1\n"
SYMBOLS_SIDE_FILE_SUFFIX = ".symbols"

# --------------------------------------------------------------------------- tracepoint captures
# The skb:kfree_skb tracepoint source writes its records (the kernel's binary event
# records, as read from the ring buffer) on an interface of the first "user" link type,
# marked by an if comment that starts with this line and holds the event's tracefs
# format file, so a replay decodes with the recording kernel's layout and reason names.
# Lost events travel as the cumulative isb_ifdrop of Interface Statistics Blocks.
# docs/captures.md describes the format.
LINKTYPE_USER0 = 147
TRACEPOINT_FORMAT_MARK = "netdm-tracepoint 1\n"
TRACEPOINT_INTERFACE_DESCRIPTION = "skb:kfree_skb tracepoint records (netdm)"
# CaptureRecord.protocol of what a tracepoint interface holds: outside the 16-bit range
# of netlink protocol numbers, so never taken for a netlink datagram.
RECORD_TRACEPOINT = 0x1_0000
RECORD_TRACEPOINT_LOST = 0x1_0001

LINKTYPE_NAMES = {
    0: "BSD loopback",
    1: "Ethernet",
    101: "raw IP",
    105: "IEEE 802.11",
    113: "Linux cooked v1",
    147: "user 0",
    127: "IEEE 802.11 radiotap",
    195: "IEEE 802.15.4",
    220: "Linux USB",
    228: "raw IPv4",
    229: "raw IPv6",
    253: "netlink",
    276: "Linux cooked v2",
}

BLOCK_NAMES = {
    BLOCK_SHB: "Section Header Block",
    BLOCK_IDB: "Interface Description Block",
    BLOCK_PB: "Packet Block",
    BLOCK_SPB: "Simple Packet Block",
    BLOCK_NRB: "Name Resolution Block",
    BLOCK_ISB: "Interface Statistics Block",
    BLOCK_EPB: "Enhanced Packet Block",
    BLOCK_DSB: "Decryption Secrets Block",
    BLOCK_CB_COPY: "Custom Block",
    BLOCK_CB_NOCOPY: "Custom Block",
}
PACKET_BLOCKS = frozenset({BLOCK_EPB, BLOCK_SPB, BLOCK_PB})


def linktype_name(linktype: int) -> str:
    """``"1 (Ethernet)"``: a link type number with its name where netdm knows it."""
    name = LINKTYPE_NAMES.get(linktype)
    return f"{linktype} ({name})" if name else str(linktype)


def block_name(block_type: int) -> str:
    """The pcapng name of a block type, for messages."""
    return BLOCK_NAMES.get(block_type, f"block of type 0x{block_type:08x}")


# Sizes, offsets and layouts this module held before they were derived from the schema, by
# name: still importable from here (derived on first use, see __getattr__).
_DERIVED_ELSEWHERE = {
    "PCAP_FILE_HEADER_LEN": "pcap_file_header_len",
    "PCAP_RECORD_HEADER_LEN": "pcap_record_header_len",
    "PCAP_LINKTYPE_OFFSET": "pcap_linktype_offset",
    "BLOCK_HEADER_LEN": "block_header_len",
    "BLOCK_MIN_LEN": "block_min_len",
    "COOKED_HEADER_LEN": "cooked_header_len",
    "COOKED_HEADER": "cooked_header",
    "COOKED_PKTTYPE_AND_PROTOCOL": "cooked_pkttype_and_protocol",
}
_SHAPES_ELSEWHERE = {
    "SHB_MIN_LEN": (BLOCK_SHB, "min_length"),
    "IDB_MIN_LEN": (BLOCK_IDB, "min_length"),
    "EPB_MIN_LEN": (BLOCK_EPB, "min_length"),
    "SPB_MIN_LEN": (BLOCK_SPB, "min_length"),
    "PB_MIN_LEN": (BLOCK_PB, "min_length"),
    "ISB_MIN_LEN": (BLOCK_ISB, "min_length"),
    "EPB_DATA_OFFSET": (BLOCK_EPB, "rest_offset"),
    "SPB_DATA_OFFSET": (BLOCK_SPB, "rest_offset"),
    "PB_DATA_OFFSET": (BLOCK_PB, "rest_offset"),
}


def __getattr__(name: str) -> Any:
    """The names of :mod:`netdm.capture.layouts` this module used to define (PEP 562)."""
    if name not in ("LAYOUTS", "Layouts", *_DERIVED_ELSEWHERE, *_SHAPES_ELSEWHERE):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from netdm.capture import layouts

    if name in ("LAYOUTS", "Layouts"):
        return getattr(layouts, name)
    either = layouts.LAYOUTS["big"]  # sizes and offsets are the same in either byte order
    if name in _DERIVED_ELSEWHERE:
        return getattr(either, _DERIVED_ELSEWHERE[name])
    block_type, attribute = _SHAPES_ELSEWHERE[name]
    return getattr(either.shapes[block_type], attribute)
