"""What a user reads: text, JSON lines, packet lines and Prometheus metrics.

Strategy: every output consumes what :mod:`netdm.engine` produces (closed
interval summaries and packet alerts) and nothing else; none of it talks to
the kernel or reads a capture.  Every string that came from outside (kernel
symbols, interface names, reasons, payloads) is escaped here, through
:mod:`netdm.textsafe`, before it reaches a terminal.

* :mod:`netdm.output.render`: dropwatch-style summaries and JSON lines.
* :mod:`netdm.output.packets`: one line or JSON object per dropped packet,
  client-side packet filters, the dropped packets as a pcap.
* :mod:`netdm.output.exporter`: interval summaries as Prometheus metrics.
"""
