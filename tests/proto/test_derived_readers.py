"""The fast decoder's tables are read off the construct definitions, and read as they do.

Each kind of value a schema table holds gets a reader from
:func:`netdm.proto.readers.value_reader`; on any bytes it returns what the
construct parses, or raises :class:`ProtocolError` (at the attribute's
offset) exactly when construct fails.  The header structs of
:mod:`netdm.proto.framing` unpack what the header definitions parse.
"""

from __future__ import annotations

from typing import Any

import pytest
from construct import ConstructError
from hypothesis import given, settings
from hypothesis import strategies as st

from netdm.proto import schema
from netdm.proto.constants import Attr, Cmd
from netdm.proto.errors import ProtocolError
from netdm.proto.events import DropPoint
from netdm.proto.framing import (
    GENL_CMD_OFFSET,
    GENL_MESSAGE_MIN,
    GENL_VERSION_OFFSET,
    NLATTR,
    NLMSG_TYPE_OFFSET,
    NLMSGHDR,
)
from netdm.proto.readers import PACKET_ALERT_FIELDS, reader_table, value_reader
from netdm.proto.shapes import ShapeMemory

VALUE_KINDS = {
    "U8": schema.U8,
    "U16": schema.U16,
    "U32": schema.U32,
    "U64": schema.U64,
    "Flag": schema.Flag,
    "String": schema.String,
    "Binary": schema.Binary,
    "NetDmAlertMsg": schema.NetDmAlertMsg,
}


def _parsed(value: Any, data: bytes) -> object:
    try:
        parsed = value.parse(data)
    except ConstructError:
        return "error"
    if value is schema.NetDmAlertMsg:
        return tuple(DropPoint(point.pc, point.count) for point in parsed.points)
    if value is schema.Flag:
        return True
    return parsed


def _read(value: Any, data: bytes, offset: int) -> object:
    read, _ = value_reader(value)
    framed = bytes(offset + 4) + data + b"\xee" * 3  # the value inside a bigger datagram
    try:
        return read(framed, offset + 4, offset + 4 + len(data), offset)
    except ProtocolError as error:
        assert error.offset == offset
        return "error"


def _sized(draw_sizes: list[int]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.integers(0, 20).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
        st.sampled_from(draw_sizes).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
    )


@pytest.mark.parametrize("kind", VALUE_KINDS)
@settings(max_examples=300, deadline=None)
@given(data=st.data(), offset=st.integers(0, 64))
def test_each_value_is_read_as_construct_parses_it(
    kind: str, data: st.DataObject, offset: int
) -> None:
    value = VALUE_KINDS[kind]
    entries = data.draw(st.integers(0, 3))
    alert_msg = entries.to_bytes(4, "little") + data.draw(
        st.binary(min_size=12 * entries, max_size=12 * entries + 1)
    )
    raw = data.draw(st.one_of(_sized([0, 1, 2, 4, 8]), st.just(alert_msg)))
    assert _read(value, raw, offset) == _parsed(value, raw), raw.hex()


def test_fixed_size_readers_take_their_format_from_the_schema() -> None:
    codes = {name: value_reader(value)[1] for name, value in VALUE_KINDS.items()}
    assert codes == {
        "U8": "B",
        "U16": "H",
        "U32": "L",
        "U64": "Q",
        "Flag": None,
        "String": None,
        "Binary": "s",
        "NetDmAlertMsg": None,
    }


@pytest.mark.parametrize(
    "table",
    [
        *schema.NET_DM_ATTRIBUTES.values(),
        schema.IN_PORT_ATTRIBUTES,
        schema.STATS_ATTRIBUTES,
        schema.HW_ENTRY_ATTRIBUTES,
        schema.CTRL_FAMILY_ATTRIBUTES,
        schema.EXT_ACK_ATTRIBUTES,
    ],
)
def test_every_table_is_read_with_the_schemas_names_and_pad(table: dict[int, Any]) -> None:
    readers = reader_table(table)
    assert set(readers) == set(table)
    assert {kind for kind, entry in readers.items() if entry is None} == schema.padding_types(table)
    names = {kind: entry.name for kind, entry in readers.items() if entry is not None}
    assert names == schema.field_names(table)


def test_a_changed_definition_changes_the_reader() -> None:
    """Nothing is written twice: a type changed in a table is read as the new type."""
    changed = {**schema.NET_DM_ATTRIBUTES[Cmd.PACKET_ALERT], Attr.ORIGIN: "origin" / schema.U32}
    origin = reader_table(changed)[Attr.ORIGIN]
    assert origin is not None and origin.struct_code == "L"
    today = PACKET_ALERT_FIELDS[Attr.ORIGIN]
    assert today is not None and today.struct_code == "H"
    assert origin.read(b"\x01\x00\x00\x00", 0, 4, 0) == 1
    with pytest.raises(ProtocolError, match="u32 attribute holds 2 bytes"):
        origin.read(b"\x01\x00", 0, 2, 0)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=20, max_size=20))
def test_header_structs_unpack_what_the_definitions_parse(data: bytes) -> None:
    header = schema.NlMsgHdr.parse(data)
    assert NLMSGHDR.unpack_from(data) == (
        header.nlmsg_len,
        header.nlmsg_type,
        header.nlmsg_flags,
        header.nlmsg_seq,
        header.nlmsg_pid,
    )
    assert int.from_bytes(data[NLMSG_TYPE_OFFSET : NLMSG_TYPE_OFFSET + 2], "little") == (
        header.nlmsg_type
    )
    genl = schema.GenlMsgHdr.parse(data[16:])
    assert (data[GENL_CMD_OFFSET], data[GENL_VERSION_OFFSET]) == (genl.cmd, genl.version)
    assert schema.NlMsgHdr.sizeof() + schema.GenlMsgHdr.sizeof() == GENL_MESSAGE_MIN
    length, nla_type = NLATTR.unpack_from(data)
    assert (length, nla_type) == (
        int.from_bytes(data[0:2], "little"),
        int.from_bytes(data[2:4], "little"),
    )


def test_the_shape_memorys_bounds_are_parameters_with_the_old_defaults() -> None:
    memory: ShapeMemory[Any] = ShapeMemory()
    assert (memory.max_shapes, memory.forget_after_misses) == (1024, 65536)
    small: ShapeMemory[Any] = ShapeMemory(max_shapes=1, forget_after_misses=2)
    assert small.may_learn()
    small.remembered = 1
    assert [small.may_learn(), small.may_learn()] == [False, True]  # the second starts over
    assert small.remembered == 0
