"""Every module's docstring examples run and print what they say (doctest).

The examples are the first thing a reader tries; two had gone stale unnoticed (a changed
default, a detector made stricter) before these tests ran them.
"""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ingest", "processors", "citywatch", "dashboards", "bench", "notifier", "commands")


def _modules_with_examples() -> list[str]:
    names = []
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            if ">>>" in path.read_text(encoding="utf-8"):
                rel = path.relative_to(ROOT).with_suffix("")
                parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
                names.append(".".join(parts))
    return sorted(names)


MODULES = _modules_with_examples()


def test_the_examples_are_found() -> None:
    assert len(MODULES) >= 50  # the walk itself works: most modules carry one


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(
        module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"
