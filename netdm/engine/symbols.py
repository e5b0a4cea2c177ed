"""Kernel code addresses → function names, from /proc/kallsyms or a System.map.

Strategy: the symbol file is read once (:mod:`netdm.engine.symbol_files`)
and turned into two sorted parallel lists, addresses and names, searched with
:func:`bisect.bisect_right`; a small dict in front of the search remembers the
few addresses a drop monitor keeps seeing.  A symbol's size is the distance to
the next symbol of the same region (the kernel, or one module), exactly as the
kernel computes it; the last symbol of a region has no known size and covers
at most :data:`MAX_UNSIZED_SYMBOL` bytes, so an address in a gap between
modules stays unresolved instead of being named after some far-away function.

:meth:`SymbolTable.load` tries the strategies of
:mod:`netdm.engine.symbol_sources` in order (an explicit symbols file,
``/proc/kallsyms``, ``/boot/System.map-RELEASE``), and the table says why
addresses stay raw when they do.  Names as printed and as the kernel sends
them (``%pS``) are :mod:`netdm.engine.symbol_names`; they are re-exported here.
"""

from __future__ import annotations

import os
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import replace

from netdm.engine.symbol_files import (
    MODULE_MARK,
    TEXT_SYMBOL_TYPES,
    decode_symbol_text,
    index_symbol_text,
    symbol_text_bytes,
)
from netdm.engine.symbol_names import (
    RX_DROPPED_LABEL,
    KernelSymbol,
    Symbol,
    format_address,
    parse_kernel_symbol,
)
from netdm.netlink.diagnose import SystemFiles

KALLSYMS_PATH = "/proc/kallsyms"
# How far past the last symbol of a region (kernel or one module) an address may lie and still
# be named after it.  The largest function of a 6.x x86-64 kernel is about 20 KiB.
MAX_UNSIZED_SYMBOL = 256 * 1024
LOOKUP_CACHE_SIZE = 4096
_HIDDEN_ADVICE = " — run as root with kernel.kptr_restrict at 0 or 1, or pass a System.map"
_MISSING_ADVICE = " — pass a System.map or kallsyms file of the running kernel"


class SymbolTable:
    """Sorted kernel text symbols; :meth:`lookup` turns an address into a :class:`Symbol`.

    Build one with :meth:`load` (the running kernel), :meth:`from_kallsyms`
    or :meth:`from_system_map`.  Attributes for the user interface:

    ``source_description``
        Where the names come from, e.g. ``/proc/kallsyms (121851 text symbols)``.
    ``addresses_hidden``
        ``/proc/kallsyms`` was readable but every address in it was zero
        (``kernel.kptr_restrict``).
    ``why_unresolved``
        A sentence saying why some or all addresses will be shown raw, or
        ``None`` when nothing is missing.
    ``skipped_lines``
        Lines of the file that were neither symbols, blank, nor ``#`` comments.
    """

    def __init__(
        self,
        addresses: list[int],
        entries: list[bytes],
        *,
        source_description: str,
        addresses_hidden: bool = False,
        has_module_symbols: bool = False,
        why_unresolved: str | None = None,
        skipped_lines: int = 0,
    ) -> None:
        """Wrap already sorted, de-duplicated lists; use the ``from_*`` constructors instead."""
        self._addresses = addresses
        self._entries = entries
        self._cache: dict[int, Symbol | None] = {}
        self.source_description = source_description
        self.addresses_hidden = addresses_hidden
        self.has_module_symbols = has_module_symbols
        self.why_unresolved = why_unresolved
        self.skipped_lines = skipped_lines

    # --- construction

    @classmethod
    def empty(
        cls, source_description: str = "no symbols", why_unresolved: str | None = None
    ) -> SymbolTable:
        """A table that resolves nothing (every address is shown raw)."""
        return cls([], [], source_description=source_description, why_unresolved=why_unresolved)

    @classmethod
    def from_kallsyms_text(
        cls,
        text: str | bytes | Iterable[str],
        *,
        source_description: str = "kallsyms text",
        kaslr_offset: int = 0,
    ) -> SymbolTable:
        """Parse kallsyms-format text: ``ffffffffc0a01000 t nlmon_xmit\\t[nlmon]`` lines.

        ``text`` may be the whole file (str or bytes) or an iterable of lines,
        e.g. the subset of kallsyms lines a capture carries.  A System.map is
        the same format without the module column.  ``kaslr_offset`` is added
        to every address (for a System.map of a kernel that KASLR moved by a
        known amount).  If there are text symbols but all their addresses are
        zero, ``addresses_hidden`` is set and the table resolves nothing.
        """
        index = index_symbol_text(symbol_text_bytes(text))
        addresses = index.addresses
        if kaslr_offset:
            addresses = [address + kaslr_offset for address in addresses]
        why = None
        if index.hidden:
            why = f"addresses in {source_description} are hidden (all zero)"
        return cls(
            addresses,
            index.entries,
            source_description=f"{source_description} ({len(addresses)} text symbols)",
            addresses_hidden=index.hidden,
            has_module_symbols=index.has_module_symbols,
            why_unresolved=why,
            skipped_lines=index.skipped_lines,
        )

    @classmethod
    def from_kallsyms_file(
        cls, path: str | os.PathLike[str], *, kaslr_offset: int = 0
    ) -> SymbolTable:
        """Read and parse a kallsyms-format file (``/proc/kallsyms``, a System.map, a copy).

        Raises :class:`OSError` when the file cannot be read.
        """
        with open(path, "rb") as symbol_file:
            data = symbol_file.read()
        return cls.from_kallsyms_text(
            data, source_description=os.fspath(path), kaslr_offset=kaslr_offset
        )

    @classmethod
    def from_kallsyms(cls, source: str | bytes | os.PathLike[str] | Iterable[str]) -> SymbolTable:
        """Parse kallsyms from a path or from its text.

        A :class:`os.PathLike` (``pathlib.Path``) is a file to read; ``bytes``,
        a ``str`` that contains a newline (or is empty) and an iterable of lines
        are the text itself; any other ``str`` is a path.  Use
        :meth:`from_kallsyms_file` / :meth:`from_kallsyms_text` to say which.
        """
        if isinstance(source, os.PathLike):
            return cls.from_kallsyms_file(source)
        if isinstance(source, str) and source and "\n" not in source:
            return cls.from_kallsyms_file(source)
        return cls.from_kallsyms_text(source)

    @classmethod
    def from_system_map(cls, path: str | os.PathLike[str], *, kaslr_offset: int = 0) -> SymbolTable:
        """Read a System.map (``nm -n vmlinux`` format, no module column).

        A System.map knows no module symbols, and its addresses are those of
        the kernel image before KASLR moved it: pass ``kaslr_offset`` when the
        offset is known, otherwise names are only right on a kernel booted
        without KASLR.  Raises :class:`OSError` when the file cannot be read.
        """
        return cls.from_kallsyms_file(path, kaslr_offset=kaslr_offset)

    @classmethod
    def load(
        cls,
        kallsyms_path: str | os.PathLike[str] | None = KALLSYMS_PATH,
        system_map: str | os.PathLike[str] | None = None,
        release: str | None = None,
        *,
        system: SystemFiles | None = None,
    ) -> SymbolTable:
        """The best symbol table for the running kernel; never raises for missing files.

        Strategies, first success wins (see :mod:`netdm.engine.symbol_sources`):

        * with ``system_map`` (a System.map or a kallsyms copy the user named):
          that file, then ``kallsyms_path``;
        * otherwise ``kallsyms_path`` (``/proc/kallsyms``), then
          ``/boot/System.map-RELEASE`` — but only when KASLR is known to be
          off, because a System.map names the wrong functions on a kernel that
          KASLR moved.

        ``kallsyms_path=None`` skips kallsyms (e.g. for a capture from another
        machine).  ``release`` defaults to ``uname -r``; ``system`` says where
        ``/proc`` and ``/boot`` are (tests point it at a fake tree).  When
        nothing works the table is empty and ``why_unresolved`` says why, with
        advice; reasons of earlier strategies that failed are kept in
        ``why_unresolved`` of the table that is returned.
        """
        from netdm.engine.symbol_sources import STRATEGIES, STRATEGY_ORDER, LoadRequest

        if system is None:
            system = SystemFiles.running()
        if release is not None:
            system = replace(system, release=release)
        request = LoadRequest(kallsyms_path, system_map, system)
        order = STRATEGY_ORDER["given file" if system_map is not None else "default"]
        failures: list[SymbolTable] = []
        for strategy_name in order:
            table = STRATEGIES[strategy_name](request)
            if table:
                return table._explained(failures)
            if table.why_unresolved is not None:
                failures.append(table)
        return cls.empty()._explained(failures)

    def _explained(self, failures: list[SymbolTable]) -> SymbolTable:
        """This table, with the reasons of the strategies that failed before it."""
        hidden = self.addresses_hidden or any(table.addresses_hidden for table in failures)
        reasons = [table.why_unresolved for table in failures if table.why_unresolved]
        advice = ""
        if not self:
            reasons.append("showing raw addresses")
            advice = _HIDDEN_ADVICE if hidden else _MISSING_ADVICE
        elif self.why_unresolved:
            reasons.append(self.why_unresolved)
        return SymbolTable(
            self._addresses,
            self._entries,
            source_description=self.source_description,
            addresses_hidden=hidden,
            has_module_symbols=self.has_module_symbols,
            why_unresolved="; ".join(reasons) + advice if reasons else None,
            skipped_lines=self.skipped_lines,
        )

    # --- lookup

    def __len__(self) -> int:
        return len(self._addresses)

    def __repr__(self) -> str:
        return f"<SymbolTable {self.source_description}>"

    def notices(self) -> tuple[str, ...]:
        """Sentences a user should see once, e.g. why addresses are shown raw."""
        notices = []
        if self.why_unresolved:
            notices.append(self.why_unresolved)
        if self.skipped_lines:
            notices.append(
                f"{self.skipped_lines} lines of {self.source_description} are not symbols; "
                "ignored them"
            )
        return tuple(notices)

    def lookup(self, address: int) -> Symbol | None:
        """The function ``address`` lies in, or ``None``.

        ``None`` for 0 (the rx_dropped heuristic, not an address), for
        addresses below the first symbol, and for addresses more than
        :data:`MAX_UNSIZED_SYMBOL` bytes past the last symbol of a region.
        """
        try:
            return self._cache[address]
        except KeyError:
            pass
        symbol = self._resolve(address)
        if len(self._cache) >= LOOKUP_CACHE_SIZE:
            self._cache.clear()
        self._cache[address] = symbol
        return symbol

    def kallsyms_lines(self, addresses: Iterable[int]) -> list[str]:
        """Lines in /proc/kallsyms format naming the functions ``addresses`` lie in.

        A capture carries these so that it can be symbolised on another
        machine (addresses change at every boot).  Unresolved addresses are
        left out; each function appears once.
        """
        lines: dict[int, str] = {}
        for address in addresses:
            symbol = self.lookup(address)
            if symbol is None:
                continue
            start = address - symbol.offset
            line = f"{start:016x} t {symbol.name}"
            if symbol.module is not None:
                line += f"\t[{symbol.module}]"
            lines[start] = line
        return [lines[start] for start in sorted(lines)]

    def display_name(self, address: int, *, verbose: bool = False) -> str:
        """What to print for ``address``: ``tcp_v4_rcv``, or with ``verbose``
        ``tcp_v4_rcv+0x9a [module]``; :data:`RX_DROPPED_LABEL` for 0; the raw
        ``0xffffffff81abcdef`` when no symbol names it.

        The result comes from the symbol file as it is: escape it before
        printing it on a terminal.
        """
        if address == 0:
            return RX_DROPPED_LABEL
        symbol = self.lookup(address)
        if symbol is None:
            return format_address(address)
        return symbol.format() if verbose else symbol.name

    def _name_and_module(self, index: int) -> tuple[bytes, bytes | None]:
        name, mark, module = self._entries[index].partition(MODULE_MARK)
        return name, (module[:-1] or None) if mark else None

    def _resolve(self, address: int) -> Symbol | None:
        if address <= 0:
            return None
        index = bisect_right(self._addresses, address) - 1
        if index < 0:
            return None
        start = self._addresses[index]
        name, module = self._name_and_module(index)
        size = None
        if index + 1 < len(self._addresses) and self._name_and_module(index + 1)[1] == module:
            size = self._addresses[index + 1] - start
            if size > MAX_UNSIZED_SYMBOL:  # a gap (e.g. after _etext), not a function
                size = None
        offset = address - start
        if size is None and offset >= MAX_UNSIZED_SYMBOL:
            return None
        return Symbol(
            name=decode_symbol_text(name),
            offset=offset,
            module=None if module is None else decode_symbol_text(module),
            size=size,
        )


__all__ = [
    "KALLSYMS_PATH",
    "LOOKUP_CACHE_SIZE",
    "MAX_UNSIZED_SYMBOL",
    "RX_DROPPED_LABEL",
    "TEXT_SYMBOL_TYPES",
    "KernelSymbol",
    "Symbol",
    "SymbolTable",
    "format_address",
    "parse_kernel_symbol",
]
