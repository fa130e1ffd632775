"""Dust exceedance: a site's rolling 15-min (or 1-h) mean PM10 above its limit.

- ``dust_exceedance`` (major, target = site id): the rolling 15-min mean PM10 over all the
  site's sensors above the site's limit (``site_limits_ugm3``, else the city model's, else
  150 µg/m³), or the rolling 1-h mean above the 1-h limit (``pm10_limit_1h_ugm3``, scaled by
  the site's limit); needs >= 5 samples in the window; clears when both means are below
  90 % of their limits, so an episode ends only once the hour has calmed down too.

Example:
    >>> rule, out = DustExceedance(), []
    >>> for m in range(20):
    ...     for s in ("d-1", "d-2"):
    ...         rule.on_reading({"device_id": s, "family": "dust", "district": "n",
    ...                          "site_id": "site-1", "ts": m * MINUTE_NS,
    ...                          "pm10_ugm3": 80.0 if m < 5 else 240.0}, out)
    >>> (out[0].kind, out[0].target, out[0].target_type, out[0].active)
    ('dust_exceedance', 'site-1', 'site', True)
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, ClassVar

from processors.config import DustRulesConfig, RulesConfig
from processors.rules.base import Condition, Record, Rule
from processors.rules.dust.base import DustRule, common_kwargs, model_sensor_site, now, sites
from processors.rules.dust.window import MINUTE_NS, MinuteWindow
from processors.rules.streak import NOTHING, Streak

HOUR_NS = 60 * MINUTE_NS


class _Site:
    __slots__ = ("last", "since", "streak", "upto", "win")

    def __init__(self, size: int, short: int, since: int) -> None:
        self.win = MinuteWindow(size, short)
        self.streak = Streak()
        self.since = since  # the first reading: before an hour of them, no 1-h mean
        self.last = since  # the newest reading in the window
        self.upto = -(2**62)  # readings up to then are in a window from a checkpoint


class DustExceedance(DustRule):
    """Rolling 15-min (and 1-h) mean PM10 over a site's sensors above the site's limit."""

    name: ClassVar[str] = "dust_exceedance"
    kind: ClassVar[str] = "dust_exceedance"
    severity: ClassVar[str] = "major"
    description: ClassVar[str] = "site's rolling 15-min mean PM10 above its limit (or 1-h)"
    fresh_clears: ClassVar[bool] = True
    # Each sensor's site window, across restarts: the replay's 15 minutes made a new "1-h"
    # mean, so an episode cleared up to 40 minutes early, or late, and missed its escalation.
    learns: ClassVar[bool] = True

    def __init__(
        self,
        cfg: DustRulesConfig | None = None,
        site_limits: Mapping[str, float] | None = None,
        sensor_site: Mapping[str, str] | None = None,
        hold_s: float = 600.0,
        repeat_s: float = 60.0,
    ) -> None:
        super().__init__(cfg, sensor_site, hold_s, repeat_s)
        self.limits = {**(site_limits or {}), **self.cfg.site_limits_ugm3}
        self.ratio_1h = self.cfg.pm10_limit_1h_ugm3 / self.cfg.pm10_limit_ugm3
        self.sites: dict[str, _Site] = {}

    def drop_sites(self, sites: Collection[str]) -> None:
        for site in sites:
            self.sites.pop(site, None)

    def on_reading(self, rec: Record, out: list[Condition]) -> None:
        v = rec.get("pm10_ugm3")
        if v is None:
            return
        dev = rec["device_id"]
        ts = rec["ts"]
        site = self._fresh_site(rec, dev, ts)
        if site is None:
            return
        st = self.sites.get(site)
        if st is None:
            st = self.sites[site] = _Site(60, 15, ts)
        elif ts <= st.upto:
            return  # the checkpointed window holds it (a replayed reading)
        if ts > st.last:
            st.last = ts
        w = st.win
        w.add(ts // MINUTE_NS, v)
        c = self.cfg
        if w.cnt_short < c.min_samples:
            return
        lim = self.limits.get(site, c.pm10_limit_ugm3)
        lim_h = lim * self.ratio_1h  # a site's own limit scales its 1-h limit too
        m15 = w.sum_short / w.cnt_short
        m60 = w.sum_long / w.cnt_long
        bad: bool | None
        if m15 > lim or (w.cnt_long >= 4 * c.min_samples and m60 > lim_h):
            bad = True
        elif m15 < c.clear_frac * lim and m60 < c.clear_frac * lim_h:
            # A new site state's "1-h" mean covers less than an hour: not yet evidence.
            bad = None if st.streak.fresh and ts - st.since < HOUR_NS else False
        else:
            bad = True if st.streak.on else None  # between limit and clear level: as before
        r = st.streak.step(now(ts, st.streak), bad, self.p)
        if r != NOTHING:
            msg = f"PM10 15-min mean {m15:.0f}, 1-h mean {m60:.0f} µg/m³ (limit {lim:.0f})"
            self._site_cond(r, site, rec, ts, msg, m15, out)

    def learnt(self, device: str) -> Any:
        seen = self.seen.get(device)
        st = None if seen is None else self.sites.get(seen.site)
        if seen is None or st is None:
            return None
        return [seen.site, st.last, st.since, st.streak.on, st.win.state()]

    def relearn(self, device: str, state: Any) -> None:
        """Every sensor's record carries its site's window: the newest one is kept."""
        site, last, since, on, win = state
        if not isinstance(site, str) or not isinstance(on, bool):
            raise ValueError(f"not a dust_exceedance state: {state!r}")
        if not isinstance(last, int) or not isinstance(since, int):
            raise ValueError(f"not a dust_exceedance state: {state!r}")
        self._sensor_of(device, site)
        had = self.sites.get(site)
        if had is not None and had.upto >= last:
            return
        st = _Site(60, 15, since)
        st.win.load(win)
        st.last = st.upto = last
        if on:
            st.streak.resume(last)
        self.sites[site] = st


def build(cfg: RulesConfig, city: Any) -> Rule:
    return DustExceedance(
        site_limits={s.id: s.pm10_limit_ugm3 for s in sites(city)},
        sensor_site=model_sensor_site(city),
        **common_kwargs(cfg),
    )
