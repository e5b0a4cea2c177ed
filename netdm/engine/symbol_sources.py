"""Where a run's kernel symbols come from.

Strategy: a live run reads this machine's symbols (/proc/kallsyms, or the
System.map given); a replay reads the symbols of the machine that recorded
it: --symbols when given, else those the capture carries, else none, with a
sentence saying why addresses print raw.
"""

from __future__ import annotations

from netdm.engine.symbols import SymbolTable


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
