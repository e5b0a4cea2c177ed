"""The engine: from a source's bytes to interval summaries and packets.

Strategy: both sources (NET_DM alerts from :mod:`netdm.netlink`, tracepoint
records from :mod:`netdm.tracepoint`) and every replayed capture end in the
same :class:`~netdm.engine.pipeline.Pipeline`, which decodes, aggregates into
windows and hands closed windows to a sink.  Nothing here prints or formats:
:mod:`netdm.output` does.  Aggregation never reads the clock; the run loops
pass the time each datagram was received.

* :mod:`netdm.engine.pipeline`: decode → aggregate → sink, given a decoder.
* :mod:`netdm.engine.replay`: a NET_DM capture through the pipeline.
* :mod:`netdm.engine.run_loop`: the one run loop of both live sources (stop
  requests, deadline, ticks, the final drain) on an injectable clock.
* :mod:`netdm.engine.live_monitor`: the live NET_DM monitor.
* :mod:`netdm.engine.session`: the names above, in one place for callers.
* :mod:`netdm.engine.tracepoint_monitor`: the live loop and the replay of the
  tracepoint source.
* :mod:`netdm.engine.aggregate`: alerts into fixed windows keyed by drop site.
* :mod:`netdm.engine.symbols`: kernel addresses to ``symbol+offset [module]``.
* :mod:`netdm.engine.headers`: the headers inside a dropped packet's payload,
  decoded with layouts derived from :mod:`netdm.engine.header_definitions`
  (construct) into :mod:`netdm.engine.header_names`' ``PacketHeaders``.
* :mod:`netdm.engine.packet_site`, :mod:`netdm.engine.packet_filter`: a
  dropped packet's site and interface, and which packets to show.
"""
