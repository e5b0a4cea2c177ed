"""Where a run's kernel symbols come from.

A live run reads this machine's symbols; a replay reads those of the machine
that recorded it (:func:`choose_symbols`: --symbols when given, else those the
capture carries, else none, with a sentence saying why addresses print raw).

For the running kernel, :meth:`netdm.engine.symbols.SymbolTable.load` tries a
small table of strategies in order, in the spirit of dropwatch's ``lookup.h``
(kallsyms / bfd): an explicit symbols file, ``/proc/kallsyms``, and
``/boot/System.map-RELEASE``.  Each returns a table, empty with
``why_unresolved`` set when it failed, so that every strategy that fails says
why; when the kernel hides its addresses (``kernel.kptr_restrict`` makes every
address in kallsyms read as zero) the table says so.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from netdm.engine.symbols import SymbolTable
from netdm.netlink.diagnose import SystemFiles, kernel_config_value


@dataclass(frozen=True, slots=True)
class LoadRequest:
    """What :meth:`SymbolTable.load` was asked: the files to try, where /proc and /boot are."""

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


def _from_given_file(request: LoadRequest) -> SymbolTable:
    assert request.system_map is not None
    table = _read_table(request.system_map)
    if table and not table.has_module_symbols:  # a System.map, not a kallsyms copy
        table.why_unresolved = (
            f"{os.fspath(request.system_map)} has no module symbols, and names are right only "
            "if it belongs to the running kernel and KASLR is off"
        )
    return table


def _from_kallsyms(request: LoadRequest) -> SymbolTable:
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


def _from_boot_system_map(request: LoadRequest) -> SymbolTable:
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


STRATEGIES: dict[str, Callable[[LoadRequest], SymbolTable]] = {
    "given file": _from_given_file,
    "kallsyms": _from_kallsyms,
    "System.map": _from_boot_system_map,
}
STRATEGY_ORDER: dict[str, tuple[str, ...]] = {
    "given file": ("given file", "kallsyms"),
    "default": ("kallsyms", "System.map"),
}


def choose_symbols(symbols_file: str | None, read_file: str | None) -> SymbolTable:
    """The symbol table for ``--symbols symbols_file`` and ``-r read_file`` (either may be None)."""
    if read_file is None:
        return SymbolTable.load(system_map=symbols_file)
    if symbols_file is not None:
        return SymbolTable.load(kallsyms_path=None, system_map=symbols_file)
    from netdm.capture import read_symbols

    text = read_symbols(read_file)
    if text.strip():
        return SymbolTable.from_kallsyms_text(
            text, source_description=f"the symbols recorded in {read_file}"
        )
    return SymbolTable.empty(
        source_description="no symbols",
        why_unresolved=(
            f"{read_file} carries no kernel symbols, so drop locations print as raw "
            "addresses (they change at every boot); pass --symbols with a copy of the "
            "recording machine's /proc/kallsyms to name them"
        ),
    )
