"""Ring-buffer pages → event records → drop sites.  Pure: bytes in, values out.

A read of ``per_cpu/cpuN/trace_pipe_raw`` returns one page of the kernel's
ring buffer (:class:`~netdm.tracepoint.format.PageLayout`): a timestamp, a
``commit`` word whose low bits say how many data bytes follow, and the
events.  Each event starts with a 32-bit little word, ``type_len`` in its
low 5 bits and a time delta in the other 27:

* ``type_len`` 1–28: a record of ``type_len * 4`` bytes follows;
* 0: the next u32 is the record's length plus 4, then the record;
* 29: padding (a discarded event); with a time delta of 0, the rest of the
  page is unused;
* 30, 31: a time extension or absolute time stamp (4 more bytes).

:data:`PAGE_EVENT` (construct) is the definition and
:func:`parse_page_reference` the reference reader built from it;
:func:`page_records` is the fast reader used live, proven to return the
same records, or fail at the same offset, by ``tests/tracepoint``.
:class:`KfreeSkbDecoder` turns an ``skb:kfree_skb`` record into the
:class:`~netdm.proto.decode.DropSite` that NET_DM summaries are counted by.
"""

from __future__ import annotations

import struct
from functools import lru_cache
from typing import Any, Literal

from netdm.proto.errors import ProtocolError
from netdm.proto.events import DropSite
from netdm.tracepoint.format import EventFormat, PageLayout

ByteOrder = Literal["little", "big"]

TYPE_LEN_MASK = 0x1F
TIME_DELTA_SHIFT = 5
MAX_DATA_TYPE_LEN = 28
TYPE_PADDING = 29
TYPE_TIME_EXTEND = 30
TYPE_TIME_STAMP = 31
# The commit word's flags (kernel/trace/ring_buffer.c): events were lost before this
# page, and their number is stored after the page's data.
MISSED_EVENTS = 1 << 31
MISSED_STORED = 1 << 30
COMMIT_SIZE_MASK = (1 << 30) - 1
# What a record's drop reason is called when this kernel's format file has no name for it.
UNKNOWN_REASON = "UNKNOWN_{}"


class PageRecords:
    """What one page held: its records (each an event's bytes) and any lost-events mark."""

    __slots__ = ("records", "missed_events", "missed_count")

    def __init__(
        self, records: list[bytes], missed_events: bool, missed_count: int | None
    ) -> None:
        self.records = records
        self.missed_events = missed_events
        self.missed_count = missed_count  # None when the kernel had no room to store it


@lru_cache(maxsize=4)
def _formats(layout: PageLayout, byte_order: ByteOrder) -> tuple[struct.Struct, ...]:
    """The u32, commit-word and u64 readers of a page layout (built once, not per page)."""
    prefix = "<" if byte_order == "little" else ">"
    commit = "Q" if layout.commit_size == 8 else "I"
    return tuple(struct.Struct(prefix + code) for code in ("I", commit, "Q"))


def page_records(page: bytes, layout: PageLayout, byte_order: ByteOrder = "little") -> PageRecords:
    """The records of one page, in order; :class:`ProtocolError` if it is malformed.

    The offsets in errors are from the start of the page.
    """
    u32_format, commit_format, u64_format = _formats(layout, byte_order)
    u32 = u32_format.unpack_from
    if len(page) < layout.data_offset:
        raise ProtocolError(
            f"a ring-buffer page of {len(page)} bytes is shorter than its "
            f"{layout.data_offset}-byte header",
            0,
        )
    commit = commit_format.unpack_from(page, layout.commit_offset)[0]
    size = commit & COMMIT_SIZE_MASK
    pos = layout.data_offset
    end = pos + size
    if size > layout.data_size or end > len(page):
        raise ProtocolError(
            f"the page says it holds {size} data bytes, but has room for "
            f"{min(layout.data_size, len(page) - pos)}",
            layout.commit_offset,
        )
    records: list[bytes] = []
    append = records.append
    while pos < end:
        if end - pos < 4:
            raise ProtocolError("an event header is cut short by the end of the data", pos)
        word = u32(page, pos)[0]
        type_len = word & TYPE_LEN_MASK
        if type_len and type_len <= MAX_DATA_TYPE_LEN:
            stop = pos + 4 + type_len * 4
            if stop > end:
                raise ProtocolError("an event runs past the end of the page's data", pos)
            append(page[pos + 4 : stop])
            pos = stop
            continue
        if type_len == TYPE_PADDING and word >> TIME_DELTA_SHIFT == 0:
            break  # the rest of the page is unused
        if end - pos < 8:
            raise ProtocolError("an event header is cut short by the end of the data", pos)
        word_two = u32(page, pos + 4)[0]
        if type_len == 0:
            if word_two < 4:
                raise ProtocolError(f"an event says its length is {word_two} (at least 4)", pos)
            length = word_two - 4
            stop = pos + 8 + ((length + 3) & ~3)
            if stop > end:
                raise ProtocolError("an event runs past the end of the page's data", pos)
            append(page[pos + 8 : pos + 8 + length])
            pos = stop
        elif type_len == TYPE_PADDING:
            if word_two < 4 or word_two & 3:
                raise ProtocolError(f"padding says its length is {word_two}", pos)
            stop = pos + 4 + word_two
            if stop > end:
                raise ProtocolError("padding runs past the end of the page's data", pos)
            pos = stop
        else:  # a time extension or an absolute time stamp
            pos += 8
    missed_count = None
    if commit & MISSED_STORED and end + 8 <= len(page):
        missed_count = u64_format.unpack_from(page, end)[0]
    return PageRecords(records, bool(commit & MISSED_EVENTS), missed_count)


# ---------------------------------------------------------------------------- construct


@lru_cache(maxsize=4)
def page_header_construct(layout: PageLayout, byte_order: ByteOrder = "little") -> Any:
    """The page header as construct (the definition :func:`page_records` follows)."""
    import construct as c

    little = byte_order == "little"
    u64 = c.Int64ul if little else c.Int64ub
    commit = (c.Int64ul if little else c.Int64ub) if layout.commit_size == 8 else (
        c.Int32ul if little else c.Int32ub
    )
    return c.Struct(
        c.Padding(layout.timestamp_offset),
        "timestamp" / u64,
        c.Padding(layout.commit_offset - layout.timestamp_offset - 8),
        "commit" / commit,
        c.Padding(layout.data_offset - layout.commit_offset - layout.commit_size),
    )


@lru_cache(maxsize=2)
def event_construct(byte_order: ByteOrder = "little") -> Any:
    """One ring-buffer event as construct: the 32-bit header and what its ``type_len`` says."""
    import construct as c

    little = byte_order == "little"
    u32 = c.Int32ul if little else c.Int32ub
    bits = c.BitStruct("time_delta" / c.BitsInteger(27), "type_len" / c.BitsInteger(5))
    header = c.ByteSwapped(bits) if little else bits
    return c.Struct(
        "header" / header,
        "body"
        / c.Switch(
            c.this.header.type_len,
            {
                0: c.Struct(
                    "length_plus_4" / u32,
                    "record" / c.Bytes(c.this.length_plus_4 - 4),
                    c.Padding(lambda ctx: -(ctx.length_plus_4 - 4) % 4),
                ),
                TYPE_PADDING: c.If(
                    c.this.header.time_delta != 0,
                    c.Struct("length" / u32, c.Padding(c.this.length - 4)),
                ),
                TYPE_TIME_EXTEND: c.Struct("extend" / u32),
                TYPE_TIME_STAMP: c.Struct("stamp" / u32),
            },
            default=c.Struct("record" / c.Bytes(c.this._.header.type_len * 4)),
        ),
    )


def parse_page_reference(
    page: bytes, layout: PageLayout, byte_order: ByteOrder = "little"
) -> PageRecords:
    """:func:`page_records` by the construct definitions: slow, for the tests' comparison."""
    import io

    import construct as c

    if len(page) < layout.data_offset:
        raise ProtocolError("page shorter than its header", 0)
    header = page_header_construct(layout, byte_order).parse(page)
    size = header.commit & COMMIT_SIZE_MASK
    end = layout.data_offset + size
    if size > layout.data_size or end > len(page):
        raise ProtocolError("page data size out of range", layout.commit_offset)
    event = event_construct(byte_order)
    stream = io.BytesIO(page[:end])
    stream.seek(layout.data_offset)
    records: list[bytes] = []
    while stream.tell() < end:
        start = stream.tell()
        try:
            parsed = event.parse_stream(stream)
        except (c.ConstructError, ValueError) as error:
            raise ProtocolError(f"malformed event: {error}", start) from None
        type_len = parsed.header.type_len
        if type_len == TYPE_PADDING:
            if parsed.header.time_delta == 0:
                break
            if parsed.body.length < 4 or parsed.body.length & 3:
                raise ProtocolError("padding length out of range", start)
        elif type_len not in (TYPE_TIME_EXTEND, TYPE_TIME_STAMP):
            records.append(parsed.body.record)
    missed_count = None
    if header.commit & MISSED_STORED and end + 8 <= len(page):
        little = byte_order == "little"
        missed_count = (c.Int64ul if little else c.Int64ub).parse(page[end : end + 8])
    return PageRecords(records, bool(header.commit & MISSED_EVENTS), missed_count)


# ---------------------------------------------------------------------------- kfree_skb


class KfreeSkbDecoder:
    """``skb:kfree_skb`` records → :class:`DropSite` (origin software, ``pc`` = location).

    Built from the kernel's own format file, so the field offsets and the
    reason names are this kernel's.  Kernels before 5.17 have no ``reason``
    field: their sites have ``reason=None``, as NET_DM's do.  Drop sites are
    remembered by the bytes they were read from (a storm repeats a few dozen).
    """

    MAX_REMEMBERED = 4096

    def __init__(self, event_format: EventFormat, byte_order: ByteOrder = "little") -> None:
        location = event_format.field("location")
        if location is None or location.size not in (4, 8):
            raise ProtocolError(
                f"the {event_format.name} format has no pointer-sized 'location' field", 0
            )
        self.event_format = event_format
        self.byte_order = byte_order
        prefix = "<" if byte_order == "little" else ">"
        reason = event_format.field("reason")
        if reason is not None and reason.size not in (1, 2, 4, 8):
            reason = None
        self._reason_names = dict(event_format.symbols.get("reason", {}))
        self._location_offset = location.offset
        self._reason_offset = 0 if reason is None else reason.offset
        self._id_format = struct.Struct(prefix + "H")
        self._location_format = struct.Struct(prefix + ("Q" if location.size == 8 else "I"))
        size_codes = {1: "B", 2: "H", 4: "I", 8: "Q"}
        self._reason_format = (
            None if reason is None else struct.Struct(prefix + size_codes[reason.size])
        )
        # Every fixed field must be there, as the construct definition requires.
        self._record_size = max(2, event_format.record_size)
        self._sites: dict[tuple[int, int | None], DropSite] = {}

    def reason_name(self, value: int) -> str:
        name = self._reason_names.get(value)
        return name if name is not None else UNKNOWN_REASON.format(value)

    def drop_site(self, record: bytes) -> DropSite:
        """The drop site of one record; :class:`ProtocolError` if it is not a kfree_skb record."""
        if len(record) < self._record_size:
            raise ProtocolError(
                f"a {len(record)}-byte record is shorter than the {self._record_size} bytes "
                f"of {self.event_format.name}",
                0,
            )
        event_id = self._id_format.unpack_from(record, 0)[0]
        if event_id != self.event_format.event_id:
            raise ProtocolError(
                f"a record of event id {event_id}, not {self.event_format.name} "
                f"({self.event_format.event_id})",
                0,
            )
        pc = self._location_format.unpack_from(record, self._location_offset)[0]
        value = None
        if self._reason_format is not None:
            value = self._reason_format.unpack_from(record, self._reason_offset)[0]
        key = (pc, value)
        site = self._sites.get(key)
        if site is None:
            site = DropSite(0, pc, None, None if value is None else self.reason_name(value))
            if len(self._sites) >= self.MAX_REMEMBERED:
                self._sites.clear()
            self._sites[key] = site
        return site


def kfree_skb_construct(event_format: EventFormat, byte_order: ByteOrder = "little") -> Any:
    """A record of ``event_format`` as construct: every fixed field at its offset."""
    import construct as c

    little = byte_order == "little"
    integers: dict[tuple[int, bool], Any] = {
        (1, False): c.Int8ul,
        (1, True): c.Int8sl,
        (2, False): c.Int16ul if little else c.Int16ub,
        (2, True): c.Int16sl if little else c.Int16sb,
        (4, False): c.Int32ul if little else c.Int32ub,
        (4, True): c.Int32sl if little else c.Int32sb,
        (8, False): c.Int64ul if little else c.Int64ub,
        (8, True): c.Int64sl if little else c.Int64sb,
    }
    members: list[Any] = []
    position = 0
    for field_format in sorted(event_format.fields, key=lambda f: f.offset):
        if field_format.offset < position:
            continue  # overlapping fields (none in kfree_skb): keep the first
        members.append(c.Padding(field_format.offset - position))
        kind = integers.get((field_format.size, field_format.signed))
        # Pointers and enums are unsigned whatever "signed" says.
        if "*" in field_format.declaration or field_format.declaration.startswith("enum "):
            kind = integers.get((field_format.size, False))
        members.append(field_format.name / (kind or c.Bytes(field_format.size)))
        position = field_format.offset + field_format.size
    return c.Struct(*members)


def drop_site_reference(
    record: bytes, event_format: EventFormat, byte_order: ByteOrder = "little"
) -> DropSite:
    """:meth:`KfreeSkbDecoder.drop_site` by the construct definition, for the tests."""
    import construct as c

    try:
        parsed = kfree_skb_construct(event_format, byte_order).parse(record)
    except c.ConstructError as error:
        raise ProtocolError(f"malformed record: {error}", 0) from None
    if parsed.common_type != event_format.event_id:
        raise ProtocolError("another event", 0)
    reason = None
    if "reason" in parsed:
        names = event_format.symbols.get("reason", {})
        reason = names.get(parsed.reason, UNKNOWN_REASON.format(parsed.reason))
    return DropSite(0, parsed.location, None, reason)

