"""netdm's capture layer: netlink datagrams to and from pcapng / pcap files.

Strategy: files and records only.  A record is the bytes of one netlink
datagram, a nanosecond timestamp, its direction and the pseudo-header's
netlink protocol; decoding the messages is :mod:`netdm.proto`'s job, and
keeping only NET_DM (generic netlink, ``protocol == NETLINK_GENERIC``, the
family id learnt from the capture's nlctrl reply) is the caller's.  The link
type is ``LINKTYPE_NETLINK`` (253) with its 16-byte cooked pseudo-header, so
Wireshark, tshark and tcpdump read what netdm writes, and netdm reads what
they, dwdump and ``tcpdump -i nlmon0`` write.

* :mod:`netdm.capture.write`: :class:`CaptureWriter`, pcapng by default,
  classic pcap on request; one ``write()`` per record on a buffered file.
* :mod:`netdm.capture.read`: :func:`read_capture` / :class:`CaptureReader`,
  classic pcap (both byte orders, micro- and nanoseconds) and pcapng (both
  byte orders, several sections and interfaces); :func:`read_symbols`.  Its
  rooms: ``pcap_records`` and ``pcapng_records`` (the record loops),
  ``pcapng_blocks`` (blocks and options), ``records`` and ``info`` (what it
  gives), ``window`` (the buffer), ``damage`` (the error sentences).
* :mod:`netdm.capture.schema`: the construct definition of every structure;
  :mod:`netdm.capture.formats`: the numbers (magics, codes, link types);
  :mod:`netdm.capture.layouts`: the ``struct`` layouts, sizes and offsets,
  derived from the schema.
* :class:`CaptureError`: the one error, a sentence with file and offset.

Importing this package loads neither construct nor pyroute2: ``layouts``
imports ``schema`` (and so construct) when the first capture is opened or
written, not before.  docs/captures.md explains the format choices, the
symbol blocks and the library decision.
"""

from __future__ import annotations

from netdm.capture.errors import CaptureError
from netdm.capture.formats import (
    ARPHRD_NETLINK,
    LINKTYPE_NETLINK,
    NETLINK_GENERIC,
    PACKET_HOST,
    PACKET_OUTGOING,
    CaptureFormat,
)
from netdm.capture.read import (
    CaptureInfo,
    CaptureReader,
    CaptureRecord,
    InterfaceInfo,
    SectionInfo,
    read_capture,
    read_symbols,
)
from netdm.capture.write import CaptureWriter

__all__ = [
    "ARPHRD_NETLINK",
    "LINKTYPE_NETLINK",
    "NETLINK_GENERIC",
    "PACKET_HOST",
    "PACKET_OUTGOING",
    "CaptureError",
    "CaptureFormat",
    "CaptureInfo",
    "CaptureReader",
    "CaptureRecord",
    "CaptureWriter",
    "InterfaceInfo",
    "SectionInfo",
    "read_capture",
    "read_symbols",
]
