"""``python -m netdm``: the same as the ``netdm`` command."""

from netdm.cli.main import main

main()
