"""``python -m netdm``: the same as the ``netdm`` command."""

from netdm.cli import main

main()
