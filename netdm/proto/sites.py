"""The lazy summary path: the drop sites of packet alerts, without their packets.

Strategy: a summary counts packet alerts by drop site (:class:`DropSite`),
so :func:`scan_drop_sites` walks them with a cut-down packet-alert table that
reads only a drop site's values and checks, without keeping, whatever could
make the full decoder fail; :class:`DropSiteScanner` then remembers the
*shape* of each datagram it scanned (in a :class:`~netdm.proto.shapes.ShapeMemory`),
so that the next one shaped alike costs one ``unpack_from`` and one dict
lookup.  The table is the full decoder's (:data:`~netdm.proto.readers.PACKET_ALERT_FIELDS`,
read off the schema), so both fail alike.  The property tests in
``tests/proto/test_lazy_decode.py`` hold both to :func:`~netdm.proto.decode.decode_datagram`.
"""

from __future__ import annotations

import struct

from netdm.proto.constants import GENL_ID_CTRL, NLA_TYPE_MASK, NLMSG_HDRLEN, Attr, Cmd
from netdm.proto.errors import ProtocolError
from netdm.proto.events import DropSite
from netdm.proto.framing import GENL_CMD_OFFSET, GENL_MESSAGE_MIN, NLATTR, NLMSG_LEN_TYPE
from netdm.proto.readers import (
    PACKET_ALERT_FIELDS,
    AttributeField,
    ReaderTable,
    collect,
    layout,
    read_binary,
)
from netdm.proto.shapes import ShapeMemory, struct_format

_CHECKED = "checked"  # the throwaway slot for values read only because reading can fail


def _drop_site_readers() -> ReaderTable:
    """The packet-alert table cut down to a drop site, failing where the full one fails.

    A drop site's values are read as the full decoder reads them.  Other values
    are still read, into a throwaway slot, when reading can fail (a u64 of the
    wrong size, a malformed IN_PORT nest); binary values cannot fail and are
    skipped like PAD, and so are unknown types (kept raw, never an error).
    """
    readers: dict[int, AttributeField | None] = {}
    for kind, entry in PACKET_ALERT_FIELDS.items():
        if entry is None or entry[0] in DropSite._fields:
            readers[kind] = entry
        elif entry.read is read_binary:
            readers[kind] = None
        else:
            readers[kind] = entry._replace(name=_CHECKED)
    return readers


_DROP_SITE = layout(
    [*DropSite._fields, _CHECKED],
    _drop_site_readers(),
    [*DropSite._field_defaults.values(), None],
    skip_unknown=True,
)
_DROP_SITE_WIDTH = len(DropSite._fields)
# Attribute types whose values make up a drop site (all others' values are never looked at).
_DROP_SITE_KINDS = frozenset(
    kind
    for kind, entry in PACKET_ALERT_FIELDS.items()
    if entry is not None and entry[0] in DropSite._fields
)


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
        length, nl_type = NLMSG_LEN_TYPE.unpack_from(data, offset)
        if length < NLMSG_HDRLEN:
            raise ProtocolError(f"nlmsg_len {length} is shorter than the header", offset)
        end = offset + length
        if end > size:
            raise ProtocolError(f"nlmsg_len {length} runs past the end of the datagram", offset)
        if nl_type != family_id or nl_type <= GENL_ID_CTRL:
            return None
        if length < GENL_MESSAGE_MIN:
            raise ProtocolError("generic netlink message without a genlmsghdr", offset)
        if data[offset + GENL_CMD_OFFSET] != Cmd.PACKET_ALERT:
            return None
        arguments = collect(data, offset + GENL_MESSAGE_MIN, end, _DROP_SITE)
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
        length, nla_type = NLATTR.unpack_from(data, position)
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
        length = NLMSG_LEN_TYPE.unpack_from(data, offset)[0]
        _skip_unread_values(data, offset + GENL_MESSAGE_MIN, offset + length, skipped, nested=False)
        offset += (length + 3) & ~3
    spans = [(start, stop, "x") for start, stop in skipped if stop > start]
    return struct_format(len(data), spans, "s", cut_skipped_tail=True)[0]


# A struct picking a datagram layout's shape bytes, and the drop sites of the shapes seen.
_ShapeLayout = tuple[struct.Struct, dict[tuple[bytes, ...], tuple[DropSite, ...]]]


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

    Memory is bounded as its :class:`~netdm.proto.shapes.ShapeMemory` says
    (pass one to choose the bounds).
    """

    def __init__(self, family_id: int, memory: ShapeMemory[_ShapeLayout] | None = None) -> None:
        self.family_id = family_id
        self.memory: ShapeMemory[_ShapeLayout] = ShapeMemory() if memory is None else memory

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


__all__ = ["DropSite", "DropSiteScanner", "scan_drop_sites"]
