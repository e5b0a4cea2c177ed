"""Many datagrams per system call: ``recvmmsg(2)`` through :mod:`ctypes`.

Why: in a drop storm the kernel sends one netlink datagram per dropped
packet, and a Python ``recvmsg_into`` per datagram costs more than netdm's
whole decoding of it (2.5 µs against about 1 µs here natively, and far more
under emulation).  ``recvmmsg`` fills up to a few hundred datagrams with one
call, so the per-datagram cost is a slice and a ``bytes`` copy.

Python's :mod:`socket` has no ``recvmmsg``; libc has had it since glibc 2.12
and musl 1.1, and :mod:`ctypes` is in the standard library, so this stays
pure Python with no compiler.  Where libc has no ``recvmmsg`` (or ctypes is
missing), :func:`open_batch_receiver` returns ``None`` and the caller keeps
its one-datagram-per-call loop.

The datagrams land in fixed *slots* of one preallocated buffer.  A netlink
message longer than its slot is cut by the kernel and the rest of it is gone
(netlink has no partial reads), so the caller sizes the slots for the largest
message the kernel can send it: see :func:`packet_alert_slot_size`.  With
``MSG_TRUNC`` the kernel still reports the full length, so a message that did
not fit is never mistaken for a whole one: :meth:`BatchReceiver.receive`
returns its size in ``oversized`` and grows the slots.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
from collections.abc import Callable
from typing import ClassVar

MSG_DONTWAIT = 0x40
# The largest batch a call asks for, and how much memory all slots may take.
MAX_SLOTS = 256
SLOTS_BUDGET = 1024 * 1024
# A packet alert's attributes besides its payload, at most (reference §4.5,
# net_dm_packet_report_size: symbol ≤ 41 bytes, reason, the input port,
# trap group and trap names, a flow-action cookie ≤ 16 bytes, fixed-size
# numbers): well under 1 KB; four times that leaves room for new attributes.
PACKET_ALERT_OVERHEAD = 4096


def packet_alert_slot_size(trunc_len: int) -> int | None:
    """The slot size for packet alerts cut at ``trunc_len`` bytes; None if uncut (0)."""
    if trunc_len <= 0:
        return None
    return trunc_len + PACKET_ALERT_OVERHEAD


class _IoVec(ctypes.Structure):
    _fields_: ClassVar = [("base", ctypes.c_void_p), ("length", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_: ClassVar = [
        ("name", ctypes.c_void_p),
        ("namelen", ctypes.c_uint32),
        ("iov", ctypes.POINTER(_IoVec)),
        ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p),
        ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    ]


class _MMsgHdr(ctypes.Structure):
    _fields_: ClassVar = [("header", _MsgHdr), ("length", ctypes.c_uint)]


_MSG_LEN = struct.Struct("=I")  # struct mmsghdr.msg_len, native order


class BatchReceiver:
    """Takes every datagram queued on a non-blocking socket, up to a batch, per call.

    ``slot_size`` is the largest datagram expected; the number of slots is
    what fits in :data:`SLOTS_BUDGET` (at most :data:`MAX_SLOTS`, at least 1).
    """

    def __init__(self, fd: int, slot_size: int, recvmmsg: Callable[..., int]) -> None:
        self._fd = fd
        self._recvmmsg = recvmmsg
        self.slot_size = 0
        self._resize(slot_size)

    def _resize(self, slot_size: int) -> None:
        self.slot_size = slot_size
        self.slots = max(1, min(MAX_SLOTS, SLOTS_BUDGET // slot_size))
        self._buffer = ctypes.create_string_buffer(self.slots * slot_size)
        self._vectors = (_IoVec * self.slots)()
        self._messages = (_MMsgHdr * self.slots)()
        base = ctypes.addressof(self._buffer)
        for index in range(self.slots):
            self._vectors[index].base = base + index * slot_size
            self._vectors[index].length = slot_size
            self._messages[index].header.iov = ctypes.pointer(self._vectors[index])
            self._messages[index].header.iovlen = 1
        self._messages_address = ctypes.addressof(self._messages)
        self._headers = memoryview(self._messages).cast("B")
        self._data = memoryview(self._buffer).cast("B")
        # Where each slot's msg_len lies in the mmsghdr array.
        stride = ctypes.sizeof(_MMsgHdr)
        self._length_offsets = [
            index * stride + _MMsgHdr.length.offset for index in range(self.slots)
        ]

    def receive(self) -> tuple[list[bytes], list[int]]:
        """The datagrams queued now, in order, and the sizes of any that did not fit.

        Raises :class:`BlockingIOError` when none is queued and
        :class:`OSError` (ENOBUFS among others) as ``recv`` would.  A
        datagram longer than a slot is lost (the kernel cut it); its full
        size is returned in the second list, and the slots grow to fit it.
        """
        count = self._recvmmsg(
            self._fd, self._messages_address, self.slots, MSG_DONTWAIT | socket.MSG_TRUNC, None
        )
        if count < 0:
            code = ctypes.get_errno()
            if code in (errno.EAGAIN, errno.EWOULDBLOCK):
                raise BlockingIOError(code, os.strerror(code))
            raise OSError(code, os.strerror(code))
        headers = self._headers
        data = self._data
        slot_size = self.slot_size
        unpack_length = _MSG_LEN.unpack_from
        datagrams = []
        oversized = []
        start = 0
        for offset in self._length_offsets[:count]:
            length = unpack_length(headers, offset)[0]
            if length <= slot_size:
                datagrams.append(data[start : start + length].tobytes())
            else:
                oversized.append(length)
            start += slot_size
        if oversized:
            self._resize(max(oversized))
        return datagrams, oversized


def _libc_recvmmsg() -> Callable[..., int] | None:
    try:
        function = ctypes.CDLL(None, use_errno=True).recvmmsg
    except (OSError, AttributeError):
        return None
    function.argtypes = [
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_void_p,
    ]
    function.restype = ctypes.c_int
    recvmmsg: Callable[..., int] = function
    return recvmmsg


def open_batch_receiver(fd: int, slot_size: int) -> BatchReceiver | None:
    """A :class:`BatchReceiver` on ``fd``, or None where libc has no recvmmsg."""
    function = _libc_recvmmsg()
    if function is None:
        return None
    return BatchReceiver(fd, slot_size, function)
