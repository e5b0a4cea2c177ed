"""Full decoding of packet alerts with a shape cache: a storm's look-alikes at a glance.

Strategy: per-packet output (``--packets``, ``--json``, ``--write-packets``)
needs every field of every alert, so the lazy summary path (which keeps only
drop sites) does not apply, and :func:`decode_datagram` walks each datagram
attribute by attribute, about 9 µs.  But a drop storm is the same few
datagrams over and over, differing only in a few values: the timestamp, the
packet and its original length.  :class:`PacketAlertDecoder` decodes the
first datagram of a kind with :func:`decode_datagram` (the definition, itself
proven equal to the construct schema) and, if it holds only packet alerts,
remembers its *shape*: every byte of it except the values of the attributes
listed in :data:`VARYING_FIELDS`.  A later datagram of the same length with
the same shape bytes costs two ``unpack_from`` calls (the shape, a dict key;
the varying values, straight into their types), one dict lookup and one
``PacketAlert`` per message, built from the remembered constant fields.

Why that is exactly :func:`decode_datagram`'s answer: the decoder's walk
reads only message headers (lengths, types, genl command) and attribute
headers (lengths and types, nested ones included); all of those are shape
bytes, so a look-alike is walked through the same attributes at the same
offsets, step by step, and is exactly as valid.  A varying value is read by a
fixed-size reader (``u64``, ``u32``) or as raw bytes, its size given by its
attribute's header, so it fits a ``struct`` field of a size the shape fixes
(``Q``, ``I``, ``Ns``), and the learnt datagram decoding without an error
proves the size right.  Every other value (strings, the IN_PORT nest, origin,
pc, proto, unknown attributes, PAD, an overwritten duplicate, padding) is
shape bytes too, so its decoded value is the remembered one.  The varying
spans are those of the *last* attribute of each type, the one
:func:`decode_datagram` keeps, and which attribute is which comes from its
own reader table.  A layout is keyed by both formats: the same spans may
hold a number in one datagram and bytes (a cookie) in another.  Anything
else (another length or shape, a summary alert, a reply, damage) goes to
:func:`decode_datagram`, so errors are its errors.  The property tests in
``tests/proto/test_alert_shape_cache.py`` hold the cache to it.

Memory is bounded by a :class:`~netdm.proto.shapes.ShapeMemory`, as the
:class:`~netdm.proto.sites.DropSiteScanner`'s is, and no shape is longer than
:data:`MAX_SHAPE_BYTES`.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable
from typing import Any

from netdm.proto.constants import NLA_TYPE_MASK
from netdm.proto.decode import decode_datagram
from netdm.proto.events import Event, PacketAlert
from netdm.proto.framing import GENL_MESSAGE_MIN, NLATTR, NLMSG_LEN_TYPE
from netdm.proto.readers import PACKET_ALERT_FIELDS
from netdm.proto.shapes import ShapeMemory, struct_format

# The PacketAlert fields read from each datagram; all others are remembered with its shape.
# These are the ones a storm varies packet by packet: a storm of one drop site on one
# interface differs in nothing else.
VARYING_FIELDS = ("timestamp_ns", "orig_len", "payload", "flow_action_cookie")

# How many bytes a shape may have (its strings and unknown attributes are kept with it).
# How many shapes are remembered, and when a full decoder starts over, is ShapeMemory's
# bound, shared with DropSiteScanner.
MAX_SHAPE_BYTES = 1024

_ALERT_FIELDS = tuple(field.name for field in dataclasses.fields(PacketAlert))


def _varying_kinds() -> dict[int, tuple[int, str]]:
    """Attribute type (masked) -> (PacketAlert argument index, struct code), varying fields only.

    The code is the schema's own (a ``U64`` is ``Q``, ``Binary`` is ``s``): a varying
    value must be one struct field, read exactly as its reader reads it.
    """
    kinds = {}
    for kind, entry in PACKET_ALERT_FIELDS.items():
        if entry is not None and entry.name in VARYING_FIELDS:
            assert entry.struct_code is not None, entry
            kinds[kind] = (_ALERT_FIELDS.index(entry.name), entry.struct_code)
    return kinds


_VARYING_KINDS = _varying_kinds()

# Builds one message's PacketAlert from its constant arguments and the datagram's values.
_Builder = Callable[[tuple[Any, ...], tuple[Any, ...]], PacketAlert]
_BUILDERS: dict[tuple[tuple[int, int], ...], _Builder] = {}  # by slots; a few in practice
_MAX_BUILDERS = 256


def _builder(slots: tuple[tuple[int, int], ...]) -> _Builder:
    """The function building a PacketAlert whose ``(argument, value index)`` pairs are ``slots``.

    It sets the new object's slots through their descriptors instead of
    calling ``PacketAlert(...)``: a frozen dataclass's ``__init__`` sets each
    field through ``object.__setattr__`` (1.3 µs for 13 fields), this takes
    half that, and reads each argument straight from the constants or the
    values.  The function is generated, as dataclasses generates
    ``__init__``, because only an unrolled body is that fast.  It sets every
    field (the tests compare what it builds with ``==``, which reads them
    all); were PacketAlert ever to get a ``__post_init__`` or other slots, it
    would call the constructor instead.
    """
    cached = _BUILDERS.get(slots)
    if cached is not None:
        return cached
    read = {argument: f"values[{value}]" for argument, value in slots}
    arguments = [read.get(index, f"constants[{index}]") for index in range(len(_ALERT_FIELDS))]
    namespace: dict[str, Any] = {"new": object.__new__, "PacketAlert": PacketAlert}
    lines = ["def build(constants, values):"]
    if "__post_init__" in vars(PacketAlert) or PacketAlert.__slots__ != _ALERT_FIELDS:
        lines.append(f"    return PacketAlert({', '.join(arguments)})")
    else:
        lines.append("    alert = new(PacketAlert)")
        for name, argument in zip(_ALERT_FIELDS, arguments, strict=True):
            namespace[f"set_{name}"] = getattr(PacketAlert, name).__set__
            lines.append(f"    set_{name}(alert, {argument})")
        lines.append("    return alert")
    exec("\n".join(lines), namespace)  # noqa: S102 - our own text: field names and numbers
    builder: _Builder = namespace["build"]
    if len(_BUILDERS) >= _MAX_BUILDERS:
        _BUILDERS.clear()
    _BUILDERS[slots] = builder
    return builder


# One message's event: its constant arguments (None where a value is read from the
# datagram) and the function putting them together with the datagram's values.  A
# datagram's recipe is one of these per message, in order.
_MessageRecipe = tuple[tuple[Any, ...], _Builder]
_Recipe = tuple[_MessageRecipe, ...]
# A layout: the struct picking a datagram's shape bytes, the struct reading its varying
# values, and the recipes of the shapes seen (by shape bytes).
_Layout = tuple[struct.Struct, struct.Struct, dict[tuple[bytes, ...], _Recipe]]


def _varying_spans(data: bytes, offset: int, end: int) -> list[tuple[int, int, int, str]]:
    """(start, stop, argument index, struct code) of one valid message's varying values.

    Only the last attribute of a type counts, as in :func:`decode_datagram`.
    """
    last: dict[int, tuple[int, int, int, str]] = {}
    position = offset + GENL_MESSAGE_MIN
    while position < end:
        length, nla_type = NLATTR.unpack_from(data, position)
        varying = _VARYING_KINDS.get(nla_type & NLA_TYPE_MASK)
        if varying is not None:
            last[varying[0]] = (position + 4, position + length, *varying)
        position += (length + 3) & ~3
    return sorted(last.values())


def _plan(data: bytes, alerts: list[PacketAlert]) -> tuple[str, str, _Recipe] | None:
    """The shape format, the values format and the recipe of a valid datagram of alerts.

    ``None`` when its shape would be longer than :data:`MAX_SHAPE_BYTES`.
    """
    spans: list[tuple[int, int, str]] = []
    recipe = []
    offset = 0
    for alert in alerts:
        length = NLMSG_LEN_TYPE.unpack_from(data, offset)[0]
        constants = [getattr(alert, name) for name in _ALERT_FIELDS]
        slots = []
        for start, stop, argument, code in _varying_spans(data, offset, offset + length):
            constants[argument] = None  # read from each datagram, never from here
            slots.append((argument, len(spans)))
            spans.append((start, stop, code))
        recipe.append((tuple(constants), _builder(tuple(slots))))
        offset += (length + 3) & ~3
    # Both formats cover the whole datagram: a struct's size is its length.
    shape_format, kept = struct_format(len(data), [(a, b, "x") for a, b, _ in spans], "s")
    if kept > MAX_SHAPE_BYTES:
        return None
    values_format, _ = struct_format(len(data), spans, "x")
    return shape_format, values_format, tuple(recipe)


class PacketAlertDecoder:
    """:func:`decode_datagram` for one family id, remembering datagrams of packet alerts.

    See the module's docstring for how and why; :meth:`decode` returns what
    ``decode_datagram(data, family_id)`` returns, or raises what it raises.
    """

    def __init__(self, family_id: int, memory: ShapeMemory[_Layout] | None = None) -> None:
        self.family_id = family_id
        # Layouts keyed by (shape format, values format): the same spans may hold a number
        # in one datagram and bytes in another.  Pass a memory to choose its bounds.
        self.memory: ShapeMemory[_Layout] = ShapeMemory() if memory is None else memory

    def decode(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Exactly :func:`decode_datagram` ``(data, family_id)``."""
        if not isinstance(data, bytes):
            data = bytes(data)  # len() of a memoryview counts its items, not its bytes
        layouts = self.memory.by_length.get(len(data))
        if layouts is None:
            return self._decode_and_remember(data)
        shape, values, known = layouts[0]
        recipe = known.get(shape.unpack_from(data))
        if recipe is None:
            found = ShapeMemory.find_in_others(layouts, data)
            if found is None:
                return self._decode_and_remember(data)
            (_, values, _), recipe = found
        values_read = values.unpack_from(data)
        if len(recipe) == 1:  # the kernel sends one alert a datagram
            constants, build = recipe[0]
            return [build(constants, values_read)]
        return [build(constants, values_read) for constants, build in recipe]

    def _decode_and_remember(self, data: bytes) -> list[Event]:
        events = decode_datagram(data, self.family_id)
        alerts = [event for event in events if type(event) is PacketAlert]
        if not alerts or len(alerts) != len(events):
            return events
        if not self.memory.may_learn():
            return events
        plan = _plan(data, alerts)
        if plan is None:
            return events
        shape_format, values_format, recipe = plan
        self.memory.remember(
            (shape_format, values_format),
            lambda: (struct.Struct(shape_format), struct.Struct(values_format), {}),
            data,
            recipe,
        )
        return events
