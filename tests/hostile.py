"""A hostile local web server (loopback only) for the fetcher and the crawl pipeline.

Serves, next to a few good articles in awkward encodings, everything a feed may point a
crawler at: error codes, Retry-After, redirect loops and redirects into internal networks,
huge and endless bodies, a gzip bomb, trickles, binaries served as HTML, pages too deep to
parse, hostile feeds and sitemaps. A second server accepts connections and never answers;
a third answers 429/503 with Retry-After, on its own origin so its pause does not slow the
good articles down.
"""

from __future__ import annotations

import gzip
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Route = Callable[[BaseHTTPRequestHandler, "Hostile"], None]

RUSSIAN = (
    "Правительство Москвы объявило о запуске новой программы благоустройства парков. "
    "По словам мэра, работы начнутся весной и продлятся до конца года. Жители смогут "
    "предложить свои идеи на специальном портале. Эксперты считают, что программа "
    "улучшит качество городской среды и привлечёт туристов в отдалённые районы столицы."
)
JAPANESE = (
    "東京都は来年度から新しい公園整備計画を始めると発表した。知事によると、工事は春に始まり"
    "年末まで続く予定だ。住民は専用のサイトで意見を提出できる。専門家は、この計画が都市環境の"
    "質を高め、郊外の地域にも観光客を呼び込むと期待している。予算は約五十億円に上る見通しだ。"
)
GERMAN = (
    "Die Stadtverwaltung Köln hat am Montag mitgeteilt, dass die Straßenbahnlinie 18 wegen "
    "Bauarbeiten für zwei Wochen gesperrt bleibt. Anwohner müssen sich auf Umleitungen "
    "einstellen; die Verkehrsbetriebe empfehlen, frühzeitig loszufahren. Größere Störungen "
    "werden für das Wochenende nicht erwartet, heißt es in der Mitteilung der Behörde."
)
ENGLISH = (
    "The harbour authority reopened the northern pier on Tuesday after a week of repairs "
    "caused by the storm. Fishing crews returned to their moorings before dawn, and the "
    "ferry service to the islands resumed its normal timetable by midday. Officials said "
    "the repairs cost less than expected and thanked residents for their patience."
)


def article_html(title: str, text: str, charset_meta: str | None = None) -> str:
    meta = f'<meta charset="{charset_meta}">' if charset_meta else ""
    paragraphs = "".join(f"<p>{text}</p>" for _ in range(3))
    return (
        f"<!DOCTYPE html><html><head>{meta}<title>{title}</title></head><body>"
        f"<header><nav><a href='/'>Home</a></nav></header><main><article><h1>{title}</h1>"
        f"{paragraphs}</article></main><footer>Contact</footer></body></html>"
    )


@dataclass(frozen=True)
class Good:
    path: str
    snippet: str


@dataclass(frozen=True)
class Bad:
    path: str  # on the main server, or "silent:/x" / "busy:/x" for the other servers
    status: str
    http_status: int | None


GOOD = [
    Good("/good/english", "harbour authority reopened the northern pier"),
    Good("/good/cp1251-undeclared", "Правительство Москвы объявило"),
    Good("/good/sjis-declared-latin1", "東京都は来年度から新しい公園整備計画"),
    Good("/good/latin1-declared-utf8", "Straßenbahnlinie 18 wegen Bauarbeiten für zwei Wochen"),
    Good("/good/malformed", "ferry service to the islands resumed"),
]

BAD = [
    Bad("/bad/404", "http_error", 404),
    Bad("/bad/410", "http_error", 410),
    Bad("/bad/500", "http_error", 500),
    Bad("busy:/bad/503", "http_error", 503),
    Bad("busy:/bad/429", "http_error", 429),
    Bad("/bad/loop/a", "too_many_redirects", None),
    Bad("/bad/to-metadata", "blocked_address", None),
    Bad("/bad/to-private", "blocked_address", None),
    Bad("/bad/50mb", "too_large", 200),
    Bad("/bad/gzip-bomb", "too_large", 200),
    Bad("/bad/trickle", "timeout", 200),
    # robots.txt on a server that never answers cannot be read: RFC 9309 says assume
    # disallow, so the article is refused before it is even asked for.
    Bad("silent:/bad/never-answers", "robots_denied", None),
    Bad("/bad/pdf-as-html", "unsupported_content", 200),
    Bad("/bad/zip-as-html", "unsupported_content", 200),
    Bad("/bad/empty", "empty_extraction", 200),
    Bad("/bad/deep", "too_complex", 200),
]


def respond(
    h: BaseHTTPRequestHandler,
    status: int,
    body: bytes = b"",
    ctype: str = "text/html",
    headers: dict[str, str] | None = None,
) -> None:
    h.send_response(status)
    h.send_header("Content-Type", ctype)
    h.send_header("Content-Length", str(len(body)))
    for name, value in (headers or {}).items():
        h.send_header(name, value)
    h.end_headers()
    h.wfile.write(body)


def redirect(location: str) -> Route:
    def route(h: BaseHTTPRequestHandler, server: Hostile) -> None:
        respond(h, 302, headers={"Location": location.replace("{base}", server.base_url)})

    return route


def page(body: str, encoding: str, ctype: str) -> Route:
    data = body.encode(encoding)
    return lambda h, _s: respond(h, 200, data, ctype)


def fifty_megabytes(h: BaseHTTPRequestHandler, _s: Hostile) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "text/html")
    h.end_headers()
    chunk = b"<p>" + b"x" * 65_530 + b"</p>"
    for _ in range(50 * 16):
        h.wfile.write(chunk)


def gzip_bomb(h: BaseHTTPRequestHandler, server: Hostile) -> None:
    body = server.bomb
    h.send_response(200)
    h.send_header("Content-Type", "text/html")
    h.send_header("Content-Encoding", "gzip")
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


def trickle(h: BaseHTTPRequestHandler, _s: Hostile) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "text/html")
    h.end_headers()
    for _ in range(120):
        h.wfile.write(b"<p>a</p>")
        h.wfile.flush()
        time.sleep(0.5)


def deep(h: BaseHTTPRequestHandler, _s: Hostile) -> None:
    body = "<html><body>" + "<div>" * 5000 + ENGLISH + "</div>" * 5000 + "</body></html>"
    respond(h, 200, body.encode())


def feed(h: BaseHTTPRequestHandler, server: Hostile) -> None:
    items = [g.path for g in GOOD] + [b.path for b in BAD]
    entries = "".join(
        f"<item><title>Item {i}</title><link>{server.url(p)}</link></item>"
        for i, p in enumerate(items)
    )
    body = f'<?xml version="1.0"?><rss version="2.0"><channel><title>Hostile</title>{entries}'
    respond(h, 200, (body + "</channel></rss>").encode(), "application/rss+xml")


BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'.encode()
        for i in range(1, 10)
    )
    + b']><rss version="2.0"><channel><title>&lol9;</title>'
    b"<item><title>&lol9;</title><link>http://127.0.0.1/x</link></item></channel></rss>"
)

ROUTES: dict[str, Route] = {
    "/feed.xml": feed,
    "/feeds/billion-laughs.xml": lambda h, _s: respond(h, 200, BILLION_LAUGHS, "application/xml"),
    "/feeds/malformed.xml": lambda h, _s: respond(
        h, 200, b"<rss><channel><item><title>unclosed", "application/rss+xml"
    ),
    "/sitemap-self.xml": lambda h, s: respond(
        h,
        200,
        (
            '<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/'
            f'sitemap/0.9"><sitemap><loc>{s.base_url}/sitemap-self.xml</loc></sitemap>'
            f"<sitemap><loc>{s.base_url}/sitemap-articles.xml</loc></sitemap></sitemapindex>"
        ).encode(),
        "application/xml",
    ),
    "/sitemap-articles.xml": lambda h, s: respond(
        h,
        200,
        (
            '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            f"<url><loc>{s.base_url}/good/english</loc></url>"
            f"<sitemap><loc>{s.base_url}/sitemap-self.xml</loc></sitemap></urlset>"
        ).encode(),
        "application/xml",
    ),
    "/good/english": page(article_html("Pier reopens", ENGLISH), "utf-8", "text/html"),
    "/good/cp1251-undeclared": page(
        article_html("Парки Москвы", RUSSIAN), "windows-1251", "text/html"
    ),
    "/good/sjis-declared-latin1": page(
        article_html("公園整備計画", JAPANESE), "shift_jis", "text/html; charset=iso-8859-1"
    ),
    "/good/latin1-declared-utf8": page(
        article_html("Straßenbahn gesperrt", GERMAN, "utf-8"),
        "latin-1",
        "text/html; charset=utf-8",
    ),
    "/good/malformed": page(
        # unclosed paragraphs and cells, mismatched headings, stray end tags, no </html>
        "<html><head><title>Ferry back</title><body><div><h1>Ferry back</h2><p>"
        + ENGLISH.replace("The harbour authority", "The ferry service to the islands resumed")
        + "<p>"
        + ENGLISH
        + "</div></div></span><table><tr><td>"
        + ENGLISH,
        "utf-8",
        "text/html",
    ),
    "/bad/404": lambda h, _s: respond(h, 404, b"not found"),
    "/bad/410": lambda h, _s: respond(h, 410, b"gone"),
    "/bad/500": lambda h, _s: respond(h, 500, b"oops"),
    "/bad/loop/a": redirect("/bad/loop/b"),
    "/bad/loop/b": redirect("/bad/loop/a"),
    "/bad/to-metadata": redirect("http://169.254.169.254/latest/meta-data/"),
    "/bad/to-private": redirect("http://10.0.0.1/admin"),
    "/bad/50mb": fifty_megabytes,
    "/bad/gzip-bomb": gzip_bomb,
    "/bad/trickle": trickle,
    "/bad/pdf-as-html": lambda h, _s: respond(
        h, 200, b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + bytes(range(256)) * 40
    ),
    "/bad/zip-as-html": lambda h, _s: respond(
        h, 200, b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(range(256)) * 40
    ),
    "/bad/empty": lambda h, _s: respond(h, 200, b""),
    "/bad/deep": deep,
}

BUSY_ROUTES: dict[str, Route] = {
    "/bad/503": lambda h, _s: respond(h, 503, b"busy", headers={"Retry-After": "2"}),
    "/bad/429": lambda h, _s: respond(h, 429, b"slow down", headers={"Retry-After": "2"}),
}


@dataclass
class Hostile:
    """The running servers; `requests` logs (server, path) of every request received."""

    base_url: str = ""
    silent_url: str = ""
    busy_url: str = ""
    requests: list[tuple[str, str]] = field(default_factory=list)
    bomb: bytes = b""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        if path.startswith("silent:"):
            return self.silent_url + path.removeprefix("silent:")
        if path.startswith("busy:"):
            return self.busy_url + path.removeprefix("busy:")
        return self.base_url + path


def _handler(server: Hostile, name: str, routes: dict[str, Route]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self) -> None:
            with server.lock:
                server.requests.append((name, self.path))
            route = routes.get(self.path)
            try:
                if route is None:
                    respond(self, 404, b"no such page")
                else:
                    route(self, server)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client stopped reading, as it should

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


def _silent_server(stop: threading.Event) -> tuple[socket.socket, threading.Thread]:
    """Accepts connections and never says a word."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.settimeout(0.2)
    held: list[socket.socket] = []

    def run() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
                held.append(conn)
            except TimeoutError:
                continue
            except OSError:
                break
        for conn in held:
            conn.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return sock, thread


@contextmanager
def serve_hostile() -> Iterator[Hostile]:
    hostile = Hostile(bomb=gzip.compress(b" " * 200_000_000, compresslevel=9))
    main = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hostile, "main", ROUTES))
    busy = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hostile, "busy", BUSY_ROUTES))
    for httpd in (main, busy):
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
    stop = threading.Event()
    silent, silent_thread = _silent_server(stop)
    hostile.base_url = f"http://127.0.0.1:{main.server_address[1]}"
    hostile.busy_url = f"http://127.0.0.1:{busy.server_address[1]}"
    hostile.silent_url = f"http://127.0.0.1:{silent.getsockname()[1]}"
    try:
        yield hostile
    finally:
        main.shutdown()
        busy.shutdown()
        stop.set()
        silent_thread.join(timeout=2)
        silent.close()
