"""Make strings from the kernel or from a capture safe to print and to serialise.

Strategy: symbol names, module names, trap names, drop reasons and interface
names arrive from the kernel, from a kallsyms file or from a recorded capture,
and netdm prints them on somebody's terminal.  A ``\\x1b`` in a trap name must
not become an escape sequence, and bytes that are not UTF-8 (kept by the
decoder as ``surrogateescape`` code points U+DC80..U+DCFF) must neither crash
the output nor reach it raw.  :func:`escape_for_terminal` therefore rewrites
every character that :meth:`str.isprintable` rejects (C0 and C1 controls, DEL,
format characters such as the bidi overrides, line/paragraph separators,
lone surrogates, unassigned code points) into a visible backslash escape, and
escapes the backslash itself, so that the escaping is reversible and two
different inputs never print the same.  :func:`replace_invalid_text` is the
JSON side: it keeps the text but replaces undecodable bytes with U+FFFD, since
a JSON string cannot carry a lone surrogate portably.
"""

from __future__ import annotations

_SURROGATE_ESCAPE_FIRST = 0xDC80  # surrogateescape maps byte 0x80..0xFF here
_SURROGATE_ESCAPE_LAST = 0xDCFF
_SURROGATES = range(0xD800, 0xE000)
REPLACEMENT_CHARACTER = "\ufffd"


def _visible(character: str) -> str:
    if character == "\\":
        return "\\\\"
    if character.isprintable():
        return character
    code_point = ord(character)
    if _SURROGATE_ESCAPE_FIRST <= code_point <= _SURROGATE_ESCAPE_LAST:
        return f"\\x{code_point - 0xDC00:02x}"  # the undecodable byte itself
    if code_point < 0x80:
        return f"\\x{code_point:02x}"  # C0 controls and DEL
    if code_point <= 0xFFFF:
        return f"\\u{code_point:04x}"  # C1 controls, bidi overrides, other surrogates, ...
    return f"\\U{code_point:08x}"


def escape_for_terminal(text: str) -> str:
    """Return ``text`` with nothing in it that a terminal would act on.

    Printable characters (including non-ASCII letters and the space) stay as
    they are.  Everything :meth:`str.isprintable` rejects becomes a backslash
    escape: ``\\x00``-``\\x1f`` and ``\\x7f`` for ASCII controls, ``\\xNN``
    for an undecodable byte 0xNN kept by ``surrogateescape``, ``\\uNNNN`` or
    ``\\UNNNNNNNN`` for any other code point (C1 controls such as U+009B, the
    8-bit CSI, included).  A backslash becomes ``\\\\`` so that the escaping is
    reversible.  The result is always encodable as UTF-8.

    >>> escape_for_terminal("eth0\\x1b[2J")
    'eth0\\\\x1b[2J'
    """
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(map(_visible, text))


def escape_bytes_for_terminal(data: bytes) -> str:
    """Decode ``data`` as UTF-8 where possible and escape it for a terminal.

    Bytes that are not valid UTF-8 appear as ``\\xNN``; see
    :func:`escape_for_terminal`.
    """
    return escape_for_terminal(data.decode("utf-8", "surrogateescape"))


def replace_invalid_text(text: str) -> str:
    """Return ``text`` with every lone surrogate replaced by U+FFFD.

    Strings decoded with ``surrogateescape`` hold undecodable bytes as lone
    surrogates; ``json.dumps`` would copy them into its output, which then is
    not valid UTF-8 (or, with ``ensure_ascii``, holds ``\\udc80`` escapes that
    strict parsers reject).  Everything else is kept.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "".join(
            REPLACEMENT_CHARACTER if ord(character) in _SURROGATES else character
            for character in text
        )
    return text
