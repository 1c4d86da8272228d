"""Deduplication: URL canonicalisation, content fingerprints and near-duplicate signatures.

Three layers keep one article from becoming several originals:
- the URL: `canonicalise_url` folds the variants one article is linked by (tracking
  parameters, fragments, host case, default ports) into one key;
- the text: `content_hash` gives equal texts an equal key, so the same text at another URL
  is stored as a duplicate of the earliest copy;
- near-duplicates: `text_signature` gives a body's word shingles and MinHash LSH band keys.
  The store looks the keys up (an index, within the story window), then checks every
  candidate on the exact shingle sets (`similarity`, `is_near_duplicate`): a syndicated
  wire copy with an added dateline, byline, update paragraph, a trimmed end or a few
  changed words is linked to the earliest copy; a different article is not.

Why these parameters (measured on tests/eval with `python -m benchmarks.dedup --sweep`;
numbers in the README, "Deduplication and stories"):
- MinHash rather than SimHash: Jaccard on shingles falls in proportion to the edit, and
  64-bit SimHash is reported much weaker on reprinted news (text-dedup's NEWS-COPY runs).
- Real syndication edits more than the field notes assumed: the corpus holds two real
  syndicated pairs (an EFE wire story on two Chilean sites, a press release reworded into
  reported speech) at Jaccard 0.40 / 0.51 and containment 0.64 / 0.72, and the synthetic
  copies' 5th percentile of containment to their original is about 0.78. The notes'
  rule (Jaccard >= 0.8 or containment >= 0.9) finds only 84 % of the copies. The rule here
  (Jaccard >= 0.5, or containment >= 0.6 with Jaccard >= 0.2 and 40 shared shingles) finds
  all of them with no false link; the closest different-article pairs are at containment 0.39
  (two pages of one site sharing boilerplate) and 0.36 (a long newsletter block appended
  to different articles).
- LSH 42 bands × 3 rows (126 of the 128 values): a pair at Jaccard 0.4 is a candidate 94 %
  of the time, at 0.3 67 %, at 0.1 4 %; 20 × 6 (the notes' choice, tuned for J >= 0.8)
  misses copies at J 0.4-0.6 and reaches 94 % recall, 32 × 4 99.3 %, 42 × 3 100 %. Extra
  candidates are cheap: each is verified exactly, at most MAX_NEAR_DUP_CANDIDATES per
  article.
- Band keys and candidates are limited to the story window, so the look-up reads the
  window's rows only: its cost does not grow with the table.
"""

from __future__ import annotations

import hashlib
import re
import struct
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urljoin, urlsplit

from courlan import normalize_url
from datasketch import MinHash


class InvalidURL(ValueError):
    """Not an absolute http(s) URL."""


def canonicalise_url(url: str, base: str | None = None) -> str:
    """Fold the variants of one URL into one key.

    Tracking parameters (utm_*, fbclid, gclid, …, courlan's list) and the fragment are
    dropped, scheme and host lower-cased, default ports removed, remaining query parameters
    sorted. Other parameters are kept: on many sites (``?storyId=123``) they *are* the article.

    >>> canonicalise_url("HTTPS://News.Example.com:443/a/b?utm_source=rss&id=5#top")
    'https://news.example.com/a/b?id=5'
    """
    url = url.strip()
    if base:
        url = urljoin(base, url)
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise InvalidURL(f"not an absolute http(s) URL: {url[:200]!r}")
    try:
        normalised = normalize_url(parts._replace(fragment=""), strict=False)
    except ValueError as exc:
        raise InvalidURL(f"cannot normalise URL {url[:200]!r}: {exc}") from None
    # courlan keeps a normalised fragment in non-strict mode; a fragment never names
    # another article.
    return str(normalised).split("#", 1)[0]


def same_site(url_a: str, url_b: str) -> bool:
    """True when both URLs are on the same registrable site (www. and subdomains folded).

    Used to decide whether a page's rel=canonical may be trusted: a page may say which of
    its own URLs is canonical, but must not claim another site's article.
    """
    host_a = (urlsplit(url_a).hostname or "").removeprefix("www.")
    host_b = (urlsplit(url_b).hostname or "").removeprefix("www.")
    if not host_a or not host_b:
        return False
    return host_a == host_b or host_a.endswith("." + host_b) or host_b.endswith("." + host_a)


def _folded(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def normalise_text(text: str) -> str:
    """The form texts are compared in: NFKC, case-folded, whitespace collapsed."""
    # str.split() splits on the characters \s matches and drops the ends: the same as
    # collapsing with a regex and stripping, at a third of the cost.
    return " ".join(_folded(text).split())


def content_hash(text: str) -> str:
    """SHA-256 (hex) of the normalised text: equal for texts that differ only in case or spacing."""
    return hashlib.sha256(normalise_text(text).encode("utf-8")).hexdigest()


# -- near-duplicates ------------------------------------------------------------------------
#
# - shingles: word 5-grams of the normalised body text (a first line repeating the headline
#   dropped, so an edited headline changes nothing), split on non-word characters as
#   text-dedup does;
# - MinHash: datasketch, 128 permutations, scheme "affine32", seed 1;
# - LSH: BANDS bands of ROWS values; a band's key is a 64-bit hash of (version, band number,
#   its values), so one indexed column holds every band;
# - verification on the exact shingle sets, never on the estimate.

SHINGLE_WORDS = 5
NUM_PERM = 128
BANDS = 42
ROWS = 3
MINHASH_SEED = 1
# Mixed into every band key: changing the library, the scheme or any parameter above makes
# stored keys meaningless, so bump this and re-band (old keys then simply never match).
SIGNATURE_VERSION = 1
# A pair is a near-duplicate when the exact Jaccard similarity of the shingle sets reaches
# JACCARD_MIN, or when the smaller set is contained in the larger to CONTAINMENT_MIN (a copy
# trimmed at the end, or with an update appended) and they share at least SHARED_MIN
# shingles, so a short text never matches on a few sentences.
JACCARD_MIN = 0.5
CONTAINMENT_MIN = 0.6
CONTAINMENT_JACCARD_MIN = 0.2
SHARED_MIN = 40

_NON_WORD = re.compile(r"\W+")


def words(text: str) -> list[str]:
    """The comparison tokens of a text: normalised, split on anything not a word character."""
    # Whitespace is never a word character: the split collapses it, no need to first.
    return [w for w in _NON_WORD.split(_folded(text)) if w]


def shingles(
    text: str, size: int = SHINGLE_WORDS, tokens: list[str] | None = None
) -> frozenset[str]:
    """The set of word `size`-grams of the normalised text (one shingle for a shorter text);
    `tokens`: its words(), when already split."""
    tokens = words(text) if tokens is None else tokens
    if len(tokens) <= size:
        return frozenset([" ".join(tokens)]) if tokens else frozenset()
    return frozenset(" ".join(tokens[i : i + size]) for i in range(len(tokens) - size + 1))


@dataclass(frozen=True, slots=True)
class TextSignature:
    """What near-duplicate matching needs of a text, computed once outside any transaction.

    `bands` is empty for a text shorter than the minimum: it is never looked up and never
    found, so short texts match only as exact copies.
    """

    word_count: int
    shingles: frozenset[str]
    bands: tuple[int, ...]


@lru_cache(maxsize=1)
def _permutations() -> Any:
    return MinHash(num_perm=NUM_PERM, seed=MINHASH_SEED, scheme="affine32").permutations


def minhash(shingle_set: frozenset[str]) -> Any:
    """The datasketch MinHash of a shingle set (hash values in a uint32 numpy array)."""
    sketch = MinHash(
        num_perm=NUM_PERM, seed=MINHASH_SEED, scheme="affine32", permutations=_permutations()
    )
    # The minimum of each permutation does not depend on the order the shingles come in.
    sketch.update_batch([s.encode("utf-8") for s in shingle_set])
    return sketch


def band_keys(hashvalues: Any, bands: int = BANDS, rows: int = ROWS) -> tuple[int, ...]:
    """One signed 64-bit key per LSH band: a hash of (version, band number, the band's values)."""
    keys = []
    for band in range(bands):
        chunk = hashvalues[band * rows : (band + 1) * rows].astype("<u4").tobytes()
        digest = hashlib.blake2b(
            struct.pack("<HH", SIGNATURE_VERSION, band) + chunk, digest_size=8
        ).digest()
        keys.append(int.from_bytes(digest, "little", signed=True))
    return tuple(keys)


def body_text(title: str | None, text: str) -> str:
    r"""The text without a first line that repeats the headline (trafilatura often keeps the
    <h1>), so an edited headline does not change the comparison.

    >>> body_text("Storm hits coast", "Storm hits coast\nA storm hit the coast.")
    'A storm hit the coast.'
    """
    first, _, rest = text.partition("\n")
    if title and rest and normalise_text(first) == normalise_text(title):
        return rest
    return text


def text_signature(text: str, min_words: int) -> TextSignature:
    """Shingles and LSH band keys of an article body (no bands below min_words words)."""
    tokens = words(text)
    count = len(tokens)
    shingle_set = shingles(text, tokens=tokens)
    if count < min_words or not shingle_set:
        return TextSignature(count, shingle_set, ())
    return TextSignature(count, shingle_set, band_keys(minhash(shingle_set).hashvalues))


@dataclass(frozen=True, slots=True)
class Similarity:
    jaccard: float
    containment: float
    shared: int


def similarity(a: frozenset[str], b: frozenset[str]) -> Similarity:
    """Exact Jaccard and containment (|A∩B| / min(|A|, |B|)) of two shingle sets."""
    if not a or not b:
        return Similarity(0.0, 0.0, 0)
    shared = len(a & b)
    return Similarity(shared / (len(a) + len(b) - shared), shared / min(len(a), len(b)), shared)


def is_near_duplicate(sim: Similarity) -> bool:
    """The verification rule applied to every LSH candidate (thresholds above)."""
    return sim.jaccard >= JACCARD_MIN or (
        sim.containment >= CONTAINMENT_MIN
        and sim.jaccard >= CONTAINMENT_JACCARD_MIN
        and sim.shared >= SHARED_MIN
    )
