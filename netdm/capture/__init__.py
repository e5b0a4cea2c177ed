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
  byte orders, several sections and interfaces); :func:`read_symbols`.
* :mod:`netdm.capture.schema`: the construct definition of every structure;
  :mod:`netdm.capture.formats`: the numbers and the fast ``struct`` twins.
* :class:`CaptureError`: the one error, a sentence with file and offset.

Nothing here imports construct or pyroute2 (only ``schema`` imports
construct, and only the tests import ``schema``).  docs/captures.md explains
the format choices, the symbol blocks and the library decision.
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
