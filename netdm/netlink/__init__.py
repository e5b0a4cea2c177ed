"""The NET_DM source: the kernel's drop monitor over generic netlink.

Strategy: this is where netdm talks to the kernel's ``NET_DM`` family, and the
only place that imports pyroute2 (lazily, when a live socket is opened, so
``--help`` and replays never pay for it).  The bytes themselves are built and
read by :mod:`netdm.proto`; this layer moves them and maps the kernel's
answers and errnos to sentences.

* :mod:`netdm.netlink.transport`: the generic-netlink socket (resolve the
  family, join ``events``, send and receive raw datagrams, count ENOBUFS and
  the socket's ``Drops``).
* :mod:`netdm.netlink.batch_receive`: ``recvmmsg(2)`` through ctypes, many
  datagrams per system call.
* :mod:`netdm.netlink.control`: one request at a time (CONFIG, START, STOP,
  CONFIG_GET, STATS_GET).
* :mod:`netdm.netlink.diagnose`: why the family is missing, read from /proc,
  /boot and /lib/modules; ``netdm doctor``'s checks.
"""
