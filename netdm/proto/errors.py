"""The protocol layer's one error type."""

from __future__ import annotations


class ProtocolError(ValueError):
    """Bytes that are not a well-formed netlink / NET_DM message.

    ``offset`` is the byte offset into the datagram (or message) handed to the
    decoder where the problem was found, so a person can find it in a hex dump.
    """

    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(f"{reason} (at byte offset {offset})")
        self.reason = reason
        self.offset = offset
