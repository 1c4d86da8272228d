"""End to end: syndicated copies, URL variants and related reports through the real CLI,
a real Celery worker, Redis, PostgreSQL and local news sites over HTTP.

Four local sites publish one real wire story (EFE's report of President Boric's trip, as
24horas.cl ran it, from the corpus) each in its own page chrome, under its own headline,
two with a dateline prefix, one with a byline line and one with an update paragraph. The
first site's feed links its copy three times with tracking parameters. Two of the sites
also publish real reports from two Brazilian papers of one event (Pacheco meets Fux), which
must share a story without being duplicates. The pages are served by tests/sites.py's
server (`_SiteServer`), with routes built here.
"""

from __future__ import annotations

import gzip
import html
import json
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email.utils import format_datetime
from typing import Any

import psycopg
import pytest

from tests.conftest import newsagg
from tests.sites import LAST_MODIFIED, Site, _Response, _SiteServer, corpus_dir
from workers.extract import extract_article
from workers.fetch import decode_body

pytestmark = pytest.mark.e2e
Conn = psycopg.Connection[Any]

WIRE_ORIGIN = (
    "https://www.24horas.cl/politica/presidente-boric-inicia-gira-por-magallanes-este-"
    "miercoles-5287894"
)
RELATED = [
    "https://www.correiobraziliense.com.br/politica/2022/05/5005250-de-novo-em-busca-da-"
    "tregua-institucional.html",
    "https://www.gazetadopovo.com.br/republica/o-que-pacheco-pretende-acenos-ao-stf-e-propor-"
    "limites-ao-indulto-presidencial/",
]
WIRE_PATH = "/politica/boric-magallanes"
TRACKING = ["utm_source=rss&utm_medium=feed", "utm_campaign=morning&fbclid=IwAR0x", "gclid=abc1"]
# (site name, headline, text before the body, text after it, page chrome)
SITES = [
    ("andes", "Boric inicia gira por Magallanes", "", "", "classic"),
    ("austral", "Presidente Boric viaja a su región natal", "PUNTA ARENAS (EFE) — ", "", "cards"),
    (
        "pacifico",
        "Boric llega a Magallanes en su segundo viaje oficial",
        "",
        "Actualización: El Presidente llegó a Punta Arenas al mediodía y se reunió con las "
        "autoridades regionales, informó La Moneda.",
        "magazine",
    ),
    ("sur", "EN VIVO: Gira presidencial al sur", "SANTIAGO, 4 may (EFE).- ", "", "minimal"),
]


def _corpus_page(origin: str) -> bytes:
    for corpus in ("extraction", "dates"):
        truth = json.loads((corpus_dir() / corpus / "groundtruth.json").read_text("utf-8"))
        if origin in truth:
            return gzip.decompress((corpus_dir() / corpus / truth[origin]["file"]).read_bytes())
    raise FileNotFoundError(origin)


def _wire_paragraphs() -> list[str]:
    page, _ = decode_body(_corpus_page(WIRE_ORIGIN), None)
    return extract_article(page, WIRE_ORIGIN).text.split("\n")


def _chrome(style: str, site: str, body: str) -> str:
    nav = "".join(
        f'<li><a href="/{s}">{s.title()}</a></li>' for s in ("politica", "deportes", "cultura")
    )
    related = "".join(f'<li><a href="/nota/{i}">Otra nota {i} de {site}</a></li>' for i in range(5))
    if style == "classic":
        return (
            f'<header><a href="/">{site}</a><nav><ul>{nav}</ul></nav></header>'
            f"<main>{body}</main><aside><h3>Más leídas</h3><ul>{related}</ul></aside>"
            f"<footer>© 2022 {site} · Todos los derechos reservados</footer>"
        )
    if style == "cards":
        return (
            f'<div class="top-bar"><span>{site}</span><ul class="menu">{nav}</ul></div>'
            f'<div class="container"><div class="col-8">{body}</div>'
            f'<div class="col-4 sidebar"><ul>{related}</ul></div></div>'
            '<div class="cookie">Usamos cookies. <button>Aceptar</button></div>'
        )
    if style == "magazine":
        return (
            f'<nav class="site-nav">{nav}</nav><div id="content">{body}'
            f'<section class="newsletter">Suscríbete al boletín de {site}.</section></div>'
            f'<footer class="site-footer"><ul>{related}</ul></footer>'
        )
    return f"<body-wrap>{body}</body-wrap>"


def _wire_page(site: str, headline: str, before: str, after: str, style: str) -> bytes:
    paragraphs = _wire_paragraphs()
    paragraphs[0] = before + paragraphs[0]
    if after:
        paragraphs.append(after)
    body = (
        f"<article><h1>{html.escape(headline)}</h1>"
        '<p class="byline">Por Agencia EFE</p>'
        + "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
        + "</article>"
    )
    head = (
        f"<title>{html.escape(headline)} | {site}</title>"
        '<meta property="article:published_time" content="2022-05-04T12:00:00+00:00">'
    )
    return (
        f'<!DOCTYPE html><html lang="es"><head><meta charset="utf-8">{head}</head>'
        f"<body>{_chrome(style, site, body)}</body></html>"
    ).encode()


def _rss(site: Site, items: list[tuple[str, str]]) -> bytes:
    entries = "".join(
        f"<item><title>{html.escape(title)}</title><link>{html.escape(site.url(link))}</link>"
        f"<guid>{html.escape(link)}</guid>"
        f"<pubDate>{format_datetime(LAST_MODIFIED, usegmt=True)}</pubDate></item>"
        for link, title in items
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
        f"<title>{site.name}</title><link>{site.url('/')}</link><description>news</description>"
        f"{entries}</channel></rss>"
    ).encode()


@contextmanager
def serve() -> Iterator[list[Site]]:
    """The four sites, each on 127.0.0.1 and an ephemeral port, until the block exits."""
    html_type, xml_type = "text/html; charset=utf-8", "application/rss+xml; charset=utf-8"
    running: list[tuple[_SiteServer, threading.Thread]] = []
    sites: list[Site] = []
    try:
        for n, (name, headline, before, after, style) in enumerate(SITES):
            site = Site(name=name, base_url="", articles=[], failures=[])
            server = _SiteServer(site)
            site.base_url = f"http://127.0.0.1:{server.server_address[1]}"
            page = _wire_page(name, headline, before, after, style)
            items = [(WIRE_PATH, headline)]
            routes = {WIRE_PATH: _Response(200, page, html_type)}
            if n == 0:
                items = [(f"{WIRE_PATH}?{query}", headline) for query in TRACKING]
            if n in (1, 2):
                path = f"/brasil/pacheco-{n}"
                routes[path] = _Response(200, _corpus_page(RELATED[n - 1]), html_type)
                items.append((path, "Pacheco e Fux"))
            routes["/feed.xml"] = _Response(200, _rss(site, items), xml_type)
            routes["/robots.txt"] = _Response(200, b"User-agent: *\nAllow: /\n", "text/plain")
            server.routes = routes
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            thread.start()
            running.append((server, thread))
            sites.append(site)
        yield sites
    finally:
        for server, thread in running:
            server.stopping.set()
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)


def test_wire_copies_url_variants_and_related_reports(
    worker: subprocess.Popen[bytes], conn: Conn
) -> None:
    with serve() as sites:
        for site in sites:
            newsagg("sources", "add", site.name, site.url("/feed.xml"), "--kind", "feed")
        proc = newsagg("crawl", "--all", "--wait", "--timeout", "150", timeout=180)
        assert "duplicates" in proc.stdout
        requested = sites[0].requested_paths()
    # the three tracking variants were folded before fetching: one request, one row
    assert sum(1 for p in requested if p.startswith(WIRE_PATH)) == 1
    wire = conn.execute(
        "SELECT canonical_url, duplicate_of, duplicate_kind, story_id, title FROM articles "
        "WHERE canonical_url LIKE %s ORDER BY id",
        ("%" + WIRE_PATH,),
    ).fetchall()
    assert sorted(r[0] for r in wire) == sorted(s.url(WIRE_PATH) for s in sites)
    originals = [r for r in wire if r[1] is None]
    assert len(originals) == 1, wire
    (original_id,) = conn.execute(
        "SELECT id FROM articles WHERE canonical_url = %s", (originals[0][0],)
    ).fetchone() or (None,)
    duplicates = [r for r in wire if r[1] is not None]
    assert len(duplicates) == 3 and all(r[1] == original_id for r in duplicates), wire
    assert {r[3] for r in wire} == {originals[0][3]}, "all copies in one story"
    # the related reports: originals, one story of their own
    related = conn.execute(
        "SELECT duplicate_of, story_id FROM articles WHERE canonical_url LIKE '%%/brasil/%%'"
    ).fetchall()
    assert len(related) == 2 and all(r[0] is None for r in related), related
    assert related[0][1] == related[1][1] != originals[0][3]
    assert conn.execute("SELECT count(*) FROM stories").fetchone() == (2,)
    assert b"Traceback" not in worker.log_path.read_bytes()  # type: ignore[attr-defined]
