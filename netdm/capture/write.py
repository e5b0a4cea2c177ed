"""Writing netdm's captures: pcapng (default) or classic pcap, link type NETLINK.

Strategy: the writer sits inside the receive loop, so each record is composed
in memory (one ``struct.pack`` and a join) and handed to a buffered file with
a single ``write()``; nothing is flushed per record.  The caller flushes once
in a while (netdm does it once per interval), so a capture cut short by
SIGKILL or a power cut ends at, or in the middle of, some record: the reader
returns everything before it and then says where the capture stops.

Every record carries the 16-byte ``LINKTYPE_NETLINK`` pseudo-header, with the
sll_pkttype convention: ``PACKET_OUTGOING`` (4) for what netdm sent,
``PACKET_HOST`` (0) for what it received; pcapng records also carry the
direction in ``epb_flags``, which Wireshark shows.  The datagram follows in
host byte order, and so the whole file is written in host byte order (as
libpcap and dumpcap do), so that a reader can use the file's byte order as
the netlink messages' byte order.

pcapng: one Section Header Block (``shb_hardware``: the machine,
``shb_os``: ``Linux <kernel release>``, ``shb_userappl``: ``netdm X.Y``,
``opt_comment``: ``host: <hostname>``), one Interface Description Block
(link type 253, snaplen 262144, ``if_tsresol`` 9: nanoseconds), then
Enhanced Packet Blocks.  Kernel symbols travel in ``opt_comment`` options of
Interface Statistics Blocks (see docs/captures.md for why not a Custom
Block).  Classic pcap: the nanosecond magic ``0xA1B23C4D``, link type 253,
and the symbols in a side file ``FILE.symbols``.

A *tracepoint capture* (``tracepoint_format`` given; pcapng only) holds the
``skb:kfree_skb`` records of the tracepoint source instead: one interface of
link type ``LINKTYPE_USER0`` (147) whose comment carries the event's tracefs
format file, records without a pseudo-header, and lost events as the
cumulative ``isb_ifdrop`` of Interface Statistics Blocks (:meth:`write_lost`).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable
from types import TracebackType
from typing import BinaryIO

import netdm
from netdm.capture.formats import (
    ARPHRD_NETLINK,
    BLOCK_EPB,
    BLOCK_IDB,
    BLOCK_ISB,
    BLOCK_SHB,
    BYTE_ORDER_MAGIC,
    EPB_FLAGS,
    EPB_FLAGS_INBOUND,
    EPB_FLAGS_OUTBOUND,
    IF_DESCRIPTION,
    IF_TSRESOL,
    ISB_ENDTIME,
    ISB_IFDROP,
    ISB_STARTTIME,
    LINKTYPE_NETLINK,
    LINKTYPE_USER0,
    MAX_SNAPLEN,
    NANOSECOND_TSRESOL,
    NETLINK_GENERIC,
    OPT_COMMENT,
    OPTION_VALUE_MAX,
    PACKET_HOST,
    PACKET_OUTGOING,
    PCAP_MAGIC_NANOSECONDS,
    PCAP_VERSION,
    PCAPNG_VERSION,
    SECTION_LENGTH_UNKNOWN,
    SHB_HARDWARE,
    SHB_OS,
    SHB_USERAPPL,
    SYMBOLS_COMMENT_MARK,
    SYMBOLS_SIDE_FILE_SUFFIX,
    TRACEPOINT_FORMAT_MARK,
    TRACEPOINT_INTERFACE_DESCRIPTION,
    ByteOrder,
    CaptureFormat,
)
from netdm.capture.layouts import LAYOUTS
from netdm.capture.output_files import DeferredFile

DEFAULT_BUFFER_SIZE = 256 * 1024
INTERFACE_DESCRIPTION = "NET_DM generic netlink socket (netdm)"
_NS_PER_SECOND = 1_000_000_000
_U32_MAX = 0xFFFFFFFF
_U64_MAX = (1 << 64) - 1
_PAD = (b"", b"\x00\x00\x00", b"\x00\x00", b"\x00")  # indexed by length % 4


def _option(order: ByteOrder, code: int, value: bytes) -> bytes:
    header = LAYOUTS[order].option_header.pack(code, len(value))
    return header + value + _PAD[len(value) % 4]


def _block(order: ByteOrder, block_type: int, body: bytes) -> bytes:
    layouts = LAYOUTS[order]
    u32 = layouts.u32
    total = layouts.block_min_len + len(body)
    return u32.pack(block_type) + u32.pack(total) + body + u32.pack(total)


def _end_of_options(order: ByteOrder) -> bytes:
    return LAYOUTS[order].option_header.pack(0, 0)


def _text_options(order: ByteOrder, options: Iterable[tuple[int, str | None]]) -> bytes:
    parts = []
    for code, text in options:
        if text:
            value = text.encode("utf-8")[:OPTION_VALUE_MAX]
            parts.append(_option(order, code, value))
    return b"".join(parts)


def _symbol_chunks(lines: Iterable[str]) -> list[str]:
    """Comment texts, each starting with the mark and short enough for one option."""
    room = OPTION_VALUE_MAX - len(SYMBOLS_COMMENT_MARK)
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for raw in lines:
        for line in raw.splitlines():
            if not line.strip():
                continue
            encoded = len(line.encode("utf-8")) + 1
            if encoded > room:
                raise ValueError(f"a symbol line of {encoded} bytes is too long: {line[:60]!r}…")
            if size + encoded > room:
                chunks.append(SYMBOLS_COMMENT_MARK + "".join(current))
                current, size = [], 0
            current.append(line + "\n")
            size += encoded
    if current:
        chunks.append(SYMBOLS_COMMENT_MARK + "".join(current))
    return chunks


class CaptureWriter:
    """Writes netlink datagrams with timestamps and direction to a pcapng or pcap file.

    Use :meth:`open` for a path (it also places the classic-pcap symbols side
    file), or the constructor for an already open binary stream.  The file is
    written in host byte order.  Not thread-safe: one receive loop writes.
    """

    def __init__(
        self,
        stream: BinaryIO | DeferredFile,
        *,
        format: CaptureFormat = "pcapng",
        kernel_release: str | None = None,
        hostname: str | None = None,
        application: str | None = None,
        hardware: str | None = None,
        symbols_path: str | os.PathLike[str] | None = None,
        close_stream: bool = False,
        tracepoint_format: str | None = None,
    ) -> None:
        """Write the file header to ``stream`` now.

        ``kernel_release``, ``hostname`` and ``hardware`` default to this
        machine's ``uname`` (release, nodename, machine); ``application`` to
        ``"netdm <version>"``.  They go into the pcapng Section Header Block
        and are not stored in a classic pcap.  ``symbols_path`` is where a
        classic pcap's :meth:`write_symbols` go (``FILE.symbols`` when opened
        by :meth:`open`); pcapng keeps them inside the file.  With
        ``close_stream`` :meth:`close` closes ``stream`` too.
        ``tracepoint_format`` (the tracefs format file of ``skb:kfree_skb``)
        makes it a tracepoint capture: see the module docstring.
        """
        if format not in ("pcap", "pcapng"):
            raise ValueError(f"unknown capture format {format!r}: use 'pcapng' or 'pcap'")
        if tracepoint_format is not None and format != "pcapng":
            raise ValueError("a tracepoint capture is pcapng only (it carries the event format)")
        self.tracepoint_format = tracepoint_format
        uname = os.uname()
        self.format: CaptureFormat = format
        self.byte_order: ByteOrder = "little" if sys.byteorder == "little" else "big"
        self.kernel_release = uname.release if kernel_release is None else kernel_release
        self.hostname = uname.nodename if hostname is None else hostname
        self.application = f"netdm {netdm.__version__}" if application is None else application
        self.hardware = uname.machine if hardware is None else hardware
        self.snaplen = MAX_SNAPLEN
        self.records_written = 0
        self.first_timestamp_ns: int | None = None
        self.last_timestamp_ns: int | None = None
        self._stream = stream
        self._close_stream = close_stream
        self._symbols_path = None if symbols_path is None else os.fspath(symbols_path)
        self._symbols_started = False
        self._pending_symbols: list[str] = []  # a deferred pcap's side file, until start_file()
        self._closed = False
        layouts = LAYOUTS[self.byte_order]
        self._epb_head = layouts.epb_head
        self._epb_min_len = layouts.shapes[BLOCK_EPB].min_length
        self._pcap_head = layouts.pcap_record
        self._u32 = layouts.u32
        # Per direction: the cooked pseudo-header, and (pcapng) the epb_flags option + end.
        self._cooked = {
            True: layouts.cooked_header.pack(PACKET_OUTGOING, ARPHRD_NETLINK, NETLINK_GENERIC),
            False: layouts.cooked_header.pack(PACKET_HOST, ARPHRD_NETLINK, NETLINK_GENERIC),
        }
        self._header_len = layouts.cooked_header_len
        if tracepoint_format is not None:  # tracepoint records have no pseudo-header
            self._cooked = {True: b"", False: b""}
            self._header_len = 0
        order = self.byte_order
        self._epb_options = {
            True: _option(order, EPB_FLAGS, layouts.u32.pack(EPB_FLAGS_OUTBOUND))
            + _end_of_options(order),
            False: _option(order, EPB_FLAGS, layouts.u32.pack(EPB_FLAGS_INBOUND))
            + _end_of_options(order),
        }
        self._stream.write(self._file_header())

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        format: CaptureFormat = "pcapng",
        kernel_release: str | None = None,
        hostname: str | None = None,
        application: str | None = None,
        hardware: str | None = None,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        tracepoint_format: str | None = None,
        deferred: bool = False,
    ) -> CaptureWriter:
        """Create (or truncate) ``path`` and write the file header.

        For classic pcap the symbols go to ``path + ".symbols"``; a stale side
        file left by an earlier capture of the same name is removed now, since
        symbols of another boot would name the wrong functions (KASLR).

        With ``deferred`` neither happens now: the writer keeps what it is
        given in memory and :meth:`start_file` creates (or truncates) ``path``
        and removes the stale side file, once the run has started; closed
        before that, it leaves both as they were (see
        :mod:`netdm.capture.output_files`).
        """
        if format not in ("pcap", "pcapng"):
            raise ValueError(f"unknown capture format {format!r}: use 'pcapng' or 'pcap'")
        symbols_path = None
        if format == "pcap":
            symbols_path = os.fspath(path) + SYMBOLS_SIDE_FILE_SUFFIX
        side_file = symbols_path

        def remove_stale_side_file() -> None:
            if side_file is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(side_file)

        stream: BinaryIO | DeferredFile
        if deferred:
            stream = DeferredFile(path, buffering=buffer_size, before_open=remove_stale_side_file)
        else:
            remove_stale_side_file()
            stream = open(path, "wb", buffering=buffer_size)  # noqa: SIM115 (closed by close())
        try:
            return cls(
                stream,
                format=format,
                kernel_release=kernel_release,
                hostname=hostname,
                application=application,
                hardware=hardware,
                symbols_path=symbols_path,
                close_stream=True,
                tracepoint_format=tracepoint_format,
            )
        except BaseException:
            stream.close()
            raise

    # ----------------------------------------------------------------------- headers

    def _file_header(self) -> bytes:
        order = self.byte_order
        layouts = LAYOUTS[order]
        if self.format == "pcap":
            major, minor = PCAP_VERSION
            return layouts.pcap_file_header.pack(
                PCAP_MAGIC_NANOSECONDS, major, minor, 0, 0, self.snaplen, LINKTYPE_NETLINK
            )
        major, minor = PCAPNG_VERSION
        shb_options = _text_options(
            order,
            (
                (OPT_COMMENT, f"host: {self.hostname}" if self.hostname else None),
                (SHB_HARDWARE, self.hardware),
                (SHB_OS, f"Linux {self.kernel_release}" if self.kernel_release else None),
                (SHB_USERAPPL, self.application),
            ),
        )
        shb = _block(
            order,
            BLOCK_SHB,
            layouts.shb_fixed.pack(BYTE_ORDER_MAGIC, major, minor, SECTION_LENGTH_UNKNOWN)
            + shb_options
            + _end_of_options(order),
        )
        linktype, description, comment = LINKTYPE_NETLINK, INTERFACE_DESCRIPTION, None
        if self.tracepoint_format is not None:
            linktype, description = LINKTYPE_USER0, TRACEPOINT_INTERFACE_DESCRIPTION
            comment = TRACEPOINT_FORMAT_MARK + self.tracepoint_format
            if len(comment.encode("utf-8")) > OPTION_VALUE_MAX:
                raise ValueError("the tracepoint format file is too long for a pcapng comment")
        idb_options = (
            _option(order, IF_TSRESOL, bytes([NANOSECOND_TSRESOL]))
            + _text_options(order, ((IF_DESCRIPTION, description), (OPT_COMMENT, comment)))
            + _end_of_options(order)
        )
        idb = _block(
            order,
            BLOCK_IDB,
            layouts.idb_fixed.pack(linktype, 0, self.snaplen) + idb_options,
        )
        return shb + idb

    # ----------------------------------------------------------------------- records

    def write(self, datagram: bytes, timestamp_ns: int, *, outgoing: bool) -> None:
        """Append one netlink datagram received (``outgoing=False``) or sent at ``timestamp_ns``.

        ``timestamp_ns`` is nanoseconds since the Unix epoch.  A datagram
        longer than the snapshot length (262144 bytes with the pseudo-header)
        is cut there, and the record keeps its original length.  One
        ``write()`` call on the buffered file; call :meth:`flush` now and then.
        """
        if self._closed:
            raise ValueError("write to a closed CaptureWriter")
        if timestamp_ns < 0:
            raise ValueError(f"timestamp_ns must not be negative, not {timestamp_ns}")
        size = len(datagram) + self._header_len
        caplen = size if size <= self.snaplen else self.snaplen
        payload = datagram if caplen == size else datagram[: caplen - self._header_len]
        cooked = self._cooked[outgoing]
        if self.format == "pcapng":
            if timestamp_ns > _U64_MAX:
                raise ValueError(f"timestamp_ns {timestamp_ns} does not fit in 64 bits")
            pad = _PAD[caplen % 4]
            options = self._epb_options[outgoing]
            total = self._epb_min_len + caplen + len(pad) + len(options)
            record = b"".join(
                (
                    self._epb_head.pack(
                        BLOCK_EPB,
                        total,
                        0,
                        timestamp_ns >> 32,
                        timestamp_ns & _U32_MAX,
                        caplen,
                        size,
                    ),
                    cooked,
                    payload,
                    pad,
                    options,
                    self._u32.pack(total),
                )
            )
        else:
            seconds, nanoseconds = divmod(timestamp_ns, _NS_PER_SECOND)
            if seconds > _U32_MAX:
                raise ValueError(f"timestamp_ns {timestamp_ns} is past 2106, beyond classic pcap")
            record = b"".join(
                (self._pcap_head.pack(seconds, nanoseconds, caplen, size), cooked, payload)
            )
        self._stream.write(record)
        self.records_written += 1
        if self.first_timestamp_ns is None:
            self.first_timestamp_ns = timestamp_ns
        self.last_timestamp_ns = timestamp_ns

    def write_symbols(self, lines: Iterable[str]) -> None:
        """Append kallsyms lines (``"ffffffff81a2c3ea t __udp4_lib_rcv [mod]"``) to the capture.

        May be called several times; readers concatenate what every call
        wrote.  pcapng: one Interface Statistics Block per call, the lines in
        its ``opt_comment`` options (each comment starts with the line
        ``netdm-kallsyms 1``), its timestamp the newest record's.  Classic
        pcap: appended to the side file ``FILE.symbols``, written and closed
        at once.  Blank lines are skipped; nothing is written for no lines.
        """
        if self._closed:
            raise ValueError("write_symbols on a closed CaptureWriter")
        chunks = _symbol_chunks(lines)
        if not chunks:
            return
        if self.format == "pcap":
            if self._symbols_path is None:
                raise ValueError(
                    "a classic pcap written to a stream has no place for symbols: "
                    "give symbols_path, or write pcapng"
                )
            text = "".join(chunk[len(SYMBOLS_COMMENT_MARK) :] for chunk in chunks)
            if isinstance(self._stream, DeferredFile) and not self._stream.started:
                self._pending_symbols.append(text)
                return
            self._write_side_file(text)
            return
        order = self.byte_order
        layouts = LAYOUTS[order]
        stamp = self.last_timestamp_ns or 0
        body = [layouts.isb_fixed.pack(0, stamp >> 32, stamp & _U32_MAX)]
        if self.first_timestamp_ns is not None and self.last_timestamp_ns is not None:
            for code, value in (
                (ISB_STARTTIME, self.first_timestamp_ns),
                (ISB_ENDTIME, self.last_timestamp_ns),
            ):
                high_low = layouts.u32.pack(value >> 32) + layouts.u32.pack(value & _U32_MAX)
                body.append(_option(order, code, high_low))
        body.extend(_option(order, OPT_COMMENT, chunk.encode("utf-8")) for chunk in chunks)
        body.append(_end_of_options(order))
        self._stream.write(_block(order, BLOCK_ISB, b"".join(body)))

    def _write_side_file(self, text: str) -> None:
        assert self._symbols_path is not None
        mode = "a" if self._symbols_started else "w"
        with open(self._symbols_path, mode, encoding="utf-8") as side:
            side.write(text)
        self._symbols_started = True

    def start_file(self) -> None:
        """The run has started: a deferred writer creates its file now (else nothing to do)."""
        if self._closed:
            raise ValueError("start_file on a closed CaptureWriter")
        if not isinstance(self._stream, DeferredFile) or self._stream.started:
            return
        self._stream.start()
        if self._pending_symbols:
            self._write_side_file("".join(self._pending_symbols))
            self._pending_symbols = []

    def write_lost(self, lost_events: int, timestamp_ns: int) -> None:
        """Tracepoint captures: events lost so far (cumulative), as an ISB's ``isb_ifdrop``."""
        if self._closed:
            raise ValueError("write_lost on a closed CaptureWriter")
        if self.tracepoint_format is None:
            raise ValueError("write_lost is for tracepoint captures")
        order = self.byte_order
        layouts = LAYOUTS[order]
        body = b"".join(
            (
                layouts.isb_fixed.pack(0, timestamp_ns >> 32, timestamp_ns & _U32_MAX),
                _option(order, ISB_IFDROP, lost_events.to_bytes(8, self.byte_order)),
                _end_of_options(order),
            )
        )
        self._stream.write(_block(order, BLOCK_ISB, body))

    def flush(self, *, sync: bool = False) -> None:
        """Hand buffered records to the kernel (survives SIGKILL); ``sync`` also fsyncs (power)."""
        if isinstance(self._stream, DeferredFile):
            if sync:
                self._stream.sync()
            else:
                self._stream.flush()
            return
        self._stream.flush()
        if sync:
            os.fsync(self._stream.fileno())

    def close(self) -> None:
        """Flush, and close the file if this writer opened it.  Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            self._stream.flush()
        finally:
            if self._close_stream:
                self._stream.close()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
