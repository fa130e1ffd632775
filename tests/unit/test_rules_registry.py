"""The rule registry: each name maps to the ``build`` of a module named as the rule, in a
family package, and every rule it builds says that name."""

from __future__ import annotations

import importlib

from processors.config import RulesConfig
from processors.rules.registry import RULES, build_rules


def test_each_rule_lives_in_a_module_named_as_the_rule() -> None:
    for name, factory in RULES.items():
        module = importlib.import_module(factory.__module__)
        family, mod_name = module.__name__.split(".")[-2:]
        assert mod_name == name, f"{name} is built by {module.__name__}"
        assert family in {"bin", "common", "dust", "streetlight", "vehicle"}
        assert factory is module.build


def test_built_rules_carry_their_registry_names_in_order() -> None:
    rules = build_rules(RulesConfig(), None)
    names = [r.name for r in rules]
    assert names == [n for n in RULES if n in names]
    # Without a city model the muck-truck rules that need its geodata are skipped.
    assert {"corridor_violation", "illegal_dump", "daytime_hauling"}.isdisjoint(names)
    assert len(names) == len(RULES) - 3


def test_a_disabled_rule_is_not_built() -> None:
    names = [r.name for r in build_rules(RulesConfig(disabled_rules=["lamp_out"]), None)]
    assert "lamp_out" not in names and "day_burn" in names
