"""Reading netlink captures: classic pcap and pcapng, from netdm, dwdump, tcpdump or dumpcap.

Strategy: the file is read in 1 MiB chunks into one ``bytes`` buffer and
walked with precompiled ``struct`` layouts (:mod:`netdm.capture.formats`,
proven equal to the construct definitions in :mod:`netdm.capture.schema`);
each record becomes a :class:`CaptureRecord` named tuple holding a slice of
the buffer.  Each walk has two paths: a fast one, inlined, that takes only a
complete, well-formed classic pcap record or Enhanced Packet Block (one
unpack for its header and pseudo-header, one for its end), and a general
one, plain and readable, for everything else (refills, other blocks,
damage) and the reference the fast one is tested against (``_fast=False``).
Headers are read when the reader is created, so a file that is not a
capture fails at once; records come out of a generator, so every good
record is delivered before the error that stops the walk.

Damage is reported as one :class:`~netdm.capture.errors.CaptureError`
sentence naming the file and the byte offset where the damaged structure
begins.  With ``keep_going`` the reader counts the damage
(:attr:`CaptureReader.bad_records`, the first sentences in
:attr:`CaptureReader.problems`) and goes on where it can find the next record
with certainty: in pcapng a block whose framing (total length, trailing
length) is sound is skipped whole; a classic pcap record's framing has no
check, so a record whose length lies ends the walk.

What the reader does *not* do is netlink: a record's ``data`` is the
datagram after the 16-byte pseudo-header, and ``protocol`` says which netlink
family (16 is generic netlink, where NET_DM lives).  It only peeks at the
first ``nlmsghdr``'s NLM_F_REQUEST flag to tell requests from kernel messages
when the file does not record the direction, and (lazily, in
:attr:`CaptureRecord.truncated`) at the message lengths, to notice dwdump's
silent cuts.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import BinaryIO, NamedTuple

from netdm.capture.errors import CaptureError
from netdm.capture.formats import (
    BLOCK_EPB,
    BLOCK_IDB,
    BLOCK_ISB,
    BLOCK_MIN_LEN,
    BLOCK_PB,
    BLOCK_SHB,
    BLOCK_SPB,
    COOKED_HEADER_LEN,
    COOKED_PKTTYPE_AND_PROTOCOL,
    DEFAULT_TSRESOL,
    EPB_FLAGS,
    EPB_FLAGS_DIRECTION_MASK,
    EPB_FLAGS_INBOUND,
    EPB_FLAGS_OUTBOUND,
    EPB_MIN_LEN,
    IDB_MIN_LEN,
    IF_DESCRIPTION,
    IF_HARDWARE,
    IF_NAME,
    IF_OS,
    IF_TSOFFSET,
    IF_TSRESOL,
    ISB_IFDROP,
    ISB_MIN_LEN,
    LAYOUTS,
    LINKTYPE_NETLINK,
    LINKTYPE_USER0,
    MAX_PLAUSIBLE_BLOCK,
    MAX_SNAPLEN,
    NLMSG_HDRLEN,
    OPT_COMMENT,
    PACKET_BLOCKS,
    PACKET_HOST,
    PB_MIN_LEN,
    PCAP_FILE_HEADER_LEN,
    PCAP_LINKTYPE_OFFSET,
    PCAP_MAGIC_MICROSECONDS,
    PCAP_MAGIC_NANOSECONDS,
    PCAP_RECORD_HEADER_LEN,
    RECORD_TRACEPOINT,
    RECORD_TRACEPOINT_LOST,
    SHB_HARDWARE,
    SHB_MIN_LEN,
    SHB_OS,
    SHB_USERAPPL,
    SPB_MIN_LEN,
    SYMBOLS_COMMENT_MARK,
    SYMBOLS_SIDE_FILE_SUFFIX,
    TRACEPOINT_FORMAT_MARK,
    ByteOrder,
    CaptureFormat,
    Layouts,
    block_name,
    linktype_name,
)

CHUNK_SIZE = 1 << 20
MAX_PROBLEMS_KEPT = 10
_NS_PER_SECOND = 1_000_000_000
_PCAP_MAGICS: dict[bytes, tuple[ByteOrder, int]] = {
    # first four bytes → (byte order, ticks per second)
    PCAP_MAGIC_MICROSECONDS.to_bytes(4, "little"): ("little", 1_000_000),
    PCAP_MAGIC_MICROSECONDS.to_bytes(4, "big"): ("big", 1_000_000),
    PCAP_MAGIC_NANOSECONDS.to_bytes(4, "little"): ("little", _NS_PER_SECOND),
    PCAP_MAGIC_NANOSECONDS.to_bytes(4, "big"): ("big", _NS_PER_SECOND),
}
_PCAPNG_MAGIC = BLOCK_SHB.to_bytes(4, "big")
_BYTE_ORDER_MAGICS: dict[bytes, ByteOrder] = {
    b"\x4d\x3c\x2b\x1a": "little",
    b"\x1a\x2b\x3c\x4d": "big",
}
# What a file that is not a capture may be, by its first bytes (for the error sentence).
_OTHER_SIGNATURES = (
    (b"\x1f\x8b", "gzip-compressed data (decompress it first)"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed data (decompress it first)"),
    (b"\xfd7zXZ\x00", "xz-compressed data (decompress it first)"),
    (b"BZh", "bzip2-compressed data (decompress it first)"),
    (b"\xa1\xb2\xcd\x34", "a modified (Kuznetzov) pcap, which netdm does not read"),
    (b"\x34\xcd\xb2\xa1", "a modified (Kuznetzov) pcap, which netdm does not read"),
    (b"snoop\x00\x00\x00", "a snoop capture"),
    (b"\x7fELF", "an ELF executable"),
)
# How a writer marks a record's direction in the obsolete Packet Block / EPB flags.
_DIRECTION = {EPB_FLAGS_INBOUND: False, EPB_FLAGS_OUTBOUND: True}


# =========================================================================== public records


class CaptureRecord(NamedTuple):
    """One captured netlink datagram.

    A named tuple rather than a frozen dataclass: building one is about three
    times faster, which matters at a million records.

    * ``timestamp_ns``: nanoseconds since the Unix epoch (a Simple Packet
      Block has none and repeats the previous record's).
    * ``data``: the datagram after the 16-byte pseudo-header: one or more
      netlink messages, in the capturing host's byte order.
    * ``outgoing``: True for what was sent to the kernel (a request), False
      for what was received; None when nothing tells (see docs/captures.md).
    * ``protocol``: the pseudo-header's netlink protocol (16: generic netlink).
    * ``offset``: byte offset of the record (its header or block) in the file.
    * ``original_length``: the datagram's length before any snapshot cut.
    """

    timestamp_ns: int
    data: bytes
    outgoing: bool | None
    protocol: int
    offset: int
    original_length: int

    @property
    def truncated(self) -> bool:
        """True if bytes are missing: a snapshot cut, even one its writer did not declare.

        dwdump writes ``len == caplen`` even when ``recv()`` or its snapshot
        length cut the datagram, so besides ``original_length`` this walks the
        ``nlmsg_len`` fields (byte order guessed as Wireshark does) and reports
        a message that runs past the captured bytes.
        """
        return self.original_length > len(self.data) or _netlink_overruns(self.data)


def _netlink_overruns(data: bytes) -> bool:
    size = len(data)
    if size < 4:
        return size > 0
    as_little = int.from_bytes(data[:4], "little")
    as_big = int.from_bytes(data[:4], "big")
    order: ByteOrder = "big" if abs(as_big - size) < abs(as_little - size) else "little"
    position = 0
    while size - position >= NLMSG_HDRLEN:
        length = int.from_bytes(data[position : position + 4], order)
        if length < NLMSG_HDRLEN:
            return False  # malformed, which is the decoder's business, not a cut
        if position + length > size:
            return True
        position += (length + 3) & ~3
    return size - position > 0  # a piece of a header


# =========================================================================== metadata


@dataclass(slots=True)
class InterfaceInfo:
    """A pcapng Interface Description Block (or the classic pcap header's equivalent)."""

    offset: int
    linktype: int
    snaplen: int
    name: str | None = None
    description: str | None = None
    os: str | None = None
    hardware: str | None = None
    tsresol: int = DEFAULT_TSRESOL
    tsoffset_seconds: int = 0
    comments: tuple[str, ...] = ()

    @property
    def ticks_per_second(self) -> int:
        """Timestamp units per second, from ``if_tsresol`` (10^n, or 2^n if the top bit is set)."""
        if self.tsresol & 0x80:
            return int(2 ** (self.tsresol & 0x7F))
        return int(10**self.tsresol)


@dataclass(slots=True)
class SectionInfo:
    """A pcapng section: its Section Header Block's options and its interfaces so far."""

    offset: int
    byte_order: ByteOrder
    version: tuple[int, int]
    hardware: str | None = None
    os: str | None = None
    application: str | None = None
    comments: tuple[str, ...] = ()
    interfaces: list[InterfaceInfo] = field(default_factory=list)

    @property
    def hostname(self) -> str | None:
        """The host a netdm capture was taken on (its ``host: NAME`` comment)."""
        for comment in self.comments:
            if comment.startswith("host: "):
                return comment[len("host: ") :]
        return None

    @property
    def kernel_release(self) -> str | None:
        """The kernel release, from an ``shb_os`` of the form ``Linux 6.1.0-18-amd64``."""
        if self.os and self.os.startswith("Linux "):
            return self.os[len("Linux ") :].split(" ", 1)[0]
        return None


@dataclass(slots=True)
class CaptureInfo:
    """What the file says about itself.  pcapng sections and interfaces appear as they are read.

    ``byte_order`` is the file's (first section's) byte order.  Every known
    writer (netdm, libpcap, dumpcap, dwdump) writes in its host's order, which
    is also the order of the netlink messages inside.  ``ticks_per_second`` is
    the classic pcap timestamp unit (pcapng: per interface).  ``symbols`` is
    the kallsyms text the capture carries: from the pcap side file
    ``FILE.symbols`` at once; from pcapng as its blocks are reached (see
    :func:`read_symbols` for all of it up front).
    """

    path: str
    format: CaptureFormat
    byte_order: ByteOrder
    version: tuple[int, int]
    ticks_per_second: int | None = None
    snaplen: int | None = None
    pcap_linktype: int | None = None
    sections: list[SectionInfo] = field(default_factory=list)
    symbols: str = ""

    @property
    def linktype(self) -> int | None:
        """The classic pcap link type, or the first pcapng interface's (None before one is read)."""
        if self.pcap_linktype is not None:
            return self.pcap_linktype
        for section in self.sections:
            for interface in section.interfaces:
                return interface.linktype
        return None


# =========================================================================== input


class _Input:
    """A growing window on the stream: ``buf`` holds bytes from file offset ``base`` on."""

    __slots__ = ("stream", "buf", "base", "eof")

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.buf = b""
        self.base = 0
        self.eof = False

    def fill(self, pos: int, need: int) -> int:
        """Drop ``buf[:pos]``, read until ``need`` bytes follow it or the file ends; return 0."""
        rest = self.buf[pos:]
        self.base += pos
        parts = [rest]
        have = len(rest)
        while have < need and not self.eof:
            # At most MAX_PLAUSIBLE_BLOCK a read: a file object's read(n) allocates n bytes
            # before it finds the file's end, so a length field that lies (4 GiB) would
            # otherwise cost a 4 GiB buffer, or a MemoryError under an address-space limit.
            chunk = self.stream.read(min(max(CHUNK_SIZE, need - have), MAX_PLAUSIBLE_BLOCK))
            if not chunk:
                self.eof = True
                break
            parts.append(chunk)
            have += len(chunk)
        self.buf = b"".join(parts) if len(parts) > 1 else rest
        return 0


def _describe_start(head: bytes) -> str:
    for signature, what in _OTHER_SIGNATURES:
        if head.startswith(signature):
            return f"{what}: {head[:8].hex(' ')}"
    sample = head[:16]
    if sample and all(32 <= byte < 127 or byte in (9, 10, 13) for byte in sample):
        return f"text {sample.decode('ascii')!r}"
    return f"the bytes {sample[:8].hex(' ')}"


def _text(value: bytes) -> str:
    return value.split(b"\x00", 1)[0].decode("utf-8", errors="replace")


def _parse_options(
    buf: bytes, start: int, stop: int, layouts: Layouts
) -> tuple[list[tuple[int, bytes]], str | None]:
    """Options in ``buf[start:stop]``: (code, value) pairs, and what is wrong if anything."""
    options: list[tuple[int, bytes]] = []
    position = start
    header = layouts.option_header
    while stop - position >= 4:
        code, length = header.unpack_from(buf, position)
        if code == 0:
            break
        value_start = position + 4
        if value_start + length > stop:
            return options, (
                f"its option {code} of {length} bytes at offset +{position - start} "
                "runs past the end of its options"
            )
        options.append((code, buf[value_start : value_start + length]))
        position = value_start + ((length + 3) & ~3)
    return options, None


class _Section:
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


def tracepoint_format_of(interface: InterfaceInfo) -> str | None:
    """The tracefs format file a netdm tracepoint interface carries, else None."""
    for comment in interface.comments:
        if comment.startswith(TRACEPOINT_FORMAT_MARK):
            return comment[len(TRACEPOINT_FORMAT_MARK) :]
    return None


def capture_tracepoint_format(info: CaptureInfo) -> str | None:
    """The format file of a tracepoint capture's interface (read so far), else None."""
    for section in info.sections:
        for interface in section.interfaces:
            format_text = tracepoint_format_of(interface)
            if format_text is not None:
                return format_text
    return None


def _interface_clock(interface: InterfaceInfo) -> tuple[int, int, int]:
    """(multiplier, divisor, offset ns) turning raw ticks into Unix nanoseconds."""
    ticks = interface.ticks_per_second
    if _NS_PER_SECOND % ticks == 0:
        multiplier, divisor = _NS_PER_SECOND // ticks, 1
    elif ticks % _NS_PER_SECOND == 0:
        multiplier, divisor = 1, ticks // _NS_PER_SECOND
    else:
        multiplier, divisor = _NS_PER_SECOND, ticks
    return multiplier, divisor, interface.tsoffset_seconds * _NS_PER_SECOND


# =========================================================================== reader


class CaptureReader:
    """Records of a pcap or pcapng netlink capture, and what the file says about itself.

    Iterate it (once) for :class:`CaptureRecord`\\ s.  The header is read by
    the constructor: an empty file, a file that is not a capture, a cut
    header or a classic pcap of another link type raise
    :class:`~netdm.capture.errors.CaptureError` at once, even with
    ``keep_going``.  Later damage raises when the walk reaches it, after every
    record before it, unless ``keep_going`` (see :attr:`bad_records`).
    """

    def __init__(
        self,
        source: str | os.PathLike[str] | BinaryIO,
        *,
        keep_going: bool = False,
        _packets: bool = True,
        _fast: bool = True,
    ) -> None:
        """Open ``source`` (a path, or a binary file object read from its current position)."""
        self.keep_going = keep_going
        self.bad_records = 0
        """Damaged records or blocks skipped (``keep_going``), including one that ended the walk."""
        self.problems: list[str] = []
        """The first few sentences describing what was skipped (``keep_going``)."""
        self.foreign_records = 0
        """Records of non-netlink interfaces skipped in a pcapng that also has a netlink one."""
        self._packets = _packets
        self._fast = _fast  # False: every record through the general (reference) path
        self._owns_stream = isinstance(source, (str, os.PathLike))
        if isinstance(source, (str, os.PathLike)):
            self.path = os.fspath(source)
            self._stream: BinaryIO = open(self.path, "rb", buffering=0)  # noqa: SIM115
        else:
            name = getattr(source, "name", None)
            self.path = name if isinstance(name, str) else "<stream>"
            self._stream = source
        self._input = _Input(self._stream)
        # A capture without a readable header has nothing to keep going with: always strict.
        self.keep_going = False
        try:
            self.info, self._records = self._read_header()
        except BaseException:
            self.close()
            raise
        finally:
            self.keep_going = keep_going

    # ----------------------------------------------------------------------- public

    def __iter__(self) -> Iterator[CaptureRecord]:
        return self._records

    def __next__(self) -> CaptureRecord:
        return next(self._records)

    @property
    def symbols(self) -> str:
        """The kallsyms text found so far (all of it for classic pcap; see :func:`read_symbols`)."""
        return self.info.symbols

    def close(self) -> None:
        """Close the file if the reader opened it."""
        if self._owns_stream:
            self._stream.close()

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # ----------------------------------------------------------------------- errors

    def _error(self, offset: int, reason: str) -> CaptureError:
        return CaptureError(self.path, offset, reason)

    def _problem(self, offset: int, reason: str) -> None:
        """Raise, or (``keep_going``) count and remember; the caller then skips or stops."""
        error = self._error(offset, reason)
        if not self.keep_going:
            raise error
        self.bad_records += 1
        if len(self.problems) < MAX_PROBLEMS_KEPT:
            self.problems.append(str(error))

    def _cut(
        self, offset: int, what: str, size: int, present: int, *, at_least: bool = False
    ) -> None:
        """The file ends inside something ``size`` (or more) bytes long starting at ``offset``."""
        if size > MAX_PLAUSIBLE_BLOCK:
            self._problem(
                offset,
                f"has a corrupt block at offset {offset}: its length {size} runs past "
                f"the end of the file ({present} bytes are left)",
            )
        else:
            self._problem(
                offset,
                f"ends in the middle of {what} at offset {offset} "
                f"(it is {'at least ' if at_least else ''}{size} bytes long; "
                f"{present} are present)",
            )

    # ----------------------------------------------------------------------- header

    def _read_header(self) -> tuple[CaptureInfo, Iterator[CaptureRecord]]:
        inp = self._input
        inp.fill(0, PCAP_FILE_HEADER_LEN)
        head = inp.buf
        if not head:
            raise self._error(0, "is empty: there is no capture header at offset 0")
        magic = head[:4]
        if magic in _PCAP_MAGICS:
            return self._pcap_header(head)
        if magic == _PCAPNG_MAGIC:
            return self._pcapng_header()
        known = [*_PCAP_MAGICS, _PCAPNG_MAGIC]
        if len(head) < 4 and any(candidate.startswith(head) for candidate in known):
            raise self._error(
                0,
                "ends in the middle of its file header at offset 0 "
                f"({len(head)} bytes are present)",
            )
        raise self._error(
            0,
            f"is not a pcap or pcapng capture: at offset 0 it starts with {_describe_start(head)}",
        )

    def _pcap_header(self, head: bytes) -> tuple[CaptureInfo, Iterator[CaptureRecord]]:
        order, ticks = _PCAP_MAGICS[head[:4]]
        if len(head) < PCAP_FILE_HEADER_LEN:
            raise self._error(
                0,
                f"ends in the middle of its pcap file header at offset 0 "
                f"(it is {PCAP_FILE_HEADER_LEN} bytes long; {len(head)} are present)",
            )
        layouts = LAYOUTS[order]
        _, major, minor, _, _, snaplen, linktype_field = layouts.pcap_file_header.unpack_from(head)
        if major != 2:
            raise self._error(
                4, f"has pcap version {major}.{minor} at offset 4; netdm reads version 2.x"
            )
        linktype = linktype_field & 0x0FFFFFFF  # the top bits carry FCS information
        if linktype != LINKTYPE_NETLINK:
            raise self._error(
                PCAP_LINKTYPE_OFFSET,
                f"declares link type {linktype_name(linktype)} at offset {PCAP_LINKTYPE_OFFSET}, "
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
            info.symbols = _read_side_file(self.path + SYMBOLS_SIDE_FILE_SUFFIX)
        records = self._pcap_records(
            layouts, _NS_PER_SECOND // ticks, snaplen or MAX_SNAPLEN, order
        )
        return info, records

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

    def _leading_interfaces(self, pos: int, section: _Section) -> int:
        """Read the sound Interface Description Blocks right after the first SHB.

        So that ``info.linktype`` is known once the reader is open.  Anything
        unusual is left for the walk, which reports it where it belongs.
        """
        inp = self._input
        layouts = section.layouts
        while True:
            if len(inp.buf) - pos < IDB_MIN_LEN:
                pos = inp.fill(pos, IDB_MIN_LEN)
            buf = inp.buf
            if len(buf) - pos < IDB_MIN_LEN:
                return pos
            block_type, length = layouts.block_header.unpack_from(buf, pos)
            if block_type != BLOCK_IDB or length % 4 or not IDB_MIN_LEN <= length <= len(buf) - pos:
                return pos
            if layouts.u32.unpack_from(buf, pos + length - 4)[0] != length:
                return pos
            if _parse_options(buf, pos + 16, pos + length - 4, layouts)[1]:
                return pos
            self._interface(buf, pos, length, inp.base, section)
            pos += length

    # ----------------------------------------------------------------------- classic pcap

    def _pcap_records(
        self, layouts: Layouts, frac_to_ns: int, limit: int, order: ByteOrder
    ) -> Iterator[CaptureRecord]:
        inp = self._input
        pos = PCAP_FILE_HEADER_LEN
        buf = inp.buf
        end = len(buf)
        base = inp.base
        record_head = layouts.pcap_record_cooked.unpack_from
        record_header = layouts.pcap_record.unpack_from
        swap = order == "little"
        request_index = 6 if swap else 7
        packets = self._packets
        fast = self._fast
        new = tuple.__new__
        while True:
            if fast and end - pos >= 32:
                # The fast path: a whole, well-formed record in the buffer.
                seconds, fraction, caplen, origlen, pkttype, protocol = record_head(buf, pos)
                stop = pos + 16 + caplen
                if 16 <= caplen <= limit and stop <= end:
                    if packets:
                        data_start = pos + 32
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
                                seconds * _NS_PER_SECOND + fraction * frac_to_ns,
                                buf[data_start:stop],
                                outgoing,
                                protocol,
                                base + pos,
                                origlen - 16 if origlen > 16 else 0,
                            ),
                        )
                    pos = stop
                    continue
            # The general path: refills, damage, and (without the fast path) everything.
            if end - pos < PCAP_RECORD_HEADER_LEN:
                pos = inp.fill(pos, PCAP_RECORD_HEADER_LEN)
                buf, end, base = inp.buf, len(inp.buf), inp.base
                if end == 0:
                    return
                if end < PCAP_RECORD_HEADER_LEN:
                    self._cut(base, "a record", PCAP_RECORD_HEADER_LEN, end, at_least=True)
                    return
            seconds, fraction, caplen, origlen = record_header(buf, pos)
            if caplen > limit:
                self._problem(
                    base + pos,
                    f"has a corrupt record at offset {base + pos}: its captured length "
                    f"{caplen} exceeds the snapshot length {limit}",
                )
                return
            stop = pos + PCAP_RECORD_HEADER_LEN + caplen
            if stop > end:
                pos = inp.fill(pos, PCAP_RECORD_HEADER_LEN + caplen)
                buf, end, base = inp.buf, len(inp.buf), inp.base
                stop = PCAP_RECORD_HEADER_LEN + caplen
                if stop > end:
                    self._cut(base, "a record", stop, end)
                    return
            if caplen < COOKED_HEADER_LEN:
                self._problem(base + pos, self._short_record(base + pos, caplen))
                pos = stop
                continue
            if packets:
                data = buf[pos + 32 : stop]
                pkttype, protocol = COOKED_PKTTYPE_AND_PROTOCOL.unpack_from(buf, pos + 16)
                yield CaptureRecord(
                    seconds * _NS_PER_SECOND + fraction * frac_to_ns,
                    data,
                    _outgoing(None, pkttype, data, request_index),
                    protocol,
                    base + pos,
                    origlen - COOKED_HEADER_LEN if origlen > COOKED_HEADER_LEN else 0,
                )
            pos = stop

    @staticmethod
    def _short_record(offset: int, caplen: int) -> str:
        return (
            f"has a record at offset {offset} of {caplen} bytes, too short for the "
            f"{COOKED_HEADER_LEN}-byte netlink pseudo-header"
        )

    # ----------------------------------------------------------------------- pcapng

    def _section_at(self, pos: int) -> tuple[int, _Section | None]:
        """Parse the Section Header Block at ``pos``: (position after it, section or None).

        None means the block cannot be framed; the problem is recorded.
        """
        inp = self._input
        if len(inp.buf) - pos < 12:
            pos = inp.fill(pos, 12)
        buf, base = inp.buf, inp.base
        if len(buf) - pos < 12:
            self._cut(
                base + pos, "a Section Header Block", SHB_MIN_LEN, len(buf) - pos, at_least=True
            )
            return pos, None
        order = _BYTE_ORDER_MAGICS.get(buf[pos + 8 : pos + 12])
        if order is None:
            self._problem(
                base + pos,
                f"has a corrupt Section Header Block at offset {base + pos}: its byte-order "
                f"magic {buf[pos + 8 : pos + 12].hex()} is neither 1a2b3c4d nor 4d3c2b1a",
            )
            return pos, None
        layouts = LAYOUTS[order]
        length = layouts.u32.unpack_from(buf, pos + 4)[0]
        framing = self._framing_problem(base + pos, length, SHB_MIN_LEN, "Section Header Block")
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
        _, major, minor, _ = layouts.shb_fixed.unpack_from(buf, pos + 8)
        info = SectionInfo(offset=base + pos, byte_order=order, version=(major, minor))
        section = _Section(info)
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
        options, bad = _parse_options(buf, pos + 24, pos + length - 4, layouts)
        comments = []
        for code, value in options:
            if code == OPT_COMMENT:
                comments.append(_text(value))
            elif code == SHB_HARDWARE:
                info.hardware = _text(value)
            elif code == SHB_OS:
                info.os = _text(value)
            elif code == SHB_USERAPPL:
                info.application = _text(value)
        info.comments = tuple(comments)
        if bad:
            self._problem(base + pos, f"has a corrupt block at offset {base + pos}: {bad}")
        return pos + length, section

    @staticmethod
    def _framing_problem(offset: int, length: int, minimum: int, name: str) -> str | None:
        """What is wrong with a block's total length by itself, if anything."""
        if length % 4:
            return (
                f"has a corrupt block at offset {offset}: its total length {length} "
                "is not a multiple of 4"
            )
        if length < minimum:
            return (
                f"has a corrupt block at offset {offset}: its total length {length} is "
                f"shorter than the {minimum} bytes of {_a(name)}"
            )
        return None

    @staticmethod
    def _trailing_problem(offset: int, trailing: int, length: int) -> str:
        return (
            f"has a corrupt block at offset {offset}: its trailing length {trailing} "
            f"differs from its leading length {length}"
        )

    def _pcapng_records(self, pos: int, section: _Section) -> Iterator[CaptureRecord]:
        inp = self._input
        buf = inp.buf
        end = len(buf)
        base = inp.base
        packets = self._packets
        fast = self._fast and packets
        new = tuple.__new__
        layouts = section.layouts
        block_header = layouts.block_header.unpack_from
        epb_head = layouts.epb_head_cooked.unpack_from
        netdm_tail = layouts.epb_netdm_tail.unpack_from
        u32 = layouts.u32.unpack_from
        interfaces = section.interfaces
        request_index = section.request_index
        swap = section.info.byte_order == "little"
        last_ns = 0
        current_id = -1  # the interface whose clock and limits are in the locals below
        is_netlink, limit, multiplier, divisor, offset_ns = False, 0, 1, 1, 0
        while True:
            if fast and end - pos >= 48:
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
                    and 48 <= length <= end - pos
                    and COOKED_HEADER_LEN <= caplen <= length - 32
                    and interface_id < len(interfaces)
                ):
                    if interface_id != current_id:
                        current_id = interface_id
                        is_netlink, limit, multiplier, divisor, offset_ns = interfaces[current_id]
                    options_start = pos + 28 + ((caplen + 3) & ~3)
                    options_length = pos + length - 4 - options_start
                    flags = 0
                    if options_length == 0:
                        trailing = u32(buf, pos + length - 4)[0]
                    elif options_length == 12:
                        code, size, flags, end_code, end_size, trailing = netdm_tail(
                            buf, options_start
                        )
                        if code != EPB_FLAGS or size != 4 or end_code != 0:
                            trailing = -1  # another layout: the general path reads it
                    else:
                        trailing = -1
                    if is_netlink and caplen <= limit and trailing == length:
                        data_start = pos + 44
                        record_end = pos + 28 + caplen
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
                                origlen - 16 if origlen > 16 else 0,
                            ),
                        )
                        pos += length
                        continue

            # The general path: refills, other blocks, damage; the reference for the fast path.
            if end - pos < 12:
                pos = inp.fill(pos, 12)
                buf, end, base = inp.buf, len(inp.buf), inp.base
                if end == 0:
                    return
                if end < 12:
                    self._cut(base, "a block", BLOCK_MIN_LEN, end, at_least=True)
                    return
            block_type, length = block_header(buf, pos)
            if block_type == BLOCK_SHB:
                pos, new_section = self._section_at(pos)
                buf, end, base = inp.buf, len(inp.buf), inp.base
                if new_section is None:
                    return
                section = new_section
                self.info.sections.append(section.info)
                layouts = section.layouts
                block_header = layouts.block_header.unpack_from
                epb_head = layouts.epb_head_cooked.unpack_from
                netdm_tail = layouts.epb_netdm_tail.unpack_from
                u32 = layouts.u32.unpack_from
                interfaces = section.interfaces
                request_index = section.request_index
                swap = section.info.byte_order == "little"
                last_ns = 0
                current_id = -1
                continue
            if length & 3 or length < BLOCK_MIN_LEN:
                self._problem(
                    base + pos,
                    self._framing_problem(base + pos, length, BLOCK_MIN_LEN, "block") or "",
                )
                return
            if length > end - pos:
                pos = inp.fill(pos, length)
                buf, end, base = inp.buf, len(inp.buf), inp.base
                if length > end:
                    what = "a record" if block_type in PACKET_BLOCKS else _a(block_name(block_type))
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

    # ----------------------------------------------------------------------- pcapng blocks

    def _too_short(self, offset: int, length: int, block_type: int) -> str:
        minimum = {BLOCK_EPB: EPB_MIN_LEN, BLOCK_PB: PB_MIN_LEN, BLOCK_SPB: SPB_MIN_LEN}.get(
            block_type, IDB_MIN_LEN if block_type == BLOCK_IDB else ISB_MIN_LEN
        )
        return (
            f"has a corrupt block at offset {offset}: its total length {length} is shorter "
            f"than the {minimum} bytes of {_a(block_name(block_type))}"
        )

    @staticmethod
    def _caplen_problem(offset: int, caplen: int, length: int) -> str:
        return (
            f"has a corrupt block at offset {offset}: its captured length {caplen} "
            f"does not fit in its total length {length}"
        )

    @staticmethod
    def _no_interface(offset: int, interface_id: int, section: _Section) -> str:
        count = len(section.interfaces)
        return (
            f"has a record at offset {offset} for interface {interface_id}, but its section "
            f"(offset {section.info.offset}) has described {count} interface"
            + ("" if count == 1 else "s")
        )

    def _odd_record(self, offset: int, caplen: int, interface_id: int, section: _Section) -> None:
        """A well-framed packet block that cannot be a netlink record: say why, or skip it."""
        is_netlink, limit, _, _, _ = section.interfaces[interface_id]
        interface = section.info.interfaces[interface_id]
        if not is_netlink:
            if section.has_netlink:
                self.foreign_records += 1
                return
            field_offset = interface.offset + 8  # the IDB's LinkType field
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
        self, buf: bytes, start: int, stop: int, section: _Section, offset: int
    ) -> int | bool:
        """The epb_flags / pack_flags value (0 if absent), or False for broken options.

        ``start``/``stop`` bound the options in ``buf``; ``offset`` is the block's, for messages.
        """
        layouts = section.layouts
        code, length = layouts.option_header.unpack_from(buf, start)
        if code == EPB_FLAGS and length == 4 and start + 8 <= stop:  # netdm's own layout
            flags: int = layouts.u32.unpack_from(buf, start + 4)[0]
            return flags
        options, bad = _parse_options(buf, start, stop, layouts)
        if bad:
            self._problem(offset, f"has a corrupt record at offset {offset}: {bad}")
            return False
        for code, value in options:
            if code == EPB_FLAGS and len(value) == 4:
                flags = layouts.u32.unpack_from(value)[0]
                return flags
        return 0

    def _interface(self, buf: bytes, pos: int, length: int, base: int, section: _Section) -> None:
        offset = base + pos
        if length < IDB_MIN_LEN:
            self._problem(offset, self._too_short(offset, length, BLOCK_IDB))
            return
        layouts = section.layouts
        linktype, _, snaplen = layouts.idb_fixed.unpack_from(buf, pos + 8)
        interface = InterfaceInfo(offset=offset, linktype=linktype, snaplen=snaplen)
        options, bad = _parse_options(buf, pos + 16, pos + length - 4, layouts)
        comments = []
        for code, value in options:
            if code == OPT_COMMENT:
                comments.append(_text(value))
            elif code == IF_NAME:
                interface.name = _text(value)
            elif code == IF_DESCRIPTION:
                interface.description = _text(value)
            elif code == IF_OS:
                interface.os = _text(value)
            elif code == IF_HARDWARE:
                interface.hardware = _text(value)
            elif code == IF_TSRESOL and value:
                interface.tsresol = value[0]
            elif code == IF_TSOFFSET and len(value) == 8:
                interface.tsoffset_seconds = layouts.i64.unpack_from(value)[0]
        interface.comments = tuple(comments)
        # Registered even when its options are damaged: the records after it refer to it.
        section.info.interfaces.append(interface)
        is_netlink = linktype == LINKTYPE_NETLINK
        if linktype == LINKTYPE_USER0 and tracepoint_format_of(interface) is not None:
            section.tracepoint_interfaces.add(len(section.interfaces))
            section.has_netlink = True
        section.has_netlink = section.has_netlink or is_netlink
        section.interfaces.append(
            (is_netlink, snaplen or MAX_SNAPLEN, *_interface_clock(interface))
        )
        if bad:
            self._problem(offset, f"has a corrupt block at offset {offset}: {bad}")

    def _statistics(
        self, buf: bytes, pos: int, length: int, base: int, section: _Section
    ) -> CaptureRecord | None:
        """Symbols from an ISB's comments; a tracepoint interface's lost events as a record."""
        offset = base + pos
        if length < ISB_MIN_LEN:
            self._problem(offset, self._too_short(offset, length, BLOCK_ISB))
            return None
        options, bad = _parse_options(buf, pos + 20, pos + length - 4, section.layouts)
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
        interface_id, high, low = section.layouts.isb_fixed.unpack_from(buf, pos + 8)
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
        section: _Section,
        last_ns: int,
    ) -> CaptureRecord | None:
        """An Enhanced, Simple or obsolete Packet Block, whose framing is sound."""
        offset = base + pos
        layouts = section.layouts
        flags: int | bool = 0
        timestamp: int | None = None
        if block_type == BLOCK_SPB:
            if length < SPB_MIN_LEN:
                self._problem(offset, self._too_short(offset, length, block_type))
                return None
            if not section.interfaces:
                self._problem(offset, self._no_interface(offset, 0, section))
                return None
            origlen = layouts.spb_fixed.unpack_from(buf, pos + 8)[0]
            interface_id = 0
            caplen = min(origlen, section.interfaces[0][1], length - SPB_MIN_LEN)
            data_offset = 12
            timestamp = last_ns  # an SPB has no timestamp: repeat the previous one
        else:
            minimum = EPB_MIN_LEN if block_type == BLOCK_EPB else PB_MIN_LEN
            if length < minimum:
                self._problem(offset, self._too_short(offset, length, block_type))
                return None
            if block_type == BLOCK_EPB:
                interface_id, high, low, caplen, origlen = layouts.epb_fixed.unpack_from(
                    buf, pos + 8
                )
            else:
                interface_id, _, high, low, caplen, origlen = layouts.pb_fixed.unpack_from(
                    buf, pos + 8
                )
            if caplen > length - minimum:
                self._problem(offset, self._caplen_problem(offset, caplen, length))
                return None
            if interface_id >= len(section.interfaces):
                self._problem(offset, self._no_interface(offset, interface_id, section))
                return None
            data_offset = 28
            options_start = pos + 28 + ((caplen + 3) & ~3)
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
        if not is_netlink or caplen > limit or caplen < COOKED_HEADER_LEN:
            self._odd_record(offset, caplen, interface_id, section)
            return None
        if timestamp is None:
            timestamp = ((high << 32) | low) * multiplier // divisor + offset_ns
        start = pos + data_offset
        data = buf[start + COOKED_HEADER_LEN : start + caplen]
        pkttype, protocol = COOKED_PKTTYPE_AND_PROTOCOL.unpack_from(buf, start)
        outgoing = _outgoing(int(flags), pkttype, data, section.request_index)
        original = origlen - COOKED_HEADER_LEN if origlen > COOKED_HEADER_LEN else 0
        return CaptureRecord(timestamp, data, outgoing, protocol, offset, original)


def _outgoing(flags: int | None, pkttype: int, data: bytes, request_index: int) -> bool | None:
    """A record's direction: epb_flags, else the pkttype, else the NLM_F_REQUEST flag."""
    direction = (flags or 0) & EPB_FLAGS_DIRECTION_MASK
    if direction in _DIRECTION:
        return _DIRECTION[direction]
    if pkttype == PACKET_HOST:
        return False
    if len(data) >= NLMSG_HDRLEN:
        return bool(data[request_index] & 1)
    return None


def _a(name: str) -> str:
    return f"an {name}" if name[0] in "AEIOUaeiou" else f"a {name}"


def _read_side_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as side:
            return side.read()
    except FileNotFoundError:
        return ""


# =========================================================================== functions


def read_capture(
    source: str | os.PathLike[str] | BinaryIO, *, keep_going: bool = False
) -> CaptureReader:
    """Open a netlink capture: iterate the result for records, read ``.info`` for metadata.

    ``source`` is a path or a binary file object (read from where it stands;
    offsets count from there).  Raises :class:`CaptureError` now for a file
    that has no readable capture header; damage further on raises while
    iterating, after every good record before it, unless ``keep_going``,
    which skips what it can and counts it (``reader.bad_records``,
    ``reader.problems``).  Use it as a context manager to close the file.
    """
    return CaptureReader(source, keep_going=keep_going)


def read_symbols(source: str | os.PathLike[str] | BinaryIO) -> str:
    """All the kallsyms text a capture carries, before replaying it.

    Classic pcap: the side file ``FILE.symbols``.  pcapng: a quick walk over
    the block headers that collects netdm's symbol comments (damage is
    skipped, not raised: the replay will report it).  A file object is
    consumed.
    """
    with CaptureReader(source, keep_going=True, _packets=False) as reader:
        if reader.info.format == "pcapng":
            for _ in reader:
                pass
        return reader.symbols
