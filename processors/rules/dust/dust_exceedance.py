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

from collections.abc import Mapping
from typing import Any, ClassVar

from processors.config import DustRulesConfig, RulesConfig
from processors.rules.base import Condition, Record, Rule
from processors.rules.dust.base import SiteRule, common_kwargs, model_sensor_site, now, sites
from processors.rules.dust.window import MINUTE_NS
from processors.rules.streak import NOTHING

HOUR_NS = 60 * MINUTE_NS


class DustExceedance(SiteRule):
    """Rolling 15-min (and 1-h) mean PM10 over a site's sensors above the site's limit."""

    name: ClassVar[str] = "dust_exceedance"
    kind: ClassVar[str] = "dust_exceedance"
    severity: ClassVar[str] = "major"
    description: ClassVar[str] = "site's rolling 15-min mean PM10 above its limit (or 1-h)"
    fresh_clears: ClassVar[bool] = True
    window: ClassVar[tuple[int, int]] = (60, 15)  # the 1-h mean and the 15-min one

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

    def on_reading(self, rec: Record, out: list[Condition]) -> None:
        v = rec.get("pm10_ugm3")
        if v is None:
            return
        dev = rec["device_id"]
        ts = rec["ts"]
        site = self._fresh_site(rec, dev, ts)
        if site is None:
            return
        st = self._site(site, ts)
        if st is None:
            return  # the checkpointed window holds it (a replayed reading)
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


def build(cfg: RulesConfig, city: Any) -> Rule:
    return DustExceedance(
        site_limits={s.id: s.pm10_limit_ugm3 for s in sites(city)},
        sensor_site=model_sensor_site(city),
        **common_kwargs(cfg),
    )
