"""The second drop source: the kernel's ``skb:kfree_skb`` tracepoint, read through tracefs.

Kernels built without ``CONFIG_NET_DROP_MONITOR`` (many cloud and container
kernels) still have the tracepoint the drop monitor itself hooks.  netdm
reads its binary records from a tracefs instance of its own and feeds them to
the same aggregation and output as NET_DM alerts.

Layers, as for NET_DM:

* :mod:`netdm.tracepoint.format`: the event's ``format`` file and the ring
  buffer's ``header_page``, text → layouts (pure);
* :mod:`netdm.tracepoint.ringbuffer`: ring-buffer pages → event records, and
  records → drop sites (pure, bytes in; construct definitions beside a fast
  path, proven equal by property tests);
* :mod:`netdm.tracepoint.tracefs`: the tracefs instance (the only I/O);
* :mod:`netdm.engine.tracepoint_monitor`: the live loop and the replay of a
  tracepoint capture, through :class:`netdm.engine.session.Pipeline`.
"""
