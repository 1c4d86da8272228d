"""Extraction: an HTML page → an `Article` (clean text and metadata), with trafilatura.

Feed-provided title, date and author (`FeedHints`) fill what the page does not say.
Rules where the page and the feed disagree:
- title: the page's headline (without the site-name suffix), else the feed's;
- published_at: the feed's timestamp when it falls within a day of the page's date (pages
  often state only the day, feeds the minute), else the page's date, else the feed's;
- author: the page's byline, else the feed's; `authors` splits it into names.

`published_source` says where published_at came from. The page's date is the first found of:
1. "metadata": the page's markup (meta tags, JSON-LD, <time datetime>, date-classed
   elements), i.e. htmldate without its extensive search;
2. "url": a full date in the URL's path (/2024/05/17/, 2024-05-17, /20240517/);
3. "text": htmldate's extensive search of the visible text, the least reliable (a bare year,
   such as a copyright line, is not taken for a day). It is not run when the feed gives a
   plausible date: the publisher's own feed or sitemap is a better source than a guess from
   the text (and that search is the dearest step of extraction, 15 ms a page).
"feed" is the feed's timestamp, when it wins by the rule above (shown in the page's zone).

`modified_at` is the page's last-modified date read from its meta tags or JSON-LD only
(htmldate's first two steps, with original_date=False: a modified-time meta tag first), kept
only when it is later than published_at. Neither the visible text nor the page's elements
are searched: on the 962 corpus pages with a dated markup, the element search adds a
modified date to 5 (two of them the publication time read in another zone) for four fifths
of the search's time.

Plausible dates only: one before 1995-01-01 (no news site existed) or more than a day ahead
of the clock (`now`) is dropped, from any source, and the next source is used instead.

Each datetime keeps the offset the page gives (Postgres stores the instant; the day in the
publisher's zone is what readers call the date). A page that states its time in UTC is shown
in the offset it writes elsewhere, else in its country-code domain's zone (see localise_utc).
"""

from __future__ import annotations

import re
import zoneinfo
from collections import Counter
from copy import copy
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, TypeGuard
from urllib.parse import urljoin, urlsplit

import lxml.html
import py3langid
from htmldate import find_date
from htmldate.core import examine_header
from htmldate.extractors import COMPLETE_URL as _HTMLDATE_URL_DATE
from htmldate.extractors import get_external_parser, json_search
from htmldate.utils import Extractor as HtmldateOptions
from htmldate.validators import get_max_date, get_min_date
from lxml import etree
from lxml.html import HtmlComment, HtmlElement, HtmlEntity, HtmlProcessingInstruction
from trafilatura import bare_extraction
from trafilatura import core as trafilatura_core
from trafilatura import metadata as trafilatura_metadata
from trafilatura import utils as trafilatura_utils
from trafilatura.htmlprocessing import convert_tags, tree_cleaning
from trafilatura.utils import load_html

from workers import xpaths
from workers.dedup import InvalidURL, canonicalise_url, same_site

# lxml.html finds each element's Python class with a Python callback, run every time an
# element reaches Python (thousands of times a page inside trafilatura and htmldate); this
# lookup gives every element lxml.html's HtmlElement (all the methods they use) from C, for
# about 4 % of the extraction time and the same output (tests/test_extract.py).
trafilatura_utils.HTML_PARSER.set_element_class_lookup(
    etree.ElementDefaultClassLookup(
        element=HtmlElement, comment=HtmlComment, pi=HtmlProcessingInstruction, entity=HtmlEntity
    )
)
# Its regular-expression tests called back for fewer elements, its author, category and tag
# searches with less work (same results; see the module).
xpaths.install()


def _no_license(tree: HtmlElement) -> str | None:
    """newsagg stores no license: trafilatura's search for one (two more walks of the page,
    about 3 % of its time) is skipped, and Document.license stays None."""
    return None


trafilatura_metadata.extract_license = _no_license

_stock_prepare_tree = trafilatura_core._prepare_tree


def _prepare_tree(tree: HtmlElement, options: Any, url: str | None) -> tuple[HtmlElement, Any]:
    """trafilatura's tree preparation without the copy it keeps for its fallback extractors
    and its comment capture: in fast mode without comments neither runs, and the copy (a
    third of its tree copies) was never read. The stock function otherwise."""
    if not options.fast or options.comments:
        return _stock_prepare_tree(tree, options, url)
    cleaned = tree_cleaning(copy(tree), options)
    return convert_tags(cleaned, options, url), None


trafilatura_core._prepare_tree = _prepare_tree


@dataclass(frozen=True, slots=True)
class Consumable:
    """A tree trafilatura may change as it extracts, instead of working on its own copy."""

    tree: HtmlElement


def _load_html(content: Any, max_size: int | None = None) -> HtmlElement | None:
    """trafilatura's load_html, which gives a Consumable's tree itself: bare_extraction copies
    only a tree that is the very object it was given (2.3.1: `if tree is filecontent`)."""
    if isinstance(content, Consumable):
        return content.tree
    return load_html(content, max_size)


# bare_extraction looks load_html up in its module at each call.
trafilatura_core.load_html = _load_html  # type: ignore[attr-defined,assignment]

# No article is this long; a text that is would not fit the full-text index either
# (PostgreSQL's tsvector holds at most 1 MB), failing its row on every try.
MAX_TEXT_CHARS = 300_000
# Separators sites put between headline and site name ("Title | CBC News", "Title - BBC").
_TITLE_SEPARATORS = re.compile(r"\s+(?:\||-|–|—|::|·|•|»|/)\s+")
_HTML_LANG = re.compile(
    rb"<html\b[^>]*?\blang\s*=\s*[\"']?([A-Za-z]{2,3})(?:[-_][A-Za-z0-9]+)?", re.I
)
_NON_WORD = re.compile(r"[\W_]+")
# Only these date formats are asked of htmldate; a time part is present when the page has one.
_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S%z"
# How htmldate prints a zone the page states as UTC ("Z", "+00:00"); a date the page gives
# without a zone is printed without one.
_STATED_UTC = "+0000"
# How htmldate gives a date of which it knows only the month, or only the year (no zone).
_MONTH_START, _YEAR_START = "-01T00:00:00", "-01-01T00:00:00"
# No news site existed before 1995 (htmldate's own floor too).
EARLIEST_DATE = datetime(1995, 1, 1, tzinfo=UTC)
# A day-only date is midnight in an unknown zone, and publishers' clocks drift: a day of slack.
FUTURE_SLACK = timedelta(days=1)
_NO_BOUND = timedelta(days=100 * 365)
# A date in a URL's path: /2024/05/17/, 2024-5-17, 2024_05_17.
_URL_DATE = re.compile(r"(?<![0-9])((?:19|20)[0-9]{2})[/_-]([01]?[0-9])[/_-]([0-3]?[0-9])(?![0-9])")
# Compact dates only between separators: a longer number is an article id, not a date.
_URL_COMPACT_DATE = re.compile(
    r"(?<=[/_-])((?:19|20)[0-9]{2})(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])(?=[/_.-]|$)"
)
# A UTC offset written after a time: "2024-05-17T10:00:00+02:00", "17 May 2024 10:00:00 -0400".
# The pattern starts at the colon: re skips ahead to a literal first character in C, where a
# leading [0-9] is tried at every position of the page (ten times slower); the digit before
# the colon is checked on each match (find_stated_offset).
_STATED_OFFSET = re.compile(
    r":[0-5][0-9]:[0-5][0-9](?:[.,][0-9]+)? ?([+-](?:0[0-9]|1[0-4]):?[0-5][0-9])(?![0-9:])"
)
_DIGITS = frozenset("0123456789")
_MIN_OFFSET, _MAX_OFFSET = timedelta(hours=-12), timedelta(hours=14)
# "By Jane Doe", "Written by Jane Doe".
_BYLINE_PREFIX = re.compile(r"^(?:(?:written|words|story|text|reporting)\s+)?by\s+", re.I)
_AUTHOR_SEPARATORS = re.compile(r"\s*[;,]\s*|\s+(?:and|&)\s+", re.I)
# What follows a name after a comma without being one: "Jane Doe, PhD", "John Roe, Jr.".
_NAME_SUFFIX = re.compile(
    r"(?:jr|sr|ii|iii|iv|ph\.?d|m\.?d|ma|mba|mph|msc?|bsc|rn|dds|jd|cpa|esq)\.?", re.I
)


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


# What trafilatura's load_html deletes before parsing (utils.INVALID_XML_CHARS): the C0
# controls but tab, LF and CR, and U+FFFE / U+FFFF. In UTF-8 a byte below 0x80 is always a
# character of its own, so the controls are found among the bytes.
_CONTROL_BYTES = bytes([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20)])


def _load_unchanged(html: str, utf8: bytes) -> HtmlElement | None:
    """trafilatura's load_html(html), parsed from utf8 (html's UTF-8 encoding) when load_html
    would not change the text before parsing it; None when it would.

    load_html first deletes the characters libxml2 rejects with a regular expression over the
    whole page (0.5 ms for the corpus' 146 kB mean) and mends a doctype or an <html/> it
    parses badly. Telling that there is none of them to delete or mend costs a fifth of that,
    and lxml parses the bytes faster than the text (1.1 against 1.3 ms a page): the same
    tree from the same parser (tests/test_extract.py, every corpus page).
    """
    beginning = html[:50].lower()
    if (
        len(utf8.translate(None, _CONTROL_BYTES)) != len(utf8)
        or "\ufffe" in html
        or "\uffff" in html
        or trafilatura_utils.is_dubious_html(beginning)
    ):
        return None
    if "doctype" in beginning:
        first_line, newline, _rest = html.partition("\n")
        if not newline or trafilatura_utils.DOCTYPE_TAG.search(first_line):
            return None
    for line in html[:4096].splitlines()[:4]:
        if "<html" in line and line.endswith("/>"):
            return None
    try:
        tree = lxml.html.fromstring(utf8, parser=trafilatura_utils.HTML_PARSER)
    except Exception:
        return None  # load_html tells what went wrong
    return tree if tree is not None and len(tree) >= 1 else None


def load_tree(
    html: str, max_elements: int, max_depth: int, utf8: bytes | None = None
) -> HtmlElement:
    """Parse once and check the tree's size and depth before trafilatura walks it.

    trafilatura's own MAX_TREE_SIZE is checked on its output, after the work is done; a
    page of a million elements or a nesting that libxml2 cuts at depth 255 is refused here
    instead, in well under a millisecond for a normal page. `utf8`: the bytes html was
    decoded from, when they are its UTF-8 encoding (parsed from them when that is the same).
    """
    tree = _load_unchanged(html, utf8) if utf8 is not None else None
    if tree is None:
        tree = load_html(html)
    if tree is None:
        raise EmptyExtraction("not parseable as HTML")
    # Both in libxml2, a fifth of the time of a walk in Python.
    if int(_COUNT_ELEMENTS(tree)) > max_elements:
        raise TooComplex(f"more than {max_elements:,} elements")
    if _deeper_than(max_depth)(tree):
        raise TooComplex(f"elements nested deeper than {max_depth} levels")
    return tree


_COUNT_ELEMENTS = etree.XPath("count(//*)")


@cache
def _deeper_than(depth: int) -> etree.XPath:
    """An element `depth` levels below the root: a path of that many steps matches."""
    return etree.XPath("boolean(/" + "/".join(["*"] * (depth + 1)) + ")")


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
    """htmldate's date string → aware datetime (UTC when the page gives no zone)."""
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


@dataclass(frozen=True, slots=True)
class SourcedDate:
    """A date and where it was found: "feed", "metadata", "url" or "text"."""

    at: datetime
    source: str


def is_plausible_date(value: datetime, now: datetime) -> bool:
    """Not before the first news sites, not more than a day ahead of the clock.

    >>> now = datetime(2024, 5, 17, 12, tzinfo=UTC)
    >>> is_plausible_date(datetime(2024, 5, 18, 6, tzinfo=UTC), now)
    True
    >>> is_plausible_date(datetime(2024, 6, 1, tzinfo=UTC), now)
    False
    >>> is_plausible_date(datetime(1994, 12, 31, tzinfo=UTC), now)
    False
    """
    return EARLIEST_DATE <= value <= now + FUTURE_SLACK


class _NotRun:
    """No search was run yet (None is an answer: nothing found)."""


NOT_RUN = _NotRun()


def run_htmldate(
    tree: HtmlElement,
    now: datetime,
    *,
    extensive: bool,
    original: bool,
    found: str | _NotRun | None = NOT_RUN,
    head_only: bool = False,
) -> str | None:
    """htmldate on the page's markup (not its URL), within the plausible window.

    The window is given to htmldate, so that it skips an implausible candidate and keeps
    looking instead of returning it. `found` is the answer of the same search already run
    (trafilatura's, see trafilatura_date), which spares running it again. `head_only`: the
    meta tags and JSON-LD only (htmldate's first two steps).
    """
    latest = now + FUTURE_SLACK
    search = _find_head_date_before if head_only else _find_date_before
    if isinstance(found, _NotRun):
        found = search(tree, latest, extensive=extensive, original=original)
    if _may_be_capped(found, now):
        # Given a date past max_date, htmldate falls back to the 1st of its month (2024-06-03
        # → 2024-06-01), which can only pass in max_date's own month: when the page's date
        # without the bound is later that month, the page gave a future date, not this one.
        unbounded = search(tree, now + _NO_BOUND, extensive=extensive, original=original)
        if unbounded is not None and unbounded != found and unbounded[:7] == found[:7]:
            return None
    return found


def _may_be_capped(found: str | _NotRun | None, now: datetime) -> TypeGuard[str]:
    """Whether htmldate's answer may be its fallback for a date past the bound, which
    run_htmldate checks by searching the page again (see there)."""
    latest = now + FUTURE_SLACK
    return (
        isinstance(found, str)
        and found.endswith(_MONTH_START)
        and found[:7] == f"{latest.astimezone(UTC):%Y-%m}"
    )


def htmldate_params(latest: datetime, *, extensive: bool, original: bool) -> dict[str, Any]:
    """find_date's keywords for a search of the markup with `latest` as its bound."""
    # url="" keeps htmldate from reading the URL or the canonical link: a source of its own here.
    # htmldate compares naive datetimes; a bound at the end of the day stays the same from page
    # to page, which keeps htmldate's caches useful (its own default does the same).
    end_of_day = latest.astimezone(UTC).replace(tzinfo=None, hour=23, minute=59, second=59)
    return {
        "extensive_search": extensive,
        "original_date": original,
        "outputformat": _DATE_FORMAT,
        "url": "",
        "min_date": EARLIEST_DATE.replace(tzinfo=None),
        "max_date": end_of_day.replace(microsecond=0),
    }


def _find_date_before(
    tree: HtmlElement, latest: datetime, *, extensive: bool, original: bool
) -> str | None:
    found = find_date(tree, **htmldate_params(latest, extensive=extensive, original=original))
    return str(found) if found else None


def _find_head_date_before(
    tree: HtmlElement, latest: datetime, *, extensive: bool, original: bool
) -> str | None:
    """What find_date returns when its answer is in the meta tags or JSON-LD, else None
    (htmldate.core.find_date's first steps; url="" skips the URL's)."""
    params = htmldate_params(latest, extensive=extensive, original=original)
    options = HtmldateOptions(
        extensive,
        get_max_date(params["max_date"]),
        get_min_date(params["min_date"]),
        original,
        params["outputformat"],
    )
    found = examine_header(tree, options) or json_search(tree, options)
    return str(found) if found else None


def trafilatura_date(doc: Any) -> str | _NotRun | None:
    """The date trafilatura found with run_trafilatura's parameters, when it is the answer of
    the markup search (run_htmldate, extensive=False, original=True), else NOT_RUN.

    trafilatura hands htmldate the page's URL, and htmldate returns a date in the URL before
    looking at the markup; without one in the URL, the two searches are the same (tested on
    the corpus), and the page is searched once instead of twice.
    """
    if doc is None or doc.url is None or _HTMLDATE_URL_DATE.search(doc.url):
        return NOT_RUN
    return str(doc.date) if doc.date else None


def read_page_date(
    found: str | None, html: str, host: str | None, now: datetime, after: datetime | None = None
) -> datetime | None:
    """htmldate's answer → a plausible datetime (later than `after` when given), a stated UTC
    shown in the publisher's zone."""
    parsed = parse_page_date(found)
    if found is None or parsed is None or not is_plausible_date(parsed, now):
        return None
    if after is not None and parsed <= after:
        return None
    return localise_utc(parsed, html, host) if found.endswith(_STATED_UTC) else parsed


def find_url_date(url: str, now: datetime) -> datetime | None:
    """A full date in the URL's path (/2024/05/17/, 2024-05-17, /20240517/), at 00:00 UTC.

    >>> now = datetime(2025, 1, 1, tzinfo=UTC)
    >>> find_url_date("https://example.com/2024/05/17/harbour", now)
    datetime.datetime(2024, 5, 17, 0, 0, tzinfo=datetime.timezone.utc)
    >>> find_url_date("https://example.com/news/20240517/harbour", now).day
    17
    >>> find_url_date("https://example.com/story/2024051712345", now) is None
    True
    """
    path = urlsplit(url).path
    for pattern in (_URL_DATE, _URL_COMPACT_DATE):
        for match in pattern.finditer(path):
            try:
                found = datetime(int(match[1]), int(match[2]), int(match[3]), tzinfo=UTC)
            except ValueError:
                continue
            if is_plausible_date(found, now):
                return found
    return None


@lru_cache(maxsize=2)
def find_stated_offset(html: str) -> timezone | None:
    """The non-zero UTC offset the page writes most often after a time, if any.

    Cached: each date of a page asks it again, and it scans the whole page.

    >>> find_stated_offset('"datePublished": "2024-05-17T09:00:00+02:00"')
    datetime.timezone(datetime.timedelta(seconds=7200))
    >>> find_stated_offset('<meta content="2024-05-17T07:00:00Z">') is None
    True
    """
    # No match can start inside one refused for its first character (none holds a digit
    # followed by ":MM:SS"), so refusing after the fact finds what the digit-first form finds.
    offsets = Counter(
        match[1]
        for match in _STATED_OFFSET.finditer(html)
        if match.start() and html[match.start() - 1] in _DIGITS
    )
    for text, _count in offsets.most_common():
        sign = -1 if text.startswith("-") else 1
        digits = text[1:].replace(":", "")
        offset = sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        if offset and _MIN_OFFSET <= offset <= _MAX_OFFSET:
            return timezone(offset)
    return None


@cache
def _country_zones() -> dict[str, tuple[str, ...]]:
    """ISO country code → its tz database zones, from the system's zone.tab (empty if none)."""
    for base in zoneinfo.TZPATH:
        path = Path(base) / "zone.tab"
        if not path.is_file():
            continue
        zones: dict[str, list[str]] = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            fields = line.split("\t")
            if len(fields) >= 3 and not line.startswith("#"):
                zones.setdefault(fields[0].lower(), []).append(fields[2])
        return {code: tuple(names) for code, names in zones.items()}
    return {}


def find_country_offset(host: str | None, at: datetime) -> timezone | None:
    """The UTC offset at `at` of the country of the host's country-code domain, when all of
    that country's zones agree on it (Italy, Germany; not Spain, Brazil or Canada)."""
    label = (host or "").rstrip(".").rsplit(".", 1)[-1].lower()
    names = _country_zones().get("gb" if label == "uk" else label, ())
    try:
        offsets = {at.astimezone(zoneinfo.ZoneInfo(name)).utcoffset() for name in names}
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None
    offset = offsets.pop() if len(offsets) == 1 else None
    return timezone(offset) if offset is not None else None


def localise_utc(value: datetime, html: str, host: str | None) -> datetime:
    """A timestamp the page states in UTC, shown in the publisher's zone (same instant).

    A CMS often writes UTC while readers see the local day: 23:15Z on an Italian site is
    published the next day. The zone is the offset the page itself writes elsewhere, else that
    of the country of a country-code domain; otherwise the value stays in UTC.
    """
    offset = find_stated_offset(html) or find_country_offset(host, value)
    return value.astimezone(offset) if offset is not None else value


def find_page_published(
    tree: HtmlElement,
    html: str,
    url: str,
    now: datetime,
    markup_date: str | _NotRun | None = NOT_RUN,
    *,
    search_text: bool = True,
) -> SourcedDate | None:
    """The page's publication date, by the order in the module docstring (`markup_date`: see
    run_htmldate's `found`); the text is searched last, and only with `search_text`."""
    host = urlsplit(url).hostname
    metadata = read_page_date(
        run_htmldate(tree, now, extensive=False, original=True, found=markup_date),
        html,
        host,
        now,
    )
    if metadata is not None:
        return SourcedDate(metadata, "metadata")
    in_url = find_url_date(url, now)
    if in_url is not None:
        return SourcedDate(in_url, "url")
    if not search_text:
        return None
    # In the visible text the latest date is taken: a story mentions past events far more often
    # than later ones, so the earliest date is often one of them (a founding year, an old case).
    found = run_htmldate(tree, now, extensive=True, original=False)
    if found is not None and found.endswith(_YEAR_START):
        # 1 January is how htmldate gives a bare year (a copyright line, its last resort): a
        # year is not a publication day.
        return None
    text = read_page_date(found, html, host, now)
    return SourcedDate(text, "text") if text is not None else None


def find_page_modified(
    head_date: str | None, html: str, url: str, published: SourcedDate | None, now: datetime
) -> SourcedDate | None:
    """The page's last-modified date, from `head_date`: what its meta tags or JSON-LD give
    (run_htmldate with original=False, head_only=True; a modified-time tag first), when it
    is later than published (module docstring).

    The visible text is not searched: its latest date is as often a "today" header or a
    related story as an update of this one.
    """
    host = urlsplit(url).hostname
    after = published.at if published else None
    found = read_page_date(head_date, html, host, now, after=after)
    return SourcedDate(found, "metadata") if found is not None else None


def _aware(value: datetime) -> datetime:
    """A feed date without a zone is taken as UTC (what feeds mostly mean)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def choose_published(
    page: SourcedDate | None, feed: datetime | None, now: datetime
) -> SourcedDate | None:
    """The rule in the module docstring: prefer the feed's precise time when it agrees.

    An implausible feed date is ignored. The feed's instant is shown in the page's zone when
    the page states one (feeds mostly give UTC).
    """
    feed = _aware(feed) if feed is not None else None
    if feed is None or not is_plausible_date(feed, now):
        return page
    if page is None:
        return SourcedDate(feed, "feed")
    if abs(feed - page.at) > timedelta(days=1):
        return page
    return SourcedDate(feed.astimezone(page.at.tzinfo) if page.at.utcoffset() else feed, "feed")


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


def split_authors(byline: str | None) -> tuple[str, ...]:
    """A byline (trafilatura joins names with "; ") → the names in it, each once.

    >>> split_authors("By Jane Doe and John Roe")
    ('Jane Doe', 'John Roe')
    >>> split_authors("Ana Lima, Bo Chen and Cy Diaz")
    ('Ana Lima', 'Bo Chen', 'Cy Diaz')
    >>> split_authors("Smith, John")
    ('Smith, John',)
    >>> split_authors("Brenda Goodman; MA")
    ('Brenda Goodman, MA',)
    """
    text = " ".join((byline or "").split()).strip(" ;,")
    names: list[str] = []
    for part in _AUTHOR_SEPARATORS.split(text):
        name = _BYLINE_PREFIX.sub("", part).strip() if part else ""
        if not name:
            continue
        if names and _is_name_suffix(name):
            names[-1] = f"{names[-1]}, {name}"
        else:
            names.append(name)
    if len(names) == 2 and not any(" " in name for name in names):
        # Two single words are one name cut at its comma ("Smith, John", "Mac & i") more
        # often than two one-word authors.
        return (_BYLINE_PREFIX.sub("", text).replace(";", ","),)
    unique: dict[str, str] = {}
    for name in names:
        unique.setdefault(name.casefold(), name)
    return tuple(unique.values())


def _is_name_suffix(word: str) -> bool:
    return _NAME_SUFFIX.fullmatch(word) is not None


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


# trafilatura's fast mode skips its fallback extractors (readability, jusText): measured on
# ../shared/corpus/extraction (README, "Performance") it costs 0.004 of body F1 for about a
# fifth of the extraction time, and leaves jusText's stop lists (27 MB) unloaded.
FAST = True


def run_trafilatura(
    html: str | HtmlElement | Consumable, url: str, now: datetime | None = None
) -> Any:
    """trafilatura with the production settings (see DESIGN.md): no comments, no in-process
    dedup (it would silently drop syndicated copies), metadata on, fast mode. A tree is left
    as it was (trafilatura works on a copy), a Consumable's is not."""
    latest = (now or datetime.now(UTC)) + FUTURE_SLACK
    return bare_extraction(
        html,
        url=url,
        fast=FAST,
        with_metadata=True,
        include_comments=False,
        deduplicate=False,
        # The markup search of find_page_published, so that its answer can be reused
        # (trafilatura_date).
        date_extraction_params=htmldate_params(latest, extensive=False, original=True),
    )


def extract_article(
    html: str,
    url: str,
    hints: FeedHints | None = None,
    *,
    min_text_chars: int = 100,
    max_elements: int = 100_000,
    max_depth: int = 200,
    now: datetime | None = None,
    utf8: bytes | None = None,
) -> Article:
    """Extract the article at url (its final URL, after redirects) from its decoded HTML.

    now (default: the clock) bounds plausible dates. `utf8`: the body html was decoded
    from, when html is its UTF-8 decoding (see load_tree). Raises EmptyExtraction when the
    page holds less than min_text_chars of main text, and TooComplex when its tree is beyond
    the bounds.
    """
    hints = hints or FeedHints()
    now = now or datetime.now(UTC)
    tree = load_tree(html, max_elements, max_depth, utf8)
    feed_date = hints.published_at
    search_text = feed_date is None or not is_plausible_date(_aware(feed_date), now)
    # Read before trafilatura changes the page: the modified-date search is a tenth of a
    # millisecond, its copy of the tree three times that.
    head_modified = run_htmldate(tree, now, extensive=False, original=False, head_only=True)
    # Searches of the page after trafilatura: the text search (without a feed date), and the
    # markup search when trafilatura's answer was a date in the URL (trafilatura_date) or may
    # be htmldate's fallback for a future date (run_htmldate), for which the page is parsed
    # again (a URL trafilatura reads from the page may hold a date).
    consumed = not search_text and not _HTMLDATE_URL_DATE.search(url)
    doc = run_trafilatura(Consumable(tree) if consumed else tree, url, now)
    text = (doc.text or "").strip() if doc is not None else ""
    if len(text) < min_text_chars:
        found = f"{len(text)} characters" if text else "no main text"
        raise EmptyExtraction(f"{found} extracted (minimum {min_text_chars})")
    if len(text) > MAX_TEXT_CHARS:
        raise TooComplex(f"{len(text):,} characters of text: longer than any article")
    host = urlsplit(url).hostname
    sitename = (doc.sitename or "").strip() or None
    authors = split_authors(doc.author) or split_authors(hints.author)
    author = "; ".join(authors) or None
    title = clean_title(doc.title, sitename, host, author) or clean_title(
        hints.title, sitename, host
    )
    markup_date = trafilatura_date(doc)
    if consumed and (isinstance(markup_date, _NotRun) or _may_be_capped(markup_date, now)):
        tree = load_tree(html, max_elements, max_depth, utf8)
    page_date = find_page_published(tree, html, url, now, markup_date, search_text=search_text)
    published = choose_published(page_date, hints.published_at, now)
    # A page whose markup gives no publication date gives no modified date either (the same
    # search, another preference): the second search is spared.
    has_markup_date = page_date is not None and page_date.source == "metadata"
    modified = (
        find_page_modified(head_modified, html, url, published, now) if has_markup_date else None
    )
    return Article(
        url=url,
        canonical_url=resolve_canonical(url, doc.url if doc.url != url else None),
        title=title,
        author=author,
        published_at=published.at if published else None,
        language=detect_language(html, text),
        sitename=sitename if sitename and sitename.lower() not in _host_names(host) else None,
        description=(doc.description or "").strip() or None,
        tags=split_tags([*(doc.categories or []), *(doc.tags or [])]),
        image_url=doc.image or None,
        text=text,
        published_source=published.source if published else None,
        modified_at=modified.at if modified else None,
        modified_source=modified.source if modified else None,
        authors=authors,
    )


# A page with what makes extraction load its data: no declared language (the language
# model), a date only in the text in words (dateparser, which compiles the patterns of every
# locale it knows on first use), a byline, a canonical link.
_WARM_UP_PAGE = """<!DOCTYPE html><html><head>
<title>Harbour reopens after the storm | Gazette</title><link rel="canonical" href="https://gazette.example/news/harbour-reopens">
<meta name="author" content="Jane Doe"></head><body><header><nav><a href="/">Home</a></nav>
</header><article><h1>Harbour reopens after the storm</h1>
<p class="byline">By Jane Doe. Published on Tuesday, 12 March 2024.</p>
<p>The harbour reopened on Monday after engineers checked the sea wall that the storm had
damaged last week. Fishing boats left at dawn, and the ferry service resumed its timetable.</p>
<p>The council said repairs to the promenade would take until the summer, and that the
coastal path stays closed near the lighthouse while the cliff is surveyed.</p>
<p>Traders on the quay welcomed the news; several had closed for most of the week.</p>
</article><footer>Copyright 2024 Gazette</footer></body></html>"""


def warm_up() -> None:
    """Extract one page, so that the data extraction loads lazily (the language model,
    dateparser's locales, the public-suffix list, compiled patterns) is loaded now.

    Called in a worker's main process before it forks its pool: the children inherit it
    ready and share its memory, instead of each paying the loading (seconds of CPU and
    tens of MB) again, every time a child is replaced.
    """
    extract_article(_WARM_UP_PAGE, "https://gazette.example/news/harbour-reopens?ref=warm")
    py3langid.classify("The harbour reopened on Monday after the storm.")
    # htmldate's last resort: dateparser tries every locale on a string none can read, and
    # compiles each one's patterns on the way (a second and a half, once).
    parser = get_external_parser()
    for text in ("12 March 2024", "mardi 12 mars 2024", "vtorník 12 marca 2024"):
        parser.get_date_data(text)
