"""A monitoring session: a source of datagrams → decode → aggregate → render.

Strategy: the session is split into rooms of one job, and this module keeps
their public names in one place for the callers that import them from here:

* :mod:`netdm.engine.pipeline`: :class:`Pipeline`, the one path every datagram
  takes (live or replayed), told the time by its caller and the bytes'
  meaning by a decoder (:class:`NetDmDecoder`).
* :mod:`netdm.engine.replay`: :func:`replay_capture` of a NET_DM capture, on
  its own clock, and :func:`find_family_id`.
* :mod:`netdm.engine.run_loop`: the one run loop both live sources use
  (stop requests and signals, deadline and count, ticks, the final drain).
* :mod:`netdm.engine.live_monitor`: :class:`LiveMonitor`, the kernel's drop
  monitor saved, started, received from, stopped and restored.
"""

from __future__ import annotations

from netdm.engine.live_monitor import (
    KERNEL_BATCH_GRACE,
    MAX_WAIT,
    RECEIVE_BATCH,
    SOCKET_DROPS_MIN_GAP,
    STATS_POLL_SECONDS,
    STORM_PAUSE,
    EventsSource,
    LiveMonitor,
    TransportFactory,
    open_netlink_transport,
)
from netdm.engine.pipeline import (
    END_EPSILON_NS,
    NS_PER_SECOND,
    DatagramDecoder,
    NetDmDecoder,
    Pipeline,
    PipelineFactory,
    RunTotals,
    seconds,
    within_run,
)
from netdm.engine.replay import (
    ReplayResult,
    find_family_id,
    replay_capture,
)
from netdm.engine.run_loop import (
    RECORD_FLUSH_SECONDS,
    CaptureSymbols,
    Recorder,
    RecordingFlush,
    RunClock,
    RunLoop,
    StopRequest,
    WatchSettings,
    stop_on_signals,
)

__all__ = [
    "END_EPSILON_NS",
    "KERNEL_BATCH_GRACE",
    "MAX_WAIT",
    "NS_PER_SECOND",
    "RECEIVE_BATCH",
    "RECORD_FLUSH_SECONDS",
    "SOCKET_DROPS_MIN_GAP",
    "STATS_POLL_SECONDS",
    "STORM_PAUSE",
    "CaptureSymbols",
    "DatagramDecoder",
    "EventsSource",
    "LiveMonitor",
    "NetDmDecoder",
    "Pipeline",
    "PipelineFactory",
    "Recorder",
    "RecordingFlush",
    "ReplayResult",
    "RunClock",
    "RunLoop",
    "RunTotals",
    "StopRequest",
    "TransportFactory",
    "WatchSettings",
    "find_family_id",
    "open_netlink_transport",
    "replay_capture",
    "seconds",
    "stop_on_signals",
    "within_run",
]
