"""The command line: click commands that parse options and call the library.

Strategy: a thin layer at the top; nothing below imports it.  ``main`` is
the click group (``netdm = "netdm.cli:main"``), imported lazily here so that
``python -m netdm`` and the console script share one entry point.
"""

from __future__ import annotations

from netdm.cli.main import main

__all__ = ["main"]
