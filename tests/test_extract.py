"""Extraction mapping: trafilatura output → Article, on real corpus pages."""

from __future__ import annotations

import codecs
import copy
import gzip
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from lxml import etree
from lxml.html import HTMLParser, fromstring
from trafilatura import bare_extraction
from trafilatura.utils import HTML_PARSER

from tests.conftest import CORPUS
from workers import extract
from workers.extract import (
    FUTURE_SLACK,
    NOT_RUN,
    EmptyExtraction,
    FeedHints,
    SourcedDate,
    TooComplex,
    choose_published,
    clean_title,
    detect_language,
    extract_article,
    find_country_offset,
    find_url_date,
    load_tree,
    parse_page_date,
    resolve_canonical,
    run_trafilatura,
    split_authors,
    split_tags,
    trafilatura_date,
)
from workers.extract import _find_date_before as find_markup_date
from workers.fetch import decode_body, decode_page

EXPECTED = json.loads((CORPUS / "metadata" / "expected.json").read_text())


def page(name: str) -> str:
    return gzip.decompress((CORPUS / "metadata" / EXPECTED[name]["file"]).read_bytes()).decode(
        "utf-8", "replace"
    )


@pytest.mark.parametrize(
    ("title", "sitename", "host", "author", "expected"),
    [
        ("Storm hits coast | CBC News", "CBC News", None, None, "Storm hits coast"),
        ("Storm hits coast - BBC News", None, "www.bbc.co.uk", None, "Storm hits coast"),
        ("BBC News - Storm hits coast", None, "www.bbc.co.uk", None, "Storm hits coast"),
        ("How to Build a Terrarium | eHow", "Ehow", None, None, "How to Build a Terrarium"),
        ("Issue 85 – Firefox Nightly News", "Firefox Nightly News", None, None, "Issue 85"),
        ("Whales | Eleanor Ainge Roy", "The Guardian", None, "Eleanor Ainge Roy", "Whales"),
        ("Pay rise - or pay cut?", "Example Times", None, None, "Pay rise - or pay cut?"),
        (
            "Friday Facts #282 - 0.17 in sight | Factorio",
            "Factorio.com",
            None,
            None,
            "Friday Facts #282 - 0.17 in sight",
        ),
        ("CBC News", "CBC News", None, None, "CBC News"),
        ("  Spaced   out  ", None, None, None, "Spaced out"),
        (None, "X", None, None, None),
    ],
)
def test_clean_title(
    title: str | None,
    sitename: str | None,
    host: str | None,
    author: str | None,
    expected: str | None,
) -> None:
    assert clean_title(title, sitename, host, author) == expected


def test_extract_real_news_page() -> None:
    article = extract_article(page("aclu"), "https://www.aclu.org/blog/facebook-tracking")
    assert article.title == EXPECTED["aclu"]["title"]
    assert article.author == "Daniel Kahn Gillmor"
    assert article.published_at == datetime(2018, 4, 5, tzinfo=UTC)
    assert article.published_source == "metadata"
    assert article.authors == ("Daniel Kahn Gillmor",)
    assert article.sitename == "American Civil Liberties Union"
    assert article.language == "en"
    assert article.text.startswith("Facebook")
    assert article.word_count > 500
    # rel=canonical on the same site is honoured
    assert article.canonical_url.startswith("https://www.aclu.org/blog/privacy-technology/")


def test_title_suffix_removed_on_real_page() -> None:
    article = extract_article(page("iab-1"), "https://www.iab.com/news/lean")
    assert article.title == "Getting LEAN with Digital Ad UX"


def test_page_time_kept_when_present() -> None:
    article = extract_article(page("bbc-1"), "https://www.bbc.com/news/world-us-canada-33646542")
    assert article.published_at is not None
    assert article.published_at.astimezone(UTC).hour == 4  # 05:36:09+01:00
    assert article.published_at.utcoffset() == timedelta(hours=1)  # the page's own offset
    assert article.published_source == "metadata"
    assert article.sitename == "BBC News"


def test_feed_hints_fill_gaps() -> None:
    html = (
        "<html><head></head><body><article><p>"
        + "A long paragraph about the harbour reopening after the storm. " * 10
        + "</p></article></body></html>"
    )
    hints = FeedHints(
        "Harbour reopens | Coast Times", datetime(2024, 5, 17, 8, 30, tzinfo=UTC), "Jane Doe"
    )
    article = extract_article(html, "https://coast.example/harbour", hints)
    assert article.title == "Harbour reopens | Coast Times" or article.title == "Harbour reopens"
    assert article.author == "Jane Doe"
    assert article.authors == ("Jane Doe",)
    assert article.published_at == hints.published_at
    assert article.published_source == "feed"
    assert article.modified_at is None
    assert article.language == "en"


def test_empty_and_boilerplate_pages() -> None:
    with pytest.raises(EmptyExtraction):
        extract_article("", "https://example.com/a")
    nav = "<html><body><nav><a href='/'>Home</a> <a href='/news'>News</a></nav></body></html>"
    with pytest.raises(EmptyExtraction):
        extract_article(nav, "https://example.com/a")


def test_choose_published() -> None:
    now = datetime(2024, 6, 1, tzinfo=UTC)
    page_day = SourcedDate(datetime(2024, 5, 17, tzinfo=UTC), "metadata")
    feed_time = datetime(2024, 5, 17, 14, 5, tzinfo=UTC)
    assert choose_published(page_day, feed_time, now) == SourcedDate(feed_time, "feed")
    assert choose_published(page_day, datetime(2023, 1, 1, tzinfo=UTC), now) == page_day
    assert choose_published(None, feed_time, now) == SourcedDate(feed_time, "feed")
    assert choose_published(page_day, None, now) == page_day
    # An implausible feed date is no date.
    assert choose_published(page_day, datetime(2024, 7, 1, tzinfo=UTC), now) == page_day
    assert choose_published(None, datetime(1990, 1, 1, tzinfo=UTC), now) is None


def test_parse_page_date() -> None:
    assert parse_page_date("2015-07-24T05:36:09+0100") == datetime.fromisoformat(
        "2015-07-24T05:36:09+01:00"
    )
    assert parse_page_date("2018-04-05") == datetime(2018, 4, 5, tzinfo=UTC)
    assert parse_page_date("garbage") is None


def test_canonical_only_on_same_site() -> None:
    assert resolve_canonical("https://example.com/amp/a", "/a") == "https://example.com/a"
    assert resolve_canonical("https://example.com/a", "https://evil.net/x") == (
        "https://example.com/a"
    )
    assert resolve_canonical("https://example.com/a?utm_source=x", None) == "https://example.com/a"


def test_language() -> None:
    assert detect_language('<html lang="de-DE"><body>', "text") == "de"
    text = "Le gouvernement a annoncé mercredi une nouvelle réforme des retraites."
    assert detect_language("<html><body>", text) == "fr"


def test_split_tags() -> None:
    assert split_tags(["Oceans,New Zealand, Environment", "Oceans,New Zealand"]) == (
        "Oceans",
        "New Zealand",
        "Environment",
    )


# Synthetic pages: the only dates in them are the ones a test puts there.
BODY = "<p>" + "A long paragraph about the harbour reopening after the storm. " * 10 + "</p>"
NOW = datetime(2024, 6, 1, 12, tzinfo=UTC)


def synthetic(head: str = "", body: str = "") -> str:
    return (
        f"<html><head><title>Harbour reopens</title>{head}</head>"
        f"<body><article>{body}{BODY}</article></body></html>"
    )


def meta(prop: str, value: str) -> str:
    return f'<meta property="{prop}" content="{value}">'


def test_published_from_feed_keeps_the_page_zone() -> None:
    html = synthetic(meta("article:published_time", "2024-05-17T00:00:00+02:00"))
    feed = datetime(2024, 5, 17, 6, 30, tzinfo=UTC)
    article = extract_article(html, "https://coast.example/harbour", FeedHints(None, feed), now=NOW)
    assert article.published_source == "feed"
    assert article.published_at == feed
    assert article.published_at.utcoffset() == timedelta(hours=2)
    # A feed date more than a day away from the page's loses to the page.
    far = FeedHints(None, datetime(2024, 5, 10, tzinfo=UTC))
    article = extract_article(html, "https://coast.example/harbour", far, now=NOW)
    assert article.published_source == "metadata"


def test_published_from_url() -> None:
    article = extract_article(synthetic(), "https://coast.example/2024/05/17/harbour", now=NOW)
    assert article.published_at == datetime(2024, 5, 17, tzinfo=UTC)
    assert article.published_source == "url"


def test_published_from_text() -> None:
    html = synthetic(body="<div>Posted on Friday, May 17, 2024 by staff</div>")
    article = extract_article(html, "https://coast.example/harbour", now=NOW)
    assert article.published_at == datetime(2024, 5, 17, tzinfo=UTC)
    assert article.published_source == "text"


def test_feed_date_wins_over_a_date_in_the_text() -> None:
    # The text is not searched when the feed gives a plausible date, even a distant one.
    html = synthetic(body="<div>Posted on Friday, May 17, 2024 by staff</div>")
    feed = datetime(2024, 5, 10, 8, tzinfo=UTC)
    article = extract_article(html, "https://coast.example/harbour", FeedHints(None, feed), now=NOW)
    assert (article.published_at, article.published_source) == (feed, "feed")
    # An implausible feed date is no date: the text is searched.
    future = FeedHints(None, NOW + timedelta(days=30))
    article = extract_article(html, "https://coast.example/harbour", future, now=NOW)
    assert article.published_source == "text"


@pytest.mark.parametrize("footer", ["", "<footer>© 2023 Coast Times</footer>"])
def test_no_date_anywhere(footer: str) -> None:
    # A bare year (htmldate's copyright guess, as 1 January) is not a publication day.
    html = synthetic(body=footer)
    article = extract_article(html, "https://coast.example/harbour", now=NOW)
    assert article.published_at is None
    assert article.published_source is None


@pytest.mark.parametrize("implausible", ["2024-06-03T10:00:00+00:00", "1990-01-01T10:00:00+00:00"])
def test_implausible_page_date_falls_back(implausible: str) -> None:
    html = synthetic(meta("article:published_time", implausible))
    article = extract_article(html, "https://coast.example/2024/05/17/harbour", now=NOW)
    assert article.published_at == datetime(2024, 5, 17, tzinfo=UTC)
    assert article.published_source == "url"


def test_future_bound_follows_now() -> None:
    html = synthetic(meta("article:published_time", "2024-06-02T08:00:00+00:00"))
    # Less than a day ahead of the clock is a clock difference, not a future date.
    article = extract_article(html, "https://coast.example/harbour", now=NOW)
    assert article.published_at == datetime(2024, 6, 2, 8, tzinfo=UTC)
    earlier = extract_article(html, "https://coast.example/harbour", now=NOW - timedelta(days=2))
    assert earlier.published_at is None


def test_implausible_feed_date_is_dropped() -> None:
    hints = FeedHints(None, datetime(2030, 1, 1, tzinfo=UTC))
    article = extract_article(synthetic(), "https://coast.example/harbour", hints, now=NOW)
    assert article.published_at is None


def test_modified_kept_apart_from_published() -> None:
    published = meta("article:published_time", "2024-05-16T08:00:00+02:00")
    html = synthetic(published + meta("article:modified_time", "2024-05-18T09:30:00+02:00"))
    article = extract_article(html, "https://coast.example/harbour", now=NOW)
    assert article.published_at == datetime.fromisoformat("2024-05-16T08:00:00+02:00")
    assert article.published_source == "metadata"
    assert article.modified_at == datetime.fromisoformat("2024-05-18T09:30:00+02:00")
    assert article.modified_source == "metadata"
    # A modified date equal to or before the publication date is not kept.
    for value in ("2024-05-16T08:00:00+02:00", "2024-05-15T09:30:00+02:00"):
        html = synthetic(published + meta("article:modified_time", value))
        article = extract_article(html, "https://coast.example/harbour", now=NOW)
        assert article.modified_at is None
        assert article.modified_source is None


def test_modified_on_real_page() -> None:
    article = extract_article(page("aktualne"), "https://zpravy.aktualne.cz/a", now=NOW)
    assert article.published_at == datetime.fromisoformat("2021-11-01T10:52:50+01:00")
    assert article.modified_at == datetime.fromisoformat("2021-11-01T12:34:23+01:00")


def test_utc_timestamp_shown_in_the_offset_the_page_states() -> None:
    html = synthetic(
        meta("article:published_time", "2024-05-16T23:30:00Z"),
        "<p>Updated 2024-05-17T10:00:00+02:00</p>",
    )
    article = extract_article(html, "https://coast.example/harbour", now=NOW)
    assert article.published_at == datetime(2024, 5, 16, 23, 30, tzinfo=UTC)  # same instant
    assert article.published_at.date().isoformat() == "2024-05-17"  # the publisher's day


def test_utc_timestamp_shown_in_the_country_zone() -> None:
    html = synthetic(meta("article:published_time", "2023-12-05T23:15:00Z"))
    article = extract_article(html, "https://www.gazzetta.example.it/a", now=NOW)
    assert article.published_at == datetime(2023, 12, 5, 23, 15, tzinfo=UTC)
    assert article.published_at.utcoffset() == timedelta(hours=1)
    # A page without a country-code domain stays in UTC.
    article = extract_article(html, "https://gazzetta.example.com/a", now=NOW)
    assert article.published_at.utcoffset() == timedelta(0)


DATES = json.loads((CORPUS / "dates" / "groundtruth.json").read_text())


@pytest.mark.parametrize(
    ("url", "offset"),
    [
        # JSON-LD says 02:54Z; the page writes its schedule in -0400: 1 May, 22:54 in New York.
        ("https://abc7ny.com/traffic/penn-station-to-close-overnight-for-cleaning/6144149/", -4),
        # "2020-12-05T23:15:0Z" on an Italian site, no offset written: 6 December, 00:15 in Rome.
        (
            "https://www.lagazzettadelmezzogiorno.it/news/mondo/1265473/"
            "california-certifica-voto-biden-oltre-quorum-270-elettori.html",
            1,
        ),
    ],
)
def test_utc_timestamps_on_real_pages(url: str, offset: int) -> None:
    raw = gzip.decompress((CORPUS / "dates" / DATES[url]["file"]).read_bytes())
    article = extract_article(raw.decode("utf-8", "replace"), url)
    assert article.published_source == "metadata"
    assert article.published_at is not None
    assert article.published_at.utcoffset() == timedelta(hours=offset)
    assert article.published_at.date().isoformat() == DATES[url]["date"]


# The offset scan as first written: a digit before the colon, in the pattern.
_DIGIT_FIRST_OFFSET = re.compile(
    r"[0-9]:[0-5][0-9]:[0-5][0-9](?:[.,][0-9]+)? ?([+-](?:0[0-9]|1[0-4]):?[0-5][0-9])(?![0-9:])"
)


@pytest.mark.parametrize(
    "text",
    [
        "12:30:00+02:00 9:30:00 -0400",
        ":30:00+02:00",  # no hour digit
        "a:30:00+02:00 1:30:00+02:00",
        "2024-05-17T10:00:00.123+05:30 and 10:00:00+0530:1",
        "1:2:30:00+01:00",
    ],
)
def test_stated_offset_scan_matches_the_digit_first_pattern(text: str) -> None:
    found = [
        m[1]
        for m in extract._STATED_OFFSET.finditer(text)
        if m.start() and text[m.start() - 1] in extract._DIGITS
    ]
    assert found == [m[1] for m in _DIGIT_FIRST_OFFSET.finditer(text)]


def test_stated_offset_on_corpus_pages_as_with_the_digit_first_pattern() -> None:
    """find_stated_offset scans from the colon (ten times faster): the same offset on every page."""
    from collections import Counter

    def digit_first(html: str) -> timezone | None:
        offsets = Counter(match[1] for match in _DIGIT_FIRST_OFFSET.finditer(html))
        for text, _count in offsets.most_common():
            sign = -1 if text.startswith("-") else 1
            digits = text[1:].replace(":", "")
            offset = sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
            if offset and timedelta(hours=-12) <= offset <= timedelta(hours=14):
                return timezone(offset)
        return None

    stated = 0
    for _url, html in _corpus_pages(every=1):
        expected = digit_first(html)
        assert extract.find_stated_offset(html) == expected
        stated += expected is not None
    assert stated > 20


def test_find_country_offset() -> None:
    winter, summer = datetime(2024, 1, 15, tzinfo=UTC), datetime(2024, 7, 15, tzinfo=UTC)
    assert find_country_offset("www.corriere.it", winter) == timezone(timedelta(hours=1))
    assert find_country_offset("www.bbc.co.uk", summer) == timezone(timedelta(hours=1))
    assert find_country_offset("www.spiegel.de", summer) == timezone(timedelta(hours=2))
    # Countries whose zones disagree, and generic domains, have no single offset.
    assert find_country_offset("www.abc.net.au", winter) is None
    assert find_country_offset("www.elpais.es", winter) is None
    assert find_country_offset("www.example.com", winter) is None
    assert find_country_offset(None, winter) is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.com/2024/05/17/harbour", datetime(2024, 5, 17, tzinfo=UTC)),
        ("https://example.com/news/2024-05-17-harbour.html", datetime(2024, 5, 17, tzinfo=UTC)),
        ("https://example.com/news/20240517/harbour", datetime(2024, 5, 17, tzinfo=UTC)),
        ("https://example.com/a/harbour-20240517-abc", datetime(2024, 5, 17, tzinfo=UTC)),
        ("https://example.com/story/2024051712345", None),  # an id, not a date
        ("https://example.com/2024/13/45/harbour", None),
        ("https://example.com/2030/05/17/harbour", None),  # in the future
        ("https://example.com/a?date=2024-05-17", None),  # only the path is read
    ],
)
def test_find_url_date(url: str, expected: datetime | None) -> None:
    assert find_url_date(url, NOW) == expected


@pytest.mark.parametrize(
    ("byline", "expected"),
    [
        ("Jane Doe", ("Jane Doe",)),
        ("Jane Doe; John Roe", ("Jane Doe", "John Roe")),
        ("Ana Lima, Bo Chen and Cy Diaz", ("Ana Lima", "Bo Chen", "Cy Diaz")),
        ("By Jane Doe and John Roe", ("Jane Doe", "John Roe")),
        ("by Jane Doe & John Roe", ("Jane Doe", "John Roe")),
        ("Smith, John", ("Smith, John",)),
        ("Harm; Robert", ("Harm, Robert",)),  # trafilatura's form of "Harm, Robert"
        ("Mac & i", ("Mac & i",)),
        ("Brenda Goodman, MA", ("Brenda Goodman, MA",)),
        ("Martin Luther King, Jr.", ("Martin Luther King, Jr.",)),
        ("Grant Tinsley; PhD", ("Grant Tinsley, PhD",)),
        ("Jeffrey Gettleman; JEFFREY GETTLEMAN", ("Jeffrey Gettleman",)),
        ("AFP; The Local", ("AFP", "The Local")),
        ("  ", ()),
        (None, ()),
    ],
)
def test_split_authors(byline: str | None, expected: tuple[str, ...]) -> None:
    assert split_authors(byline) == expected


@pytest.mark.parametrize(
    ("name", "authors"),
    [
        ("schema-org-context-object", ("Stella Kim", "Jennifer Jett")),
        ("nytimes-1", ("Jeffrey Gettleman",)),  # trafilatura: "Jeffrey Gettleman; JEFFREY …"
        ("webmd-1", ("Brenda Goodman, MA",)),
    ],
)
def test_authors_on_real_pages(name: str, authors: tuple[str, ...]) -> None:
    article = extract_article(page(name), f"https://example.com/{name}")
    assert article.authors == authors
    assert article.author == "; ".join(authors)


def test_trafilatura_leaves_the_tree_intact() -> None:
    """extract_article hands htmldate the tree trafilatura has already walked."""
    tree = load_tree(page("bbc-1"), 100_000, 200)
    before = etree.tostring(tree)
    run_trafilatura(tree, "https://www.bbc.com/news/world-us-canada-33646542")
    assert etree.tostring(tree) == before


def _corpus_pages(every: int) -> list[tuple[str, str]]:
    """Every `every`-th page of the dates corpus (real pages of many sites), decoded."""
    out = []
    for url, entry in list(DATES.items())[::every]:
        raw = gzip.decompress((CORPUS / "dates" / entry["file"]).read_bytes())
        out.append((url, decode_body(raw, "text/html")[0]))
    return out


def test_trafilatura_date_is_the_markup_search() -> None:
    """Reusing trafilatura's date gives what the markup search would have (or runs it)."""
    now = datetime.now(UTC)
    reused = 0
    for url, html in _corpus_pages(every=4):
        tree = load_tree(html, 100_000, 200)
        found = trafilatura_date(run_trafilatura(tree, url, now))
        if found is NOT_RUN:
            continue
        reused += 1
        markup = find_markup_date(tree, now + FUTURE_SLACK, extensive=False, original=True)
        assert found == markup, url
    assert reused > 20


def test_head_date_search_is_find_dates_first_steps() -> None:
    """The modified-date search (meta tags and JSON-LD only) gives find_date's answer
    whenever it gives one, and nothing on the pages find_date dates from elsewhere."""
    now = datetime.now(UTC)
    latest = now + FUTURE_SLACK
    head_dated = other = 0
    for _url, html in _corpus_pages(every=1):
        tree = load_tree(html, 100_000, 200)
        for original in (False, True):
            head = extract._find_head_date_before(tree, latest, extensive=False, original=original)
            full = find_markup_date(tree, latest, extensive=False, original=original)
            if head is not None:
                assert head == full
                head_dated += 1
            elif full is not None:
                other += 1
    assert head_dated > 100 and other > 5


def test_element_class_lookup_changes_no_extraction() -> None:
    """workers.extract sets a C element-class lookup on trafilatura's parser (for speed);
    trafilatura's output is the same as with lxml.html's own lookup."""
    plain = HTMLParser(
        collect_ids=False,
        default_doctype=False,
        encoding="utf-8",
        remove_comments=True,
        remove_pis=True,
    )
    for url, html in _corpus_pages(every=8):
        data = html.encode("utf-8", "surrogatepass")
        with_c = bare_extraction(fromstring(data, parser=HTML_PARSER), url=url, with_metadata=True)
        without = bare_extraction(fromstring(data, parser=plain), url=url, with_metadata=True)
        assert _comparable(with_c) == _comparable(without), url


def _comparable(doc: Any) -> dict[str, Any] | None:
    if doc is None:
        return None
    return {
        key: etree.tostring(value) if isinstance(value, etree._Element) else value
        for key, value in doc.as_dict().items()
    }


def test_prepare_tree_without_backup_changes_no_extraction(monkeypatch: pytest.MonkeyPatch) -> None:
    """workers.extract skips the tree copy trafilatura keeps for its fallback extractors and
    comment capture (neither runs in fast mode without comments): same Article as with
    trafilatura's own _prepare_tree, on corpus pages."""
    import trafilatura.core

    now = datetime(2026, 12, 3, tzinfo=UTC)
    pages = _corpus_pages(every=1)
    ours = [_article_or_error(html, url, now) for url, html in pages]
    monkeypatch.setattr(trafilatura.core, "_prepare_tree", extract._stock_prepare_tree)
    stock = [_article_or_error(html, url, now) for url, html in pages]
    assert len(pages) > 100, len(pages)
    assert ours == stock


def test_consuming_the_tree_changes_no_extraction(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a feed date and no date in the URL, trafilatura is given the parsed tree to
    change (no copy), and the page is parsed again when trafilatura's date came from a URL
    it read in the page: the same Article as with trafilatura working on its own copy."""
    now = datetime(2026, 12, 3, tzinfo=UTC)
    cases = []
    for url, entry in DATES.items():
        raw = gzip.decompress((CORPUS / "dates" / entry["file"]).read_bytes())
        day = entry["date"] if isinstance(entry["date"], str) else "2020-06-01"  # NaN: unknown
        feed = datetime.fromisoformat(day).replace(hour=12, tzinfo=UTC)
        for page_url in (url, "https://news.example/story"):  # the second holds no date
            cases.append((decode_body(raw, "text/html")[0], page_url, FeedHints(published_at=feed)))

    def articles() -> list[object]:
        out: list[object] = []
        for html, url, hints in cases:
            try:
                out.append(extract_article(html, url, hints, min_text_chars=1, now=now))
            except (EmptyExtraction, TooComplex) as exc:
                out.append(repr(exc))
        return out

    parsed: list[Any] = []

    def parse(*args: Any) -> Any:
        tree = load_tree(*args)
        parsed.append((args, tree))
        return tree

    monkeypatch.setattr(extract, "load_tree", parse)
    consumed = articles()
    reparsed = len(parsed) - len(cases)
    # trafilatura changed the trees it was given (no copy) on most pages.
    changed = sum(etree.tostring(tree) != etree.tostring(load_tree(*args)) for args, tree in parsed)
    assert changed > len(cases) / 4, changed  # half the cases' URLs hold a date
    import trafilatura.core
    from trafilatura.utils import load_html

    def copying(content: Any, max_size: int | None = None) -> Any:
        # What trafilatura does with a tree it is given: work on a copy.
        if isinstance(content, extract.Consumable):
            return copy.copy(content.tree)
        return load_html(content, max_size)

    monkeypatch.setattr(trafilatura.core, "load_html", copying)
    assert consumed == articles()
    assert reparsed > 5, reparsed  # pages whose canonical link holds a date


def test_consumed_tree_parsed_again_for_a_capped_date(monkeypatch: pytest.MonkeyPatch) -> None:
    """A page date past the bound comes back from htmldate as the 1st of its month, which
    run_htmldate checks by searching the page again: on a page as parsed, not as trafilatura
    left it."""
    html = synthetic(meta("article:published_time", "2024-06-09T08:00:00+00:00"))
    now = NOW  # htmldate gives 2024-06-01T00:00:00 (its bound: 2024-06-02)
    hints = FeedHints(published_at=now - timedelta(hours=5))
    parsed: list[str] = []
    monkeypatch.setattr(extract, "load_tree", lambda *a: parsed.append(a[0]) or load_tree(*a))
    article = extract_article(html, "https://coast.example/harbour", hints, now=now)
    assert len(parsed) == 2
    assert article.published_at == hints.published_at
    assert article.published_source == "feed"


def _article_or_error(html: str, url: str, now: datetime) -> object:
    try:
        return extract_article(html, url, min_text_chars=1, now=now)
    except (EmptyExtraction, TooComplex) as exc:
        return repr(exc)


def _all_corpus_bodies() -> list[bytes]:
    """The raw bodies of every page of the extraction and dates corpora."""
    bodies = []
    for corpus in ("extraction", "dates"):
        truth = json.loads((CORPUS / corpus / "groundtruth.json").read_text())
        for entry in truth.values():
            bodies.append(gzip.decompress((CORPUS / corpus / entry["file"]).read_bytes()))
    return bodies


def test_tree_from_the_bytes_is_the_tree_from_the_text() -> None:
    """load_tree parses a UTF-8 body's bytes instead of its text when trafilatura's
    load_html would change nothing before parsing: the same tree, on every corpus page."""
    from_bytes = 0
    for body in _all_corpus_bodies():
        html, utf8 = decode_page(body, "text/html")
        assert html == decode_body(body, "text/html")[0]
        if utf8 is None:
            continue
        tree = load_tree(html, 100_000, 200, utf8)
        assert etree.tostring(tree) == etree.tostring(load_tree(html, 100_000, 200))
        from_bytes += extract._load_unchanged(html, utf8) is not None
    assert from_bytes > 900, from_bytes  # of 1,084; the rest are not UTF-8, or mended


@pytest.mark.parametrize(
    "html",
    [
        "<html><body><p>a control \x0b character</p></body></html>",
        "<html><body><p>a noncharacter \ufffe here</p></body></html>",
        '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "x.dtd">\n<html><body>'
        "<p>text</p></body></html>",
        "<!DOCTYPE html><html><body><p>one line, no newline</p></body></html>",
        '<html lang="en"/>\n<body><p>self-closing html</p></body>',
        "<p>a fragment without html</p>",
    ],
)
def test_pages_load_html_would_mend_are_parsed_from_the_text(html: str) -> None:
    """A page with what load_html deletes or mends before parsing is left to load_html."""
    utf8 = html.encode("utf-8")
    assert extract._load_unchanged(html, utf8) is None
    tree = load_tree(html, 100_000, 200, utf8)
    assert etree.tostring(tree) == etree.tostring(load_tree(html, 100_000, 200))


def test_decode_page_gives_the_bytes_only_for_strict_utf8() -> None:
    text = "<html><body><p>café</p></body></html>"
    assert decode_page(text.encode("utf-8")) == (text, text.encode("utf-8"))
    assert decode_page(codecs.BOM_UTF8 + text.encode("utf-8"))[1] is None
    assert decode_page(text.encode("cp1252"), "text/html; charset=windows-1252") == (text, None)
