"""``--write-packets FILE``: the dropped packets themselves, as a classic pcap file.

Strategy: one record per packet alert, written as it arrives, with link type
``LINKTYPE_LINUX_SLL2`` (276), the cooked header that keeps the EtherType
and the input ifindex of the drop.  :func:`sll2_frame` turns an alert's
payload into that frame (the payload's link layer is decided by
:func:`netdm.capture.link_layer.payload_is_ethernet`, as the header decoder
decides it); :class:`PcapPacketSink` writes the file.  The file and record
headers are those of :mod:`netdm.capture.formats`, in host byte order as
libpcap writes them.
"""

from __future__ import annotations

import os
import struct
import sys
from types import TracebackType
from typing import BinaryIO

from netdm.capture.formats import (
    LAYOUTS,
    MAX_SNAPLEN,
    PACKET_HOST,
    PCAP_MAGIC_NANOSECONDS,
    PCAP_VERSION,
)
from netdm.capture.link_layer import ETHERNET_HEADER_LEN, payload_is_ethernet
from netdm.capture.output_files import DeferredFile
from netdm.proto.events import PacketAlert

__all__ = ["LINKTYPE_LINUX_SLL2", "PcapPacketSink", "sll2_frame"]

LINKTYPE_LINUX_SLL2 = 276
SLL2_HEADER_LEN = 20
ARPHRD_ETHER = 1
ARPHRD_LOOPBACK = 772
ARPHRD_NONE = 0xFFFE  # tun devices: no link-layer header
PACKET_BROADCAST = 1
PACKET_MULTICAST = 2
_HOST_LAYOUTS = LAYOUTS["little" if sys.byteorder == "little" else "big"]
# protocol, reserved, ifindex, ARPHRD type, packet type, address length, address: network order
_SLL2_HEADER = struct.Struct("!HHIHBB8s")
_ZERO_MAC = bytes(6)
_BROADCAST_MAC = b"\xff" * 6
_MAX_U32 = 0xFFFFFFFF


def sll2_frame(alert: PacketAlert) -> bytes:
    """The packet of ``alert`` as a ``LINKTYPE_LINUX_SLL2`` frame: 20-byte header, then data.

    Ethernet payloads (see :func:`netdm.capture.link_layer.payload_is_ethernet`) lose
    their 14-byte Ethernet header: the EtherType goes into the protocol
    field, the source MAC into the link-layer address, broadcast/multicast
    destinations into the packet type; 802.1Q/802.1ad tags stay at the
    start of the data, as libpcap writes tagged frames in cooked captures.
    Bare layer-3 payloads keep every byte, with ``proto`` as the protocol.
    The interface index is the alert's input ifindex (0 when unknown).
    """
    payload = alert.payload or b""
    proto = alert.proto or 0
    ifindex = 0
    if alert.in_port is not None and alert.in_port.ifindex is not None:
        ifindex = alert.in_port.ifindex & _MAX_U32
    if payload_is_ethernet(alert.proto, payload):
        destination, source = payload[0:6], payload[6:12]
        protocol = (payload[12] << 8) | payload[13]
        if destination == _BROADCAST_MAC:
            packet_type = PACKET_BROADCAST
        elif destination[0] & 1:
            packet_type = PACKET_MULTICAST
        else:
            packet_type = PACKET_HOST
        hardware_type = (
            ARPHRD_LOOPBACK if source == _ZERO_MAC and destination == _ZERO_MAC else ARPHRD_ETHER
        )
        header = _SLL2_HEADER.pack(protocol, 0, ifindex, hardware_type, packet_type, 6, source)
        return header + payload[ETHERNET_HEADER_LEN:]
    header = _SLL2_HEADER.pack(proto & 0xFFFF, 0, ifindex, ARPHRD_NONE, PACKET_HOST, 0, b"")
    return header + payload


class PcapPacketSink:
    """``--write-packets FILE``: the dropped packets as a classic pcap file.

    Nanosecond pcap (magic ``0xa1b23c4d``) in host byte order, link type
    ``LINKTYPE_LINUX_SLL2`` (276), one record per alert: the kernel's drop
    time, :func:`sll2_frame` as data, ``caplen`` its length and ``len`` the
    packet's original length adjusted the same way (``orig_len`` minus the
    14 Ethernet bytes removed, plus the 20-byte SLL2 header).  Alerts
    without a timestamp get time 0.  Writes go to a buffered file and are
    not flushed per packet; call :meth:`flush` now and then, :meth:`close`
    at the end (or use ``with``).
    """

    def __init__(self, stream: BinaryIO | DeferredFile, *, close_stream: bool = False) -> None:
        """Write the file header to ``stream``; ``close_stream``: :meth:`close` closes it."""
        self._stream = stream
        self._close_stream = close_stream
        self._record_header = _HOST_LAYOUTS.pcap_record
        self.packets_written = 0
        major, minor = PCAP_VERSION
        stream.write(
            _HOST_LAYOUTS.pcap_file_header.pack(
                PCAP_MAGIC_NANOSECONDS, major, minor, 0, 0, MAX_SNAPLEN, LINKTYPE_LINUX_SLL2
            )
        )

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, deferred: bool = False) -> PcapPacketSink:
        """Create (or truncate) ``path`` and write the pcap file header.

        With ``deferred``, ``path`` is created (or truncated) only by
        :meth:`start_file`, once the run has started; closed before that, the
        sink leaves it as it was (see :mod:`netdm.capture.output_files`).
        """
        if deferred:
            return cls(DeferredFile(path), close_stream=True)
        return cls(open(path, "wb"), close_stream=True)  # noqa: SIM115 (closed by close())

    def start_file(self) -> None:
        """The run has started: a deferred sink creates its file now (else nothing to do)."""
        if isinstance(self._stream, DeferredFile):
            self._stream.start()

    def write(self, alert: PacketAlert) -> None:
        """Append one record for ``alert``."""
        frame = sll2_frame(alert)
        captured = len(frame)
        original = captured
        if alert.orig_len is not None:
            original = max(captured, alert.orig_len + captured - len(alert.payload or b""))
        seconds, nanoseconds = divmod(alert.timestamp_ns or 0, 1_000_000_000)
        record = self._record_header.pack(
            min(seconds, _MAX_U32), nanoseconds, captured, min(original, _MAX_U32)
        )
        self._stream.write(record + frame)
        self.packets_written += 1

    def flush(self) -> None:
        """Hand what was written to the operating system."""
        self._stream.flush()

    def close(self) -> None:
        """Flush, and close the file when this sink opened it."""
        if self._stream.closed:
            return
        self._stream.flush()
        if self._close_stream:
            self._stream.close()

    def __enter__(self) -> PcapPacketSink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
