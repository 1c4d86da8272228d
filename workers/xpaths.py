"""trafilatura's XPath expressions, recompiled to give the same elements for less work.

trafilatura (2.3.1) tests ids and classes with EXSLT's `re:test`, a call from libxml2 back
into Python for every element the predicate reaches: about a microsecond each, a quarter of
the time of those expressions, on pages of ~900 elements. Two changes leave each result as
it was (tests/test_xpaths.py compares every expression on the corpus, element for element):

- `contains(@class, 'author') and re:test(@class, 'author|^byl')`-style guards: libxml2 asks
  for the call back only when the attribute holds a substring every match of the pattern
  holds (read from the pattern's parse; at most two substrings, past which the `contains`
  tests cost more than the call), else only when the attribute is there (the test of an
  absent attribute is a test of "", which none of these patterns matches; a pattern that
  does is left alone);
- `smart_strings=False`: the attribute values handed to `re:test` are plain strings instead
  of strings that know their parent element, which lxml builds for each call (the
  expressions return elements, which this does not change).

Its author search (trafilatura.metadata.extract_author, run on every page whose meta tags
name no author) copies the whole tree and deletes from the copy what its discard expressions
select (comments, sidebars, <time>, <figure>…) before looking for a byline, two more walks of
the whole document. `extract_author` below looks for the byline in the page as parsed and
asks the discard expressions only about each candidate's ancestors, and about its own
subtree, which it copies and prunes as trafilatura would when something in it is discarded
(tests/test_xpaths.py: the same author on every corpus page).

Its category and tag search runs ten expressions over the page, each ending in `//a[@href]`,
and keeps only the links whose href holds /category/, /tag/ or /tags/ (…): a page without
such a link anywhere (three in four) has neither, which one walk for such a link tells
(`extract_catstags`).

Its page measure before the recall retry (baseline.html2txt, on about half the pages)
deletes, with BASIC_CLEAN_XPATH, elements whose class or id names a cookie banner, a
case-insensitive `re:test` for every element with either: `basic_cleaning` below runs the
expression without that part when no class or id in the subtree holds a substring every
banner name holds (two pages in three), which one pass over those attributes tells.

Its pruning lists (RAW_TREE_PRUNE_XPATH, the comment, boilerplate, teaser, hidden and
caption expressions) are run on every page and on subtrees of it: each is replaced by a
`Walk`, one Python pass over the candidate tags testing the same attributes, which selects
the same elements in the same order (tests/test_xpaths.py, on corpus pages and on every
call during real extractions) for a third to a half of libxml2's time.

Measured on ../shared/corpus/extraction: together about a sixth of newsagg's extraction time
(README, "Performance").
"""

from __future__ import annotations

import importlib
import re
import re._constants as sre_constants  # type: ignore[import-not-found]
import re._parser as sre_parse  # type: ignore[import-not-found]
import sys
from copy import deepcopy
from types import ModuleType
from typing import Any

from lxml.etree import XPath
from lxml.html import HtmlElement
from trafilatura import metadata as trafilatura_metadata
from trafilatura import settings as trafilatura_settings
from trafilatura.htmlprocessing import prune_unwanted_nodes
from trafilatura.json_metadata import normalize_authors
from trafilatura.utils import line_processing, trim
from trafilatura.xml import delete_element
from trafilatura.xpaths import (
    AUTHOR_DISCARD_XPATHS,
    AUTHOR_XPATHS,
    CATEGORIES_XPATHS,
    TAGS_XPATHS,
)

_EXSLT_REGEXP = "http://exslt.org/regular-expressions"
# re:test(@id, 'pattern') or re:test(@id|@class, 'pattern', 'i'): attribute arguments only.
_RE_TEST = re.compile(
    r"re:test\((?P<attrs>@[\w:-]+(?:\s*\|\s*@[\w:-]+)*)\s*,\s*"
    r"'(?P<pattern>[^']*)'(?:\s*,\s*'(?P<flags>[^']*)')?\s*\)"
)


# Each `contains` reads the attribute again: past two, one call back into Python is cheaper
# (measured on the corpus: two cut the pruning expressions' time by a sixth, three or more
# gain less, and the cookie/banner alternations of forty substrings took three times longer).
MAX_SUBSTRING_TESTS = 2


def required_substrings(pattern: str, flags: int = 0) -> frozenset[str] | None:
    """Substrings of which every match of the pattern holds at least one, or None when the
    pattern does not tell (a match may be any string, or the case is ignored).

    >>> sorted(required_substrings("^shar|bread-?crumb|dfp[Aa]d|(?:^| )ad-"))
    ['ad-', 'bread', 'dfp', 'shar']
    >>> sorted(required_substrings("[Cc]omment(?!ary)|comol"))
    ['comol', 'omment']
    >>> required_substrings("x|[0-9]+") is None
    True
    """
    try:
        parsed = sre_parse.parse(pattern, flags)
    except re.error:
        return None
    if parsed.state.flags & re.IGNORECASE:
        return None
    return _required(list(parsed))


def _required(items: list[tuple[Any, Any]]) -> frozenset[str] | None:
    """The best (longest shortest) substring set one item of the sequence requires."""
    best: frozenset[str] | None = None

    def consider(found: frozenset[str] | None) -> None:
        nonlocal best
        if found and (best is None or min(map(len, found)) > min(map(len, best))):
            best = found

    run: list[str] = []
    for op, arg in items:
        if op is sre_constants.LITERAL:
            run.append(chr(arg))
            continue
        consider(frozenset(["".join(run)]) if run else None)
        run = []
        if op is sre_constants.BRANCH:
            branches = [_required(list(branch)) for branch in arg[1]]
            if all(branches):
                consider(frozenset().union(*branches))  # type: ignore[arg-type]
        elif op is sre_constants.SUBPATTERN:
            if not arg[1] & re.IGNORECASE:  # (?i:…) matches its literals in any case
                consider(_required(list(arg[3])))
        elif op in (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT) and arg[0] >= 1:
            consider(_required(list(arg[2])))
    consider(frozenset(["".join(run)]) if run else None)
    return best


def guard_re_tests(path: str) -> str:
    """Put a cheaper test that each `re:test` passes only if it does before it.

    The test is on substrings every match holds (`contains`, in libxml2, no call back into
    Python), else on the attribute's presence. `contains(@id|@class, …)` reads the same
    attribute as `re:test(@id|@class, …)`: a node-set's first node. `and` binds tighter
    than `or` in XPath, so `a or re:test(...)` becomes `a or (g and re:test(...))` without
    parentheses; they are written anyway.

    >>> guard_re_tests("//*[@id='a' or re:test(@id, 'ab|c')]")
    "//*[@id='a' or ((contains(@id, 'ab') or contains(@id, 'c')) and re:test(@id, 'ab|c'))]"
    >>> guard_re_tests("//*[re:test(@id|@class, 'x', 'i')]")
    "//*[((@id or @class) and re:test(@id|@class, 'x', 'i'))]"
    >>> guard_re_tests("//*[re:test(@class, '^|x')]")
    "//*[re:test(@class, '^|x')]"
    """

    def guard(match: re.Match[str]) -> str:
        flags = re.IGNORECASE if "i" in (match["flags"] or "") else 0
        if re.search(match["pattern"], "", flags):
            return match[0]
        attrs = [name.strip() for name in match["attrs"].split("|")]
        needed = required_substrings(match["pattern"], flags)
        if needed and len(needed) <= MAX_SUBSTRING_TESTS and all("'" not in p for p in needed):
            argument = "|".join(attrs)
            tests = [f"contains({argument}, '{part}')" for part in sorted(needed)]
            present = tests[0] if len(tests) == 1 else "(" + " or ".join(tests) + ")"
        else:
            present = attrs[0] if len(attrs) == 1 else "(" + " or ".join(attrs) + ")"
        return f"({present} and {match[0]})"

    return _RE_TEST.sub(guard, path)


def _compile(path: str) -> XPath:
    """An expression with trafilatura's `re` namespace, without smart strings."""
    return XPath(path, namespaces={"re": _EXSLT_REGEXP}, smart_strings=False)


def faster(expression: XPath) -> XPath:
    """The same expression, guarded and without smart strings."""
    return _compile(guard_re_tests(expression.path))


# trafilatura's discard expressions, as they stand in 2.3.1: the first selects descendants of
# the root by their own tag and attributes, the second every <time> and <figure>.
_DISCARD_DESCENDANTS = ".//*"
_DISCARD_TIME_FIGURE = "//time|//figure"


class _CandidateDiscards:
    """trafilatura's author discards, asked of one candidate instead of the whole tree."""

    def __init__(self, by_attributes: str) -> None:
        predicates = guard_re_tests(by_attributes.strip()[len(_DISCARD_DESCENDANTS) :])
        # The root is not a descendant of itself: `[parent::*]` leaves it out, as `.//*` does.
        self.within = _compile(
            f"boolean(ancestor-or-self::*[parent::*]{predicates}"
            " | ancestor-or-self::time | ancestor-or-self::figure)"
        )
        self.inside = _compile(f"boolean(.//*{predicates} | .//time | .//figure)")
        self.prune = [_compile(f".//*{predicates}"), _compile(".//time|.//figure")]

    def content(self, candidate: HtmlElement) -> str | None:
        """The candidate's text as trafilatura reads it in its pruned copy of the tree (None:
        the candidate is pruned)."""
        if self.within(candidate):
            return None
        if self.inside(candidate):
            # delete_element moves a tail onto its neighbour, which changes the spacing of
            # the joined text: the same deletions, on a copy of this subtree only.
            candidate = prune_unwanted_nodes(deepcopy(candidate), self.prune)
        return trim(" ".join(candidate.itertext()))


def _candidate_discards() -> _CandidateDiscards | None:
    """None when trafilatura's discard expressions are not the ones this was written for."""
    first, second = (expression.path.strip() for expression in AUTHOR_DISCARD_XPATHS)
    if not first.startswith(_DISCARD_DESCENDANTS + "[") or second != _DISCARD_TIME_FIGURE:
        return None
    return _CandidateDiscards(first)


_DISCARDS = _candidate_discards()


# trafilatura 2.3.1's three byline expressions (whitespace collapsed), which bylines() below
# evaluates in one walk of the page in Python, about three times faster than libxml2 with
# its callbacks; any other expressions are evaluated as they are.
_BYLINE_PATHS = [
    "//*[self::a or self::address or self::div or self::link or self::p or self::span or "
    "self::strong][ @rel='author' or @id='author' or @class='author' or @itemprop='author name' "
    "or rel='me' or @data-testid='AuthorCard' or @data-testid='AuthorURL' or "
    "re:test(@class, 'author-?name|AuthorName|authorName')]|//author",
    "//*[self::a or self::div or self::h3 or self::h4 or self::p or self::span][ "
    "@class='byline' or @class='username' or @class='byl' or @class='BBL' or "
    "contains(@itemprop, 'author') or re:test(@id, 'author|zuozhe|bianji|xiaobian') or "
    "re:test(@class, 'author|channel-name|zuozhe|bianji|xiaobian|submitted-by|posted-by|"
    "journalist-name')]",
    "//*[ contains(@data-component, 'Byline') or contains(@itemprop, 'author') or "
    "re:test(@id, '[Aa]uthor') or re:test(@class, '[Aa]uthor|screenname|writer|[Bb]yline')]",
]
_PYTHON_BYLINES = [" ".join(e.path.split()) for e in AUTHOR_XPATHS] == _BYLINE_PATHS
_FIRST_TAGS = frozenset({"a", "address", "div", "link", "p", "span", "strong"})
_FIRST_CLASS = re.compile("author-?name|AuthorName|authorName")
_SECOND_TAGS = frozenset({"a", "div", "h3", "h4", "p", "span"})
_SECOND_CLASSES = frozenset({"byline", "username", "byl", "BBL"})
_SECOND_ID = re.compile("author|zuozhe|bianji|xiaobian")
_SECOND_CLASS = re.compile(
    "author|channel-name|zuozhe|bianji|xiaobian|submitted-by|posted-by|journalist-name"
)
_THIRD_ID = re.compile("[Aa]uthor")
_THIRD_CLASS = re.compile("[Aa]uthor|screenname|writer|[Bb]yline")


def bylines(tree: HtmlElement) -> list[list[HtmlElement]]:
    """What each of the _BYLINE_PATHS selects, in document order (tests/test_xpaths.py).

    XPath's attribute tests read an absent attribute as "", which none of the patterns and
    substrings here matches; `rel='me'` is a child element <rel> whose text is "me".
    """
    first: list[HtmlElement] = []
    second: list[HtmlElement] = []
    third: list[HtmlElement] = []
    # `//` starts from the document, whichever element of it the expression is given.
    root = tree.getroottree().getroot()
    with_rel_me = {rel.getparent() for rel in root.iter("rel") if "".join(rel.itertext()) == "me"}
    for element in root.iter("*"):
        get = element.get
        tag = element.tag
        css, ident, itemprop = get("class") or "", get("id") or "", get("itemprop") or ""
        if tag == "author" or (
            tag in _FIRST_TAGS
            and (
                css == "author"
                or ident == "author"
                or itemprop == "author name"
                or get("rel") == "author"
                or get("data-testid") in ("AuthorCard", "AuthorURL")
                or (css and _FIRST_CLASS.search(css))
                or element in with_rel_me
            )
        ):
            first.append(element)
        if tag in _SECOND_TAGS and (
            css in _SECOND_CLASSES
            or "author" in itemprop
            or (ident and _SECOND_ID.search(ident))
            or (css and _SECOND_CLASS.search(css))
        ):
            second.append(element)
        if (
            "author" in itemprop
            or (ident and _THIRD_ID.search(ident))
            or (css and _THIRD_CLASS.search(css))
            or "Byline" in (get("data-component") or "")
        ):
            third.append(element)
    return [first, second, third]


def extract_author(tree: HtmlElement) -> str | None:
    """trafilatura.metadata.extract_author, without copying and pruning the whole tree.

    Its byline expressions select by each element's own tag and attributes, so an element
    is a candidate in the pruned copy exactly when it is one in the page and neither it nor an
    ancestor is pruned; the candidates come in the same order.
    """
    if (
        _DISCARDS is None
        or tree.getparent() is not None
        or next(tree.iter("rel"), None) is not None
    ):
        # trafilatura's copy of a subtree is a document of its own (`//` stays inside it),
        # and the text of a <rel> child is read after pruning: both left to trafilatura.
        return _TRAFILATURA_EXTRACT_AUTHOR(tree)
    candidates = bylines(tree) if _PYTHON_BYLINES else (e(tree) for e in AUTHOR_XPATHS)
    for selected in candidates:
        for candidate in selected:
            content = _DISCARDS.content(candidate)
            # extract_metainfo's test, with the length limit extract_author gives it.
            if content and 2 < len(content) < 120:
                return normalize_authors(None, content)
    return None


_TRAFILATURA_EXTRACT_AUTHOR = trafilatura_metadata.extract_author
_TRAFILATURA_EXTRACT_CATSTAGS = trafilatura_metadata.extract_catstags
# trafilatura keeps a link when re.search("/" + metatype.rstrip("y") + "(?:y|ies|s)?/", href)
# finds something in its href, which needs this substring.
_LINK_PROBES = {
    metatype: XPath(f"boolean(//a[contains(@href, '/{metatype.rstrip('y')}')])")
    for metatype in ("category", "tag")
}
_CATEGORY_FALLBACK = (
    './/head//meta[@property="article:section" or contains(@name, "subject")][@content]'
)


def _links_only(expressions: list[XPath]) -> bool:
    return all(expression.path.strip().endswith("//a[@href]") for expression in expressions)


_PROBES_HOLD = _links_only(CATEGORIES_XPATHS) and _links_only(TAGS_XPATHS)


def extract_catstags(metatype: str, tree: HtmlElement) -> list[str]:
    """trafilatura.metadata.extract_catstags, its expressions run only when the page has a
    link they could keep; otherwise what it gives for none (for categories, the
    article:section meta tags)."""
    probe = _LINK_PROBES.get(metatype)
    if probe is None or not _PROBES_HOLD or probe(tree):
        return _TRAFILATURA_EXTRACT_CATSTAGS(metatype, tree)
    if metatype != "category":
        return []
    found = (element.attrib["content"] for element in tree.xpath(_CATEGORY_FALLBACK))
    return [r for r in dict.fromkeys(line_processing(x) for x in found if x) if r]


# BASIC_CLEAN_XPATH as trafilatura 2.3.1 writes it: tags, then one predicate testing class
# and id against its cookie-banner pattern, case ignored.
_BASIC_TAGS = (
    ".//aside|.//div[contains(@class|@id, 'footer')]|.//fencedframe|.//footer|.//script"
    "|.//style|.//svg|.//template"
)
_BANNERS = getattr(trafilatura_settings, "_COOKIE_CONSENT_RE", "")
_BASIC_CLEAN_PATH = (
    f"{_BASIC_TAGS}|.//*[re:test(@class, '{_BANNERS}', 'i') or re:test(@id, '{_BANNERS}', 'i')]"
)
# Characters other than A-Z that Python's re, ignoring case, takes for an ASCII letter
# (İ ı for i, ſ for s, the Kelvin sign for k): str.lower() does not turn them into it.
_FOLDS_TO_ASCII = ("\u0130", "\u0131", "\u017f", "\u212a")
_CLASS_AND_ID = XPath(".//@class|.//@id", smart_strings=False)
_WITHOUT_BANNERS = _compile(_BASIC_TAGS)


def _banner_needles() -> frozenset[str] | None:
    """Substrings (lower case) of which every match of the banner pattern holds one, ignoring
    case; None when BASIC_CLEAN_XPATH is not the expression this was written for."""
    stock = trafilatura_settings.BASIC_CLEAN_XPATH
    original = next((o for o, f in _INSTALLED.items() if f is stock), stock)
    if not _BANNERS or original.path != _BASIC_CLEAN_PATH or _BANNERS.lower() != _BANNERS:
        return None
    return required_substrings(_BANNERS)


def may_name_a_banner(tree: HtmlElement, needles: frozenset[str]) -> bool:
    """Whether some class or id in the subtree (the root's included) may match the banner
    pattern: it holds one of the needles, case ignored, or a character re folds to ASCII."""
    names = " ".join(_CLASS_AND_ID(tree)).lower()
    return any(needle in names for needle in needles) or any(c in names for c in _FOLDS_TO_ASCII)


def basic_cleaning(tree: HtmlElement) -> HtmlElement:
    """trafilatura.baseline.basic_cleaning: the same deletions, the banner test run only
    when some class or id may name a banner (module docstring)."""
    needles = _NEEDLES
    if needles is None or may_name_a_banner(tree, needles):
        expression = trafilatura_settings.BASIC_CLEAN_XPATH
    else:
        expression = _WITHOUT_BANNERS
    for element in expression(tree):
        delete_element(element)
    return tree


_NEEDLES: frozenset[str] | None = None


# -- pruning expressions as walks ----------------------------------------------------------
#
# trafilatura prunes every page with expressions of one form: descendants of some tags
# whose id, class or a few other attributes hold a substring or match a pattern. libxml2
# builds a node-set for each attribute test of each element (a guarded `re:test` too); the
# same tests in one Python walk of the candidate tags take a third to a half of the time
# (`Walk` below; tests/test_xpaths.py checks each against trafilatura's expression on the
# corpus pages and on the subtrees trafilatura hands them). Each walk is used only when the
# expression's text, its patterns aside, is the one it was written for.

_SELF_TAGS = re.compile(r"^\.//\*\[((?:self::[\w-]+(?: or )?)+)\]")


class Walk:
    """A walk giving what `original` (trafilatura's expression) selects, in document order."""

    def __init__(self, original: XPath, select: Any) -> None:
        self.original = original
        self.path = original.path
        self._select = select

    def __call__(self, tree: HtmlElement) -> list[HtmlElement]:
        result: list[HtmlElement] = self._select(tree)
        return result


def _first_of(element: HtmlElement, names: tuple[str, ...]) -> str:
    """`@a|@b` as a string: its first node in document order, the element's first of these
    attributes in its own order; "" when it has none."""
    for name, value in element.items():
        if name in names:
            return str(value)
    return ""


_ID_OR_CLASS = ("id", "class")
_ID_OR_STYLE = ("id", "style")


def _template(path: str) -> tuple[str, list[re.Pattern[str]]] | None:
    """The expression's text, whitespace collapsed, its `re:test` patterns replaced by `?`;
    and the patterns compiled as lxml compiles them. None when a pattern has flags or
    matches the empty string (the walks skip absent attributes: a test of "")."""
    patterns: list[re.Pattern[str]] = []

    def hole(match: re.Match[str]) -> str:
        patterns.append(re.compile(match["pattern"]))
        return match[0].replace(f"'{match['pattern']}'", "?", 1)

    text = _RE_TEST.sub(hole, " ".join(path.split()))
    if text.count("re:test(") != len(patterns) or any(p.search("") for p in patterns):
        return None
    if any(m["flags"] for m in _RE_TEST.finditer(path)):
        return None
    return text, patterns


def _tags(text: str) -> tuple[str, ...]:
    found = _SELF_TAGS.match(text)
    return tuple(t.removeprefix("self::") for t in found.group(1).split(" or ")) if found else ()


# RAW_TREE_PRUNE_XPATH: infinite-scroll containers (kept when they hold the <h1>).
_RAW_CONTAINERS = (
    ".//*[self::div or self::section or self::aside][ re:test(@id, ?) or re:test(@class, ?)]"
    "[ not(.//h1) or re:test(@id, ?) or re:test(@class, ?)]"
)


def _matched_twice(exempt: Any) -> Any:
    """A builder for the walk of elements whose id or class matches the first pair of
    patterns and, unless `exempt(element)`, the second pair too."""

    def build(tags: tuple[str, ...], p: list[re.Pattern[str]]) -> Any:
        id_a, class_a, id_b, class_b = (x.search for x in p)

        def select(tree: HtmlElement) -> list[HtmlElement]:
            found = []
            for element in tree.iterdescendants(*tags):
                ident, css = element.get("id") or "", element.get("class") or ""
                if (
                    (ident or css)
                    and (id_a(ident) or class_a(css))
                    and (exempt(element) or id_b(ident) or class_b(css))
                ):
                    found.append(element)
            return found

        return select

    return build


_raw_containers = _matched_twice(lambda e: next(e.iterdescendants("h1"), None) is None)


# RAW_TREE_PRUNE_XPATH's share buttons.
_SHARE_BUTTONS = (
    ".//*[self::div or self::section or self::aside][contains(@class, 'elementor-share-buttons')]"
)


def _share_buttons(tags: tuple[str, ...], _: list[re.Pattern[str]]) -> Any:
    def select(tree: HtmlElement) -> list[HtmlElement]:
        return [
            element
            for element in tree.iterdescendants(*tags)
            if "elementor-share-buttons" in (element.get("class") or "")
        ]

    return select


# REMOVE_COMMENTS_AND_LISTS_XPATH: comment sections (lists only by their own names).
_COMMENT_SECTIONS = (
    ".//*[self::div or self::list or self::section or self::details or self::ol or self::ul]"
    "[ re:test(@id, ?) or re:test(@class, ?)][ not(self::ol or self::ul) or re:test(@id, ?) "
    "or re:test(@class, ?)]"
)
_LIST_TAGS = frozenset({"ol", "ul"})


_comment_sections = _matched_twice(lambda e: e.tag not in _LIST_TAGS)


# OVERALL_DISCARD_XPATH, first: navigation, sharing, ads, related links… by id and class.
_BOILERPLATE = (
    ".//*[self::div or self::item or self::list or self::p or self::section or self::span][ "
    "@data-lp-replacement-content or contains(translate(@role, 'N', 'n'), 'nav') or "
    "contains(@data-component, 'MostPopularStories') or re:test(@id|@class, ?) or "
    "re:test(@id, ?) or re:test(@class, ?)]"
)


def _boilerplate(tags: tuple[str, ...], p: list[re.Pattern[str]]) -> Any:
    either, by_id, by_class = (x.search for x in p)

    def select(tree: HtmlElement) -> list[HtmlElement]:
        found = []
        for element in tree.iterdescendants(*tags):
            get = element.get
            ident, css = get("id"), get("class")
            if (
                (ident and by_id(ident))
                or (css and by_class(css))
                or get("data-lp-replacement-content") is not None
                or "nav" in (get("role") or "").replace("N", "n")
                or "MostPopularStories" in (get("data-component") or "")
                or ((ident or css) and either(_first_of(element, _ID_OR_CLASS)))
            ):
                found.append(element)
        return found

    return select


# OVERALL_DISCARD_XPATH, second: hidden elements and comment furniture, any tag.
_HIDDEN = (
    ".//*[@class='comments-title' or starts-with(@id|@class, 'reply-') or "
    "re:test(@id|@style, ?) or contains(@style, 'display:none') or "
    "contains(@style, 'display: none') or re:test(@id, ?) or re:test(@class, ?) or "
    "@aria-hidden='true']"
)


def _hidden(_: tuple[str, ...], p: list[re.Pattern[str]]) -> Any:
    id_or_style, by_id, by_class = (x.search for x in p)

    def select(tree: HtmlElement) -> list[HtmlElement]:
        found = []
        for element in tree.iterdescendants("*"):
            get = element.get
            ident, css, style = get("id"), get("class"), get("style")
            if (
                (css and (css == "comments-title" or by_class(css)))
                or (ident and by_id(ident))
                or (style and ("display:none" in style or "display: none" in style))
                or get("aria-hidden") == "true"
                or (
                    (ident is not None or css is not None)
                    and _first_of(element, _ID_OR_CLASS).startswith("reply-")
                )
                or ((ident or style) and id_or_style(_first_of(element, _ID_OR_STYLE)))
            ):
                found.append(element)
        return found

    return select


# TEASER_DISCARD_XPATH and DISCARD_IMAGE_ELEMENTS: a word in the id or class.
_TEASERS = (
    ".//*[self::div or self::item or self::list or self::p or self::section or self::span][ "
    "contains(translate(@id, 'T', 't'), 'teaser') or contains(translate(@class, 'T', 't'), "
    "'teaser')]"
)
_CAPTIONS = (
    ".//*[self::div or self::item or self::list or self::p or self::section or self::span][ "
    "contains(@id, 'caption') or contains(@class, 'caption')]"
)


def _teasers(tags: tuple[str, ...], _: list[re.Pattern[str]]) -> Any:
    def select(tree: HtmlElement) -> list[HtmlElement]:
        return [
            element
            for element in tree.iterdescendants(*tags)
            if "teaser" in (element.get("id") or "").replace("T", "t")
            or "teaser" in (element.get("class") or "").replace("T", "t")
        ]

    return select


def _captions(tags: tuple[str, ...], _: list[re.Pattern[str]]) -> Any:
    def select(tree: HtmlElement) -> list[HtmlElement]:
        return [
            element
            for element in tree.iterdescendants(*tags)
            if "caption" in (element.get("id") or "") or "caption" in (element.get("class") or "")
        ]

    return select


_WALKS = {
    _RAW_CONTAINERS: _raw_containers,
    _SHARE_BUTTONS: _share_buttons,
    _COMMENT_SECTIONS: _comment_sections,
    _BOILERPLATE: _boilerplate,
    _HIDDEN: _hidden,
    _TEASERS: _teasers,
    _CAPTIONS: _captions,
}
# The lists of trafilatura.xpaths holding them (shared by name with the modules using them).
WALKED_LISTS = (
    "RAW_TREE_PRUNE_XPATH",
    "REMOVE_COMMENTS_AND_LISTS_XPATH",
    "OVERALL_DISCARD_XPATH",
    "TEASER_DISCARD_XPATH",
    "DISCARD_IMAGE_ELEMENTS",
)


def walk(original: XPath) -> Walk | None:
    """The walk for one of trafilatura's expressions, None when none was written for it."""
    found = _template(original.path)
    if found is None or (build := _WALKS.get(found[0])) is None:
        return None
    return Walk(original, build(_tags(found[0]), found[1]))


def _install_walks() -> None:
    originals = {id(faster): stock for stock, faster in _INSTALLED.items()}
    xpath_module = importlib.import_module("trafilatura.xpaths")
    for name in WALKED_LISTS:
        expressions = getattr(xpath_module, name, None)
        if not isinstance(expressions, list):
            continue
        for index, item in enumerate(expressions):
            if isinstance(item, XPath) and (found := walk(originals.get(id(item), item))):
                expressions[index] = found


def _trafilatura_modules() -> list[ModuleType]:
    return [module for name, module in sys.modules.items() if name.split(".")[0] == "trafilatura"]


def install() -> dict[XPath, XPath]:
    """Replace, in every loaded trafilatura module, each expression calling `re:test`, and
    trafilatura's author, category and tag searches by the functions above.

    Lists are changed in place: trafilatura's modules import the lists of trafilatura.xpaths
    by name, so each holds the same list. Returns each original and its replacement (kept
    referenced: the equivalence test evaluates both). Idempotent.
    """
    if _INSTALLED:
        return _INSTALLED
    replaced: dict[int, tuple[XPath, XPath]] = {}
    # A list several modules share is met once per module: its items are replacements the
    # second time, which must not be guarded again (each guard evaluated twice, three times).
    made: set[int] = set()

    def replacement(value: object) -> XPath | None:
        if not isinstance(value, XPath) or "re:test" not in value.path or id(value) in made:
            return None
        if id(value) not in replaced:
            replaced[id(value)] = (value, faster(value))
            made.add(id(replaced[id(value)][1]))
        return replaced[id(value)][1]

    for module in _trafilatura_modules():
        for name, value in list(vars(module).items()):
            if isinstance(value, list):
                for index, item in enumerate(value):
                    if (new := replacement(item)) is not None:
                        value[index] = new
            elif (new := replacement(value)) is not None:
                setattr(module, name, new)
    _INSTALLED.update(replaced.values())
    # Looked up in the module's namespace at each call of extract_metadata.
    trafilatura_metadata.extract_author = extract_author
    trafilatura_metadata.extract_catstags = extract_catstags
    global _NEEDLES
    _NEEDLES = _banner_needles()
    # Looked up in trafilatura.baseline at each call of html2txt and baseline (the module
    # is shadowed by its function of the same name in trafilatura's namespace).
    importlib.import_module("trafilatura.baseline").basic_cleaning = basic_cleaning  # type: ignore[attr-defined]
    _install_walks()
    return _INSTALLED


_INSTALLED: dict[XPath, XPath] = {}
