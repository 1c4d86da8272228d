"""Local news sites for end-to-end tests: real corpus pages served over loopback HTTP.

Three small sites, each in its own `ThreadingHTTPServer` on 127.0.0.1 and an ephemeral
port, so a real crawl (feed, sitemap, listing page, article fetches, redirects, failures)
runs against real HTTP without touching the network:

- ``dailyplanet``: English, RSS 2.0, a sitemap index pointing to a Google-News sitemap and
  a gzipped sitemap;
- ``gazette``: German, Atom, a plain sitemap; holds a correctly labelled ISO-8859-1 page
  and a windows-1252 page that claims to be UTF-8;
- ``courier``: French, RDF (RSS 1.0), a plain sitemap.

Article pages are the real corpus bytes. The expected values were checked by running
``trafilatura.bare_extraction(html, url=<served URL>, with_metadata=True,
include_comments=False)`` on the bytes exactly as served (bytes, and text decoded by
``workers.fetch.decode_body``), so a failing e2e assertion points at the pipeline, not at
trafilatura. How the pages were chosen, and what was dropped, is noted at `_DAILYPLANET`.

>>> sites = build_sites()                                          # doctest: +SKIP
>>> with serve_sites(sites) as served:                             # doctest: +SKIP
...     feed_url = served[0].base_url + served[0].feed_path
"""

from __future__ import annotations

import gzip
import hashlib
import html
import json
import os
import random
import re
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit
from xml.sax.saxutils import escape

FeedFormat = Literal["rss", "atom", "rdf"]
FailureKind = Literal[
    "not_found",
    "gone",
    "server_error",
    "empty",
    "boilerplate",
    "pdf_as_html",
    "pdf",
    "loop",
    "metadata_redirect",
    "slow",
]

TRACKING_QUERY = "utm_source=rss&utm_medium=feed"
METADATA_URL = "http://169.254.169.254/latest/meta-data/"
SLOW_SECONDS_ENV = "NEWSAGG_TEST_SLOW_SECONDS"
DEFAULT_SLOW_SECONDS = 5.0
# Every dynamic document carries this, so conditional GETs (If-Modified-Since) can be tested.
LAST_MODIFIED = datetime(2020, 12, 28, 8, 0, tzinfo=UTC)
# Items without a known publication date still need a date where the format demands one
# (Atom's <updated>).
UNDATED = datetime(2020, 12, 28, 8, 0, tzinfo=UTC)


def corpus_dir() -> Path:
    """The shared real-web corpus: NEWSAGG_CORPUS, else ../shared/corpus next to the repo."""
    configured = os.environ.get("NEWSAGG_CORPUS")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[2] / "shared" / "corpus"


@dataclass(frozen=True)
class ExpectedArticle:
    """One good article and what the pipeline must store for it."""

    path: str
    title_contains: str
    text_snippets: tuple[str, ...]
    published: str | None
    feed_title: str
    language: str = ""
    # The page's original URL in the corpus ground truth, for tracing a failure back.
    origin: str = ""


@dataclass(frozen=True)
class ExpectedFailure:
    """One URL whose fetch or extraction must fail, and the fetch status it must record."""

    path: str
    status: str
    http_status: int | None
    kind: FailureKind | None = None


@dataclass
class Site:
    """A served news site. `base_url` is set by `serve_sites`; `requests` logs every hit."""

    name: str
    base_url: str
    articles: list[ExpectedArticle]
    failures: list[ExpectedFailure]
    feed_path: str = "/feed.xml"
    sitemap_path: str = "/sitemap.xml"
    listing_path: str = "/"
    requests: list[tuple[str, str]] = field(default_factory=list)
    title: str = ""
    language: str = ""
    feed_format: FeedFormat = "rss"
    # Each URL variant the site links (path, query and fragment) → the article path it must
    # fold into.
    variants: dict[str, str] = field(default_factory=dict)
    _sources: dict[str, _Source] = field(default_factory=dict, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def url(self, path: str) -> str:
        return self.base_url + path

    def log_request(self, method: str, target: str) -> None:
        with self._lock:
            self.requests.append((method, target))

    def requested_paths(self) -> list[str]:
        """Snapshot of the request targets so far (thread-safe)."""
        with self._lock:
            return [target for _, target in self.requests]


@dataclass(frozen=True)
class _Source:
    """Where an article's bytes come from and how they are served."""

    corpus: Literal["dates", "extraction"]
    origin: str
    charset: str
    # The charset the page falsely claims (header and <meta>); None: it tells the truth.
    declared: str | None = None
    # Insert <link rel=canonical> naming the article's own path on this site.
    canonical: bool = False


@dataclass(frozen=True)
class _Page:
    article: ExpectedArticle
    source: _Source


@dataclass(frozen=True)
class _Failure:
    path: str
    kind: FailureKind
    feed_title: str


_FAILURE_STATUS: dict[FailureKind, tuple[str, int | None]] = {
    "not_found": ("http_error", 404),
    "gone": ("http_error", 410),
    "server_error": ("http_error", 500),
    "empty": ("empty_extraction", 200),
    "boilerplate": ("empty_extraction", 200),
    "pdf_as_html": ("unsupported_content", 200),
    "pdf": ("unsupported_content", 200),
    "loop": ("too_many_redirects", None),
    "metadata_redirect": ("blocked_address", None),
    "slow": ("timeout", None),
}


def _article(
    path: str,
    source: _Source,
    *,
    title: str,
    snippets: tuple[str, ...],
    published: str | None,
    feed_title: str,
    language: str,
) -> _Page:
    return _Page(
        ExpectedArticle(
            path=path,
            title_contains=title,
            text_snippets=snippets,
            published=published,
            feed_title=feed_title,
            language=language,
            origin=source.origin,
        ),
        source,
    )


# How the pages were chosen. Of the 200 dates/ pages, py3langid calls the extracted text of
# 89 English, German or French (79/3/7); trafilatura 2.3.1's date disagrees with the ground
# truth on 14 of those (13 en, 1 fr: washingtonpost, abc7ny, engadget, radio-canada, …), so
# none of them was considered. Among the rest, preferred: real news stories under ~450 KB
# whose headline and body trafilatura extracts cleanly. Dropped after reading the extracted
# text: noz.de (paywall placeholder, the body is lorem ipsum, py3langid even calls it
# Latin), sudinfo.be (515 KB for 600 characters of text), monroenews.com (mojibake quotes
# in the body). dates/ has only 3 German and 6 French news pages that pass, so gazette and
# courier add extraction/ pages (published None, snippets from their `with` ground truth);
# extraction/ is also where the real ISO-8859-1 and windows-1252 pages are (every dates/
# page is UTF-8). Every title, snippet and date below was checked on the page as served.
# The variants are positional on every site: article 0 is linked with tracking
# parameters, 1 with a #comments fragment, 2 through /r/<id> (301), 3 also at /amp/<path>
# with rel=canonical naming <path>.
_DAILYPLANET: list[_Page] = [
    _article(
        "/news/deep-funk-hanukkah-song",
        _Source(
            "dates",
            "https://boingboing.net/2020/12/12/this-deep-funk-hanukkah-song-is-a-holiday-classic-in-the-making.html",
            "utf-8",
        ),
        title="This deep funk Hanukkah song is a holiday classic",
        snippets=(
            "funk wizard Chaki Sklar has stepped in to fill this void",
            "a precursor to a star-studded holiday special",
        ),
        published="2020-12-12",
        feed_title="This deep funk Hanukkah song is a holiday classic in the making",
        language="en",
    ),
    _article(
        "/news/bank-card-skimming-charges",
        _Source(
            "dates",
            "https://www.stuff.co.nz/national/crime/300145150/three-men-charged-for-alleged-bank-card-skimming-at-auckland-hospitals.html",
            "utf-8",
        ),
        title="Three men charged for alleged bank card skimming",
        snippets=(
            "police found a man who was using a skimmed bank card at an ATM in Glen Eden",
            "All three men will appear in Waitakere District Court",
        ),
        published="2020-10-29",
        feed_title="Three men charged for alleged bank card skimming at Auckland hospitals",
        language="en",
    ),
    _article(
        "/sport/athletics-championships-2022-dates",
        _Source(
            "dates",
            "https://www.malaymail.com/news/sports/2020/04/08/2022-world-athletics-championships-set-for-july-15-24/1854874",
            "utf-8",
        ),
        title="world athletics championships set for July 15-24",
        snippets=(
            "avoiding a potential clash with the Commonwealth Games in Birmingham",
            "The European Athletics Championships are due to take place in Munich",
        ),
        published="2020-04-08",
        feed_title="2022 world athletics championships set for July 15-24",
        language="en",
    ),
    _article(
        "/news/coachella-face-coverings",
        _Source(
            "dates",
            "https://kesq.com/news/2020/05/14/mayor-of-coachella-explains-citys-decision-to-continue-requiring-face-coverings/",
            "utf-8",
            canonical=True,
        ),
        title="Mayor of Coachella explains city",
        snippets=(
            "passed an emergency ordinance Wednesday that will continue requiring face coverings",
            "Desert Hot Springs and Palm Springs",
        ),
        published="2020-05-14",
        feed_title=(
            "Mayor of Coachella explains city’s decision to continue requiring face coverings"
        ),
        language="en",
    ),
    # Served at its original path: the page's rel=canonical is relative, so any other
    # path would make it name a page this site does not have.
    _article(
        "/post/local-attorney-andy-brown-will-be-democratic-nominee-county-judge",
        _Source(
            "dates",
            "https://www.kut.org/post/local-attorney-andy-brown-will-be-democratic-nominee-county-judge",
            "utf-8",
        ),
        title="Andy Brown Will Be Democratic Nominee For County Judge",
        snippets=(
            "Brown won 55.88% of the vote Sunday night",
            "County Commissioner Jeff Travillion and former Travis County Democratic Party Chair",
        ),
        published="2020-08-16",
        feed_title="Local Attorney Andy Brown Will Be Democratic Nominee For County Judge",
        language="en",
    ),
    _article(
        "/news/second-suspect-turns-himself-in",
        _Source(
            "dates",
            "https://www.registerguard.com/news/20200413/second-suspect-in-shooting-turns-himself-in?rssfeed=true",
            "utf-8",
            canonical=True,
        ),
        title="Second suspect in shooting turns himself in",
        snippets=(
            "turned himself in at 1:36 p.m. at Eugene Police Department headquarters",
            "police arrested Demario Aundre Jackson, 30",
        ),
        published="2020-04-13",
        feed_title="Second suspect in shooting turns himself in",
        language="en",
    ),
    _article(
        "/world/paris-theater-protest-macron",
        _Source(
            "dates",
            "https://www.oann.com/protesters-gather-at-paris-theater-to-confront-macron-over-pension-reform/",
            "utf-8",
        ),
        title="Protesters gather at Paris theater to confront Macron",
        snippets=(
            "tried to force their way into a theater in Paris",
            "the Louvre Museum was blocked by striking staff",
        ),
        published="2020-01-18",
        feed_title="Protesters gather at Paris theater to confront Macron over pension reform",
        language="en",
    ),
]

_GAZETTE: list[_Page] = [
    _article(
        "/international/sanktionen-syrien-wirtschaft",
        _Source(
            "dates",
            "https://www.nzz.ch/international/neue-us-sanktionen-erschuettern-die-syrische-wirtschaft-ld.1560586",
            "utf-8",
        ),
        title="Neue US-Sanktionen erschüttern die syrische Wirtschaft",
        snippets=(
            "Noch ist der sogenannte Caesar Act nicht in Kraft",
            "kostet inzwischen ein Kilo Pistazienkekse",
        ),
        published="2020-06-15",
        feed_title="Neue US-Sanktionen erschüttern die syrische Wirtschaft",
        language="de",
    ),
    # Real ISO-8859-1 bytes, labelled as such.
    _article(
        "/digital/nasa-plus-streaming-startet",
        _Source("extraction", "https://winfuture.de/news,139377.html", "iso-8859-1"),
        title="NASA+ Streaming startet",
        snippets=(
            "Wir starten mehr als Raketen",
            "Der Start der Plattform ist Bestandteil einer weitgehenden Überarbeitung",
            "der digitalen Plattformen, die die NASA im Sommer angekündigt hatte",
        ),
        published=None,
        feed_title="NASA+ Streaming startet: Ohne Registrierung, Gebühren oder Werbung",
        language="de",
    ),
    # The article is the query: ?id= must survive URL canonicalisation.
    _article(
        "/blaulicht/meldung?id=4791887",
        _Source("dates", "https://www.presseportal.de/blaulicht/pm/43526/4791887", "utf-8"),
        title="Rheine, Verkehrsunfallflucht",
        snippets=(
            "einen beschädigten Ampelmast an der Kreuzung Russenweg/Hopstener Damm",
            "Der Mast wurde vermutlich durch einen Lkw angefahren",
        ),
        published="2020-12-15",
        feed_title="POL-ST: Rheine, Verkehrsunfallflucht",
        language="de",
    ),
    _article(
        "/kultur/tatort-muenchen-leitmayr-batic",
        _Source(
            "dates",
            "https://www.infranken.de/ueberregional/boulevard/kultur/tatort-aus-muenchen-30-jahre-leitmayr-und-batic-art-5139057",
            "utf-8",
            canonical=True,
        ),
        title="aus München: 30 Jahre Leitmayr und Batic",
        snippets=(
            "Leitmayr krümelt den Beifahrersitz voll",
            "86 Krimis haben die beiden auf dem Buckel",
        ),
        published="2020-12-27",
        feed_title="«Tatort» aus München: 30 Jahre Leitmayr und Batic",
        language="de",
    ),
    # windows-1252 bytes (with „“ and – in the 0x80-0x9F range) that claim UTF-8 in the
    # Content-Type header and in <meta>: only a decoder that notices the lie gets "ä".
    _article(
        "/wirtschaft/vw-betriebsversammlung-diess",
        _Source(
            "extraction",
            "https://www.automobilwoche.de/article/20211103/AGENTURMELDUNGEN/311039909/1276/krach-vor-der-vw-betriebsversammlung-es-knirscht-zwischen-diess-und-aufsichtsraeten",
            "windows-1252",
            declared="utf-8",
        ),
        title="Krach vor der VW-Betriebsversammlung",
        snippets=(
            "Haussegen hängt schief",
            "Der Haussegen bei Volkswagen hängt bereits seit einigen Wochen erneut schief",
            "Vorbereitet sei außerdem, dass sich der Vermittlungsausschuss",
        ),
        published=None,
        feed_title=(
            "Krach vor der VW-Betriebsversammlung: Es knirscht zwischen Diess und Aufsichtsräten"
        ),
        language="de",
    ),
    _article(
        "/politik/deutsche-waffen-fuer-russland",
        _Source(
            "extraction",
            "https://www1.wdr.de/nachrichten/correctiv-recherche-deutsche-waffen-fuer-russland-100.html",
            "utf-8",
        ),
        title="Deutsche Waffen für Russland",
        snippets=(
            "Die Hersteller dürfen sie demnach ins Ausland verkaufen",
            "weil sie offiziell als Jagd- oder Sportwaffen gelten",
            "und deshalb nicht unter das Kriegswaffen-Kontrollgesetz fallen",
        ),
        published=None,
        feed_title="Correctiv-Recherche: Deutsche Waffen für Russland",
        language="de",
    ),
]

_COURIER: list[_Page] = [
    _article(
        "/sport/manchester-united-rate-la-marche.html",
        _Source(
            "dates",
            "https://www.lexpress.fr/actualites/1/actualite/angleterre-manchester-united-rate-la-marche-arsenal-revit_2141546.html",
            "utf-8",
        ),
        title="Manchester United rate la marche, Arsenal revit",
        snippets=(
            "Manchester United peut se mordre les doigts",
            "Fernandes a aussi inscrit le but du 2-1",
        ),
        published="2020-12-26",
        feed_title="Angleterre: Manchester United rate la marche, Arsenal revit",
        language="fr",
    ),
    _article(
        "/afrique/proces-colonel-barry.html",
        _Source(
            "dates",
            "https://www.guineenews.org/colonel-barry-accuse-pour-vol-aggrave-vers-la-projection-de-la-video-de-toute-la-verite/",
            "utf-8",
        ),
        title="Colonel Barry accusé pour",
        snippets=(
            "le commerçant Ibrahima Diallo au colonel Mamadou Alpha Barry a repris ce mercredi",
            "Une proposition à laquelle a accédé le juge Abdourahmane Sylla",
        ),
        published="2020-11-04",
        feed_title="Colonel Barry accusé pour « vol aggravé » : vers la projection de la vidéo",
        language="fr",
    ),
    _article(
        "/societe/cote-basque-appel-aux-dons.html",
        _Source(
            "dates",
            "https://actu.fr/societe/coronavirus/solidarite-centre-hospitalier-cote-basque-lance-appel-dons-entreprises-particuliers_32590953.html",
            "utf-8",
        ),
        title="Le Centre Hospitalier de la Côte Basque lance un appel aux dons",
        snippets=(
            "récolter du matériel informatique et médical pour lutter contre le coronavirus",
            "des ordinateurs portables, des tablettes et des webcams",
        ),
        published="2020-03-27",
        feed_title="Le Centre Hospitalier de la Côte Basque lance un appel aux dons",
        language="fr",
    ),
    _article(
        "/faits-divers/incendie-frain.html",
        _Source(
            "dates",
            "https://www.vosgesmatin.fr/edition-la-plaine/2020/03/23/incendie-dans-une-maison-cinq-personnes-relogees",
            "utf-8",
            canonical=True,
        ),
        title="Incendie dans une maison",
        snippets=(
            "une vingtaine de sapeurs-pompiers des centres de Monthureux-sur-Saône",
            "deux agents Enedis ont débranché le réseau électrique",
        ),
        published="2020-03-23",
        feed_title="Frain. Incendie dans une maison : cinq personnes relogées",
        language="fr",
    ),
    _article(
        "/sport/chan-annule.html",
        _Source(
            "dates",
            "http://www.republicoftogo.com//Toutes-les-rubriques/Sport/Le-championnat-d-Afrique-des-Nations-n-aura-pas-lieu",
            "utf-8",
        ),
        title="Le championnat d'Afrique des Nations",
        snippets=("prévu du 4 au 25 avril au Cameroun", "Le Togo devait y participer."),
        published="2020-03-17",
        feed_title="Le championnat d'Afrique des Nations n'aura pas lieu",
        language="fr",
    ),
    _article(
        "/sante/covid-19-infox-rumeur.html",
        _Source(
            "extraction",
            "https://www.sciencesetavenir.fr/sante/covid-19-et-infox-comment-une-rumeur-devient-realite_147359",
            "utf-8",
        ),
        title="comment une rumeur devient réalité",
        snippets=(
            "Aussi contagieuses que le virus ?",
            "contagieux (et potentiellement dangereux) que le SARS-CoV-2.",
            "popularité du sujet a explosé suite à ce",
        ),
        published=None,
        feed_title="Covid-19 et infox : comment une rumeur devient réalité",
        language="fr",
    ),
]

_FAILURES: dict[str, list[_Failure]] = {
    "dailyplanet": [
        _Failure("/news/council-budget-vote", "not_found", "Council delays budget vote"),
        _Failure("/news/transit-strike-update", "server_error", "Transit strike: latest"),
        _Failure("/news/weather-warning", "empty", "Storm warning for the weekend"),
        _Failure("/news/annual-report-2020", "pdf_as_html", "Our annual report for 2020"),
        _Failure("/loop/a", "loop", "Readers' letters"),
        _Failure("/news/election-night-live", "slow", "Election night: live updates"),
    ],
    "gazette": [
        _Failure("/lokales/gewinnspiel-beendet", "gone", "Gewinnspiel: Die Sieger stehen fest"),
        _Failure("/politik/koalitionsvertrag-entwurf", "not_found", "Der Koalitionsvertrag"),
        _Failure("/ressorts/uebersicht", "boilerplate", "Alle Ressorts im Überblick"),
        _Failure("/dokumente/jahresbericht-2020.pdf", "pdf", "Jahresbericht 2020 (PDF)"),
        _Failure("/intern/status", "metadata_redirect", "Hinweis der Redaktion"),
    ],
    "courier": [
        _Failure("/politique/page-introuvable.html", "not_found", "Le budget voté de justesse"),
        _Failure("/culture/article-retire.html", "gone", "Festival : la programmation"),
        _Failure("/economie/breve-vide.html", "empty", "Brève : les marchés ouvrent"),
        _Failure("/rubriques/index.html", "boilerplate", "Toutes les rubriques"),
        _Failure("/documents/rapport-annuel.pdf", "pdf", "Rapport annuel (PDF)"),
    ],
}

_SITE_INFO: dict[str, tuple[str, str, FeedFormat, list[_Page]]] = {
    "dailyplanet": ("The Daily Planet", "en", "rss", _DAILYPLANET),
    "gazette": ("Die Gazette", "de", "atom", _GAZETTE),
    "courier": ("Le Courrier", "fr", "rdf", _COURIER),
}

_NAV_LINKS = (
    ("/category/world", "World"),
    ("/tag/x", "Tag"),
    ("/about", "About"),
    ("/login", "Log in"),
)


def build_sites() -> list[Site]:
    """The three sites, with fresh request logs; always the same pages in the same order."""
    sites = []
    for name, (title, language, feed_format, pages) in _SITE_INFO.items():
        articles = [page.article for page in pages]
        variants = {
            _with_query(articles[0].path, TRACKING_QUERY): articles[0].path,
            articles[1].path + "#comments": articles[1].path,
            _redirect_path(name): articles[2].path,
            "/amp" + articles[3].path: articles[3].path,
        }
        sites.append(
            Site(
                name=name,
                base_url="",
                articles=articles,
                failures=[
                    ExpectedFailure(f.path, *_FAILURE_STATUS[f.kind], kind=f.kind)
                    for f in _FAILURES[name]
                ],
                title=title,
                language=language,
                feed_format=feed_format,
                variants=variants,
                _sources={page.article.path: page.source for page in pages},
            )
        )
    return sites


# ---------------------------------------------------------------------------------------
# Documents


def _with_query(path: str, query: str) -> str:
    return path + ("&" if "?" in path else "?") + query


def _redirect_path(site_name: str) -> str:
    return f"/r/{site_name[:2]}3"


@cache
def _groundtruth(corpus: str) -> dict[str, dict[str, object]]:
    path = corpus_dir() / corpus / "groundtruth.json"
    if not path.is_file():
        raise FileNotFoundError(f"test corpus not found at {path}; set NEWSAGG_CORPUS")
    with path.open(encoding="utf-8") as fh:
        data: dict[str, dict[str, object]] = json.load(fh)
    return data


@cache
def _corpus_bytes(corpus: str, origin: str) -> bytes:
    entry = _groundtruth(corpus)[origin]
    return gzip.decompress((corpus_dir() / corpus / str(entry["file"])).read_bytes())


def corpus_html(article: ExpectedArticle, site: Site) -> bytes:
    """The article page's bytes as they are in the corpus (gunzipped, before any rewrite)."""
    source = site._sources[article.path]
    return _corpus_bytes(source.corpus, source.origin)


def article_charset(article: ExpectedArticle, site: Site) -> str:
    """The encoding the article's bytes are really in (not what the page may claim)."""
    return site._sources[article.path].charset


def corpus_date(article: ExpectedArticle, site: Site) -> str | None:
    """The dates/ ground-truth date of an article's page (None for extraction/ pages)."""
    source = site._sources[article.path]
    if source.corpus != "dates":
        return None
    return str(_groundtruth("dates")[source.origin]["date"])


_HEAD = re.compile(rb"<head(?:\s[^>]*)?>", re.IGNORECASE)
_CANONICAL_LINK = re.compile(rb"<link\b[^>]*\brel\s*=\s*[\"']?canonical\b[^>]*>", re.IGNORECASE)
_URL_META = re.compile(
    rb"<meta\b[^>]*\b(?:property|name)\s*=\s*[\"'](?:og|twitter):url[\"'][^>]*>", re.IGNORECASE
)
_CONTENT_ATTR = re.compile(rb"""\bcontent\s*=\s*("[^"]*"|'[^']*')""", re.IGNORECASE)
_META_CHARSET_LABEL = re.compile(
    rb"""(<meta[^>]+charset\s*=\s*["']?\s*)[A-Za-z0-9_\-:.]+""", re.IGNORECASE
)


def _article_html(raw: bytes, source: _Source, url: str) -> bytes:
    """The corpus bytes as served: unchanged except for what `source` asks for."""
    page = raw
    declared = source.declared
    if declared:
        page = _META_CHARSET_LABEL.sub(
            lambda m: m.group(1) + declared.encode("ascii"), page, count=1
        )
    if source.canonical:
        quoted = html.escape(url, quote=True).encode("ascii")
        # The page must name one URL for itself: the original site's canonical and og:url
        # would contradict the one inserted here, and pipelines read either.
        page = _CANONICAL_LINK.sub(b"", page)
        page = _URL_META.sub(
            lambda m: _CONTENT_ATTR.sub(b'content="' + quoted + b'"', m.group(0), count=1), page
        )
        link = b'\n<link rel="canonical" href="' + quoted + b'">\n'
        page = _HEAD.sub(lambda m: m.group(0) + link, page, count=1)
    return page


def _rfc822(day: str | None) -> str:
    return format_datetime(_at_eight(day), usegmt=True)


def _iso(day: str | None) -> str:
    return _at_eight(day).strftime("%Y-%m-%dT%H:%M:%SZ")


def _at_eight(day: str | None) -> datetime:
    if day is None:
        return UNDATED
    return datetime.strptime(day, "%Y-%m-%d").replace(hour=8, tzinfo=UTC)


@dataclass(frozen=True)
class _Item:
    link: str
    title: str
    published: str | None
    guid: str


def _feed_items(site: Site) -> list[_Item]:
    """Every good article and every failing URL, the variants linked as `site.variants` says."""
    link_of = {target: target for target in (a.path for a in site.articles)}
    for variant, path in site.variants.items():
        if not variant.startswith("/amp/"):
            link_of[path] = variant
    items = [
        _Item(site.url(link_of[a.path]), a.feed_title, a.published, f"{site.name}-{n}")
        for n, a in enumerate(site.articles)
    ]
    alias = next(v for v in site.variants if v.startswith("/amp/"))
    original = next(a for a in site.articles if a.path == site.variants[alias])
    items.append(
        _Item(site.url(alias), original.feed_title, original.published, f"{site.name}-amp")
    )
    for n, failure in enumerate(_FAILURES[site.name]):
        items.append(_Item(site.url(failure.path), failure.feed_title, None, f"{site.name}-f{n}"))
    return items


def _rss(site: Site) -> bytes:
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom">\n<channel>\n'
        f"<title>{escape(site.title)}</title>\n<link>{escape(site.url('/'))}</link>\n"
        f"<description>Latest news from {escape(site.title)}</description>\n"
        f"<language>{site.language}</language>\n"
        f"<lastBuildDate>{format_datetime(LAST_MODIFIED, usegmt=True)}</lastBuildDate>\n"
        f'<atom:link href="{escape(site.url(site.feed_path))}" rel="self" '
        'type="application/rss+xml"/>\n'
    ]
    for item in _feed_items(site):
        date = f"<pubDate>{_rfc822(item.published)}</pubDate>" if item.published else ""
        parts.append(
            f"<item><title>{escape(item.title)}</title><link>{escape(item.link)}</link>"
            f'<guid isPermaLink="false">{item.guid}</guid>{date}'
            f"<description>{escape(item.title)}</description></item>\n"
        )
    parts.append("</channel>\n</rss>\n")
    return "".join(parts).encode("utf-8")


def _atom(site: Site) -> bytes:
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="{site.language}">\n'
        f"<title>{escape(site.title)}</title>\n<id>{escape(site.url('/'))}</id>\n"
        f"<updated>{LAST_MODIFIED.strftime('%Y-%m-%dT%H:%M:%SZ')}</updated>\n"
        '<link rel="self" type="application/atom+xml" '
        f'href="{escape(site.url(site.feed_path))}"/>\n'
        f'<link rel="alternate" type="text/html" href="{escape(site.url("/"))}"/>\n'
        f"<author><name>{escape(site.title)}</name></author>\n"
    ]
    for item in _feed_items(site):
        published = f"<published>{_iso(item.published)}</published>" if item.published else ""
        parts.append(
            f"<entry><title>{escape(item.title)}</title>"
            f'<link rel="alternate" type="text/html" href="{escape(item.link)}"/>'
            f"<id>urn:newsagg-test:{item.guid}</id>{published}"
            f"<updated>{_iso(item.published)}</updated>"
            f"<summary>{escape(item.title)}</summary></entry>\n"
        )
    parts.append("</feed>\n")
    return "".join(parts).encode("utf-8")


def _rdf(site: Site) -> bytes:
    items = _feed_items(site)
    seq = "".join(f'<rdf:li rdf:resource="{escape(i.link)}"/>' for i in items)
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
        'xmlns="http://purl.org/rss/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/">\n'
        f'<channel rdf:about="{escape(site.url(site.feed_path))}">\n'
        f"<title>{escape(site.title)}</title>\n<link>{escape(site.url('/'))}</link>\n"
        f"<description>Les dernières nouvelles du {escape(site.title)}</description>\n"
        f"<dc:language>{site.language}</dc:language>\n"
        f"<items><rdf:Seq>{seq}</rdf:Seq></items>\n</channel>\n"
    ]
    for item in items:
        date = f"<dc:date>{_iso(item.published)}</dc:date>" if item.published else ""
        parts.append(
            f'<item rdf:about="{escape(item.link)}"><title>{escape(item.title)}</title>'
            f"<link>{escape(item.link)}</link>"
            f"<description>{escape(item.title)}</description>{date}</item>\n"
        )
    parts.append("</rdf:RDF>\n")
    return "".join(parts).encode("utf-8")


_SITEMAP_NS = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'


def _urlset(site: Site, paths: list[tuple[str, str | None]]) -> bytes:
    entries = "".join(
        f"<url><loc>{escape(site.url(path))}</loc>"
        + (f"<lastmod>{day}</lastmod>" if day else "")
        + "</url>\n"
        for path, day in paths
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<urlset {_SITEMAP_NS}>\n{entries}</urlset>\n'
    ).encode()


def _news_sitemap(site: Site, articles: list[ExpectedArticle]) -> bytes:
    entries = "".join(
        f"<url><loc>{escape(site.url(a.path))}</loc><news:news><news:publication>"
        f"<news:name>{escape(site.title)}</news:name>"
        f"<news:language>{site.language}</news:language></news:publication>"
        f"<news:publication_date>{_at_eight(a.published).isoformat()}</news:publication_date>"
        f"<news:title>{escape(a.feed_title)}</news:title></news:news></url>\n"
        for a in articles
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<urlset {_SITEMAP_NS} xmlns:news="http://www.google.com/schemas/sitemap-news/0.9">\n'
        f"{entries}</urlset>\n"
    ).encode()


def _sitemap_index(site: Site, paths: list[str]) -> bytes:
    lastmod = LAST_MODIFIED.strftime("%Y-%m-%d")
    entries = "".join(
        f"<sitemap><loc>{escape(site.url(p))}</loc><lastmod>{lastmod}</lastmod></sitemap>\n"
        for p in paths
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<sitemapindex {_SITEMAP_NS}>\n'
        f"{entries}</sitemapindex>\n"
    ).encode()


def _page(title: str, body: str, language: str, head: str = "") -> bytes:
    return (
        f'<!DOCTYPE html>\n<html lang="{language}"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>{head}</head>\n<body>\n{body}\n</body></html>\n"
    ).encode()


def _nav() -> str:
    links = "".join(f'<li><a href="{path}">{label}</a></li>' for path, label in _NAV_LINKS)
    return f'<header><a href="/">Home</a><nav><ul class="menu">{links}</ul></nav></header>'


def _listing(site: Site) -> bytes:
    alias = next(v for v in site.variants if v.startswith("/amp/"))
    blocks = []
    for article in site.articles:
        extra = ""
        if site.variants.get(alias) == article.path:
            extra = f' <a class="amp" href="{html.escape(alias)}">AMP</a>'
        blocks.append(
            f'<article><h2><a href="{html.escape(article.path)}">{html.escape(article.feed_title)}'
            f"</a></h2>{extra}</article>"
        )
    for failure in _FAILURES[site.name]:
        blocks.append(
            f'<article><h2><a href="{html.escape(failure.path)}">'
            f"{html.escape(failure.feed_title)}</a></h2></article>"
        )
    head = (
        f'<link rel="alternate" type="{_FEED_TYPES[site.feed_format]}" '
        f'title="{html.escape(site.title)}" href="{site.feed_path}">'
    )
    body = (
        f"{_nav()}\n<main><h1>{html.escape(site.title)}</h1>\n"
        + "\n".join(blocks)
        + '\n</main>\n<footer><a href="/about">About</a> · <a href="/login">Log in</a></footer>'
    )
    return _page(site.title, body, site.language, head)


def _nav_page(site: Site, path: str, label: str) -> bytes:
    if path == "/login":
        form = (
            '<form method="post" action="/login"><input name="user">'
            '<input name="password" type="password"><button>Log in</button></form>'
        )
        return _page(f"{label} | {site.title}", f"{_nav()}<main>{form}</main>", site.language)
    links = "".join(
        f'<li><a href="{html.escape(a.path)}">{html.escape(a.feed_title)}</a></li>'
        for a in site.articles[:3]
    )
    return _page(
        f"{label} | {site.title}",
        f"{_nav()}<main><h1>{label}</h1><ul>{links}</ul></main>",
        site.language,
    )


def _boilerplate_page(site: Site) -> bytes:
    """Header, menus, a cookie banner and a footer: a real-looking page with no article.

    trafilatura's fallback still returns the first menu's words (about 30 characters), far
    below any sensible minimum article length.
    """
    sections = ["World", "Politics", "Sport"]
    more = ["Business", "Culture", "Science", "Opinion", "Podcasts", "Archive"]
    footer = ["about", "contact", "imprint", "privacy", "terms", "advertise", "jobs"]
    body = (
        f'<header><a class="logo" href="/">{html.escape(site.title)}</a><nav class="sections">'
        + " ".join(f'<a href="/category/{s.lower()}">{s}</a>' for s in sections)
        + "</nav></header>"
        '<div class="cookie-banner" role="dialog">Cookies? <button>OK</button></div>'
        '<aside class="sidebar"><nav>'
        + " ".join(f'<a href="/category/{s.lower()}">{s}</a>' for s in more)
        + '</nav></aside><footer><nav class="footer-links">'
        + " ".join(f'<a href="/{p}">{p.title()}</a>' for p in footer)
        + f"</nav><small>© 2020 {html.escape(site.title)}</small></footer>"
    )
    return _page(site.title, body, site.language)


@cache
def _pdf_bytes() -> bytes:
    """A small PDF: a real header and object structure around a deflated binary stream."""
    junk = zlib.compress(random.Random(20201228).randbytes(4096))
    return b"".join(
        [
            b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n",
            b"1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n",
            b"2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n",
            b"3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
            b"/Contents 4 0 R >>\nendobj\n",
            b"4 0 obj\n<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(junk),
            junk,
            b"\nendstream\nendobj\n",
            b"trailer\n<< /Size 5 /Root 1 0 R >>\n%%EOF\n",
        ]
    )


# ---------------------------------------------------------------------------------------
# Serving


_FEED_TYPES: dict[FeedFormat, str] = {
    "rss": "application/rss+xml",
    "atom": "application/atom+xml",
    "rdf": "application/rdf+xml",
}
_HTML = "text/html; charset=utf-8"
_XML = "application/xml; charset=utf-8"


@dataclass(frozen=True)
class _Response:
    status: int
    body: bytes = b""
    content_type: str | None = None
    location: str | None = None
    # Validators (ETag, Last-Modified) for conditional GETs.
    cacheable: bool = False
    # Sleep NEWSAGG_TEST_SLOW_SECONDS before answering.
    slow: bool = False


def _not_found(site: Site) -> _Response:
    return _Response(404, _page("Not found", "<h1>Not found</h1>", site.language), _HTML)


def _failure_response(site: Site, failure: _Failure) -> _Response:
    kind = failure.kind
    if kind == "not_found":
        return _not_found(site)
    if kind == "gone":
        return _Response(410, _page("Gone", "<h1>Gone</h1>", site.language), _HTML)
    if kind == "server_error":
        return _Response(500, _page("Error", "<h1>Internal error</h1>", site.language), _HTML)
    if kind == "empty":
        return _Response(200, b"", _HTML)
    if kind == "boilerplate":
        return _Response(200, _boilerplate_page(site), _HTML)
    if kind == "pdf_as_html":
        return _Response(200, _pdf_bytes(), _HTML)
    if kind == "pdf":
        return _Response(200, _pdf_bytes(), "application/pdf")
    if kind == "loop":
        raise AssertionError("loops are routed as two redirects")
    if kind == "metadata_redirect":
        return _Response(302, location=METADATA_URL)
    if kind == "slow":
        late = "<main><article><h1>Live</h1><p>Too late.</p></article></main>"
        return _Response(200, _page(failure.feed_title, late, site.language), _HTML, slow=True)
    raise AssertionError(kind)


def _routes(site: Site) -> dict[str, _Response]:
    """Every request target the site answers, rendered for its (now known) base URL."""
    routes: dict[str, _Response] = {}
    feed = {"rss": _rss, "atom": _atom, "rdf": _rdf}[site.feed_format](site)
    routes[site.feed_path] = _Response(
        200, feed, _FEED_TYPES[site.feed_format] + "; charset=utf-8", cacheable=True
    )
    routes[site.listing_path] = _Response(200, _listing(site), _HTML, cacheable=True)
    robots = f"User-agent: *\nAllow: /\n\nSitemap: {site.url(site.sitemap_path)}\n"
    routes["/robots.txt"] = _Response(
        200, robots.encode(), "text/plain; charset=utf-8", cacheable=True
    )
    for path, label in _NAV_LINKS:
        routes[path] = _Response(200, _nav_page(site, path, label), _HTML)

    failures = _FAILURES[site.name]
    failure_entries: list[tuple[str, str | None]] = [(f.path, None) for f in failures]
    if site.name == "dailyplanet":
        # An index over a Google-News sitemap and a gzipped one: a crawler must read both
        # (and gunzip the second) to find every article.
        news, rest = site.articles[:4], site.articles[4:]
        routes[site.sitemap_path] = _Response(
            200,
            _sitemap_index(site, ["/sitemap-news.xml", "/sitemap-2.xml.gz"]),
            _XML,
            cacheable=True,
        )
        routes["/sitemap-news.xml"] = _Response(
            200, _news_sitemap(site, news), _XML, cacheable=True
        )
        plain = _urlset(site, [(a.path, a.published) for a in rest] + failure_entries)
        routes["/sitemap-2.xml.gz"] = _Response(
            200, gzip.compress(plain, mtime=0), "application/gzip", cacheable=True
        )
    else:
        entries = [(a.path, a.published) for a in site.articles] + failure_entries
        routes[site.sitemap_path] = _Response(200, _urlset(site, entries), _XML, cacheable=True)

    for article in site.articles:
        source = site._sources[article.path]
        page = _article_html(
            _corpus_bytes(source.corpus, source.origin), source, site.url(article.path)
        )
        charset = source.declared or source.charset
        routes[article.path] = _Response(200, page, f"text/html; charset={charset}", cacheable=True)
    for variant, path in site.variants.items():
        if variant.startswith("/amp/"):
            routes[variant] = routes[path]
        elif variant.startswith("/r/"):
            routes[variant] = _Response(301, location=site.url(path))

    for failure in failures:
        if failure.kind == "loop":
            # Relative Locations, as many servers send them.
            routes["/loop/a"] = _Response(302, location="/loop/b")
            routes["/loop/b"] = _Response(302, location="/loop/a")
        else:
            routes[failure.path] = _failure_response(site, failure)
    return routes


def _slow_seconds() -> float:
    # Read per request so a test can change it after the sites are up.
    return float(os.environ.get(SLOW_SECONDS_ENV, DEFAULT_SLOW_SECONDS))


class _SiteServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, site: Site) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.site = site
        self.routes: dict[str, _Response] = {}
        # Set on shutdown, so a slow handler stops sleeping at once.
        self.stopping = threading.Event()

    def lookup(self, target: str) -> _Response | None:
        if target in self.routes:
            return self.routes[target]
        parts = urlsplit(target)
        # Like most news sites, ignore tracking parameters but keep the ones naming content.
        kept = [
            (k, v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
            if not k.startswith("utm_")
        ]
        key = parts.path + ("?" + urlencode(kept) if kept else "")
        return self.routes.get(key)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "newsagg-test-site/1.0"
    # Idle keep-alive connections must not pin handler threads for ever.
    timeout = 15
    # Headers and body go out in separate writes; with Nagle's algorithm and delayed ACKs
    # every keep-alive response would wait ~40 ms.
    disable_nagle_algorithm = True
    server: _SiteServer

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def do_POST(self) -> None:
        self.server.site.log_request("POST", self.path)
        self._send(_Response(405, b"", _HTML), head=False)

    def log_message(self, format: str, *args: object) -> None:
        pass  # the request log lives in Site.requests; stderr noise hides test output

    def _answer(self, *, head: bool) -> None:
        site = self.server.site
        site.log_request(self.command, self.path)
        response = self.server.lookup(self.path) or _not_found(site)
        if response.slow and self.server.stopping.wait(_slow_seconds()):
            self.close_connection = True
            return
        self._send(response, head=head)

    def _send(self, response: _Response, *, head: bool) -> None:
        status, body = response.status, response.body
        extra: list[tuple[str, str]] = []
        if response.cacheable:
            etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
            extra = [("ETag", etag), ("Last-Modified", format_datetime(LAST_MODIFIED, True))]
            if self._not_modified(etag):
                status, body = 304, b""
        try:
            self.send_response(status)
            if response.content_type and status != 304:
                self.send_header("Content-Type", response.content_type)
            if response.location:
                self.send_header("Location", response.location)
            for name, value in extra:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head and body:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _not_modified(self, etag: str) -> bool:
        if_none_match = self.headers.get("If-None-Match")
        if if_none_match is not None:
            return etag in {tag.strip() for tag in if_none_match.split(",")} or if_none_match == "*"
        since = self.headers.get("If-Modified-Since")
        if since:
            try:
                return parsedate_to_datetime(since) >= LAST_MODIFIED
            except (TypeError, ValueError):
                return False
        return False


@contextmanager
def serve_sites(sites: list[Site]) -> Iterator[list[Site]]:
    """Serve each site on 127.0.0.1:<ephemeral port> until the block exits; fills base_url."""
    running: list[tuple[_SiteServer, threading.Thread]] = []
    try:
        for site in sites:
            server = _SiteServer(site)
            site.base_url = f"http://127.0.0.1:{server.server_address[1]}"
            try:
                server.routes = _routes(site)
            except BaseException:
                server.server_close()
                raise
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"test-site-{site.name}",
                daemon=True,
            )
            thread.start()
            running.append((server, thread))
        yield sites
    finally:
        for server, _ in running:
            server.stopping.set()
            server.shutdown()
            server.server_close()
        for _, thread in running:
            thread.join(timeout=5)
