"""Kernel symbols as netdm prints them (``name+0xoff [module]``) and as the kernel sends them.

Strategy: value types and text only.  :class:`Symbol` is what a lookup in a
:class:`netdm.engine.symbols.SymbolTable` finds; :class:`KernelSymbol` is a
``%pS`` string from ``NET_DM_ATTR_SYMBOL`` taken apart, which may be cut
short anywhere because the kernel caps it at 39 characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# pc == 0 in a summary alert is the NAPI heuristic "a device's rx_dropped counter grew".
RX_DROPPED_LABEL = "(device rx_dropped)"
# %pS as the kernel sends it in NET_DM_ATTR_SYMBOL: "name+0xoff/0xsize [module]", at most 39
# characters, so the tail may be cut off anywhere.
_PERCENT_PS = re.compile(
    r"(?P<name>[^\s+]+)(?:\+0x(?P<offset>[0-9a-fA-F]+)(?:/0x(?P<size>[0-9a-fA-F]+))?)?"
    r"(?:\s+\[(?P<module>[^\]\s]+)(?:\s[^\]]*)?\])?"
)


def format_address(address: int) -> str:
    """An address as it is printed when no symbol names it: ``0xffffffff81abcdef``."""
    return f"{address:#x}"


@dataclass(frozen=True, slots=True)
class Symbol:
    """Where an address lies: ``offset`` bytes into function ``name`` (of ``module``).

    ``size`` is the distance to the next symbol of the same region, as the
    kernel computes it for ``%pS``; ``None`` for the last symbol of a region.
    """

    name: str
    offset: int
    module: str | None = None
    size: int | None = None

    def format(self, *, with_size: bool = False) -> str:
        """Kernel ``%pS`` style: ``tcp_v4_rcv+0x9a`` or ``nlmon_xmit+0x10 [nlmon]``.

        The kernel also prints ``/0xsize``; netdm leaves it out by default
        (the size is only inferred from the next symbol) and adds it with
        ``with_size=True`` when it is known.
        """
        text = f"{self.name}+{self.offset:#x}"
        if with_size and self.size is not None:
            text += f"/{self.size:#x}"
        if self.module is not None:
            text += f" [{self.module}]"
        return text

    def __str__(self) -> str:
        return self.format()


@dataclass(frozen=True, slots=True)
class KernelSymbol:
    """A ``%pS`` string from ``NET_DM_ATTR_SYMBOL``, taken apart.

    The kernel caps the string at 39 characters, so ``offset``, ``size`` and
    ``module`` are ``None`` when they were cut off (and ``name`` itself may be
    cut short).
    """

    name: str
    offset: int | None = None
    size: int | None = None
    module: str | None = None


def parse_kernel_symbol(text: str) -> KernelSymbol:
    """Split a kernel symbol string such as ``udp_queue_rcv_one_skb+0x3a/0x80 [udp]``.

    Text that does not look like ``%pS`` output is kept whole as the name.
    """
    match = _PERCENT_PS.match(text)
    if match is None:
        return KernelSymbol(name=text)
    offset, size = match["offset"], match["size"]
    return KernelSymbol(
        name=match["name"],
        offset=None if offset is None else int(offset, 16),
        size=None if size is None else int(size, 16),
        module=match["module"],
    )
