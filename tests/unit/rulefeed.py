"""Feeding a rule in the rule tests.

A new streak of a rule with ``fresh_clears`` (processors.rules.streak), and the silence rule
on a device's first reading, emit clears for faults they never raised: the previous run of
the processor may have left an episode open. The alert manager ignores such a clear when
nothing is open, so the rule tests look at the conditions that remain.
"""

from __future__ import annotations

from typing import Any

from processors.rules.base import Condition, Rule

# Per rule fed, what it raised so far (the rule is kept, so that its id is not reused): a test
# may feed one rule in several calls, and a clear in the second end a raise in the first.
_raised: dict[int, tuple[Rule, set[tuple[str, str]]]] = {}


def settled(conds: list[Condition], raised: set[tuple[str, str]] | None = None) -> list[Condition]:
    """``conds`` without the clears of (kind, target) pairs not raised before them."""
    raised = set() if raised is None else raised
    kept = []
    for c in conds:
        if c.active:
            raised.add(c.key)
        elif c.key not in raised:
            continue
        kept.append(c)
    return kept


def feed(rule: Rule, recs: list[dict[str, Any]]) -> list[Condition]:
    """The conditions ``rule`` emits over ``recs``, less the clears of faults never raised."""
    out: list[Condition] = []
    for r in recs:
        rule.on_reading(r, out)
    return settled(out, _raised.setdefault(id(rule), (rule, set()))[1])
