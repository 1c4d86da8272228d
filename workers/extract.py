"""Extraction: an HTML page → an `Article` (clean text and metadata), with trafilatura.

Feed-provided title, date and author (`FeedHints`) fill what the page does not say.
Rules where the page and the feed disagree:
- title: the page's headline (without the site-name suffix), else the feed's;
- published_at: the feed's timestamp when it falls within a day of the page's date (pages
  often state only the day, feeds the minute), else the page's date, else the feed's;
- author: the page's byline, else the feed's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urljoin, urlsplit

import py3langid
from lxml import etree
from lxml.html import HtmlElement
from trafilatura import bare_extraction
from trafilatura.utils import load_html

from workers.dedup import InvalidURL, canonicalise_url, same_site

# Separators sites put between headline and site name ("Title | CBC News", "Title - BBC").
_TITLE_SEPARATORS = re.compile(r"\s+(?:\||-|–|—|::|·|•|»|/)\s+")
_HTML_LANG = re.compile(
    rb"<html\b[^>]*?\blang\s*=\s*[\"']?([A-Za-z]{2,3})(?:[-_][A-Za-z0-9]+)?", re.I
)
_NON_WORD = re.compile(r"[\W_]+")
# Only these date formats are asked of htmldate; a time part is present when the page has one.
_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S%z"


@dataclass(frozen=True, slots=True)
class FeedHints:
    """What the feed or sitemap said about an article: fallbacks for extraction."""

    title: str | None = None
    published_at: datetime | None = None
    author: str | None = None


@dataclass(frozen=True, slots=True)
class Article:
    """An extracted article, ready to store."""

    url: str
    canonical_url: str
    title: str | None
    author: str | None
    published_at: datetime | None
    language: str | None
    sitename: str | None
    description: str | None
    tags: tuple[str, ...]
    image_url: str | None
    text: str
    # Where each date came from: "feed", "metadata" (the page's meta tags, JSON-LD, <time>),
    # "url" (a date in the URL) or "text" (found in the visible text): a consumer can tell
    # a confident date from a guess.
    published_source: str | None = None
    modified_at: datetime | None = None
    modified_source: str | None = None
    authors: tuple[str, ...] = ()

    @property
    def word_count(self) -> int:
        return len(self.text.split())


class EmptyExtraction(ValueError):
    """The page holds no article text (or too little to be one)."""


class TooComplex(ValueError):
    """The page's tree is too large or too deep to extract safely."""


def load_tree(html: str, max_elements: int, max_depth: int) -> HtmlElement:
    """Parse once and check the tree's size and depth before trafilatura walks it.

    trafilatura's own MAX_TREE_SIZE is checked on its output, after the work is done; a
    page of a million elements or a nesting that libxml2 cuts at depth 255 is refused here
    instead, in well under a millisecond for a normal page.
    """
    tree = load_html(html)
    if tree is None:
        raise EmptyExtraction("not parseable as HTML")
    count = depth = 0
    for event, _element in etree.iterwalk(tree, events=("start", "end")):
        if event == "end":
            depth -= 1
            continue
        count += 1
        depth += 1
        if count > max_elements:
            raise TooComplex(f"more than {max_elements:,} elements")
        if depth > max_depth:
            raise TooComplex(f"elements nested deeper than {max_depth} levels")
    return tree


def _key(text: str) -> str:
    return _NON_WORD.sub("", text.casefold())


def clean_title(
    title: str | None,
    sitename: str | None = None,
    host: str | None = None,
    author: str | None = None,
) -> str | None:
    """Drop a leading or trailing site name (or author) from a headline.

    >>> clean_title("Storm hits coast | CBC News", "CBC News")
    'Storm hits coast'
    >>> clean_title("BBC News - Storm hits coast", None, "www.bbc.co.uk")
    'Storm hits coast'
    >>> clean_title("Pay rise - or pay cut?", "Example Times")
    'Pay rise - or pay cut?'
    """
    if not title:
        return None
    title = " ".join(title.split())
    names = {_key(n) for n in (sitename, author) if n}
    if host:
        labels = [label for label in host.lower().split(".") if label not in ("www", "m", "amp")]
        if labels:
            names.add(_key(labels[0]))
    names.discard("")
    parts = _TITLE_SEPARATORS.split(title)
    if len(parts) < 2 or not names:
        return title

    def is_name(part: str) -> bool:
        key = _key(part)
        return bool(key) and any(key == n or key.startswith(n) or n.startswith(key) for n in names)

    # Only whole separated parts are dropped, and never the last remaining one, so a
    # headline that merely contains a dash survives.
    while len(parts) > 1 and is_name(parts[-1]):
        parts.pop()
    while len(parts) > 1 and is_name(parts[0]):
        parts.pop(0)
    rebuilt = _rejoin(title, parts)
    return rebuilt or title


def _rejoin(title: str, parts: list[str]) -> str:
    """Cut the original title from the first kept part to the end of the last one."""
    start = title.find(parts[0])
    end = title.rfind(parts[-1]) + len(parts[-1])
    return title[start:end].strip() if start >= 0 and end > start else " ".join(parts)


def parse_page_date(value: str | None) -> datetime | None:
    """trafilatura's date string → aware datetime (UTC when the page gives no zone)."""
    if not value:
        return None
    for fmt in (_DATE_FORMAT, "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
        try:
            parsed = datetime.strptime(value, fmt)
        except ValueError:
            continue
        # The page's own offset is kept: the instant is what Postgres stores, and the day in
        # the publisher's zone is what a reader (and the benchmark's ground truth) calls the date.
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def choose_published(page: datetime | None, feed: datetime | None) -> datetime | None:
    """The rule in the module docstring: prefer the feed's precise time when it agrees."""
    if page is None:
        return feed
    if feed is None:
        return page
    return feed if abs(feed - page) <= timedelta(days=1) else page


def detect_language(html: str, text: str) -> str | None:
    """The page's declared language (<html lang>), else the text's detected language."""
    match = _HTML_LANG.search(html[:5000].encode("utf-8", "ignore"))
    if match:
        return match.group(1).decode("ascii").lower()
    if len(text) < 20:
        return None
    lang, _score = py3langid.classify(text[:5000])
    return str(lang)


def split_tags(values: list[str] | None) -> tuple[str, ...]:
    """trafilatura gives comma-joined strings, sometimes repeated; → unique, ordered tags."""
    seen: dict[str, None] = {}
    for value in values or ():
        for tag in value.split(","):
            tag = tag.strip()
            if tag and tag.casefold() not in {t.casefold() for t in seen}:
                seen[tag] = None
    return tuple(seen)


def resolve_canonical(final_url: str, declared: str | None) -> str:
    """The page's rel=canonical when it stays on the same site, else the final URL."""
    if declared:
        candidate = urljoin(final_url, declared.strip())
        if candidate.startswith(("http://", "https://")) and same_site(candidate, final_url):
            try:
                return canonicalise_url(candidate)
            except InvalidURL:
                pass
    return canonicalise_url(final_url)


def _host_names(host: str | None) -> tuple[str, ...]:
    """trafilatura falls back to the host as site name; that is not a name."""
    return (host, host.removeprefix("www.")) if host else ()


def run_trafilatura(html: str | HtmlElement, url: str) -> Any:
    """trafilatura with the production settings (see DESIGN.md): no comments, no in-process
    dedup (it would silently drop syndicated copies), metadata on, dates with time."""
    return bare_extraction(
        html,
        url=url,
        with_metadata=True,
        include_comments=False,
        deduplicate=False,
        date_extraction_params={
            "extensive_search": True,
            "original_date": True,
            "outputformat": _DATE_FORMAT,
        },
    )


def extract_article(
    html: str,
    url: str,
    hints: FeedHints | None = None,
    *,
    min_text_chars: int = 100,
    max_elements: int = 100_000,
    max_depth: int = 200,
) -> Article:
    """Extract the article at url (its final URL, after redirects) from its decoded HTML.

    Raises EmptyExtraction when the page holds less than min_text_chars of main text, and
    TooComplex when its tree is beyond the bounds.
    """
    hints = hints or FeedHints()
    doc = run_trafilatura(load_tree(html, max_elements, max_depth), url)
    text = (doc.text or "").strip() if doc is not None else ""
    if len(text) < min_text_chars:
        found = f"{len(text)} characters" if text else "no main text"
        raise EmptyExtraction(f"{found} extracted (minimum {min_text_chars})")
    host = urlsplit(url).hostname
    sitename = (doc.sitename or "").strip() or None
    author = (doc.author or "").strip() or hints.author
    title = clean_title(doc.title, sitename, host, author) or clean_title(
        hints.title, sitename, host
    )
    return Article(
        url=url,
        canonical_url=resolve_canonical(url, doc.url if doc.url != url else None),
        title=title,
        author=author,
        published_at=choose_published(parse_page_date(doc.date), hints.published_at),
        language=detect_language(html, text),
        sitename=sitename if sitename and sitename.lower() not in _host_names(host) else None,
        description=(doc.description or "").strip() or None,
        tags=split_tags([*(doc.categories or []), *(doc.tags or [])]),
        image_url=doc.image or None,
        text=text,
    )
