"""Deduplication: URL canonicalisation and content fingerprints.

Two layers keep one article from becoming several rows:
- the URL: `canonicalise_url` folds the variants one article is linked by (tracking
  parameters, fragments, host case, default ports) into one key;
- the text: `content_hash` gives equal texts an equal key, so the same text at another URL
  is stored as a duplicate of the earliest copy.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from urllib.parse import urljoin, urlsplit

from courlan import normalize_url

_WHITESPACE = re.compile(r"\s+")


class InvalidURL(ValueError):
    """Not an absolute http(s) URL."""


def canonicalise_url(url: str, base: str | None = None) -> str:
    """Fold the variants of one URL into one key.

    Tracking parameters (utm_*, fbclid, gclid, …, courlan's list) and the fragment are
    dropped, scheme and host lower-cased, default ports removed, remaining query parameters
    sorted. Other parameters are kept: on many sites (``?storyId=123``) they *are* the article.

    >>> canonicalise_url("HTTPS://News.Example.com:443/a/b?utm_source=rss&id=5#top")
    'https://news.example.com/a/b?id=5'
    """
    url = url.strip()
    if base:
        url = urljoin(base, url)
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise InvalidURL(f"not an absolute http(s) URL: {url[:200]!r}")
    try:
        normalised = normalize_url(parts._replace(fragment=""), strict=False)
    except ValueError as exc:
        raise InvalidURL(f"cannot normalise URL {url[:200]!r}: {exc}") from None
    # courlan keeps a normalised fragment in non-strict mode; a fragment never names
    # another article.
    return str(normalised).split("#", 1)[0]


def same_site(url_a: str, url_b: str) -> bool:
    """True when both URLs are on the same registrable site (www. and subdomains folded).

    Used to decide whether a page's rel=canonical may be trusted: a page may say which of
    its own URLs is canonical, but must not claim another site's article.
    """
    host_a = (urlsplit(url_a).hostname or "").removeprefix("www.")
    host_b = (urlsplit(url_b).hostname or "").removeprefix("www.")
    if not host_a or not host_b:
        return False
    return host_a == host_b or host_a.endswith("." + host_b) or host_b.endswith("." + host_a)


def normalise_text(text: str) -> str:
    """The form texts are compared in: NFKC, case-folded, whitespace collapsed."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def content_hash(text: str) -> str:
    """SHA-256 (hex) of the normalised text: equal for texts that differ only in case or spacing."""
    return hashlib.sha256(normalise_text(text).encode("utf-8")).hexdigest()
