"""Building NET_DM requests, and the kernel's own messages, from the construct definitions.

Strategy: nothing here packs bytes by hand.  Each builder describes a message
as the nested dicts :mod:`netdm.proto.schema` parses into, and lets the same
construct definitions write it, so requests and decoders cannot disagree about
the format.  Requests carry ``NLM_F_REQUEST | NLM_F_ACK`` (the kernel answers
every one with an ack or an error), genl version 2 and port id 0 (the kernel
fills in the sender's port).

The kernel-side builders (alerts, replies, acks, the nlctrl family reply)
write attributes in the kernel's order (reference §5.4, §6.1, §6.2, §9), so
tests, captures and benchmarks can use realistic messages.  With
``pad_u64=True`` they also insert ``NET_DM_ATTR_PAD`` where a kernel without
efficient unaligned access would (reference §4.2).

Builders raise :class:`ValueError` when a value does not fit its field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from construct import ConstructError

from netdm.proto.constants import (
    FAMILY_VERSION,
    GENL_ID_CTRL,
    NLA_F_NESTED,
    NLA_TYPE_MASK,
    NLM_F_ACK,
    NLM_F_ACK_TLVS,
    NLM_F_CAPPED,
    NLM_F_MULTI,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    NLMSG_HDRLEN,
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
from netdm.proto.events import (
    ConfigReply,
    DropPoint,
    FamilyInfo,
    HardwareEntry,
    PacketAlert,
    RawAttribute,
    StatsReply,
)
from netdm.proto.schema import (
    NET_DM_ATTRIBUTES,
    STATS_ATTRIBUTES,
    NetlinkMessage,
    NlMsgHdr,
    nlattr,
)

REQUEST_FLAGS = NLM_F_REQUEST | NLM_F_ACK
GENL_VERSION = FAMILY_VERSION  # the kernel ignores the version in requests

Attribute = dict[str, Any]  # {"nla_type": ..., "value": ...}, as the schema parses it


def _attribute(nla_type: int, value: Any = None) -> Attribute:
    return {"nla_type": nla_type, "value": value}


def _nest(nla_type: int, children: list[Attribute]) -> Attribute:
    return _attribute(nla_type | NLA_F_NESTED, children)  # nla_nest_start() sets the flag


def _raw(attributes: Iterable[RawAttribute]) -> list[Attribute]:
    return [_attribute(attribute.type, attribute.data) for attribute in attributes]


def _build(
    nlmsg_type: int,
    flags: int,
    seq: int,
    port_id: int,
    body: Any,
    family_id: int = 0,
) -> bytes:
    message = {
        "nlmsg_type": nlmsg_type,
        "nlmsg_flags": flags,
        "nlmsg_seq": seq,
        "nlmsg_pid": port_id,
        "body": body,
    }
    try:
        return bytes(NetlinkMessage.build(message, family_id=family_id))
    except ConstructError as error:
        raise ValueError(f"cannot build netlink message: {error}") from None


def _genl(cmd: int, attributes: list[Attribute]) -> dict[str, Any]:
    return {
        "value": {
            "genl": {"cmd": cmd, "version": GENL_VERSION, "reserved": 0},
            "attributes": attributes,
        }
    }


def _net_dm(
    family_id: int,
    cmd: int,
    attributes: list[Attribute],
    *,
    flags: int = 0,
    seq: int = 0,
    port_id: int = 0,
) -> bytes:
    return _build(family_id, flags, seq, port_id, _genl(cmd, attributes), family_id)


# --------------------------------------------------------------------------- requests


def build_getfamily(name: str, seq: int, port_id: int = 0) -> bytes:
    """``CTRL_CMD_GETFAMILY`` for ``name``: the reply is NEWFAMILY (:class:`FamilyInfo`) + ack.

    For "NET_DM" this also makes the kernel load ``drop_monitor.ko`` (reference §1).
    """
    attributes = [_attribute(CtrlAttr.FAMILY_NAME, name)]
    return _build(GENL_ID_CTRL, REQUEST_FLAGS, seq, port_id, _genl(CtrlCmd.GETFAMILY, attributes))


def build_config(
    family_id: int,
    seq: int,
    *,
    alert_mode: int | None = None,
    trunc_len: int | None = None,
    queue_len: int | None = None,
) -> bytes:
    """``NET_DM_CMD_CONFIG``: set what is given, leave the rest (reference §7).

    Needs CAP_NET_ADMIN; refused with EBUSY while monitoring.
    """
    settings = (
        (Attr.ALERT_MODE, alert_mode),
        (Attr.TRUNC_LEN, trunc_len),
        (Attr.QUEUE_LEN, queue_len),
    )
    attributes = [_attribute(kind, value) for kind, value in settings if value is not None]
    return _net_dm(family_id, Cmd.CONFIG, attributes, flags=REQUEST_FLAGS, seq=seq)


def _trace_flags(sw: bool, hw: bool) -> list[Attribute]:
    flags = [(Attr.SW_DROPS, sw), (Attr.HW_DROPS, hw)]
    return [_attribute(kind) for kind, wanted in flags if wanted]


def build_start(family_id: int, seq: int, *, sw: bool = True, hw: bool = False) -> bytes:
    """``NET_DM_CMD_START`` with a flag for each direction asked for.

    Careful: with neither flag the kernel starts *software* monitoring, for
    compatibility with pre-5.4 clients (reference §8), so ``sw=False, hw=False``
    is not "nothing".
    """
    attributes = _trace_flags(sw, hw)
    return _net_dm(family_id, Cmd.START, attributes, flags=REQUEST_FLAGS, seq=seq)


def build_stop(family_id: int, seq: int, *, sw: bool = True, hw: bool = False) -> bytes:
    """``NET_DM_CMD_STOP``; flags as for :func:`build_start` (none means software)."""
    attributes = _trace_flags(sw, hw)
    return _net_dm(family_id, Cmd.STOP, attributes, flags=REQUEST_FLAGS, seq=seq)


def build_config_get(family_id: int, seq: int) -> bytes:
    """``NET_DM_CMD_CONFIG_GET`` (5.4+): answered by CONFIG_NEW (:class:`ConfigReply`)."""
    return _net_dm(family_id, Cmd.CONFIG_GET, [], flags=REQUEST_FLAGS, seq=seq)


def build_stats_get(family_id: int, seq: int) -> bytes:
    """``NET_DM_CMD_STATS_GET`` (5.4+): answered by STATS_NEW (:class:`StatsReply`)."""
    return _net_dm(family_id, Cmd.STATS_GET, [], flags=REQUEST_FLAGS, seq=seq)


# --------------------------------------------------------------------------- kernel side


def _with_u64_pads(
    attributes: list[Attribute],
    values: Mapping[int, Any],
    offset: int,
    u64_types: frozenset[int],
    nests: Mapping[int, tuple[Mapping[int, Any], frozenset[int]]] | None = None,
) -> list[Attribute]:
    """Insert PAD before each u64 whose header would sit 8-aligned (``nla_align_64bit``).

    ``offset`` is where the first attribute goes, from the start of the message.
    """
    laid_out = []
    for attribute in attributes:
        kind = attribute["nla_type"] & NLA_TYPE_MASK
        if nests and kind in nests:
            nest_values, nest_u64_types = nests[kind]
            children = _with_u64_pads(attribute["value"], nest_values, offset + 4, nest_u64_types)
            attribute = {**attribute, "value": children}
        elif kind in u64_types and offset % 8 == 0:
            laid_out.append(_attribute(Attr.PAD, b""))
            offset += 4
        laid_out.append(attribute)
        try:
            offset += len(nlattr(values).build(attribute))
        except ConstructError as error:
            raise ValueError(f"cannot build attribute: {error}") from None
    return laid_out


_FIRST_ATTRIBUTE = NLMSG_HDRLEN + 4  # after nlmsghdr and genlmsghdr


def build_summary_alert(
    family_id: int,
    drop_points: Iterable[DropPoint],
    hw_entries: Iterable[HardwareEntry] = (),
    extra_attributes: Iterable[RawAttribute] = (),
) -> bytes:
    """``NET_DM_CMD_ALERT`` as the kernel multicasts it (reference §4.4, §5.4).

    A hardware summary has no drop points (``entries = 0``) and ``hw_entries``.
    """
    points = [{"pc": point.pc, "count": point.count} for point in drop_points]
    attributes = [_attribute(Attr.UNSPEC, {"points": points})]
    entries = [
        _nest(
            Attr.HW_ENTRY,
            [
                _attribute(Attr.HW_TRAP_NAME, entry.trap_name),
                _attribute(Attr.HW_TRAP_COUNT, entry.count),
            ],
        )
        for entry in hw_entries
    ]
    if entries:
        attributes.append(_nest(Attr.HW_ENTRIES, entries))
    return _net_dm(family_id, Cmd.ALERT, attributes + _raw(extra_attributes))


def build_packet_alert(family_id: int, alert: PacketAlert, *, pad_u64: bool = False) -> bytes:
    """``NET_DM_CMD_PACKET_ALERT`` from an event, in the kernel's attribute order.

    Software drops: ORIGIN, PC, REASON, SYMBOL, IN_PORT, TIMESTAMP, ORIG_LEN,
    PROTO, PAYLOAD; hardware drops put HW_TRAP_GROUP_NAME, HW_TRAP_NAME before
    IN_PORT and FLOW_ACTION_COOKIE after it (reference §6.1, §6.2).  Fields
    that are None are left out; unknown attributes go last.
    """
    fields: tuple[tuple[int, Any], ...] = (
        (Attr.PC, alert.pc),
        (Attr.REASON, alert.reason),
        (Attr.SYMBOL, alert.symbol),
        (Attr.HW_TRAP_GROUP_NAME, alert.hw_trap_group_name),
        (Attr.HW_TRAP_NAME, alert.hw_trap_name),
    )
    attributes = [_attribute(Attr.ORIGIN, alert.origin)]
    attributes += [_attribute(kind, value) for kind, value in fields if value is not None]
    if alert.in_port is not None:
        port = alert.in_port
        port_fields = ((PortAttr.NETDEV_IFINDEX, port.ifindex), (PortAttr.NETDEV_NAME, port.name))
        children = [_attribute(kind, value) for kind, value in port_fields if value is not None]
        attributes.append(_nest(Attr.IN_PORT, children + _raw(port.unknown_attributes)))
    fields = (
        (Attr.FLOW_ACTION_COOKIE, alert.flow_action_cookie),
        (Attr.TIMESTAMP, alert.timestamp_ns),
        (Attr.ORIG_LEN, alert.orig_len),
        (Attr.PROTO, alert.proto),
        (Attr.PAYLOAD, alert.payload),
    )
    attributes += [_attribute(kind, value) for kind, value in fields if value is not None]
    attributes += _raw(alert.unknown_attributes)
    if pad_u64:
        attributes = _with_u64_pads(
            attributes,
            NET_DM_ATTRIBUTES[Cmd.PACKET_ALERT],
            _FIRST_ATTRIBUTE,
            frozenset({Attr.PC, Attr.TIMESTAMP}),
        )
    return _net_dm(family_id, Cmd.PACKET_ALERT, attributes)


def build_config_new(family_id: int, reply: ConfigReply, *, port_id: int = 0) -> bytes:
    """``NET_DM_CMD_CONFIG_NEW``, the kernel's answer to CONFIG_GET (reference §7)."""
    fields = (
        (Attr.ALERT_MODE, reply.alert_mode),
        (Attr.TRUNC_LEN, reply.trunc_len),
        (Attr.QUEUE_LEN, reply.queue_len),
    )
    attributes = [_attribute(kind, value) for kind, value in fields if value is not None]
    attributes += _raw(reply.unknown_attributes)
    return _net_dm(family_id, Cmd.CONFIG_NEW, attributes, seq=reply.seq, port_id=port_id)


def build_stats_new(
    family_id: int, reply: StatsReply, *, port_id: int = 0, pad_u64: bool = False
) -> bytes:
    """``NET_DM_CMD_STATS_NEW``, the kernel's answer to STATS_GET (reference §9).

    A None counter gives an empty nest.
    """
    attributes = [
        _nest(kind, [] if dropped is None else [_attribute(StatsAttr.DROPPED, dropped)])
        for kind, dropped in ((Attr.STATS, reply.sw_dropped), (Attr.HW_STATS, reply.hw_dropped))
    ]
    attributes += _raw(reply.unknown_attributes)
    if pad_u64:
        nested = (STATS_ATTRIBUTES, frozenset({StatsAttr.DROPPED}))
        attributes = _with_u64_pads(
            attributes,
            NET_DM_ATTRIBUTES[Cmd.STATS_NEW],
            _FIRST_ATTRIBUTE,
            frozenset(),
            {Attr.STATS: nested, Attr.HW_STATS: nested},
        )
    return _net_dm(family_id, Cmd.STATS_NEW, attributes, seq=reply.seq, port_id=port_id)


def build_ack(
    seq: int,
    port_id: int,
    request: bytes,
    error: int = 0,
    message: str | None = None,
    offset: int | None = None,
    *,
    capped: bool | None = None,
) -> bytes:
    """``NLMSG_ERROR`` answering ``request``, as ``netlink_ack()`` writes it.

    ``error`` is 0 (an ack) or a negative errno, as in ``struct nlmsgerr``.
    ``capped`` defaults to the kernel's choice: acks echo only the request's
    header, errors the whole request (unless the socket set NETLINK_CAP_ACK).
    ``message`` and ``offset`` become the extended-ack MSG and OFFS TLVs.
    """
    if error > 0:
        raise ValueError(f"error must be 0 or a negative errno, not {error}")
    if len(request) < NLMSG_HDRLEN:
        raise ValueError("request is shorter than a netlink header")
    echoed = NlMsgHdr.parse(request)
    if capped is None:
        capped = error == 0
    ext_ack = []
    if message is not None:
        ext_ack.append(_attribute(NlmsgerrAttr.MSG, message))
    if offset is not None:
        ext_ack.append(_attribute(NlmsgerrAttr.OFFS, offset))
    flags = (NLM_F_CAPPED if capped else 0) | (NLM_F_ACK_TLVS if ext_ack else 0)
    body = {
        "error": error,
        "request": echoed,
        "request_payload": None if capped else bytes(request[NLMSG_HDRLEN : echoed.nlmsg_len]),
        "ext_ack": ext_ack or None,
    }
    return _build(NLMSG_ERROR, flags, seq, port_id, body)


def build_done(seq: int, port_id: int = 0) -> bytes:
    """``NLMSG_DONE`` ending a dump (its payload is the dump's int status, 0)."""
    return _build(NLMSG_DONE, NLM_F_MULTI, seq, port_id, b"\x00\x00\x00\x00")


def build_family_reply(
    info: FamilyInfo, *, port_id: int = 0, op_flags: Mapping[int, int] | None = None
) -> bytes:
    """nlctrl ``CTRL_CMD_NEWFAMILY`` as ``ctrl_fill_info()`` writes it.

    Order: FAMILY_NAME, FAMILY_ID, VERSION, HDRSIZE, MAXATTR, OPS, MCAST_GROUPS;
    array elements are nests typed 1, 2, ... without NLA_F_NESTED
    (``nla_nest_start_noflag``).  ``op_flags`` maps a command to its
    ``CTRL_ATTR_OP_FLAGS`` (0 when not given).
    """
    fields = (
        (CtrlAttr.FAMILY_NAME, info.name),
        (CtrlAttr.FAMILY_ID, info.family_id),
        (CtrlAttr.VERSION, info.version),
        (CtrlAttr.HDRSIZE, info.hdrsize),
        (CtrlAttr.MAXATTR, info.maxattr),
    )
    attributes = [_attribute(kind, value) for kind, value in fields if value is not None]
    flags_by_op = op_flags or {}
    ops = [
        _attribute(
            index,
            [
                _attribute(CtrlAttrOp.ID, op),
                _attribute(CtrlAttrOp.FLAGS, flags_by_op.get(op, 0)),
            ],
        )
        for index, op in enumerate(info.ops, start=1)
    ]
    if ops:
        attributes.append(_attribute(CtrlAttr.OPS, ops))
    groups = [
        _attribute(
            index,
            [_attribute(CtrlAttrMcastGrp.ID, group_id), _attribute(CtrlAttrMcastGrp.NAME, name)],
        )
        for index, (name, group_id) in enumerate(info.mcast_groups.items(), start=1)
    ]
    if groups:
        attributes.append(_attribute(CtrlAttr.MCAST_GROUPS, groups))
    body = _genl(CtrlCmd.NEWFAMILY, attributes)
    return _build(GENL_ID_CTRL, 0, info.seq, port_id, body)


__all__ = [
    "GENL_VERSION",
    "REQUEST_FLAGS",
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
]
