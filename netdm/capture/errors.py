"""The capture layer's one error type."""

from __future__ import annotations

from netdm.errors import BadInputError


class CaptureError(BadInputError, ValueError):
    """A capture file that cannot be read (further): one sentence naming the file and offset.

    ``str(error)`` is ``f"{path} {reason}"``, for example ``"drops.pcap ends in
    the middle of a record at offset 4120 (the record is 236 bytes long; 100
    are present)"``.  ``offset`` is the byte offset from the start of the file
    (or of the stream, for a file object) where the damaged structure begins;
    the reason names it too.  It is a :class:`ValueError` and a
    :class:`netdm.errors.BadInputError`, so the command line reports it with
    exit code ``BAD_INPUT``.
    """

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(f"{path} {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason
