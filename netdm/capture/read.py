"""Reading netlink captures: classic pcap and pcapng, from netdm, dwdump, tcpdump or dumpcap.

Strategy: :class:`CaptureReader` reads the file header when it is created,
so a file that is not a capture fails at once, and then hands the walk to
the record loop of its format: :mod:`netdm.capture.pcap_records` or
:mod:`netdm.capture.pcapng_records` (whose blocks are read by
:mod:`netdm.capture.pcapng_blocks`).  The file is read in 1 MiB chunks into
one ``bytes`` buffer (:mod:`netdm.capture.window`) and walked with ``struct``
layouts derived from the construct definitions (:mod:`netdm.capture.layouts`
from :mod:`netdm.capture.schema`); each record becomes a
:class:`CaptureRecord` named tuple holding a slice of the buffer.  Records
come out of a generator, so every good record is delivered before the error
that stops the walk.

Damage is reported as one :class:`~netdm.capture.errors.CaptureError`
sentence naming the file and the byte offset where the damaged structure
begins (:mod:`netdm.capture.damage`).  With ``keep_going`` the reader counts
the damage (:attr:`CaptureReader.bad_records`, the first sentences in
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
from types import TracebackType
from typing import BinaryIO

from netdm.capture.damage import MAX_PROBLEMS_KEPT
from netdm.capture.info import (
    CaptureInfo,
    InterfaceInfo,
    SectionInfo,
    capture_tracepoint_format,
    tracepoint_format_of,
)
from netdm.capture.layouts import LAYOUTS
from netdm.capture.pcap_records import PcapRecords
from netdm.capture.pcapng_records import PcapngRecords
from netdm.capture.records import CaptureRecord
from netdm.capture.window import PCAP_MAGICS, PCAPNG_MAGIC, InputWindow, describe_start


class CaptureReader(PcapRecords, PcapngRecords):
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
        self._input = InputWindow(self._stream)
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

    # ----------------------------------------------------------------------- header

    def _read_header(self) -> tuple[CaptureInfo, Iterator[CaptureRecord]]:
        inp = self._input
        inp.fill(0, LAYOUTS["big"].pcap_file_header_len)  # a size, the same in either order
        head = inp.buf
        if not head:
            raise self._error(0, "is empty: there is no capture header at offset 0")
        magic = head[:4]
        if magic in PCAP_MAGICS:
            return self._pcap_header(head)
        if magic == PCAPNG_MAGIC:
            return self._pcapng_header()
        known = [*PCAP_MAGICS, PCAPNG_MAGIC]
        if len(head) < 4 and any(candidate.startswith(head) for candidate in known):
            raise self._error(
                0,
                "ends in the middle of its file header at offset 0 "
                f"({len(head)} bytes are present)",
            )
        raise self._error(
            0,
            f"is not a pcap or pcapng capture: at offset 0 it starts with {describe_start(head)}",
        )


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


__all__ = [
    "MAX_PROBLEMS_KEPT",
    "CaptureInfo",
    "CaptureReader",
    "CaptureRecord",
    "InterfaceInfo",
    "SectionInfo",
    "capture_tracepoint_format",
    "read_capture",
    "read_symbols",
    "tracepoint_format_of",
]
