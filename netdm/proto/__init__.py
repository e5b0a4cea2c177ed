"""netdm's protocol layer: NET_DM generic-netlink bytes in, typed events out, requests out.

There is no I/O here: no sockets, files or clocks, and no pyroute2.  A
transport hands each received datagram to :func:`decode_datagram` together
with the family id it resolved (itself learnt from a :class:`FamilyInfo`
event), and sends the bytes the ``build_*`` functions return.

* :mod:`netdm.proto.schema`: the wire format, defined with construct (the
  tests' oracle, ``tests/proto/reference_decoder.py``, parses with it alone).
* :mod:`netdm.proto.decode`: the fast decoder (``struct`` on offsets), whose
  tables :mod:`netdm.proto.framing` and :mod:`netdm.proto.readers` read off
  the schema; proven equal to the reference by property tests.
  :mod:`netdm.proto.sites` (drop sites for summaries) and
  :mod:`netdm.proto.alert_cache` (whole alerts) remember look-alike datagrams
  in a :mod:`netdm.proto.shapes` memory; :mod:`netdm.proto.peek` reads a
  datagram's header bytes without decoding it.
* :mod:`netdm.proto.encode`: requests, and the kernel's messages for tests.
  Everything construct-backed (the decoders, builders, peeks) is imported
  lazily: importing ``netdm.proto`` (or its constants and events) does not
  load construct.
* :mod:`netdm.proto.events`, :mod:`netdm.proto.errors`,
  :mod:`netdm.proto.constants`: what comes out, the one error type, the
  kernel's numbers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from netdm.proto.errors import ProtocolError
from netdm.proto.events import (
    Ack,
    ConfigReply,
    Done,
    DropPoint,
    ErrorReply,
    Event,
    FamilyInfo,
    HardwareEntry,
    InPort,
    OtherMessage,
    PacketAlert,
    RawAttribute,
    StatsReply,
    SummaryAlert,
    UnknownCommand,
)

if TYPE_CHECKING:
    from netdm.proto.decode import decode_datagram, decode_message
    from netdm.proto.encode import (
        build_ack,
        build_config,
        build_config_get,
        build_config_new,
        build_done,
        build_family_reply,
        build_getfamily,
        build_packet_alert,
        build_start,
        build_stats_get,
        build_stats_new,
        build_stop,
        build_summary_alert,
    )

# The decoders and builders need construct (tens of milliseconds to import; the fast
# decoder reads its tables off the construct definitions).  They load on first use.
_CONSTRUCT_BACKED = {
    "decode_datagram": "netdm.proto.decode",
    "decode_message": "netdm.proto.decode",
    **{
        name: "netdm.proto.encode"
        for name in (
            "build_ack",
            "build_config",
            "build_config_get",
            "build_config_new",
            "build_done",
            "build_family_reply",
            "build_getfamily",
            "build_packet_alert",
            "build_start",
            "build_stats_get",
            "build_stats_new",
            "build_stop",
            "build_summary_alert",
        )
    },
}


def __getattr__(name: str) -> Any:
    module = _CONSTRUCT_BACKED.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "Ack",
    "ConfigReply",
    "Done",
    "DropPoint",
    "ErrorReply",
    "Event",
    "FamilyInfo",
    "HardwareEntry",
    "InPort",
    "OtherMessage",
    "PacketAlert",
    "ProtocolError",
    "RawAttribute",
    "StatsReply",
    "SummaryAlert",
    "UnknownCommand",
    "build_ack",
    "build_config",
    "build_config_get",
    "build_config_new",
    "build_done",
    "build_family_reply",
    "build_getfamily",
    "build_packet_alert",
    "build_start",
    "build_stats_get",
    "build_stats_new",
    "build_stop",
    "build_summary_alert",
    "decode_datagram",
    "decode_message",
]
