"""Errors netdm reports to a person: one sentence each, with a distinct exit code.

Strategy: the layers below raise these (a :class:`netdm.proto.ProtocolError`
is counted by the pipeline, or becomes a :class:`BadInputError` in a replay);
the CLI prints ``Error: <sentence>`` and exits with
``exit_code``.  No traceback for anything listed here.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes, documented in ``netdm --help`` and docs/user-guide.md."""

    OK = 0
    ERROR = 1  # anything else netdm understood but could not do
    USAGE = 2  # click's own code for bad options
    NO_FAMILY = 3  # the NET_DM family is not available here
    PERMISSION = 4  # a capability is missing
    ALREADY_RUNNING = 5  # START answered EAGAIN: another monitor runs
    BUSY = 6  # CONFIG answered EBUSY: monitoring is on
    KERNEL = 7  # the kernel refused a request for another reason
    BAD_INPUT = 8  # a capture or message could not be decoded


class NetdmError(Exception):
    """Base class: ``str(error)`` is the sentence shown to the user."""

    exit_code: ExitCode = ExitCode.ERROR


class FamilyNotFoundError(NetdmError):
    """The NET_DM generic-netlink family does not resolve."""

    exit_code = ExitCode.NO_FAMILY


class PermissionDeniedError(NetdmError):
    """The kernel answered EPERM; the sentence names the missing capability."""

    exit_code = ExitCode.PERMISSION


class AlreadyRunningError(NetdmError):
    """START answered EAGAIN: drop monitoring is already on."""

    exit_code = ExitCode.ALREADY_RUNNING


class BusyError(NetdmError):
    """CONFIG answered EBUSY: the configuration cannot change while monitoring."""

    exit_code = ExitCode.BUSY


class KernelRequestError(NetdmError):
    """The kernel refused a request with another errno."""

    exit_code = ExitCode.KERNEL

    def __init__(self, message: str, errno: int) -> None:
        super().__init__(message)
        self.errno = errno


class BadInputError(NetdmError):
    """A message or capture file could not be decoded."""

    exit_code = ExitCode.BAD_INPUT
