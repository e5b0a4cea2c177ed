"""Which kernel source a live run reads: NET_DM, or the skb:kfree_skb tracepoint.

Strategy: ``--source auto`` tries NET_DM and falls back to the tracepoint only
when the family is missing and nothing was asked for that only NET_DM does.
The decision and its sentences live here, so `watch` and `exporter` cannot
decide differently; so does the run itself, with its optional ``-w``
recording, and a replay of either source's captures.  Output stays with the
caller, told through ``on_started`` which source started.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from netdm import __version__
from netdm.errors import FamilyNotFoundError

if TYPE_CHECKING:
    from netdm.capture import CaptureWriter
    from netdm.engine.session import PipelineFactory, ReplayResult, RunTotals, WatchSettings
    from netdm.engine.symbols import SymbolTable
    from netdm.engine.tracepoint_monitor import TracepointRecorder

APPLICATION = f"netdm {__version__}"  # what a recording says wrote it


@dataclass(frozen=True, slots=True)
class StartedSource:
    """The source a live run started with; ``net_dm_missing`` says why auto fell back."""

    kind: Literal["netdm", "tracepoint"]
    net_dm_missing: str | None = None


@dataclass(frozen=True, slots=True)
class Recording:
    """``-w path``: the run recorded as pcapng, or classic pcap (NET_DM only).

    ``path`` (and a classic pcap's ``path.symbols``) is created or truncated
    only once monitoring has started: a run that fails before leaves them as
    they were (see :mod:`netdm.capture.output_files`).
    """

    path: str
    pcap: bool = False


def tracepoint_instead(
    source: str, missing: FamilyNotFoundError, net_dm_only: Sequence[str] = ()
) -> str:
    """Why the tracepoint replaces a missing NET_DM; raises when it may not.

    ``net_dm_only`` are the options given that the tracepoint cannot honour:
    with any of them, falling back would quietly drop what was asked for.
    """
    if source != "auto":
        raise missing
    if net_dm_only:
        raise FamilyNotFoundError(
            f"{missing} ({', '.join(net_dm_only)} need NET_DM; without them netdm would "
            "fall back to the skb:kfree_skb tracepoint)"
        ) from None
    return str(missing)


def run_live(
    source: str,
    settings: WatchSettings,
    new_pipeline: PipelineFactory,
    on_started: Callable[[StartedSource], None],
    *,
    recording: Recording | None = None,
    symbols: SymbolTable | None = None,
    net_dm_only: Sequence[str] = (),
) -> RunTotals:
    """Monitor the running kernel through ``source`` (auto: NET_DM, else the tracepoint)."""
    if source == "tracepoint":
        return run_tracepoint(
            settings, new_pipeline, on_started, recording=recording, symbols=symbols
        )
    try:
        return run_net_dm(
            settings,
            new_pipeline,
            lambda: on_started(StartedSource("netdm")),
            recording=recording,
            symbols=symbols,
        )
    except FamilyNotFoundError as error:
        missing = tracepoint_instead(source, error, net_dm_only)
    return run_tracepoint(
        settings,
        new_pipeline,
        on_started,
        recording=recording,
        symbols=symbols,
        net_dm_missing=missing,
    )


def run_net_dm(
    settings: WatchSettings,
    new_pipeline: PipelineFactory,
    on_started: Callable[[], None],
    *,
    recording: Recording | None = None,
    symbols: SymbolTable | None = None,
) -> RunTotals:
    """The NET_DM life cycle (:class:`LiveMonitor`); ``symbols`` go into the recording."""
    from netdm.engine.session import LiveMonitor

    if recording is None:
        return LiveMonitor(settings, new_pipeline, on_started=on_started).run()
    from netdm.capture import CaptureWriter

    with CaptureWriter.open(
        recording.path,
        format="pcap" if recording.pcap else "pcapng",
        kernel_release=os.uname().release,
        hostname=socket.gethostname(),
        application=APPLICATION,
        deferred=True,
    ) as writer:

        def started() -> None:
            writer.start_file()  # only now may the file be created or truncated
            on_started()

        monitor = LiveMonitor(
            settings, new_pipeline, on_started=started, recorder=writer, symbols=symbols
        )
        return monitor.run()


def run_tracepoint(
    settings: WatchSettings,
    new_pipeline: PipelineFactory,
    on_started: Callable[[StartedSource], None],
    *,
    recording: Recording | None = None,
    symbols: SymbolTable | None = None,
    net_dm_missing: str | None = None,
) -> RunTotals:
    """The tracepoint life cycle; with ``net_dm_missing``, no tracepoint means no source."""
    from netdm.engine.tracepoint_monitor import TracepointMonitor
    from netdm.tracepoint.tracefs import TracepointUnavailableError

    opened: list[CaptureWriter] = []

    def started() -> None:
        for writer in opened:
            writer.start_file()  # only now may the file be created or truncated
        on_started(StartedSource("tracepoint", net_dm_missing))

    open_recorder = None
    if recording is not None:
        from netdm.capture import CaptureWriter

        path = recording.path

        def open_recorder(event_format: str) -> TracepointRecorder:
            writer = CaptureWriter.open(
                path,
                kernel_release=os.uname().release,
                hostname=socket.gethostname(),
                application=APPLICATION,
                tracepoint_format=event_format,
                deferred=True,
            )
            opened.append(writer)
            return writer

    monitor = TracepointMonitor(
        settings, new_pipeline, started, open_recorder=open_recorder, symbols=symbols
    )
    try:
        return monitor.run()
    except TracepointUnavailableError as error:
        if net_dm_missing is None:
            raise
        raise TracepointUnavailableError(
            f"no drop source here: {net_dm_missing}; and {error}"
        ) from None


def replay(
    path: str,
    new_pipeline: PipelineFactory,
    *,
    keep_going: bool,
    family_id: int | None,
    on_started: Callable[[], None] | None = None,
) -> ReplayResult:
    """Replay a capture of either source: a tracepoint recording, else NET_DM messages.

    ``on_started`` is called once the capture was opened and recognised:
    the replay has started, and outputs may be created.
    """
    from netdm.capture import read_capture
    from netdm.capture.read import capture_tracepoint_format
    from netdm.engine.session import replay_capture

    with read_capture(path, keep_going=keep_going) as reader:
        if on_started is not None:
            on_started()
        if capture_tracepoint_format(reader.info) is not None:
            from netdm.engine.tracepoint_monitor import replay_tracepoint_capture

            return replay_tracepoint_capture(reader, new_pipeline)
    return replay_capture(
        lambda: read_capture(path, keep_going=keep_going), new_pipeline, family_id=family_id
    )
