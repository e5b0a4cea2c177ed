"""pcapng: the first section, and the block loop that yields the records.

Strategy: the loop walks the blocks of the buffer and has two paths.  The
fast one, inlined, takes only a whole Enhanced Packet Block of a netlink
interface with no options or exactly netdm's ``epb_flags`` (one unpack for
its header, fixed fields and the pseudo-header's two fields, one for its
end).  The general one frames every other block (refills, damage, new
sections) and hands it to :mod:`netdm.capture.pcapng_blocks`; it is also
the reference the fast one is tested against (``_fast=False``).  With
``keep_going`` a block whose framing (total length, trailing length) is
sound but whose content is damaged is counted and skipped whole.  Sizes and
layouts come from :mod:`netdm.capture.layouts` (derived from the schema).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from netdm.capture.damage import a_or_an
from netdm.capture.formats import (
    BLOCK_EPB,
    BLOCK_IDB,
    BLOCK_ISB,
    BLOCK_SHB,
    EPB_FLAGS,
    EPB_FLAGS_DIRECTION_MASK,
    EPB_FLAGS_INBOUND,
    EPB_FLAGS_OUTBOUND,
    NLMSG_HDRLEN,
    OPT_ENDOFOPT,
    PACKET_BLOCKS,
    PACKET_HOST,
    block_name,
)
from netdm.capture.info import CaptureInfo
from netdm.capture.pcapng_blocks import PcapngBlocks, Section, parse_options
from netdm.capture.records import CaptureRecord

_Unpack = Callable[[bytes, int], tuple[Any, ...]]


def _walk_state(
    section: Section,
) -> tuple[_Unpack, _Unpack, _Unpack, _Unpack, list[tuple[bool, int, int, int, int]], int, bool]:
    """What the block loop keeps in locals for a section: its unpackers and interfaces."""
    layouts = section.layouts
    return (
        layouts.block_header.unpack_from,
        layouts.epb_head_cooked.unpack_from,
        layouts.epb_netdm_tail.unpack_from,
        layouts.u32.unpack_from,
        section.interfaces,
        section.request_index,
        section.info.byte_order == "little",  # the pseudo-header's protocol needs a swap
    )


class PcapngRecords(PcapngBlocks):
    """The pcapng half of :class:`netdm.capture.read.CaptureReader`."""

    def _pcapng_header(self) -> tuple[CaptureInfo, Iterator[CaptureRecord]]:
        pos, section = self._section_at(0)  # strict here: raises rather than return None
        if section is None:
            raise self._error(0, "has no readable Section Header Block at offset 0")
        info = CaptureInfo(
            path=self.path,
            format="pcapng",
            byte_order=section.info.byte_order,
            version=section.info.version,
            sections=[section.info],
        )
        return info, self._pcapng_records(self._leading_interfaces(pos, section), section)

    def _leading_interfaces(self, pos: int, section: Section) -> int:
        """Read the sound Interface Description Blocks right after the first SHB.

        So that ``info.linktype`` is known once the reader is open.  Anything
        unusual is left for the walk, which reports it where it belongs.
        """
        inp = self._input
        layouts = section.layouts
        shape = layouts.shapes[BLOCK_IDB]
        shortest = shape.min_length
        while True:
            if len(inp.buf) - pos < shortest:
                pos = inp.fill(pos, shortest)
            buf = inp.buf
            if len(buf) - pos < shortest:
                return pos
            block_type, length = layouts.block_header.unpack_from(buf, pos)
            if block_type != BLOCK_IDB or length % 4 or not shortest <= length <= len(buf) - pos:
                return pos
            if layouts.u32.unpack_from(buf, pos + length - 4)[0] != length:
                return pos
            if parse_options(buf, pos + shape.rest_offset, pos + length - 4, layouts)[1]:
                return pos
            self._interface(buf, pos, length, inp.base, section)
            pos += length

    def _pcapng_records(self, pos: int, section: Section) -> Iterator[CaptureRecord]:
        inp = self._input
        buf = inp.buf
        end = len(buf)
        base = inp.base
        packets = self._packets
        fast = self._fast and packets
        new = tuple.__new__
        block_header, epb_head, netdm_tail, u32, interfaces, request_index, swap = _walk_state(
            section
        )
        layouts = section.layouts
        # Sizes and offsets (the same in either byte order), as locals of the loop.
        block_min_len = layouts.block_min_len
        epb = layouts.shapes[BLOCK_EPB]
        epb_min_len = epb.min_length
        epb_data_offset = epb.rest_offset
        cooked_len = layouts.cooked_header_len
        shortest_record = epb_min_len + cooked_len  # an EPB holding just a pseudo-header
        datagram_offset = epb_data_offset + cooked_len
        flags_size = layouts.u32.size
        # netdm's options: epb_flags and opt_endofopt, the tail without the trailing length.
        netdm_options_len = layouts.epb_netdm_tail.size - layouts.u32.size
        last_ns = 0
        current_id = -1  # the interface whose clock and limits are in the locals below
        is_netlink, limit, multiplier, divisor, offset_ns = False, 0, 1, 1, 0
        while True:
            if fast and end - pos >= shortest_record:
                # The fast path: a whole Enhanced Packet Block of a netlink interface, with no
                # options or netdm's epb_flags; anything else takes the general path below.
                (
                    block_type,
                    length,
                    interface_id,
                    high,
                    low,
                    caplen,
                    origlen,
                    pkttype,
                    protocol,
                ) = epb_head(buf, pos)
                if (
                    block_type == BLOCK_EPB
                    and shortest_record <= length <= end - pos
                    and cooked_len <= caplen <= length - epb_min_len
                    and interface_id < len(interfaces)
                ):
                    if interface_id != current_id:
                        current_id = interface_id
                        is_netlink, limit, multiplier, divisor, offset_ns = interfaces[current_id]
                    options_start = pos + epb_data_offset + ((caplen + 3) & ~3)
                    options_length = pos + length - 4 - options_start
                    flags = 0
                    if options_length == 0:
                        trailing = u32(buf, pos + length - 4)[0]
                    elif options_length == netdm_options_len:
                        code, size, flags, end_code, end_size, trailing = netdm_tail(
                            buf, options_start
                        )
                        if code != EPB_FLAGS or size != flags_size or end_code != OPT_ENDOFOPT:
                            trailing = -1  # another layout: the general path reads it
                    else:
                        trailing = -1
                    if is_netlink and caplen <= limit and trailing == length:
                        data_start = pos + datagram_offset
                        record_end = pos + epb_data_offset + caplen
                        if swap:
                            protocol = ((protocol & 0xFF) << 8) | (protocol >> 8)
                        direction = flags & EPB_FLAGS_DIRECTION_MASK
                        if direction == EPB_FLAGS_INBOUND or (
                            direction != EPB_FLAGS_OUTBOUND and pkttype == PACKET_HOST
                        ):
                            outgoing: bool | None = False
                        elif direction == EPB_FLAGS_OUTBOUND:
                            outgoing = True
                        elif record_end - data_start >= NLMSG_HDRLEN:
                            outgoing = bool(buf[data_start + request_index] & 1)
                        else:
                            outgoing = None
                        last_ns = ((high << 32) | low) * multiplier
                        if divisor != 1:
                            last_ns //= divisor
                        last_ns += offset_ns
                        yield new(
                            CaptureRecord,
                            (
                                last_ns,
                                buf[data_start:record_end],
                                outgoing,
                                protocol,
                                base + pos,
                                origlen - cooked_len if origlen > cooked_len else 0,
                            ),
                        )
                        pos += length
                        continue

            # The general path: refills, other blocks, damage; the reference for the fast path.
            if end - pos < block_min_len:
                pos = inp.fill(pos, block_min_len)
                buf, end, base = inp.buf, len(inp.buf), inp.base
                if end == 0:
                    return
                if end < block_min_len:
                    self._cut(base, "a block", block_min_len, end, at_least=True)
                    return
            block_type, length = block_header(buf, pos)
            if block_type == BLOCK_SHB:
                pos, new_section = self._section_at(pos)
                buf, end, base = inp.buf, len(inp.buf), inp.base
                if new_section is None:
                    return
                section = new_section
                self.info.sections.append(section.info)
                block_header, epb_head, netdm_tail, u32, interfaces, request_index, swap = (
                    _walk_state(section)
                )
                last_ns = 0
                current_id = -1
                continue
            if length & 3 or length < block_min_len:
                self._problem(
                    base + pos,
                    self._framing_problem(base + pos, length, block_min_len, "block") or "",
                )
                return
            if length > end - pos:
                pos = inp.fill(pos, length)
                buf, end, base = inp.buf, len(inp.buf), inp.base
                if length > end:
                    what = (
                        "a record"
                        if block_type in PACKET_BLOCKS
                        else a_or_an(block_name(block_type))
                    )
                    self._cut(base, what, length, end)
                    return
            trailing = u32(buf, pos + length - 4)[0]
            if trailing != length:
                self._problem(base + pos, self._trailing_problem(base + pos, trailing, length))
                pos += length
                continue
            if block_type == BLOCK_IDB:
                self._interface(buf, pos, length, base, section)
            elif block_type == BLOCK_ISB:
                lost = self._statistics(buf, pos, length, base, section)
                if lost is not None and packets:
                    yield lost
            elif block_type in PACKET_BLOCKS and packets:
                record = self._packet(buf, pos, length, base, block_type, section, last_ns)
                if record is not None:
                    last_ns = record.timestamp_ns
                    yield record
            # Everything else (NRB, DSB, custom blocks, unknown types) is skipped.
            pos += length
