"""The command line: click commands that parse options and call the library.

Strategy: a thin layer at the top; nothing below imports it.  ``main`` is
the click group (``netdm = "netdm.cli:main"``), shared by ``python -m netdm``
and the console script.  One room per job:

* :mod:`netdm.cli.main`: the group, its exit codes and its one error boundary.
* :mod:`netdm.cli.options`: the options `watch` and `exporter` share.
* :mod:`netdm.cli.watch`, :mod:`netdm.cli.exporter`, :mod:`netdm.cli.doctor`:
  one command each.
* :mod:`netdm.cli.kernel_state`: `config`, `stats` and `stop`.
"""

from __future__ import annotations

from netdm.cli.main import main

__all__ = ["main"]
