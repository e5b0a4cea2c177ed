"""The NET_DM wire format, defined with construct: the one definition of the bytes.

Strategy: this module is the definition of the bytes.  Each netlink structure
the drop monitor uses (``nlmsghdr``, ``genlmsghdr``, ``nlattr``, the legacy
``struct net_dm_alert_msg``, ``struct nlmsgerr``, the nlctrl family reply) is
a construct declaration that reads like its C header, and every NET_DM command
has an attribute table saying which attribute carries which type.  Attributes
a table does not name parse as raw bytes (``Switch(..., default=GreedyBytes)``),
so newer kernels never break the parse.

Semantic rules live here too, as construct ``Check``s, so that "well formed"
means exactly one thing: a fixed-size value must fill its attribute, a summary
struct's ``entries`` must match its length, a ``HW_ENTRY`` needs a trap name
and a count, a family reply needs an id and a name, an ``nlmsgerr`` error is 0
or negative.  Every attribute list ends in :class:`AttributeListEnd`, which
reports the byte offset of the first attribute that did not parse (construct's
substreams keep absolute offsets), so the reference decoder names the same
offset as the fast decoder in :mod:`netdm.proto.decode`.

The decoders are built on these definitions: the tests' reference decoder
(``tests/proto/reference_decoder.py``) parses with them (slow, the oracle),
and :mod:`netdm.proto.readers` reads its fast ``struct`` readers off them
when it loads: each attribute table names, for every type, the event field
(``"pc" / U64``) and the construct its value has, and
:func:`attribute_list_parts` reads a nest's table back.

Byte order: host order, defined here as little-endian (x86-64, arm64).  Every
integer below is an ``...l`` field; a big-endian variant would swap them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from construct import (
    Adapter,
    Aligned,
    Array,
    Bytes,
    Check,
    Const,
    Construct,
    ExplicitError,
    FocusedSeq,
    GreedyBytes,
    GreedyRange,
    If,
    IfThenElse,
    Int8ul,
    Int16ul,
    Int32sl,
    Int32ul,
    Int64ul,
    Pass,
    Peek,
    Prefixed,
    RawCopy,
    Rebuild,
    Renamed,
    Struct,
    Subconstruct,
    Switch,
    Terminated,
    len_,
    this,
)
from construct.core import stream_tell, stream_write

from netdm.proto.constants import (
    GENL_ID_CTRL,
    NLA_TYPE_MASK,
    NLM_F_ACK_TLVS,
    NLM_F_CAPPED,
    NLMSG_DONE,
    NLMSG_ERROR,
    Attr,
    Cmd,
    CtrlAttr,
    CtrlAttrMcastGrp,
    CtrlAttrOp,
    CtrlCmd,
    NlmsgerrAttr,
    PortAttr,
    StatsAttr,
)

# --------------------------------------------------------------------------- building blocks


class MalformedAt(ExplicitError):  # type: ignore[misc]
    """Raised by :class:`AttributeListEnd`: what stopped parsing, and where.

    It is an ``ExplicitError`` so that enclosing ``GreedyRange``s re-raise it
    instead of treating it as the end of their own list: the innermost offset
    wins.
    """

    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(f"{reason} at offset {offset}")
        self.reason = reason
        self.offset = offset


class AttributeListEnd(Construct):  # type: ignore[misc]
    """``Terminated`` for a ``GreedyRange``: the list must fill its container.

    ``GreedyRange`` stops at the first element that fails to parse and rewinds
    to its start, so the stream position here is the offset of that element.
    """

    def __init__(self, element: str) -> None:
        super().__init__()
        self.element = element
        self.flagbuildnone = True

    def _parse(self, stream: Any, context: Any, path: Any) -> None:
        offset = stream_tell(stream, path)
        if stream.read(1):
            raise MalformedAt(f"malformed {self.element}", offset)

    def _build(self, obj: Any, stream: Any, context: Any, path: Any) -> None:
        return None

    def _sizeof(self, context: Any, path: Any) -> int:
        return 0


class NlmsgAligned(Subconstruct):  # type: ignore[misc]
    """``NLMSG_ALIGN``: a netlink message padded to 4 bytes.

    Unlike ``Aligned``, the datagram may end inside the padding of its last
    message (``NLMSG_NEXT``/``NLMSG_OK`` accept that, and so does the kernel).
    """

    def _parse(self, stream: Any, context: Any, path: Any) -> Any:
        start = stream_tell(stream, path)
        obj = self.subcon._parsereport(stream, context, path)
        stream.read(-(stream_tell(stream, path) - start) % 4)
        return obj

    def _build(self, obj: Any, stream: Any, context: Any, path: Any) -> Any:
        start = stream_tell(stream, path)
        built = self.subcon._build(obj, stream, context, path)
        pad = -(stream_tell(stream, path) - start) % 4
        stream_write(stream, b"\x00" * pad, pad, path)
        return built


class NulTerminatedString(Adapter):  # type: ignore[misc]
    """A kernel string (``nla_put_string``): UTF-8, NUL-terminated.

    Parsing stops at the first NUL (or at the end when the NUL is missing) and
    decodes with ``errors="surrogateescape"``: no bytes are lost, and encoding
    with the same handler gives them back.  Building appends the NUL; ``bytes``
    are written verbatim (for reproducing odd kernel output in tests).
    """

    def _decode(self, obj: bytes, context: Any, path: Any) -> str:
        return obj.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")

    def _encode(self, obj: str | bytes, context: Any, path: Any) -> bytes:
        if isinstance(obj, bytes):
            return obj
        return obj.encode("utf-8", "surrogateescape") + b"\x00"


def exactly(field: Any) -> Any:
    """A fixed-size value that must fill its attribute (a u32 with 2 bytes is an error)."""
    return FocusedSeq("value", "value" / field, Terminated)


U8 = exactly(Int8ul)
U16 = exactly(Int16ul)
U32 = exactly(Int32ul)
U64 = exactly(Int64ul)
Flag = Terminated  # NLA_FLAG: presence is the value, no data (lib/nlattr.c rejects data)
String = NulTerminatedString(GreedyBytes)
Binary = GreedyBytes
# NET_DM_ATTR_PAD: normally no data; whatever it holds is skipped.  A construct of its own
# (GreedyBytes renamed to nothing) so that a table's PAD entry can be told from Binary.
Pad = Renamed(GreedyBytes, newdocs="padding, skipped")

# --------------------------------------------------------------------------- netlink framing

# struct nlmsghdr (include/uapi/linux/netlink.h)
NlMsgHdr = Struct(
    "nlmsg_len" / Int32ul,  # whole message, header included
    "nlmsg_type" / Int16ul,  # the family id for generic netlink
    "nlmsg_flags" / Int16ul,
    "nlmsg_seq" / Int32ul,
    "nlmsg_pid" / Int32ul,  # port id
)

# struct genlmsghdr (include/uapi/linux/genetlink.h); NET_DM has hdrsize 0: attributes follow
GenlMsgHdr = Struct(
    "cmd" / Int8ul,
    "version" / Int8ul,  # the kernel sends 2 and ignores what requests say (reference §1)
    "reserved" / Int16ul,
)


def nlattr(values: Mapping[int, Any], default: Any = GreedyBytes) -> Any:
    """struct nlattr: ``{u16 nla_len; u16 nla_type}`` + data, padded to 4 (NLA_ALIGNTO).

    ``nla_len`` counts the 4-byte header but not the padding.  The value's type
    is looked up with the flag bits (``NLA_F_NESTED``, ``NLA_F_NET_BYTEORDER``)
    masked off; ``nla_type`` keeps them as sent.
    """
    return Aligned(
        4,
        Prefixed(
            Int16ul,
            Struct(
                "nla_type" / Int16ul,
                "value" / Switch(this.nla_type & NLA_TYPE_MASK, dict(values), default=default),
            ),
            includelength=True,
        ),
    )


class HasTypes:
    """The ``Check`` of a nest or message that needs some attributes (``required``)."""

    def __init__(self, required: Collection[int]) -> None:
        self.required = tuple(required)

    def __call__(self, this: Any) -> bool:
        present = {attribute.nla_type & NLA_TYPE_MASK for attribute in this.attributes}
        return all(kind in present for kind in self.required)


def field_names(attributes: Mapping[int, Any]) -> dict[int, str]:
    """Attribute type -> the event field its value goes to, for every type but PAD."""
    return {kind: value.name for kind, value in attributes.items() if value is not Pad}


def padding_types(attributes: Mapping[int, Any]) -> frozenset[int]:
    """The types a table skips (PAD): neither a field nor kept raw."""
    return frozenset(kind for kind, value in attributes.items() if value is Pad)


def nlattr_list(
    values: Mapping[int, Any], *, default: Any = GreedyBytes, required: Collection[int] = ()
) -> Any:
    """Attributes back to back, filling their container (a message or a nest)."""
    fields = ["attributes" / GreedyRange(nlattr(values, default)), AttributeListEnd("attribute")]
    if required:
        fields.append(Check(HasTypes(required)))
    return FocusedSeq("attributes", *fields)


def attribute_list_parts(nest: Any) -> tuple[Mapping[int, Any], Any, tuple[int, ...]]:
    """What :func:`nlattr_list` was given, read back: table, default, required types.

    The fast decoder builds its readers from these, so it follows the
    definitions above instead of restating them.
    """
    greedy_range = nest.subcons[0].subcon
    switch = greedy_range.subcon.subcon.subcon.subcons[1].subcon  # Aligned/Prefixed/Struct
    assert isinstance(switch, Switch), nest
    required = [sub.func.required for sub in nest.subcons if isinstance(sub, Check)]
    return switch.cases, switch.default, required[0] if required else ()


# --------------------------------------------------------------------------- NET_DM

# Legacy summary payload, the type-0 attribute of ALERT (reference §4.4):
# struct net_dm_drop_point { __u8 pc[8]; __u32 count; }   sizeof 12
# struct net_dm_alert_msg  { __u32 entries; struct net_dm_drop_point points[]; }
NetDmDropPoint = Struct(
    "pc" / Int64ul,  # memcpy of the native pointer: host order; 0 = NAPI rx_dropped heuristic
    "count" / Int32ul,
)
NetDmAlertMsg = Struct(
    "entries" / Rebuild(Int32ul, len_(this.points)),
    "points" / Array(this.entries, NetDmDropPoint),
    Terminated,  # nla_len = 8 + 12 * entries; a count that disagrees is an error
)

# Nests.  IN_PORT and STATS number their attributes from 0; PAD (8) may appear in any
# nest (nla_put_u64_64bit inside STATS, reference §4.2).
#
# Every attribute a table names is ``"field" / type``: the field of the event (in
# :mod:`netdm.proto.events`) that holds its value.  Renaming is invisible to parsing
# and building; the reference decoder and the fast decoder both read the names here.
IN_PORT_ATTRIBUTES: dict[int, Any] = {
    PortAttr.NETDEV_IFINDEX: "ifindex" / U32,  # NET_DM_ATTR_PORT_NETDEV_IFINDEX
    PortAttr.NETDEV_NAME: "name" / String,  # NET_DM_ATTR_PORT_NETDEV_NAME
    Attr.PAD: Pad,
}
InPortNest = nlattr_list(IN_PORT_ATTRIBUTES)
STATS_ATTRIBUTES: dict[int, Any] = {
    StatsAttr.DROPPED: "dropped" / U64,  # NET_DM_ATTR_STATS_DROPPED
    Attr.PAD: Pad,
}
StatsNest = nlattr_list(STATS_ATTRIBUTES)
# HW_ENTRY uses the top-level numbering (reference §3, §5.4).
HW_ENTRY_ATTRIBUTES: dict[int, Any] = {
    Attr.HW_TRAP_NAME: "trap_name" / String,  # NET_DM_ATTR_HW_TRAP_NAME
    Attr.HW_TRAP_COUNT: "count" / U32,  # NET_DM_ATTR_HW_TRAP_COUNT
    Attr.PAD: Pad,
}
HwEntryNest = nlattr_list(HW_ENTRY_ATTRIBUTES, required=(Attr.HW_TRAP_NAME, Attr.HW_TRAP_COUNT))
HwEntriesNest = nlattr_list({Attr.HW_ENTRY: "entries" / HwEntryNest, Attr.PAD: Pad})

# net_dm_nl_policy (reference §3): what CONFIG sets and CONFIG_NEW reports, START/STOP flags
_CONFIG_ATTRIBUTES: dict[int, Any] = {
    Attr.ALERT_MODE: "alert_mode" / U8,  # NET_DM_ATTR_ALERT_MODE
    Attr.TRUNC_LEN: "trunc_len" / U32,  # NET_DM_ATTR_TRUNC_LEN
    Attr.QUEUE_LEN: "queue_len" / U32,  # NET_DM_ATTR_QUEUE_LEN
    Attr.PAD: Pad,
}
_TRACE_ATTRIBUTES: dict[int, Any] = {
    Attr.SW_DROPS: "sw_drops" / Flag,  # NET_DM_ATTR_SW_DROPS
    Attr.HW_DROPS: "hw_drops" / Flag,  # NET_DM_ATTR_HW_DROPS
    Attr.PAD: Pad,
}

# Which attributes each command carries, and their types.  Kernel -> user first.
NET_DM_ATTRIBUTES: dict[int, dict[int, Any]] = {
    Cmd.ALERT: {
        Attr.UNSPEC: "drop_points" / NetDmAlertMsg,  # entries = 0 in hardware summaries
        Attr.HW_ENTRIES: "hw_entries" / HwEntriesNest,  # NET_DM_ATTR_HW_ENTRIES
        Attr.PAD: Pad,  # NET_DM_ATTR_PAD
    },
    Cmd.PACKET_ALERT: {
        Attr.ORIGIN: "origin" / U16,  # NET_DM_ATTR_ORIGIN
        Attr.PC: "pc" / U64,  # NET_DM_ATTR_PC
        Attr.SYMBOL: "symbol" / String,  # NET_DM_ATTR_SYMBOL
        Attr.REASON: "reason" / String,  # NET_DM_ATTR_REASON
        Attr.IN_PORT: "in_port" / InPortNest,  # NET_DM_ATTR_IN_PORT; may be empty (nla_len 4)
        Attr.TIMESTAMP: "timestamp_ns" / U64,  # NET_DM_ATTR_TIMESTAMP
        Attr.PROTO: "proto" / U16,  # NET_DM_ATTR_PROTO
        Attr.PAYLOAD: "payload" / Binary,  # NET_DM_ATTR_PAYLOAD
        Attr.ORIG_LEN: "orig_len" / U32,  # NET_DM_ATTR_ORIG_LEN
        Attr.HW_TRAP_GROUP_NAME: "hw_trap_group_name" / String,  # NET_DM_ATTR_HW_TRAP_GROUP_NAME
        Attr.HW_TRAP_NAME: "hw_trap_name" / String,  # NET_DM_ATTR_HW_TRAP_NAME
        Attr.FLOW_ACTION_COOKIE: "flow_action_cookie" / Binary,  # NET_DM_ATTR_FLOW_ACTION_COOKIE
        Attr.PAD: Pad,
    },
    Cmd.CONFIG_NEW: _CONFIG_ATTRIBUTES,
    Cmd.STATS_NEW: {
        Attr.STATS: "sw_dropped" / StatsNest,  # NET_DM_ATTR_STATS
        Attr.HW_STATS: "hw_dropped" / StatsNest,  # NET_DM_ATTR_HW_STATS
        Attr.PAD: Pad,
    },
    # user -> kernel requests (seen in captures)
    Cmd.CONFIG: _CONFIG_ATTRIBUTES,
    Cmd.START: _TRACE_ATTRIBUTES,
    Cmd.STOP: _TRACE_ATTRIBUTES,
    Cmd.CONFIG_GET: {Attr.PAD: Pad},
    Cmd.STATS_GET: {Attr.PAD: Pad},
}
NET_DM_REQUESTS = frozenset({Cmd.CONFIG, Cmd.START, Cmd.STOP, Cmd.CONFIG_GET, Cmd.STATS_GET})

NetDmBody = RawCopy(
    Struct(
        "genl" / GenlMsgHdr,
        "attributes"
        / Switch(
            this.genl.cmd,
            {cmd: nlattr_list(values) for cmd, values in NET_DM_ATTRIBUTES.items()},
            default=nlattr_list({}),  # a command from a newer kernel: raw attributes
        ),
    )
)

# --------------------------------------------------------------------------- nlctrl

# No PAD in nlctrl's nests: every type a table does not name is kept raw.
CtrlOpNest = nlattr_list(
    {CtrlAttrOp.ID: "id" / U32, CtrlAttrOp.FLAGS: "flags" / U32}, required=(CtrlAttrOp.ID,)
)
CtrlMcastGroupNest = nlattr_list(
    {CtrlAttrMcastGrp.NAME: "name" / String, CtrlAttrMcastGrp.ID: "id" / U32},
    required=(CtrlAttrMcastGrp.NAME, CtrlAttrMcastGrp.ID),
)
# Arrays: every element is a nest whose type is its index (1, 2, ...).
CtrlOpsNest = nlattr_list({}, default=CtrlOpNest)
CtrlMcastGroupsNest = nlattr_list({}, default=CtrlMcastGroupNest)
CTRL_FAMILY_ATTRIBUTES: dict[int, Any] = {
    CtrlAttr.FAMILY_ID: "family_id" / U16,
    CtrlAttr.FAMILY_NAME: "name" / String,
    CtrlAttr.VERSION: "version" / U32,
    CtrlAttr.HDRSIZE: "hdrsize" / U32,
    CtrlAttr.MAXATTR: "maxattr" / U32,
    CtrlAttr.OPS: "ops" / CtrlOpsNest,
    CtrlAttr.MCAST_GROUPS: "mcast_groups" / CtrlMcastGroupsNest,
}
CTRL_FAMILY_REQUIRED = (CtrlAttr.FAMILY_ID, CtrlAttr.FAMILY_NAME)
CtrlBody = RawCopy(
    Struct(
        "genl" / GenlMsgHdr,
        "attributes"
        / Switch(
            this.genl.cmd,
            {
                CtrlCmd.NEWFAMILY: nlattr_list(
                    CTRL_FAMILY_ATTRIBUTES, required=CTRL_FAMILY_REQUIRED
                ),
                CtrlCmd.GETFAMILY: nlattr_list(CTRL_FAMILY_ATTRIBUTES),
            },
            default=GreedyBytes,
        ),
    )
)

# --------------------------------------------------------------------------- errors and acks


def _ack_flags(this: Any) -> int:
    return int(this._.nlmsg_flags & (NLM_F_CAPPED | NLM_F_ACK_TLVS))


# Extended ack TLVs (no PAD here).
EXT_ACK_ATTRIBUTES: dict[int, Any] = {
    NlmsgerrAttr.MSG: "message" / String,  # NLMSGERR_ATTR_MSG
    NlmsgerrAttr.OFFS: "attribute_offset" / U32,  # NLMSGERR_ATTR_OFFS
}

# struct nlmsgerr { int error; struct nlmsghdr msg; } + the request's payload unless
# NLM_F_CAPPED (padded to 4), then extended-ack TLVs if NLM_F_ACK_TLVS (netlink_ack()).
# Kernels before 4.12 set neither flag and echo no payload in acks: without
# NLM_F_ACK_TLVS the echoed payload is whatever the message holds.
NlmsgErrBody = Struct(
    "error" / Int32sl,  # 0 = ack, else -errno
    Check(this.error <= 0),
    "request" / NlMsgHdr,
    "request_payload"
    / Switch(
        _ack_flags,
        {
            0: GreedyBytes,
            NLM_F_ACK_TLVS: Aligned(4, Bytes(this.request.nlmsg_len - 16)),
        },
        default=Pass,  # capped: header only
    ),
    "ext_ack"
    / If(
        this._.nlmsg_flags & NLM_F_ACK_TLVS,
        nlattr_list(EXT_ACK_ATTRIBUTES),
    ),
    Terminated,
)

# --------------------------------------------------------------------------- messages


def is_net_dm(nlmsg_type: int, family_id: int) -> bool:
    """Whether a message is NET_DM's: its type is the family id (a dynamic id above nlctrl)."""
    return nlmsg_type == family_id and nlmsg_type > GENL_ID_CTRL


NetlinkMessage = Prefixed(
    Int32ul,  # nlmsg_len, counting itself: the other nlmsghdr fields follow
    Struct(
        "nlmsg_type" / Int16ul,
        "nlmsg_flags" / Int16ul,
        "nlmsg_seq" / Int32ul,
        "nlmsg_pid" / Int32ul,
        "body"
        / Switch(
            this.nlmsg_type,
            {NLMSG_ERROR: NlmsgErrBody, NLMSG_DONE: GreedyBytes, GENL_ID_CTRL: CtrlBody},
            default=IfThenElse(
                lambda this: is_net_dm(this.nlmsg_type, this._params.family_id),
                NetDmBody,
                GreedyBytes,
            ),
        ),
    ),
    includelength=True,
)

# v3.6 summary alerts never called genlmsg_end(): nlmsg_len stays 20 while the type-0
# attribute follows to the end of the datagram (reference §4.4, fixed by 101da28).
V36SummaryAlertMessage = Struct(
    "nlmsg_len" / Const(20, Int32ul),
    "nlmsg_type" / Int16ul,
    "nlmsg_flags" / Int16ul,
    "nlmsg_seq" / Int32ul,
    "nlmsg_pid" / Int32ul,
    "body"
    / RawCopy(
        Struct(
            "genl" / GenlMsgHdr,
            "attributes" / nlattr_list(NET_DM_ATTRIBUTES[Cmd.ALERT]),  # rest of the datagram
        )
    ),
)
_V36Probe = Struct(
    "nlmsg_len" / Int32ul,
    "nlmsg_type" / Int16ul,
    Bytes(10),
    "cmd" / Int8ul,
    Bytes(3),
    Bytes(1),  # the datagram goes on after the 20 bytes nlmsg_len claims
)


def _is_v36_summary_alert(this: Any) -> bool:
    probe = this._probe
    return (
        probe is not None
        and probe.nlmsg_len == 20
        and is_net_dm(probe.nlmsg_type, this._params.family_id)
        and probe.cmd == Cmd.ALERT
    )


# One datagram from recv(): messages split by nlmsg_len, each aligned to 4.
Datagram = FocusedSeq(
    "messages",
    "messages"
    / GreedyRange(
        NlmsgAligned(
            FocusedSeq(
                "message",
                "_probe" / Peek(_V36Probe),
                "message"
                / IfThenElse(_is_v36_summary_alert, V36SummaryAlertMessage, NetlinkMessage),
            )
        )
    ),
    AttributeListEnd("netlink message"),
)
