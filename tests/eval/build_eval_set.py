"""Build the labelled deduplication and story set (tests/eval/dedup_set.jsonl.gz).

    .venv/bin/python -m tests.eval.build_eval_set          # rebuild (about 30 s)
    .venv/bin/python -m tests.eval.build_eval_set --check  # rebuild in memory, compare

Deterministic: the same corpus gives byte-identical output (fixed seed, sorted inputs,
gzip mtime 0).

Every record is one page as the store would receive it: `url`, optional `canonical_hint`
(the page's rel=canonical), `title`, `text` (the body), `language`, and its labels:
`cluster` (records with the same cluster are the same article: the first one stored is the
original, every later one must be linked to it), `story` (the gold story), `kind` (how the
record was made) and `sets` (the evaluation subsets it belongs to). Records are in arrival
order: the benchmark stores them in file order.

What the records are made from (texts extracted with workers.extract.extract_article, as
the pipeline does, from ../shared/corpus pages):

- base: a real article (extraction/ and dates/ pages of 150-2500 words; no two bases are
  near-duplicates of each other, checked on shingles).
- syndicated: a base transformed the way wire copies are: the headline edited, a dateline
  ("LONDON (Reuters) -"), a byline or "Reporting by ..." line, an update paragraph
  appended (real text from a page that is not in the set), a few words changed, the end
  trimmed, a middle paragraph cut, page-chrome lines leaked into the text. Each copy gets
  two to four of these, drawn at random.
- exact: the base text under another site's URL.
- url_variant: the base's URL with tracking parameters, a fragment, an upper-case host, a
  default port, or an AMP URL whose rel=canonical names the base: must fold into the
  base's row.
- related: "another outlet's report of the same event", made from a base (see
  `related_report`): a different headline from the base's headline words, two or three
  lead sentences of the base with about a third of their words dropped or swapped, then
  background paragraphs from a page that is not in the set and a few more perturbed base
  sentences. Gold: the base's story, not its cluster. *Limits*: it shares the base's names
  and wording more closely than an independent report would, so story recall measured
  here is optimistic; it cannot test paraphrase or translation.
- real_dup / real_related / same_site / same_topic: real corpus pages, labelled by reading
  them: two syndicated pairs (an EFE wire story on two Chilean sites; a hunting
  association's press release and a magazine's reported-speech version), three pairs of
  different reports of one event (Brexit vote postponed, stern.de and nzz.ch; Pacheco
  meets Fux, two Brazilian papers; VW's Diess before and at the works meeting, a
  follow-up), pages of one site, and pages on one topic that are not one event
  (green hydrogen, leasing or financing a car, Python): the hard negatives.
- boilerplate: bases with one of two long (about 120 words) newsletter/disclaimer
  paragraphs appended: different articles that share a long block of text.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import random
import re
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tests.sites import corpus_dir

OUT = Path(__file__).resolve().parent / "dedup_set.jsonl.gz"
SEED = 20240517
N_BASES = 300
N_BOILERPLATE = 40
MIN_WORDS, MAX_WORDS = 150, 2500

# Labelled by reading the pages (see the module docstring).
REAL_DUPS = [
    (
        "https://www.24horas.cl/politica/presidente-boric-inicia-gira-por-magallanes-este-miercoles-5287894",
        "https://www.cooperativa.cl/noticias/pais/presidente-boric/presidente-boric-vuelve-a-su-casa-magallanes-este-miercoles-realiza-su/2022-05-04/074527.html",
    ),
    (
        "https://www.jagdverband.de/wir-sind-tief-erschuettert",
        "https://djz.de/amoklauf-in-heidelberg-rufe-nach-schneller-aufklaerung/",
    ),
]
REAL_RELATED = [
    (
        "https://www.stern.de/politik/ausland/niederlage-fuer-johnson--parlament-vertagt-votum-ueber-brexit-deal-8961728.html?utm_campaign=alle&utm_medium=rss-feed&utm_source=standard",
        "https://www.nzz.ch/international/der-nervenkrieg-um-den-brexit-geht-in-die-naechste-runde-ld.1516516",
    ),
    (
        "https://www.gazetadopovo.com.br/republica/o-que-pacheco-pretende-acenos-ao-stf-e-propor-limites-ao-indulto-presidencial/",
        "https://www.correiobraziliense.com.br/politica/2022/05/5005250-de-novo-em-busca-da-tregua-institucional.html",
    ),
    (
        "https://www.automobilwoche.de/article/20211103/AGENTURMELDUNGEN/311039909/1276/krach-vor-der-vw-betriebsversammlung-es-knirscht-zwischen-diess-und-aufsichtsraeten",
        "https://auto.oe24.at/thema/vw-chef-diess-warnt-vor-tesla-und-golf-aus-china/497533355",
    ),
]
SAME_TOPIC = {
    "green-hydrogen": [
        "https://www.cducsu.de/themen/wirtschaft-und-energie-verkehr-bildung-und-forschung/gruener-wasserstoff-das-schluesselelement-der-energiewende",
        "https://orsted.de/gruene-energie/gruener-wasserstoff/potenzial",
        "https://www.cleanthinking.de/oranger-wasserstoff-erdkruste/",
        "https://www.scinexx.de/news/energie/ammoniak-spaltung-durch-leds-statt-hitze/",
    ],
    "car-leasing": [
        "https://www.finanzcheck.de/autokredit/leasing-oder-finanzierung/",
        "https://www.focus.de/auto/experten/auto-leasen-oder-kaufen-fuer-wen-lohnt-sich-was_id_9209161.html",
        "https://www.comparis.ch/leasing/info/autofinanzierung",
        "https://www.verivox.de/kredit/leasing-oder-finanzierung/",
        "https://fincompare.de/firmenwagen-leasing-oder-finanzierung",
    ],
    "python": [
        "https://pythonspeed.com/articles/pipenv-docker/",
        "https://wiki.python.org/moin/BeginnersGuide/Download",
        "https://strangemachines.io/articles/performant-python",
        "https://hackernoon.com/how-to-scrape-google-with-python-bo7d2tal",
    ],
}
# Sites with several news pages in the corpus (web.archive.org is not one site).
SAME_SITE_HOSTS = {
    "timesofindia.indiatimes.com",
    "yle.fi",
    "dailymail.co.uk",
    "economictimes.indiatimes.com",
    "mk.ru",
    "uol.com.br",
    "hindi.business-standard.com",
    "divyabhaskar.co.in",
    "news18.com",
    "eastbaytimes.com",
    "baltimoresun.com",
    "globalnews.ca",
    "sn.dk",
}

BOILERPLATE = [
    "Sign up for our morning newsletter and get the day's most important stories, hand-picked "
    "by our editors, delivered to your inbox before breakfast. You can unsubscribe at any time "
    "with one click. We use your email address only to send you the newsletter and never share "
    "it with third parties. For details see our privacy policy. Our journalism depends on "
    "readers like you: if you value independent reporting, please consider a subscription, "
    "which gives you unlimited access to every article on our website and app, the digital "
    "edition of the paper, our archive going back decades and invitations to reader events. "
    "Already a subscriber? Log in to continue reading. Questions? Contact our reader service.",
    "Dieser Artikel wurde mit größter Sorgfalt recherchiert, erhebt jedoch keinen Anspruch auf "
    "Vollständigkeit und ersetzt keine individuelle Beratung. Alle Angaben ohne Gewähr. Die "
    "Redaktion übernimmt keine Haftung für Schäden, die aus der Verwendung der hier "
    "bereitgestellten Informationen entstehen. Nachdruck und Weiterverbreitung, auch "
    "auszugsweise, nur mit ausdrücklicher Genehmigung des Verlags. Sie möchten keine "
    "Nachrichten mehr verpassen? Abonnieren Sie unseren kostenlosen Newsletter und erhalten "
    "Sie jeden Morgen die wichtigsten Meldungen des Tages direkt in Ihr Postfach. Die "
    "Abmeldung ist jederzeit möglich. Hinweise zum Datenschutz finden Sie in unserer "
    "Datenschutzerklärung. Folgen Sie uns auch auf Facebook, Instagram und X.",
]
DATELINES = [
    "LONDON (Reuters) - ",
    "WASHINGTON (AP) — ",
    "BERLIN (dpa) - ",
    "PARIS (AFP) - ",
    "NEW YORK, May 17 (Reuters) - ",
    "(AP) — ",
    "MADRID, 4 may (EFE).- ",
]
BYLINES_TOP = ["By Jane Doe, Associated Press", "Von Anna Schmidt, dpa", "By Staff Reporter"]
BYLINES_END = [
    "Reporting by Jane Doe; Editing by John Smith",
    "(Reporting by Anna Schmidt; writing by Tom Brown; editing by Alex Richardson)",
    "Copyright 2024 The Associated Press. All rights reserved.",
    "© dpa-infocom, dpa:240517-99-123456/3",
]
CHROME = [
    "Advertisement",
    "Share this article",
    "Follow us on Twitter",
    "Read more:",
    "Anzeige",
    "Continue reading below",
    "Sign up to our newsletter",
]
OUTLETS = [
    "dailyplanet.example",
    "courier.example.org",
    "gazette.example.de",
    "wire-news.example.net",
    "metro-times.example.com",
    "le-courrier.example.fr",
]

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-ZÄÖÜÀ-Ý\"„“«])")


def _extract(item: tuple[str, str, str]) -> dict[str, Any] | None:
    import gzip as _gzip

    from workers.extract import EmptyExtraction, extract_article
    from workers.fetch import decode_body

    corpus, url, file = item
    html, _ = decode_body(_gzip.decompress((corpus_dir() / corpus / file).read_bytes()), None)
    try:
        article = extract_article(html, url)
    except (EmptyExtraction, ValueError):
        return None
    return {
        "origin": url,
        "title": article.title,
        "text": article.text,
        "language": article.language,
    }


def load_corpus() -> list[dict[str, Any]]:
    """Every extraction/ and dates/ page's extracted article, in a fixed order."""
    items = []
    for corpus in ("extraction", "dates"):
        truth = json.loads((corpus_dir() / corpus / "groundtruth.json").read_text(encoding="utf-8"))
        items += [(corpus, url, truth[url]["file"]) for url in sorted(truth)]
    with ProcessPoolExecutor(2) as pool:
        docs = [d for d in pool.map(_extract, items, chunksize=8) if d is not None]
    from workers.dedup import InvalidURL, canonicalise_url

    seen: set[str] = set()
    unique = []
    for doc in docs:
        try:
            canonicalise_url(doc["origin"])
        except InvalidURL:
            continue  # a few ground-truth keys are not URLs ("xhttps://…")
        if doc["origin"] not in seen:
            seen.add(doc["origin"])
            unique.append(doc)
    return unique


def paragraphs(text: str) -> list[str]:
    return [p for p in text.split("\n") if p.strip()]


def sentences(text: str) -> list[str]:
    return [s for p in paragraphs(text) for s in _SENTENCE.split(p) if len(s.split()) >= 4]


def change_words(rng: random.Random, text: str, count: int) -> str:
    tokens = text.split(" ")
    for _ in range(count):
        i = rng.randrange(len(tokens))
        if "\n" in tokens[i]:
            continue
        tokens[i] = rng.choice([rng.choice(tokens).strip("\n") or "the", ""])
    return re.sub(r" {2,}", " ", " ".join(tokens))


def perturb_sentence(rng: random.Random, sentence: str) -> str:
    """About a third of the words dropped or swapped with a neighbour."""
    tokens = sentence.split()
    out: list[str] = []
    for token in tokens:
        r = rng.random()
        if r < 0.2 and len(tokens) > 6:
            continue
        if r < 0.35 and out:
            out.insert(len(out) - 1, token)
            continue
        out.append(token)
    return " ".join(out)


def syndicate(
    rng: random.Random, base: dict[str, Any], donors: list[dict[str, Any]]
) -> tuple[str, str, list[str]]:
    """(title, text, transforms) of a wire copy of base."""
    title = base["title"] or ""
    paras = paragraphs(base["text"])
    transforms = rng.sample(
        ["dateline", "byline", "update", "words", "trim", "cut", "chrome"], rng.randint(2, 4)
    )
    title_words = title.split()
    if title_words:
        choice = rng.random()
        if choice < 0.3:
            title = "UPDATE 1-" + title
        elif choice < 0.6 and len(title_words) > 4:
            title = " ".join(title_words[: max(3, len(title_words) * 2 // 3)])
        else:
            title = rng.choice(["BREAKING: ", "Report: ", ""]) + title.rstrip(".") + " - wire"
    if "trim" in transforms and len(paras) > 3:
        total = sum(len(p.split()) for p in paras)
        while len(paras) > 3 and sum(len(p.split()) for p in paras[:-1]) >= 0.75 * total:
            paras = paras[:-1]
    if "cut" in transforms and len(paras) > 4:
        del paras[rng.randrange(1, len(paras) - 1)]
    if "words" in transforms:
        body = "\n".join(paras)
        n = max(3, min(15, len(body.split()) // 80))
        paras = paragraphs(change_words(rng, body, n))
    if "chrome" in transforms:
        for _ in range(rng.randint(1, 3)):
            paras.insert(rng.randrange(1, len(paras) + 1), rng.choice(CHROME))
    if "update" in transforms:
        donor = rng.choice(donors)
        extra = " ".join(sentences(donor["text"])[:3])
        paras.append("UPDATE: " + extra)
    if "byline" in transforms:
        if rng.random() < 0.5:
            paras.insert(0, rng.choice(BYLINES_TOP))
        else:
            paras.append(rng.choice(BYLINES_END))
    if "dateline" in transforms and paras:
        paras[0] = rng.choice(DATELINES) + paras[0]
    return title, "\n".join(paras), sorted(transforms)


def related_report(
    rng: random.Random, base: dict[str, Any], donor: dict[str, Any]
) -> tuple[str, str]:
    """Another outlet's report of base's event (construction in the module docstring)."""
    words = (base["title"] or "").split()
    kept = [w for w in words if rng.random() < 0.7] or words
    if len(kept) > 6:
        rng.shuffle(kept)
    title = " ".join(kept)
    base_sentences = sentences(base["text"])
    lead = [perturb_sentence(rng, s) for s in base_sentences[: rng.randint(2, 3)]]
    rest = base_sentences[3:]
    later = [perturb_sentence(rng, s) for s in rng.sample(rest, min(len(rest), rng.randint(1, 3)))]
    background = paragraphs(donor["text"])
    take = background[: max(2, len(background) // 3)]
    body = [" ".join(lead), *take[: len(take) // 2], " ".join(later), *take[len(take) // 2 :]]
    return title, "\n".join(p for p in body if p)


def url_variants(rng: random.Random, url: str) -> list[tuple[str, str | None, str]]:
    """(url, canonical_hint, how) variants of one URL that must fold into its row."""
    parts = urlsplit(url)
    sep = "&" if parts.query else ""
    options = [
        (urlunsplit(parts._replace(query=parts.query + sep + "utm_source=rss&utm_medium=feed")),
         None, "utm"),
        (urlunsplit(parts._replace(query=parts.query + sep + "fbclid=IwAR0abc123")), None,
         "fbclid"),
        (urlunsplit(parts._replace(fragment="comments")), None, "fragment"),
        (urlunsplit(parts._replace(netloc=parts.netloc.upper())), None, "host_case"),
        (urlunsplit(parts._replace(netloc=parts.netloc + (":443" if parts.scheme == "https"
                                                            else ":80"))), None, "default_port"),
        (urlunsplit(parts._replace(path="/amp" + parts.path)), url, "amp_canonical"),
    ]  # fmt: skip
    return rng.sample(options, rng.randint(1, 2))


def _shingles(text: str) -> frozenset[str]:
    from workers.dedup import shingles

    return shingles(text)


def build(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rng = random.Random(SEED)
    by_origin = {d["origin"]: d for d in docs}
    special = {u for pair in REAL_DUPS + REAL_RELATED for u in pair}
    special |= {u for urls in SAME_TOPIC.values() for u in urls}
    same_site = [
        d
        for d in docs
        if (urlsplit(d["origin"]).hostname or "").removeprefix("www.") in SAME_SITE_HOSTS
        and len(d["text"].split()) >= 80
        and d["origin"] not in special
    ]
    special |= {d["origin"] for d in same_site}
    eligible = [
        d
        for d in docs
        if MIN_WORDS <= len(d["text"].split()) <= MAX_WORDS
        and d["title"]
        and d["origin"] not in special
    ]
    rng.shuffle(eligible)
    # No two stored pages may be near-duplicates of each other unless labelled so.
    chosen: list[dict[str, Any]] = []
    chosen_shingles: list[frozenset[str]] = []
    donors: list[dict[str, Any]] = []
    for doc in eligible:
        sh = _shingles(doc["text"])
        if any(len(sh & other) / min(len(sh), len(other)) > 0.3 for other in chosen_shingles):
            continue
        if len(chosen) < N_BASES + N_BOILERPLATE:
            chosen.append(doc)
            chosen_shingles.append(sh)
        else:
            donors.append(doc)
    bases, boiler_bases = chosen[:N_BASES], chosen[N_BASES:]
    # Pages not in the set lend text: update paragraphs come from the first half, the
    # background of related reports from the second, each page used once there, so no two
    # stored records share lent text.
    update_donors, background_donors = donors[: len(donors) // 2], donors[len(donors) // 2 :]
    print(f"{len(bases)} bases, {len(donors)} donor pages", file=sys.stderr)
    # Shorter pages make the shared block a larger share of the text: harder negatives.
    boiler_bases.sort(key=lambda d: len(d["text"].split()))

    records: list[dict[str, Any]] = []
    counter = Counter[str]()

    def add(kind: str, cluster: str, story: str, title: str | None, text: str, **kw: Any) -> None:
        counter[kind] += 1
        records.append(
            {
                "id": f"{kind}-{counter[kind]:04d}",
                "url": kw.pop("url"),
                "canonical_hint": kw.pop("canonical_hint", None),
                "title": title,
                "text": text,
                "language": kw.pop("language", None),
                "cluster": cluster,
                "story": story,
                "kind": kind,
                "transforms": kw.pop("transforms", []),
                "sets": kw.pop("sets", []),
            }
        )

    def outlet_url(n: int, slug: str) -> str:
        return f"https://{OUTLETS[n % len(OUTLETS)]}/news/{slug}"

    for i, base in enumerate(bases):
        cluster, story = f"c{i:04d}", f"s{i:04d}"
        lang = base["language"]
        add("base", cluster, story, base["title"], base["text"], url=base["origin"], language=lang,
            sets=["synthetic"])  # fmt: skip
        for j in range(rng.choice([0, 1, 1, 2, 2, 3])):
            title, text, transforms = syndicate(rng, base, update_donors)
            add("syndicated", cluster, story, title, text, url=outlet_url(j, f"{i}-copy-{j}"),
                language=lang, transforms=transforms, sets=["synthetic"])  # fmt: skip
        if rng.random() < 1 / 3:
            add("exact", cluster, story, base["title"], base["text"],
                url=outlet_url(i + 3, f"{i}-exact"), language=lang, sets=["synthetic"])  # fmt: skip
        if rng.random() < 1 / 3:
            for url, hint, how in url_variants(rng, base["origin"]):
                add("url_variant", cluster, story, base["title"], base["text"], url=url,
                    canonical_hint=hint, language=lang, transforms=[how],
                    sets=["synthetic"])  # fmt: skip
        if rng.random() < 0.3:
            for k in range(rng.choice([1, 1, 2])):
                # Another outlet of the base's language: background in the same language.
                same = [d for d in background_donors if d["language"] == lang]
                donor = same[-1] if same else background_donors[-1]
                background_donors.remove(donor)
                title, text = related_report(rng, base, donor)
                rel_cluster = f"{cluster}-r{k}"
                add("related", rel_cluster, story, title, text,
                    url=outlet_url(i + k + 1, f"{i}-related-{k}"), language=lang,
                    sets=["synthetic", "related"])  # fmt: skip
                if rng.random() < 0.3:
                    related = {"title": title, "text": text}
                    t2, x2, tr = syndicate(rng, related, update_donors)
                    add("syndicated", rel_cluster, story, t2, x2,
                        url=outlet_url(i + k + 2, f"{i}-related-{k}-copy"), language=lang,
                        transforms=tr, sets=["synthetic", "related"])  # fmt: skip

    for n, base in enumerate(boiler_bases):
        block = BOILERPLATE[n % len(BOILERPLATE)]
        add("boilerplate", f"b{n:04d}", f"sb{n:04d}", base["title"], base["text"] + "\n" + block,
            url=base["origin"], language=base["language"], sets=["hard_negative"])  # fmt: skip

    for n, (first, second) in enumerate(REAL_DUPS):
        for url in (first, second):
            doc = by_origin[url]
            add("real_dup", f"rd{n}", f"srd{n}", doc["title"], doc["text"], url=url,
                language=doc["language"], sets=["real"])  # fmt: skip
    for n, (first, second) in enumerate(REAL_RELATED):
        for k, url in enumerate((first, second)):
            doc = by_origin[url]
            add("real_related", f"rr{n}-{k}", f"srr{n}", doc["title"], doc["text"], url=url,
                language=doc["language"], sets=["real", "related"])  # fmt: skip
    for topic, urls in SAME_TOPIC.items():
        for k, url in enumerate(urls):
            doc = by_origin[url]
            add("same_topic", f"t-{topic}-{k}", f"st-{topic}-{k}", doc["title"], doc["text"],
                url=url, language=doc["language"], sets=["real", "hard_negative"])  # fmt: skip
    for k, doc in enumerate(same_site):
        add("same_site", f"ss{k:03d}", f"sss{k:03d}", doc["title"], doc["text"], url=doc["origin"],
            language=doc["language"], sets=["real", "hard_negative"])  # fmt: skip

    # Arrival order: shuffled, but a URL variant never arrives before the page it varies
    # (its row is then the variant's; the check is the same either way, this keeps the
    # labels simple).
    rng.shuffle(records)
    ordered = [r for r in records if r["kind"] != "url_variant"]
    return ordered + [r for r in records if r["kind"] == "url_variant"]


def encode(records: list[dict[str, Any]]) -> bytes:
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as fh:
        for record in records:
            fh.write((json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n").encode())
    return raw.getvalue()


def load(path: Path = OUT) -> list[dict[str, Any]]:
    """The records of the set, in arrival order."""
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if the file is out of date")
    args = parser.parse_args()
    data = encode(build(load_corpus()))
    if args.check:
        same = OUT.is_file() and OUT.read_bytes() == data
        print("up to date" if same else f"{OUT} is out of date: rebuild it")
        return 0 if same else 1
    OUT.write_bytes(data)
    records = load()
    kinds = Counter(r["kind"] for r in records)
    print(f"wrote {OUT} ({len(data) / 1e6:.1f} MB): {len(records)} records, {dict(kinds)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
