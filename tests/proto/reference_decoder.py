"""The reference decoder: the construct definitions of :mod:`netdm.proto.schema` alone.

Strategy: parse a datagram with ``schema.Datagram`` and convert the resulting
``Container``s to :mod:`netdm.proto.events`, naming each value by the field
its schema table gives it.  It is slow (about 100 µs a packet alert) and
exists to prove the fast decoder right: the property tests in ``tests/proto``
require both to give equal events, or both to raise
:class:`~netdm.proto.errors.ProtocolError` at the same offset.  Nothing here
is shared with the fast path but the definitions themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from netdm.proto.constants import (
    GENL_ID_CTRL,
    NLA_TYPE_MASK,
    NLMSG_DONE,
    NLMSG_ERROR,
    Attr,
    Cmd,
    CtrlCmd,
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
from netdm.proto.schema import (
    CTRL_FAMILY_ATTRIBUTES,
    EXT_ACK_ATTRIBUTES,
    HW_ENTRY_ATTRIBUTES,
    IN_PORT_ATTRIBUTES,
    NET_DM_ATTRIBUTES,
    NET_DM_REQUESTS,
    STATS_ATTRIBUTES,
    CtrlMcastGroupNest,
    CtrlOpNest,
    Datagram,
    MalformedAt,
    Pad,
    attribute_list_parts,
    field_names,
    is_net_dm,
    padding_types,
)


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
            cmd=cmd,
            seq=message.nlmsg_seq,
            attributes=_fields(message.body.value.attributes, {Attr.PAD: Pad})[1],
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
    attributes: list[Any], table: Mapping[int, Any]
) -> tuple[dict[str, Any], tuple[RawAttribute, ...]]:
    """Known attributes by field name (the last one wins, as in nla_parse) and the rest raw.

    ``table`` is the schema's: the names it gives, and PAD (where it has one) skipped.
    """
    names = field_names(table)
    skipped = padding_types(table)
    values: dict[str, Any] = {}
    unknown: list[RawAttribute] = []
    for attribute in attributes:
        kind = attribute.nla_type & NLA_TYPE_MASK
        if kind in skipped:
            continue
        name = names.get(kind)
        if name is None:
            unknown.append(RawAttribute(type=attribute.nla_type, data=attribute.value))
        else:
            values[name] = attribute.value
    return values, tuple(unknown)


def _summary_alert(message: Any, attributes: list[Any]) -> SummaryAlert:
    values, unknown = _fields(attributes, NET_DM_ATTRIBUTES[Cmd.ALERT])
    alert = values.get("drop_points")
    points = () if alert is None else alert.points
    hw_entries = []
    for entry in values.get("hw_entries", ()):
        if entry.nla_type & NLA_TYPE_MASK == Attr.HW_ENTRY:
            fields, _ = _fields(entry.value, HW_ENTRY_ATTRIBUTES)
            hw_entries.append(HardwareEntry(**fields))
    return SummaryAlert(
        drop_points=tuple(DropPoint(pc=point.pc, count=point.count) for point in points),
        hw_entries=tuple(hw_entries),
        unknown_attributes=unknown,
    )


def _packet_alert(message: Any, attributes: list[Any]) -> PacketAlert:
    values, unknown = _fields(attributes, NET_DM_ATTRIBUTES[Cmd.PACKET_ALERT])
    if "in_port" in values:
        port, port_unknown = _fields(values["in_port"], IN_PORT_ATTRIBUTES)
        values["in_port"] = InPort(**port, unknown_attributes=port_unknown)
    return PacketAlert(**values, unknown_attributes=unknown)


def _config_reply(message: Any, attributes: list[Any]) -> ConfigReply:
    values, unknown = _fields(attributes, NET_DM_ATTRIBUTES[Cmd.CONFIG_NEW])
    return ConfigReply(seq=message.nlmsg_seq, **values, unknown_attributes=unknown)


def _stats_reply(message: Any, attributes: list[Any]) -> StatsReply:
    values, unknown = _fields(attributes, NET_DM_ATTRIBUTES[Cmd.STATS_NEW])
    dropped = {
        name: _fields(nest, STATS_ATTRIBUTES)[0].get("dropped") for name, nest in values.items()
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
    ext_ack, _ = _fields(body.ext_ack or [], EXT_ACK_ATTRIBUTES)
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
    values, _ = _fields(message.body.value.attributes, CTRL_FAMILY_ATTRIBUTES)
    op_table = attribute_list_parts(CtrlOpNest)[0]
    values["ops"] = tuple(_fields(op.value, op_table)[0]["id"] for op in values.get("ops", ()))
    group_table = attribute_list_parts(CtrlMcastGroupNest)[0]
    groups = {}
    for group in values.get("mcast_groups", ()):
        fields, _ = _fields(group.value, group_table)
        groups[fields["name"]] = fields["id"]
    values["mcast_groups"] = groups
    return FamilyInfo(seq=message.nlmsg_seq, **values)
