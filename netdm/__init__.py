"""netdm: see what the Linux kernel drops, through its NET_DM drop monitor."""

__version__ = "0.1.0"
