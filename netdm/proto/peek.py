"""A datagram's first message, told by its header bytes, without decoding it.

Strategy: replay skips what it need not decode (requests, replies) and finds
the family id of a capture without an nlctrl reply by looking at a few fixed
bytes: ``nlmsg_type``, the genl command and version, and the flags, seq and
port id the kernel leaves 0 in a notification.  The offsets come from the
``nlmsghdr`` and ``genlmsghdr`` definitions (:mod:`netdm.proto.framing`).
Only the first message of a datagram is looked at: the kernel sends one
notification a datagram.
"""

from __future__ import annotations

from netdm.proto.constants import FAMILY_VERSION, NLMSG_HDRLEN, Cmd
from netdm.proto.decode import decode_datagram
from netdm.proto.errors import ProtocolError
from netdm.proto.events import PacketAlert, SummaryAlert
from netdm.proto.framing import (
    GENL_CMD_OFFSET,
    GENL_MESSAGE_MIN,
    GENL_VERSION_OFFSET,
    NLMSG_FLAGS_OFFSET,
    NLMSG_TYPE,
    NLMSG_TYPE_OFFSET,
)

_ALERTS = (Cmd.ALERT, Cmd.PACKET_ALERT)
# nlmsg_flags, nlmsg_seq and nlmsg_pid: all 0 in a multicast notification
_UNADDRESSED = bytes(NLMSG_HDRLEN - NLMSG_FLAGS_OFFSET)


def message_type(datagram: bytes) -> int:
    """The first message's ``nlmsg_type`` (the datagram holds at least its first 6 bytes)."""
    nl_type: int = NLMSG_TYPE.unpack_from(datagram, NLMSG_TYPE_OFFSET)[0]
    return nl_type


def is_net_dm_command(datagram: bytes, family_id: int, cmd: int) -> bool:
    """A message of ``family_id`` with command ``cmd`` (a request, or a reply like STATS_NEW)."""
    return (
        len(datagram) >= GENL_MESSAGE_MIN
        and message_type(datagram) == family_id
        and datagram[GENL_CMD_OFFSET] == cmd
    )


def is_alert(datagram: bytes, family_id: int) -> bool:
    """A kernel notification of ``family_id``: ALERT or PACKET_ALERT."""
    return (
        len(datagram) >= GENL_MESSAGE_MIN
        and message_type(datagram) == family_id
        and datagram[GENL_CMD_OFFSET] in _ALERTS
    )


def looks_like_net_dm_alert(datagram: bytes) -> bool:
    """Whether a datagram is NET_DM notifications, its family id not known yet.

    A generic-netlink multicast (flags, seq and port id 0) with the version the
    kernel sends and command ALERT or PACKET_ALERT, that decodes, as NET_DM
    with its own type as the family id, to alerts only.  Shorter than a genl
    header: False.
    """
    if len(datagram) < GENL_MESSAGE_MIN:
        return False
    if datagram[NLMSG_FLAGS_OFFSET:NLMSG_HDRLEN] != _UNADDRESSED:
        return False
    if datagram[GENL_VERSION_OFFSET] != FAMILY_VERSION:
        return False
    if datagram[GENL_CMD_OFFSET] not in _ALERTS:
        return False
    try:
        events = decode_datagram(datagram, message_type(datagram))
    except ProtocolError:
        return False
    return all(isinstance(event, (SummaryAlert, PacketAlert)) for event in events)
