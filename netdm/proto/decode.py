"""Fast decoding of NET_DM datagrams: bytes in, events out.

Strategy: a drop storm brings tens of thousands of packet alerts a second, and
construct needs about 100 µs for one, so this module walks the bytes itself
with precompiled :class:`struct.Struct` objects and ``unpack_from`` on absolute
offsets, never copying more than the values it returns.  The shape of the walk
is the construct definition in :mod:`netdm.proto.schema`, rule for rule:

* messages are split by ``nlmsg_len`` and aligned to 4; the datagram may end in
  the padding of its last message;
* a message is dispatched by ``nlmsg_type`` (error, done, nlctrl, the NET_DM
  family id) and a NET_DM message by its genl command, through tables;
* each event is filled from a table mapping attribute type (flags masked with
  ``NLA_TYPE_MASK``) to ``(field name, reader)``; PAD is skipped, types the
  table does not name are kept as :class:`RawAttribute`, and the last of two
  equal attributes wins, as in the kernel's ``nla_parse``.

Every inconsistency raises :class:`ProtocolError` with the offset the
construct definition reports: the start of the innermost attribute (or of the
message) that is malformed.  The property tests in ``tests/proto`` check both
decoders against each other on generated and mutated datagrams.

The reader tables are also the seam of the lazy summary path (the end of this
module): :func:`scan_drop_sites` walks packet alerts with a cut-down table that
reads only what a summary counts by (a :class:`DropSite`) and checks, without
keeping, whatever could make the full decoder fail; :class:`DropSiteScanner`
then remembers the *shape* of each datagram it scanned, so that the next one
shaped alike costs one ``unpack_from`` and one dict lookup.  The property tests
in ``tests/proto/test_lazy_decode.py`` hold both to :func:`decode_datagram`.

Byte order: host order, little-endian (see :mod:`netdm.proto.schema`).
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar

from netdm.proto.constants import (
    GENL_ID_CTRL,
    NLA_TYPE_MASK,
    NLM_F_ACK_TLVS,
    NLM_F_CAPPED,
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

_NLMSGHDR = struct.Struct("<IHHII")  # len, type, flags, seq, pid
_NLATTR = struct.Struct("<HH")  # nla_len, nla_type
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_S32 = struct.Struct("<i")
_ECHOED_LEN_TYPE = struct.Struct("<IH")  # nlmsg_len, nlmsg_type of the request echoed in nlmsgerr
_DROP_POINT = struct.Struct("<QI")  # struct net_dm_drop_point, 12 bytes (reference §4.4)

_GENL_MESSAGE_MIN = NLMSG_HDRLEN + 4  # nlmsghdr + genlmsghdr
_NLMSGERR_MIN = NLMSG_HDRLEN + 4 + NLMSG_HDRLEN  # + s32 error + echoed nlmsghdr

# A reader gets the datagram, the value's start and end, and the attribute's offset
# (for errors); it returns the field's value.
Reader = Callable[[bytes, int, int, int], Any]
# masked attribute type -> (field name, reader), or None to skip it (PAD)
ReaderTable = Mapping[int, "tuple[str, Reader] | None"]


_UNKNOWN: tuple[int, Reader] = (-1, lambda data, start, end, offset: None)


@dataclass(frozen=True, slots=True)
class _Layout:
    """How the attributes of one container fill an event's positional arguments.

    Positional, because keyword arguments cost a frozen dataclass more.  A
    ``repeated`` layout collects every value of a type into a list (array
    nests); ``fallback`` reads the types ``readers`` does not name, which by
    default are kept raw.
    """

    defaults: tuple[Any, ...]
    readers: Mapping[int, tuple[int, Reader] | None]  # type -> (argument index, reader)
    unknown_index: int | None  # where unknown attributes go, if the event keeps them
    repeated: bool = False
    fallback: tuple[int, Reader] | None = _UNKNOWN  # None: unknown types are skipped


def _layout(
    names: Sequence[str],
    readers: ReaderTable,
    defaults: Sequence[Any] = (),
    *,
    repeated: bool = False,
    fallback: Reader | None = None,
    skip_unknown: bool = False,
) -> _Layout:
    return _Layout(
        defaults=tuple(defaults) or (None,) * len(names),
        readers={
            kind: None if entry is None else (names.index(entry[0]), entry[1])
            for kind, entry in readers.items()
        },
        unknown_index=names.index("unknown_attributes") if "unknown_attributes" in names else None,
        repeated=repeated,
        fallback=None if skip_unknown else _UNKNOWN if fallback is None else (0, fallback),
    )


def _event_layout(event_class: type, readers: ReaderTable) -> _Layout:
    """A layout for an event dataclass: its fields in order, None where there is no default."""
    fields = dataclasses.fields(event_class)
    defaults = [None if field.default is dataclasses.MISSING else field.default for field in fields]
    return _layout([field.name for field in fields], readers, defaults)


def _framing_error(length: int, offset: int, end: int) -> ProtocolError:
    if length < 4:
        return ProtocolError(f"nla_len {length} is shorter than the attribute header", offset)
    if offset + length > end:
        return ProtocolError(f"nla_len {length} runs past the end of its container", offset)
    return ProtocolError("attribute padding runs past the end of its container", offset)


def _collect(data: bytes, start: int, end: int, layout: _Layout) -> list[Any]:
    """The positional arguments ``layout`` fills from the attributes in ``data[start:end]``.

    Attributes are walked in order and each is read before the next is framed,
    so the first bad one is reported, as construct's ``GreedyRange`` does.
    Known types go through their reader (the last of two equal ones wins, as in
    ``nla_parse``), PAD is skipped, the others become :class:`RawAttribute`.
    This loop is the hot path: keep it flat.
    """
    repeated = layout.repeated
    arguments: list[Any] = [[] for _ in layout.defaults] if repeated else list(layout.defaults)
    readers = layout.readers
    fallback = layout.fallback
    unknown = []
    offset = start
    while offset < end:
        if end - offset < 4:
            raise ProtocolError("trailing bytes shorter than an attribute header", offset)
        length, nla_type = _NLATTR.unpack_from(data, offset)
        following = offset + ((length + 3) & ~3)
        if length < 4 or following > end:  # one test on the hot path; details on failure
            raise _framing_error(length, offset, end)
        entry = readers.get(nla_type & NLA_TYPE_MASK, fallback)
        if entry is _UNKNOWN:
            unknown.append(RawAttribute(nla_type, data[offset + 4 : offset + length]))
        elif entry is not None:
            value = entry[1](data, offset + 4, offset + length, offset)
            if repeated:
                arguments[entry[0]].append(value)
            else:
                arguments[entry[0]] = value
        offset = following
    if unknown and layout.unknown_index is not None:
        arguments[layout.unknown_index] = tuple(unknown)
    return arguments


# --------------------------------------------------------------------------- value readers


def _wrong_size(kind: str, expected: int, found: int, offset: int) -> ProtocolError:
    return ProtocolError(f"{kind} attribute holds {found} bytes, not {expected}", offset)


def _u8(data: bytes, start: int, end: int, offset: int) -> int:
    if end - start != 1:
        raise _wrong_size("u8", 1, end - start, offset)
    return data[start]


def _u16(data: bytes, start: int, end: int, offset: int) -> int:
    if end - start != 2:
        raise _wrong_size("u16", 2, end - start, offset)
    value: int = _U16.unpack_from(data, start)[0]
    return value


def _u32(data: bytes, start: int, end: int, offset: int) -> int:
    if end - start != 4:
        raise _wrong_size("u32", 4, end - start, offset)
    value: int = _U32.unpack_from(data, start)[0]
    return value


def _u64(data: bytes, start: int, end: int, offset: int) -> int:
    if end - start != 8:
        raise _wrong_size("u64", 8, end - start, offset)
    value: int = _U64.unpack_from(data, start)[0]
    return value


def _flag(data: bytes, start: int, end: int, offset: int) -> bool:
    if end != start:
        raise _wrong_size("flag", 0, end - start, offset)
    return True


def _string(data: bytes, start: int, end: int, offset: int) -> str:
    """NUL-terminated (or not: the end of the attribute ends it too), UTF-8, surrogateescape."""
    nul = data.find(0, start, end)
    return data[start : end if nul < 0 else nul].decode("utf-8", "surrogateescape")


def _binary(data: bytes, start: int, end: int, offset: int) -> bytes:
    return data[start:end]


def _alert_msg(data: bytes, start: int, end: int, offset: int) -> tuple[DropPoint, ...]:
    """struct net_dm_alert_msg: u32 entries, then entries x {u64 pc, u32 count}."""
    size = end - start
    if size < 4:
        raise ProtocolError(f"net_dm_alert_msg needs 4 bytes, has {size}", offset)
    entries = _U32.unpack_from(data, start)[0]
    if size != 4 + 12 * entries:
        raise ProtocolError(
            f"net_dm_alert_msg claims {entries} drop points in {size - 4} bytes", offset
        )
    return tuple(
        DropPoint(pc, count) for pc, count in _DROP_POINT.iter_unpack(data[start + 4 : end])
    )


_IN_PORT = _event_layout(
    InPort,
    {
        PortAttr.NETDEV_IFINDEX: ("ifindex", _u32),
        PortAttr.NETDEV_NAME: ("name", _string),
        Attr.PAD: None,
    },
)


def _in_port(data: bytes, start: int, end: int, offset: int) -> InPort:
    return InPort(*_collect(data, start, end, _IN_PORT))


_STATS = _layout(["dropped"], {StatsAttr.DROPPED: ("dropped", _u64), Attr.PAD: None})


def _stats_dropped(data: bytes, start: int, end: int, offset: int) -> int | None:
    dropped: int | None = _collect(data, start, end, _STATS)[0]
    return dropped


_HW_ENTRY = _event_layout(
    HardwareEntry,
    {
        Attr.HW_TRAP_NAME: ("trap_name", _string),
        Attr.HW_TRAP_COUNT: ("count", _u32),
        Attr.PAD: None,
    },
)


def _hw_entry(data: bytes, start: int, end: int, offset: int) -> HardwareEntry:
    arguments = _collect(data, start, end, _HW_ENTRY)
    if None in arguments:
        raise ProtocolError("HW_ENTRY without a trap name and a count", offset)
    return HardwareEntry(*arguments)


# HW_ENTRIES: a list of HW_ENTRY nests (PAD and unknown types are skipped)
_HW_ENTRIES = _layout(
    ["entries"], {Attr.HW_ENTRY: ("entries", _hw_entry), Attr.PAD: None}, repeated=True
)


def _hw_entries(data: bytes, start: int, end: int, offset: int) -> tuple[HardwareEntry, ...]:
    return tuple(_collect(data, start, end, _HW_ENTRIES)[0])


# --------------------------------------------------------------------------- NET_DM messages

_SUMMARY_ALERT = _event_layout(
    SummaryAlert,
    {
        Attr.UNSPEC: ("drop_points", _alert_msg),
        Attr.HW_ENTRIES: ("hw_entries", _hw_entries),
        Attr.PAD: None,
    },
)
_PACKET_ALERT_READERS: ReaderTable = {
    Attr.ORIGIN: ("origin", _u16),
    Attr.PC: ("pc", _u64),
    Attr.SYMBOL: ("symbol", _string),
    Attr.REASON: ("reason", _string),
    Attr.IN_PORT: ("in_port", _in_port),
    Attr.TIMESTAMP: ("timestamp_ns", _u64),
    Attr.PROTO: ("proto", _u16),
    Attr.PAYLOAD: ("payload", _binary),
    Attr.ORIG_LEN: ("orig_len", _u32),
    Attr.HW_TRAP_GROUP_NAME: ("hw_trap_group_name", _string),
    Attr.HW_TRAP_NAME: ("hw_trap_name", _string),
    Attr.FLOW_ACTION_COOKIE: ("flow_action_cookie", _binary),
    Attr.PAD: None,
}
_PACKET_ALERT = _event_layout(PacketAlert, _PACKET_ALERT_READERS)
_CONFIG_READERS: ReaderTable = {
    Attr.ALERT_MODE: ("alert_mode", _u8),
    Attr.TRUNC_LEN: ("trunc_len", _u32),
    Attr.QUEUE_LEN: ("queue_len", _u32),
    Attr.PAD: None,
}
_CONFIG_REPLY = _event_layout(ConfigReply, _CONFIG_READERS)
_STATS_REPLY = _event_layout(
    StatsReply,
    {
        Attr.STATS: ("sw_dropped", _stats_dropped),
        Attr.HW_STATS: ("hw_dropped", _stats_dropped),
        Attr.PAD: None,
    },
)
_TRACE_REQUEST = _layout(
    ["sw_drops", "hw_drops"],
    {Attr.SW_DROPS: ("sw_drops", _flag), Attr.HW_DROPS: ("hw_drops", _flag), Attr.PAD: None},
)
_CONFIG_REQUEST = _layout(["alert_mode", "trunc_len", "queue_len"], _CONFIG_READERS)
_EMPTY_REQUEST = _layout([], {Attr.PAD: None})
_UNKNOWN_COMMAND = _layout(["unknown_attributes"], {Attr.PAD: None}, [()])

# A message decoder gets the datagram, the message's offset and end, and its header.
Header = tuple[int, int, int, int, int]  # nlmsg_len, type, flags, seq, pid
MessageDecoder = Callable[[bytes, int, int, Header], Event]


def _summary_alert(data: bytes, offset: int, end: int, header: Header) -> SummaryAlert:
    drop_points, hw_entries, unknown = _collect(
        data, offset + _GENL_MESSAGE_MIN, end, _SUMMARY_ALERT
    )
    return SummaryAlert(drop_points or (), hw_entries, unknown)


def _packet_alert(data: bytes, offset: int, end: int, header: Header) -> PacketAlert:
    return PacketAlert(*_collect(data, offset + _GENL_MESSAGE_MIN, end, _PACKET_ALERT))


def _reply(event_class: type[ConfigReply | StatsReply], layout: _Layout) -> MessageDecoder:
    """A unicast reply: the request's seq first, then the attributes."""

    def decode(data: bytes, offset: int, end: int, header: Header) -> Event:
        arguments = _collect(data, offset + _GENL_MESSAGE_MIN, end, layout)
        arguments[0] = header[3]
        return event_class(*arguments)

    return decode


def _request(layout: _Layout) -> MessageDecoder:
    """A request (seen in captures): its attributes are checked, the event is raw."""

    def decode(data: bytes, offset: int, end: int, header: Header) -> OtherMessage:
        _collect(data, offset + _GENL_MESSAGE_MIN, end, layout)
        return _other(data, offset, end, header)

    return decode


_NET_DM_DECODERS: dict[int, MessageDecoder] = {
    Cmd.ALERT: _summary_alert,
    Cmd.PACKET_ALERT: _packet_alert,
    Cmd.CONFIG_NEW: _reply(ConfigReply, _CONFIG_REPLY),
    Cmd.STATS_NEW: _reply(StatsReply, _STATS_REPLY),
    Cmd.CONFIG: _request(_CONFIG_REQUEST),
    Cmd.START: _request(_TRACE_REQUEST),
    Cmd.STOP: _request(_TRACE_REQUEST),
    Cmd.CONFIG_GET: _request(_EMPTY_REQUEST),
    Cmd.STATS_GET: _request(_EMPTY_REQUEST),
}


def _unknown_command(data: bytes, offset: int, end: int, header: Header) -> UnknownCommand:
    [attributes] = _collect(data, offset + _GENL_MESSAGE_MIN, end, _UNKNOWN_COMMAND)
    return UnknownCommand(cmd=data[offset + NLMSG_HDRLEN], seq=header[3], attributes=attributes)


def _net_dm(data: bytes, offset: int, end: int, header: Header) -> Event:
    if end - offset < _GENL_MESSAGE_MIN:
        raise ProtocolError("generic netlink message without a genlmsghdr", offset)
    decoder = _NET_DM_DECODERS.get(data[offset + NLMSG_HDRLEN], _unknown_command)
    return decoder(data, offset, end, header)


# --------------------------------------------------------------------------- other messages


def _other(data: bytes, offset: int, end: int, header: Header) -> OtherMessage:
    _, nl_type, flags, seq, port_id = header
    return OtherMessage(nl_type, flags, seq, port_id, data[offset + NLMSG_HDRLEN : end])


def _done(data: bytes, offset: int, end: int, header: Header) -> Done:
    return Done(seq=header[3])


_EXT_ACK = _layout(
    ["message", "attribute_offset"],
    {NlmsgerrAttr.MSG: ("message", _string), NlmsgerrAttr.OFFS: ("attribute_offset", _u32)},
)


def _ack_or_error(data: bytes, offset: int, end: int, header: Header) -> Ack | ErrorReply:
    """struct nlmsgerr + echoed request + extended ack (see NlmsgErrBody in the schema)."""
    if end - offset < _NLMSGERR_MIN:
        raise ProtocolError("NLMSG_ERROR shorter than struct nlmsgerr", offset)
    _, _, flags, seq, port_id = header
    error = _S32.unpack_from(data, offset + NLMSG_HDRLEN)[0]
    if error > 0:
        raise ProtocolError(f"NLMSG_ERROR with positive error {error}", offset)
    request_len, request_type = _ECHOED_LEN_TYPE.unpack_from(data, offset + NLMSG_HDRLEN + 4)
    payload_start = offset + _NLMSGERR_MIN
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
        message, attribute_offset = _collect(data, tlvs, end, _EXT_ACK)
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


_OP = _layout(["id", "flags"], {CtrlAttrOp.ID: ("id", _u32), CtrlAttrOp.FLAGS: ("flags", _u32)})
_MCAST_GROUP = _layout(
    ["name", "id"],
    {CtrlAttrMcastGrp.NAME: ("name", _string), CtrlAttrMcastGrp.ID: ("id", _u32)},
)


def _op_id(data: bytes, start: int, end: int, offset: int) -> int:
    op_id, _ = _collect(data, start, end, _OP)
    if op_id is None:
        raise ProtocolError("CTRL_ATTR_OPS entry without CTRL_ATTR_OP_ID", offset)
    return int(op_id)


def _mcast_group(data: bytes, start: int, end: int, offset: int) -> tuple[str, int]:
    name, group_id = _collect(data, start, end, _MCAST_GROUP)
    if name is None or group_id is None:
        raise ProtocolError("multicast group without a name and an id", offset)
    return name, group_id


# Arrays: every element is a nest whose type is its index (1, 2, ...).
_OPS = _layout(["ops"], {}, repeated=True, fallback=_op_id)
_MCAST_GROUPS = _layout(["groups"], {}, repeated=True, fallback=_mcast_group)


def _ops(data: bytes, start: int, end: int, offset: int) -> tuple[int, ...]:
    """CTRL_ATTR_OPS: the command ids."""
    return tuple(_collect(data, start, end, _OPS)[0])


def _mcast_groups(data: bytes, start: int, end: int, offset: int) -> dict[str, int]:
    """CTRL_ATTR_MCAST_GROUPS: group ids by name."""
    return dict(_collect(data, start, end, _MCAST_GROUPS)[0])


_CTRL_FAMILY_READERS: ReaderTable = {
    CtrlAttr.FAMILY_ID: ("family_id", _u16),
    CtrlAttr.FAMILY_NAME: ("name", _string),
    CtrlAttr.VERSION: ("version", _u32),
    CtrlAttr.HDRSIZE: ("hdrsize", _u32),
    CtrlAttr.MAXATTR: ("maxattr", _u32),
    CtrlAttr.OPS: ("ops", _ops),
    CtrlAttr.MCAST_GROUPS: ("mcast_groups", _mcast_groups),
}
_FAMILY_INFO = _event_layout(FamilyInfo, _CTRL_FAMILY_READERS)


def _ctrl(data: bytes, offset: int, end: int, header: Header) -> FamilyInfo | OtherMessage:
    if end - offset < _GENL_MESSAGE_MIN:
        raise ProtocolError("generic netlink message without a genlmsghdr", offset)
    cmd = data[offset + NLMSG_HDRLEN]
    if cmd not in (CtrlCmd.NEWFAMILY, CtrlCmd.GETFAMILY):
        return _other(data, offset, end, header)
    seq, family_id, name, version, hdrsize, maxattr, ops, mcast_groups = _collect(
        data, offset + _GENL_MESSAGE_MIN, end, _FAMILY_INFO
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
        header = _NLMSGHDR.unpack_from(data, offset)
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
            if length == _GENL_MESSAGE_MIN and size > end and data[end - 4] == Cmd.ALERT:
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


# --------------------------------------------------------------------------- drop sites


class DropSite(NamedTuple):
    """A packet alert without its packet: what a summary counts it by.

    The fields are :class:`PacketAlert`'s of the same names, decoded by the
    same readers.  A named tuple, because it is built and hashed in C.
    """

    origin: int = 0
    pc: int | None = None
    symbol: str | None = None
    reason: str | None = None
    hw_trap_group_name: str | None = None
    hw_trap_name: str | None = None

    @classmethod
    def of(cls, alert: PacketAlert) -> DropSite:
        """The drop site of a fully decoded alert."""
        return cls(
            alert.origin,
            alert.pc,
            alert.symbol,
            alert.reason,
            alert.hw_trap_group_name,
            alert.hw_trap_name,
        )


_CHECKED = "checked"  # the throwaway slot for values read only because reading can fail


def _drop_site_readers() -> ReaderTable:
    """The packet-alert table cut down to a drop site, failing where the full one fails.

    A drop site's values are read as the full decoder reads them.  Other values
    are still read, into a throwaway slot, when reading can fail (a u64 of the
    wrong size, a malformed IN_PORT nest); binary values cannot fail and are
    skipped like PAD, and so are unknown types (kept raw, never an error).
    """
    readers: dict[int, tuple[str, Reader] | None] = {}
    for kind, entry in _PACKET_ALERT_READERS.items():
        if entry is None or entry[0] in DropSite._fields:
            readers[kind] = entry
        elif entry[1] is _binary:
            readers[kind] = None
        else:
            readers[kind] = (_CHECKED, entry[1])
    return readers


_DROP_SITE = _layout(
    [*DropSite._fields, _CHECKED],
    _drop_site_readers(),
    [*DropSite._field_defaults.values(), None],
    skip_unknown=True,
)
_DROP_SITE_WIDTH = len(DropSite._fields)
# Attribute types whose values make up a drop site (all others' values are never looked at).
_DROP_SITE_KINDS = frozenset(
    kind
    for kind, entry in _PACKET_ALERT_READERS.items()
    if entry is not None and entry[0] in DropSite._fields
)
_NLMSG_LEN_TYPE = struct.Struct("<IH")


def scan_drop_sites(
    data: bytes | bytearray | memoryview, family_id: int
) -> tuple[DropSite, ...] | None:
    """The drop sites of a datagram of packet alerts, without decoding the packets.

    ``None`` as soon as a message is not a NET_DM ``PACKET_ALERT`` (decode such
    a datagram with :func:`decode_datagram`).  Otherwise the result is
    ``tuple(map(DropSite.of, decode_datagram(data, family_id)))``, and
    :class:`ProtocolError` is raised exactly when, and at the offset where,
    :func:`decode_datagram` raises it: the same framing checks, and the same
    attribute walk with the cut-down table above (the property tests in
    ``tests/proto/test_lazy_decode.py`` hold both to it).
    """
    if not isinstance(data, bytes):
        data = bytes(data)
    sites = []
    size = len(data)
    offset = 0
    while offset < size:
        if size - offset < NLMSG_HDRLEN:
            raise ProtocolError("trailing bytes shorter than a netlink header", offset)
        length, nl_type = _NLMSG_LEN_TYPE.unpack_from(data, offset)
        if length < NLMSG_HDRLEN:
            raise ProtocolError(f"nlmsg_len {length} is shorter than the header", offset)
        end = offset + length
        if end > size:
            raise ProtocolError(f"nlmsg_len {length} runs past the end of the datagram", offset)
        if nl_type != family_id or nl_type <= GENL_ID_CTRL:
            return None
        if length < _GENL_MESSAGE_MIN:
            raise ProtocolError("generic netlink message without a genlmsghdr", offset)
        if data[offset + NLMSG_HDRLEN] != Cmd.PACKET_ALERT:
            return None
        arguments = _collect(data, offset + _GENL_MESSAGE_MIN, end, _DROP_SITE)
        sites.append(DropSite._make(arguments[:_DROP_SITE_WIDTH]))
        offset += (length + 3) & ~3
    return tuple(sites)


def _skip_unread_values(
    data: bytes, start: int, end: int, skipped: list[tuple[int, int]], *, nested: bool
) -> None:
    """Add to ``skipped`` the spans of ``data[start:end]`` holding values no drop site has.

    Every value but a drop site's (inside IN_PORT: every value).  ``data`` is valid.
    """
    position = start
    while position < end:
        length, nla_type = _NLATTR.unpack_from(data, position)
        kind = nla_type & NLA_TYPE_MASK
        if not nested and kind == Attr.IN_PORT:
            _skip_unread_values(data, position + 4, position + length, skipped, nested=True)
        elif nested or kind not in _DROP_SITE_KINDS:
            skipped.append((position + 4, position + length))
        position += (length + 3) & ~3


def _shape_format(data: bytes) -> str:
    """The struct format of a valid datagram's *shape*; see :class:`DropSiteScanner`.

    It keeps ('s') every byte but the values no drop site is made of ('x'):
    headers, a drop site's values, and also the bytes no decision depends on
    that the kernel always sends the same (flags, seq and port id, the genl
    version, padding), because fewer and longer fields unpack faster.
    """
    skipped: list[tuple[int, int]] = []
    offset = 0
    while offset < len(data):
        length = _U32.unpack_from(data, offset)[0]
        _skip_unread_values(
            data, offset + _GENL_MESSAGE_MIN, offset + length, skipped, nested=False
        )
        offset += (length + 3) & ~3
    parts = ["<"]
    kept_from = 0
    for start, stop in skipped:
        if stop > start:
            if start > kept_from:
                parts.append(f"{start - kept_from}s")
            parts.append(f"{stop - start}x")
            kept_from = stop
    if len(data) > kept_from:
        parts.append(f"{len(data) - kept_from}s")
    else:
        parts.pop()  # skipped bytes at the end need no unpacking
    return "".join(parts)


# How many datagram shapes a DropSiteScanner remembers (a storm has a few dozen; a stream of
# ever-new ones, like whole packets of every length, is not worth remembering), and after
# how many datagrams scanned in full it starts over once it is full.
MAX_REMEMBERED_SHAPES = 1024
FORGET_AFTER_MISSES = 65536

# A struct picking a datagram layout's shape bytes, and the drop sites of the shapes seen.
_ShapeLayout = tuple[struct.Struct, dict[tuple[bytes, ...], tuple[DropSite, ...]]]
LayoutT = TypeVar("LayoutT", bound=tuple[Any, ...])


class ShapeMemory(Generic[LayoutT]):
    """What a shape cache remembers, and its bound: one piece for every shape cache.

    A *layout* is a tuple: first the struct picking a datagram's shape bytes,
    last the dict from shape bytes to what such datagrams decode to (more
    structs may come between).  Layouts are kept by datagram length, the last
    used first, and by a hashable key naming their formats.

    Bounded: once :data:`MAX_REMEMBERED_SHAPES` shapes are remembered no more
    are learnt (learning costs about one full decode, wasted on a stream that
    does not repeat itself) until :data:`FORGET_AFTER_MISSES` datagrams later
    were decoded in full; then everything is forgotten and learning starts over.
    """

    def __init__(self) -> None:
        self.by_length: dict[int, list[LayoutT]] = {}  # the last used first
        self.by_format: dict[Hashable, LayoutT] = {}
        self.remembered = 0
        self._misses_while_full = 0

    @staticmethod
    def find_in_others(
        layouts: list[LayoutT], data: bytes | bytearray | memoryview
    ) -> tuple[LayoutT, Any] | None:
        """The layout but the first of ``layouts`` that knows ``data``'s shape, and its answer.

        That layout becomes the first: with interleaved layouts, the busiest
        stays in front.  (The callers check the first one themselves: it is
        their hot path.)
        """
        for index in range(1, len(layouts)):
            layout = layouts[index]
            answer = layout[-1].get(layout[0].unpack_from(data))
            if answer is not None:
                layouts.insert(0, layouts.pop(index))
                return layout, answer
        return None

    def may_learn(self) -> bool:
        """Whether one more shape may be learnt now; counts a miss while full."""
        if self.remembered < MAX_REMEMBERED_SHAPES:
            return True
        self._misses_while_full += 1
        if self._misses_while_full < FORGET_AFTER_MISSES:
            return False
        self.by_length.clear()
        self.by_format.clear()
        self.remembered = self._misses_while_full = 0
        return True

    def remember(
        self,
        key: Hashable,
        new_layout: Callable[[], LayoutT],
        data: bytes | bytearray | memoryview,
        answer: Any,
    ) -> None:
        """Remember ``data``'s shape with ``answer``, in the layout named ``key``."""
        layout = self.by_format.get(key)
        if layout is None:
            layout = self.by_format[key] = new_layout()
            self.by_length.setdefault(len(data), []).insert(0, layout)
        layout[-1][layout[0].unpack_from(data)] = answer
        self.remembered += 1


class DropSiteScanner:
    """:func:`scan_drop_sites`, remembering the datagrams it has seen.

    A drop storm is the same few messages over and over, differing only in
    bytes no drop site is made of: timestamp, packet, input interface.  The
    first datagram of a kind is scanned in full and, if it holds only packet
    alerts, its *shape* is remembered with its drop sites: the bytes every
    decision of that scan depended on (message lengths and types, genl
    commands, every attribute header, nested ones included), the values the
    drop sites were read from, and a few bytes the kernel always sends alike
    (see :func:`_shape_format`).  A later datagram of the same length with
    the same shape bytes is walked through the same headers at the same
    offsets, step by step, so it is exactly as valid and has the same drop
    sites: it costs one ``unpack_from`` and one dict lookup.  Anything else
    (another length or shape, a summary alert, damage) is scanned in full.

    Memory is bounded as :class:`ShapeMemory` says.
    """

    def __init__(self, family_id: int) -> None:
        self.family_id = family_id
        self.memory: ShapeMemory[_ShapeLayout] = ShapeMemory()

    def scan(self, data: bytes | bytearray | memoryview) -> tuple[DropSite, ...] | None:
        """Exactly :func:`scan_drop_sites` ``(data, family_id)``."""
        layouts = self.memory.by_length.get(len(data))
        if layouts is not None:
            shape, known = layouts[0]
            sites = known.get(shape.unpack_from(data))
            if sites is not None:
                return sites
            found = ShapeMemory.find_in_others(layouts, data)
            if found is not None:
                remembered_sites: tuple[DropSite, ...] = found[1]
                return remembered_sites
        return self._scan_and_remember(data)

    def _scan_and_remember(
        self, data: bytes | bytearray | memoryview
    ) -> tuple[DropSite, ...] | None:
        data = bytes(data)
        sites = scan_drop_sites(data, self.family_id)
        if not sites:
            return sites
        if self.memory.may_learn():
            shape_format = _shape_format(data)
            self.memory.remember(
                shape_format, lambda: (struct.Struct(shape_format), {}), data, sites
            )
        return sites
