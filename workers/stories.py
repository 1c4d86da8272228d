"""Stories: grouping different articles about the same event (the "related articles" box).

An article's *story terms* are the salient words of its headline and lead (stop words out,
words truncated to a prefix so inflections meet, headline and capitalised words weighted
up). The store finds candidate articles that share a term, among articles first seen within
the story window only (an index on (term, seen_at), each term's look-up capped), and
`score_story` scores each candidate; the new article joins the story of the best candidate
at or above STORY_MIN, else it opens a story of its own. Duplicates never come here: they
join their original's story.

The score is an IDF-weighted overlap of the two term sets. Document frequencies come from
the same capped window look-up, so a term that half the window shares (a weekday, "police")
weighs little, and no corpus-wide statistics table has to be kept. Parameters were chosen
on tests/eval (`python -m benchmarks.dedup --sweep`): across different articles, a bar of
0.4 gives precision 1.0 / recall 0.83, 0.35 1.0 / 0.90, 0.3 0.99 / 0.94, 0.25 0.85 / 0.96,
0.2 0.39 / 0.99 (single-link chaining into big stories); 0.35 keeps a margin below the
precision cliff because the set's related reports are derived from their base article and
so are easier than real ones (see the README for what the set proves). The minimum of
shared terms (2-4) made no difference on the set; 3 guards very short texts.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

import justext

from workers.dedup import normalise_text

# How many terms an article is indexed and compared by.
MAX_TERMS = 16
# Words of body text that count as the lead.
LEAD_WORDS = 80
# Terms are cut to this many characters: a crude stemmer that makes "Waffenrecht" and
# "Waffenrechts", "election" and "elections" one term, across languages.
PREFIX = 7
MIN_TERM_CHARS = 3
TITLE_WEIGHT = 3.0
CAPITALISED_WEIGHT = 1.5
# A term look-up reads at most this many window postings; a term with more is treated as
# too common to tell stories apart (and contributes the minimum weight).
TERM_POSTINGS_CAP = 200
# Join a candidate's story when the score reaches this and at least SHARED_TERMS_MIN terms
# are shared.
STORY_MIN = 0.35
SHARED_TERMS_MIN = 3

_TOKEN = re.compile(r"[^\W\d_][\w'’-]*", re.UNICODE)
_SPLIT = re.compile(r"[\W_]+", re.UNICODE)
_SENTENCE_END = re.compile(r"[.!?:\n]")

# ISO 639-1 → the name of jusText's stop list (jusText ships with trafilatura).
_STOPLIST_NAMES = {
    "af": "Afrikaans", "ar": "Arabic", "bg": "Bulgarian", "ca": "Catalan", "cs": "Czech",
    "da": "Danish", "de": "German", "el": "Greek", "en": "English", "es": "Spanish",
    "et": "Estonian", "eu": "Basque", "fa": "Persian", "fi": "Finnish", "fr": "French",
    "gl": "Galician", "he": "Hebrew", "hi": "Hindi", "hr": "Croatian", "hu": "Hungarian",
    "id": "Indonesian", "it": "Italian", "ko": "Korean", "lt": "Lithuanian", "lv": "Latvian",
    "nl": "Dutch", "no": "Norwegian_Bokmal", "nb": "Norwegian_Bokmal", "pl": "Polish",
    "pt": "Portuguese", "ro": "Romanian", "ru": "Russian", "sk": "Slovak", "sl": "Slovenian",
    "sr": "Serbian", "sv": "Swedish", "tr": "Turkish", "uk": "Ukrainian", "ur": "Urdu",
    "vi": "Vietnamese",
}  # fmt: skip


@lru_cache(maxsize=64)
def stop_words(language: str | None) -> frozenset[str]:
    """jusText's stop list for an ISO 639-1 code, plus English's, normalised.

    English's is always added: declared page languages are often wrong, and English
    boilerplate words turn up in pages of every language.
    """
    name = _STOPLIST_NAMES.get((language or "en").lower()[:2], "English")
    names = {name, "English"}
    return frozenset(normalise_text(w) for n in names for w in justext.get_stoplist(n))


def story_terms(title: str | None, text: str, language: str | None) -> tuple[str, ...]:
    """The article's MAX_TERMS most salient terms, most salient first.

    >>> story_terms("Storm hits coast", "A storm hit the Devon coast on Monday.", "en")
    ('storm', 'coast', 'hits', 'devon', 'monday', 'hit')
    """
    stops = stop_words(language)
    weights: dict[str, float] = {}
    first_seen: dict[str, int] = {}

    def add(chunk: str, weight: float) -> None:
        previous_end = 0
        for match in _TOKEN.finditer(chunk):
            raw = match.group(0)
            # A capital at a sentence start says nothing; elsewhere it marks a name.
            sentence_start = previous_end == 0 or _SENTENCE_END.search(
                chunk, previous_end, match.start()
            )
            previous_end = match.end()
            boost = CAPITALISED_WEIGHT if raw[:1].isupper() and not sentence_start else 1.0
            for part in _SPLIT.split(normalise_text(raw)):
                if len(part) < MIN_TERM_CHARS or part in stops or part.isdigit():
                    continue
                term = part[:PREFIX]
                weights[term] = weights.get(term, 0.0) + weight * boost
                first_seen.setdefault(term, len(first_seen))

    if title:
        add(title, TITLE_WEIGHT)
    add(" ".join(text.split()[:LEAD_WORDS]), 1.0)
    ranked = sorted(weights, key=lambda t: (-weights[t], first_seen[t]))
    return tuple(ranked[:MAX_TERMS])


@dataclass(frozen=True, slots=True)
class StoryCandidate:
    """An article in the window that shares at least one term with the new one."""

    article_id: int
    story_id: int
    terms: tuple[str, ...]


def term_weight(postings: int) -> float:
    """IDF-like weight of a term from its (capped) number of window postings."""
    return math.log((TERM_POSTINGS_CAP + 1) / (min(postings, TERM_POSTINGS_CAP) + 1)) + 1.0


def score_story(
    terms: tuple[str, ...], candidate: tuple[str, ...], postings: dict[str, int]
) -> tuple[float, int]:
    """(score, shared terms): weighted overlap of two term sets, 0..1.

    Shared weight over the smaller set's weight, so a short headline-only article and a
    long report can still meet; a term not looked up (only the candidate has it) weighs as a
    rare one.
    """
    mine, theirs = set(terms), set(candidate)
    shared = mine & theirs
    if not shared:
        return 0.0, 0
    rare = term_weight(0)

    def weight(t: str) -> float:
        return term_weight(postings[t]) if t in postings else rare

    total_mine = sum(weight(t) for t in mine)
    total_theirs = sum(weight(t) for t in theirs)
    return sum(weight(t) for t in shared) / min(total_mine, total_theirs), len(shared)


def best_story(
    terms: tuple[str, ...], candidates: list[StoryCandidate], postings: dict[str, int]
) -> int | None:
    """The story to join (the best-scoring candidate's, at or above the bar), else None."""
    best: tuple[float, int, int] | None = None  # (score, -article_id, story_id)
    for candidate in candidates:
        score, shared = score_story(terms, candidate.terms, postings)
        if score < STORY_MIN or shared < SHARED_TERMS_MIN:
            continue
        # Ties go to the earliest article, so the choice does not depend on row order.
        key = (score, -candidate.article_id, candidate.story_id)
        if best is None or key[:2] > best[:2]:
            best = key
    return best[2] if best is not None else None
