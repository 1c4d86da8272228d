"""Unit tests for workers.discover on the real feeds and sitemaps of the shared corpus, plus
synthetic bodies for what the corpus lacks (news sitemaps, indexes, hostile input)."""

from __future__ import annotations

import gzip
import time
import tracemalloc
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import CORPUS
from workers.discover import (
    Candidate,
    Discovery,
    DiscoveryError,
    discover,
    is_article_url,
    parse_feed,
    parse_listing,
    parse_sitemap,
)

FEEDS = CORPUS / "feeds"
SITEMAPS = CORPUS / "sitemaps"

# Counted in the files: <item / <entry elements (grep -o), minus entries without a usable
# link: one <link></link> in no_encoding_ISO-8859-1, one Atom entry with only rel="self" in
# feed1.atom. trafilatura-feed.json has 25 items, each with a url.
FEED_COUNTS = {
    "miniflux-encoding_ISO-8859-1.xml": 40,
    "miniflux-encoding_WINDOWS-1251.xml": 50,
    "miniflux-large_atom.xml": 25,
    "miniflux-large_rss.xml": 25,
    "miniflux-no_encoding_ISO-8859-1.xml": 9,
    "miniflux-rdf_UTF8.xml": 60,
    "miniflux-small_atom.xml": 20,
    "miniflux-urdu_UTF8.xml": 26,
    "trafilatura-feed.json": 25,
    "trafilatura-feed1.atom": 1,
    "trafilatura-feed2.rss": 1,
}
SITEMAP_COUNTS = {
    "trafilatura-sitemap-hreflang.xml": (3, 1),
    "trafilatura-sitemap.xml": (84, 0),
    "trafilatura-sitemap.xml.gz": (84, 0),
    "trafilatura-sitemap2.xml": (0, 2),
}


def read_corpus(path: Path) -> bytes:
    return path.read_bytes()


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def assert_newest_first(found: Discovery) -> None:
    dates = [c.published_at for c in found.candidates]
    dated = [d for d in dates if d is not None]
    assert dated == sorted(dated, reverse=True)
    assert dates[: len(dated)] == dated, "undated candidates must follow the dated ones"


def billion_laughs(root: str, levels: int = 10, *, hide_from_feedparser: bool = False) -> str:
    entities = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, levels)
    ]
    # A "<x" inside a comment ends the prolog window feedparser scans for declarations.
    comment = "<!-- <x -->\n" if hide_from_feedparser else ""
    doctype = f"<!DOCTYPE {root} [\n{comment}" + "\n".join(entities) + "\n]>"
    return f'<?xml version="1.0"?>\n{doctype}\n'


# --- feeds: the corpus ---------------------------------------------------------------------


def test_every_corpus_feed_has_an_expected_count() -> None:
    assert sorted(p.name for p in FEEDS.iterdir()) == sorted(FEED_COUNTS)


@pytest.mark.parametrize(("name", "count"), sorted(FEED_COUNTS.items()))
def test_corpus_feed_yields_its_entries(name: str, count: int) -> None:
    found = parse_feed(read_corpus(FEEDS / name), "https://feeds.example/feed")

    assert len(found.candidates) == count
    assert len({c.url for c in found.candidates}) == count
    assert all(c.url.startswith(("http://", "https://")) for c in found.candidates)
    assert all(c.title for c in found.candidates)
    assert all(c.published_at is None or c.published_at.tzinfo for c in found.candidates)
    assert_newest_first(found)


def test_atom_feed_reads_title_dates_and_author() -> None:
    found = parse_feed(read_corpus(FEEDS / "miniflux-large_atom.xml"), "https://dustri.org/b/")

    assert found.candidates[0] == Candidate(
        url="https://dustri.org/b/using-vale-with-vim.html",
        title="Using vale with vim",
        published_at=utc(2024, 3, 10, 16, 15),  # 2024-03-10T17:15:00+01:00
        author="jvoisin",
    )


def test_rss_feed_reads_dc_creator_as_author() -> None:
    found = parse_feed(read_corpus(FEEDS / "miniflux-large_rss.xml"), "https://dustri.org/b/")

    first = found.candidates[0]
    assert first.url == "https://dustri.org/b/using-vale-with-vim.html"
    assert first.author == "jvoisin"
    assert first.published_at == utc(2024, 3, 10, 16, 15)  # Sun, 10 Mar 2024 17:15:00 +0100


def test_atom_entry_without_published_falls_back_to_updated() -> None:
    found = parse_feed(read_corpus(FEEDS / "miniflux-small_atom.xml"), "https://github.com/")

    first = found.candidates[0]
    assert first.url == (
        "https://github.com/miniflux/v2/commit/6d97f8b4582414b6ce69467656824690057d4793"
    )
    assert first.title == "Parse podcast categories"  # whitespace around it is dropped
    assert first.published_at == utc(2024, 3, 12, 5, 30, 27)
    assert first.author == "fguillot"


def test_windows_1251_feed_decodes_to_cyrillic() -> None:
    found = parse_feed(
        read_corpus(FEEDS / "miniflux-encoding_WINDOWS-1251.xml"), "http://ibash.org.ru/"
    )

    assert found.candidates[0] == Candidate(
        url="http://ibash.org.ru/quote.php?id=17703",
        title="Цитата #17703",
        published_at=utc(2018, 3, 21, 7, 27, 32),  # Wed, 21 Mar 2018 10:27:32 +0300
    )


def test_iso_8859_1_feed_decodes_umlauts() -> None:
    found = parse_feed(
        read_corpus(FEEDS / "miniflux-encoding_ISO-8859-1.xml"), "https://rss.golem.de/"
    )

    titles = {c.title for c in found.candidates}
    assert "Machine Learning: Von KI erstelltes Porträt für 432.500 US.Dollar versteigert" in titles
    assert found.candidates[0].published_at == utc(2018, 10, 28, 12, 48)


def test_feed_without_declared_encoding_decodes_accents() -> None:
    found = parse_feed(
        read_corpus(FEEDS / "miniflux-no_encoding_ISO-8859-1.xml"),
        "https://le-cercle-psy.scienceshumaines.com/rss",
    )

    titles = {c.title for c in found.candidates}
    assert "Psychologue à domicile : de la clinique à l'état brut" in titles
    assert "" not in {c.url for c in found.candidates}


def test_rdf_feed_keeps_document_order_without_dates() -> None:
    found = parse_feed(read_corpus(FEEDS / "miniflux-rdf_UTF8.xml"), "https://www.heise.de/")

    first = found.candidates[0]
    assert first.title == "OLED-TVs: Vorsichtsmaßnahmen gegen Einbrennen"
    assert first.url.startswith(
        "https://www.heise.de/newsticker/meldung/OLED-TVs-Vorsichtsmassnahmen-gegen-Einbrennen"
    )
    assert all(c.published_at is None for c in found.candidates)
    assert "Mi-Mix-3-Xiaomi-Flaggschiff" in found.candidates[-1].url


def test_rss_ttl_is_converted_to_seconds() -> None:
    urdu = parse_feed(read_corpus(FEEDS / "miniflux-urdu_UTF8.xml"), "http://www.bbcurdu.com")
    example = parse_feed(read_corpus(FEEDS / "trafilatura-feed2.rss"), "http://www.example.com/")

    assert urdu.ttl_seconds == 15 * 60
    assert example.ttl_seconds == 1800 * 60
    assert example.candidates == (
        Candidate(
            url="http://www.example.com/blog/post/1",
            title="Example entry",
            published_at=utc(2009, 9, 6, 16, 20),
        ),
    )


def test_urdu_feed_is_sorted_newest_first() -> None:
    found = parse_feed(read_corpus(FEEDS / "miniflux-urdu_UTF8.xml"), "http://www.bbcurdu.com")

    # The file lists pakistan-42575603 (5 Jan 2018) before pakistan-42645212 (11 Jan 2018).
    assert found.candidates[0].url == "http://www.bbc.com/urdu/pakistan-42645212"
    assert found.candidates[0].published_at == utc(2018, 1, 11, 13, 20, 55)


def test_atom_entry_with_only_a_self_link_is_skipped() -> None:
    found = parse_feed(read_corpus(FEEDS / "trafilatura-feed1.atom"), "http://example.org/")

    assert [c.url for c in found.candidates] == ["http://example.org/2003/12/13/atom03"]
    assert found.candidates[0].title == "Atom-Powered Robots Run Amok"


def test_json_feed_reads_url_title_date_and_author() -> None:
    found = parse_feed(read_corpus(FEEDS / "trafilatura-feed.json"), "https://feeds.npr.org/")

    first = found.candidates[0]
    assert first.url == (
        "https://www.npr.org/2021/10/29/1050315385/"
        "keller-rinaudo-how-can-delivery-drones-save-lives"
        "?utm_medium=JSONFeed&utm_campaign=technology"
    )
    assert first.title == "Keller Rinaudo: How can delivery drones save lives?"
    assert first.published_at == utc(2021, 10, 29, 14, 26)  # 2021-10-29T10:26:00-04:00
    assert first.author == "Manoush Zomorodi"


# --- feeds: synthetic ----------------------------------------------------------------------


def test_atom_relative_links_resolve_and_prefer_the_html_alternate() -> None:
    body = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>News</title>
  <entry>
    <title>Storm hits the coast</title>
    <link rel="enclosure" type="audio/mpeg" href="/audio/storm.mp3"/>
    <link rel="alternate" type="text/html" href="/2024/05/17/storm-hits-the-coast"/>
    <link rel="alternate" type="application/json" href="/api/storm.json"/>
    <author><name>Jane Doe</name></author>
    <published>2024-05-17T10:00:00+02:00</published>
  </entry>
  <entry>
    <title>Relative to the feed</title>
    <link href="../world/markets-rally"/>
    <updated>2024-05-16T09:00:00Z</updated>
  </entry>
</feed>"""
    found = parse_feed(body, "https://news.example/feeds/all.atom")

    assert found.candidates == (
        Candidate(
            url="https://news.example/2024/05/17/storm-hits-the-coast",
            title="Storm hits the coast",
            published_at=utc(2024, 5, 17, 8),
            author="Jane Doe",
        ),
        Candidate(
            url="https://news.example/world/markets-rally",
            title="Relative to the feed",
            published_at=utc(2024, 5, 16, 9),
        ),
    )


def test_rss_skips_non_http_links_and_repeats_and_orders_undated_last() -> None:
    body = b"""<rss version="2.0"><channel><title>t</title>
<item><title>undated one</title><link>/a/undated-one</link></item>
<item><title>old</title><link>https://n.example/old</link>
  <pubDate>Mon, 01 Jan 2024 00:00:00 GMT</pubDate></item>
<item><title>script</title><link>javascript:alert(1)</link></item>
<item><title>local file</title><link>file:///etc/passwd</link></item>
<item><title>no link</title></item>
<item><title>new</title><link>https://n.example/new</link>
  <pubDate>Tue, 02 Jan 2024 00:00:00 GMT</pubDate></item>
<item><title>old again</title><link>https://n.example/old</link>
  <pubDate>Wed, 03 Jan 2024 00:00:00 GMT</pubDate></item>
<item><title>undated two</title><link>https://n.example/b/undated-two</link></item>
</channel></rss>"""
    found = parse_feed(body, "https://n.example/rss")

    assert [(c.url, c.title) for c in found.candidates] == [
        ("https://n.example/new", "new"),
        ("https://n.example/old", "old"),
        ("https://n.example/a/undated-one", "undated one"),
        ("https://n.example/b/undated-two", "undated two"),
    ]


def test_valid_feed_without_entries_is_empty() -> None:
    body = b'<rss version="2.0"><channel><title>t</title><ttl>60</ttl></channel></rss>'

    assert parse_feed(body, "https://n.example/rss") == Discovery(candidates=(), ttl_seconds=3600)


def test_empty_feed_with_a_wrong_charset_declaration_is_empty_not_malformed() -> None:
    body = '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Café'
    body += "</title></channel></rss>"

    assert parse_feed(body.encode("latin-1"), "https://n.example/rss").candidates == ()


def test_broken_feed_with_entries_is_still_read() -> None:
    body = b"""<rss version="2.0"><channel><title>t</title>
<item><title>One & two</title><link>https://n.example/one</link></item>
<item><title>Cut off"""
    found = parse_feed(body, "https://n.example/rss")

    assert [c.url for c in found.candidates] == ["https://n.example/one"]


@pytest.mark.parametrize(
    "body",
    [
        b"<html><body><p>Not found</body>",
        b"hello, this is not a feed",
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</ch',
    ],
)
def test_malformed_feed_raises(body: bytes) -> None:
    with pytest.raises(DiscoveryError, match=r"^malformed feed: "):
        parse_feed(body, "https://n.example/rss")


def test_well_formed_xml_that_is_no_feed_raises() -> None:
    with pytest.raises(DiscoveryError, match="not a feed"):
        parse_feed(b'<?xml version="1.0"?><note><to>you</to></note>', "https://n.example/")


def test_malformed_json_feed_raises() -> None:
    with pytest.raises(DiscoveryError, match="malformed JSON feed"):
        parse_feed(b'{"version": "https://jsonfeed.org/version/1.1", "items": [', "https://j/")
    with pytest.raises(DiscoveryError, match="malformed JSON feed"):
        parse_feed(b'{"items": ' + b"[" * 100_000, "https://j/")
    with pytest.raises(DiscoveryError, match="no items list"):
        parse_feed(b'{"version": "https://jsonfeed.org/version/1.1"}', "https://j/")


def test_json_feed_1_1_authors_relative_urls_and_missing_urls() -> None:
    body = """\ufeff{"version": "https://jsonfeed.org/version/1.1", "items": [
        {"id": "1", "url": "/2024/05/17/storm", "title": "Storm",
         "date_published": "2024-05-17T10:00:00Z", "authors": [{"name": "Ana"}]},
        {"id": "2", "title": "no url"},
        {"id": "3", "external_url": "https://other.example/story", "date_modified": "2024-05-18"}
    ]}""".encode()
    found = parse_feed(body, "https://j.example/feed.json")

    assert found.candidates == (
        Candidate(url="https://other.example/story", published_at=utc(2024, 5, 18)),
        Candidate(
            url="https://j.example/2024/05/17/storm",
            title="Storm",
            published_at=utc(2024, 5, 17, 10),
            author="Ana",
        ),
    )


@pytest.mark.parametrize("hide_from_feedparser", [False, True])
def test_billion_laughs_feed_is_refused_quickly(hide_from_feedparser: bool) -> None:
    body = (
        billion_laughs("rss", hide_from_feedparser=hide_from_feedparser)
        + '<rss version="2.0"><channel><title>&lol9;</title>'
        "<item><title>&lol9;</title><link>https://n.example/a</link></item></channel></rss>"
    ).encode()
    started = time.perf_counter()

    with pytest.raises(DiscoveryError, match="feed declares XML entities"):
        parse_feed(body, "https://n.example/rss")
    assert time.perf_counter() - started < 0.5


def test_billion_laughs_feed_in_utf16_is_refused() -> None:
    text = billion_laughs("rss", hide_from_feedparser=True).replace(
        '<?xml version="1.0"?>', '<?xml version="1.0" encoding="utf-16"?>'
    )
    body = (text + '<rss version="2.0"><channel><title>&lol9;</title></channel></rss>').encode(
        "utf-16"
    )

    with pytest.raises(DiscoveryError, match="feed declares XML entities"):
        parse_feed(body, "https://n.example/rss")


def test_external_entity_feed_is_refused() -> None:
    body = b"""<?xml version="1.0"?>
<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<rss version="2.0"><channel><item><title>&xxe;</title><link>https://n.example/a</link>
</item></channel></rss>"""

    with pytest.raises(DiscoveryError, match="feed declares XML entities"):
        parse_feed(body, "https://n.example/rss")


def test_feed_body_that_names_a_local_file_is_not_read_from_disk() -> None:
    # feedparser.parse(b"/some/path") opens that path; the body must be parsed as data.
    body = str(FEEDS / "trafilatura-feed2.rss").encode()

    with pytest.raises(DiscoveryError, match="malformed feed"):
        parse_feed(body, "https://n.example/rss")


# --- sitemaps: the corpus ------------------------------------------------------------------


def test_every_corpus_sitemap_has_an_expected_count() -> None:
    assert sorted(p.name for p in SITEMAPS.iterdir()) == sorted(SITEMAP_COUNTS)


@pytest.mark.parametrize(("name", "counts"), sorted(SITEMAP_COUNTS.items()))
def test_corpus_sitemap_yields_its_urls(name: str, counts: tuple[int, int]) -> None:
    found = parse_sitemap(read_corpus(SITEMAPS / name), "https://www.sitemaps.org/sitemap.xml")

    assert (len(found.candidates), len(found.child_sitemaps)) == counts


def test_sitemap_reads_loc_and_lastmod() -> None:
    found = parse_sitemap(read_corpus(SITEMAPS / "trafilatura-sitemap.xml"), "https://x/")

    assert found.candidates[0] == Candidate(
        url="https://www.sitemaps.org/", published_at=utc(2016, 11, 21)
    )
    assert found.candidates[-1].url == "https://www.sitemaps.org/zh_TW/terms.html"


def test_gzipped_sitemap_equals_the_plain_one() -> None:
    plain = parse_sitemap(read_corpus(SITEMAPS / "trafilatura-sitemap.xml"), "https://x/")
    packed = parse_sitemap(read_corpus(SITEMAPS / "trafilatura-sitemap.xml.gz"), "https://x/")

    assert packed == plain


def test_hreflang_alternates_are_not_candidates() -> None:
    found = parse_sitemap(read_corpus(SITEMAPS / "trafilatura-sitemap-hreflang.xml"), "https://x/")

    assert [c.url for c in found.candidates] == [
        "http://www.example.com/english/page.html",
        "http://www.example.com/deutsch/page.html",
        "http://www.example.com/schweiz-deutsch/page.html",
    ]
    # The file also nests a <sitemap> in its <urlset>; its hreflang links are not children.
    assert found.child_sitemaps == ("http://www.example.com/sitemap2.xml.gz",)


def test_sitemap_index_lists_children_including_cdata() -> None:
    found = parse_sitemap(read_corpus(SITEMAPS / "trafilatura-sitemap2.xml"), "https://x/")

    assert found == Discovery(
        candidates=(),
        child_sitemaps=(
            "http://www.example.com/sitemap1.xml.gz",
            "http://www.example.com/sitemap2.xml.gz",
        ),
        child_lastmods=(
            datetime(2004, 10, 1, 18, 23, 17, tzinfo=UTC),
            datetime(2005, 1, 1, tzinfo=UTC),
        ),
    )


# --- sitemaps: synthetic -------------------------------------------------------------------


def test_sitemap_index_without_namespace_and_with_relative_locs() -> None:
    body = b"""<?xml version="1.0"?>
<sitemapindex>
  <sitemap><loc>/sitemaps/news.xml</loc></sitemap>
  <sitemap><loc>https://n.example/sitemaps/2024-05.xml.gz</loc><lastmod>2024-05</lastmod></sitemap>
  <sitemap><loc>/sitemaps/news.xml</loc></sitemap>
  <sitemap><loc>mailto:webmaster@n.example</loc></sitemap>
</sitemapindex>"""

    assert parse_sitemap(body, "https://n.example/sitemap.xml").child_sitemaps == (
        "https://n.example/sitemaps/news.xml",
        "https://n.example/sitemaps/2024-05.xml.gz",
    )


def test_google_news_sitemap_reads_publication_date_and_title() -> None:
    body = b"""<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"
        xmlns:news="http://www.google.com/schemas/sitemap-news/0.9"
        xmlns:image="http://www.google.com/schemas/sitemap-image/1.1"
        xmlns:xhtml="http://www.w3.org/1999/xhtml">
  <url>
    <loc>https://n.example/business/article55.html</loc>
    <lastmod>2024-05-20T00:00:00Z</lastmod>
    <xhtml:link rel="alternate" hreflang="de" href="https://n.example/de/artikel55.html"/>
    <image:image>
      <image:loc>https://n.example/img/article55.jpg</image:loc>
      <image:title>A photo</image:title>
    </image:image>
    <news:news>
      <news:publication><news:name>The Example Times</news:name>
        <news:language>en</news:language></news:publication>
      <news:publication_date>2024-05-17T10:30:00+02:00</news:publication_date>
      <news:title>Companies A, B in merger talks</news:title>
    </news:news>
  </url>
  <url>
    <loc>https://n.example/politics/article56.html</loc>
    <news:news>
      <news:publication_date>2024-05-18</news:publication_date>
      <news:title>  Election
        called  </news:title>
    </news:news>
  </url>
  <url><loc>https://n.example/undated.html</loc></url>
  <url><loc>   </loc></url>
</urlset>"""
    found = parse_sitemap(body, "https://n.example/sitemap-news.xml")

    assert found.candidates == (
        Candidate(
            url="https://n.example/politics/article56.html",
            title="Election called",
            published_at=utc(2024, 5, 18),
        ),
        Candidate(
            url="https://n.example/business/article55.html",
            title="Companies A, B in merger talks",
            published_at=utc(2024, 5, 17, 8, 30),
        ),
        Candidate(url="https://n.example/undated.html"),
    )


def test_news_sitemap_with_undeclared_prefix_is_still_read() -> None:
    body = b"""<urlset><url><loc>https://n.example/a</loc><news:news>
<news:publication_date>2024-05-17T10:00Z</news:publication_date><news:title>T</news:title>
</news:news></url></urlset>"""

    assert parse_sitemap(body, "https://n.example/").candidates == (
        Candidate(url="https://n.example/a", title="T", published_at=utc(2024, 5, 17, 10)),
    )


def test_stray_ampersands_and_undeclared_entities_do_not_corrupt_urls() -> None:
    body = b"""<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"
        xmlns:news="http://www.google.com/schemas/sitemap-news/0.9">
<url><loc>https://n.example/list?a=1&b=2</loc></url>
<url><loc>https://n.example/story&nbsp;x</loc>
  <news:news><news:title>Tom&nbsp;&amp;&nbsp;Jerry</news:title></news:news></url>
<url><loc><![CDATA[https://n.example/cdata?c=1&d=2]]></loc></url>
<url><loc>https://n.example/escaped?e=1&amp;f=2&#38;g=3</loc></url>
</urlset>"""

    found = parse_sitemap(body, "https://n.example/")

    assert [c.url for c in found.candidates] == [
        "https://n.example/list?a=1&b=2",
        "https://n.example/story&nbsp;x",
        "https://n.example/cdata?c=1&d=2",
        "https://n.example/escaped?e=1&f=2&g=3",
    ]
    assert found.candidates[1].title == "Tom & Jerry"


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """200 MiB of zeros, about 200 KB compressed."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    zeros = bytes(8 << 20)
    parts = [deflater.compress(zeros) for _ in range(25)]
    parts.append(deflater.flush())
    return b"".join(parts)


def test_gzip_bomb_is_refused_without_inflating_it(gzip_bomb: bytes) -> None:
    assert len(gzip_bomb) < 1 << 20
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(DiscoveryError, match="larger than 1048576 bytes after decompression"):
            parse_sitemap(gzip_bomb, "https://n.example/", max_bytes=1 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert time.perf_counter() - started < 1.0
    assert peak < 8 << 20


def test_multi_member_gzip_is_read_whole() -> None:
    head = b'<?xml version="1.0"?><urlset><url><loc>https://n.example/a</loc></url>'
    tail = b"<url><loc>https://n.example/b</loc></url></urlset>"
    body = gzip.compress(head) + gzip.compress(tail)

    assert [c.url for c in parse_sitemap(body, "https://n.example/").candidates] == [
        "https://n.example/a",
        "https://n.example/b",
    ]


def test_broken_gzip_raises() -> None:
    whole = gzip.compress(b"<urlset><url><loc>https://n.example/a</loc></url></urlset>")

    with pytest.raises(DiscoveryError, match="ends early"):
        parse_sitemap(whole[: len(whole) // 2], "https://n.example/")
    with pytest.raises(DiscoveryError, match="not valid gzip"):
        parse_sitemap(whole[:10] + b"\xff" * 40, "https://n.example/")


def test_plain_sitemap_over_the_limit_raises() -> None:
    body = b"<urlset>" + b"<url><loc>https://n.example/a</loc></url>" * 100 + b"</urlset>"

    with pytest.raises(DiscoveryError, match="sitemap larger than 1000 bytes"):
        parse_sitemap(body, "https://n.example/", max_bytes=1000)


@pytest.mark.parametrize("hide_from_feedparser", [False, True])
def test_billion_laughs_sitemap_is_refused_quickly(hide_from_feedparser: bool) -> None:
    body = (
        billion_laughs("urlset", hide_from_feedparser=hide_from_feedparser)
        + '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        "<url><loc>https://n.example/&lol9;</loc></url>"
        "<url><loc>https://n.example/plain</loc></url></urlset>"
    ).encode()
    started = time.perf_counter()

    with pytest.raises(DiscoveryError, match="sitemap declares XML entities"):
        parse_sitemap(gzip.compress(body), "https://n.example/")
    assert time.perf_counter() - started < 0.5


def test_external_entity_sitemap_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cret")
    body = (
        f'<?xml version="1.0"?><!DOCTYPE urlset [<!ENTITY x SYSTEM "{secret.as_uri()}">]>'
        "<urlset><url><loc>https://n.example/&x;</loc></url></urlset>"
    ).encode()

    with pytest.raises(DiscoveryError, match="sitemap declares XML entities") as raised:
        parse_sitemap(body, "https://n.example/")
    assert "s3cret" not in str(raised.value)


def test_sitemap_with_an_external_dtd_loads_nothing(tmp_path: Path) -> None:
    dtd = tmp_path / "evil.dtd"
    dtd.write_text('<!ENTITY x "from-the-dtd">')
    body = (
        f'<?xml version="1.0"?><!DOCTYPE urlset SYSTEM "{dtd.as_uri()}">'
        "<urlset><url><loc>https://n.example/a&x;</loc></url>"
        "<url><loc>https://n.example/b</loc></url></urlset>"
    ).encode()

    found = parse_sitemap(body, "https://n.example/")

    assert "from-the-dtd" not in repr(found)
    assert Candidate(url="https://n.example/b") in found.candidates


def test_text_sitemap_lists_one_url_per_line() -> None:
    body = (
        "\ufeffhttps://n.example/a\r\n\r\n  https://n.example/b  \nnot a url\nhttps://n.example/a\n"
    )

    found = parse_sitemap(body.encode(), "https://n.example/sitemap.txt")

    assert found.candidates == (
        Candidate(url="https://n.example/a"),
        Candidate(url="https://n.example/b"),
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "sitemap is empty"),
        (b" \n ", "sitemap is empty"),
        (b"Service unavailable, try later", "neither XML nor a list of URLs"),
        (b"<", "not XML"),
        (b"<html><body><a href='/x'>x</a></body></html>", "root element is <html>"),
        (b'<rss version="2.0"><channel></channel></rss>', "root element is <rss>"),
    ],
)
def test_body_that_is_no_sitemap_raises(body: bytes, message: str) -> None:
    with pytest.raises(DiscoveryError, match=message):
        parse_sitemap(body, "https://n.example/sitemap.xml")


# --- listing pages -------------------------------------------------------------------------

LISTING = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>World news</title>
<base href="https://www.example.com/"></head>
<body>
<nav>
  <a href="/">Home</a> <a href="/category/politics">Politics</a> <a href="/tag/x">x</a>
  <a href="/about">About</a> <a href="/contact-us/">Contact us</a> <a href="/login">Log in</a>
  <a href="/privacy-policy">Privacy policy</a> <a href="/feed">RSS</a>
  <a href="/author/jane-doe">Jane Doe</a> <a href="/page/2">Next page</a>
  <a href="/search?q=storm">Search</a> <a href="/world">World</a>
</nav>
<main>
  <a href="world/2024/may/17/storm-hits-coast"><img src="/img/storm.jpg" alt=""></a>
  <a href="world/2024/may/17/storm-hits-coast">
     Storm hits the
     coast</a>
  <a href="https://example.com/news/world-europe-12345678">Europe votes</a>
  <a href="/news/markets-rally-as-inflation-cools-down#comments">3 comments</a>
  <a href="https://news.example.com/2024/05/16/fresh-from-the-newsroom">Fresh from the newsroom</a>
  <a href="https://www.other.org/2024/05/17/someone-elses-story">Someone else's story</a>
  <a href="/files/annual-report-for-the-year-2024.pdf">Annual report for 2024</a>
  <a href="/images/storm-hits-coast-photo-12345.jpg">Photo</a>
  <a href="/2024/05/17/">All of today</a>
  <a href="mailto:desk@example.com">Mail the desk</a>
  <a href="javascript:void(0)">Load more stories here</a>
  <a>No href at all here</a>
  <a href="#top">Back to top</a>
</main>
</body></html>"""


def test_listing_keeps_same_site_article_links_with_titles() -> None:
    found = parse_listing(LISTING, "https://www.example.com/world")

    assert found.candidates == (
        Candidate(
            url="https://www.example.com/world/2024/may/17/storm-hits-coast",
            title="Storm hits the coast",
        ),
        Candidate(url="https://example.com/news/world-europe-12345678"),  # two words: no title
        Candidate(url="https://www.example.com/news/markets-rally-as-inflation-cools-down"),
        Candidate(
            url="https://news.example.com/2024/05/16/fresh-from-the-newsroom",
            title="Fresh from the newsroom",
        ),
    )
    assert found.child_sitemaps == ()


def test_listing_in_windows_1251_reads_cyrillic_anchor_text() -> None:
    html = (
        '<html><head><meta http-equiv="Content-Type" content="text/html; charset=windows-1251">'
        '</head><body><a href="/news/2024/05/17/vybory">Выборы в городе прошли спокойно</a>'
        "</body></html>"
    )

    found = parse_listing(html.encode("windows-1251"), "https://ru.example/news/")

    assert found.candidates == (
        Candidate(
            url="https://ru.example/news/2024/05/17/vybory",
            title="Выборы в городе прошли спокойно",
        ),
    )


def test_empty_listing_page_raises() -> None:
    with pytest.raises(DiscoveryError, match="unreadable page"):
        parse_listing(b"", "https://n.example/")


@pytest.mark.parametrize(
    "url",
    [
        "https://www.bbc.com/news/world-europe-12345678",
        "https://www.theguardian.com/world/2024/may/17/some-slug",
        "https://www.npr.org/2021/10/29/1050315385/keller-rinaudo-how-can-delivery-drones-save-lives",
        "https://www.heise.de/newsticker/meldung/OLED-TVs-gegen-Einbrennen-4205274.html",
        "https://dustri.org/b/using-vale-with-vim.html",
        "https://dustri.org/b/carrot-disclosure.html",
        "https://example.com/news/coachella-face-coverings",
        "https://example.com/faits-divers/incendie-frain.html",
        "https://example.com/2024/05/slug",
        "https://example.com/2024-05-17/storm",
        "http://ibash.org.ru/quote.php?id=17703",
    ],
)
def test_article_like_urls_are_articles(url: str) -> None:
    assert is_article_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/",
        "https://example.com",
        "https://example.com/index.html",
        "https://example.com/category/politics",
        "https://example.com/tag/x",
        "https://example.com/about",
        "https://example.com/contact.html",
        "https://example.com/privacy-policy",
        "https://example.com/author/jane-doe",
        "https://example.com/page/2",
        "https://example.com/search?q=storm-hits-coast-today",
        "https://example.com/login",
        "https://example.com/feed",
        "https://example.com/rss.xml",
        "https://example.com/topics/climate-change-and-the-economy",
        "https://example.com/news/world-europe",
        "https://example.com/news/science-and-environment",
        "https://example.com/world/us-politics",
        "https://example.com/2024/05/",
        "https://example.com/2024/05/17/",
        "https://example.com/files/annual-report-2024-final-version.pdf",
        "https://example.com/static/app.bundle.12345678.js",
        "https://example.com/wp-content/uploads/2024/05/storm-hits-the-coast.png",
    ],
)
def test_navigation_file_and_home_urls_are_not_articles(url: str) -> None:
    assert not is_article_url(url)


# --- dispatch ------------------------------------------------------------------------------


def test_discover_dispatches_on_kind() -> None:
    rss = (
        b'<rss version="2.0"><channel><item><link>https://n.example/a</link></item></channel></rss>'
    )
    sitemap = b"<urlset><url><loc>https://n.example/b</loc></url></urlset>"
    page = b'<html><body><a href="/2024/05/17/c-story">c</a></body></html>'

    assert discover("feed", rss, "https://n.example/").candidates[0].url == "https://n.example/a"
    assert discover("sitemap", sitemap, "https://n.example/").candidates[0].url == (
        "https://n.example/b"
    )
    assert discover("page", page, "https://n.example/").candidates[0].url == (
        "https://n.example/2024/05/17/c-story"
    )
    with pytest.raises(DiscoveryError, match="unknown source kind"):
        discover("podcast", b"", "https://n.example/")  # type: ignore[arg-type]
