"""URL canonicalisation and content fingerprints (pure functions)."""

from __future__ import annotations

import pytest

from workers.dedup import InvalidURL, canonicalise_url, content_hash, normalise_text, same_site


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.com/a/b", "https://example.com/a/b"),
        ("HTTPS://News.Example.COM/a/b", "https://news.example.com/a/b"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("http://example.com:80/a", "http://example.com/a"),
        ("http://example.com:8080/a", "http://example.com:8080/a"),
        ("https://example.com/a#comments", "https://example.com/a"),
        ("https://example.com/a?utm_source=rss&utm_medium=feed", "https://example.com/a"),
        ("https://example.com/a?fbclid=abc", "https://example.com/a"),
        ("https://example.com/a?gclid=abc&id=7", "https://example.com/a?id=7"),
        ("https://example.com/story?storyId=123", "https://example.com/story?storyId=123"),
        ("https://example.com/s?b=2&a=1", "https://example.com/s?a=1&b=2"),
        ("  https://example.com/a  ", "https://example.com/a"),
    ],
)
def test_canonicalise_url(url: str, expected: str) -> None:
    assert canonicalise_url(url) == expected


def test_variants_fold_to_one_key() -> None:
    variants = [
        "https://www.example.com/news/2024/05/17/storm-hits-coast",
        "https://WWW.example.com/news/2024/05/17/storm-hits-coast#top",
        "https://www.example.com/news/2024/05/17/storm-hits-coast?utm_source=twitter",
        "https://www.example.com:443/news/2024/05/17/storm-hits-coast?utm_campaign=x#c",
    ]
    assert len({canonicalise_url(v) for v in variants}) == 1


def test_relative_with_base() -> None:
    assert canonicalise_url("../b/c", "https://example.com/a/x/feed") == "https://example.com/a/b/c"


@pytest.mark.parametrize("url", ["ftp://example.com/a", "mailto:x@example.com", "/relative", ""])
def test_invalid_urls(url: str) -> None:
    with pytest.raises(InvalidURL):
        canonicalise_url(url)


def test_same_site() -> None:
    assert same_site("https://www.bbc.co.uk/a", "https://bbc.co.uk/b")
    assert same_site("https://amp.example.com/a", "https://www.example.com/a")
    assert not same_site("https://example.com/a", "https://other.com/a")
    assert not same_site("https://example.com.evil.net/a", "https://example.com/a")


def test_content_hash_ignores_case_and_spacing() -> None:
    a = "Storm hits  coast.\n\nResidents   evacuated."
    b = "storm hits coast. residents evacuated."
    assert normalise_text(a) == normalise_text(b)
    assert content_hash(a) == content_hash(b)
    assert content_hash(a) != content_hash(a + " Update: power restored.")
    assert len(content_hash(a)) == 64
