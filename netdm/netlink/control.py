"""Requests to the kernel's drop monitor and their answers.

Strategy: one request at a time (the kernel serialises NET_DM commands under
a mutex anyway).  Each request is built by :mod:`netdm.proto.encode`, sent on a
socket that never joined ``events`` (so no alert can arrive in between), and
answered by a reply and/or an ack carrying the request's sequence number.
Errno values become the sentences of :mod:`netdm.errors` here, where we still
know which request failed and on which kernel.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from netdm.errors import (
    AlreadyRunningError,
    BusyError,
    KernelRequestError,
    PermissionDeniedError,
)
from netdm.proto import decode_datagram, encode
from netdm.proto.constants import AlertMode, Cmd
from netdm.proto.events import Ack, ConfigReply, ErrorReply, Event, FamilyInfo, StatsReply

REPLY_TIMEOUT = 5.0

# Callback for recording the exchange into a capture: (sent_by_us, datagram).
MessageObserver = Callable[[bool, bytes], None]


class Channel(Protocol):
    """What :class:`KernelControl` needs from a transport (a test can fake it)."""

    @property
    def family_id(self) -> int: ...

    def send(self, data: bytes) -> None: ...

    def receive(self, timeout: float | None) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class KernelConfig:
    """The drop monitor's global configuration (CONFIG_GET / CONFIG)."""

    alert_mode: AlertMode
    trunc_len: int
    queue_len: int


@dataclass(frozen=True, slots=True)
class KernelStats:
    """Cumulative per-CPU queue tail drops since the module was loaded."""

    sw_dropped: int
    hw_dropped: int


_COMMAND_WORDS = {
    Cmd.UNSPEC: "describe the NET_DM family",  # an nlctrl GETFAMILY, not a NET_DM command
    Cmd.CONFIG: "configure the drop monitor",
    Cmd.START: "start drop monitoring",
    Cmd.STOP: "stop drop monitoring",
    Cmd.CONFIG_GET: "read the drop monitor's configuration",
    Cmd.STATS_GET: "read the drop monitor's statistics",
}


class KernelControl:
    """Sends NET_DM requests over ``channel`` and waits for their answers."""

    def __init__(self, channel: Channel, observer: MessageObserver | None = None) -> None:
        self._channel = channel
        self._observer = observer
        self._seq = int(time.time()) & 0xFFFF  # any start works; distinct runs are easier to read
        self.warnings: list[str] = []  # extended-ack warnings that came with successful acks

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        return self._seq

    def _exchange(self, cmd: Cmd, request: bytes, seq: int) -> list[Event]:
        """Send ``request``; return the events answering it, the final Ack included.

        Raises the matching :class:`netdm.errors.NetdmError` on an error reply.
        """
        self._channel.send(request)
        if self._observer:
            self._observer(True, request)
        answers: list[Event] = []
        deadline = time.monotonic() + REPLY_TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise KernelRequestError(
                    f"the kernel did not answer the request to {_COMMAND_WORDS[cmd]} "
                    f"within {REPLY_TIMEOUT:.0f} s",
                    errno.ETIMEDOUT,
                )
            datagram = self._channel.receive(remaining)
            if datagram is None:
                continue
            if self._observer:
                self._observer(False, datagram)
            for event in decode_datagram(datagram, self._channel.family_id):
                if getattr(event, "seq", None) != seq:
                    continue
                if isinstance(event, ErrorReply):
                    raise _error_for(cmd, event)
                answers.append(event)
                if isinstance(event, Ack):
                    if event.message:
                        self.warnings.append(event.message)
                    return answers

    def describe_family(self, name: str) -> FamilyInfo:
        """Ask nlctrl for ``name``'s id, version, ops and groups (recorded first in captures)."""
        seq = self._next_seq()
        answers = self._exchange(Cmd.UNSPEC, encode.build_getfamily(name, seq), seq)
        for answer in answers:
            if isinstance(answer, FamilyInfo):
                return answer
        raise KernelRequestError(f"nlctrl acknowledged GETFAMILY {name} without a reply", 0)

    def get_config(self) -> KernelConfig | None:
        """The current configuration, or ``None`` on kernels before 5.4 (no CONFIG_GET)."""
        seq = self._next_seq()
        try:
            answers = self._exchange(
                Cmd.CONFIG_GET, encode.build_config_get(self._channel.family_id, seq), seq
            )
        except KernelRequestError as error:
            if error.errno in (errno.EOPNOTSUPP, 524):  # 524: the kernel's ENOTSUPP
                return None
            raise
        for answer in answers:
            if isinstance(answer, ConfigReply):
                return KernelConfig(
                    alert_mode=AlertMode(answer.alert_mode or 0),
                    trunc_len=answer.trunc_len or 0,
                    queue_len=answer.queue_len or 0,
                )
        raise KernelRequestError("the kernel acknowledged CONFIG_GET without a configuration", 0)

    def set_config(
        self,
        *,
        alert_mode: AlertMode | None = None,
        trunc_len: int | None = None,
        queue_len: int | None = None,
    ) -> None:
        """Change the given settings; the others keep their value."""
        seq = self._next_seq()
        request = encode.build_config(
            self._channel.family_id,
            seq,
            alert_mode=None if alert_mode is None else int(alert_mode),
            trunc_len=trunc_len,
            queue_len=queue_len,
        )
        self._exchange(Cmd.CONFIG, request, seq)

    def start(self, *, sw: bool = True, hw: bool = False) -> None:
        """Start monitoring software and/or hardware drops."""
        seq = self._next_seq()
        request = encode.build_start(self._channel.family_id, seq, sw=sw, hw=hw)
        self._exchange(Cmd.START, request, seq)

    def stop(self, *, sw: bool = True, hw: bool = False) -> None:
        """Stop monitoring; succeeds when it was already stopped."""
        seq = self._next_seq()
        request = encode.build_stop(self._channel.family_id, seq, sw=sw, hw=hw)
        # Kernels before 5.4 answer EAGAIN to STOP when already stopped.
        with contextlib.suppress(AlreadyRunningError):
            self._exchange(Cmd.STOP, request, seq)

    def get_stats(self) -> KernelStats | None:
        """Cumulative tail drops, or ``None`` on kernels before 5.4."""
        seq = self._next_seq()
        try:
            answers = self._exchange(
                Cmd.STATS_GET, encode.build_stats_get(self._channel.family_id, seq), seq
            )
        except KernelRequestError as error:
            if error.errno in (errno.EOPNOTSUPP, 524):
                return None
            raise
        for answer in answers:
            if isinstance(answer, StatsReply):
                return KernelStats(answer.sw_dropped or 0, answer.hw_dropped or 0)
        raise KernelRequestError("the kernel acknowledged STATS_GET without statistics", 0)


def _error_for(cmd: Cmd, reply: ErrorReply) -> Exception:
    """The one sentence a person needs for ``reply`` to the request ``cmd``."""
    detail = f" (the kernel said: {reply.message})" if reply.message else ""
    what = _COMMAND_WORDS.get(cmd, f"run NET_DM command {int(cmd)}")
    if reply.errno == errno.EPERM:
        if cmd == Cmd.CONFIG:
            needed = "CAP_NET_ADMIN"
        else:
            needed = "CAP_NET_ADMIN (kernels 6.7+ and stable kernels with that change)"
        return PermissionDeniedError(
            f"not permitted to {what}: this needs {needed}; run netdm as root{detail}"
        )
    if reply.errno == errno.EAGAIN and cmd == Cmd.START:
        return AlreadyRunningError(
            "drop monitoring is already running (another dropwatch or netdm?): "
            "use 'netdm watch --passive' to listen to it without taking control, "
            f"or 'netdm stop' if the tool that started it is gone{detail}"
        )
    if reply.errno == errno.EAGAIN and cmd == Cmd.STOP:
        return AlreadyRunningError(f"drop monitoring was not running{detail}")
    if reply.errno == errno.EBUSY and cmd == Cmd.CONFIG:
        return BusyError(
            "the drop monitor cannot be configured while monitoring is on "
            "(another tool is monitoring): use 'netdm watch --passive' to listen, "
            f"or 'netdm stop' if the tool that started it is gone{detail}"
        )
    return KernelRequestError(
        f"the kernel refused to {what}: {os.strerror(reply.errno)}{detail}", reply.errno
    )
