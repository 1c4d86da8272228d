"""The fetcher against a real loopback HTTP server: limits, redirects, safety, charsets."""

from __future__ import annotations

import contextlib
import gzip
import ipaddress
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.conftest import CORPUS
from workers.fetch import Fetcher, decode_body, is_blocked_address, looks_binary
from workers.settings import Settings

Route = Callable[[BaseHTTPRequestHandler], None]


def send(
    status: int, body: bytes = b"", ctype: str = "text/html; charset=utf-8", **headers: str
) -> Route:
    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            h.send_header(name.replace("_", "-"), value)
        h.end_headers()
        h.wfile.write(body)

    return route


def redirect(location: str, status: int = 302) -> Route:
    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        h.send_header("Location", location)
        h.send_header("Content-Length", "0")
        h.end_headers()

    return route


def trickle(h: BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "text/html")
    h.end_headers()
    for _ in range(100):
        h.wfile.write(b"<p>x</p>")
        h.wfile.flush()
        time.sleep(0.5)


def endless(h: BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "text/html")
    h.end_headers()
    chunk = b"<p>" + b"a" * 65536 + b"</p>"
    for _ in range(2000):  # ~130 MB if nobody stops reading
        h.wfile.write(chunk)


def gzip_bomb(h: BaseHTTPRequestHandler) -> None:
    body = gzip.compress(b"<html>" + b" " * 100_000_000, compresslevel=9)
    h.send_response(200)
    h.send_header("Content-Type", "text/html")
    h.send_header("Content-Encoding", "gzip")
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


ARTICLE = (
    "<html><head><title>Hello</title></head><body><p>Die Stadtverwaltung hat am Montag "
    "mitgeteilt, dass die Straßenbahn wegen Bauarbeiten für zwei Wochen gesperrt bleibt. "
    "Anwohner müssen sich auf Umleitungen einstellen. Grüße aus Köln.</p></body></html>"
)
ROUTES: dict[str, Route] = {
    "/ok": send(200, ARTICLE.encode()),
    "/404": send(404, b"nope"),
    "/503": send(503, b"busy", Retry_After="120"),
    "/redirect": redirect("/ok"),
    "/loop/a": redirect("/loop/b"),
    "/loop/b": redirect("/loop/a"),
    "/metadata": redirect("http://169.254.169.254/latest/meta-data/"),
    "/private": redirect("http://10.0.0.1/admin"),
    "/ftp": redirect("ftp://127.0.0.1/file"),
    "/pdf-as-html": send(200, b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj" + bytes(range(256)) * 10),
    "/pdf": send(200, b"%PDF-1.4 ...", "application/pdf"),
    "/image": send(200, b"\x89PNG\r\n", "image/png"),
    "/big-declared": send(200, b"x" * 300_000),
    "/endless": endless,
    "/trickle": trickle,
    "/bomb": gzip_bomb,
    "/latin1-as-utf8": send(200, ARTICLE.encode("latin-1")),
    "/feed": send(200, b"<rss/>", "application/rss+xml", ETag='"v1"'),
    "/conditional": lambda h: (
        send(304)(h)
        if h.headers.get("If-None-Match") == '"v1"'
        else send(200, b"<rss/>", ETag='"v1"')(h)
    ),
}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        route = ROUTES.get(self.path)
        if route is None:
            send(404)(self)
        else:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                route(self)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture
def small(settings: Settings) -> Iterator[Fetcher]:
    """A fetcher with small limits so the limits are reached quickly."""
    tight = settings.model_copy(
        update={"max_page_bytes": 200_000, "read_timeout": 1.0, "total_timeout": 3.0}
    )
    with Fetcher(tight) as f:
        yield f


def test_ok_records_final_url_after_redirect(fetcher: Fetcher, server: str) -> None:
    result = fetcher.fetch(f"{server}/redirect")
    assert result.ok and result.http_status == 200
    assert result.url == f"{server}/redirect"
    assert result.final_url == f"{server}/ok"
    assert result.redirects == (f"{server}/redirect",)
    assert b"Hello" in result.body


@pytest.mark.parametrize(
    ("path", "status", "http_status", "retryable"),
    [
        ("/404", "http_error", 404, False),
        ("/503", "http_error", 503, True),
        ("/loop/a", "too_many_redirects", None, False),
        ("/metadata", "blocked_address", None, False),
        ("/private", "blocked_address", None, False),
        ("/ftp", "invalid_url", None, False),
        ("/pdf-as-html", "unsupported_content", 200, False),
        ("/pdf", "unsupported_content", 200, False),
        ("/image", "unsupported_content", 200, False),
        ("/big-declared", "too_large", 200, False),
        ("/endless", "too_large", 200, False),
        ("/bomb", "too_large", 200, False),
        ("/trickle", "timeout", 200, True),
    ],
)
def test_failures_are_values(
    small: Fetcher, server: str, path: str, status: str, http_status: int | None, retryable: bool
) -> None:
    started = time.monotonic()
    result = small.fetch(server + path)
    assert result.status == status, result.error
    assert result.http_status == http_status
    assert result.retryable is retryable
    assert result.error  # always a readable reason
    assert time.monotonic() - started < 8


def test_redirect_loop_message_names_the_loop(fetcher: Fetcher, server: str) -> None:
    result = fetcher.fetch(f"{server}/loop/a")
    assert "loop" in (result.error or "")


def test_loopback_refused_unless_allowed(settings: Settings, server: str) -> None:
    with Fetcher(settings.model_copy(update={"allowed_networks": ()})) as closed:
        result = closed.fetch(f"{server}/ok")
    assert result.status == "blocked_address"
    assert "127.0.0.1" in (result.error or "")


def test_dead_port_is_connect_error(fetcher: Fetcher) -> None:
    result = fetcher.fetch("http://127.0.0.1:9/nothing")
    assert result.status == "connect_error" and result.retryable


def test_conditional_get(fetcher: Fetcher, server: str) -> None:
    first = fetcher.fetch(f"{server}/conditional", expect="xml")
    assert first.ok and first.etag == '"v1"'
    second = fetcher.fetch(f"{server}/conditional", expect="xml", etag=first.etag)
    assert second.status == "not_modified" and second.http_status == 304


def test_feed_content_types_accepted_for_xml(fetcher: Fetcher, server: str) -> None:
    assert fetcher.fetch(f"{server}/feed", expect="xml").ok
    assert fetcher.fetch(f"{server}/feed", expect="html").status == "unsupported_content"


@pytest.mark.parametrize(
    ("address", "blocked"),
    [
        ("169.254.169.254", True),
        ("10.0.0.1", True),
        ("192.168.1.1", True),
        ("172.16.0.1", True),
        ("127.0.0.1", True),
        ("::1", True),
        ("fe80::1", True),
        ("224.0.0.1", True),
        ("0.0.0.0", True),
        ("::ffff:10.0.0.1", True),
        ("93.184.216.34", False),
        ("2606:2800:220:1:248:1893:25c8:1946", False),
    ],
)
def test_blocked_addresses(address: str, blocked: bool) -> None:
    assert is_blocked_address(ipaddress.ip_address(address), ()) is blocked


def test_allowed_network_opens_a_range() -> None:
    allowed = [ipaddress.ip_network("10.0.0.0/8")]
    assert not is_blocked_address(ipaddress.ip_address("10.1.2.3"), allowed)
    assert is_blocked_address(ipaddress.ip_address("192.168.1.1"), allowed)


def test_decode_latin1_declared_as_utf8(fetcher: Fetcher, server: str) -> None:
    result = fetcher.fetch(f"{server}/latin1-as-utf8")
    text, encoding = decode_body(result.body, result.content_type)
    assert "Grüße aus Köln" in text
    assert encoding != "utf-8"


@pytest.mark.parametrize(
    ("name", "expected", "snippet"),
    [
        ("miniflux-iso-8859-1.html", "latin", None),
        ("miniflux-iso-8859-1-meta-after-1024.html", "latin", None),
        ("miniflux-utf8-meta-after-1024.html", "utf-8", None),
        ("miniflux-utf8.html", "utf-8", None),
    ],
)
def test_decode_corpus_encodings(name: str, expected: str, snippet: str | None) -> None:
    body = (CORPUS / "encodings" / name).read_bytes()
    text, encoding = decode_body(body, "text/html")
    assert expected in encoding or (expected == "latin" and encoding in ("cp1252", "iso8859-1"))
    assert "\ufffd" not in text


def test_decode_windows_1251_without_declaration() -> None:
    text = "Москва — столица России. " * 20
    decoded, encoding = decode_body(text.encode("windows-1251"), "text/html")
    assert decoded == text
    assert encoding == "cp1251"


def test_decode_shift_jis_declared_as_latin1() -> None:
    text = "東京都は日本の首都です。今日は晴れています。" * 10
    decoded, _ = decode_body(text.encode("shift_jis"), "text/html; charset=iso-8859-1")
    assert decoded == text


def test_looks_binary() -> None:
    assert looks_binary(b"%PDF-1.7")
    assert looks_binary(b"PK\x03\x04rest")
    assert looks_binary(b"<html>\x00\x00")
    assert not looks_binary(b"<!doctype html><html>")
