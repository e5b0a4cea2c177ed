"""The reader's window on the file, and what a file starts with.

Strategy: the file is read in 1 MiB chunks into one ``bytes`` buffer that the
record loops walk with offsets; a refill drops what was walked and reads at
least what the next structure needs, never more than
:data:`~netdm.capture.formats.MAX_PLAUSIBLE_BLOCK` at a time, so a length
field that lies costs a bounded read.  The first four bytes say which format
(and byte order) a file is, or, for the error sentence, what else it may be.
"""

from __future__ import annotations

from typing import BinaryIO

from netdm.capture.formats import (
    BLOCK_SHB,
    BYTE_ORDER_MAGIC,
    MAX_PLAUSIBLE_BLOCK,
    PCAP_MAGIC_MICROSECONDS,
    PCAP_MAGIC_NANOSECONDS,
    ByteOrder,
)

CHUNK_SIZE = 1 << 20
NS_PER_SECOND = 1_000_000_000
PCAP_MAGICS: dict[bytes, tuple[ByteOrder, int]] = {
    # first four bytes → (byte order, ticks per second)
    PCAP_MAGIC_MICROSECONDS.to_bytes(4, "little"): ("little", 1_000_000),
    PCAP_MAGIC_MICROSECONDS.to_bytes(4, "big"): ("big", 1_000_000),
    PCAP_MAGIC_NANOSECONDS.to_bytes(4, "little"): ("little", NS_PER_SECOND),
    PCAP_MAGIC_NANOSECONDS.to_bytes(4, "big"): ("big", NS_PER_SECOND),
}
PCAPNG_MAGIC = BLOCK_SHB.to_bytes(4, "big")
BYTE_ORDER_MAGICS: dict[bytes, ByteOrder] = {
    BYTE_ORDER_MAGIC.to_bytes(4, "little"): "little",
    BYTE_ORDER_MAGIC.to_bytes(4, "big"): "big",
}
# What a file that is not a capture may be, by its first bytes (for the error sentence).
_OTHER_SIGNATURES = (
    (b"\x1f\x8b", "gzip-compressed data (decompress it first)"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed data (decompress it first)"),
    (b"\xfd7zXZ\x00", "xz-compressed data (decompress it first)"),
    (b"BZh", "bzip2-compressed data (decompress it first)"),
    (b"\xa1\xb2\xcd\x34", "a modified (Kuznetzov) pcap, which netdm does not read"),
    (b"\x34\xcd\xb2\xa1", "a modified (Kuznetzov) pcap, which netdm does not read"),
    (b"snoop\x00\x00\x00", "a snoop capture"),
    (b"\x7fELF", "an ELF executable"),
)


class InputWindow:
    """A growing window on the stream: ``buf`` holds bytes from file offset ``base`` on."""

    __slots__ = ("stream", "buf", "base", "eof")

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.buf = b""
        self.base = 0
        self.eof = False

    def fill(self, pos: int, need: int) -> int:
        """Drop ``buf[:pos]``, read until ``need`` bytes follow it or the file ends; return 0."""
        rest = self.buf[pos:]
        self.base += pos
        parts = [rest]
        have = len(rest)
        while have < need and not self.eof:
            # At most MAX_PLAUSIBLE_BLOCK a read: a file object's read(n) allocates n bytes
            # before it finds the file's end, so a length field that lies (4 GiB) would
            # otherwise cost a 4 GiB buffer, or a MemoryError under an address-space limit.
            chunk = self.stream.read(min(max(CHUNK_SIZE, need - have), MAX_PLAUSIBLE_BLOCK))
            if not chunk:
                self.eof = True
                break
            parts.append(chunk)
            have += len(chunk)
        self.buf = b"".join(parts) if len(parts) > 1 else rest
        return 0


def describe_start(head: bytes) -> str:
    """What a file that is not a capture seems to be, for the error sentence."""
    for signature, what in _OTHER_SIGNATURES:
        if head.startswith(signature):
            return f"{what}: {head[:8].hex(' ')}"
    sample = head[:16]
    if sample and all(32 <= byte < 127 or byte in (9, 10, 13) for byte in sample):
        return f"text {sample.decode('ascii')!r}"
    return f"the bytes {sample[:8].hex(' ')}"
