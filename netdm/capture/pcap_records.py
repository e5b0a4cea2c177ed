"""Classic pcap: the file header and the record loop.

Strategy: the header fixes the byte order and the timestamp unit (by its
magic) and must declare ``LINKTYPE_NETLINK``.  Each record is a 16-byte
header, the 16-byte pseudo-header and the datagram.  The loop has two paths:
a fast one, inlined, that takes only a whole, well-formed record in the
buffer (one unpack for its header and the pseudo-header's two fields), and a
general one, plain and readable, for refills and damage, which is also the
reference the fast one is tested against (``_fast=False``).  A record's
framing has no check, so a record whose length lies ends the walk.  Sizes and
layouts come from :mod:`netdm.capture.layouts` (derived from the schema).
"""

from __future__ import annotations

from collections.abc import Iterator

from netdm.capture.damage import ReaderBase
from netdm.capture.formats import (
    LINKTYPE_NETLINK,
    MAX_SNAPLEN,
    NLMSG_HDRLEN,
    PACKET_HOST,
    SYMBOLS_SIDE_FILE_SUFFIX,
    ByteOrder,
    linktype_name,
)
from netdm.capture.info import CaptureInfo, read_side_file
from netdm.capture.layouts import LAYOUTS, Layouts
from netdm.capture.records import CaptureRecord, outgoing_of
from netdm.capture.window import NS_PER_SECOND, PCAP_MAGICS


class PcapRecords(ReaderBase):
    """The classic pcap half of :class:`netdm.capture.read.CaptureReader`."""

    def _pcap_header(self, head: bytes) -> tuple[CaptureInfo, Iterator[CaptureRecord]]:
        order, ticks = PCAP_MAGICS[head[:4]]
        layouts = LAYOUTS[order]
        header_len = layouts.pcap_file_header_len
        if len(head) < header_len:
            raise self._error(
                0,
                f"ends in the middle of its pcap file header at offset 0 "
                f"(it is {header_len} bytes long; {len(head)} are present)",
            )
        _, major, minor, _, _, snaplen, linktype_field = layouts.pcap_file_header.unpack_from(head)
        if major != 2:
            field_offset = layouts.pcap_version_offset
            raise self._error(
                field_offset,
                f"has pcap version {major}.{minor} at offset {field_offset}; "
                "netdm reads version 2.x",
            )
        linktype = linktype_field & 0x0FFFFFFF  # the top bits carry FCS information
        if linktype != LINKTYPE_NETLINK:
            field_offset = layouts.pcap_linktype_offset
            raise self._error(
                field_offset,
                f"declares link type {linktype_name(linktype)} at offset {field_offset}, "
                f"not netlink ({LINKTYPE_NETLINK})",
            )
        info = CaptureInfo(
            path=self.path,
            format="pcap",
            byte_order=order,
            version=(major, minor),
            ticks_per_second=ticks,
            snaplen=snaplen,
            pcap_linktype=linktype,
        )
        if self._owns_stream:
            info.symbols = read_side_file(self.path + SYMBOLS_SIDE_FILE_SUFFIX)
        records = self._pcap_records(layouts, NS_PER_SECOND // ticks, snaplen or MAX_SNAPLEN, order)
        return info, records

    def _pcap_records(
        self, layouts: Layouts, frac_to_ns: int, limit: int, order: ByteOrder
    ) -> Iterator[CaptureRecord]:
        inp = self._input
        pos = layouts.pcap_file_header_len
        buf = inp.buf
        end = len(buf)
        base = inp.base
        record_head = layouts.pcap_record_cooked.unpack_from
        record_header = layouts.pcap_record.unpack_from
        pseudo_header = layouts.cooked_pkttype_and_protocol.unpack_from
        header_len = layouts.pcap_record_header_len
        cooked_len = layouts.cooked_header_len
        data_offset = header_len + cooked_len  # the datagram, from the record's start
        swap = order == "little"
        request_index = 6 if swap else 7
        packets = self._packets
        fast = self._fast
        new = tuple.__new__
        while True:
            if fast and end - pos >= data_offset:
                # The fast path: a whole, well-formed record in the buffer.
                seconds, fraction, caplen, origlen, pkttype, protocol = record_head(buf, pos)
                stop = pos + header_len + caplen
                if cooked_len <= caplen <= limit and stop <= end:
                    if packets:
                        data_start = pos + data_offset
                        if swap:
                            protocol = ((protocol & 0xFF) << 8) | (protocol >> 8)
                        if pkttype == PACKET_HOST:
                            outgoing: bool | None = False
                        elif stop - data_start >= NLMSG_HDRLEN:
                            outgoing = bool(buf[data_start + request_index] & 1)
                        else:
                            outgoing = None
                        yield new(
                            CaptureRecord,
                            (
                                seconds * NS_PER_SECOND + fraction * frac_to_ns,
                                buf[data_start:stop],
                                outgoing,
                                protocol,
                                base + pos,
                                origlen - cooked_len if origlen > cooked_len else 0,
                            ),
                        )
                    pos = stop
                    continue
            # The general path: refills, damage, and (without the fast path) everything.
            if end - pos < header_len:
                pos = inp.fill(pos, header_len)
                buf, end, base = inp.buf, len(inp.buf), inp.base
                if end == 0:
                    return
                if end < header_len:
                    self._cut(base, "a record", header_len, end, at_least=True)
                    return
            seconds, fraction, caplen, origlen = record_header(buf, pos)
            if caplen > limit:
                self._problem(
                    base + pos,
                    f"has a corrupt record at offset {base + pos}: its captured length "
                    f"{caplen} exceeds the snapshot length {limit}",
                )
                return
            stop = pos + header_len + caplen
            if stop > end:
                pos = inp.fill(pos, header_len + caplen)
                buf, end, base = inp.buf, len(inp.buf), inp.base
                stop = header_len + caplen
                if stop > end:
                    self._cut(base, "a record", stop, end)
                    return
            if caplen < cooked_len:
                self._problem(base + pos, self._short_record(base + pos, caplen))
                pos = stop
                continue
            if packets:
                data = buf[pos + data_offset : stop]
                pkttype, protocol = pseudo_header(buf, pos + header_len)
                yield CaptureRecord(
                    seconds * NS_PER_SECOND + fraction * frac_to_ns,
                    data,
                    outgoing_of(None, pkttype, data, request_index),
                    protocol,
                    base + pos,
                    origlen - cooked_len if origlen > cooked_len else 0,
                )
            pos = stop
