"""Extraction benchmark: newsagg's stored text and dates against trafilatura's defaults.

Run: .venv/bin/python -m benchmarks.extraction [--corpus PATH] [--processes N] [--limit N]

On ../shared/corpus/extraction (884 pages, snippets the text must / must not contain) it
scores the text newsagg stores (`decode_body` + `extract_article`) and, in the same run,
trafilatura's own default (`bare_extraction(html, url=…, with_metadata=True)`, comments
included as by default), as precision/recall/F1 over snippets, the way trafilatura's own
evaluation does. On ../shared/corpus/dates (200 news pages with a known publication day)
it scores the stored `published_at` against trafilatura's `date`, at day precision, and
shows where newsagg's dates came from (`published_source`: metadata, url, text) with the
accuracy of each.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = Path(os.environ.get("NEWSAGG_CORPUS") or ROOT.parent / "shared" / "corpus")


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def add(self, other: Score) -> None:
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        self.tn += other.tn

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass(frozen=True)
class Extracted:
    text: str
    day: str | None  # the publication day, in the zone the date is given in
    source: str | None = None  # where the date came from, when the extractor says


def newsagg_extract(raw: bytes, url: str) -> Extracted:
    from workers.extract import EmptyExtraction, TooComplex, extract_article
    from workers.fetch import decode_body

    html, _ = decode_body(raw, "text/html")
    try:
        article = extract_article(html, url, min_text_chars=1)
    except (EmptyExtraction, TooComplex):
        return Extracted("", None)
    day = article.published_at.date().isoformat() if article.published_at else None
    return Extracted(article.text, day, article.published_source)


def trafilatura_default(raw: bytes, url: str) -> Extracted:
    from trafilatura import bare_extraction

    doc: Any = bare_extraction(raw, url=url, with_metadata=True)
    if doc is None:
        return Extracted("", None)
    return Extracted(doc.text or "", (doc.date or None) and str(doc.date)[:10])


EXTRACTORS: dict[str, Callable[[bytes, str], Extracted]] = {
    "newsagg (stored)": newsagg_extract,
    "trafilatura default": trafilatura_default,
}


def page_url(key: str) -> str:
    """Some ground-truth keys are labels ("hard::site-slug"), not URLs."""
    return key if key.startswith(("http://", "https://")) else f"https://example.com/{key}"


def score_text(job: tuple[str, str, str, list[str], list[str]]) -> tuple[Score, float]:
    name, path, url, with_, without = job
    raw = gzip.decompress(Path(path).read_bytes())
    # CPU time, as the output says: other load on the machine does not count.
    started = time.process_time()
    text = EXTRACTORS[name](raw, url).text
    elapsed = time.process_time() - started
    score = Score()
    for snippet in with_:
        if snippet in text:
            score.tp += 1
        else:
            score.fn += 1
    for snippet in without:
        if snippet in text:
            score.fp += 1
        else:
            score.tn += 1
    return score, elapsed


def score_date(job: tuple[str, str, str, str]) -> tuple[bool, str | None]:
    """(the day is right, where the date came from)."""
    name, path, url, expected = job
    raw = gzip.decompress(Path(path).read_bytes())
    extracted = EXTRACTORS[name](raw, url)
    return extracted.day == expected, extracted.source if extracted.day else None


def format_sources(results: list[tuple[bool, str | None]]) -> str:
    """Share of dates by provenance, each with its accuracy: "metadata 91% (0.94)"."""
    counts = Counter(source for _, source in results)
    hits = Counter(source for hit, source in results if hit)
    order = ["feed", "metadata", "url", "text"]
    names = [*order, *sorted(str(s) for s in counts if s not in order and s is not None)]
    parts = [
        f"{name} {counts[name] / len(results):.1%} ({hits[name] / counts[name]:.3f})"
        for name in names
        if counts[name]
    ]
    return ", ".join([*parts, f"no date {counts[None] / len(results):.1%}"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--limit", type=int, default=0, help="pages per set (0: all)")
    args = parser.parse_args(argv)

    truth: dict[str, Any] = json.loads((args.corpus / "extraction/groundtruth.json").read_text())
    pages = sorted(truth.items())[: args.limit or None]
    dates: dict[str, Any] = json.loads((args.corpus / "dates/groundtruth.json").read_text())
    dated = [
        (url, item)
        for url, item in sorted(dates.items())
        if isinstance(item.get("date"), str)
        and not (isinstance(item["date"], float) and math.isnan(item["date"]))
    ][: args.limit or None]

    print(f"extraction set: {len(pages)} pages; dates set: {len(dated)} pages with a known day")
    print(
        f"{'extractor':<22} {'precision':>9} {'recall':>7} {'F1':>6} {'pages/s':>8} "
        f"{'date accuracy':>14}"
    )
    sources: dict[str, str] = {}
    for name in EXTRACTORS:
        # A pool per extractor: importing newsagg's extraction speeds up trafilatura in its
        # process (workers/xpaths.py), and the baseline is trafilatura as it ships.
        with ProcessPoolExecutor(args.processes) as pool:
            text_jobs = [
                (
                    name,
                    str(args.corpus / "extraction" / item["file"]),
                    page_url(url),
                    item.get("with") or [],
                    item.get("without") or [],
                )
                for url, item in pages
            ]
            total = Score()
            seconds = 0.0
            for score, elapsed in pool.map(score_text, text_jobs, chunksize=8):
                total.add(score)
                seconds += elapsed
            date_jobs = [
                (name, str(args.corpus / "dates" / item["file"]), page_url(url), item["date"])
                for url, item in dated
            ]
            results = list(pool.map(score_date, date_jobs, chunksize=8))
            hits = sum(hit for hit, _ in results)
            print(
                f"{name:<22} {total.precision:>9.3f} {total.recall:>7.3f} {total.f1:>6.3f} "
                f"{len(pages) / seconds:>8.1f} {hits / len(dated):>14.3f}"
            )
            if any(source for _, source in results):
                sources[name] = format_sources(results)
    for name, line in sources.items():
        print(f"dates by source, {name} (share, accuracy): {line}")
    print("pages/s is per process (CPU time of the extraction call alone).")
    print("targets (issue 8): date accuracy >= 0.92; stored text F1 >= trafilatura default F1")


if __name__ == "__main__":
    main()
