"""Fetching with httpx: bounded, safe against hostile URLs, never raising for a bad page.

`Fetcher.fetch` returns a `FetchResult` for every outcome; a failure is a value with a
short machine-readable ``status`` (the vocabulary of ``fetches.status``) and a readable
``error``, so one bad page costs one failure row and never a worker.

Safety: every hop's host is resolved here, each address is checked against the blocked
ranges (private, loopback, link-local, multicast, reserved) unless an operator allowed its
network, and the connection goes to the checked address itself, so a DNS answer that
changes between check and connect (rebinding) cannot reach an internal service.
"""

from __future__ import annotations

import codecs
import ipaddress
import re
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Literal
from urllib.parse import urljoin, urlsplit

import charset_normalizer
import httpx

from workers.settings import Network, Settings

Expect = Literal["html", "xml", "text"]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Types worth downloading for an article page; anything else is refused before the body.
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
# Feeds and sitemaps are served under many names (text/html included, sadly); only types
# that cannot be one are refused.
REFUSED_FOR_XML = ("image/", "audio/", "video/", "font/")
REFUSED_XML_TYPES = frozenset({"application/pdf", "application/zip", "application/msword"})
# Magic numbers of binary formats that servers mislabel as text/html.
BINARY_MAGIC = (
    b"%PDF-",
    b"PK\x03\x04",
    b"\x89PNG",
    b"GIF8",
    b"\xff\xd8\xff",
    b"\x1f\x8b",
    b"Rar!",
    b"7z\xbc\xaf",
    b"\x00\x00\x01\x00",
    b"OggS",
    b"ID3",
)
# Legacy encodings by how common they are on the web, to break a detector's ties.
WEB_ENCODINGS = (
    "cp1252",
    "iso8859-1",
    "iso8859-15",
    "cp1251",
    "shift_jis",
    "cp932",
    "euc_jp",
    "gb18030",
    "gbk",
    "big5",
    "euc_kr",
    "koi8-r",
    "iso8859-2",
    "cp1250",
    "cp1256",
    "cp1253",
    "cp1254",
)
WESTERN_SINGLE_BYTE = frozenset({"cp1252", "iso8859-1", "iso8859-15", "cp1250", "iso8859-2"})
ACCEPT = {
    "html": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1",
    "xml": "application/rss+xml,application/atom+xml,application/xml,text/xml;q=0.9,*/*;q=0.5",
    "text": "text/plain,*/*;q=0.1",
}
RETRYABLE_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504})
_META_CHARSET = re.compile(
    rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_\-:.]+)""", re.IGNORECASE
)
_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]+encoding\s*=\s*["']([A-Za-z0-9_\-.]+)""")


@dataclass(frozen=True, slots=True)
class FetchResult:
    """What one fetch produced. ``status == "ok"`` means ``body`` holds the whole body."""

    url: str
    status: str
    final_url: str | None = None
    http_status: int | None = None
    body: bytes = b""
    content_type: str | None = None
    charset: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    retry_after: str | None = None
    cache_control: str | None = None
    error: str | None = None
    retryable: bool = False
    elapsed_ms: int = 0
    redirects: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class FetchFailure(Exception):
    """Internal: carries a failure status out of the fetch loop."""

    def __init__(
        self,
        status: str,
        error: str,
        *,
        http_status: int | None = None,
        retryable: bool = False,
        retry_after: str | None = None,
    ) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.http_status = http_status
        self.retryable = retryable
        # An error response may still say when to come back (429/503 Retry-After).
        self.retry_after = retry_after


def is_blocked_address(address: IPAddress, allowed: Iterable[Network]) -> bool:
    """True for addresses a crawler must not reach unless an operator allowed their network.

    >>> is_blocked_address(ipaddress.ip_address("169.254.169.254"), ())
    True
    >>> is_blocked_address(ipaddress.ip_address("127.0.0.1"), [ipaddress.ip_network("127.0.0.0/8")])
    False
    """
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address.version == net.version and address in net for net in allowed):
        return False
    return (
        not address.is_global
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or address.is_loopback
        or address.is_link_local
        or address.is_private
    )


def resolve_host(host: str, port: int) -> list[IPAddress]:
    """All addresses the host resolves to (an IP literal resolves to itself)."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def media_type(content_type: str | None) -> str | None:
    if not content_type:
        return None
    return content_type.split(";", 1)[0].strip().lower() or None


def header_charset(content_type: str | None) -> str | None:
    if not content_type:
        return None
    match = re.search(r"charset\s*=\s*[\"']?([^\s;\"']+)", content_type, re.IGNORECASE)
    return match.group(1) if match else None


def looks_binary(head: bytes) -> bool:
    """True when the first bytes belong to a binary format (or hold NUL bytes)."""
    stripped = head.lstrip()
    if any(stripped.startswith(magic) for magic in BINARY_MAGIC):
        return True
    # UTF-16 text has NULs too, but it announces itself with a BOM.
    return b"\x00" in head[:1024] and not head.startswith(
        (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
    )


def _codec_name(label: str | bytes | None) -> str | None:
    if not label:
        return None
    if isinstance(label, bytes):
        label = label.decode("ascii", "ignore")
    try:
        return codecs.lookup(label.strip()).name
    except LookupError:
        return None


def declared_charsets(body: bytes, content_type: str | None) -> list[str]:
    """Encodings the response claims, in order of authority: header, XML prolog, <meta>."""
    found: list[str] = []
    prolog = _XML_ENCODING.search(body[:200])
    meta = _META_CHARSET.search(body[:65536])
    for label in (header_charset(content_type), prolog and prolog.group(1), meta and meta.group(1)):
        name = _codec_name(label)
        if name and name not in found:
            found.append(name)
    return found


def mostly_isolated_high_bytes(body: bytes) -> bool:
    """True when non-ASCII bytes are sparse and stand alone or in pairs between ASCII bytes.

    That is how accented letters look in Western European single-byte text ("Grüße" has one
    pair). In double-byte encodings (Shift_JIS, GBK, Big5, EUC) and in Cyrillic or Greek
    text, high bytes are dense and come in long runs.
    """
    sample = body[:200_000]
    runs: list[int] = []
    length = high = 0
    for byte in sample:
        if byte >= 0x80:
            length += 1
            high += 1
        elif length:
            runs.append(length)
            length = 0
    if length:
        runs.append(length)
    if not runs:
        return False
    short = sum(1 for run in runs if run <= 2)
    return short / len(runs) >= 0.9 and high / len(sample) < 0.1


def decode_body(body: bytes, content_type: str | None = None) -> tuple[str, str]:
    """Decode a page whose declared encoding may be wrong; returns (text, encoding used).

    Valid UTF-8 wins: multi-byte UTF-8 sequences almost never occur by accident in legacy
    encodings, while pages that declare latin-1 and send UTF-8 are common. Otherwise the
    declaration is trusted only when a detector finds the bytes consistent with it.
    """
    if (marked := _decode_bom(body)) is not None:
        return marked
    if (text := _strict_utf8(body)) is not None:
        return text, "utf-8"
    return _decode_legacy(body, content_type)


def decode_page(body: bytes, content_type: str | None = None) -> tuple[str, bytes | None]:
    """decode_body's text, with the body itself when the text is its strict UTF-8 decoding
    (bytes lxml parses faster than the text: workers.extract.load_tree), else None."""
    # The same steps as decode_body; after a BOM the text is not the bytes' (the BOM dropped).
    if (marked := _decode_bom(body)) is not None:
        return marked[0], None
    if (text := _strict_utf8(body)) is not None:
        return text, body
    return _decode_legacy(body, content_type)[0], None


def _decode_bom(body: bytes) -> tuple[str, str] | None:
    for bom, name in (
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if body.startswith(bom):
            return body.decode(name, "replace").lstrip("\ufeff"), name
    return None


def _strict_utf8(body: bytes) -> str | None:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _decode_legacy(body: bytes, content_type: str | None) -> tuple[str, str]:
    """decode_body for a body that is not UTF-8 and has no BOM."""
    declared = [name for name in declared_charsets(body, content_type) if name != "utf-8"]
    if mostly_isolated_high_bytes(body):
        # Accented letters between ASCII ones: a Western single-byte page. Detectors guess
        # CJK double-byte encodings here when accents are few.
        single = [n for n in declared if n in WESTERN_SINGLE_BYTE]
        name = single[0] if single else "cp1252"
        return body.decode(name, "replace"), name
    matches = list(charset_normalizer.from_bytes(body[:200_000]))
    if matches:
        best = matches[0]
        plausible = {_codec_name(cs) for cs in best.could_be_from_charset}
        for name in declared:
            if name in plausible:
                return body.decode(name, "replace"), name
        # The detector often ranks look-alike code pages equally (cp1250 and cp1252 read
        # French the same, but not "à"): among equals, take the one most used on the web.
        tied = [
            _codec_name(m.encoding) or m.encoding
            for m in matches
            if m.chaos <= best.chaos + 0.01 and m.coherence >= best.coherence - 0.01
        ]
        detected = min(tied, key=lambda n: WEB_ENCODINGS.index(n) if n in WEB_ENCODINGS else 99)
        return body.decode(detected, "replace"), detected
    for name in declared:
        try:
            return body.decode(name), name
        except UnicodeDecodeError:
            continue
    return body.decode("utf-8", "replace"), "utf-8"


class Fetcher:
    """One HTTP client per process, with the limits and network policy from Settings.

    >>> fetcher = Fetcher(settings)                                    # doctest: +SKIP
    >>> result = fetcher.fetch("https://example.com/news/1", expect="html")  # doctest: +SKIP
    >>> result.status, result.http_status                              # doctest: +SKIP
    ('ok', 200)
    """

    def __init__(self, settings: Settings, transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        self.client = httpx.Client(
            timeout=httpx.Timeout(
                connect=settings.connect_timeout,
                read=settings.read_timeout,
                write=settings.read_timeout,
                pool=settings.connect_timeout,
            ),
            headers={"User-Agent": settings.user_agent},
            follow_redirects=False,
            # Connections go to checked IP addresses; an environment proxy would bypass that.
            trust_env=False,
            transport=transport,
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
        )

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fetch(
        self,
        url: str,
        *,
        expect: Expect = "html",
        max_bytes: int | None = None,
        etag: str | None = None,
        last_modified: str | None = None,
    ) -> FetchResult:
        """Fetch url, following redirects by hand so every hop is checked. Never raises."""
        limit = max_bytes or (
            self.settings.max_page_bytes if expect == "html" else self.settings.max_feed_bytes
        )
        started = time.monotonic()
        deadline = started + self.settings.total_timeout
        current = url
        hops: list[str] = []
        last_http: int | None = None
        try:
            for _ in range(self.settings.max_redirects + 1):
                result = self._fetch_once(
                    current,
                    expect,
                    limit,
                    deadline,
                    etag if not hops else None,
                    last_modified if not hops else None,
                )
                if isinstance(result, str):  # a redirect to follow
                    hops.append(current)
                    if result in hops:
                        raise FetchFailure(
                            "too_many_redirects", f"redirect loop: {' -> '.join([*hops, result])}"
                        )
                    current = result
                    continue
                return replace(
                    result,
                    url=url,
                    elapsed_ms=int((time.monotonic() - started) * 1000),
                    redirects=tuple(hops),
                )
            raise FetchFailure(
                "too_many_redirects", f"more than {self.settings.max_redirects} redirects"
            )
        except FetchFailure as failure:
            return FetchResult(
                url=url,
                status=failure.status,
                final_url=current if failure.http_status else None,
                http_status=failure.http_status or last_http,
                error=failure.error,
                retryable=failure.retryable,
                retry_after=failure.retry_after,
                elapsed_ms=int((time.monotonic() - started) * 1000),
                redirects=tuple(hops),
            )

    def _check_target(self, url: str) -> tuple[httpx.URL, dict[str, str], dict[str, str]]:
        """Validate scheme and address; return the URL to connect to, headers and extensions."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise FetchFailure("invalid_url", f"unsupported scheme {parts.scheme!r} in {url[:200]}")
        host = parts.hostname
        if not host:
            raise FetchFailure("invalid_url", f"no host in {url[:200]}")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise FetchFailure("invalid_url", f"bad port in {url[:200]}") from None
        try:
            addresses = resolve_host(host, port)
        except socket.gaierror as exc:
            # A name that does not exist will not exist in 30 s either; only a resolver
            # that could not answer (EAI_AGAIN) is worth retrying.
            raise FetchFailure(
                "connect_error",
                f"cannot resolve {host}: {exc.strerror or exc}",
                retryable=exc.errno == socket.EAI_AGAIN,
            ) from None
        except (OSError, UnicodeError) as exc:
            raise FetchFailure(
                "connect_error", f"cannot resolve {host}: {exc}", retryable=True
            ) from None
        allowed = self.settings.allowed_networks
        usable = [a for a in addresses if not is_blocked_address(a, allowed)]
        blocked = [a for a in addresses if a not in usable]
        if blocked or not usable:
            shown = ", ".join(str(a) for a in (blocked or addresses))
            raise FetchFailure(
                "blocked_address",
                f"{host} resolves to {shown}, a private, loopback, link-local or reserved "
                "address (allow its network with NEWSAGG_ALLOWED_NETWORKS in the worker's "
                "environment)",
            )
        try:
            target = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise FetchFailure("invalid_url", f"invalid URL {url[:200]}: {exc}") from None
        headers = {"Host": target.netloc.decode("ascii")}
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        return target.copy_with(host=str(usable[0])), headers, extensions

    def _fetch_once(
        self,
        url: str,
        expect: Expect,
        limit: int,
        deadline: float,
        etag: str | None,
        last_modified: str | None,
    ) -> FetchResult | str:
        target, headers, extensions = self._check_target(url)
        headers["Accept"] = ACCEPT[expect]
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        if time.monotonic() >= deadline:
            raise FetchFailure("timeout", "total time limit reached", retryable=True)
        try:
            with self.client.stream("GET", target, headers=headers, extensions=extensions) as resp:
                return self._read_response(url, resp, expect, limit, deadline)
        except httpx.TimeoutException as exc:
            raise FetchFailure(
                "timeout",
                f"{type(exc).__name__} after {self.settings.read_timeout:g}s read "
                f"/ {self.settings.connect_timeout:g}s connect limit",
                retryable=True,
            ) from None
        except httpx.DecodingError as exc:
            raise FetchFailure("protocol_error", f"cannot decode response body: {exc}") from None
        except (httpx.RemoteProtocolError, httpx.LocalProtocolError) as exc:
            raise FetchFailure(
                "protocol_error", f"HTTP protocol error: {exc}", retryable=True
            ) from None
        except httpx.TransportError as exc:
            raise FetchFailure(
                "connect_error",
                f"{type(exc).__name__}: {exc or 'connection failed'}",
                retryable=True,
            ) from None

    def _read_response(
        self, url: str, resp: httpx.Response, expect: Expect, limit: int, deadline: float
    ) -> FetchResult | str:
        status = resp.status_code
        content_type = resp.headers.get("content-type")
        response = FetchResult(
            url=url,
            status="ok",
            final_url=url,
            http_status=status,
            content_type=content_type,
            charset=header_charset(content_type),
            etag=resp.headers.get("etag"),
            last_modified=resp.headers.get("last-modified"),
            retry_after=resp.headers.get("retry-after"),
            cache_control=resp.headers.get("cache-control"),
        )
        if status in (301, 302, 303, 307, 308):
            location = resp.headers.get("location")
            if not location:
                raise FetchFailure(
                    "http_error", f"HTTP {status} without Location", http_status=status
                )
            return str(urljoin(url, location.strip()))
        if status == 304:
            return replace(response, status="not_modified")
        if status >= 400 or status < 200:
            reason = resp.reason_phrase or ""
            raise FetchFailure(
                "http_error",
                f"HTTP {status} {reason}".strip(),
                http_status=status,
                retryable=status in RETRYABLE_HTTP,
                retry_after=resp.headers.get("retry-after"),
            )
        mtype = media_type(content_type)
        self._check_content_type(mtype, expect, status)
        length = resp.headers.get("content-length")
        if length and length.isdigit() and int(length) > limit:
            raise FetchFailure(
                "too_large",
                f"Content-Length {int(length):,} exceeds the {limit:,}-byte limit",
                http_status=status,
            )
        chunks: list[bytes] = []
        size = 0
        # iter_bytes yields decompressed data, so the limit also stops a gzip bomb.
        for chunk in resp.iter_bytes():
            size += len(chunk)
            if size > limit:
                raise FetchFailure(
                    "too_large", f"body exceeds the {limit:,}-byte limit", http_status=status
                )
            if not chunks and chunk and expect != "xml" and looks_binary(chunk[:1024]):
                raise FetchFailure(
                    "unsupported_content",
                    f"binary content served as {mtype or 'no content type'}",
                    http_status=status,
                )
            chunks.append(chunk)
            if time.monotonic() > deadline:
                raise FetchFailure(
                    "timeout",
                    f"body not complete within {self.settings.total_timeout:g}s",
                    http_status=status,
                    retryable=True,
                )
        return replace(response, body=b"".join(chunks))

    @staticmethod
    def _check_content_type(mtype: str | None, expect: Expect, status: int) -> None:
        if mtype is None:
            return  # decided by sniffing the first bytes
        if expect == "html":
            if mtype in HTML_TYPES:
                return
        elif expect == "text":
            if mtype.startswith("text/"):
                return
        elif not mtype.startswith(REFUSED_FOR_XML) and mtype not in REFUSED_XML_TYPES:
            return
        wanted = {"html": "HTML", "xml": "a feed or sitemap", "text": "text"}[expect]
        raise FetchFailure(
            "unsupported_content", f"content type {mtype} is not {wanted}", http_status=status
        )
