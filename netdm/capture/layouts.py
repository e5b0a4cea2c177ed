"""The ``struct`` layouts, sizes and offsets of the reader and writer, read off the schema.

Strategy: construct parses a block in tens of microseconds, far too slow for
a million records, so the reader and writer use ``struct``; but no format is
written twice.  :func:`leading_fields` walks the fixed-size fields a
definition of :mod:`netdm.capture.schema` starts with (integers, constants,
fixed padding) up to its first variable-size one, and every ``struct``
format, size and offset below is made of such walks: a block's header and
trailing length, each body's fixed part, an option header, the pseudo-header.
The fast paths' combined layouts (a record header together with the two
pseudo-header fields the reader needs) are concatenations of derived pieces.
The property tests in ``tests/capture`` show that the reader built on them
agrees with construct parsing on generated and mutated files.

Deriving imports construct, so it happens at the first use of
:data:`LAYOUTS` (the first capture opened or written), never at ``import
netdm.capture``: ``netdm --help`` stays free of construct.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from netdm.capture.formats import (
    BLOCK_EPB,
    BLOCK_IDB,
    BLOCK_ISB,
    BLOCK_NAMES,
    BLOCK_PB,
    BLOCK_SHB,
    BLOCK_SPB,
    ByteOrder,
)

_PREFIX: dict[ByteOrder, str] = {"little": "<", "big": ">"}


class Fields(NamedTuple):
    """The leading fixed-size fields of a definition: names, ``struct`` codes, byte orders."""

    names: tuple[str | None, ...]  # None: padding
    codes: tuple[str, ...]  # "H", "L", "q", "10x": without the byte-order prefix
    prefixes: frozenset[str]  # the byte orders the definition declares ("<", ">")

    def size(self) -> int:
        return struct.calcsize("=" + "".join(self.codes))

    def offset_of(self, name: str) -> int:
        """Where field ``name`` starts, from the start of the definition."""
        index = self.names.index(name)
        return struct.calcsize("=" + "".join(self.codes[:index]))

    def keeping(self, *names: str) -> Fields:
        """These fields with every field not named turned into padding of its size."""
        codes = tuple(
            code if name in names else f"{struct.calcsize('=' + code)}x"
            for name, code in zip(self.names, self.codes, strict=True)
        )
        kept = tuple(name if name in names else None for name in self.names)
        return Fields(kept, codes, self.prefixes)


def leading_fields(definition: Any) -> Fields:
    """The fixed-size fields a construct ``Struct`` starts with, up to its first variable one.

    A field is an integer (``FormatField``), a ``Const`` of one, or
    ``Padding`` of a fixed length; ``Bytes(this.x)``, ``FixedSized``,
    ``Check`` and the like end the walk.
    """
    from construct import Const, FormatField, Padded, Pass, Renamed

    names: list[str | None] = []
    codes: list[str] = []
    prefixes: set[str] = set()
    for subcon in definition.subcons:
        name = None
        if isinstance(subcon, Renamed):
            name, subcon = subcon.name, subcon.subcon
        if isinstance(subcon, Const):
            subcon = subcon.subcon
        if isinstance(subcon, FormatField):
            prefixes.add(subcon.fmtstr[0])
            codes.append(subcon.fmtstr[1:])
        elif (
            isinstance(subcon, Padded) and isinstance(subcon.length, int) and subcon.subcon is Pass
        ):
            codes.append(f"{subcon.length}x")
        else:
            break
        names.append(name)
    return Fields(tuple(names), tuple(codes), frozenset(prefixes))


def field_named(definition: Any, name: str) -> Fields:
    """One named integer field of a definition, wherever it stands (a block's trailing length)."""
    from construct import Struct

    for subcon in definition.subcons:
        if getattr(subcon, "name", None) == name:
            return leading_fields(Struct(name / subcon.subcon))
    raise LookupError(f"{definition} has no field {name!r}")


def layout(order: ByteOrder, *pieces: Fields) -> struct.Struct:
    """One ``struct`` reading ``pieces`` one after the other, all in ``order``.

    A piece declared in another byte order is read in ``order`` all the same:
    the fast paths read the big-endian pseudo-header's fields in the file's
    order within one unpack, and swap ``protocol`` themselves (``pkttype`` is
    only compared with 0).
    """
    return struct.Struct(_PREFIX[order] + "".join(code for piece in pieces for code in piece.codes))


def _in_order(order: ByteOrder, piece: Fields) -> Fields:
    if piece.prefixes - {_PREFIX[order]}:
        raise AssertionError(f"the schema declares {piece} in another byte order than {order}")
    return piece


@dataclass(frozen=True, slots=True)
class BlockShape:
    """A pcapng block type's geometry: its fixed fields, shortest length, where its rest starts."""

    name: str  # the spec's name, for messages
    fixed: struct.Struct  # the body's fixed fields, right after the block header
    min_length: int  # block framing plus the fixed fields
    rest_offset: int  # from the block's start: packet data (EPB, SPB, PB) or options


class Layouts:
    """The ``struct`` layouts, sizes and offsets of one byte order, derived from the schema."""

    __slots__ = (
        "block_header",
        "u32",
        "i64",
        "option_header",
        "pcap_file_header",
        "pcap_record",
        "shb_fixed",
        "idb_fixed",
        "epb_fixed",
        "spb_fixed",
        "pb_fixed",
        "isb_fixed",
        "epb_head",
        "pcap_record_cooked",
        "epb_head_cooked",
        "epb_netdm_tail",
        "cooked_header",
        "cooked_pkttype_and_protocol",
        "shapes",
        "block_header_len",
        "block_min_len",
        "byte_order_magic_offset",
        "pcap_file_header_len",
        "pcap_linktype_offset",
        "pcap_version_offset",
        "pcap_record_header_len",
        "cooked_header_len",
        "idb_linktype_offset",
        "option_header_len",
    )

    def __init__(self, order: ByteOrder) -> None:
        from netdm.capture import schema

        def fields(definition: Any) -> Fields:
            return _in_order(order, leading_fields(definition))

        # A block's framing: type and total length before the body, the length again after it.
        framing = schema.block(order, BLOCK_IDB, schema.idb_body(order))
        header = fields(framing)
        trailing = _in_order(order, field_named(framing, "trailing_length"))
        option = fields(schema.option(order))
        bodies = {
            BLOCK_SHB: fields(schema.shb_body(order)),
            BLOCK_IDB: fields(schema.idb_body(order)),
            BLOCK_EPB: fields(schema.epb_body(order)),
            BLOCK_SPB: fields(schema.spb_body(order)),
            BLOCK_PB: fields(schema.pb_body(order)),
            BLOCK_ISB: fields(schema.isb_body(order)),
        }
        pcap_header = fields(schema.pcap_file_header(order))
        record = fields(schema.pcap_record(order))
        cooked = leading_fields(schema.COOKED_HEADER)  # big-endian in every file
        cooked_needed = cooked.keeping("pkttype", "protocol")

        self.block_header = layout(order, header)
        self.u32 = layout(order, trailing)
        self.i64 = layout(order, field_named(schema.shb_body(order), "section_length"))
        self.option_header = layout(order, option)
        self.pcap_file_header = layout(order, pcap_header)
        self.pcap_record = layout(order, record)
        self.shb_fixed = layout(order, bodies[BLOCK_SHB])
        self.idb_fixed = layout(order, bodies[BLOCK_IDB])
        self.epb_fixed = layout(order, bodies[BLOCK_EPB])
        self.spb_fixed = layout(order, bodies[BLOCK_SPB])
        self.pb_fixed = layout(order, bodies[BLOCK_PB])
        self.isb_fixed = layout(order, bodies[BLOCK_ISB])
        # The writer's EPB head: type, total length and the fixed fields in one pack.
        self.epb_head = layout(order, header, bodies[BLOCK_EPB])
        # The fast paths: a pcap record header with the cooked pkttype and protocol, and an
        # EPB's type, length, fixed fields, pkttype and protocol, in one unpack each.
        self.pcap_record_cooked = layout(order, record, cooked_needed)
        self.epb_head_cooked = layout(order, header, bodies[BLOCK_EPB], cooked_needed)
        # The end of a netdm EPB: epb_flags (code, length, a u32 value), opt_endofopt, trailing.
        flags_value = trailing  # a u32, like the trailing length
        self.epb_netdm_tail = layout(order, option, flags_value, option, trailing)
        self.cooked_header = layout("big", cooked)
        self.cooked_pkttype_and_protocol = layout("big", cooked_needed)

        self.block_header_len = header.size()
        self.block_min_len = header.size() + trailing.size()
        self.byte_order_magic_offset = header.size() + bodies[BLOCK_SHB].offset_of(
            "byte_order_magic"
        )
        self.shapes = {
            block_type: BlockShape(
                name=BLOCK_NAMES[block_type],
                fixed=layout(order, body),
                min_length=self.block_min_len + body.size(),
                rest_offset=self.block_header_len + body.size(),
            )
            for block_type, body in bodies.items()
        }
        self.pcap_file_header_len = pcap_header.size()
        self.pcap_linktype_offset = pcap_header.offset_of("linktype")
        self.pcap_version_offset = pcap_header.offset_of("version_major")
        self.pcap_record_header_len = record.size()
        self.cooked_header_len = cooked.size()
        self.idb_linktype_offset = header.size() + bodies[BLOCK_IDB].offset_of("linktype")
        self.option_header_len = option.size()


class _DerivedOnFirstUse(Mapping[ByteOrder, Layouts]):
    """``LAYOUTS[order]``: each byte order's layouts, derived (and construct imported) once."""

    def __init__(self) -> None:
        self._layouts: dict[ByteOrder, Layouts] = {}

    def __getitem__(self, order: ByteOrder) -> Layouts:
        try:
            return self._layouts[order]
        except KeyError:
            if order not in _PREFIX:
                raise
            layouts = self._layouts[order] = Layouts(order)
            return layouts

    def __iter__(self) -> Iterator[ByteOrder]:
        return iter(_PREFIX)

    def __len__(self) -> int:
        return len(_PREFIX)


LAYOUTS: Mapping[ByteOrder, Layouts] = _DerivedOnFirstUse()
