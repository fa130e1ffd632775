"""Night noise: a site's 15-min mean noise above its night limit, at night only.

- ``night_noise`` (warning, target = site id): the 15-min mean noise at night (22:00-06:00
  local, or the site's own night) above the night limit (55 dBA); only night readings enter
  the window, so a loud evening does not spill into the night. The mean is energetic (Leq:
  10·log10 of the mean of 10^(L/10)), as noise limits are defined; clears 2 dB below.

Each site's window and streak are checkpointed (``SiteRule``).

Example:
    >>> rule, out = NightNoise(LocalClock("UTC")), []
    >>> for m in range(21 * 60 + 50, 22 * 60 + 20):  # 70 dBA from 21:50 UTC on
    ...     rule.on_reading({"device_id": "n-1", "family": "dust", "district": "n",
    ...                      "site_id": "site-1", "ts": m * MINUTE_NS, "noise_dba": 70.0}, out)
    >>> c = [c for c in out if c.active][0]  # the evening did not count: five night minutes
    >>> (c.kind, c.target, c.active, c.value, divmod(c.ts // MINUTE_NS, 60))
    ('night_noise', 'site-1', True, 70.0, (22, 4))
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

from processors.config import DustRulesConfig, RulesConfig
from processors.rules.base import Condition, Record, Rule
from processors.rules.dust.base import SiteRule, common_kwargs, model_sensor_site, now, sites
from processors.rules.dust.window import MINUTE_NS, MinuteWindow
from processors.rules.solar import LocalClock, city_timezone, in_window, parse_hhmm
from processors.rules.streak import NOTHING

QUARTER_NS = 15 * MINUTE_NS


class NightNoise(SiteRule):
    """15-min mean noise at a site above its night limit, at night only."""

    name: ClassVar[str] = "night_noise"
    kind: ClassVar[str] = "night_noise"
    description: ClassVar[str] = "site's 15-min mean noise above the night limit, 22:00-06:00"
    fresh_clears: ClassVar[bool] = True
    window: ClassVar[tuple[int, int]] = (15, 15)

    def __init__(
        self,
        clock: LocalClock,
        cfg: DustRulesConfig | None = None,
        site_limits: Mapping[str, float] | None = None,
        site_nights: Mapping[str, tuple[str, str]] | None = None,
        sensor_site: Mapping[str, str] | None = None,
        hold_s: float = 600.0,
        repeat_s: float = 60.0,
    ) -> None:
        super().__init__(cfg, sensor_site, hold_s, repeat_s)
        self.clock = clock
        self.limits = dict(site_limits or {})
        a, b = self.cfg.night_hours
        self.default_night = (parse_hhmm(a), parse_hhmm(b))
        self.nights = {
            s: (parse_hhmm(a), parse_hhmm(b)) for s, (a, b) in (site_nights or {}).items()
        }

    def on_reading(self, rec: Record, out: list[Condition]) -> None:
        v = rec.get("noise_dba")
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
        a, b = self.nights.get(site, self.default_night)
        c = self.cfg
        lim = self.limits.get(site, c.noise_night_dba)
        if not in_window(self.clock.minute_of_day(ts), a, b):
            if st.night:
                st.night = False
                st.win = MinuteWindow(15, 15)  # the next night starts from nothing
            r = st.streak.step(ts, False, self.p)
            if r != NOTHING:
                out.append(self._cond(r, site, "site", ts, rec["district"], "", None, "night over"))
            return
        st.night = True
        w = st.win
        w.add(ts // MINUTE_NS, 10.0 ** (v / 10.0) if c.noise_leq else v)
        if w.cnt_short < c.min_samples:
            r = st.streak.tail(ts, self.p)
            mean = math.nan
        else:
            m = w.sum_short / w.cnt_short
            mean = 10.0 * math.log10(m) if c.noise_leq else m
            bad: bool | None = mean > lim
            if not bad and mean >= lim - c.noise_clear_db:
                bad = st.streak.known_on()
            elif not bad and st.streak.fresh and ts - st.since < QUARTER_NS:
                bad = None  # a new state's mean covers less than its 15 minutes
            r = st.streak.step(now(ts, st.streak), bad, self.p)
        if r != NOTHING:
            msg = f"night noise 15-min mean {mean:.1f} dBA > {lim:.0f} dBA"
            self._site_cond(r, site, rec, ts, msg, mean, out)


def build(cfg: RulesConfig, city: Any) -> Rule:
    return NightNoise(
        LocalClock(city_timezone(cfg.timezone, city)),
        site_limits={s.id: s.night_noise_limit_dba for s in sites(city)},
        site_nights={s.id: (s.night_from, s.night_to) for s in sites(city)},
        sensor_site=model_sensor_site(city),
        **common_kwargs(cfg),
    )
