"""The throughput limit's work: trafilatura as it ships, in processes that never import newsagg.

Importing newsagg's extraction (`workers.extract`, which any of `workers.store`,
`workers.pipeline` or `workers.tasks` imports) installs `workers.xpaths` into trafilatura
for the whole process: about 1.4 × faster. The limit is trafilatura's default, so it runs in
spawned processes (a fork of a process that has imported newsagg would inherit the
change), and every call checks that newsagg is not loaded.

    python -m benchmarks.limit --rounds 3 < urls.json    # ms of CPU per page, per round
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

_PAGES: list[tuple[str, bytes]] = []


def stock() -> None:
    if "workers.extract" in sys.modules:
        raise RuntimeError("newsagg's extraction is loaded here: this is not stock trafilatura")


def load(pages: list[tuple[str, bytes]]) -> None:
    """Pool initializer: the (url, body) pages the chunks index."""
    global _PAGES
    stock()
    _PAGES = pages


def extract_chunk(indices: list[int]) -> list[tuple[str, str]]:
    """trafilatura's default extraction with metadata of these pages: (url, body text)."""
    from trafilatura import bare_extraction

    stock()
    out = []
    for i in indices:
        url, body = _PAGES[i]
        doc: Any = bare_extraction(body, url=url, with_metadata=True)
        out.append((url, (doc.text or "") if doc is not None else ""))
    return out


def main() -> None:
    """Read the served URLs (JSON, in tests.newsweb's page order) on stdin; print the CPU
    ms per page of each round, after an untimed warm-up pass."""
    from tests.newsweb import build_web

    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--hosts", type=int, default=100)
    args = parser.parse_args()
    urls = json.load(sys.stdin)
    web = build_web(args.hosts)
    load([(url, page.body) for url, (_, page) in zip(urls, web.pages, strict=True)])
    indices = list(range(len(_PAGES)))
    extract_chunk(indices)
    rounds = []
    for _ in range(args.rounds):
        started = time.process_time()
        extract_chunk(indices)
        rounds.append((time.process_time() - started) * 1000 / len(indices))
    print(json.dumps(rounds))


if __name__ == "__main__":
    main()
