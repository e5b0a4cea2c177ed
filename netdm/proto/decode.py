"""Fast decoding of NET_DM datagrams: framing and dispatch, bytes in, events out.

Strategy: a drop storm brings tens of thousands of packet alerts a second, and
construct needs about 100 µs for one, so the fast path walks the bytes itself
with precompiled :class:`struct.Struct` objects and ``unpack_from`` on absolute
offsets, never copying more than the values it returns.  Its tables are read
off the construct definitions in :mod:`netdm.proto.schema` when it loads (the
headers by :mod:`netdm.proto.framing`, the attributes by
:mod:`netdm.proto.readers`); this module holds what is left, the walk:

* messages are split by ``nlmsg_len`` and aligned to 4; the datagram may end in
  the padding of its last message;
* a message is dispatched by ``nlmsg_type`` (error, done, nlctrl, the NET_DM
  family id) and a NET_DM message by its genl command, through tables;
* each event is filled from its command's reader table, attribute type (flags
  masked with ``NLA_TYPE_MASK``) to field; PAD is skipped, types the table does
  not name are kept as :class:`RawAttribute`, and the last of two equal
  attributes wins, as in the kernel's ``nla_parse``.

Every inconsistency raises :class:`ProtocolError` with the offset the
construct definition reports: the start of the innermost attribute (or of the
message) that is malformed.  The property tests in ``tests/proto`` check the
fast decoder against construct parsing (``tests/proto/reference_decoder.py``)
on generated and mutated
datagrams.

The lazy summary path (:func:`scan_drop_sites`, :class:`DropSiteScanner`,
:class:`DropSite`) lives in :mod:`netdm.proto.sites` and is importable from
here too.

Byte order: host order, little-endian (see :mod:`netdm.proto.schema`).
"""

from __future__ import annotations

from collections.abc import Callable

from netdm.proto.constants import (
    GENL_ID_CTRL,
    NLM_F_ACK_TLVS,
    NLM_F_CAPPED,
    NLMSG_DONE,
    NLMSG_ERROR,
    NLMSG_HDRLEN,
    Attr,
    Cmd,
    CtrlCmd,
)
from netdm.proto.errors import ProtocolError
from netdm.proto.events import (
    Ack,
    ConfigReply,
    Done,
    ErrorReply,
    Event,
    FamilyInfo,
    OtherMessage,
    PacketAlert,
    StatsReply,
    SummaryAlert,
    UnknownCommand,
)
from netdm.proto.framing import (
    ECHOED_LEN_TYPE,
    GENL_CMD_OFFSET,
    GENL_MESSAGE_MIN,
    NLMSGERR_ERROR,
    NLMSGERR_MIN,
    NLMSGHDR,
)
from netdm.proto.readers import (
    PACKET_ALERT_FIELDS,
    Layout,
    ReaderTable,
    collect,
    event_layout,
    layout,
    reader_table,
)
from netdm.proto.schema import (
    CTRL_FAMILY_ATTRIBUTES,
    EXT_ACK_ATTRIBUTES,
    NET_DM_ATTRIBUTES,
    NET_DM_REQUESTS,
)
from netdm.proto.sites import DropSite, DropSiteScanner, scan_drop_sites

# --------------------------------------------------------------------------- NET_DM messages


def _table(cmd: Cmd) -> ReaderTable:
    return reader_table(NET_DM_ATTRIBUTES[cmd])


_SUMMARY_ALERT = event_layout(SummaryAlert, _table(Cmd.ALERT))
_PACKET_ALERT = event_layout(PacketAlert, PACKET_ALERT_FIELDS)
_CONFIG_REPLY = event_layout(ConfigReply, _table(Cmd.CONFIG_NEW))
_STATS_REPLY = event_layout(StatsReply, _table(Cmd.STATS_NEW))
_UNKNOWN_COMMAND = layout(["unknown_attributes"], {Attr.PAD: None}, [()])


def _request_layout(cmd: Cmd) -> Layout:
    """A request's attributes are checked as its table says and then dropped."""
    table = _table(cmd)
    return layout(sorted({entry.name for entry in table.values() if entry is not None}), table)


# A message decoder gets the datagram, the message's offset and end, and its header.
Header = tuple[int, int, int, int, int]  # nlmsg_len, type, flags, seq, pid
MessageDecoder = Callable[[bytes, int, int, Header], Event]


def _summary_alert(data: bytes, offset: int, end: int, header: Header) -> SummaryAlert:
    drop_points, hw_entries, unknown = collect(data, offset + GENL_MESSAGE_MIN, end, _SUMMARY_ALERT)
    return SummaryAlert(drop_points or (), hw_entries, unknown)


def _packet_alert(data: bytes, offset: int, end: int, header: Header) -> PacketAlert:
    return PacketAlert(*collect(data, offset + GENL_MESSAGE_MIN, end, _PACKET_ALERT))


def _reply(event_class: type[ConfigReply | StatsReply], layout: Layout) -> MessageDecoder:
    """A unicast reply: the request's seq first, then the attributes."""

    def decode(data: bytes, offset: int, end: int, header: Header) -> Event:
        arguments = collect(data, offset + GENL_MESSAGE_MIN, end, layout)
        arguments[0] = header[3]
        return event_class(*arguments)

    return decode


def _request(layout: Layout) -> MessageDecoder:
    """A request (seen in captures): its attributes are checked, the event is raw."""

    def decode(data: bytes, offset: int, end: int, header: Header) -> OtherMessage:
        collect(data, offset + GENL_MESSAGE_MIN, end, layout)
        return _other(data, offset, end, header)

    return decode


# Written out, like the reference decoder's converters: the schema defines bytes, and
# which event a command becomes (with the request's seq, or raw) is not in the bytes.
_NET_DM_DECODERS: dict[int, MessageDecoder] = {
    Cmd.ALERT: _summary_alert,
    Cmd.PACKET_ALERT: _packet_alert,
    Cmd.CONFIG_NEW: _reply(ConfigReply, _CONFIG_REPLY),
    Cmd.STATS_NEW: _reply(StatsReply, _STATS_REPLY),
    **{cmd: _request(_request_layout(cmd)) for cmd in sorted(NET_DM_REQUESTS)},
}


def _unknown_command(data: bytes, offset: int, end: int, header: Header) -> UnknownCommand:
    [attributes] = collect(data, offset + GENL_MESSAGE_MIN, end, _UNKNOWN_COMMAND)
    return UnknownCommand(cmd=data[offset + GENL_CMD_OFFSET], seq=header[3], attributes=attributes)


def _net_dm(data: bytes, offset: int, end: int, header: Header) -> Event:
    if end - offset < GENL_MESSAGE_MIN:
        raise ProtocolError("generic netlink message without a genlmsghdr", offset)
    decoder = _NET_DM_DECODERS.get(data[offset + GENL_CMD_OFFSET], _unknown_command)
    return decoder(data, offset, end, header)


# --------------------------------------------------------------------------- other messages


def _other(data: bytes, offset: int, end: int, header: Header) -> OtherMessage:
    _, nl_type, flags, seq, port_id = header
    return OtherMessage(nl_type, flags, seq, port_id, data[offset + NLMSG_HDRLEN : end])


def _done(data: bytes, offset: int, end: int, header: Header) -> Done:
    return Done(seq=header[3])


_EXT_ACK = layout(["message", "attribute_offset"], reader_table(EXT_ACK_ATTRIBUTES))


def _ack_or_error(data: bytes, offset: int, end: int, header: Header) -> Ack | ErrorReply:
    """struct nlmsgerr + echoed request + extended ack (see NlmsgErrBody in the schema)."""
    if end - offset < NLMSGERR_MIN:
        raise ProtocolError("NLMSG_ERROR shorter than struct nlmsgerr", offset)
    _, _, flags, seq, port_id = header
    error = NLMSGERR_ERROR.unpack_from(data, offset + NLMSG_HDRLEN)[0]
    if error > 0:
        raise ProtocolError(f"NLMSG_ERROR with positive error {error}", offset)
    request_len, request_type = ECHOED_LEN_TYPE.unpack_from(
        data, offset + NLMSG_HDRLEN + NLMSGERR_ERROR.size
    )
    payload_start = offset + NLMSGERR_MIN
    tlvs = payload_start
    if flags & NLM_F_CAPPED:
        payload_end = payload_start
    elif flags & NLM_F_ACK_TLVS:
        payload_end = payload_start + request_len - NLMSG_HDRLEN
        tlvs = payload_start + ((request_len - NLMSG_HDRLEN + 3) & ~3)
        if request_len < NLMSG_HDRLEN or tlvs > end:
            raise ProtocolError("echoed request runs past the end of NLMSG_ERROR", offset)
    else:  # pre-4.12 acks echo no payload: take what is there
        payload_end = tlvs = end
    message = attribute_offset = None
    if flags & NLM_F_ACK_TLVS:
        message, attribute_offset = collect(data, tlvs, end, _EXT_ACK)
    elif tlvs != end:
        raise ProtocolError("bytes after a capped NLMSG_ERROR without NLM_F_ACK_TLVS", offset)
    if error == 0:
        return Ack(seq, port_id, message)
    return ErrorReply(
        seq=seq,
        port_id=port_id,
        errno=-error,
        message=message,
        attribute_offset=attribute_offset,
        request_type=request_type,
        request_cmd=data[payload_start] if payload_end - payload_start >= 4 else None,
    )


_FAMILY_INFO = event_layout(FamilyInfo, reader_table(CTRL_FAMILY_ATTRIBUTES))


def _ctrl(data: bytes, offset: int, end: int, header: Header) -> FamilyInfo | OtherMessage:
    if end - offset < GENL_MESSAGE_MIN:
        raise ProtocolError("generic netlink message without a genlmsghdr", offset)
    cmd = data[offset + GENL_CMD_OFFSET]
    if cmd not in (CtrlCmd.NEWFAMILY, CtrlCmd.GETFAMILY):
        return _other(data, offset, end, header)
    seq, family_id, name, version, hdrsize, maxattr, ops, mcast_groups = collect(
        data, offset + GENL_MESSAGE_MIN, end, _FAMILY_INFO
    )
    if cmd == CtrlCmd.GETFAMILY:
        return _other(data, offset, end, header)
    if family_id is None or name is None:
        raise ProtocolError("CTRL_CMD_NEWFAMILY without a family id and name", offset)
    return FamilyInfo(
        header[3], family_id, name, version, hdrsize, maxattr, ops, mcast_groups or {}
    )


_FIXED_TYPE_DECODERS: dict[int, MessageDecoder] = {
    NLMSG_ERROR: _ack_or_error,
    NLMSG_DONE: _done,
    GENL_ID_CTRL: _ctrl,
}

# --------------------------------------------------------------------------- public API


def decode_datagram(data: bytes | bytearray | memoryview, family_id: int) -> list[Event]:
    """Decode one datagram (one ``recv()``) into events, in order.

    ``family_id`` is NET_DM's generic-netlink id (from :class:`FamilyInfo`);
    messages of that type become NET_DM events.  Ids at or below nlctrl's
    (0x10) never match, so pass 0 while the id is not known yet.

    Raises :class:`ProtocolError`, naming the byte offset into ``data``, when
    the bytes are not well-formed netlink; never any other exception.
    """
    if not isinstance(data, bytes):
        data = bytes(data)
    events: list[Event] = []
    size = len(data)
    offset = 0
    while offset < size:
        if size - offset < NLMSG_HDRLEN:
            raise ProtocolError("trailing bytes shorter than a netlink header", offset)
        header = NLMSGHDR.unpack_from(data, offset)
        length, nl_type = header[0], header[1]
        if length < NLMSG_HDRLEN:
            raise ProtocolError(f"nlmsg_len {length} is shorter than the header", offset)
        end = offset + length
        if end > size:
            raise ProtocolError(f"nlmsg_len {length} runs past the end of the datagram", offset)
        decoder = _FIXED_TYPE_DECODERS.get(nl_type)
        if decoder is not None:
            events.append(decoder(data, offset, end, header))
        elif nl_type == family_id and nl_type > GENL_ID_CTRL:
            # v3.6 never called genlmsg_end(): nlmsg_len stays 20 (data[end - 4] is then
            # the genl cmd) and the type-0 attribute runs to the end of the datagram
            # (reference §4.4).
            if length == GENL_MESSAGE_MIN and size > end and data[end - 4] == Cmd.ALERT:
                events.append(_net_dm(data, offset, size, header))
                break
            events.append(_net_dm(data, offset, end, header))
        else:
            events.append(_other(data, offset, end, header))
        offset += (length + 3) & ~3  # the datagram may end inside the last message's padding
    return events


def decode_message(data: bytes | bytearray | memoryview, family_id: int) -> Event:
    """Decode a buffer that holds exactly one netlink message."""
    events = decode_datagram(data, family_id)
    if len(events) != 1:
        raise ProtocolError(f"expected one netlink message, found {len(events)}", 0)
    return events[0]


__all__ = [
    "DropSite",
    "DropSiteScanner",
    "decode_datagram",
    "decode_message",
    "scan_drop_sites",
]
