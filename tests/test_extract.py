"""Extraction mapping: trafilatura output → Article, on real corpus pages."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime

import pytest

from tests.conftest import CORPUS
from workers.extract import (
    EmptyExtraction,
    FeedHints,
    choose_published,
    clean_title,
    detect_language,
    extract_article,
    parse_page_date,
    resolve_canonical,
    split_tags,
)

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
    assert article.published_at == hints.published_at
    assert article.language == "en"


def test_empty_and_boilerplate_pages() -> None:
    with pytest.raises(EmptyExtraction):
        extract_article("", "https://example.com/a")
    nav = "<html><body><nav><a href='/'>Home</a> <a href='/news'>News</a></nav></body></html>"
    with pytest.raises(EmptyExtraction):
        extract_article(nav, "https://example.com/a")


def test_choose_published() -> None:
    page_day = datetime(2024, 5, 17, tzinfo=UTC)
    feed_time = datetime(2024, 5, 17, 14, 5, tzinfo=UTC)
    assert choose_published(page_day, feed_time) == feed_time
    assert choose_published(page_day, datetime(2023, 1, 1, tzinfo=UTC)) == page_day
    assert choose_published(None, feed_time) == feed_time
    assert choose_published(page_day, None) == page_day


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
