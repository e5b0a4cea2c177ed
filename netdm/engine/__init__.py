"""The engine: from a source's bytes to interval summaries and packets.

Strategy: both sources (NET_DM alerts from :mod:`netdm.netlink`, tracepoint
records from :mod:`netdm.tracepoint`) and every replayed capture end in the
same :class:`~netdm.engine.session.Pipeline`, which decodes, aggregates into
windows and hands closed windows to a sink.  Nothing here prints or formats:
:mod:`netdm.output` does.  Aggregation never reads the clock; the run loops
pass the time each datagram was received.

* :mod:`netdm.engine.session`: the pipeline, the live NET_DM monitor and the
  replay of a capture.
* :mod:`netdm.engine.tracepoint_monitor`: the same for the tracepoint source.
* :mod:`netdm.engine.aggregate`: alerts into fixed windows keyed by drop site.
* :mod:`netdm.engine.symbols`: kernel addresses to ``symbol+offset [module]``.
* :mod:`netdm.engine.headers`: the headers inside a dropped packet's payload,
  decoded with layouts derived from :mod:`netdm.engine.header_definitions`
  (construct) into :mod:`netdm.engine.header_names`' ``PacketHeaders``.
* :mod:`netdm.engine.packet_site`, :mod:`netdm.engine.packet_filter`: a
  dropped packet's site and interface, and which packets to show.
"""
