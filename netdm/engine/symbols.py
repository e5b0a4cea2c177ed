"""Kernel code addresses → function names, from /proc/kallsyms or a System.map.

Strategy: the symbol file is read once and turned into two sorted parallel
lists, addresses and names, searched with :func:`bisect.bisect_right`; a small
dict in front of the search remembers the few addresses a drop monitor keeps
seeing.  Only text symbols (types ``t T w W``) are kept, because only code can
be a drop location.  Where several names share an address the first one listed
wins, which is the one the kernel itself prints for ``%pS``.  A symbol's size
is the distance to the next symbol of the same region (the kernel, or one
module), exactly as the kernel computes it; the last symbol of a region has
no known size and covers at most :data:`MAX_UNSIZED_SYMBOL` bytes, so an
address in a gap between modules stays unresolved instead of being named
after some far-away function.

Parsing has a fast path for well-formed files (one ``bytes.split`` and
column slicing, so ~200,000 lines load in well under 0.3 s) and a line-by-line
fallback for anything irregular (comments, a module column after a space,
junk lines, which are counted and reported).  The same parser reads
``/proc/kallsyms``, a System.map, and the subset of kallsyms lines a capture
may carry.

:meth:`SymbolTable.load` tries a small table of strategies in order, in the
spirit of dropwatch's ``lookup.h`` (kallsyms / bfd): an explicit symbols file,
``/proc/kallsyms``, and ``/boot/System.map-RELEASE``.  Every strategy that
fails says why; when the kernel hides its addresses (``kernel.kptr_restrict``
makes every address in kallsyms read as zero) the table says so, so that the
user learns why addresses are printed raw.
"""

from __future__ import annotations

import os
import re
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from itertools import compress, repeat
from typing import NamedTuple

from netdm.netlink.diagnose import SystemFiles, kernel_config_value

KALLSYMS_PATH = "/proc/kallsyms"
# Text (code) symbols: local, global, weak.  Data, rodata, bss, absolute: never a drop location.
TEXT_SYMBOL_TYPES = frozenset("tTwW")
# How far past the last symbol of a region (kernel or one module) an address may lie and still
# be named after it.  The largest function of a 6.x x86-64 kernel is about 20 KiB.
MAX_UNSIZED_SYMBOL = 256 * 1024
# pc == 0 in a summary alert is the NAPI heuristic "a device's rx_dropped counter grew".
RX_DROPPED_LABEL = "(device rx_dropped)"
LOOKUP_CACHE_SIZE = 4096
_HIDDEN_ADVICE = " — run as root with kernel.kptr_restrict at 0 or 1, or pass a System.map"
_MISSING_ADVICE = " — pass a System.map or kallsyms file of the running kernel"

_TEXT_TYPE_TOKENS = frozenset(symbol_type.encode() for symbol_type in TEXT_SYMBOL_TYPES)
# In the stored token of a module symbol, name and module are joined by this mark: NUL never
# occurs in a symbol file, and it keeps the token free of whitespace for the fast split.
_MODULE_MARK = b"\x00["
_KALLSYMS_LINE = re.compile(
    rb"\s*(?P<address>[0-9a-fA-F]+)\s+(?P<type>\S)\s+(?P<name>[^\s\[]\S*)"
    rb"(?:\s+\[(?P<module>[^\]\s]+)\])?\s*"
)
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


class _Columns(NamedTuple):
    addresses: list[bytes]
    types: list[bytes]
    names: list[bytes]  # b"name" or b"name\x00[module]"
    has_module_column: bool
    skipped_lines: int


@dataclass(frozen=True, slots=True)
class _Index:
    addresses: list[int]
    entries: list[bytes]  # b"name" or b"name\x00[module]", parallel to addresses
    hidden: bool  # there were text symbols, and all their addresses were zero
    has_module_symbols: bool
    skipped_lines: int


def _regular_columns(data: bytes) -> _Columns | None:
    has_module_column = b"\t[" in data
    if has_module_column:
        data = data.replace(b"\t[", _MODULE_MARK)
    tokens = data.split()
    if len(tokens) % 3:
        return None
    types = tokens[1::3]
    if max(map(len, types), default=1) != 1:
        return None
    return _Columns(tokens[0::3], types, tokens[2::3], has_module_column, 0)


def _columns_line_by_line(data: bytes) -> _Columns:
    columns = _Columns([], [], [], False, 0)
    skipped = 0
    for line in data.splitlines():
        match = _KALLSYMS_LINE.fullmatch(line)
        if match is None:
            stripped = line.strip()
            if stripped and not stripped.startswith(b"#"):
                skipped += 1
            continue
        columns.addresses.append(match["address"])
        columns.types.append(match["type"])
        name, module = match["name"], match["module"]
        columns.names.append(name if module is None else name + _MODULE_MARK + module + b"]")
    has_module_column = any(_MODULE_MARK in name for name in columns.names)
    return columns._replace(has_module_column=has_module_column, skipped_lines=skipped)


def _build_index(columns: _Columns) -> _Index:
    types, names = columns.types, columns.names
    chosen = list(compress(range(len(types)), map(_TEXT_TYPE_TOKENS.__contains__, types)))
    addresses = list(map(int, map(columns.addresses.__getitem__, chosen), repeat(16)))
    if not any(addresses):
        return _Index([], [], bool(addresses), False, columns.skipped_lines)
    # Walking backwards, the first symbol listed at an address is written last and wins.
    first_listed = dict(zip(reversed(addresses), reversed(chosen), strict=True))
    unique = sorted(first_listed)
    entries = list(map(names.__getitem__, map(first_listed.__getitem__, unique)))
    return _Index(unique, entries, False, columns.has_module_column, columns.skipped_lines)


def _index_symbol_text(data: bytes) -> _Index:
    columns = _regular_columns(data)
    if columns is not None:
        try:
            return _build_index(columns)
        except ValueError:  # an address that is not hexadecimal: take the careful path
            pass
    return _build_index(_columns_line_by_line(data))


def _as_bytes(text: str | bytes | Iterable[str]) -> bytes:
    if isinstance(text, bytes):
        return text
    if not isinstance(text, str):
        text = "\n".join(line.rstrip("\n") for line in text)
    return text.encode("utf-8", "surrogateescape")


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


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
        index = _index_symbol_text(_as_bytes(text))
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

        Strategies, first success wins (see ``_STRATEGY_ORDER``):

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
        if system is None:
            system = SystemFiles.running()
        if release is not None:
            system = replace(system, release=release)
        request = _LoadRequest(kallsyms_path, system_map, system)
        order = _STRATEGY_ORDER["given file" if system_map is not None else "default"]
        failures: list[SymbolTable] = []
        for strategy_name in order:
            table = _STRATEGIES[strategy_name](request)
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
        name, mark, module = self._entries[index].partition(_MODULE_MARK)
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
            name=_decode(name),
            offset=offset,
            module=None if module is None else _decode(module),
            size=size,
        )


# --- load strategies: each returns a table, empty with ``why_unresolved`` set when it failed


@dataclass(frozen=True, slots=True)
class _LoadRequest:
    kallsyms_path: str | os.PathLike[str] | None
    system_map: str | os.PathLike[str] | None
    system: SystemFiles


def _read_table(path: str | os.PathLike[str]) -> SymbolTable:
    try:
        table = SymbolTable.from_kallsyms_file(path)
    except OSError as error:
        return SymbolTable.empty(why_unresolved=f"cannot read {os.fspath(path)}: {error.strerror}")
    if not table and not table.addresses_hidden:
        return SymbolTable.empty(why_unresolved=f"{os.fspath(path)} lists no kernel text symbols")
    return table


def _kptr_restrict(system: SystemFiles) -> str | None:
    try:
        return (system.proc / "sys" / "kernel" / "kptr_restrict").read_text().strip()
    except OSError:
        return None


def _from_given_file(request: _LoadRequest) -> SymbolTable:
    assert request.system_map is not None
    table = _read_table(request.system_map)
    if table and not table.has_module_symbols:  # a System.map, not a kallsyms copy
        table.why_unresolved = (
            f"{os.fspath(request.system_map)} has no module symbols, and names are right only "
            "if it belongs to the running kernel and KASLR is off"
        )
    return table


def _from_kallsyms(request: _LoadRequest) -> SymbolTable:
    if request.kallsyms_path is None:
        return SymbolTable.empty()
    table = _read_table(request.kallsyms_path)
    if table.addresses_hidden:
        setting = _kptr_restrict(request.system)
        where = os.fspath(request.kallsyms_path)
        sysctl = "kernel.kptr_restrict" if setting is None else f"kernel.kptr_restrict={setting}"
        table.why_unresolved = f"addresses in {where} are hidden ({sysctl})"
    return table


def _kaslr_enabled(system: SystemFiles) -> bool | None:
    try:
        if "nokaslr" in (system.proc / "cmdline").read_text().split():
            return False
    except OSError:
        pass
    config = kernel_config_value(system, "CONFIG_RANDOMIZE_BASE")
    return None if config is None else config[0] == "y"


def _from_boot_system_map(request: _LoadRequest) -> SymbolTable:
    path = request.system.boot / f"System.map-{request.system.release}"
    if not path.exists():
        return SymbolTable.empty(why_unresolved=f"there is no {path}")
    kaslr = _kaslr_enabled(request.system)
    if kaslr:
        return SymbolTable.empty(why_unresolved=f"{path} does not match a kernel that KASLR moved")
    table = _read_table(path)
    if table:
        caveat = "" if kaslr is False else ", and names are right only if KASLR is off"
        table.why_unresolved = f"using {path}: module addresses stay raw{caveat}"
    return table


_STRATEGIES: dict[str, Callable[[_LoadRequest], SymbolTable]] = {
    "given file": _from_given_file,
    "kallsyms": _from_kallsyms,
    "System.map": _from_boot_system_map,
}
_STRATEGY_ORDER: dict[str, tuple[str, ...]] = {
    "given file": ("given file", "kallsyms"),
    "default": ("kallsyms", "System.map"),
}
