"""The shape cache: what a storm's look-alike datagrams decode to, remembered and bounded.

Strategy: a drop storm is the same few datagrams over and over, differing
only in a few values.  A *shape* is the bytes of a datagram every decision of
its decoding depended on; two datagrams of the same length and shape decode
alike but for the values outside it.  :class:`ShapeMemory` is the one memory
for both views of that idea: :class:`~netdm.proto.sites.DropSiteScanner`
(drop sites, for summaries) and
:class:`~netdm.proto.alert_cache.PacketAlertDecoder` (whole alerts, for
packet lines) each keep one, and each say what a shape is and what it maps to.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

# How many datagram shapes a memory keeps (a storm has a few dozen; a stream of ever-new
# ones, like whole packets of every length, is not worth remembering), and after how many
# datagrams decoded in full it starts over once it is full.
MAX_REMEMBERED_SHAPES = 1024
FORGET_AFTER_MISSES = 65536

LayoutT = TypeVar("LayoutT", bound=tuple[Any, ...])


class ShapeMemory(Generic[LayoutT]):
    """What a shape cache remembers, and its bound.

    A *layout* is a tuple: first the struct picking a datagram's shape bytes,
    last the dict from shape bytes to what such datagrams decode to (more
    structs may come between).  Layouts are kept by datagram length, the last
    used first, and by a hashable key naming their formats.

    Bounded: once ``max_shapes`` shapes are remembered no more are learnt
    (learning costs about one full decode, wasted on a stream that does not
    repeat itself) until ``forget_after_misses`` datagrams later were decoded
    in full; then everything is forgotten and learning starts over.
    """

    def __init__(
        self,
        max_shapes: int = MAX_REMEMBERED_SHAPES,
        forget_after_misses: int = FORGET_AFTER_MISSES,
    ) -> None:
        self.max_shapes = max_shapes
        self.forget_after_misses = forget_after_misses
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
        if self.remembered < self.max_shapes:
            return True
        self._misses_while_full += 1
        if self._misses_while_full < self.forget_after_misses:
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


def struct_format(
    size: int, spans: list[tuple[int, int, str]], gap: str, *, cut_skipped_tail: bool = False
) -> tuple[str, int]:
    """A ``struct`` format covering ``size`` bytes: ``spans`` as they say, the rest as ``gap``.

    ``spans`` are sorted, disjoint ``(start, stop, code)``; ``code`` is the
    struct code the span is read as (``"x"`` skipped, ``"s"`` bytes, or a
    fixed-size one like ``"Q"``), ``gap`` is ``"s"`` or ``"x"``.  Also returns
    how many bytes lie between the spans.  Empty spans are kept (``0s`` reads
    ``b""``) so that the values of two formats of one datagram line up.
    ``cut_skipped_tail`` leaves out a skipped last span: a struct unpacks
    faster without bytes it need not look at (its size is then less than
    ``size``, which ``unpack_from`` allows).
    """
    parts = ["<"]
    between = position = 0
    for start, stop, code in spans:
        if start > position:
            parts.append(f"{start - position}{gap}")
            between += start - position
        parts.append(f"{stop - start}{code}" if code in ("s", "x") else code)
        position = stop
    if size > position:
        parts.append(f"{size - position}{gap}")
        between += size - position
    elif cut_skipped_tail and spans and spans[-1][2] == "x":
        parts.pop()
    return "".join(parts), between
