"""A local news web: many news sites on loopback serving real pages from the corpus.

Each host is its own loopback address (127.0.0.2, 127.0.0.3, ...; Linux routes all of
127.0.0.0/8 to the loopback interface), so per-host politeness applies per site, as on the
real web. A host lists its articles in an RSS feed (even hosts) or an XML sitemap (odd
hosts), serves a robots.txt naming its sitemap and a home page linking them, and serves
each article page as the corpus
has it (../shared/corpus/extraction, real pages with ground truth). Links in feeds and
sitemaps are absolute, built from the Host header of the request: a client may reach the
same host by a name (tools that refuse IP addresses) or by its address.

Used by the fault tests (tests/test_faults.py) and the throughput benchmark
(benchmarks/throughput.py). One asyncio loop serves every host, in a thread of its own; it
answers keep-alive HTTP/1.1 GETs, which is all the crawlers here speak.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("NEWSAGG_CORPUS") or ROOT.parent / "shared" / "corpus")
NAME_SUFFIX = "newsweb.test"


@dataclass(frozen=True, slots=True)
class Page:
    """One article page: where it is served and the corpus entry it comes from."""

    path: str
    corpus_url: str
    body: bytes


@dataclass(slots=True)
class Host:
    index: int
    kind: str  # "feed" or "sitemap"
    pages: list[Page]
    address: str = ""
    port: int = 0

    @property
    def name(self) -> str:
        """A host name for clients that refuse IP addresses (resolve it to `address`)."""
        return f"site{self.index:03d}.{NAME_SUFFIX}"

    def origin(self, by_name: bool = False) -> str:
        return f"http://{self.name if by_name else self.address}:{self.port}"

    def source_url(self, by_name: bool = False) -> str:
        return self.origin(by_name) + ("/feed.xml" if self.kind == "feed" else "/sitemap.xml")


@dataclass
class NewsWeb:
    hosts: list[Host]
    # Seconds each article response is held back (a slow site), settable while serving;
    # `slow` holds pages slower still (path -> seconds).
    delay: float = 0.0
    slow: dict[str, float] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)
    # Called on every request (the benchmark records when crawling started and ended).
    on_request: Callable[[], None] | None = None

    @property
    def pages(self) -> list[tuple[Host, Page]]:
        return [(host, page) for host in self.hosts for page in host.pages]

    def article_urls(self, by_name: bool = False) -> list[str]:
        return [host.origin(by_name) + page.path for host, page in self.pages]

    def resolve(self, name: str) -> str | None:
        """The loopback address of a host name of this web."""
        for host in self.hosts:
            if host.name == name:
                return host.address
        return None


def corpus_pages(corpus: Path = CORPUS) -> list[tuple[str, bytes]]:
    """(original URL, HTML bytes) of every page of corpus/extraction, in a fixed order."""
    truth = json.loads((corpus / "extraction" / "groundtruth.json").read_text(encoding="utf-8"))
    pages = []
    for url, entry in sorted(truth.items()):
        path = corpus / "extraction" / entry["file"]
        raw = path.read_bytes()
        pages.append((url, gzip.decompress(raw) if path.suffix == ".gz" else raw))
    return pages


def build_web(
    hosts: int = 100, pages: int | None = None, copies: int = 1, corpus: Path = CORPUS
) -> NewsWeb:
    """`hosts` sites sharing the first `pages` corpus pages (all by default), round robin;
    `copies` > 1 serves each page under that many URLs (for long runs)."""
    source = corpus_pages(corpus)[:pages]
    sites = [Host(i, "feed" if i % 2 == 0 else "sitemap", []) for i in range(hosts)]
    n = 0
    for copy in range(copies):
        for number, (url, body) in enumerate(source):
            site = sites[n % hosts]
            suffix = f"-{copy}" if copy else ""
            site.pages.append(Page(f"/news/{number:04d}{suffix}.html", url, body))
            n += 1
    return NewsWeb(sites)


# -- responses ------------------------------------------------------------------------

_EPOCH = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)


def _published(position: int) -> datetime:
    # Newest first in listings, an hour apart: every crawler sees a plausible news feed.
    return _EPOCH - timedelta(hours=position)


def _feed(host: Host, origin: str) -> bytes:
    items = "".join(
        f"<item><title>Article {page.path}</title><link>{escape(origin + page.path)}</link>"
        f"<guid>{escape(origin + page.path)}</guid>"
        f"<pubDate>{format_datetime(_published(i))}</pubDate></item>"
        for i, page in enumerate(host.pages)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>Site {host.index}</title><link>{escape(origin)}/</link>"
        f"<description>News of site {host.index}</description>{items}</channel></rss>"
    ).encode()


def _sitemap(host: Host, origin: str) -> bytes:
    urls = "".join(
        f"<url><loc>{escape(origin + page.path)}</loc>"
        f"<lastmod>{_published(i).strftime('%Y-%m-%dT%H:%M:%SZ')}</lastmod></url>"
        for i, page in enumerate(host.pages)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>'
    ).encode()


def _home(host: Host, origin: str) -> bytes:
    links = "".join(
        f'<li><a href="{escape(origin + page.path)}">Article {escape(page.path)}</a></li>'
        for page in host.pages
    )
    return (
        f"<!DOCTYPE html><html><head><title>Site {host.index}</title></head>"
        f"<body><h1>Site {host.index}</h1><ul>{links}</ul></body></html>"
    ).encode()


def _robots(origin: str) -> bytes:
    return f"User-agent: *\nAllow: /\nSitemap: {origin}/sitemap.xml\n".encode()


class _Server:
    def __init__(self, web: NewsWeb) -> None:
        self.web = web
        self.loop = asyncio.new_event_loop()
        self.servers: list[asyncio.Server] = []
        self.connections: set[asyncio.Task[None]] = set()
        self.paths = {
            (host.index, page.path): page.body for host in web.hosts for page in host.pages
        }

    def answer(self, host: Host, target: str, host_header: str) -> tuple[int, str, bytes]:
        origin = f"http://{host_header or f'{host.address}:{host.port}'}"
        path = target.split("?", 1)[0]
        if path == "/feed.xml" and host.kind == "feed":
            return 200, "application/rss+xml", _feed(host, origin)
        if path == "/sitemap.xml" and host.kind == "sitemap":
            return 200, "application/xml", _sitemap(host, origin)
        if path == "/robots.txt":
            return 200, "text/plain", _robots(origin)
        if path == "/":
            return 200, "text/html; charset=utf-8", _home(host, origin)
        body = self.paths.get((host.index, path))
        if body is not None:
            return 200, "text/html", body
        return 404, "text/plain", b"not found"

    async def handle(
        self, host: Host, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.connections.add(task)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                parts = line.decode("latin-1").split()
                if len(parts) != 3:
                    break
                method, target, version = parts
                headers: dict[str, str] = {}
                while True:
                    raw = await reader.readline()
                    if raw in (b"\r\n", b"\n", b""):
                        break
                    key, _, value = raw.decode("latin-1").partition(":")
                    headers[key.strip().lower()] = value.strip()
                status, ctype, body = self.answer(host, target, headers.get("host", ""))
                self.web.requests[target] += 1
                if self.web.on_request is not None:
                    self.web.on_request()
                pause = self.web.slow.get(target, self.web.delay if ctype == "text/html" else 0)
                if pause:
                    await asyncio.sleep(pause)
                reason = "OK" if status == 200 else "Not Found"
                head = (
                    f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n"
                )
                writer.write(head.encode("latin-1") + (b"" if method == "HEAD" else body))
                await writer.drain()
                if headers.get("connection", "").lower() == "close" or version == "HTTP/1.0":
                    break
        except (ConnectionError, OSError, ValueError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            if task is not None:
                self.connections.discard(task)

    async def start(self) -> None:
        for host in self.web.hosts:
            server = await asyncio.start_server(
                lambda r, w, h=host: self.handle(h, r, w), host.address, host.port
            )
            self.servers.append(server)

    async def stop(self) -> None:
        for server in self.servers:
            server.close()
        for task in list(self.connections):
            task.cancel()
        await asyncio.gather(*self.connections, return_exceptions=True)
        for server in self.servers:
            await server.wait_closed()


def _assign_addresses(web: NewsWeb) -> None:
    """127.0.0.2, .3, ... with one free port shared by all of them."""
    for _attempt in range(20):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        sockets = []
        try:
            for host in web.hosts:
                host.address = f"127.0.{(host.index + 2) // 256}.{(host.index + 2) % 256}"
                host.port = port
                s = socket.socket()
                s.bind((host.address, port))
                sockets.append(s)
            return
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no port free on every loopback address")


@contextmanager
def serve_web(web: NewsWeb) -> Iterator[NewsWeb]:
    """Serve every host of `web` until the block ends."""
    _assign_addresses(web)
    server = _Server(web)
    ready = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(server.loop)
        try:
            server.loop.run_until_complete(server.start())
        except BaseException as exc:
            failure.append(exc)
            ready.set()
            return
        ready.set()
        server.loop.run_forever()
        server.loop.run_until_complete(server.stop())
        server.loop.close()

    thread = threading.Thread(target=run, name="newsweb", daemon=True)
    thread.start()
    ready.wait(30)
    if failure:
        raise failure[0]
    try:
        yield web
    finally:
        server.loop.call_soon_threadsafe(server.loop.stop)
        thread.join(10)


def main() -> None:
    """Serve a news web in the foreground: python -m tests.newsweb [HOSTS] [PAGES]."""
    import sys

    hosts = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    pages = int(sys.argv[2]) if len(sys.argv) > 2 else None
    with serve_web(build_web(hosts, pages)) as web:
        for host in web.hosts:
            print(host.kind, host.source_url(), flush=True)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main()
