"""What a capture says about itself: sections, interfaces, the kallsyms text it carries.

Strategy: plain dataclasses the reader fills as it goes (pcapng sections and
interfaces appear as their blocks are reached), and the two places a capture
keeps text netdm wrote for itself: a tracepoint interface's format file (an
``if`` comment) and, for classic pcap, the symbols side file ``FILE.symbols``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netdm.capture.formats import DEFAULT_TSRESOL, TRACEPOINT_FORMAT_MARK, ByteOrder, CaptureFormat


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


def read_side_file(path: str) -> str:
    """The text of a symbols side file, or "" when there is none."""
    try:
        with open(path, encoding="utf-8", errors="replace") as side:
            return side.read()
    except FileNotFoundError:
        return ""
