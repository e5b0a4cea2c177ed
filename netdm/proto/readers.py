"""Attribute readers for the fast decoder, read off the construct definitions.

Strategy: the schema's attribute tables say, for every attribute type, the
event field its value fills and the construct that value is (``"pc" / U64``).
When this module loads it turns each table into a :data:`ReaderTable`: type
-> :class:`AttributeField` (field name, a reader doing with ``unpack_from``
on absolute offsets what the construct does, and its ``struct`` code), or
None for PAD.  Fixed-size readers are generated from the construct's own
format field (``Int64ul`` -> ``"<Q"``); strings, flags, raw bytes and the
legacy ``net_dm_alert_msg`` have one reader each; a nest's reader walks the
nest's own table, read back with :func:`~netdm.proto.schema.attribute_list_parts`.

What stays written here is what the schema leaves to the reference decoder's
conversion, not to the bytes: which event class a nest becomes, and the
error a missing required attribute gives (the schema's ``HasTypes`` says
which types are required; the fast path names them in its own words).

:func:`collect` is the one attribute walk every fast path uses (the hot loop).
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from construct import FocusedSeq, FormatField, GreedyBytes, Terminated

from netdm.proto.constants import NLA_TYPE_MASK, Cmd
from netdm.proto.errors import ProtocolError
from netdm.proto.events import DropPoint, HardwareEntry, InPort, RawAttribute
from netdm.proto.framing import NLATTR, struct_format
from netdm.proto.schema import (
    NET_DM_ATTRIBUTES,
    CtrlMcastGroupNest,
    CtrlMcastGroupsNest,
    CtrlOpNest,
    CtrlOpsNest,
    Flag,
    HwEntriesNest,
    HwEntryNest,
    InPortNest,
    NetDmAlertMsg,
    NetDmDropPoint,
    NulTerminatedString,
    Pad,
    StatsNest,
    attribute_list_parts,
)

# A reader gets the datagram, the value's start and end, and the attribute's offset
# (for errors); it returns the field's value.
Reader = Callable[[bytes, int, int, int], Any]


class AttributeField(NamedTuple):
    """One attribute type of a table: the field it fills and how its value is read."""

    name: str
    read: Reader
    struct_code: str | None  # its value as one struct field ("Q", "I", "s"), if it is one


# masked attribute type -> AttributeField, or None to skip it (PAD)
ReaderTable = Mapping[int, "AttributeField | None"]

_UNKNOWN: tuple[int, Reader] = (-1, lambda data, start, end, offset: None)


@dataclass(frozen=True, slots=True)
class Layout:
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


def layout(
    names: Sequence[str],
    readers: ReaderTable,
    defaults: Sequence[Any] = (),
    *,
    repeated: bool = False,
    fallback: Reader | None = None,
    skip_unknown: bool = False,
) -> Layout:
    """A layout filling the arguments ``names`` from the fields ``readers`` names."""
    return Layout(
        defaults=tuple(defaults) or (None,) * len(names),
        readers={
            kind: None if entry is None else (names.index(entry[0]), entry[1])
            for kind, entry in readers.items()
        },
        unknown_index=names.index("unknown_attributes") if "unknown_attributes" in names else None,
        repeated=repeated,
        fallback=None if skip_unknown else _UNKNOWN if fallback is None else (0, fallback),
    )


def event_layout(event_class: type, readers: ReaderTable) -> Layout:
    """A layout for an event dataclass: its fields in order, None where there is no default."""
    fields = dataclasses.fields(event_class)
    defaults = [None if field.default is dataclasses.MISSING else field.default for field in fields]
    return layout([field.name for field in fields], readers, defaults)


def _framing_error(length: int, offset: int, end: int) -> ProtocolError:
    if length < 4:
        return ProtocolError(f"nla_len {length} is shorter than the attribute header", offset)
    if offset + length > end:
        return ProtocolError(f"nla_len {length} runs past the end of its container", offset)
    return ProtocolError("attribute padding runs past the end of its container", offset)


def collect(data: bytes, start: int, end: int, layout: Layout) -> list[Any]:
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
    unpack_header = NLATTR.unpack_from
    while offset < end:
        if end - offset < 4:
            raise ProtocolError("trailing bytes shorter than an attribute header", offset)
        length, nla_type = unpack_header(data, offset)
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


def _fixed_reader(field: FormatField) -> Reader:
    """The reader of ``exactly(field)``: one value that fills its attribute exactly.

    Generated, as dataclasses generates ``__init__``: with the size and the
    struct as constants and globals the reader runs as fast as one written by
    hand (a closure copies its cells on every call, and this is the hot path).
    """
    code = field.fmtstr.lstrip("<")
    size = struct.calcsize("<" + code)
    kind = f"{'s' if code.islower() else 'u'}{8 * size}"
    value = "data[start]" if code == "B" else "field.unpack_from(data, start)[0]"
    source = (
        "def read(data, start, end, offset):\n"
        f"    if end - start != {size}:\n"
        f"        raise wrong_size({kind!r}, {size}, end - start, offset)\n"
        f"    return {value}\n"
    )
    namespace: dict[str, Any] = {
        "field": struct.Struct("<" + code),
        "wrong_size": _wrong_size,
    }
    exec(source, namespace)  # noqa: S102 - our own text: a size, a name, a struct code
    reader: Reader = namespace["read"]
    return reader


def _fixed_field(value: Any) -> FormatField | None:
    """The format field of ``exactly(field)`` (a FocusedSeq of it and Terminated), else None."""
    if isinstance(value, FocusedSeq) and len(value.subcons) == 2:
        inner, end = value.subcons
        if end is Terminated and isinstance(inner.subcon, FormatField):
            return inner.subcon
    return None


def read_flag(data: bytes, start: int, end: int, offset: int) -> bool:
    if end != start:
        raise _wrong_size("flag", 0, end - start, offset)
    return True


def read_string(data: bytes, start: int, end: int, offset: int) -> str:
    """NUL-terminated (or not: the end of the attribute ends it too), UTF-8, surrogateescape."""
    nul = data.find(0, start, end)
    return data[start : end if nul < 0 else nul].decode("utf-8", "surrogateescape")


def read_binary(data: bytes, start: int, end: int, offset: int) -> bytes:
    return data[start:end]


_ALERT_ENTRIES = struct.Struct(struct_format(NetDmAlertMsg, 1))  # u32 entries
_DROP_POINT = struct.Struct(struct_format(NetDmDropPoint))  # u64 pc, u32 count: 12 bytes


def _read_alert_msg(data: bytes, start: int, end: int, offset: int) -> tuple[DropPoint, ...]:
    """struct net_dm_alert_msg: u32 entries, then entries x {u64 pc, u32 count}."""
    size = end - start
    head = _ALERT_ENTRIES.size
    if size < head:
        raise ProtocolError(f"net_dm_alert_msg needs {head} bytes, has {size}", offset)
    entries = _ALERT_ENTRIES.unpack_from(data, start)[0]
    if size != head + _DROP_POINT.size * entries:
        raise ProtocolError(
            f"net_dm_alert_msg claims {entries} drop points in {size - head} bytes", offset
        )
    return tuple(
        DropPoint(pc, count) for pc, count in _DROP_POINT.iter_unpack(data[start + head : end])
    )


# Nests, by the identity of their construct; filled below, innermost first.
_NEST_READERS: dict[int, Reader] = {}


def value_reader(value: Any) -> tuple[Reader, str | None]:
    """The reader of an attribute value the schema defines as ``value``, and its struct code."""
    if value is Flag:
        return read_flag, None
    if value is GreedyBytes:
        return read_binary, "s"
    if isinstance(value, NulTerminatedString):
        return read_string, None
    if value is NetDmAlertMsg:
        return _read_alert_msg, None
    field = _fixed_field(value)
    if field is not None:
        return _fixed_reader(field), field.fmtstr.lstrip("<")
    nest = _NEST_READERS.get(id(value))
    if nest is None:
        raise TypeError(f"no fast reader for {value!r}")
    return nest, None


def reader_table(attributes: Mapping[int, Any]) -> dict[int, AttributeField | None]:
    """A schema attribute table as the fast decoder reads it."""
    table: dict[int, AttributeField | None] = {}
    for kind, value in attributes.items():
        if value is Pad:
            table[kind] = None
        else:
            table[kind] = AttributeField(value.name, *value_reader(value.subcon))
    return table


def nest_table(nest: Any) -> dict[int, AttributeField | None]:
    """The reader table of a nest the schema defines with ``nlattr_list``.

    Types the table does not name are kept raw, which is what the schema's
    default (``GreedyBytes``) says; arrays, whose default is a nest, are
    read by :func:`_array_layout`.
    """
    attributes, default, _ = attribute_list_parts(nest)
    assert default is GreedyBytes, nest
    return reader_table(attributes)


def _required_indices(nest: Any, names: Sequence[str]) -> tuple[int, ...]:
    """Where the required attributes of ``nest`` (the schema's ``HasTypes``) go."""
    attributes, _, required = attribute_list_parts(nest)
    return tuple(names.index(attributes[kind].name) for kind in required)


def _register(nest: Any, reader: Reader) -> None:
    _NEST_READERS[id(nest)] = reader


# --------------------------------------------------------------------------- nests

_IN_PORT = event_layout(InPort, nest_table(InPortNest))


def _in_port(data: bytes, start: int, end: int, offset: int) -> InPort:
    return InPort(*collect(data, start, end, _IN_PORT))


_register(InPortNest, _in_port)
_STATS = layout(["dropped"], nest_table(StatsNest))


def _stats_dropped(data: bytes, start: int, end: int, offset: int) -> int | None:
    dropped: int | None = collect(data, start, end, _STATS)[0]
    return dropped


_register(StatsNest, _stats_dropped)
_HW_ENTRY = event_layout(HardwareEntry, nest_table(HwEntryNest))
_HW_ENTRY_REQUIRED = _required_indices(
    HwEntryNest, [f.name for f in dataclasses.fields(HardwareEntry)]
)


def _hw_entry(data: bytes, start: int, end: int, offset: int) -> HardwareEntry:
    arguments = collect(data, start, end, _HW_ENTRY)
    if any(arguments[index] is None for index in _HW_ENTRY_REQUIRED):
        raise ProtocolError("HW_ENTRY without a trap name and a count", offset)
    return HardwareEntry(*arguments)


_register(HwEntryNest, _hw_entry)
# HW_ENTRIES: a list of HW_ENTRY nests (PAD and unknown types are skipped)
_HW_ENTRIES = layout(["entries"], nest_table(HwEntriesNest), repeated=True)


def _hw_entries(data: bytes, start: int, end: int, offset: int) -> tuple[HardwareEntry, ...]:
    return tuple(collect(data, start, end, _HW_ENTRIES)[0])


_register(HwEntriesNest, _hw_entries)

_OP_NAMES = ["id", "flags"]
_OP = layout(_OP_NAMES, nest_table(CtrlOpNest))
_OP_REQUIRED = _required_indices(CtrlOpNest, _OP_NAMES)


def _op_id(data: bytes, start: int, end: int, offset: int) -> int:
    arguments = collect(data, start, end, _OP)
    if any(arguments[index] is None for index in _OP_REQUIRED):
        raise ProtocolError("CTRL_ATTR_OPS entry without CTRL_ATTR_OP_ID", offset)
    return int(arguments[0])


_register(CtrlOpNest, _op_id)
_MCAST_GROUP_NAMES = ["name", "id"]
_MCAST_GROUP = layout(_MCAST_GROUP_NAMES, nest_table(CtrlMcastGroupNest))
_MCAST_GROUP_REQUIRED = _required_indices(CtrlMcastGroupNest, _MCAST_GROUP_NAMES)


def _mcast_group(data: bytes, start: int, end: int, offset: int) -> tuple[str, int]:
    arguments = collect(data, start, end, _MCAST_GROUP)
    if any(arguments[index] is None for index in _MCAST_GROUP_REQUIRED):
        raise ProtocolError("multicast group without a name and an id", offset)
    return arguments[0], arguments[1]


_register(CtrlMcastGroupNest, _mcast_group)


def _array_layout(nest: Any) -> Layout:
    """An nlctrl array: every element is a nest (the schema's default) whose type is its index."""
    attributes, element, _ = attribute_list_parts(nest)
    return layout(
        ["items"], reader_table(attributes), repeated=True, fallback=value_reader(element)[0]
    )


_OPS = _array_layout(CtrlOpsNest)
_MCAST_GROUPS = _array_layout(CtrlMcastGroupsNest)


def _ops(data: bytes, start: int, end: int, offset: int) -> tuple[int, ...]:
    """CTRL_ATTR_OPS: the command ids."""
    return tuple(collect(data, start, end, _OPS)[0])


def _mcast_groups(data: bytes, start: int, end: int, offset: int) -> dict[str, int]:
    """CTRL_ATTR_MCAST_GROUPS: group ids by name."""
    return dict(collect(data, start, end, _MCAST_GROUPS)[0])


_register(CtrlOpsNest, _ops)
_register(CtrlMcastGroupsNest, _mcast_groups)

# The packet alert's table: the decoder, the drop-site scanner and the alert cache read it.
PACKET_ALERT_FIELDS = reader_table(NET_DM_ATTRIBUTES[Cmd.PACKET_ALERT])
