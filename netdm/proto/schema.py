"""The NET_DM wire format, defined with construct, and a reference decoder built on it.

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

:func:`decode_datagram_reference` parses with these definitions and converts
the resulting ``Container``s to :mod:`netdm.proto.events`.  It is slow (about
100 µs a packet alert) and exists to prove the fast decoder right: the property
tests in ``tests/proto`` require both to give equal events, or both to raise
:class:`~netdm.proto.errors.ProtocolError` at the same offset.

Byte order: host order, defined here as little-endian (x86-64, arm64).  Every
integer below is an ``...l`` field; a big-endian variant would swap them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
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
Pad = GreedyBytes  # NET_DM_ATTR_PAD: normally no data; whatever it holds is skipped

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


def _has_types(attributes: list[Any], required: Collection[int]) -> bool:
    present = {attribute.nla_type & NLA_TYPE_MASK for attribute in attributes}
    return all(kind in present for kind in required)


def nlattr_list(
    values: Mapping[int, Any], *, default: Any = GreedyBytes, required: Collection[int] = ()
) -> Any:
    """Attributes back to back, filling their container (a message or a nest)."""
    fields = ["attributes" / GreedyRange(nlattr(values, default)), AttributeListEnd("attribute")]
    if required:
        fields.append(Check(lambda this: _has_types(this.attributes, required)))
    return FocusedSeq("attributes", *fields)


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
IN_PORT_ATTRIBUTES: dict[int, Any] = {
    PortAttr.NETDEV_IFINDEX: U32,
    PortAttr.NETDEV_NAME: String,
    Attr.PAD: Pad,
}
InPortNest = nlattr_list(IN_PORT_ATTRIBUTES)
STATS_ATTRIBUTES: dict[int, Any] = {StatsAttr.DROPPED: U64, Attr.PAD: Pad}
StatsNest = nlattr_list(STATS_ATTRIBUTES)
# HW_ENTRY uses the top-level numbering (reference §3, §5.4).
HW_ENTRY_ATTRIBUTES: dict[int, Any] = {
    Attr.HW_TRAP_NAME: String,
    Attr.HW_TRAP_COUNT: U32,
    Attr.PAD: Pad,
}
HwEntryNest = nlattr_list(HW_ENTRY_ATTRIBUTES, required=(Attr.HW_TRAP_NAME, Attr.HW_TRAP_COUNT))
HwEntriesNest = nlattr_list({Attr.HW_ENTRY: HwEntryNest, Attr.PAD: Pad})

# net_dm_nl_policy (reference §3): what CONFIG sets and CONFIG_NEW reports, START/STOP flags
_CONFIG_ATTRIBUTES: dict[int, Any] = {
    Attr.ALERT_MODE: U8,
    Attr.TRUNC_LEN: U32,
    Attr.QUEUE_LEN: U32,
    Attr.PAD: Pad,
}
_TRACE_ATTRIBUTES: dict[int, Any] = {Attr.SW_DROPS: Flag, Attr.HW_DROPS: Flag, Attr.PAD: Pad}

# Which attributes each command carries, and their types.  Kernel -> user first.
NET_DM_ATTRIBUTES: dict[int, dict[int, Any]] = {
    Cmd.ALERT: {
        Attr.UNSPEC: NetDmAlertMsg,  # entries = 0 in hardware summaries
        Attr.HW_ENTRIES: HwEntriesNest,
        Attr.PAD: Pad,
    },
    Cmd.PACKET_ALERT: {
        Attr.ORIGIN: U16,
        Attr.PC: U64,
        Attr.SYMBOL: String,
        Attr.REASON: String,
        Attr.IN_PORT: InPortNest,  # may be empty (nla_len 4)
        Attr.TIMESTAMP: U64,
        Attr.PROTO: U16,
        Attr.PAYLOAD: Binary,
        Attr.ORIG_LEN: U32,
        Attr.HW_TRAP_GROUP_NAME: String,
        Attr.HW_TRAP_NAME: String,
        Attr.FLOW_ACTION_COOKIE: Binary,
        Attr.PAD: Pad,
    },
    Cmd.CONFIG_NEW: _CONFIG_ATTRIBUTES,
    Cmd.STATS_NEW: {Attr.STATS: StatsNest, Attr.HW_STATS: StatsNest, Attr.PAD: Pad},
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

CtrlOpNest = nlattr_list({CtrlAttrOp.ID: U32, CtrlAttrOp.FLAGS: U32}, required=(CtrlAttrOp.ID,))
CtrlMcastGroupNest = nlattr_list(
    {CtrlAttrMcastGrp.NAME: String, CtrlAttrMcastGrp.ID: U32},
    required=(CtrlAttrMcastGrp.NAME, CtrlAttrMcastGrp.ID),
)
CTRL_FAMILY_ATTRIBUTES: dict[int, Any] = {
    CtrlAttr.FAMILY_ID: U16,
    CtrlAttr.FAMILY_NAME: String,
    CtrlAttr.VERSION: U32,
    CtrlAttr.HDRSIZE: U32,
    CtrlAttr.MAXATTR: U32,
    # arrays: every element is a nest whose type is its index (1, 2, ...)
    CtrlAttr.OPS: nlattr_list({}, default=CtrlOpNest),
    CtrlAttr.MCAST_GROUPS: nlattr_list({}, default=CtrlMcastGroupNest),
}
CtrlBody = RawCopy(
    Struct(
        "genl" / GenlMsgHdr,
        "attributes"
        / Switch(
            this.genl.cmd,
            {
                CtrlCmd.NEWFAMILY: nlattr_list(
                    CTRL_FAMILY_ATTRIBUTES, required=(CtrlAttr.FAMILY_ID, CtrlAttr.FAMILY_NAME)
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
        nlattr_list({NlmsgerrAttr.MSG: String, NlmsgerrAttr.OFFS: U32}),
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

# --------------------------------------------------------------------------- reference decoder


def decode_datagram_reference(data: bytes | bytearray | memoryview, family_id: int) -> list[Event]:
    """Decode one datagram with the construct definitions alone (slow; the fast path's oracle).

    Same contract as :func:`netdm.proto.decode.decode_datagram`: events, or
    :class:`ProtocolError` naming the byte offset of the first malformed
    message or (innermost) attribute.
    """
    try:
        messages = Datagram.parse(bytes(data), family_id=family_id)
    except MalformedAt as error:
        raise ProtocolError(error.reason, error.offset) from None
    return [_event(message, family_id) for message in messages]


def _event(message: Any, family_id: int) -> Event:
    nlmsg_type = message.nlmsg_type
    if nlmsg_type == NLMSG_ERROR:
        return _ack_or_error(message)
    if nlmsg_type == NLMSG_DONE:
        return Done(seq=message.nlmsg_seq)
    if nlmsg_type == GENL_ID_CTRL:
        if message.body.value.genl.cmd == CtrlCmd.NEWFAMILY:
            return _family_info(message)
        return _other(message, message.body.data)
    if is_net_dm(nlmsg_type, family_id):
        cmd = message.body.value.genl.cmd
        convert = _NET_DM_CONVERTERS.get(cmd)
        if convert is not None:
            return convert(message, message.body.value.attributes)
        if cmd in NET_DM_REQUESTS:
            return _other(message, message.body.data)
        return UnknownCommand(
            cmd=cmd, seq=message.nlmsg_seq, attributes=_fields(message.body.value.attributes, {})[1]
        )
    return _other(message, message.body)


def _other(message: Any, payload: bytes) -> OtherMessage:
    return OtherMessage(
        nl_type=message.nlmsg_type,
        flags=message.nlmsg_flags,
        seq=message.nlmsg_seq,
        port_id=message.nlmsg_pid,
        payload=payload,
    )


def _fields(
    attributes: list[Any], names: Mapping[int, str], *, pad: int | None = Attr.PAD
) -> tuple[dict[str, Any], tuple[RawAttribute, ...]]:
    """Known attributes by field name (the last one wins, as in nla_parse) and the rest raw."""
    values: dict[str, Any] = {}
    unknown: list[RawAttribute] = []
    for attribute in attributes:
        kind = attribute.nla_type & NLA_TYPE_MASK
        if kind == pad:
            continue
        name = names.get(kind)
        if name is None:
            unknown.append(RawAttribute(type=attribute.nla_type, data=attribute.value))
        else:
            values[name] = attribute.value
    return values, tuple(unknown)


def _summary_alert(message: Any, attributes: list[Any]) -> SummaryAlert:
    values, unknown = _fields(attributes, {Attr.UNSPEC: "alert", Attr.HW_ENTRIES: "hw_entries"})
    alert = values.get("alert")
    points = () if alert is None else alert.points
    hw_entries = []
    for entry in values.get("hw_entries", ()):
        if entry.nla_type & NLA_TYPE_MASK == Attr.HW_ENTRY:
            fields, _ = _fields(
                entry.value, {Attr.HW_TRAP_NAME: "trap_name", Attr.HW_TRAP_COUNT: "count"}
            )
            hw_entries.append(HardwareEntry(**fields))
    return SummaryAlert(
        drop_points=tuple(DropPoint(pc=point.pc, count=point.count) for point in points),
        hw_entries=tuple(hw_entries),
        unknown_attributes=unknown,
    )


_PACKET_ALERT_FIELDS: dict[int, str] = {
    Attr.ORIGIN: "origin",
    Attr.PC: "pc",
    Attr.SYMBOL: "symbol",
    Attr.REASON: "reason",
    Attr.IN_PORT: "in_port",
    Attr.TIMESTAMP: "timestamp_ns",
    Attr.PROTO: "proto",
    Attr.PAYLOAD: "payload",
    Attr.ORIG_LEN: "orig_len",
    Attr.HW_TRAP_GROUP_NAME: "hw_trap_group_name",
    Attr.HW_TRAP_NAME: "hw_trap_name",
    Attr.FLOW_ACTION_COOKIE: "flow_action_cookie",
}


def _packet_alert(message: Any, attributes: list[Any]) -> PacketAlert:
    values, unknown = _fields(attributes, _PACKET_ALERT_FIELDS)
    if "in_port" in values:
        port, port_unknown = _fields(
            values["in_port"], {PortAttr.NETDEV_IFINDEX: "ifindex", PortAttr.NETDEV_NAME: "name"}
        )
        values["in_port"] = InPort(**port, unknown_attributes=port_unknown)
    return PacketAlert(**values, unknown_attributes=unknown)


def _config_reply(message: Any, attributes: list[Any]) -> ConfigReply:
    values, unknown = _fields(
        attributes,
        {Attr.ALERT_MODE: "alert_mode", Attr.TRUNC_LEN: "trunc_len", Attr.QUEUE_LEN: "queue_len"},
    )
    return ConfigReply(seq=message.nlmsg_seq, **values, unknown_attributes=unknown)


def _stats_reply(message: Any, attributes: list[Any]) -> StatsReply:
    values, unknown = _fields(attributes, {Attr.STATS: "sw_dropped", Attr.HW_STATS: "hw_dropped"})
    dropped = {
        name: _fields(nest, {StatsAttr.DROPPED: "dropped"})[0].get("dropped")
        for name, nest in values.items()
    }
    return StatsReply(seq=message.nlmsg_seq, **dropped, unknown_attributes=unknown)


_NET_DM_CONVERTERS: dict[int, Callable[[Any, list[Any]], Event]] = {
    Cmd.ALERT: _summary_alert,
    Cmd.PACKET_ALERT: _packet_alert,
    Cmd.CONFIG_NEW: _config_reply,
    Cmd.STATS_NEW: _stats_reply,
}


def _ack_or_error(message: Any) -> Ack | ErrorReply:
    body = message.body
    ext_ack, _ = _fields(
        body.ext_ack or [],
        {NlmsgerrAttr.MSG: "message", NlmsgerrAttr.OFFS: "attribute_offset"},
        pad=None,
    )
    if body.error == 0:
        return Ack(seq=message.nlmsg_seq, port_id=message.nlmsg_pid, message=ext_ack.get("message"))
    payload = body.request_payload or b""
    return ErrorReply(
        seq=message.nlmsg_seq,
        port_id=message.nlmsg_pid,
        errno=-body.error,
        request_type=body.request.nlmsg_type,
        request_cmd=payload[0] if len(payload) >= 4 else None,  # genlmsghdr.cmd
        **ext_ack,
    )


def _family_info(message: Any) -> FamilyInfo:
    values, _ = _fields(
        message.body.value.attributes,
        {
            CtrlAttr.FAMILY_ID: "family_id",
            CtrlAttr.FAMILY_NAME: "name",
            CtrlAttr.VERSION: "version",
            CtrlAttr.HDRSIZE: "hdrsize",
            CtrlAttr.MAXATTR: "maxattr",
            CtrlAttr.OPS: "ops",
            CtrlAttr.MCAST_GROUPS: "mcast_groups",
        },
        pad=None,
    )
    values["ops"] = tuple(
        _fields(op.value, {CtrlAttrOp.ID: "id"}, pad=None)[0]["id"] for op in values.get("ops", ())
    )
    groups = {}
    for group in values.get("mcast_groups", ()):
        fields, _ = _fields(
            group.value, {CtrlAttrMcastGrp.NAME: "name", CtrlAttrMcastGrp.ID: "id"}, pad=None
        )
        groups[fields["name"]] = fields["id"]
    values["mcast_groups"] = groups
    return FamilyInfo(seq=message.nlmsg_seq, **values)


__all__ = [
    "AttributeListEnd",
    "CTRL_FAMILY_ATTRIBUTES",
    "CtrlBody",
    "Datagram",
    "GenlMsgHdr",
    "HW_ENTRY_ATTRIBUTES",
    "HwEntriesNest",
    "HwEntryNest",
    "IN_PORT_ATTRIBUTES",
    "InPortNest",
    "MalformedAt",
    "NET_DM_ATTRIBUTES",
    "NET_DM_REQUESTS",
    "NetDmAlertMsg",
    "NetDmBody",
    "NetDmDropPoint",
    "NetlinkMessage",
    "NlMsgHdr",
    "NlmsgAligned",
    "NlmsgErrBody",
    "Pad",
    "NulTerminatedString",
    "STATS_ATTRIBUTES",
    "StatsNest",
    "V36SummaryAlertMessage",
    "decode_datagram_reference",
    "is_net_dm",
    "nlattr",
    "nlattr_list",
]
