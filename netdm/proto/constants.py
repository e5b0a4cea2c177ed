"""Numbers of the NET_DM generic-netlink family, named as the kernel names them.

Strategy: every enum keeps the kernel's own spelling (``Attr.PC`` is
``NET_DM_ATTR_PC``) so that a grep against ``include/uapi/linux/net_dropmon.h``
finds each one.  Values are checked against the uapi header as of 6.x; see
``docs/protocol.md`` for which kernel introduced which number.
"""

from __future__ import annotations

from enum import IntEnum

FAMILY_NAME = "NET_DM"
EVENTS_GROUP = "events"  # multicast group; its id is always 1 (NET_DM_GRP_ALERT)
NET_DM_GRP_ALERT = 1
FAMILY_VERSION = 2  # genlmsghdr.version the kernel puts in every message it sends


class Cmd(IntEnum):
    """``NET_DM_CMD_*``: the generic-netlink command byte."""

    UNSPEC = 0
    ALERT = 1  # summary-mode notification (multicast)
    CONFIG = 2
    START = 3
    STOP = 4
    PACKET_ALERT = 5  # packet-mode notification (multicast), 5.4+
    CONFIG_GET = 6
    CONFIG_NEW = 7  # reply to CONFIG_GET
    STATS_GET = 8
    STATS_NEW = 9  # reply to STATS_GET


class Attr(IntEnum):
    """``NET_DM_ATTR_*``: top-level attribute types."""

    UNSPEC = 0  # legacy struct net_dm_alert_msg in ALERT
    ALERT_MODE = 1  # u8
    PC = 2  # u64
    SYMBOL = 3  # string
    IN_PORT = 4  # nested PortAttr
    TIMESTAMP = 5  # u64, ns since the epoch
    PROTO = 6  # u16, EtherType in host order
    PAYLOAD = 7  # binary, from the MAC header
    PAD = 8  # alignment padding before u64 values; skip anywhere
    TRUNC_LEN = 9  # u32
    ORIG_LEN = 10  # u32
    QUEUE_LEN = 11  # u32
    STATS = 12  # nested StatsAttr (software)
    HW_STATS = 13  # nested StatsAttr (hardware)
    ORIGIN = 14  # u16, Origin
    HW_TRAP_GROUP_NAME = 15  # string
    HW_TRAP_NAME = 16  # string
    HW_ENTRIES = 17  # nested list of HW_ENTRY
    HW_ENTRY = 18  # nested {HW_TRAP_NAME, HW_TRAP_COUNT}, top-level numbering
    HW_TRAP_COUNT = 19  # u32
    SW_DROPS = 20  # flag
    HW_DROPS = 21  # flag
    FLOW_ACTION_COOKIE = 22  # binary, 5.7+
    REASON = 23  # string, SKB_DROP_REASON_* without the prefix, 5.18+


class PortAttr(IntEnum):
    """``NET_DM_ATTR_PORT_*`` inside ``NET_DM_ATTR_IN_PORT`` (numbering starts at 0)."""

    NETDEV_IFINDEX = 0  # u32
    NETDEV_NAME = 1  # string


class StatsAttr(IntEnum):
    """``NET_DM_ATTR_STATS_*`` inside STATS / HW_STATS (numbering starts at 0)."""

    DROPPED = 0  # u64


class AlertMode(IntEnum):
    """``enum net_dm_alert_mode``."""

    SUMMARY = 0
    PACKET = 1


class Origin(IntEnum):
    """``enum net_dm_origin``."""

    SW = 0
    HW = 1


# --- netlink and generic-netlink framing (include/uapi/linux/netlink.h, genetlink.h)

NLMSG_HDRLEN = 16
GENL_HDRLEN = 4
NLA_HDRLEN = 4
NLA_ALIGNTO = 4
NLA_F_NESTED = 0x8000
NLA_F_NET_BYTEORDER = 0x4000
NLA_TYPE_MASK = 0x3FFF

NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSG_OVERRUN = 4
NLMSG_MIN_TYPE = 0x10  # first id free for families; GENL_ID_CTRL

NLM_F_REQUEST = 0x01
NLM_F_MULTI = 0x02
NLM_F_ACK = 0x04
NLM_F_ECHO = 0x08
NLM_F_DUMP = 0x300
# flags on NLMSG_ERROR (acks)
NLM_F_CAPPED = 0x100
NLM_F_ACK_TLVS = 0x200


class NlmsgerrAttr(IntEnum):
    """``NLMSGERR_ATTR_*``: extended-ack TLVs after a netlink error/ack."""

    UNUSED = 0
    MSG = 1  # string
    OFFS = 2  # u32, offset of the offending attribute in the request
    COOKIE = 3  # binary
    POLICY = 4  # nested
    MISS_TYPE = 5  # u32
    MISS_NEST = 6  # u32


GENL_ID_CTRL = 0x10


class CtrlCmd(IntEnum):
    """``CTRL_CMD_*`` of the nlctrl family."""

    UNSPEC = 0
    NEWFAMILY = 1
    DELFAMILY = 2
    GETFAMILY = 3
    NEWOPS = 4
    DELOPS = 5
    GETOPS = 6
    NEWMCAST_GRP = 7
    DELMCAST_GRP = 8
    GETMCAST_GRP = 9
    GETPOLICY = 10


class CtrlAttr(IntEnum):
    """``CTRL_ATTR_*`` of the nlctrl family."""

    UNSPEC = 0
    FAMILY_ID = 1  # u16
    FAMILY_NAME = 2  # string
    VERSION = 3  # u32
    HDRSIZE = 4  # u32
    MAXATTR = 5  # u32
    OPS = 6  # nested array of nested {OP_ID, OP_FLAGS}
    MCAST_GROUPS = 7  # nested array of nested {MCAST_GRP_NAME, MCAST_GRP_ID}
    POLICY = 8
    OP_POLICY = 9
    OP = 10


class CtrlAttrOp(IntEnum):
    """``CTRL_ATTR_OP_*``."""

    UNSPEC = 0
    ID = 1  # u32
    FLAGS = 2  # u32


class CtrlAttrMcastGrp(IntEnum):
    """``CTRL_ATTR_MCAST_GRP_*``."""

    UNSPEC = 0
    NAME = 1  # string
    ID = 2  # u32
