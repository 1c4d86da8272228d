"""Discovery: the body of a feed, a sitemap or a listing page → candidate article URLs.

The caller fetched the body; nothing here touches the network or the file system. Every
body is untrusted, so each parser is bounded:

- feeds (RSS 2.0, Atom, RDF with feedparser; JSON Feed with json): a body that declares XML
  entities is refused before parsing (see `check_entities` for why), and the body is
  handed to feedparser as a stream, never as bytes it could take for a path or a URL;
- sitemaps (lxml): gzip is inflated in bounded steps up to `max_bytes`, a body that declares
  XML entities is refused, and the parser expands no entity and loads no DTD;
- listing pages (lxml.html): links are kept only when they stay on the page's site and their
  URL looks like an article (see `is_article_url`).

Only http(s) URLs become candidates: a feed may name ``javascript:``, ``file:`` or ``urn:``
links, and none of them is an article anyone should fetch.
"""

from __future__ import annotations

import html
import io
import json
import re
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import urldefrag, urljoin, urlsplit

import feedparser
import lxml.html
from courlan import extract_domain, is_navigation_page, is_not_crawlable
from courlan.filters import type_filter
from lxml import etree

__all__ = [
    "Candidate",
    "Discovery",
    "DiscoveryError",
    "discover",
    "is_article_url",
    "parse_feed",
    "parse_listing",
    "parse_sitemap",
]


@dataclass(frozen=True, slots=True)
class Candidate:
    """One article URL a source names, with what the source says about it.

    `url` is absolute but not canonicalised (workers.dedup does that); `published_at` is
    in UTC.

    >>> Candidate("https://news.example/2024/05/17/storm", title="Storm hits coast").title
    'Storm hits coast'
    """

    url: str
    title: str | None = None
    published_at: datetime | None = None
    author: str | None = None


@dataclass(frozen=True, slots=True)
class Discovery:
    """What one feed, sitemap or listing page yielded.

    `candidates` holds each URL once, newest first where dates are known; undated ones
    follow in document order. `child_sitemaps` are the sitemaps a sitemap index names,
    for the caller to fetch, and `child_lastmods` their ``<lastmod>`` (None where absent),
    so a backfill can skip children older than where it stops. `ttl_seconds` is the
    feed's RSS ``<ttl>``, in seconds.
    """

    candidates: tuple[Candidate, ...]
    child_sitemaps: tuple[str, ...] = ()
    ttl_seconds: int | None = None
    child_lastmods: tuple[datetime | None, ...] = ()


class DiscoveryError(ValueError):
    """The body cannot be read as the expected kind; the message says what was wrong."""


def discover(kind: Literal["feed", "sitemap", "page"], body: bytes, base_url: str) -> Discovery:
    """Read `body` as a source of kind `kind` ("feed", "sitemap" or "page")."""
    if kind == "feed":
        return parse_feed(body, base_url)
    if kind == "sitemap":
        return parse_sitemap(body, base_url)
    if kind == "page":
        return parse_listing(body, base_url)
    raise DiscoveryError(f"unknown source kind {kind!r}")


# feedparser and libxml2 decode UTF-16/32 and EBCDIC bodies before parsing, so a declaration in
# any of those encodings counts. XML keywords are case-sensitive: parsers reject `<!doctype`.
_XML_ENCODINGS = ("utf-8", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be", "cp037")
_DOCTYPE_MARKS = tuple("<!DOCTYPE".encode(enc) for enc in _XML_ENCODINGS)
_ENTITY_MARKS = tuple("<!ENTITY".encode(enc) for enc in _XML_ENCODINGS)
_BOM_AND_SPACE = b"\xef\xbb\xbf \t\r\n"
_WHITESPACE = re.compile(r"\s+")
_YEAR_MONTH = re.compile(r"(\d{4})(?:-(\d{2}))?")


def check_entities(body: bytes, kind: str) -> None:
    """Refuse XML whose DOCTYPE may declare entities (billion laughs, external entities).

    Feeds: feedparser (6.0.x, sanitizer.replace_doctype) drops entity declarations with a
    regex that only looks at the bytes before the first ``<`` + letter. A comment such as
    ``<!-- <x -->`` inside the internal subset ends that window early, the declarations
    survive, and expat expands them: a 10-level billion laughs then costs about 2 s and 50 MB
    before expat 2.5's amplification limit stops it, and smaller ones (a few MB of text) pass
    silently. That limit also depends on the expat the interpreter was built with.
    Sitemaps: lxml with resolve_entities=False expands nothing, but libxml2 still checks
    each referenced entity, hits its amplification limit on a billion laughs and, in recover
    mode, silently returns the tree parsed so far, dropping every URL after the reference.
    Neither kind has any use for entity declarations, so the body is refused outright.
    """
    if any(mark in body for mark in _DOCTYPE_MARKS) and any(m in body for m in _ENTITY_MARKS):
        raise DiscoveryError(f"{kind} declares XML entities")


# --- feeds ---------------------------------------------------------------------------------

_HTML_LINK_TYPES = ("text/html", "application/xhtml+xml")
# feedparser sets bozo for these too, yet the feed was read: a wrong charset declaration.
_BENIGN_FEED_PROBLEMS = (feedparser.CharacterEncodingOverride, feedparser.NonXMLContentType)


def parse_feed(body: bytes, base_url: str) -> Discovery:
    """Read an RSS 2.0 / RSS 1.0 (RDF) / Atom / JSON Feed body.

    A broken feed that still yields entries is read (real feeds often are slightly broken);
    one that yields none raises `DiscoveryError`, as does a body with no feed root element.
    Entries without an http(s) link are skipped; relative links resolve against `base_url`.
    """
    if body.lstrip(_BOM_AND_SPACE).startswith(b"{"):
        return parse_json_feed(body, base_url)
    check_entities(body, "feed")
    parsed = feedparser.parse(
        # A bare bytes argument is first tried as a file name (feedparser api._open_resource),
        # so a body of b"/etc/passwd" would be read from disk; a stream is only ever read.
        io.BytesIO(body),
        # application/xml without a charset makes feedparser sniff the BOM and XML prolog
        # (RFC 3023) and stops it flagging every body as "no Content-type specified".
        response_headers={"content-type": "application/xml", "content-location": base_url},
        resolve_relative_uris=False,
        sanitize_html=True,
    )
    entries: list[Any] = list(parsed.get("entries") or [])
    candidates = order_candidates(
        c for c in (read_feed_entry(entry, base_url) for entry in entries) if c is not None
    )
    if not candidates:
        # A broken feed with nothing usable in it is a broken feed, even if feedparser
        # salvaged an entry or two without links from it.
        problem = parsed.get("bozo_exception")
        if parsed.get("bozo") and not isinstance(problem, _BENIGN_FEED_PROBLEMS):
            reason = str(problem or "unreadable XML")
            raise DiscoveryError(f"malformed feed: {shorten_text(reason)}")
        if not parsed.get("version"):
            raise DiscoveryError("not a feed: no RSS, Atom or RDF root element")
    return Discovery(candidates=candidates, ttl_seconds=read_feed_ttl(parsed.get("feed") or {}))


def read_feed_entry(entry: Any, base_url: str) -> Candidate | None:
    """One feedparser entry → a Candidate, or None when it names no http(s) link."""
    link = pick_entry_link(entry)
    url = resolve_http_url(link, base_url) if link else None
    if url is None:
        return None
    return Candidate(
        url=url,
        title=clean_text(entry.get("title")),
        published_at=read_struct_time(entry.get("published_parsed"))
        or read_struct_time(entry.get("updated_parsed")),
        author=clean_text(entry.get("author")),
    )


def pick_entry_link(entry: Any) -> str | None:
    """The entry's first HTML alternate link, else its first alternate, else `link`.

    feedparser's own `link` is the *last* alternate, and a link without rel counts as one.
    rel=self and rel=enclosure name the entry document and its media, not the article.
    """
    alternates = [
        link
        for link in entry.get("links") or []
        if link.get("href") and link.get("rel", "alternate") == "alternate"
    ]
    for link in alternates:
        if link.get("type", "text/html") in _HTML_LINK_TYPES:
            return str(link["href"])
    if alternates:
        return str(alternates[0]["href"])
    link = entry.get("link")
    return str(link) if link else None


def read_feed_ttl(feed: Any) -> int | None:
    """RSS ``<ttl>`` is in minutes; the result is in seconds."""
    try:
        minutes = int(str(feed.get("ttl", "")).strip())
    except ValueError:
        return None
    return minutes * 60 if minutes > 0 else None


def parse_json_feed(body: bytes, base_url: str) -> Discovery:
    """Read a JSON Feed (https://jsonfeed.org/version/1.1) body."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        # json recurses per nesting level: "[[[[…" a few thousand deep would escape as a
        # RecursionError and fail the task instead of the source.
        raise DiscoveryError(f"malformed JSON feed: {shorten_text(str(exc))}") from None
    items = document.get("items") if isinstance(document, dict) else None
    if not isinstance(items, list):
        raise DiscoveryError("malformed JSON feed: no items list")
    candidates = (read_json_item(item, base_url) for item in items if isinstance(item, dict))
    return Discovery(candidates=order_candidates(c for c in candidates if c is not None))


def read_json_item(item: dict[str, Any], base_url: str) -> Candidate | None:
    """One JSON Feed item → a Candidate; `external_url` is the article on link blogs."""
    link = item.get("url") or item.get("external_url")
    url = resolve_http_url(link, base_url) if isinstance(link, str) else None
    if url is None:
        return None
    return Candidate(
        url=url,
        title=clean_text(item.get("title")),
        published_at=parse_date(item.get("date_published"))
        or parse_date(item.get("date_modified")),
        author=read_json_author(item),
    )


def read_json_author(item: dict[str, Any]) -> str | None:
    """JSON Feed 1.1 `authors[0].name`, else 1.0 `author.name`."""
    authors = item.get("authors")
    first = authors[0] if isinstance(authors, list) and authors else item.get("author")
    return clean_text(first.get("name")) if isinstance(first, dict) else None


# --- sitemaps ------------------------------------------------------------------------------

_GZIP_MAGIC = b"\x1f\x8b"
_STRAY_AMPERSAND = re.compile(rb"&(?!(?:amp|lt|gt|quot|apos|#[0-9]+|#x[0-9a-fA-F]+);)")
_INFLATE_STEP = 1 << 20


def parse_sitemap(body: bytes, base_url: str, *, max_bytes: int = 50 * 1024 * 1024) -> Discovery:
    """Read an XML sitemap (``<urlset>`` or ``<sitemapindex>``), gzipped or not, or a
    plain-text sitemap (one URL per line).

    Elements match on their local name, so missing or odd namespaces do not matter.
    ``published_at`` is the Google News ``news:publication_date``, else ``lastmod``; the
    title is ``news:title``. hreflang ``xhtml:link`` alternates are not candidates.
    `max_bytes` bounds the body after decompression (the protocol allows 50 MB).
    """
    if body.startswith(_GZIP_MAGIC):
        body = inflate_gzip(body, max_bytes)
    elif len(body) > max_bytes:
        raise DiscoveryError(f"sitemap larger than {max_bytes} bytes")
    if not body.strip(_BOM_AND_SPACE):
        raise DiscoveryError("sitemap is empty")
    if not body.lstrip(_BOM_AND_SPACE).startswith(b"<"):
        return parse_text_sitemap(body)
    check_entities(body, "sitemap")
    root = parse_xml(escape_stray_ampersands(body))
    name = local_name(root.tag)
    if name not in ("urlset", "sitemapindex"):
        raise DiscoveryError(f"not a sitemap: root element is <{name}>")
    candidates: list[Candidate] = []
    children: dict[str, datetime | None] = {}
    for element in iter_elements(root):
        kind = local_name(element.tag)
        if kind == "url":
            candidate = read_sitemap_url(element, base_url)
            if candidate is not None:
                candidates.append(candidate)
        elif kind == "sitemap":
            # Also inside <urlset>: some generators mix the two, and a child is still a child.
            child = resolve_http_url(find_child_text(element, "loc"), base_url)
            if child is not None and child not in children:
                children[child] = parse_date(find_child_text(element, "lastmod"))
    return Discovery(
        candidates=order_candidates(candidates),
        child_sitemaps=tuple(children),
        child_lastmods=tuple(children.values()),
    )


def inflate_gzip(body: bytes, max_bytes: int) -> bytes:
    """Decompress a gzip body (several members allowed) without ever holding more than
    `max_bytes` of output, so a gzip bomb costs `max_bytes` at most."""
    chunks: list[bytes] = []
    size = 0
    pending = body
    while pending.startswith(_GZIP_MAGIC):
        inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
        while pending and not inflater.eof:
            try:
                chunk = inflater.decompress(pending, min(_INFLATE_STEP, max_bytes - size + 1))
            except zlib.error as exc:
                raise DiscoveryError(f"sitemap is not valid gzip: {exc}") from None
            size += len(chunk)
            if size > max_bytes:
                raise DiscoveryError(f"sitemap larger than {max_bytes} bytes after decompression")
            chunks.append(chunk)
            pending = inflater.unconsumed_tail
        if not inflater.eof:
            raise DiscoveryError("sitemap gzip stream ends early")
        # Bytes after the last member are usually padding, which gzip(1) ignores too.
        pending = inflater.unused_data
    return b"".join(chunks)


def escape_stray_ampersands(body: bytes) -> bytes:
    """Escape each ``&`` that starts no predefined entity or character reference.

    Raw ``&`` in query strings is a common sitemap bug, and after the first one libxml2's
    recover mode also drops every later ``&amp;``, so ``?a=1&amp;b=2`` silently became
    ``?a=1b=2``. Named references other than the five predefined ones cannot be valid here
    (declarations are refused), so they are kept as literal text. CDATA is left untouched;
    a NUL byte means UTF-16/32, where a byte-level edit would corrupt the text.
    """
    if b"&" not in body or b"\x00" in body:
        return body
    parts: list[bytes] = []
    position = 0
    while position < len(body):
        start = body.find(b"<![CDATA[", position)
        if start < 0:
            start = len(body)
        parts.append(_STRAY_AMPERSAND.sub(b"&amp;", body[position:start]))
        end = body.find(b"]]>", start)
        end = len(body) if end < 0 else end + 3
        parts.append(body[start:end])
        position = end
    return b"".join(parts)


def parse_xml(body: bytes) -> Any:
    """Parse XML leniently but without expanding entities, loading DTDs or using the network."""
    parser = etree.XMLParser(
        resolve_entities=False,
        load_dtd=False,
        no_network=True,
        huge_tree=False,
        recover=True,
        remove_comments=True,
        remove_pis=True,
    )
    try:
        root = etree.fromstring(body, parser)
    except etree.XMLSyntaxError as exc:
        raise DiscoveryError(f"sitemap is not XML: {shorten_text(str(exc))}") from None
    if root is None:
        raise DiscoveryError("sitemap is not XML")
    return root


def parse_text_sitemap(body: bytes) -> Discovery:
    """A text sitemap holds absolute URLs, one per line; other lines are ignored."""
    lines = body.decode("utf-8", errors="replace").lstrip("\ufeff").splitlines()
    words = [line.strip() for line in lines if line.strip()]
    urls = [word for word in words if " " not in word and is_http_url(word)]
    if words and not urls:
        raise DiscoveryError("not a sitemap: neither XML nor a list of URLs")
    return Discovery(candidates=order_candidates(Candidate(url=url) for url in urls))


def read_sitemap_url(element: Any, base_url: str) -> Candidate | None:
    """One ``<url>`` → a Candidate (its ``<loc>``, ``news:news`` and ``<lastmod>``)."""
    url = resolve_http_url(find_child_text(element, "loc"), base_url)
    if url is None:
        return None
    news = find_child(element, "news")
    published = parse_date(find_child_text(news, "publication_date")) if news is not None else None
    return Candidate(
        url=url,
        title=read_news_title(news),
        published_at=published or parse_date(find_child_text(element, "lastmod")),
    )


def read_news_title(news: Any | None) -> str | None:
    """``news:title``; HTML entities some generators put there (``&nbsp;``) are decoded."""
    title = find_child_text(news, "title") if news is not None else None
    return clean_text(html.unescape(title)) if title else None


def iter_elements(parent: Any) -> Iterator[Any]:
    """The element children of `parent` (comments, PIs and entity nodes have no str tag)."""
    return (child for child in parent if isinstance(child.tag, str))


def find_child(parent: Any, name: str) -> Any | None:
    """The first child element whose local name is `name`.

    Direct children only: ``image:image`` and ``video:video`` carry their own loc and title.
    """
    return next((child for child in iter_elements(parent) if local_name(child.tag) == name), None)


def find_child_text(parent: Any, name: str) -> str | None:
    """The stripped text of the first child named `name`, or None."""
    child = find_child(parent, name)
    if child is None or any(node.tag is etree.Entity for node in child):
        # An unexpanded entity reference leaves the value unknown; a guess would be worse.
        return None
    return clean_text("".join(child.itertext()))


def local_name(tag: str) -> str:
    """``{ns}url``, ``ns:url`` (an undeclared prefix, kept by recover mode) and ``url`` → url."""
    return tag.rpartition("}")[2].rpartition(":")[2]


# --- listing pages -------------------------------------------------------------------------

_HTML_EXTENSIONS = frozenset(
    {"html", "htm", "shtml", "xhtml", "phtml", "php", "asp", "aspx", "jsp", "cfm", "cgi"}
)
_EXTENSION = re.compile(r"\.([a-z0-9]{1,5})$")
_NAVIGATION_SEGMENTS = frozenset(
    {
        *("about", "about-us", "aboutus", "account", "accounts", "advertise", "advertising"),
        *("archive", "archives", "author", "authors", "careers", "cart", "categories"),
        *("category", "contact", "contact-us", "contactus", "cookie-policy", "cookies"),
        *("donate", "faq", "faqs", "feed", "feeds", "help", "impressum", "imprint", "jobs"),
        *("legal", "log-in", "login", "logout", "newsletter", "newsletters", "page", "pages"),
        *("privacy", "privacy-policy", "profile", "register", "rss", "search", "section"),
        *("sections", "settings", "shop", "sign-in", "sign-up", "signin", "signup", "sitemap"),
        *("subscribe", "subscription", "subscriptions", "tag", "tags", "terms"),
        *("terms-of-service", "terms-of-use", "topic", "topics", "user", "users"),
    }
)
_MONTH = r"(?:0?[1-9]|1[0-2]|jan|feb|mar|apr|may|jun|jul|aug|sept?|oct|nov|dec)[a-z]*"
# /2024/05/17/slug, /2024/may/17/slug, /2024/05/slug: a date and then more; /2024/05/17/ is
# the day's archive.
_DAY = r"(?:0?[1-9]|[12]\d|3[01])"
_DATE_IN_PATH = re.compile(
    rf"/(?:19|20)\d\d/{_MONTH}/(?:{_DAY}/)?+(?!{_DAY}/?$)[^/]+", re.IGNORECASE
)
_ISO_DATE = re.compile(r"(?<!\d)(?:19|20)\d\d-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])(?!\d)")
_LONG_NUMBER = re.compile(r"(?<!\d)\d{5,}(?!\d)")
_SLUG_SEPARATORS = re.compile(r"[-_+]+")
# Section names are short and often joined by these ("science-and-environment").
_SLUG_STOPWORDS = frozenset({"a", "an", "and", "at", "by", "for", "in", "of", "on", "or", "the"})
_MIN_SLUG_WORDS = 3
_MIN_PAGE_SLUG_WORDS = 2
_MIN_TITLE_WORDS = 3


def parse_listing(body: bytes | str, base_url: str) -> Discovery:
    """Read the article links of an HTML listing page (a section front, a news index).

    Links resolve against the page URL, or its ``<base href>``. A link is kept when it is
    http(s), stays on the page's site (same host or same registrable domain, so
    ``www.example.com`` and ``example.com`` match), is not the page itself and looks like an
    article (`is_article_url`). Fragments are dropped: they name a place in a page, never
    another page. The anchor text becomes the title when it has at least three words.
    """
    document = parse_html(body)
    link_base = read_base_href(document, base_url)
    page = urldefrag(base_url).url
    found: dict[str, str | None] = {}
    for anchor in document.iter("a"):
        url = resolve_http_url(anchor.get("href"), link_base)
        if url is None:
            continue
        url = urldefrag(url).url
        if url == page or not is_same_site(url, base_url) or not is_article_url(url):
            continue
        if found.get(url) is None:
            # An image link often precedes the headline link to the same article.
            found[url] = read_anchor_title(anchor)
    return Discovery(
        candidates=tuple(Candidate(url=url, title=title) for url, title in found.items())
    )


def is_article_url(url: str) -> bool:
    """Guess from the URL alone whether it names an article rather than a site page.

    Refused: the home page; navigation and service pages (a path segment such as tag,
    category, author, page, search, login, about, contact, privacy, feed, topics, plus
    courlan's navigation and not-crawlable patterns); files (any extension other than an
    HTML or server-page one, plus courlan's strict type filter: images, media, archives,
    wp-content, date archives ending in ``/2024/05/``).
    Then at least one positive sign is needed: a date in the path (``/2024/05/17/slug``,
    ``/2024/may/17/slug``, ``2024-05-17``), a number of five or more digits (an article
    id, ``world-europe-12345678``, ``?id=17703``), or a slug of three or more words (two for
    a page name ending in .html, .php, …), not counting short joining words, so that
    sections such as ``/news/world-europe`` or ``/news/science-and-environment`` stay out.

    >>> is_article_url("https://www.bbc.com/news/world-europe-12345678")
    True
    >>> is_article_url("https://example.com/category/politics")
    False
    """
    parts = urlsplit(url)
    segments = [segment for segment in parts.path.lower().split("/") if segment]
    if not segments and not parts.query:
        return False
    if is_service_path(segments) or is_file_path(segments):
        return False
    if is_navigation_page(url) or is_not_crawlable(url) or not type_filter(url, strict=True):
        return False
    return has_article_sign(parts.path, parts.query, segments)


def is_service_path(segments: list[str]) -> bool:
    """True when a path segment (without extension) names a navigation or service page."""
    return any(_EXTENSION.sub("", segment) in _NAVIGATION_SEGMENTS for segment in segments)


def is_file_path(segments: list[str]) -> bool:
    """True when the last segment has an extension that is not an HTML or server page."""
    match = _EXTENSION.search(segments[-1]) if segments else None
    if match is None or match[1].isdigit():
        return False
    return match[1] not in _HTML_EXTENSIONS


def has_article_sign(path: str, query: str, segments: list[str]) -> bool:
    """A date in the path, a long number (an id) or a long slug."""
    if _DATE_IN_PATH.search(path) or _ISO_DATE.search(path):
        return True
    if _LONG_NUMBER.search(path) or _LONG_NUMBER.search(query):
        return True
    if not segments:
        return False
    slug = _EXTENSION.sub("", segments[-1])
    words = [
        word
        for word in _SLUG_SEPARATORS.split(slug)
        if word not in _SLUG_STOPWORDS and any(c.isalpha() for c in word)
    ]
    # A page name (incendie-frain.html) is a document, where a bare path may be a section.
    is_page = slug != segments[-1]
    return len(words) >= (_MIN_PAGE_SLUG_WORDS if is_page else _MIN_SLUG_WORDS)


def is_same_site(url: str, page_url: str) -> bool:
    """Same host, or the same registrable domain (public suffix list, via courlan/tld)."""
    host = urlsplit(url).hostname
    page_host = urlsplit(page_url).hostname
    if not host or not page_host:
        return False
    if host == page_host:
        return True
    domain = extract_domain(url)
    return domain is not None and domain == extract_domain(page_url)


def parse_html(body: bytes | str) -> Any:
    """Parse an HTML page; bytes that are valid UTF-8 are read as UTF-8, others are left to
    libxml2, which honours the page's ``<meta charset>``."""
    text = decode_utf8(body)
    try:
        try:
            return lxml.html.document_fromstring(text)
        except ValueError:
            if isinstance(text, bytes):
                raise
            # lxml refuses str input that carries an XML encoding declaration.
            return lxml.html.document_fromstring(text.encode("utf-8"))
    except (ValueError, etree.ParserError) as exc:
        raise DiscoveryError(f"unreadable page: {shorten_text(str(exc))}") from None


def decode_utf8(body: bytes | str) -> bytes | str:
    """`body` as text when it is valid UTF-8 (as is most of the web), else unchanged."""
    if isinstance(body, str):
        return body
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return body


def read_base_href(document: Any, page_url: str) -> str:
    """The page's ``<base href>`` resolved against its URL, when it is http(s)."""
    for base in document.iter("base"):
        href = base.get("href")
        if href:
            return resolve_http_url(href, page_url) or page_url
    return page_url


def read_anchor_title(anchor: Any) -> str | None:
    """The anchor text, whitespace collapsed, when it is long enough to be a headline."""
    text = clean_text(anchor.text_content())
    if text is None or len(text.split()) < _MIN_TITLE_WORDS:
        return None
    return text


# --- shared helpers ------------------------------------------------------------------------


def order_candidates(candidates: Iterable[Candidate]) -> tuple[Candidate, ...]:
    """First occurrence of each URL wins; dated ones newest first, undated after, in order."""
    unique: dict[str, Candidate] = {}
    for candidate in candidates:
        unique.setdefault(candidate.url, candidate)
    # sorted() is stable, so equal dates and all undated candidates keep document order.
    return tuple(
        sorted(
            unique.values(),
            key=lambda c: (
                c.published_at is None,
                -c.published_at.timestamp() if c.published_at else 0.0,
            ),
        )
    )


def resolve_http_url(link: str | None, base_url: str) -> str | None:
    """`link` made absolute against `base_url`, or None unless it is an http(s) URL."""
    if not link:
        return None
    try:
        url = urljoin(base_url, link.strip())
    except ValueError:
        return None
    return url if is_http_url(url) else None


def is_http_url(url: str) -> bool:
    """An absolute http(s) URL with a host."""
    try:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        return False


def parse_date(value: object) -> datetime | None:
    """A W3C/ISO 8601 or RFC 822 date → a UTC datetime (taken as UTC when it has no zone)."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    parsed: datetime | None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        parsed = parse_partial_date(text)
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    # One zone for every source: feedparser already hands over UTC.
    return parsed.astimezone(UTC)


def parse_partial_date(text: str) -> datetime | None:
    """W3C's year and year-month forms (``2024``, ``2024-05``), else an RFC 822 date."""
    match = _YEAR_MONTH.fullmatch(text)
    if match is not None:
        try:
            return datetime(int(match[1]), int(match[2] or 1), 1, tzinfo=UTC)
        except ValueError:
            return None
    try:
        return parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None


def read_struct_time(value: object) -> datetime | None:
    """feedparser's `*_parsed` values are time.struct_time tuples, already in UTC."""
    if not isinstance(value, time.struct_time):
        return None
    try:
        return datetime(*value[:6], tzinfo=UTC)
    except ValueError:
        return None


def clean_text(value: object) -> str | None:
    """Whitespace collapsed and stripped; None when nothing is left or it is not a string."""
    if not isinstance(value, str):
        return None
    return _WHITESPACE.sub(" ", value).strip() or None


def shorten_text(text: str, limit: int = 200) -> str:
    """Error messages quote parser messages; keep them to one short line."""
    text = _WHITESPACE.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"
