"""Policy: district of a crew, district-wide needs a supervisor and confirmation, rate limit."""

from __future__ import annotations

import pytest

from citywatch.settings import CommandSettings
from commands.policy import ConfirmationRequired, Forbidden, Issuer, RateLimited, check

CFG = CommandSettings(rate_limit_count=3)
CREW = Issuer("crew-north", "crew", frozenset({"north"}))
BOSS = Issuer("ana", "supervisor", frozenset())


def test_crew_own_district_only() -> None:
    check(CFG, CREW, "circuit", "north", confirm=False, recent=0)
    with pytest.raises(Forbidden, match="may not command district central") as e:
        check(CFG, CREW, "device", "central", confirm=False, recent=0)
    assert e.value.status == 403
    check(CFG, BOSS, "device", "central", confirm=False, recent=0)


def test_district_wide_needs_supervisor_and_confirmation() -> None:
    with pytest.raises(Forbidden, match="supervisors"):
        check(CFG, CREW, "district", "north", confirm=True, recent=0)
    with pytest.raises(ConfirmationRequired) as e:
        check(CFG, BOSS, "district", "north", confirm=False, recent=0)
    assert e.value.status == 428
    check(CFG, BOSS, "district", "north", confirm=True, recent=0)
    lenient = CFG.model_copy(update={"crews_district_wide": True})
    check(lenient, CREW, "district", "north", confirm=True, recent=0)
    with pytest.raises(ConfirmationRequired):
        check(lenient, CREW, "district", "north", confirm=False, recent=0)


def test_rate_limit_and_unknown_role() -> None:
    check(CFG, BOSS, "device", "north", confirm=False, recent=2)
    with pytest.raises(RateLimited) as e:
        check(CFG, BOSS, "device", "north", confirm=False, recent=3)
    assert e.value.status == 429
    with pytest.raises(Forbidden, match="role"):
        check(CFG, Issuer("x", "viewer", frozenset()), "device", "north", confirm=False, recent=0)
