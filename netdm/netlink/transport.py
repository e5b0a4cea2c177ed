"""The netlink socket: the only module that imports pyroute2.

Strategy: pyroute2 opens the generic-netlink socket, resolves the ``NET_DM``
family and its multicast groups by name, and joins ``events``.  The hot path
(receiving tens of thousands of datagrams a second, sending a handful of
requests) then runs on a plain :class:`socket.socket` duplicated from the same
file descriptor: raw bytes in and out, decoded by :mod:`netdm.proto`.

Lost notifications are never silent: ``ENOBUFS`` from ``recv`` (the kernel
dropped messages because we read too slowly) is counted, and where
``/proc/net/netlink`` is readable the exact number of messages the kernel
dropped for this socket (its ``Drops`` column) is reported too.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from netdm.errors import FamilyNotFoundError, KernelRequestError, PermissionDeniedError
from netdm.proto.constants import EVENTS_GROUP, FAMILY_NAME

if TYPE_CHECKING:
    from netdm.netlink.batch_receive import BatchReceiver

SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
SO_RCVBUFFORCE = 33

# The largest packet alert is about 65.75 KB (a 65527-byte payload plus
# attributes); a smaller buffer would silently cut jumbo payloads.
RECEIVE_SIZE = 128 * 1024
# Room for bursts: at 20,000 small packet alerts a second this is ~0.5 s of backlog.
DEFAULT_RECEIVE_BUFFER = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class FamilyFeatures:
    """What the kernel told us about NET_DM when we resolved it."""

    family_id: int
    version: int | None
    maxattr: int | None
    ops: tuple[int, ...]
    mcast_groups: dict[str, int] = field(default_factory=dict)

    @property
    def has_packet_mode(self) -> bool:
        """5.4+ kernels list CONFIG_GET (6) among their ops."""
        return 6 in self.ops if self.ops else (self.maxattr or 0) >= 21


@dataclass(slots=True)
class SocketLosses:
    """Cumulative losses on the receiving side of one socket."""

    enobufs: int = 0  # recv() calls that failed with ENOBUFS
    oversized: int = 0  # messages longer than the batch slots: cut by the kernel, lost
    kernel_drops: int | None = None  # /proc/net/netlink Drops column, when readable


def receive_one_at_a_time(
    receive: Callable[[float | None], bytes | None], timeout: float | None, limit: int
) -> list[bytes]:
    """``receive_many`` without batches: ``receive(timeout)``, then what is queued, to ``limit``."""
    datagrams = []
    datagram = receive(timeout)
    while datagram is not None:
        datagrams.append(datagram)
        datagram = receive(0) if len(datagrams) < limit else None
    return datagrams


class NetlinkTransport:
    """A generic-netlink socket bound to the NET_DM family.

    ``receive_buffer`` is the socket's SO_RCVBUF; as root it is forced past
    ``net.core.rmem_max`` with SO_RCVBUFFORCE.
    """

    def __init__(self, receive_buffer: int = DEFAULT_RECEIVE_BUFFER) -> None:
        # Imported here so that `netdm --help` and capture replay never pay for pyroute2.
        from pyroute2.netlink import genlmsg
        from pyroute2.netlink.exceptions import NetlinkError
        from pyroute2.netlink.generic import GenericNetlinkSocket

        self._netlink_error = NetlinkError
        self._pyroute2_socket = GenericNetlinkSocket()
        try:
            self.features = self._resolve(genlmsg)
        except BaseException:
            self._pyroute2_socket.close()
            raise
        self._socket = socket.socket(fileno=os.dup(self._pyroute2_socket.fileno()))
        self._socket.setblocking(False)
        self._set_receive_buffer(receive_buffer)
        for option in (NETLINK_EXT_ACK, NETLINK_CAP_ACK):
            # Kernels before 4.12 have no extended acks; errors still arrive without them.
            with contextlib.suppress(OSError):
                self._socket.setsockopt(SOL_NETLINK, option, 1)
        self.port_id: int = self._socket.getsockname()[0]
        self.losses = SocketLosses()
        self._buffer = bytearray(RECEIVE_SIZE)
        self._batch_receiver: BatchReceiver | None = None

    def _resolve(self, genlmsg: type) -> FamilyFeatures:
        sock = self._pyroute2_socket
        try:
            sock.bind(FAMILY_NAME, genlmsg)
            description = sock.discovery(FAMILY_NAME)
        except self._netlink_error as error:
            if error.code == errno.ENOENT:
                raise FamilyNotFoundError(
                    "the kernel has no NET_DM generic-netlink family"
                ) from None
            raise KernelRequestError(
                f"resolving the NET_DM family failed: {os.strerror(error.code)}", error.code
            ) from None
        ops = tuple(
            op.get_attr("CTRL_ATTR_OP_ID") for op in description.get_attr("CTRL_ATTR_OPS") or ()
        )
        return FamilyFeatures(
            family_id=int(sock.prid),
            version=description.get_attr("CTRL_ATTR_VERSION"),
            maxattr=description.get_attr("CTRL_ATTR_MAXATTR"),
            ops=tuple(int(op) for op in ops if op is not None),
            mcast_groups=dict(sock.mcast_groups),
        )

    def _set_receive_buffer(self, size: int) -> None:
        try:
            self._socket.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
        except PermissionError:
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)

    @property
    def family_id(self) -> int:
        return self.features.family_id

    @property
    def receive_buffer(self) -> int:
        """The socket's receive buffer as the kernel granted it."""
        return int(self._socket.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))

    def join_events(self) -> None:
        """Join the ``events`` multicast group, where alerts arrive."""
        group = self.features.mcast_groups.get(EVENTS_GROUP)
        if group is None:
            raise KernelRequestError(
                "the NET_DM family has no 'events' multicast group", errno.ENOENT
            )
        try:
            self._socket.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)
        except PermissionError:
            raise PermissionDeniedError(
                "joining the NET_DM 'events' group was refused: this kernel requires "
                "CAP_SYS_ADMIN for it (6.7+, and stable kernels with the change, "
                "Debian's 6.1 among them); run netdm as root"
            ) from None

    def fileno(self) -> int:
        return self._socket.fileno()

    def send(self, data: bytes) -> None:
        """Send one request to the kernel."""
        self._socket.sendto(data, (0, 0))

    def receive(self, timeout: float | None) -> bytes | None:
        """One datagram, or ``None`` when ``timeout`` seconds passed or messages were lost.

        A datagram already queued is returned at once (no ``select`` first: in a
        storm there nearly always is one); ``timeout`` 0 or None never waits.
        Lost messages (ENOBUFS) are counted in :attr:`losses`, never raised.
        """
        try:
            return self._receive_queued()
        except BlockingIOError:
            if not timeout or timeout <= 0:
                return None
        ready, _, _ = select.select([self._socket], [], [], timeout)
        if not ready:
            return None
        try:
            return self._receive_queued()
        except BlockingIOError:
            return None

    def enable_batches(self, largest_message: int) -> bool:
        """Receive many datagrams per system call (recvmmsg) from now on.

        ``largest_message`` is the longest message the kernel may send this
        socket (see :func:`netdm.netlink.batch_receive.packet_alert_slot_size`).
        False where libc has no recvmmsg: :meth:`receive_many` then takes one
        datagram per call, as before.
        """
        from netdm.netlink.batch_receive import open_batch_receiver

        self._batch_receiver = open_batch_receiver(self._socket.fileno(), largest_message)
        return self._batch_receiver is not None

    def receive_many(self, timeout: float | None, limit: int) -> list[bytes]:
        """The datagrams queued now (up to about ``limit``), waiting up to ``timeout`` for one.

        An empty list when ``timeout`` passed or messages were lost (counted
        in :attr:`losses`, never raised).  With batches enabled one system
        call takes them all; otherwise one :meth:`receive` per datagram.
        """
        receiver = self._batch_receiver
        if receiver is None:
            return receive_one_at_a_time(self.receive, timeout, limit)
        for attempt in range(2):
            try:
                datagrams, oversized = receiver.receive()
            except BlockingIOError:
                if attempt or not timeout or timeout <= 0:
                    return []
                ready, _, _ = select.select([self._socket], [], [], timeout)
                if not ready:
                    return []
                continue
            except OSError as error:
                if error.errno == errno.ENOBUFS:
                    self.losses.enobufs += 1
                    return []
                raise
            self.losses.oversized += len(oversized)
            return datagrams
        return []

    def _receive_queued(self) -> bytes | None:
        """The next queued datagram; BlockingIOError when there is none."""
        try:
            # With MSG_TRUNC a netlink socket reports the message's full length.
            size, _ancillary, _flags, _address = self._socket.recvmsg_into(
                [self._buffer], 0, socket.MSG_TRUNC
            )
        except OSError as error:
            if error.errno == errno.ENOBUFS:
                self.losses.enobufs += 1
                return None
            raise
        if size > len(self._buffer):
            # Never happens with NET_DM's 66 KB maximum; grow and report rather than cut.
            self._buffer = bytearray(size)
            raise KernelRequestError(
                f"a {size}-byte netlink message did not fit the receive buffer", errno.EMSGSIZE
            )
        return bytes(memoryview(self._buffer)[:size])  # one copy, not two

    def read_kernel_drops(self) -> int | None:
        """This socket's ``Drops`` counter from /proc/net/netlink, if readable."""
        try:
            with open("/proc/net/netlink", encoding="ascii") as table:
                next(table, None)
                for line in table:
                    columns = line.split()
                    generic = len(columns) >= 10 and columns[1] == "16"
                    if generic and int(columns[2]) == self.port_id:
                        self.losses.kernel_drops = int(columns[8])
                        return self.losses.kernel_drops
        except (OSError, ValueError):
            pass
        return None

    def close(self) -> None:
        self._socket.close()
        self._pyroute2_socket.close()

    def __enter__(self) -> NetlinkTransport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
