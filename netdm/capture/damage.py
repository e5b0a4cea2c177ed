"""Damage: the one sentence a damaged capture earns, raised or (``keep_going``) counted.

Strategy: every problem is a :class:`~netdm.capture.errors.CaptureError`
sentence naming the file and the byte offset where the damaged structure
begins.  Strict readers raise it; with ``keep_going`` the reader counts it and
keeps the first few sentences, and the walk goes on where it can find the
next record with certainty.  :class:`ReaderBase` holds what the record walks
of :mod:`netdm.capture.pcap_records` and :mod:`netdm.capture.pcapng_records`
share; the sentences that more than one walk says are here too.
"""

from __future__ import annotations

from netdm.capture.errors import CaptureError
from netdm.capture.formats import MAX_PLAUSIBLE_BLOCK
from netdm.capture.info import CaptureInfo
from netdm.capture.layouts import LAYOUTS
from netdm.capture.window import InputWindow

MAX_PROBLEMS_KEPT = 10


def a_or_an(name: str) -> str:
    """``"an Enhanced Packet Block"``, ``"a block"``."""
    return f"an {name}" if name[0] in "AEIOUaeiou" else f"a {name}"


class ReaderBase:
    """The state every record walk uses; :class:`netdm.capture.read.CaptureReader` sets it."""

    path: str
    keep_going: bool
    bad_records: int
    problems: list[str]
    foreign_records: int
    info: CaptureInfo
    _input: InputWindow
    _packets: bool
    _fast: bool
    _owns_stream: bool

    def _error(self, offset: int, reason: str) -> CaptureError:
        return CaptureError(self.path, offset, reason)

    def _problem(self, offset: int, reason: str) -> None:
        """Raise, or (``keep_going``) count and remember; the caller then skips or stops."""
        error = self._error(offset, reason)
        if not self.keep_going:
            raise error
        self.bad_records += 1
        if len(self.problems) < MAX_PROBLEMS_KEPT:
            self.problems.append(str(error))

    def _cut(
        self, offset: int, what: str, size: int, present: int, *, at_least: bool = False
    ) -> None:
        """The file ends inside something ``size`` (or more) bytes long starting at ``offset``."""
        if size > MAX_PLAUSIBLE_BLOCK:
            self._problem(
                offset,
                f"has a corrupt block at offset {offset}: its length {size} runs past "
                f"the end of the file ({present} bytes are left)",
            )
        else:
            self._problem(
                offset,
                f"ends in the middle of {what} at offset {offset} "
                f"(it is {'at least ' if at_least else ''}{size} bytes long; "
                f"{present} are present)",
            )

    @staticmethod
    def _short_record(offset: int, caplen: int) -> str:
        cooked_header_len = LAYOUTS["big"].cooked_header_len  # the pseudo-header is big-endian
        return (
            f"has a record at offset {offset} of {caplen} bytes, too short for the "
            f"{cooked_header_len}-byte netlink pseudo-header"
        )

    @staticmethod
    def _framing_problem(offset: int, length: int, minimum: int, name: str) -> str | None:
        """What is wrong with a block's total length by itself, if anything."""
        if length % 4:
            return (
                f"has a corrupt block at offset {offset}: its total length {length} "
                "is not a multiple of 4"
            )
        if length < minimum:
            return (
                f"has a corrupt block at offset {offset}: its total length {length} is "
                f"shorter than the {minimum} bytes of {a_or_an(name)}"
            )
        return None

    @staticmethod
    def _trailing_problem(offset: int, trailing: int, length: int) -> str:
        return (
            f"has a corrupt block at offset {offset}: its trailing length {trailing} "
            f"differs from its leading length {length}"
        )

    @staticmethod
    def _caplen_problem(offset: int, caplen: int, length: int) -> str:
        return (
            f"has a corrupt block at offset {offset}: its captured length {caplen} "
            f"does not fit in its total length {length}"
        )
