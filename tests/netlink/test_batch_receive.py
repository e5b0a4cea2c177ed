"""recvmmsg through ctypes: every datagram, in order, whole or reported as cut.

The receiver is socket-agnostic, so these tests use a local datagram
socketpair (AF_UNIX keeps message boundaries and honours MSG_TRUNC like
netlink); the kernel tests exercise it on the real NET_DM socket.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netdm.netlink.batch_receive import (
    MAX_SLOTS,
    PACKET_ALERT_OVERHEAD,
    SLOTS_BUDGET,
    BatchReceiver,
    open_batch_receiver,
    packet_alert_slot_size,
)
from netdm.netlink.transport import NetlinkTransport, SocketLosses
from netdm.proto.encode import build_packet_alert
from netdm.proto.events import InPort, PacketAlert, RawAttribute


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    sender, receiver = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    receiver.setblocking(False)
    with sender, receiver:
        yield sender, receiver


def _batch_receiver(sock: socket.socket, slot_size: int) -> BatchReceiver:
    batch_receiver = open_batch_receiver(sock.fileno(), slot_size)
    if batch_receiver is None:
        pytest.skip("this libc has no recvmmsg")
    return batch_receiver


def _drain(batch_receiver: BatchReceiver) -> tuple[list[list[bytes]], list[int]]:
    batches: list[list[bytes]] = []
    oversized: list[int] = []
    while True:
        try:
            datagrams, cut = batch_receiver.receive()
        except BlockingIOError:
            return batches, oversized
        batches.append(datagrams)
        oversized.extend(cut)


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=600), max_size=700),
    slot_size=st.sampled_from([600, 4160, 65536]),
)
def test_every_datagram_arrives_whole_and_in_order(sizes: list[int], slot_size: int) -> None:
    sender, sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with sender, sock:
        sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
        sock.setblocking(False)
        batch_receiver = _batch_receiver(sock, slot_size)
        sent = [bytes([index % 251]) * size for index, size in enumerate(sizes)]
        half = len(sent) // 2
        for datagram in sent[:half]:
            sender.send(datagram)
        batches, oversized = _drain(batch_receiver)  # a drained socket, then more
        for datagram in sent[half:]:
            sender.send(datagram)
        more_batches, more_oversized = _drain(batch_receiver)
        batches += more_batches
        assert [datagram for batch in batches for datagram in batch] == sent
        assert oversized + more_oversized == []
        assert all(len(batch) <= batch_receiver.slots for batch in batches)


def test_nothing_queued_is_blocking_io_error(pair: tuple[socket.socket, socket.socket]) -> None:
    _, sock = pair
    with pytest.raises(BlockingIOError):
        _batch_receiver(sock, 4096).receive()


def test_a_datagram_longer_than_its_slot_is_reported_and_the_slots_grow(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    sender, sock = pair
    batch_receiver = _batch_receiver(sock, 4096)
    for datagram in (b"a" * 100, b"b" * 10_000, b"c" * 4096):
        sender.send(datagram)
    datagrams, oversized = batch_receiver.receive()
    assert datagrams == [b"a" * 100, b"c" * 4096]  # the cut one is not passed on as whole
    assert oversized == [10_000]
    assert batch_receiver.slot_size == 10_000
    sender.send(b"d" * 10_000)
    assert batch_receiver.receive() == ([b"d" * 10_000], [])


def test_slots_fill_the_budget() -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    with sock:
        assert _batch_receiver(sock, 4160).slots == SLOTS_BUDGET // 4160
        assert _batch_receiver(sock, 128 * 1024).slots == 8
        assert _batch_receiver(sock, 100).slots == MAX_SLOTS
        assert _batch_receiver(sock, 4 * SLOTS_BUDGET).slots == 1


def test_the_largest_packet_alert_fits_its_slot() -> None:
    """Every attribute a packet alert can carry, each as long as the kernel makes it."""
    trunc_len = 64
    alert = PacketAlert(
        origin=1,
        pc=2**64 - 1,
        symbol="s" * 40,  # NET_DM_MAX_SYMBOL_LEN
        reason="SKB_DROP_REASON_" + "R" * 48,
        in_port=InPort(ifindex=2**32 - 1, name="n" * 15),
        timestamp_ns=2**64 - 1,
        proto=0xFFFF,
        payload=b"\xff" * trunc_len,
        orig_len=2**32 - 1,
        hw_trap_group_name="g" * 64,
        hw_trap_name="t" * 64,
        flow_action_cookie=b"c" * 16,  # TC_COOKIE_MAX_SIZE
        unknown_attributes=(RawAttribute(40, b"u" * 256),),  # room for what comes next
    )
    message = build_packet_alert(0x1C, alert, pad_u64=True)
    slot_size = packet_alert_slot_size(trunc_len)
    assert slot_size is not None
    assert len(message) <= slot_size
    assert len(message) - trunc_len < PACKET_ALERT_OVERHEAD // 4
    assert packet_alert_slot_size(0) is None  # uncut payloads: no bound, no batches


def _transport_on(sock: socket.socket) -> NetlinkTransport:
    """A NetlinkTransport whose socket is ``sock`` (no pyroute2, no NET_DM needed)."""
    transport = NetlinkTransport.__new__(NetlinkTransport)
    transport._socket = sock
    transport.losses = SocketLosses()
    transport._buffer = bytearray(128 * 1024)
    transport._batch_receiver = None
    return transport


@pytest.mark.parametrize("batches", [False, True])
def test_receive_many_takes_what_is_queued(
    pair: tuple[socket.socket, socket.socket], batches: bool
) -> None:
    sender, sock = pair
    transport = _transport_on(sock)
    if batches and not transport.enable_batches(4160):
        pytest.skip("this libc has no recvmmsg")
    assert transport.receive_many(0.01, limit=256) == []
    sent = [bytes([index]) * (20 + index) for index in range(200)]
    for datagram in sent:
        sender.send(datagram)
    received = transport.receive_many(0.5, limit=256)
    assert received == sent
    assert transport.receive_many(0, limit=256) == []
    sender.send(b"x" * 5000)
    assert transport.receive_many(0.5, limit=256) == ([] if batches else [b"x" * 5000])
    assert transport.losses.oversized == (1 if batches else 0)
