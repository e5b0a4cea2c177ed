"""What a user reads: text, JSON lines, packet lines and Prometheus metrics.

Strategy: every output consumes what :mod:`netdm.engine` produces (closed
interval summaries and packet alerts) and nothing else; none of it talks to
the kernel or reads a capture.  Every string that came from outside (kernel
symbols, interface names, reasons, payloads) is escaped here, through
:mod:`netdm.textsafe`, before it reaches a terminal.

* :mod:`netdm.output.render`: dropwatch-style summaries and JSON lines.
* :mod:`netdm.output.packet_line`, :mod:`netdm.output.packet_verbose`,
  :mod:`netdm.output.packet_json` (with :mod:`netdm.output.packet_json_headers`):
  one line, a verbose block or one JSON object per dropped packet;
  :mod:`netdm.output.packet_printer` prints them; :mod:`netdm.output.packets`
  gathers their names.
* :mod:`netdm.output.exporter`: interval summaries as Prometheus metrics.
"""
