"""Packet mode, presented: the names of every packet view, filter and sink, in one place.

Strategy: each job has its own room, and this module only gathers their
public names for callers that want one import (the command line, scripts):

* :mod:`netdm.output.packet_line`: one tcpdump-like line per dropped packet.
* :mod:`netdm.output.packet_verbose`: that line, details and a hex dump.
* :mod:`netdm.output.packet_json`: the JSON dict and the fast JSON line;
  :mod:`netdm.output.packet_json_headers` writes its ``"headers"``.
* :mod:`netdm.output.packet_printer`: the printer the pipeline calls.
* :mod:`netdm.engine.packet_filter`: which drops to show (client side).
* :mod:`netdm.engine.packet_site`: a drop's site and interface, for all views.
* :mod:`netdm.capture.packet_pcap`: the dropped packets as a pcap file.

The exact formats are documented in ``docs/packet-mode.md``.
"""

from __future__ import annotations

from netdm.capture.packet_pcap import LINKTYPE_LINUX_SLL2, PcapPacketSink, sll2_frame
from netdm.engine.packet_filter import PacketFilter, normalize_reason, parse_filter_arguments
from netdm.engine.packet_site import IfnameResolver, caching_resolver
from netdm.output.packet_json import (
    PayloadEncoding,
    headers_to_json,
    packet_json_line,
    packet_json_writer,
    packet_to_json,
)
from netdm.output.packet_line import TimeFormat, format_packet_line, format_timestamp
from netdm.output.packet_verbose import format_packet_verbose, hex_dump

__all__ = [
    "LINKTYPE_LINUX_SLL2",
    "IfnameResolver",
    "PacketFilter",
    "PayloadEncoding",
    "PcapPacketSink",
    "TimeFormat",
    "caching_resolver",
    "format_packet_line",
    "format_packet_verbose",
    "format_timestamp",
    "headers_to_json",
    "hex_dump",
    "normalize_reason",
    "packet_json_line",
    "packet_json_writer",
    "packet_to_json",
    "parse_filter_arguments",
    "sll2_frame",
]
