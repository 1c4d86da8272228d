"""trafilatura's expressions as workers.xpaths recompiles them select the same elements."""

from __future__ import annotations

import contextlib
import gzip
import importlib
import json
import re

import pytest
from lxml import etree
from lxml.etree import XPath
from lxml.html import HtmlElement, fromstring
from trafilatura import settings
from trafilatura import xpaths as trafilatura_xpaths

from tests.conftest import CORPUS
from workers import extract as _extract  # importing it installs the faster expressions
from workers import xpaths
from workers.fetch import decode_body
from workers.xpaths import (
    _TRAFILATURA_EXTRACT_AUTHOR,
    _TRAFILATURA_EXTRACT_CATSTAGS,
    extract_author,
    extract_catstags,
    guard_re_tests,
)


def _corpus_trees(every: int) -> list[HtmlElement]:
    """Every `every`-th page of the extraction corpus, parsed as trafilatura parses it."""
    truth = json.loads((CORPUS / "extraction" / "groundtruth.json").read_text())
    trees = []
    for url in sorted(truth)[::every]:
        raw = gzip.decompress((CORPUS / "extraction" / truth[url]["file"]).read_bytes())
        tree = _extract.load_tree(decode_body(raw, "text/html")[0], 100_000, 200)
        trees.append(tree)
    return trees


def test_every_regex_expression_is_replaced() -> None:
    installed = xpaths.install()
    assert len(installed) >= 20
    for name in dir(trafilatura_xpaths):
        value = getattr(trafilatura_xpaths, name)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, XPath):
                assert item in installed.values() or "re:test" not in item.path, name
    # A module-level expression, imported by name into another module.
    assert settings.BASIC_CLEAN_XPATH in installed.values()
    # (trafilatura.baseline is also the name of a function in trafilatura's namespace)
    baseline = importlib.import_module("trafilatura.baseline")
    assert baseline.BASIC_CLEAN_XPATH is settings.BASIC_CLEAN_XPATH


def test_each_expression_is_guarded_once() -> None:
    """A replacement is never replaced again (lists shared by several of trafilatura's
    modules are met once per module): each is trafilatura's expression, guarded once."""
    installed = xpaths.install()
    assert set(map(id, installed)).isdisjoint(map(id, installed.values()))
    for original, faster in installed.items():
        assert faster.path == xpaths.guard_re_tests(original.path), original.path


def test_replacements_select_the_same_elements() -> None:
    """From the root, and from the largest child of <body> (trafilatura evaluates its
    relative expressions on subtrees too)."""
    pairs = list(xpaths.install().items())
    checked = 0
    for tree in _corpus_trees(every=10):
        body = tree.find("body")
        children = list(body) if body is not None else []
        largest = max(children, key=lambda child: len(child.xpath(".//*")), default=None)
        for context in (tree, largest) if largest is not None else (tree,):
            for original, faster in pairs:
                expected = original(context)
                assert faster(context) == expected, original.path
                checked += len(expected) if isinstance(expected, list) else 1
    assert checked > 1000


def test_guard_leaves_other_calls_alone() -> None:
    path = "//*[contains(@class, 'x') or re:test(string(.), 'y')]"
    assert guard_re_tests(path) == path


def test_author_search_finds_what_trafilatura_finds() -> None:
    """On every other corpus page, and on pages where the byline holds pruned elements."""
    trees = _corpus_trees(every=2)
    found = 0
    for tree in trees:
        expected = _TRAFILATURA_EXTRACT_AUTHOR(tree)
        assert extract_author(tree) == expected
        found += expected is not None
    assert found > 100
    for html, author in [
        # A <time> inside the byline: trafilatura's deletion joins its tail to the name.
        ('<span class="author">Jane <time>today</time>Doe</span>', "Jane Doe"),
        (
            '<div class="author">Jane<time>x</time> Doe and <span class="date">1</span>Bo Li</div>',
            None,
        ),
        # A byline inside a pruned element is no byline.
        ('<div class="sidebar"><span class="author">Jane Doe</span></div>', None),
        ('<figure><a rel="author">Jane Doe</a></figure><p class="byline">Bo Li</p>', "Bo Li"),
        # A <rel> child is read after pruning (left to trafilatura).
        ("<span><rel>me<time>x</time></rel> Jane Doe</span>", "Me Jane Doe"),
        ("<span><rel><time>me</time></rel> Jane Doe</span>", None),
    ]:
        tree = _extract.load_tree(f"<html><body><p>text</p>{html}</body></html>", 1000, 100)
        expected = _TRAFILATURA_EXTRACT_AUTHOR(tree)
        assert extract_author(tree) == expected, html
        if author is not None:
            assert expected == author, html
    # A subtree is searched as trafilatura searches its copy: as a document of its own.
    body = _extract.load_tree(
        '<html><body class="sidebar"><p>some text</p><p class="byline">Jo Bo</p></body></html>',
        1000,
        100,
    ).find("body")
    assert extract_author(body) == _TRAFILATURA_EXTRACT_AUTHOR(body) == "Jo Bo"


def test_category_and_tag_search_finds_what_trafilatura_finds() -> None:
    trees = _corpus_trees(every=2)
    found = {"category": 0, "tag": 0}
    for tree in trees:
        for metatype in found:
            expected = _TRAFILATURA_EXTRACT_CATSTAGS(metatype, tree)
            assert extract_catstags(metatype, tree) == expected
            found[metatype] += bool(expected)
    assert found["category"] > 20 and found["tag"] > 20
    # Without a category link, the meta tags still give the section.
    tree = _extract.load_tree(
        '<html><head><meta property="article:section" content="Politics"></head>'
        '<body><div class="tags"><a href="/topics/x">X</a></div></body></html>',
        1000,
        100,
    )
    assert extract_catstags("category", tree) == ["Politics"]
    assert extract_catstags("tag", tree) == _TRAFILATURA_EXTRACT_CATSTAGS("tag", tree) == []


def test_bylines_select_what_trafilatura_selects() -> None:
    assert xpaths._PYTHON_BYLINES
    # trafilatura's own expressions, not the faster ones install() put in their place.
    originals = {faster: original for original, faster in xpaths.install().items()}
    expressions = [originals[expression] for expression in trafilatura_xpaths.AUTHOR_XPATHS]
    selected = 0
    for tree in _corpus_trees(every=3):
        found = xpaths.bylines(tree)
        assert found == [expression(tree) for expression in expressions]
        selected += sum(map(len, found))
    assert selected > 1000
    # The rarely seen parts of the first expression.
    tree = _extract.load_tree(
        '<html><body><author>A</author><span>x<rel>me</rel></span><div rel="author">B</div>'
        '<p data-testid="AuthorURL">C</p><strong class="a AuthorName">D</strong></body></html>',
        1000,
        100,
    )
    found = xpaths.bylines(tree)
    assert [e.tag for e in found[0]] == ["author", "span", "div", "p", "strong"]
    assert found == [expression(tree) for expression in expressions]


def _patterns() -> list[str]:
    """Every pattern trafilatura's expressions give `re:test`, and some harder ones."""
    found = {
        match["pattern"]
        for original in xpaths.install()
        for match in xpaths._RE_TEST.finditer(original.path)
    }
    return [
        *sorted(found),
        "[Cc]omment(?!ary)",
        "^(?:ab|cd)e+f?$",
        "x(?:yz)*w|q{2,}r",
        "a.b|[0-9]c",
        "(?i)author",
        "(?i:author)x|y",
        "^$|empty",
    ]


def test_required_substrings_are_in_every_match() -> None:
    """The substring guard never hides a match: tried on every id and class of corpus pages
    and on strings built from the substrings themselves."""
    values = {
        value
        for tree in _corpus_trees(every=5)
        for element in tree.iter("*")
        for value in (element.get("id"), element.get("class"))
        if value
    }
    assert len(values) > 1000
    guarded = 0
    for pattern in _patterns():
        needed = xpaths.required_substrings(pattern)
        if needed is None:
            continue
        guarded += 1
        probes = values | {f"x {part} y" for part in needed} | {"".join(sorted(needed))}
        for value in probes:
            if re.search(pattern, value):
                assert any(part in value for part in needed), (pattern, value)
    assert guarded > 20
    assert xpaths.required_substrings("(?i)author") is None
    assert xpaths.required_substrings("(?i:author)") is None
    assert xpaths.required_substrings("(?i:author)xy") == {"xy"}
    assert xpaths.required_substrings("x|[0-9]+") is None
    assert xpaths.required_substrings("a.b|[0-9]c") == {"a", "c"}


def test_basic_cleaning_deletes_what_trafilaturas_deletes() -> None:
    """workers.xpaths.basic_cleaning (installed in trafilatura.baseline) against
    BASIC_CLEAN_XPATH as trafilatura compiles it, on every page's body and its largest
    child; the banner test is skipped on most of them."""
    from copy import deepcopy

    from trafilatura.xml import delete_element

    baseline = importlib.import_module("trafilatura.baseline")
    assert baseline.basic_cleaning is xpaths.basic_cleaning
    assert xpaths._NEEDLES is not None and "cookie" in xpaths._NEEDLES
    stock = next(o for o, f in xpaths.install().items() if f is settings.BASIC_CLEAN_XPATH)
    skipped = checked = 0
    for tree in _corpus_trees(every=1):
        body = tree.find("body")
        if body is None:
            continue
        children = sorted(body, key=lambda child: len(child), reverse=True)[:1]
        for context in [body, *children]:
            ours, theirs = deepcopy(context), deepcopy(context)
            assert xpaths._NEEDLES is not None
            skipped += not xpaths.may_name_a_banner(ours, xpaths._NEEDLES)
            xpaths.basic_cleaning(ours)
            for element in stock(theirs):
                delete_element(element)
            assert etree.tostring(ours) == etree.tostring(theirs)
            checked += 1
    assert checked > 1000 and skipped > checked / 3, (checked, skipped)


def test_banner_names_in_any_case() -> None:
    needles = xpaths._NEEDLES
    assert needles is not None

    def tree(attrs: str) -> HtmlElement:
        return fromstring(f"<html><body><div><p {attrs}>x</p></div></body></html>")

    for attrs in (
        'class="site-Cookie-Banner"',
        'id="ONETRUST-consent-sdk"',
        'class="notice__cookie"',
        'class="coo\u212aie-bar"',  # the Kelvin sign, taken for k by re ignoring case
        'class="con\u017fent-banner"',  # the long s
    ):
        found = tree(attrs)
        assert xpaths.may_name_a_banner(found, needles), attrs
        assert settings.BASIC_CLEAN_XPATH(found), attrs  # and the expression selects it
    assert not xpaths.may_name_a_banner(tree('class="story" id="main"'), needles)


def _walks() -> list[xpaths.Walk]:
    xpaths.install()
    found = {
        id(item): item
        for name in xpaths.WALKED_LISTS
        for item in getattr(trafilatura_xpaths, name)
        if isinstance(item, xpaths.Walk)
    }
    return list(found.values())


def test_pruning_expressions_are_all_walked() -> None:
    """Every expression of the pruning lists has its walk (a new trafilatura changing one
    leaves it as trafilatura wrote it, and fails here)."""
    xpaths.install()
    for name in xpaths.WALKED_LISTS:
        for item in getattr(trafilatura_xpaths, name):
            assert isinstance(item, xpaths.Walk), (name, getattr(item, "path", item))
    assert len(_walks()) == len(xpaths._WALKS) == 7
    # installing again changes nothing
    before = [list(getattr(trafilatura_xpaths, name)) for name in xpaths.WALKED_LISTS]
    xpaths.install()
    assert before == [list(getattr(trafilatura_xpaths, name)) for name in xpaths.WALKED_LISTS]


def test_walk_refuses_expressions_it_was_not_written_for() -> None:
    stock = next(iter(_walks())).original
    assert xpaths.walk(stock) is not None
    for path in (
        stock.path.replace("self::div", "self::main", 1),
        ".//*[re:test(@id, 'x', 'i')]",
        ".//*[self::div or self::section or self::aside][contains(@class, 'other')]",
    ):
        assert (
            xpaths.walk(XPath(path, namespaces={"re": "http://exslt.org/regular-expressions"}))
            is None
        )


def test_walks_select_the_same_elements() -> None:
    """From the root and from the largest child of <body>, on a sixth of the corpus."""
    walks = _walks()
    checked = 0
    for tree in _corpus_trees(every=6):
        body = tree.find("body")
        children = list(body) if body is not None else []
        largest = max(children, key=len, default=None)
        for context in (tree, largest) if largest is not None else (tree,):
            for found in walks:
                expected = found.original(context)
                assert found(context) == expected, found.path
                checked += len(expected)
    assert checked > 2500, checked


def test_walks_select_the_same_elements_during_extraction(monkeypatch: pytest.MonkeyPatch) -> None:
    """trafilatura hands the walks trees it has already pruned and subtrees of them: each
    call during real extractions of corpus pages is checked against trafilatura's own."""
    calls: list[int] = []
    select = xpaths.Walk.__call__

    def checked(self: xpaths.Walk, tree: HtmlElement) -> list[HtmlElement]:
        result = select(self, tree)
        assert result == self.original(tree), self.path
        calls.append(len(result))
        return result

    monkeypatch.setattr(xpaths.Walk, "__call__", checked)
    truth = json.loads((CORPUS / "extraction" / "groundtruth.json").read_text())
    for url in sorted(truth)[1::4]:
        raw = gzip.decompress((CORPUS / "extraction" / truth[url]["file"]).read_bytes())
        with contextlib.suppress(_extract.EmptyExtraction, _extract.TooComplex):
            _extract.extract_article(decode_body(raw, "text/html")[0], "https://corpus.test/a")
    assert len(calls) > 1000 and sum(calls) > 3000, (len(calls), sum(calls))


def test_walks_on_attribute_edge_cases() -> None:
    """The XPath semantics the walks reproduce: `@id|@class` is the first of the two in
    the element's attribute order, an empty attribute is a test of "", lists are comment
    sections only by their own names, a container holding the <h1> stays."""
    html = """<html><body>
      <div class="story" id="cookie-x">a</div>   <div id="cookie-x" class="story">b</div>
      <div class="reply-x" id="main">c</div>      <div id="main" class="reply-x">d</div>
      <span id="" class="reply-1">e</span>        <span class="" id="reply-2">f</span>
      <p id="" class="">g</p>                     <p style="display: none">h</p>
      <p style="color:red;display:none">i</p>     <p aria-hidden="true">j</p>
      <p aria-hidden="false" class="comments-title">k</p>
      <ul class="comments"><li>l</li></ul>       <ul class="comment-list"><li>m</li></ul>
      <ol id="comments"><li>n</li></ol>           <div class="comments"><p>o</p></div>
      <section class="infinite-scroll"><h1>t</h1></section>
      <section class="infinite-scroll"><p>p</p></section>
      <div class="nav" role="Navigation">q</div>  <span role="NAV">r</span>
      <div data-lp-replacement-content="">s</div> <div data-component="x MostPopularStories">u</div>
      <div class="Teaser">v</div>                 <p id="TEASER">w</p>
      <span class="wp-caption">x</span>           <span id="fig-caption-1">y</span>
      <div class="elementor-share-buttons">z</div>
      <div id="hidden" style="x">1</div>          <div style="hidden" id="y">2</div>
      <!-- <div class="comments">not an element</div> -->
    </body></html>"""
    tree = _extract.load_tree(html, 1000, 100)
    selected = 0
    for found in _walks():
        for context in (tree, tree.find("body")):
            expected = found.original(context)
            assert found(context) == expected, found.path
            selected += len(expected)
    assert selected > 20
