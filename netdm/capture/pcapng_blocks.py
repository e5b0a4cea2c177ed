"""pcapng blocks and options: reading one block whose framing the walk has checked.

Strategy: each block type has one method, plain and readable, that takes the
block's bytes in the buffer and either updates the section (a Section Header
Block starts one, an Interface Description Block adds an interface, an
Interface Statistics Block may carry netdm's symbols) or gives a
:class:`~netdm.capture.records.CaptureRecord` (Enhanced, Simple and obsolete
Packet Blocks).  Sizes, offsets and ``struct`` layouts come from
:mod:`netdm.capture.layouts`, derived from the construct definitions; option
codes whose value is text are read through one table per block type.  This is
also the general path that the record loop's fast path is tested against.
"""

from __future__ import annotations

from netdm.capture.damage import ReaderBase, a_or_an
from netdm.capture.formats import (
    BLOCK_EPB,
    BLOCK_IDB,
    BLOCK_ISB,
    BLOCK_SHB,
    BLOCK_SPB,
    EPB_FLAGS,
    IF_DESCRIPTION,
    IF_HARDWARE,
    IF_NAME,
    IF_OS,
    IF_TSOFFSET,
    IF_TSRESOL,
    ISB_IFDROP,
    LINKTYPE_NETLINK,
    LINKTYPE_USER0,
    MAX_SNAPLEN,
    OPT_COMMENT,
    OPT_ENDOFOPT,
    RECORD_TRACEPOINT,
    RECORD_TRACEPOINT_LOST,
    SHB_HARDWARE,
    SHB_OS,
    SHB_USERAPPL,
    SYMBOLS_COMMENT_MARK,
    linktype_name,
)
from netdm.capture.info import InterfaceInfo, SectionInfo, tracepoint_format_of
from netdm.capture.layouts import LAYOUTS, BlockShape, Layouts
from netdm.capture.records import CaptureRecord, outgoing_of
from netdm.capture.window import BYTE_ORDER_MAGICS, NS_PER_SECOND

# The options whose value is text, by block: option code → attribute (opt_comment collects).
SHB_TEXT_OPTIONS = {SHB_HARDWARE: "hardware", SHB_OS: "os", SHB_USERAPPL: "application"}
IDB_TEXT_OPTIONS = {
    IF_NAME: "name",
    IF_DESCRIPTION: "description",
    IF_OS: "os",
    IF_HARDWARE: "hardware",
}


def _text(value: bytes) -> str:
    """An option's UTF-8 text, up to a NUL (some writers count one in the length)."""
    return value.split(b"\x00", 1)[0].decode("utf-8", errors="replace")


def _text_options(
    target: SectionInfo | InterfaceInfo, options: list[tuple[int, bytes]], table: dict[int, str]
) -> tuple[str, ...]:
    """Set ``target``'s text attributes from ``options`` by ``table``; return the comments."""
    comments = []
    for code, value in options:
        if code == OPT_COMMENT:
            comments.append(_text(value))
        elif code in table:
            setattr(target, table[code], _text(value))
    return tuple(comments)


def parse_options(
    buf: bytes, start: int, stop: int, layouts: Layouts
) -> tuple[list[tuple[int, bytes]], str | None]:
    """Options in ``buf[start:stop]``: (code, value) pairs, and what is wrong if anything."""
    options: list[tuple[int, bytes]] = []
    position = start
    header = layouts.option_header
    header_len = header.size
    while stop - position >= header_len:
        code, length = header.unpack_from(buf, position)
        if code == OPT_ENDOFOPT:
            break
        value_start = position + header_len
        if value_start + length > stop:
            return options, (
                f"its option {code} of {length} bytes at offset +{position - start} "
                "runs past the end of its options"
            )
        options.append((code, buf[value_start : value_start + length]))
        position = value_start + ((length + 3) & ~3)
    return options, None


class Section:
    """Per-section state of the pcapng walk."""

    __slots__ = (
        "info",
        "layouts",
        "interfaces",
        "request_index",
        "has_netlink",
        "tracepoint_interfaces",
        "last_ns",
    )

    def __init__(self, info: SectionInfo) -> None:
        self.info = info
        self.layouts = LAYOUTS[info.byte_order]
        # Per interface: (is netlink, snaplen limit, multiplier, divisor, offset ns).
        self.interfaces: list[tuple[bool, int, int, int, int]] = []
        self.request_index = 6 if info.byte_order == "little" else 7  # NLM_F_REQUEST's byte
        self.has_netlink = False  # or tracepoint records: something netdm reads
        self.tracepoint_interfaces: set[int] = set()  # ids of netdm tracepoint interfaces
        self.last_ns = 0


def interface_clock(interface: InterfaceInfo) -> tuple[int, int, int]:
    """(multiplier, divisor, offset ns) turning raw ticks into Unix nanoseconds."""
    ticks = interface.ticks_per_second
    if NS_PER_SECOND % ticks == 0:
        multiplier, divisor = NS_PER_SECOND // ticks, 1
    elif ticks % NS_PER_SECOND == 0:
        multiplier, divisor = 1, ticks // NS_PER_SECOND
    else:
        multiplier, divisor = NS_PER_SECOND, ticks
    return multiplier, divisor, interface.tsoffset_seconds * NS_PER_SECOND


class PcapngBlocks(ReaderBase):
    """Reading one pcapng block whose framing is sound: section headers, interfaces, packets."""

    def _section_at(self, pos: int) -> tuple[int, Section | None]:
        """Parse the Section Header Block at ``pos``: (position after it, section or None).

        None means the block cannot be framed; the problem is recorded.
        """
        inp = self._input
        either = LAYOUTS["big"]  # sizes and offsets are the same in either byte order
        shape = either.shapes[BLOCK_SHB]
        magic_at = either.byte_order_magic_offset
        need = magic_at + either.u32.size  # the block header and the magic: the order
        if len(inp.buf) - pos < need:
            pos = inp.fill(pos, need)
        buf, base = inp.buf, inp.base
        if len(buf) - pos < need:
            self._cut(
                base + pos,
                "a Section Header Block",
                shape.min_length,
                len(buf) - pos,
                at_least=True,
            )
            return pos, None
        magic = buf[pos + magic_at : pos + need]
        order = BYTE_ORDER_MAGICS.get(magic)
        if order is None:
            self._problem(
                base + pos,
                f"has a corrupt Section Header Block at offset {base + pos}: its byte-order "
                f"magic {magic.hex()} is neither 1a2b3c4d nor 4d3c2b1a",
            )
            return pos, None
        layouts = LAYOUTS[order]
        length = layouts.block_header.unpack_from(buf, pos)[1]
        framing = self._framing_problem(base + pos, length, shape.min_length, shape.name)
        if framing:
            self._problem(base + pos, framing)
            return pos, None
        if len(buf) - pos < length:
            pos = inp.fill(pos, length)
            buf, base = inp.buf, inp.base
            if len(buf) - pos < length:
                self._cut(base + pos, "a Section Header Block", length, len(buf) - pos)
                return pos, None
        trailing = layouts.u32.unpack_from(buf, pos + length - 4)[0]
        _, major, minor, _ = layouts.shb_fixed.unpack_from(buf, pos + layouts.block_header_len)
        info = SectionInfo(offset=base + pos, byte_order=order, version=(major, minor))
        section = Section(info)
        if trailing != length:
            self._problem(base + pos, self._trailing_problem(base + pos, trailing, length))
            return pos + length, section
        if major != 1:
            self._problem(
                base + pos,
                f"has a Section Header Block at offset {base + pos} of pcapng version "
                f"{major}.{minor}; netdm reads version 1.x",
            )
            return pos + length, None
        options, bad = parse_options(buf, pos + shape.rest_offset, pos + length - 4, layouts)
        info.comments = _text_options(info, options, SHB_TEXT_OPTIONS)
        if bad:
            self._problem(base + pos, f"has a corrupt block at offset {base + pos}: {bad}")
        return pos + length, section

    @staticmethod
    def _too_short(offset: int, length: int, shape: BlockShape) -> str:
        return (
            f"has a corrupt block at offset {offset}: its total length {length} is shorter "
            f"than the {shape.min_length} bytes of {a_or_an(shape.name)}"
        )

    @staticmethod
    def _no_interface(offset: int, interface_id: int, section: Section) -> str:
        count = len(section.interfaces)
        return (
            f"has a record at offset {offset} for interface {interface_id}, but its section "
            f"(offset {section.info.offset}) has described {count} interface"
            + ("" if count == 1 else "s")
        )

    def _odd_record(self, offset: int, caplen: int, interface_id: int, section: Section) -> None:
        """A well-framed packet block that cannot be a netlink record: say why, or skip it."""
        is_netlink, limit, _, _, _ = section.interfaces[interface_id]
        interface = section.info.interfaces[interface_id]
        if not is_netlink:
            if section.has_netlink:
                self.foreign_records += 1
                return
            field_offset = interface.offset + section.layouts.idb_linktype_offset
            self._problem(
                field_offset,
                f"declares link type {linktype_name(interface.linktype)} at offset "
                f"{field_offset}, not netlink ({LINKTYPE_NETLINK}), for the record at offset "
                f"{offset}",
            )
        elif caplen > limit:
            self._problem(
                offset,
                f"has a corrupt record at offset {offset}: its captured length {caplen} "
                f"exceeds the snapshot length {limit}",
            )
        else:
            self._problem(offset, self._short_record(offset, caplen))

    def _packet_flags(
        self, buf: bytes, start: int, stop: int, section: Section, offset: int
    ) -> int | bool:
        """The epb_flags / pack_flags value (0 if absent), or False for broken options.

        ``start``/``stop`` bound the options in ``buf``; ``offset`` is the block's, for messages.
        """
        layouts = section.layouts
        code, length = layouts.option_header.unpack_from(buf, start)
        value_start = start + layouts.option_header_len
        u32 = layouts.u32
        if code == EPB_FLAGS and length == u32.size and value_start + u32.size <= stop:
            flags: int = u32.unpack_from(buf, value_start)[0]  # netdm's own layout
            return flags
        options, bad = parse_options(buf, start, stop, layouts)
        if bad:
            self._problem(offset, f"has a corrupt record at offset {offset}: {bad}")
            return False
        for code, value in options:
            if code == EPB_FLAGS and len(value) == u32.size:
                flags = u32.unpack_from(value)[0]
                return flags
        return 0

    def _interface(self, buf: bytes, pos: int, length: int, base: int, section: Section) -> None:
        offset = base + pos
        layouts = section.layouts
        shape = layouts.shapes[BLOCK_IDB]
        if length < shape.min_length:
            self._problem(offset, self._too_short(offset, length, shape))
            return
        linktype, _, snaplen = shape.fixed.unpack_from(buf, pos + layouts.block_header_len)
        interface = InterfaceInfo(offset=offset, linktype=linktype, snaplen=snaplen)
        options, bad = parse_options(buf, pos + shape.rest_offset, pos + length - 4, layouts)
        interface.comments = _text_options(interface, options, IDB_TEXT_OPTIONS)
        for code, value in options:
            if code == IF_TSRESOL and value:
                interface.tsresol = value[0]
            elif code == IF_TSOFFSET and len(value) == layouts.i64.size:
                interface.tsoffset_seconds = layouts.i64.unpack_from(value)[0]
        # Registered even when its options are damaged: the records after it refer to it.
        section.info.interfaces.append(interface)
        is_netlink = linktype == LINKTYPE_NETLINK
        if linktype == LINKTYPE_USER0 and tracepoint_format_of(interface) is not None:
            section.tracepoint_interfaces.add(len(section.interfaces))
            section.has_netlink = True
        section.has_netlink = section.has_netlink or is_netlink
        section.interfaces.append((is_netlink, snaplen or MAX_SNAPLEN, *interface_clock(interface)))
        if bad:
            self._problem(offset, f"has a corrupt block at offset {offset}: {bad}")

    def _statistics(
        self, buf: bytes, pos: int, length: int, base: int, section: Section
    ) -> CaptureRecord | None:
        """Symbols from an ISB's comments; a tracepoint interface's lost events as a record."""
        offset = base + pos
        layouts = section.layouts
        shape = layouts.shapes[BLOCK_ISB]
        if length < shape.min_length:
            self._problem(offset, self._too_short(offset, length, shape))
            return None
        options, bad = parse_options(buf, pos + shape.rest_offset, pos + length - 4, layouts)
        lost: bytes | None = None
        for code, value in options:
            if code == OPT_COMMENT:
                text = value.decode("utf-8", errors="replace")
                if text.startswith(SYMBOLS_COMMENT_MARK):
                    self.info.symbols += text[len(SYMBOLS_COMMENT_MARK) :]
            elif code == ISB_IFDROP and len(value) == 8:
                lost = value
        if bad:
            self._problem(offset, f"has a corrupt block at offset {offset}: {bad}")
            return None
        interface_id, high, low = shape.fixed.unpack_from(buf, pos + layouts.block_header_len)
        if lost is None or interface_id not in section.tracepoint_interfaces:
            return None
        _, _, multiplier, divisor, offset_ns = section.interfaces[interface_id]
        timestamp = ((high << 32) | low) * multiplier // divisor + offset_ns
        count = int.from_bytes(lost, section.info.byte_order)
        # data: the cumulative count as 8 little-endian bytes, whatever the file's order.
        return CaptureRecord(
            timestamp, count.to_bytes(8, "little"), None, RECORD_TRACEPOINT_LOST, offset, 8
        )

    def _packet(
        self,
        buf: bytes,
        pos: int,
        length: int,
        base: int,
        block_type: int,
        section: Section,
        last_ns: int,
    ) -> CaptureRecord | None:
        """An Enhanced, Simple or obsolete Packet Block, whose framing is sound."""
        offset = base + pos
        layouts = section.layouts
        shape = layouts.shapes[block_type]
        fixed_at = pos + layouts.block_header_len
        data_offset = shape.rest_offset
        flags: int | bool = 0
        timestamp: int | None = None
        if length < shape.min_length:
            self._problem(offset, self._too_short(offset, length, shape))
            return None
        if block_type == BLOCK_SPB:
            if not section.interfaces:
                self._problem(offset, self._no_interface(offset, 0, section))
                return None
            origlen = shape.fixed.unpack_from(buf, fixed_at)[0]
            interface_id = 0
            caplen = min(origlen, section.interfaces[0][1], length - shape.min_length)
            timestamp = last_ns  # an SPB has no timestamp: repeat the previous one
        else:
            if block_type == BLOCK_EPB:
                interface_id, high, low, caplen, origlen = shape.fixed.unpack_from(buf, fixed_at)
            else:
                interface_id, _, high, low, caplen, origlen = shape.fixed.unpack_from(buf, fixed_at)
            if caplen > length - shape.min_length:
                self._problem(offset, self._caplen_problem(offset, caplen, length))
                return None
            if interface_id >= len(section.interfaces):
                self._problem(offset, self._no_interface(offset, interface_id, section))
                return None
            options_start = pos + data_offset + ((caplen + 3) & ~3)
            if options_start < pos + length - 4:
                flags = self._packet_flags(buf, options_start, pos + length - 4, section, offset)
                if flags is False:
                    return None
        is_netlink, limit, multiplier, divisor, offset_ns = section.interfaces[interface_id]
        if interface_id in section.tracepoint_interfaces and caplen <= limit:
            if timestamp is None:
                timestamp = ((high << 32) | low) * multiplier // divisor + offset_ns
            start = pos + data_offset
            return CaptureRecord(
                timestamp, buf[start : start + caplen], False, RECORD_TRACEPOINT, offset, origlen
            )
        cooked_len = layouts.cooked_header_len
        if not is_netlink or caplen > limit or caplen < cooked_len:
            self._odd_record(offset, caplen, interface_id, section)
            return None
        if timestamp is None:
            timestamp = ((high << 32) | low) * multiplier // divisor + offset_ns
        start = pos + data_offset
        data = buf[start + cooked_len : start + caplen]
        pkttype, protocol = layouts.cooked_pkttype_and_protocol.unpack_from(buf, start)
        outgoing = outgoing_of(int(flags), pkttype, data, section.request_index)
        original = origlen - cooked_len if origlen > cooked_len else 0
        return CaptureRecord(timestamp, data, outgoing, protocol, offset, original)
