"""Smoke test of the local news sites (tests/sites.py) over real loopback HTTP.

Serves its own instance, so the request logs of the session-wide `sites` fixture that the
e2e tests inspect stay untouched.
"""

from __future__ import annotations

import gzip
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import feedparser
import httpx
import pytest
import trafilatura
from trafilatura.settings import Document

from tests.sites import (
    METADATA_URL,
    Site,
    article_charset,
    build_sites,
    corpus_date,
    corpus_html,
    serve_sites,
)

SITEMAP_NS = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
FEED_VERSIONS = {"rss": "rss20", "atom": "atom10", "rdf": "rss10"}


@pytest.fixture(scope="module")
def served() -> Iterator[list[Site]]:
    with serve_sites(build_sites()) as sites:
        yield sites


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    # trust_env=False: a proxy from the environment must not see loopback test traffic.
    with httpx.Client(follow_redirects=False, trust_env=False, timeout=5) as c:
        yield c


def test_build_sites_is_deterministic_and_covers_every_failure() -> None:
    first, second = build_sites(), build_sites()
    assert [s.name for s in first] == ["dailyplanet", "gazette", "courier"]
    assert [s.articles for s in first] == [s.articles for s in second]
    assert {s.feed_format for s in first} == {"rss", "atom", "rdf"}
    for site in first:
        assert 5 <= len(site.articles) <= 8
        assert len(site.failures) >= 3
        assert {a.language for a in site.articles} == {site.language}
    outcomes = {(f.status, f.http_status) for s in first for f in s.failures}
    assert outcomes == {
        ("http_error", 404),
        ("http_error", 410),
        ("http_error", 500),
        ("empty_extraction", 200),
        ("unsupported_content", 200),
        ("too_many_redirects", None),
        ("blocked_address", None),
        ("timeout", None),
    }
    kinds = {f.kind for s in first for f in s.failures}
    assert {"empty", "boilerplate", "pdf", "pdf_as_html"} <= kinds


def test_published_dates_are_the_ground_truth(served: list[Site]) -> None:
    for site in served:
        for article in site.articles:
            if article.published is not None:
                assert corpus_date(article, site) == article.published, article.path


def test_feeds_list_articles_variants_and_failures(
    served: list[Site], client: httpx.Client
) -> None:
    for site in served:
        resp = client.get(site.url(site.feed_path))
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith(f"application/{site.feed_format}+xml")
        feed = feedparser.parse(resp.content)
        assert feed.version == FEED_VERSIONS[site.feed_format], site.name
        assert not feed.bozo, feed.get("bozo_exception")
        links = [entry.link for entry in feed.entries]
        variants = {site.url(v): p for v, p in site.variants.items()}
        # A fragment never reaches the server, but it is in the feed for the crawler to drop.
        assert set(variants) <= set(links)
        linked_paths = {variants.get(link, link).removeprefix(site.base_url) for link in links}
        assert {a.path for a in site.articles} <= linked_paths
        assert {f.path for f in site.failures} <= linked_paths
        assert len(links) == len(site.articles) + 1 + len(site.failures)  # +1: the /amp/ alias
        titles = {entry.title for entry in feed.entries}
        assert {a.feed_title for a in site.articles} <= titles
        dated = {e.title for e in feed.entries if e.get("published_parsed") or e.get("updated")}
        assert {a.feed_title for a in site.articles if a.published} <= dated


def _locs(xml: bytes, tag: str) -> list[str]:
    return [el.text or "" for el in ET.fromstring(xml).iter(f"{SITEMAP_NS}{tag}")]


def test_sitemaps_list_every_article_and_failure(served: list[Site], client: httpx.Client) -> None:
    for site in served:
        resp = client.get(site.url(site.sitemap_path))
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("application/xml")
        locs: list[str] = []
        if site.name == "dailyplanet":
            children = _locs(resp.content, "loc")
            assert ET.fromstring(resp.content).tag == f"{SITEMAP_NS}sitemapindex"
            assert [c.removeprefix(site.base_url) for c in children] == [
                "/sitemap-news.xml",
                "/sitemap-2.xml.gz",
            ]
            news = client.get(children[0])
            assert b"<news:publication_date>" in news.content
            assert b"<news:title>" in news.content
            packed = client.get(children[1])
            assert packed.headers["content-type"] in ("application/gzip", "application/x-gzip")
            assert "content-encoding" not in packed.headers  # the crawler must gunzip it
            locs = _locs(news.content, "loc") + _locs(gzip.decompress(packed.content), "loc")
        else:
            locs = _locs(resp.content, "loc")
        expected = [site.url(a.path) for a in site.articles] + [
            site.url(f.path) for f in site.failures
        ]
        assert sorted(locs) == sorted(expected), site.name


def test_listing_links_articles_and_navigation(served: list[Site], client: httpx.Client) -> None:
    for site in served:
        resp = client.get(site.url(site.listing_path))
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "text/html; charset=utf-8"
        page = resp.text
        for article in site.articles:
            assert f'href="{article.path}"' in page.replace("&amp;", "&")
        for nav in ("/category/world", "/tag/x", "/about", "/login"):
            assert f'href="{nav}"' in page
            assert client.get(site.url(nav)).status_code == 200
        assert client.get(site.url("/robots.txt")).text.startswith("User-agent: *\nAllow: /")


def test_articles_are_served_as_corpus_bytes_with_their_charset(
    served: list[Site], client: httpx.Client
) -> None:
    for site in served:
        aliased = {p for v, p in site.variants.items() if v.startswith("/amp/")}
        for article in site.articles:
            resp = client.get(site.url(article.path))
            assert resp.status_code == 200, article.path
            charset = resp.headers["content-type"].split("charset=")[1]
            real = article_charset(article, site)
            canonical = f'<link rel="canonical" href="{site.url(article.path)}">'.encode()
            if canonical not in resp.content and charset == real:
                assert resp.content == corpus_html(article, site), article.path
            if article.path in aliased:
                assert canonical in resp.content, article.path
                alias = client.get(site.url("/amp" + article.path))
                assert alias.content == resp.content
            if charset != real:
                # The page lies: it claims UTF-8 and is windows-1252.
                with pytest.raises(UnicodeDecodeError):
                    resp.content.decode(charset)
                text = resp.content.decode(real)
                assert any(ch in "".join(article.text_snippets) for ch in "äöüß")
                assert all(s in text for s in article.text_snippets if s.isascii())


def test_variants_redirects_and_failures_behave(served: list[Site], client: httpx.Client) -> None:
    for site in served:
        for variant, path in site.variants.items():
            resp = client.get(site.url(variant))
            if variant.startswith("/r/"):
                assert resp.status_code == 301
                assert resp.headers["location"] == site.url(path)
            else:
                assert resp.status_code == 200
                assert resp.content == client.get(site.url(path)).content
        for failure in site.failures:
            if failure.kind == "slow":
                continue
            resp = client.get(site.url(failure.path))
            if failure.status == "http_error":
                assert resp.status_code == failure.http_status
            elif failure.kind == "empty":
                assert (resp.status_code, resp.content) == (200, b"")
                assert resp.headers["content-type"].startswith("text/html")
            elif failure.kind in ("pdf", "pdf_as_html"):
                assert resp.content.startswith(b"%PDF-1.4\n")
                expected = "application/pdf" if failure.kind == "pdf" else "text/html"
                assert resp.headers["content-type"].startswith(expected)
            elif failure.kind == "boilerplate":
                assert resp.status_code == 200 and b"<nav" in resp.content
            elif failure.kind == "loop":
                first = client.get(site.url("/loop/a"))
                second = client.get(site.url(first.headers["location"]))
                assert (first.status_code, first.headers["location"]) == (302, "/loop/b")
                assert (second.status_code, second.headers["location"]) == (302, "/loop/a")
            elif failure.kind == "metadata_redirect":
                assert (resp.status_code, resp.headers["location"]) == (302, METADATA_URL)
    unknown = client.get(served[0].url("/no/such/page"))
    assert unknown.status_code == 404


def test_slow_page_does_not_block_other_requests(
    served: list[Site], client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSAGG_TEST_SLOW_SECONDS", "1.0")
    site = next(s for s in served if any(f.kind == "slow" for f in s.failures))
    slow = next(f for f in site.failures if f.kind == "slow")
    outcome: list[str] = []

    def fetch_slow() -> None:
        with httpx.Client(trust_env=False, timeout=0.3) as c:
            try:
                c.get(site.url(slow.path))
                outcome.append("answered")
            except httpx.ReadTimeout:
                outcome.append("timeout")

    thread = threading.Thread(target=fetch_slow)
    thread.start()
    time.sleep(0.05)
    started = time.monotonic()
    assert client.get(site.url(site.feed_path)).status_code == 200
    assert time.monotonic() - started < 0.3
    thread.join()
    assert outcome == ["timeout"]


def test_conditional_get_answers_304(served: list[Site], client: httpx.Client) -> None:
    site = served[0]
    first = client.get(site.url(site.feed_path))
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    assert client.get(site.url(site.feed_path), headers={"If-None-Match": etag}).status_code == 304
    again = client.get(site.url(site.feed_path), headers={"If-Modified-Since": modified})
    assert (again.status_code, again.content) == (304, b"")


def test_requests_are_logged_and_stay_on_the_site(served: list[Site], client: httpx.Client) -> None:
    site = served[1]
    before = len(site.requests)
    client.get(site.url(site.feed_path))
    client.head(site.url(site.listing_path))
    blocked = next(f for f in site.failures if f.kind == "metadata_redirect")
    client.get(site.url(blocked.path))
    assert site.requests[before:] == [
        ("GET", site.feed_path),
        ("HEAD", site.listing_path),
        ("GET", blocked.path),
    ]
    for s in served:
        # Origin-form targets only: nobody used a test site as a proxy for another host.
        assert all(target.startswith("/") for target in s.requested_paths())
        assert not any("169.254" in target for target in s.requested_paths())


def test_expectations_hold_for_trafilatura(served: list[Site], client: httpx.Client) -> None:
    """The expected values describe what trafilatura extracts from the pages as served."""
    for site in served:
        for article in site.articles:
            url = site.url(article.path)
            body = client.get(url).content
            html = body.decode(article_charset(article, site))
            doc = trafilatura.bare_extraction(
                html, url=url, with_metadata=True, include_comments=False
            )
            assert isinstance(doc, Document), url
            assert article.title_contains in (doc.title or ""), (url, doc.title)
            for snippet in article.text_snippets:
                assert snippet in (doc.text or ""), (url, snippet)
            if article.published:
                assert doc.date == article.published, url
