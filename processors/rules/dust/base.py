"""What the dust rules share: duplicate filtering, the rule base classes, the factories' wiring.

``DustRule`` drops exact duplicates (same device and ts) per device, builds the family's
conditions and holds the streak parameters; ``SiteRule`` is one that judges a site's minute
window, and keeps each site's window and streak in its sensors' checkpoints; ``now`` is the
event time at which a site is judged (a late reading is judged just after the latest one);
``common_kwargs``, ``sites`` and ``model_sensor_site`` turn the rules file and the city model
into constructor arguments.

Example:
    >>> from types import SimpleNamespace
    >>> city = SimpleNamespace(sites={"s1": SimpleNamespace(id="s1", sensor_ids=["d-1", "d-2"])})
    >>> model_sensor_site(city), model_sensor_site(None)
    ({'d-1': 's1', 'd-2': 's1'}, {})
    >>> sorted(common_kwargs(RulesConfig()))
    ['cfg', 'hold_s', 'repeat_s']
    >>> s = _Seen()
    >>> s.fresh(5), s.fresh(3), s.fresh(3)  # a late reading once, then its duplicate
    (True, True, False)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Container, Iterable, Mapping
from typing import Any, ClassVar

from processors.config import DustRulesConfig, RulesConfig
from processors.rules.base import Condition, Record, Rule
from processors.rules.dust.window import MinuteWindow
from processors.rules.streak import EMIT_ON, NS, Streak, StreakParams


class _Seen:
    """Recent ts of one device, to drop exact duplicates cheaply; and the device's site."""

    __slots__ = ("last", "recent", "site")

    def __init__(self, site: str = "") -> None:
        self.site = site
        self.last = -(2**62)
        self.recent: deque[int] = deque(maxlen=64)

    def fresh(self, ts: int) -> bool:
        if ts > self.last:
            self.last = ts
        elif ts in self.recent:  # rare path: only for late readings
            return False
        self.recent.append(ts)
        return True


def now(ts: int, st: Streak) -> int:
    """Event time at which to judge a site: a late reading changes the window *now*, so it
    is judged just after the latest one instead of being ignored as out of order."""
    return ts if ts > st.last_ts else st.last_ts + 1


class DustRule(Rule):
    families: ClassVar[tuple[str, ...]] = ("dust",)
    kind: ClassVar[str]
    severity: ClassVar[str] = "warning"

    def __init__(
        self,
        cfg: DustRulesConfig | None,
        sensor_site: Mapping[str, str] | None,
        hold_s: float,
        repeat_s: float,
    ) -> None:
        self.cfg = cfg or DustRulesConfig()
        self.sensor_site = dict(sensor_site or {})
        self.p = StreakParams(
            1, 1, int(hold_s * NS), int(repeat_s * NS), fresh_clears=self.fresh_clears
        )
        self.seen: dict[str, _Seen] = {}
        # A SiteRule's sites; the rules judging sensors alone leave it empty.
        self.sites: dict[str, SiteState] = {}

    def _fresh_site(self, rec: Record, dev: str, ts: int) -> str | None:
        """The reading's site; None when it has none, or repeats a reading already seen."""
        site: str | None = rec.get("site_id") or self.sensor_site.get(dev)
        if site is None:
            return None
        seen = self.seen.get(dev)
        if seen is None:
            seen = self.seen[dev] = _Seen(site)
        return site if seen.fresh(ts) else None

    def _sensor_of(self, dev: str, site: str) -> None:
        """Know ``dev`` as a sensor of ``site`` before its first reading (from a checkpoint),
        so that ``forget`` drops the site with it."""
        if dev not in self.seen:
            self.seen[dev] = _Seen(site)

    def forget(self, devices: Container[str]) -> Collection[str]:
        # Dust readings are keyed by district, so a site's sensors leave together; if they
        # come back, the site starts anew (a new streak, and the adopted open episodes).
        gone = {self.seen.pop(d).site for d in [d for d in self.seen if d in devices]}
        self.drop_sites(gone)
        return gone

    def drop_sites(self, sites: Collection[str]) -> None:
        """Forget the per-site state of ``sites``."""
        for site in sites:
            self.sites.pop(site, None)

    def _cond(
        self,
        r: int,
        target: str,
        ttype: str,
        ts: int,
        district: str,
        msg: str,
        value: float | None,
        off_msg: str = "back below the limit",
    ) -> Condition:
        on = r == EMIT_ON
        return Condition(
            self.kind,
            target,
            ttype,
            on,
            ts,
            self.severity,
            "dust",
            district,
            msg if on else off_msg,
            value if on else None,
        )

    def _site_cond(
        self, r: int, site: str, rec: Record, ts: int, msg: str, value: float, out: list[Condition]
    ) -> None:
        """A site-level condition for a streak step that changed something."""
        out.append(self._cond(r, site, "site", ts, rec["district"], msg, value))


class SiteState:
    """A site's minute window (``size`` minutes, and a mean of the last ``short`` of them
    besides the whole) and its streak, with what a restart needs of them."""

    __slots__ = ("last", "night", "since", "streak", "upto", "win")

    def __init__(self, size: int, short: int, since: int) -> None:
        self.win = MinuteWindow(size, short)
        self.streak = Streak()
        self.since = since  # the first reading: before the window's span of them, no mean
        self.last = since  # the newest reading in the window
        self.upto = -(2**62)  # readings up to then are in a window from a checkpoint
        self.night = False  # night_noise: whether the window holds this night's readings


class SiteRule(DustRule):
    """A dust rule judging each site's minute window of ``window`` = (size, short) minutes.

    Each sensor's checkpoint carries its site's window and streak (``learnt``); the newest is
    kept, and readings it holds are skipped (``SiteState.upto``): rebuilt from the replay's
    15 minutes, a "1-h" mean ended a dust episode up to 40 minutes early, and a night's
    new 15-min mean was not trusted for its first 15 minutes, so a clear came 5 minutes late.
    """

    learns: ClassVar[bool] = True
    window: ClassVar[tuple[int, int]]

    def _site(self, site: str, ts: int) -> SiteState | None:
        """The site's state for a reading at ``ts``; None when a checkpoint holds it."""
        st = self.sites.get(site)
        if st is None:
            st = self.sites[site] = SiteState(*self.window, ts)
        elif ts <= st.upto:
            return None
        if ts > st.last:
            st.last = ts
        return st

    def _site_of(self, device: str) -> tuple[str, SiteState] | None:
        """The sensor's site and its state; None when unknown."""
        seen = self.seen.get(device)
        st = None if seen is None else self.sites.get(seen.site)
        return None if seen is None or st is None else (seen.site, st)

    def learnt(self, device: str) -> Any:
        found = self._site_of(device)
        if found is None:
            return None
        site, st = found
        return [site, st.last, st.since, st.streak.state(), st.win.state(), st.night]

    def relearn(self, device: str, state: Any) -> None:
        # Before 2026-12-07 a state had no night flag, and its streak was whether it was on.
        site, last, since, streak, win, *more = state
        night = more[0] if more else False
        if not isinstance(site, str) or not isinstance(night, bool) or len(more) > 1:
            raise ValueError(f"not a {self.name} state: {state!r}")
        if not isinstance(last, int) or not isinstance(since, int):
            raise ValueError(f"not a {self.name} state: {state!r}")
        self._sensor_of(device, site)
        had = self.sites.get(site)
        if had is not None and had.upto >= last:
            return
        st = SiteState(*self.window, since)
        st.win.load(win)
        st.last = st.upto = last
        st.night = night
        if isinstance(streak, bool):
            if streak:
                st.streak.resume(last)
        else:
            # The whole streak: its repeats, which the manager escalates on, keep their times
            # (resumed from `on` alone they came up to 50 s late).
            st.streak.load(streak)
        self.sites[site] = st

    def clearing(self, device: str) -> Iterable[tuple[str, str, int]]:
        found = self._site_of(device)
        return () if found is None else found[1].streak.clearing(self.kind, found[0])


# --- wiring (registry factories) ----------------------------------------------------------


def common_kwargs(cfg: RulesConfig) -> dict[str, Any]:
    return {"cfg": cfg.dust, "hold_s": cfg.alerts.clear_after_s, "repeat_s": cfg.repeat_s}


def sites(city: Any) -> Iterable[Any]:
    return (getattr(city, "sites", None) or {}).values()


def model_sensor_site(city: Any) -> dict[str, str]:
    return {sid: s.id for s in sites(city) for sid in s.sensor_ids}
