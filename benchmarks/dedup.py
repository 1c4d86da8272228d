"""Deduplication and story benchmark on the labelled set (tests/eval/dedup_set.jsonl.gz).

    .venv/bin/python -m benchmarks.dedup            # quality + timing (about 3 minutes)
    .venv/bin/python -m benchmarks.dedup --sweep    # also the parameter sweep behind the choice
    .venv/bin/python -m benchmarks.dedup --quick    # quality only

It creates a scratch database (newsagg_bench_<pid>, on NEWSAGG_BENCH_DATABASE_URL's server,
default postgresql://localhost/postgres) and drops it at the end.

Quality: every record of the set is stored in arrival order with the production code
(`store.fingerprint_article`, then `store.store_article` in a transaction, as
`store.finish_url` does), and the rows are scored against the labels:

- URL variants: the share that landed in their page's row.
- Duplicate linking: precision = links (duplicate_of set) that point into the record's own
  cluster / all links; recall = records after the first of their cluster that are linked
  into their cluster / all such records ("strict": linked to exactly the first one).
- Hard negatives: records of the hard-negative subsets linked to another cluster.
- Story grouping, pairwise: two records are a predicted pair when they share story_id, a
  gold pair when they share the gold story. "all pairs" counts copies of one article too
  (easy: they follow duplicate linking); "across articles" counts only pairs of different
  articles (different clusters), which is what story matching itself must find.

Timing: the dedup step (fingerprint outside the transaction; store_article inside) for 300
of the set's articles, after bulk-loading 10,000 and then 100,000 synthetic articles (with
their band keys and story terms, by COPY). The synthetic articles arrive at a constant rate
(2,000 a day), so the story window holds the same number of them in both runs, as in
production; a third run puts all 100,000 inside the window, the worst case.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import random
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from tests.eval.build_eval_set import load
from workers import dedup, store, stories
from workers.extract import Article, resolve_canonical

SERVER_URL = os.environ.get("NEWSAGG_BENCH_DATABASE_URL", "postgresql://localhost/postgres")
TARGETS = {
    "dup_precision": 0.99,
    "dup_recall": 0.95,
    "story_precision": 0.95,
    "story_recall": 0.80,
}
PER_DAY = 2000
TIMED_ARTICLES = 300

Record = dict[str, Any]


def to_article(record: Record) -> Article:
    return Article(
        url=record["url"],
        canonical_url=resolve_canonical(record["url"], record["canonical_hint"]),
        title=record["title"],
        author=None,
        published_at=None,
        language=record["language"],
        sitename=None,
        description=None,
        tags=(),
        image_url=None,
        text=record["text"],
    )


# -- scoring ------------------------------------------------------------------------------


@dataclass
class Scores:
    url_variants: tuple[int, int]
    dup_precision: float
    dup_recall: float
    dup_recall_strict: float
    links: int
    wrong_links: int
    hard_negative_errors: int
    hard_negative_records: int
    story_all: tuple[float, float]
    story_cross: tuple[float, float]
    real_dup_recall: tuple[int, int]
    real_related: tuple[int, int]


def _pairs(n: int) -> int:
    return n * (n - 1) // 2


def _ratio(a: int, b: int) -> float:
    return a / b if b else 1.0


def score(records: list[Record], rows: dict[str, tuple[int, int | None, int]]) -> Scores:
    """rows: record id → (article id, duplicate_of, story_id) as stored."""
    variants = [r for r in records if r["kind"] == "url_variant"]
    page_of = {
        r["cluster"]: rows[r["id"]][0] for r in records if r["kind"] == "base" and r["id"] in rows
    }
    folded = sum(1 for r in variants if rows[r["id"]][0] == page_of.get(r["cluster"]))
    stored = [r for r in records if r["kind"] != "url_variant"]
    cluster_of_article = {rows[r["id"]][0]: r["cluster"] for r in stored}
    first_of_cluster: dict[str, int] = {}
    for r in stored:
        first_of_cluster.setdefault(r["cluster"], rows[r["id"]][0])
    links = wrong = should = found = strict = 0
    hard_errors = hard_total = 0
    real_found = real_should = 0
    for r in stored:
        article_id, duplicate_of, _story = rows[r["id"]]
        is_first = first_of_cluster[r["cluster"]] == article_id
        right = duplicate_of is not None and cluster_of_article.get(duplicate_of) == r["cluster"]
        if duplicate_of is not None:
            links += 1
            wrong += not right
        if not is_first:
            should += 1
            found += right
            strict += duplicate_of == first_of_cluster[r["cluster"]]
            if r["kind"] == "real_dup":
                real_should += 1
                real_found += right
        if "hard_negative" in r["sets"]:
            hard_total += 1
            hard_errors += duplicate_of is not None and not right
    # Pairwise story scores from contingency counts.
    pred = Counter(rows[r["id"]][2] for r in stored)
    gold = Counter(r["story"] for r in stored)
    both = Counter((rows[r["id"]][2], r["story"]) for r in stored)
    same_cluster_pred = Counter((rows[r["id"]][2], r["cluster"]) for r in stored)
    clusters = Counter(r["cluster"] for r in stored)
    tp, p_pairs, g_pairs = (sum(_pairs(n) for n in c.values()) for c in (both, pred, gold))
    inside_pred = sum(_pairs(n) for n in same_cluster_pred.values())
    inside_gold = sum(_pairs(n) for n in clusters.values())
    story_all = (_ratio(tp, p_pairs), _ratio(tp, g_pairs))
    story_cross = (
        _ratio(tp - inside_pred, p_pairs - inside_pred),
        _ratio(tp - inside_pred, g_pairs - inside_gold),
    )
    real_pairs = defaultdict(set)
    for r in stored:
        if r["kind"] == "real_related":
            real_pairs[r["story"]].add(rows[r["id"]][2])
    return Scores(
        url_variants=(folded, len(variants)),
        dup_precision=_ratio(links - wrong, links),
        dup_recall=_ratio(found, should),
        dup_recall_strict=_ratio(strict, should),
        links=links,
        wrong_links=wrong,
        hard_negative_errors=hard_errors,
        hard_negative_records=hard_total,
        story_all=story_all,
        story_cross=story_cross,
        real_dup_recall=(real_found, real_should),
        real_related=(sum(len(s) == 1 for s in real_pairs.values()), len(real_pairs)),
    )


# -- database ----------------------------------------------------------------------------


def _url(dbname: str) -> str:
    return urlunsplit(urlsplit(SERVER_URL)._replace(path=f"/{dbname}"))


@contextmanager
def scratch_database() -> Iterator[str]:
    name = f"newsagg_bench_{os.getpid()}"
    with psycopg.connect(SERVER_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with psycopg.connect(_url(name), autocommit=True) as conn:
            store.migrate(conn)
        yield _url(name)
    finally:
        with psycopg.connect(SERVER_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def empty(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        "TRUNCATE article_bands, article_terms, article_revisions, articles, stories "
        "RESTART IDENTITY CASCADE"
    )


def store_all(
    conn: psycopg.Connection[Any], records: Iterable[Record]
) -> tuple[dict[str, tuple[int, int | None, int]], list[float], list[float]]:
    """Store records in order; (rows, fingerprint ms, store ms) per record."""
    ids: dict[str, int] = {}
    fingerprint_ms: list[float] = []
    store_ms: list[float] = []
    for record in records:
        article = to_article(record)
        t0 = time.perf_counter()
        fingerprint = store.fingerprint_article(article)
        t1 = time.perf_counter()
        with conn.transaction():
            ids[record["id"]], _ = store.store_article(conn, article, None, fingerprint=fingerprint)
        t2 = time.perf_counter()
        fingerprint_ms.append((t1 - t0) * 1000)
        store_ms.append((t2 - t1) * 1000)
    found = conn.execute(
        "SELECT id, duplicate_of, story_id FROM articles WHERE id = ANY(%s)", (list(ids.values()),)
    ).fetchall()
    by_id = {int(i): (int(i), d, int(s)) for i, d, s in found}
    return {rid: by_id[aid] for rid, aid in ids.items()}, fingerprint_ms, store_ms


def load_background(
    conn: psycopg.Connection[Any], count: int, span: timedelta, vocabulary: list[str]
) -> None:
    """COPY `count` synthetic articles, evenly spread over the `span` before now.

    Each has a random body (never a near-duplicate of anything: its band keys are random),
    16 story terms drawn from the corpus' own term frequencies (so common terms are
    common here too) and a story of its own.
    """
    rng = random.Random(count)
    now = datetime.now(UTC)
    cumulative = list(itertools.accumulate(1.0 / (rank + 1) for rank in range(len(vocabulary))))
    words = [w for w in vocabulary if w.isalpha()][:5000]
    start = conn.execute("SELECT coalesce(max(id), 0) FROM articles").fetchone()[0]  # type: ignore[index]
    with conn.transaction():
        conn.execute("ALTER TABLE stories ALTER COLUMN id SET GENERATED BY DEFAULT")
        conn.execute("ALTER TABLE articles ALTER COLUMN id SET GENERATED BY DEFAULT")
        seen = [now - span * (i / count) for i in range(count)]
        terms = [
            tuple(dict.fromkeys(rng.choices(vocabulary, cum_weights=cumulative, k=16)))
            for _ in range(count)
        ]
        with conn.cursor().copy(
            "COPY stories (id, title, first_seen_at, last_seen_at) FROM STDIN"
        ) as copy:
            for i in range(count):
                copy.write_row((start + i + 1, f"synthetic {i}", seen[i], seen[i]))
        with conn.cursor().copy(
            "COPY articles (id, url, canonical_url, title, text, word_count, content_hash, "
            "story_id, story_terms, event_at, first_seen_at, fetched_at) FROM STDIN"
        ) as copy:
            for i in range(count):
                aid = start + i + 1
                body = " ".join(rng.choices(words, k=60))
                url = f"https://synthetic.example/{aid}"
                copy.write_row(
                    (aid, url, url, " ".join(terms[i][:6]), body, 60, f"synthetic-{aid}",
                     aid, list(terms[i]), seen[i], seen[i], seen[i])
                )  # fmt: skip
        with conn.cursor().copy(
            "COPY article_bands (band_key, event_at, article_id) FROM STDIN"
        ) as copy:
            for i in range(count):
                for _ in range(dedup.BANDS):
                    copy.write_row((rng.getrandbits(64) - 2**63, seen[i], start + i + 1))
        with conn.cursor().copy(
            "COPY article_terms (term, event_at, article_id, story_id) FROM STDIN"
        ) as copy:
            for i in range(count):
                for term in terms[i]:
                    copy.write_row((term, seen[i], start + i + 1, start + i + 1))
        conn.execute("ALTER TABLE stories ALTER COLUMN id SET GENERATED ALWAYS")
        conn.execute("ALTER TABLE articles ALTER COLUMN id SET GENERATED ALWAYS")
        for table in ("stories", "articles"):
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT max(id) FROM {table}))"
            )
    conn.execute("ANALYZE articles, article_bands, article_terms, stories")


# -- reporting ---------------------------------------------------------------------------


def _mark(value: float, target: float) -> str:
    return "ok" if value >= target else "BELOW TARGET"


def report(scores: Scores) -> None:
    s = scores
    print("\nQuality on tests/eval/dedup_set.jsonl.gz")
    print(f"  {'measure':<44} {'value':>8} {'target':>8}")
    rows = [
        ("URL variants folded into their page's row",
         f"{s.url_variants[0]}/{s.url_variants[1]}", "all"),
        ("duplicate linking precision", f"{s.dup_precision:.4f}",
         f"{TARGETS['dup_precision']:.2f} {_mark(s.dup_precision, TARGETS['dup_precision'])}"),
        ("duplicate linking recall", f"{s.dup_recall:.4f}",
         f"{TARGETS['dup_recall']:.2f} {_mark(s.dup_recall, TARGETS['dup_recall'])}"),
        ("  recall, linked to exactly the earliest copy", f"{s.dup_recall_strict:.4f}", ""),
        ("  links made / wrong", f"{s.links}/{s.wrong_links}", ""),
        ("hard negatives linked to another article",
         f"{s.hard_negative_errors}/{s.hard_negative_records}",
         "0 " + ("ok" if s.hard_negative_errors == 0 else "ABOVE TARGET")),
        ("real syndicated pairs linked", f"{s.real_dup_recall[0]}/{s.real_dup_recall[1]}", ""),
        ("story precision, across articles", f"{s.story_cross[0]:.4f}",
         f"{TARGETS['story_precision']:.2f} "
         f"{_mark(s.story_cross[0], TARGETS['story_precision'])}"),
        ("story recall, across articles", f"{s.story_cross[1]:.4f}",
         f"{TARGETS['story_recall']:.2f} {_mark(s.story_cross[1], TARGETS['story_recall'])}"),
        ("story precision / recall, all pairs",
         f"{s.story_all[0]:.3f}/{s.story_all[1]:.3f}", ""),
        ("real related pairs in one story", f"{s.real_related[0]}/{s.real_related[1]}", ""),
    ]  # fmt: skip
    for name, value, target in rows:
        print(f"  {name:<44} {value:>8} {target:>8}")


def _summary(values: list[float]) -> str:
    values = sorted(values)
    p95 = values[min(len(values) - 1, math.ceil(0.95 * len(values)) - 1)]
    return f"{statistics.mean(values):7.2f} {statistics.median(values):7.2f} {p95:7.2f}"


# -- sweep -------------------------------------------------------------------------------


def simulate(
    records: list[Record], signatures: list[dedup.TextSignature], rule: Any
) -> tuple[float, float, int]:
    """The store's duplicate algorithm in memory (no window, no DB): precision, recall and
    hard-negative errors for one LSH layout (in `signatures`) and verification rule."""
    index: dict[int, list[int]] = defaultdict(list)
    original: list[int] = []
    rows: dict[str, tuple[int, int | None, int]] = {}
    by_hash: dict[str, int] = {}
    for i, (record, sig) in enumerate(zip(records, signatures, strict=True)):
        digest = dedup.content_hash(record["text"])
        link: int | None = None
        if digest in by_hash:
            link = original[by_hash[digest]]
        else:
            seen: set[int] = set()
            for key in sig.bands:
                seen.update(index[key])
            best = None
            for j in sorted(seen):
                if rule(dedup.similarity(sig.shingles, signatures[j].shingles)):
                    best = original[j] if best is None else min(best, original[j])
            link = best
            by_hash[digest] = i
        original.append(i if link is None else link)
        for key in sig.bands:
            index[key].append(i)
        rows[record["id"]] = (i, link, 0)
    s = score(records, rows)
    return s.dup_precision, s.dup_recall, s.hard_negative_errors


def sweep(records: list[Record]) -> None:
    stored = [r for r in records if r["kind"] != "url_variant"]
    shingle_sets = [dedup.shingles(r["text"]) for r in stored]
    hashes = [dedup.minhash(s).hashvalues for s in shingle_sets]
    print("\nSweep (in memory, no window): LSH layout × verification rule")
    print(f"  {'bands×rows':<10} {'rule':<34} {'P':>7} {'R':>7} {'hard neg':>8}")
    rules = {
        "J>=0.8 or C>=0.9 (notes A2)": lambda s: s.jaccard >= 0.8 or s.containment >= 0.9,
        "J>=0.5 or C>=0.7": lambda s: s.jaccard >= 0.5 or s.containment >= 0.7,
        "J>=0.5 or (C>=0.6, J>=0.2, 40 shared)": lambda s: (
            s.jaccard >= 0.5 or (s.containment >= 0.6 and s.jaccard >= 0.2 and s.shared >= 40)
        ),
        "current (dedup.is_near_duplicate)": dedup.is_near_duplicate,
    }
    for bands, rows in ((20, 6), (32, 4), (42, 3)):
        sigs = [
            dedup.TextSignature(len(r["text"].split()), sh, dedup.band_keys(h, bands, rows))
            for r, sh, h in zip(stored, shingle_sets, hashes, strict=True)
        ]
        for name, rule in rules.items():
            p, r, hard = simulate(stored, sigs, rule)
            print(f"  {f'{bands}×{rows}':<10} {name:<34} {p:7.4f} {r:7.4f} {hard:8d}")


def sweep_stories(conn: psycopg.Connection[Any], records: list[Record]) -> None:
    """Story thresholds, on the real store path (each run stores the whole set)."""
    print("\nSweep: story score threshold × minimum shared terms (across articles)")
    print(f"  {'score>=':<8} {'shared>=':<9} {'P':>7} {'R':>7} {'real pairs':>10}")
    saved = stories.STORY_MIN, stories.SHARED_TERMS_MIN
    try:
        for minimum in (0.2, 0.25, 0.3, 0.35, 0.4):
            for shared in (2, 3, 4):
                stories.STORY_MIN, stories.SHARED_TERMS_MIN = minimum, shared
                store.SHARED_TERMS_MIN = shared
                empty(conn)
                rows, _, _ = store_all(conn, records)
                s = score(records, rows)
                real = f"{s.real_related[0]}/{s.real_related[1]}"
                print(
                    f"  {minimum:<8} {shared:<9} {s.story_cross[0]:7.4f} {s.story_cross[1]:7.4f}"
                    f" {real:>10}"
                )
    finally:
        stories.STORY_MIN, stories.SHARED_TERMS_MIN = saved
        store.SHARED_TERMS_MIN = saved[1]


# -- main --------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description="dedup and story benchmark")
    parser.add_argument("--quick", action="store_true", help="quality only, no timing")
    parser.add_argument("--sweep", action="store_true", help="also sweep LSH/verification")
    args = parser.parse_args()
    records = load()
    print(
        f"{len(records)} records: "
        + ", ".join(f"{k} {n}" for k, n in Counter(r["kind"] for r in records).items())
    )
    print(
        f"parameters: {dedup.SHINGLE_WORDS}-word shingles, MinHash {dedup.NUM_PERM} perms, "
        f"LSH {dedup.BANDS}×{dedup.ROWS}, verify J>={dedup.JACCARD_MIN} or "
        f"(containment>={dedup.CONTAINMENT_MIN}, J>={dedup.CONTAINMENT_JACCARD_MIN}, "
        f">={dedup.SHARED_MIN} shared); stories: {stories.MAX_TERMS} terms, score>="
        f"{stories.STORY_MIN}, >={stories.SHARED_TERMS_MIN} shared"
    )
    if args.sweep:
        sweep(records)
    with scratch_database() as url, psycopg.connect(url, autocommit=True) as conn:
        if args.sweep:
            sweep_stories(conn, records)
            empty(conn)
        rows, _, _ = store_all(conn, records)
        report(score(records, rows))
        if args.quick:
            return 0
        vocabulary = [t for t, _ in Counter(
            t for r in records for t in stories.story_terms(r["title"], r["text"], r["language"])
        ).most_common()]  # fmt: skip
        timed = [r for r in records if r["kind"] != "url_variant"][:TIMED_ARTICLES]
        print(f"\nTime per article, {len(timed)} articles of the set stored after N synthetic ones")
        print(f"  {'already stored':<34} {'fingerprint ms (mean median p95)':>32}"
              f" {'store ms (mean median p95)':>28}")  # fmt: skip
        runs = [
            (10_000, timedelta(days=10_000 / PER_DAY), f"10,000 ({PER_DAY}/day)"),
            (100_000, timedelta(days=100_000 / PER_DAY), f"100,000 ({PER_DAY}/day)"),
            (100_000, timedelta(days=2), "100,000 all within the window"),
        ]
        # Warm caches (imports, stop lists, plans) so the first run is not charged for them.
        empty(conn)
        store_all(conn, timed[:50])
        for count, span, label in runs:
            empty(conn)
            t0 = time.perf_counter()
            load_background(conn, count, span, vocabulary)
            loaded = time.perf_counter() - t0
            _, fingerprint_ms, store_ms = store_all(conn, timed)
            print(
                f"  {label:<34} {_summary(fingerprint_ms):>32} {_summary(store_ms):>28}"
                f"   (loaded in {loaded:.0f} s)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
