"""The examples in the package's docstrings run."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import workers

MODULES = [
    m.name
    for m in pkgutil.iter_modules(workers.__path__, "workers.")
    if m.name not in ("workers.app", "workers.tasks", "workers.cli")
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
