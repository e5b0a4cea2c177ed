"""tracefs format files → where each field of a binary record lives.

The kernel describes every tracepoint's record in
``events/<system>/<event>/format``, one line per field::

    field:void * location;	offset:16;	size:8;	signed:0;

and ends with the ``print fmt`` it uses for text output, in which
``__print_symbolic(REC->reason, { 2, "NOT_SPECIFIED" }, ...)`` names the
values of an enum field: for ``skb:kfree_skb`` that is the drop reasons of
*this* kernel, so nothing about reasons is hard-coded here.  The ring
buffer's page header is described the same way in ``events/header_page``.

Only what netdm reads is modelled.  Pure: text in, layouts out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from netdm.proto.errors import ProtocolError

_FIELD_LINE = re.compile(
    r"^\s*field:\s*(?P<decl>[^;]+);\s*offset:\s*(?P<offset>\d+);\s*size:\s*(?P<size>\d+);"
    r"(?:\s*signed:\s*(?P<signed>-?\d+);)?"
)
_SYMBOLIC = re.compile(r"__print_symbolic\(\s*REC->(?P<field>\w+)\s*,")
_SYMBOL_PAIR = re.compile(r'\{\s*(?P<value>-?(?:0x[0-9a-fA-F]+|\d+))\s*,\s*"(?P<name>[^"]*)"\s*\}')
_NAME_AND_ID = re.compile(r"^(name|ID):\s*(\S+)\s*$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class FieldFormat:
    """One field of a record: C declaration, byte offset and size."""

    name: str
    declaration: str
    offset: int
    size: int
    signed: bool


@dataclass(frozen=True, slots=True)
class EventFormat:
    """An event's ``format`` file: its id, fields, and the names of enum values.

    ``symbols`` maps a field name to ``{value: name}`` from the print format's
    ``__print_symbolic``.  ``text`` is the file as read, so that a capture can
    carry it and a replay decode with exactly the layout the kernel had.
    """

    name: str
    event_id: int
    fields: tuple[FieldFormat, ...]
    symbols: Mapping[str, Mapping[int, str]] = field(default_factory=dict)
    text: str = ""

    def field(self, name: str) -> FieldFormat | None:
        for candidate in self.fields:
            if candidate.name == name:
                return candidate
        return None

    @property
    def record_size(self) -> int:
        """Bytes up to the end of the last fixed field."""
        return max((f.offset + f.size for f in self.fields), default=0)


def _field_name(declaration: str) -> str:
    """``unsigned short common_type`` → ``common_type``; ``char comm[16]`` → ``comm``."""
    last = declaration.split()[-1] if declaration.split() else ""
    return last.split("[", 1)[0].lstrip("*")


def parse_event_format(text: str) -> EventFormat:
    """Parse a tracefs ``format`` file; :class:`ProtocolError` (at a text offset) if not one."""
    header: dict[str, str] = {match[1]: match[2] for match in _NAME_AND_ID.finditer(text)}
    if "name" not in header or "ID" not in header or not header["ID"].isdigit():
        raise ProtocolError("not a tracefs event format file: no 'name:' and 'ID:' lines", 0)
    fields: list[FieldFormat] = []
    position = 0
    for line in text.splitlines(keepends=True):
        match = _FIELD_LINE.match(line)
        if match:
            declaration = match["decl"].strip()
            fields.append(
                FieldFormat(
                    name=_field_name(declaration),
                    declaration=declaration,
                    offset=int(match["offset"]),
                    size=int(match["size"]),
                    signed=match["signed"] not in (None, "0"),
                )
            )
        elif line.lstrip().startswith("field:"):
            raise ProtocolError(f"unreadable field line {line.strip()!r}", position)
        position += len(line)
    if not fields:
        raise ProtocolError("the event format file describes no fields", 0)
    return EventFormat(
        name=header["name"],
        event_id=int(header["ID"]),
        fields=tuple(fields),
        symbols=_symbolic_values(text),
        text=text,
    )


def _symbolic_values(text: str) -> dict[str, dict[int, str]]:
    """Every ``__print_symbolic(REC->field, {value, "name"}, ...)`` of the print format."""
    symbols: dict[str, dict[int, str]] = {}
    for match in _SYMBOLIC.finditer(text):
        # The pairs run to the call's closing parenthesis; names never contain one.
        end = text.find(")", match.end())
        body = text[match.end() : end if end >= 0 else len(text)]
        names = symbols.setdefault(match["field"], {})
        for pair in _SYMBOL_PAIR.finditer(body):
            names[int(pair["value"], 0)] = pair["name"]
    return symbols


@dataclass(frozen=True, slots=True)
class PageLayout:
    """The ring buffer's page header, from ``events/header_page``.

    A page is ``timestamp`` (u64), ``commit`` (a ``local_t``: 8 bytes on
    64-bit kernels, whose low bits are the number of data bytes used and
    whose top bits flag lost events) and then ``data``.
    """

    timestamp_offset: int = 0
    commit_offset: int = 8
    commit_size: int = 8
    data_offset: int = 16
    data_size: int = 4080

    @property
    def page_size(self) -> int:
        return self.data_offset + self.data_size


def parse_header_page(text: str) -> PageLayout:
    """Parse ``events/header_page``; :class:`ProtocolError` if a field is missing."""
    found: dict[str, tuple[int, int]] = {}
    for line in text.splitlines():
        match = _FIELD_LINE.match(line)
        if match:
            name = _field_name(match["decl"].strip())
            found.setdefault(name, (int(match["offset"]), int(match["size"])))
    missing = [name for name in ("timestamp", "commit", "data") if name not in found]
    if missing:
        raise ProtocolError(f"header_page has no {', '.join(missing)} field", 0)
    (timestamp_offset, _), (commit_offset, commit_size), (data_offset, data_size) = (
        found["timestamp"],
        found["commit"],
        found["data"],
    )
    if commit_size not in (4, 8) or data_offset < commit_offset + commit_size:
        raise ProtocolError(f"header_page has an unexpected layout: {found}", 0)
    return PageLayout(timestamp_offset, commit_offset, commit_size, data_offset, data_size)
