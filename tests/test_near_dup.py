"""Near-duplicates and stories: the pure functions, the store on a real PostgreSQL, races.

Texts are real articles from the labelled set (tests/eval), transformed here the way wire
copies are.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import psycopg
import pytest

from benchmarks.dedup import score, store_all
from tests.eval.build_eval_set import load
from workers import dedup, store, stories
from workers.extract import Article

Conn = psycopg.Connection[Any]


@cache
def eval_records() -> list[dict[str, Any]]:
    return load()


def base_texts(count: int, min_words: int = 250) -> list[dict[str, Any]]:
    """`count` different real articles (English first, they read best in a failure)."""
    bases = [
        r for r in eval_records() if r["kind"] == "base" and len(r["text"].split()) >= min_words
    ]
    bases.sort(key=lambda r: (r["language"] != "en", r["id"]))
    return bases[:count]


def article(url: str, text: str, title: str = "Storm hits the coast", **kw: Any) -> Article:
    fields: dict[str, Any] = {
        "url": url,
        "canonical_url": url,
        "title": title,
        "author": None,
        "published_at": None,
        "language": "en",
        "sitename": None,
        "description": None,
        "tags": (),
        "image_url": None,
        "text": text,
    }
    fields.update(kw)
    return Article(**fields)


def wire_copy(text: str, n: int = 0) -> str:
    """A syndicated copy: dateline, a changed word, a byline line and an update appended."""
    paragraphs = text.split("\n")
    paragraphs[0] = "LONDON (Reuters) - " + paragraphs[0]
    words = paragraphs[-1].split(" ")
    words[len(words) // 2] = f"changed{n}"
    paragraphs[-1] = " ".join(words)
    paragraphs.append("Reporting by Jane Doe; Editing by John Smith")
    paragraphs.append(f"UPDATE {n}: Officials said more information would follow later today.")
    return "\n".join(paragraphs)


def put(conn: Conn, a: Article, **kw: Any) -> tuple[int, store.Outcome]:
    with conn.transaction():
        return store.store_article(conn, a, None, **kw)


def row(conn: Conn, article_id: int) -> tuple[Any, ...]:
    found = conn.execute(
        "SELECT duplicate_of, duplicate_kind, story_id FROM articles WHERE id = %s", (article_id,)
    ).fetchone()
    assert found is not None
    return tuple(found)


# -- pure functions -------------------------------------------------------------------------


def test_shingles_ignore_case_spacing_and_punctuation() -> None:
    assert dedup.shingles("The storm, it HIT the coast on Monday!") == dedup.shingles(
        "the storm it hit the   coast on monday"
    )
    assert dedup.shingles("two words") == frozenset({"two words"})
    assert dedup.shingles("") == frozenset()


def test_signature_is_stable() -> None:
    """Stored band keys must not change under the same SIGNATURE_VERSION: if this fails
    after an upgrade (datasketch, numpy), bump SIGNATURE_VERSION and re-band."""
    text = " ".join(f"word{i}" for i in range(60))
    signature = dedup.text_signature(text, 50)
    assert len(signature.bands) == dedup.BANDS
    assert signature.bands[:3] == (
        -555395197242114602,
        628241324128216609,
        2301067733734052430,
    )


def test_short_texts_get_no_bands() -> None:
    short = " ".join(f"w{i}" for i in range(49))
    assert dedup.text_signature(short, 50).bands == ()
    assert dedup.text_signature(short + " w49", 50).bands != ()


def test_wire_copy_verifies_and_other_articles_do_not() -> None:
    one, two = base_texts(2)
    a, b = dedup.shingles(one["text"]), dedup.shingles(wire_copy(one["text"]))
    assert dedup.is_near_duplicate(dedup.similarity(a, b))
    assert not dedup.is_near_duplicate(dedup.similarity(a, dedup.shingles(two["text"])))


def test_shared_boilerplate_is_not_a_duplicate() -> None:
    one, two = base_texts(2, min_words=150)
    block = " ".join(
        f"Sign up for our newsletter number {i} and never miss a story again." for i in range(12)
    )
    a = dedup.shingles(one["text"] + "\n" + block)
    b = dedup.shingles(two["text"] + "\n" + block)
    assert not dedup.is_near_duplicate(dedup.similarity(a, b))


def test_story_terms_prefer_headline_and_names() -> None:
    terms = stories.story_terms(
        "Brexit vote delayed",
        "Members of Parliament in London voted on Saturday to delay the Brexit decision of "
        "Boris Johnson. The vote was 322 to 306.",
        "en",
    )
    assert terms[:2] == ("brexit", "vote")
    assert {"johnson", "boris", "parliam"} <= set(terms)
    assert "the" not in terms and "322" not in terms


def test_story_score_needs_shared_salient_terms() -> None:
    a = ("brexit", "johnson", "vote", "parliam", "delay")
    assert stories.best_story(a, [stories.StoryCandidate(1, 7, a)], {}) == 7
    unrelated = ("storm", "coast", "devon", "flood", "vote")
    assert stories.best_story(a, [stories.StoryCandidate(2, 8, unrelated)], {}) is None


# -- the store ----------------------------------------------------------------------------


def test_near_duplicates_link_to_the_earliest_original(conn: Conn) -> None:
    (base,) = base_texts(1)
    first, outcome = put(conn, article("https://a.example/1", base["text"]))
    assert outcome == "stored"
    copy_id, outcome = put(
        conn, article("https://b.example/2", wire_copy(base["text"], 1), title="UPDATE 1-Storm")
    )
    assert outcome == "duplicate"
    # a copy of the copy still points at the original, never at a duplicate
    copy2, _ = put(conn, article("https://c.example/3", wire_copy(wire_copy(base["text"], 2), 3)))
    story = row(conn, first)[2]
    assert row(conn, copy_id) == (first, "near", story)
    assert row(conn, copy2) == (first, "near", story)
    similarity = conn.execute(
        "SELECT duplicate_similarity FROM articles WHERE id = %s", (copy_id,)
    ).fetchone()
    assert similarity is not None and 0.5 < similarity[0] < 1
    assert conn.execute("SELECT count(*) FROM stories").fetchone() == (1,)


def test_exact_copy_is_marked_exact(conn: Conn) -> None:
    (base,) = base_texts(1)
    first, _ = put(conn, article("https://a.example/1", base["text"]))
    copy_id, _ = put(conn, article("https://b.example/1", base["text"].upper()))
    assert row(conn, copy_id)[:2] == (first, "exact")


def test_short_texts_never_match_as_near_duplicates(conn: Conn) -> None:
    text = " ".join(f"word{i}" for i in range(40))
    first, _ = put(conn, article("https://a.example/1", text))
    _, outcome = put(conn, article("https://b.example/1", text + " extra"))
    assert outcome == "stored"
    # an exact copy is still an exact copy
    assert put(conn, article("https://c.example/1", text))[1] == "duplicate"
    assert conn.execute("SELECT count(*) FROM article_bands").fetchone() == (0,)
    assert row(conn, first)[0] is None


def test_min_words_setting_is_honoured(conn: Conn) -> None:
    (base,) = base_texts(1)
    put(conn, article("https://a.example/1", base["text"]), near_dup_min_words=100_000)
    _, outcome = put(
        conn, article("https://b.example/1", wire_copy(base["text"])), near_dup_min_words=100_000
    )
    assert outcome == "stored"


def test_matching_looks_only_within_the_window(conn: Conn) -> None:
    (base,) = base_texts(1)
    old = datetime.now(UTC) - timedelta(days=10)
    put(conn, article("https://a.example/1", base["text"], published_at=old))
    _, outcome = put(conn, article("https://b.example/1", wire_copy(base["text"])))
    assert outcome == "stored"
    # with a longer window the same copy is found
    _, outcome = put(
        conn, article("https://c.example/1", wire_copy(base["text"], 2)), story_window_days=30
    )
    assert outcome == "duplicate"


def test_updated_article_is_never_its_own_duplicate(conn: Conn) -> None:
    (base,) = base_texts(1)
    original = article("https://a.example/1", base["text"])
    article_id, _ = put(conn, original)
    changed = replace(original, text=wire_copy(base["text"], 1))
    assert put(conn, changed) == (article_id, "updated")
    assert row(conn, article_id)[:2] == (None, None)
    revisions = conn.execute("SELECT revision, text FROM article_revisions").fetchall()
    assert revisions == [(0, base["text"])]
    bands = conn.execute(
        "SELECT count(*) FROM article_bands WHERE article_id = %s", (article_id,)
    ).fetchone()
    assert bands is not None and 0 < bands[0] <= dedup.BANDS
    # the new bands are live: another copy of the new text finds the article
    copy_id, outcome = put(conn, article("https://b.example/1", wire_copy(changed.text, 2)))
    assert outcome == "duplicate" and row(conn, copy_id)[0] == article_id


def test_updated_duplicate_that_no_longer_matches_becomes_original(conn: Conn) -> None:
    one, two = base_texts(2)
    first, _ = put(conn, article("https://a.example/1", one["text"]))
    copy = article("https://b.example/1", wire_copy(one["text"]))
    copy_id, _ = put(conn, copy)
    story = row(conn, first)[2]
    assert row(conn, copy_id) == (first, "near", story)
    assert put(conn, replace(copy, text=two["text"])) == (copy_id, "updated")
    assert row(conn, copy_id) == (None, None, story)


def test_related_articles_share_a_story(conn: Conn) -> None:
    report = (
        "Members of Parliament in London voted on Saturday to delay a decision on Boris "
        "Johnson's Brexit deal until the legislation implementing it has passed. The "
        "government must now ask the European Union for an extension of the deadline."
    )
    other = (
        "Boris Johnson sent a letter to Brussels asking for a Brexit extension after "
        "Parliament delayed its vote on the deal, but the prime minister said he did not "
        "want one. European Union leaders will discuss the request next week in Brussels."
    )
    first, _ = put(
        conn, article("https://a.example/1", report, title="Parliament delays Brexit vote")
    )
    second, outcome = put(
        conn, article("https://b.example/1", other, title="Johnson asks EU for Brexit delay")
    )
    assert outcome == "stored"
    assert row(conn, second) == (None, None, row(conn, first)[2])
    weather = "A storm hit the Devon coast on Monday, flooding streets in Exeter and Plymouth."
    third, _ = put(conn, article("https://c.example/1", weather, title="Storm floods Devon"))
    assert row(conn, third)[2] != row(conn, first)[2]
    stories_rows = conn.execute(
        "SELECT title, first_seen_at <= last_seen_at FROM stories ORDER BY id"
    ).fetchall()
    assert stories_rows == [("Parliament delays Brexit vote", True), ("Storm floods Devon", True)]


def test_candidate_lookups_are_indexed(conn: Conn) -> None:
    """The band and term look-ups are index range scans on (key, event_at)."""
    conn.execute("SET enable_seqscan = off")
    plan = conn.execute(
        "EXPLAIN SELECT article_id FROM article_bands WHERE band_key = ANY(%s::bigint[]) "
        "AND event_at BETWEEN now() - interval '3 days' AND now() + interval '3 days'",
        ([1, 2, 3],),
    ).fetchall()
    assert "article_bands_pkey" in " ".join(r[0] for r in plan)
    plan = conn.execute(
        "EXPLAIN SELECT article_id FROM article_terms WHERE term = 'brexit' "
        "AND event_at BETWEEN now() - interval '3 days' AND now() + interval '3 days'"
    ).fetchall()
    assert "article_terms_pkey" in " ".join(r[0] for r in plan)


# -- races --------------------------------------------------------------------------------


def _race(database: str, articles: list[Article]) -> list[store.Outcome]:
    barrier = threading.Barrier(len(articles))
    outcomes: list[store.Outcome] = []
    errors: list[BaseException] = []

    def insert(a: Article) -> None:
        try:
            with psycopg.connect(database, autocommit=True) as c:
                fingerprint = store.fingerprint_article(a)
                barrier.wait()
                with c.transaction():
                    outcomes.append(store.store_article(c, a, None, fingerprint=fingerprint)[1])
        except BaseException as exc:  # a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=insert, args=(a,)) for a in articles]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return outcomes


@pytest.mark.parametrize("attempt", range(3))
def test_concurrent_near_duplicates_make_one_original(
    database: str, conn: Conn, attempt: int
) -> None:
    (base,) = base_texts(1)
    copies = [
        article(f"https://site{i}.example/wire", wire_copy(base["text"], i), title=f"Take {i}")
        for i in range(6)
    ]
    outcomes = _race(database, copies)
    assert sorted(outcomes) == ["duplicate"] * 5 + ["stored"]
    rows = conn.execute("SELECT id, duplicate_of, story_id FROM articles").fetchall()
    originals = [r[0] for r in rows if r[1] is None]
    assert len(originals) == 1
    assert all(r[1] in (None, originals[0]) for r in rows)
    assert len({r[2] for r in rows}) == 1


def test_concurrent_related_articles_meet_in_one_story(database: str, conn: Conn) -> None:
    angles = [
        "Opposition leaders welcomed the result and called for a second referendum soon.",
        "Markets reacted calmly, with the pound barely moving against the dollar on Monday.",
        "In Brussels, diplomats said an extension was likely but not before next week.",
        "Northern Ireland's unionists, who oppose the customs plan, voted with the rebels.",
    ]
    reports = [
        article(
            f"https://outlet{i}.example/brexit",
            "Parliament in London voted on Saturday to delay a decision on Boris Johnson's "
            f"Brexit deal. {angle}",
            title=f"Brexit vote delayed, Johnson defeated ({i})",
        )
        for i, angle in enumerate(angles)
    ]
    _race(database, reports)
    assert conn.execute("SELECT count(DISTINCT story_id) FROM articles").fetchone() == (1,)


# -- the labelled set -----------------------------------------------------------------------


def test_labelled_set_meets_targets(conn: Conn) -> None:
    """The whole labelled set (tests/eval) through the store, scored as the benchmark does.

    The timing runs are `python -m benchmarks.dedup`.
    """
    records = eval_records()
    rows, _, _ = store_all(conn, records)
    s = score(records, rows)
    assert s.url_variants[0] == s.url_variants[1]
    assert s.dup_precision >= 0.99 and s.dup_recall >= 0.95, s
    assert s.hard_negative_errors == 0, s
    assert s.story_cross[0] >= 0.95 and s.story_cross[1] >= 0.8, s
