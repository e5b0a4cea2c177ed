"""The exporter's HTTP side: a registry on ``/metrics`` that load cannot knock out.

Strategy: one thread runs a selector loop over the listening socket and every
open connection, all non-blocking; nothing ever blocks on a client.  So the
cost of a connection is a socket and a few hundred bytes, not a thread, and
the thread count stays fixed whatever clients do.

- **Time limits.**  A client has ``request_timeout`` seconds from its
  connection to send the whole request head (request line and headers, not
  each piece), and ``write_timeout`` seconds to take the response; then the
  connection is closed.  Idle and slow ("slowloris") clients go away.
- **Bounded work.**  At most ``max_connections`` are open; past that, the
  connection that has waited longest for its request is closed to make room,
  so a flood of idle clients cannot keep a scraper out.  Connections not
  yet accepted wait in a real listen backlog (:data:`LISTEN_BACKLOG`).  A
  request head over :data:`MAX_REQUEST_HEAD` bytes gets 431.
- **A cheap scrape.**  The exposition (prometheus_client's
  ``generate_latest`` on the registry) is rendered at most once per
  ``cache_seconds``, gzipped at most once per rendering; a thousand scrapes
  a second cost a few renderings.
- **Endpoints.**  GET and HEAD: ``/metrics`` (gzip when the scraper sends
  ``Accept-Encoding: gzip``, as prometheus_client does), a landing page at
  ``/``, 404 elsewhere; other methods 405.  Every response closes its
  connection (``Connection: close``): no keep-alive state to bound.
"""

from __future__ import annotations

import contextlib
import gzip
import selectors
import socket
import threading
import time
from collections import OrderedDict
from http import HTTPStatus
from urllib.parse import urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.exposition import choose_encoder

__all__ = [
    "DEFAULT_CACHE_SECONDS",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_REQUEST_TIMEOUT",
    "DEFAULT_WRITE_TIMEOUT",
    "LISTEN_BACKLOG",
    "MAX_REQUEST_HEAD",
    "MetricsServer",
]

LISTEN_BACKLOG = 1024  # the kernel caps it at net.core.somaxconn
MAX_REQUEST_HEAD = 8192  # request line + headers, bytes
DEFAULT_REQUEST_TIMEOUT = 3.0  # seconds from connection to a complete request head
DEFAULT_WRITE_TIMEOUT = 10.0  # seconds for the client to take the response
DEFAULT_MAX_CONNECTIONS = 256
DEFAULT_CACHE_SECONDS = 1.0
_ACCEPTS_PER_ROUND = 64  # so that a flood of connections cannot starve the open ones
_RECV_SIZE = 4096

LANDING_PAGE = b"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>netdm exporter</title></head>
<body>
<h1>netdm exporter</h1>
<p>Packets the Linux kernel dropped, as Prometheus metrics: <a href="/metrics">/metrics</a>.</p>
</body>
</html>
"""


class _Connection:
    __slots__ = ("sock", "received", "outgoing", "deadline")

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.received = bytearray()
        self.outgoing = memoryview(b"")
        self.deadline = deadline


class _Exposition:
    """The registry's exposition, rendered at most once per ``ttl`` seconds per format.

    The format is negotiated as prometheus_client does (``choose_encoder``: the
    OpenMetrics text when the scraper's ``Accept`` asks for it, as Prometheus
    does), else the classic text format of ``generate_latest``.
    """

    def __init__(self, registry: CollectorRegistry, ttl: float) -> None:
        self._registry = registry
        self._ttl = ttl
        self._rendered_at = float("-inf")
        # content type -> (plain body, gzipped body once asked for)
        self._bodies: dict[str, tuple[bytes, bytes | None]] = {}

    def body(self, accept: str, *, gzipped: bool) -> tuple[bytes, str]:
        """The body for a scraper sending ``Accept: accept``, and its content type."""
        now = time.monotonic()
        if now - self._rendered_at >= self._ttl:
            self._bodies.clear()
            self._rendered_at = now
        encoder, content_type = choose_encoder(accept)
        if not content_type.startswith("application/openmetrics-text"):
            encoder, content_type = generate_latest, CONTENT_TYPE_LATEST
        cached = self._bodies.get(content_type)
        if cached is None:
            cached = (encoder(self._registry), None)
        plain, packed = cached
        if gzipped and packed is None:
            packed = gzip.compress(plain)
        self._bodies[content_type] = (plain, packed)
        return (packed if gzipped and packed is not None else plain), content_type


def _response(
    status: HTTPStatus, body: bytes, content_type: str, *, head: bool, extra: str = ""
) -> bytes:
    header = (
        f"HTTP/1.1 {status.value} {status.phrase}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"{extra}"
        "Connection: close\r\n\r\n"
    ).encode("latin-1")
    return header if head else header + body


def _error(status: HTTPStatus, *, head: bool = False, extra: str = "") -> bytes:
    body = f"{status.value} {status.phrase}\n".encode()
    return _response(status, body, "text/plain; charset=utf-8", head=head, extra=extra)


class MetricsServer:
    """``registry`` on ``http://HOST:PORT/metrics``, served by one background thread.

    Binding happens in the constructor (a taken port fails before the kernel is
    touched); :meth:`start` begins serving, :meth:`close` stops and waits.
    Port 0 binds a free port: :attr:`port` tells which.  Raises OSError.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        host: str,
        port: int,
        *,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        write_timeout: float = DEFAULT_WRITE_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        cache_seconds: float = DEFAULT_CACHE_SECONDS,
    ) -> None:
        family, _, _, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        self._listener = socket.create_server(
            (str(address[0]), port), family=family, backlog=LISTEN_BACKLOG
        )
        self._listener.setblocking(False)
        self._address = self._listener.getsockname()
        self._exposition = _Exposition(registry, cache_seconds)
        self.request_timeout = request_timeout
        self.write_timeout = write_timeout
        self.max_connections = max_connections
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._stopping = False
        # Insertion order is deadline order: the oldest connection comes first.
        self._reading: OrderedDict[socket.socket, _Connection] = OrderedDict()
        self._writing: OrderedDict[socket.socket, _Connection] = OrderedDict()
        self._selector = selectors.DefaultSelector()
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self._address[0])

    @property
    def port(self) -> int:
        return int(self._address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    @property
    def open_connections(self) -> int:
        return len(self._reading) + len(self._writing)

    def start(self) -> None:
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._selector.register(self._wake_reader, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._serve, name="netdm-metrics", daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            self._stopping = True
            self._wake_writer.send(b"x")
            self._thread.join()
            self._thread = None
        for connection in [*self._reading.values(), *self._writing.values()]:
            connection.sock.close()
        self._reading.clear()
        self._writing.clear()
        self._selector.close()
        self._listener.close()
        self._wake_reader.close()
        self._wake_writer.close()

    def __enter__(self) -> MetricsServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the loop

    def _serve(self) -> None:
        while not self._stopping:
            for key, events in self._selector.select(timeout=self._next_timeout()):
                sock = key.fileobj
                if sock is self._listener:
                    self._accept()
                elif sock is self._wake_reader:
                    self._wake_reader.recv(64)
                elif isinstance(sock, socket.socket):
                    self._service(sock, events)
            self._expire(time.monotonic())

    def _service(self, sock: socket.socket, events: int) -> None:
        connection = self._reading.get(sock) or self._writing.get(sock)
        if connection is None:
            return
        try:
            if events & selectors.EVENT_READ and sock in self._reading:
                self._read(connection)
            elif events & selectors.EVENT_WRITE and sock in self._writing:
                self._write(connection)
        except Exception:  # one connection's surprise must not stop the server
            self._drop(connection)

    def _next_timeout(self) -> float:
        deadlines = [
            next(iter(table.values())).deadline for table in (self._reading, self._writing) if table
        ]
        if not deadlines:
            return 1.0
        return max(0.0, min(deadlines) - time.monotonic())

    def _expire(self, now: float) -> None:
        for table in (self._reading, self._writing):
            while table:
                connection = next(iter(table.values()))
                if connection.deadline > now:
                    break
                self._drop(connection)

    def _accept(self) -> None:
        for _ in range(_ACCEPTS_PER_ROUND):
            try:
                sock, _address = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # ECONNABORTED, EMFILE…: try again on the next round
                return
            if self.open_connections >= self.max_connections:
                if self._reading:  # the one that has waited longest for its request
                    self._drop(next(iter(self._reading.values())))
                else:  # every slot is sending a response: this one goes
                    sock.close()
                    continue
            sock.setblocking(False)
            connection = _Connection(sock, time.monotonic() + self.request_timeout)
            self._reading[sock] = connection
            self._selector.register(sock, selectors.EVENT_READ)

    def _drop(self, connection: _Connection) -> None:
        sock = connection.sock
        self._reading.pop(sock, None)
        self._writing.pop(sock, None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(sock)
        sock.close()

    def _read(self, connection: _Connection) -> None:
        try:
            data = connection.sock.recv(_RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(connection)
            return
        if not data:  # closed before a whole request: nothing to answer
            self._drop(connection)
            return
        received = connection.received
        scan_from = max(0, len(received) - 3)
        received += data
        end = received.find(b"\r\n\r\n", scan_from)
        if end < 0:
            end = received.find(b"\n\n", scan_from)
        if end < 0 or end > MAX_REQUEST_HEAD:
            if len(received) > MAX_REQUEST_HEAD:
                self._respond(connection, _error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE))
            return
        self._respond(connection, self._answer(bytes(received[:end])))

    def _answer(self, head: bytes) -> bytes:
        lines = head.decode("latin-1").replace("\r\n", "\n").split("\n")
        parts = lines[0].split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return _error(HTTPStatus.BAD_REQUEST)
        method, target, _version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip():
                return _error(HTTPStatus.BAD_REQUEST)
            headers[name.lower()] = value.strip()
        if method not in ("GET", "HEAD"):
            return _error(HTTPStatus.METHOD_NOT_ALLOWED, extra="Allow: GET, HEAD\r\n")
        head_only = method == "HEAD"
        path = urlsplit(target).path
        if path == "/metrics":
            wants_gzip = "gzip" in headers.get("accept-encoding", "")
            try:
                body, content_type = self._exposition.body(
                    headers.get("accept", ""), gzipped=wants_gzip
                )
            except Exception:  # a collector failed: the scraper sees an error, the server lives
                return _error(HTTPStatus.INTERNAL_SERVER_ERROR, head=head_only)
            extra = "Content-Encoding: gzip\r\n" if wants_gzip else ""
            return _response(HTTPStatus.OK, body, content_type, head=head_only, extra=extra)
        if path == "/":
            return _response(
                HTTPStatus.OK, LANDING_PAGE, "text/html; charset=utf-8", head=head_only
            )
        return _error(HTTPStatus.NOT_FOUND, head=head_only)

    def _respond(self, connection: _Connection, response: bytes) -> None:
        sock = connection.sock
        self._reading.pop(sock, None)
        connection.received = bytearray()
        connection.outgoing = memoryview(response)
        connection.deadline = time.monotonic() + self.write_timeout
        self._writing[sock] = connection
        self._selector.modify(sock, selectors.EVENT_WRITE)
        self._write(connection)

    def _write(self, connection: _Connection) -> None:
        try:
            sent = connection.sock.send(connection.outgoing)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(connection)
            return
        connection.outgoing = connection.outgoing[sent:]
        if not connection.outgoing:
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_WR)
            self._drop(connection)
