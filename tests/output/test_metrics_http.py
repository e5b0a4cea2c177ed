"""The exporter's HTTP server under load, on 127.0.0.1 with real sockets.

Every loop is bounded in count and every socket has a timeout: a regression
fails a test, it does not hang the suite.
"""

from __future__ import annotations

import gzip
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from netdm.engine.symbols import SymbolTable
from netdm.output.exporter import DropMetrics, MetricsServer, new_registry
from netdm.output.metrics_http import MAX_REQUEST_HEAD

SCRAPE_BOUND = 2.0  # seconds a scrape may take under load


@pytest.fixture
def server() -> Iterator[MetricsServer]:
    metrics = DropMetrics(SymbolTable.from_kallsyms_text("", source_description="none"))
    with MetricsServer(new_registry(metrics), "127.0.0.1", 0, request_timeout=1.0) as served:
        yield served


def request(server: MetricsServer, raw: bytes, timeout: float = 5.0) -> bytes:
    """Send ``raw`` and read the whole response (the server closes every connection)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(raw)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def split(response: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.lower()] = value.strip()
    return status, headers, body


def get(server: MetricsServer, path: str, method: str = "GET", extra: str = "") -> bytes:
    return request(server, f"{method} {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())


def timed_scrape(server: MetricsServer) -> float:
    began = time.monotonic()
    status, _headers, body = split(get(server, "/metrics"))
    assert status == "HTTP/1.1 200 OK" and b"netdm_monitor_up" in body
    return time.monotonic() - began


# ---------------------------------------------------------------------- endpoints


def test_metrics_get_is_the_registry_exposition(server: MetricsServer) -> None:
    status, headers, body = split(get(server, "/metrics"))
    assert status == "HTTP/1.1 200 OK"
    assert headers["content-type"] == CONTENT_TYPE_LATEST
    assert int(headers["content-length"]) == len(body)
    assert headers["connection"] == "close"
    assert b"# TYPE netdm_drops_total counter" in body and b"process_cpu_seconds_total" in body


def test_metrics_head_has_the_headers_and_no_body(server: MetricsServer) -> None:
    status, headers, body = split(get(server, "/metrics", "HEAD"))
    assert status == "HTTP/1.1 200 OK"
    assert headers["content-type"] == CONTENT_TYPE_LATEST
    assert int(headers["content-length"]) > 0 and body == b""


def test_a_query_string_is_ignored(server: MetricsServer) -> None:
    assert split(get(server, "/metrics?x=1"))[0] == "HTTP/1.1 200 OK"


def test_the_landing_page_links_to_the_metrics(server: MetricsServer) -> None:
    status, headers, body = split(get(server, "/"))
    assert status == "HTTP/1.1 200 OK"
    assert headers["content-type"].startswith("text/html")
    assert b'<a href="/metrics">' in body


def test_other_paths_are_404(server: MetricsServer) -> None:
    assert split(get(server, "/favicon.ico"))[0] == "HTTP/1.1 404 Not Found"
    assert split(get(server, "/metrics/x", "HEAD"))[0] == "HTTP/1.1 404 Not Found"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS"])
def test_other_methods_are_405(server: MetricsServer, method: str) -> None:
    status, headers, _body = split(get(server, "/metrics", method))
    assert status == "HTTP/1.1 405 Method Not Allowed"
    assert headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    "raw", [b"GARBAGE\r\n\r\n", b"GET /metrics\r\n\r\n", b"GET / HTTP/1.1\r\nno colon\r\n\r\n"]
)
def test_malformed_requests_are_400(server: MetricsServer, raw: bytes) -> None:
    assert split(request(server, raw))[0] == "HTTP/1.1 400 Bad Request"


def test_an_oversize_request_head_is_431(server: MetricsServer) -> None:
    raw = b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * (MAX_REQUEST_HEAD + 100) + b"\r\n\r\n"
    status = split(request(server, raw))[0]
    assert status == "HTTP/1.1 431 Request Header Fields Too Large"
    # A request line alone that never ends is cut off the same way.
    endless = b"GET /" + b"a" * (2 * MAX_REQUEST_HEAD)
    assert split(request(server, endless))[0].startswith("HTTP/1.1 431")


def test_gzip_when_the_scraper_asks_for_it(server: MetricsServer) -> None:
    status, headers, body = split(get(server, "/metrics", extra="Accept-Encoding: gzip\r\n"))
    assert status == "HTTP/1.1 200 OK" and headers["content-encoding"] == "gzip"
    plain = split(get(server, "/metrics"))[2]
    assert b"netdm_monitor_up" in gzip.decompress(body)
    assert "content-encoding" not in split(get(server, "/metrics"))[1]
    assert plain.startswith(b"# HELP")


def test_openmetrics_when_the_scraper_asks_for_it(server: MetricsServer) -> None:
    """Prometheus asks for OpenMetrics first; the format is negotiated as prometheus_client does."""
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    status, headers, body = split(get(server, "/metrics", extra=f"Accept: {accept}\r\n"))
    assert status == "HTTP/1.1 200 OK"
    assert headers["content-type"].startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    _status, plain_headers, plain = split(get(server, "/metrics"))
    assert plain_headers["content-type"] == CONTENT_TYPE_LATEST
    assert not plain.endswith(b"# EOF\n")


def test_the_exposition_is_rendered_at_most_once_per_cache_period() -> None:
    metrics = DropMetrics(SymbolTable.from_kallsyms_text("", source_description="none"))
    registry = new_registry(metrics)
    calls = 0
    real_collect = metrics.collect

    def counting_collect():  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        return real_collect()

    metrics.collect = counting_collect  # type: ignore[method-assign]
    with MetricsServer(registry, "127.0.0.1", 0, cache_seconds=60.0) as served:
        for _ in range(20):
            split(get(served, "/metrics"))
    assert calls == 1
    assert generate_latest(registry).startswith(b"# HELP netdm_drops_total")


# ---------------------------------------------------------------------- load


def test_an_idle_connection_is_closed_after_the_request_timeout(server: MetricsServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5.0) as sock:
        began = time.monotonic()
        assert sock.recv(1024) == b""  # closed by the server, nothing sent
        waited = time.monotonic() - began
    assert 0.5 < waited < 3.0
    assert server.open_connections == 0


def test_a_slow_client_is_cut_off_at_the_request_timeout(server: MetricsServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5.0) as sock:
        began = time.monotonic()
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            for _ in range(50):  # a byte every 0.1 s: never a whole request
                sock.send(b"G")
                time.sleep(0.1)
        assert time.monotonic() - began < 3.0


@pytest.mark.parametrize("behaviour", ["request-line-and-close", "idle"])
def test_a_thousand_bad_clients_do_not_keep_scrapes_out(
    server: MetricsServer, behaviour: str
) -> None:
    threads_before = threading.active_count()
    clients: list[socket.socket] = []
    latencies: list[float] = []
    try:
        for index in range(1000):
            sock = socket.socket()
            sock.settimeout(5.0)
            sock.connect(("127.0.0.1", server.port))
            if behaviour == "request-line-and-close":
                sock.sendall(b"GET /metrics HTTP/1.1\r\n")
                sock.close()
            else:
                clients.append(sock)
            if index % 100 == 0:
                latencies.append(timed_scrape(server))
            assert threading.active_count() <= threads_before
        latencies.extend(timed_scrape(server) for _ in range(5))
        assert server.open_connections <= server.max_connections
    finally:
        for sock in clients:
            sock.close()
    assert max(latencies) < SCRAPE_BOUND, latencies
    assert threading.active_count() <= threads_before
    assert timed_scrape(server) < SCRAPE_BOUND  # still serving afterwards


def test_two_hundred_simultaneous_scrapes_are_all_answered(server: MetricsServer) -> None:
    gate = threading.Barrier(200, timeout=10)

    def scrape() -> float:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5.0)
        with sock:
            gate.wait()
            began = time.monotonic()
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        status, _headers, body = split(b"".join(chunks))
        assert status == "HTTP/1.1 200 OK" and b"netdm_monitor_up" in body
        return time.monotonic() - began

    with ThreadPoolExecutor(max_workers=200) as pool:
        latencies = list(pool.map(lambda _: scrape(), range(200)))
    assert len(latencies) == 200
    assert max(latencies) < SCRAPE_BOUND, sorted(latencies)[-5:]
