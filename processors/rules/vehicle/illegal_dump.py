"""Illegal dump: a loaded muck truck standing for long where it may not unload.

- ``illegal_dump`` (major, muck): loaded, stopped (< 3 km/h) in one place (within 100 m) for
  > 10 min outside approved disposal sites and depots; the stop is tracked by place, so a
  tracker that goes quiet while parked does not reset it.

Example:
    >>> from processors.rules.streak import NS
    >>> from processors.rules.vehicle.geo import LocalProjection
    >>> rule, out = IllegalDump(LocalProjection(31.23, 121.47), sites=[]), []
    >>> for m, v in [(0, 0.0), (1, 0.0), (11, 0.0), (12, 30.0)]:  # quiet from 1 to 11 min
    ...     rule.on_reading({"device_id": "truck-1", "family": "vehicle", "district": "c",
    ...                      "vehicle_kind": "muck", "payload_state": "loaded",
    ...                      "ts": m * 60 * NS, "lat": 31.23, "lon": 121.47, "speed_kmh": v}, out)
    >>> [(c.active, c.message) for c in out]  # doctest: +NORMALIZE_WHITESPACE
    [(True, 'loaded and stopped 11 min outside disposal sites and depots'),
     (False, 'moving again')]
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from shapely.geometry.base import BaseGeometry

from processors.config import RulesConfig, VehicleRulesConfig
from processors.rules.base import Condition, Record, Rule
from processors.rules.streak import NS, Streak
from processors.rules.vehicle.base import VehicleRule, common_kwargs
from processors.rules.vehicle.geo import Areas, LocalProjection, model_sites, projection_for


class _Stop:
    __slots__ = ("loaded", "outside", "payload", "since", "streak", "x", "y")

    def __init__(self) -> None:
        self.since: int | None = None
        self.x = self.y = 0.0
        self.loaded = False
        self.outside: bool | None = None  # cached site test for this stop
        self.payload: str | None = None  # last known payload_state
        self.streak = Streak()


class IllegalDump(VehicleRule):
    """A loaded muck truck standing for long somewhere that is not a disposal site or depot."""

    name: ClassVar[str] = "illegal_dump"
    kind: ClassVar[str] = "illegal_dump"
    severity: ClassVar[str] = "major"
    description: ClassVar[str] = "loaded, stopped > 10 min outside disposal sites and depots"
    fresh_clears: ClassVar[bool] = True

    def __init__(
        self,
        proj: LocalProjection,
        sites: Iterable[BaseGeometry],
        cfg: VehicleRulesConfig | None = None,
        hold_s: float = 600.0,
        repeat_s: float = 60.0,
    ) -> None:
        super().__init__(proj, cfg, hold_s, repeat_s)
        self.sites = Areas(proj.geom(g) for g in sites)
        self.after_ns = int(self.cfg.dump_after_min * 60 * NS)
        self.r2 = self.cfg.stop_radius_m**2
        self.stops: dict[str, _Stop] = {}

    def on_reading(self, rec: Record, out: list[Condition]) -> None:
        if rec.get("vehicle_kind") != "muck":
            return
        dev, ts = rec["device_id"], rec["ts"]
        st = self.stops.get(dev)
        if st is None:
            st = self.stops[dev] = _Stop()
        pl = rec.get("payload_state")
        if pl is not None and ts > st.streak.last_ts:
            st.payload = pl
        xy = self._good_fix(rec)
        if xy is None:
            return
        x, y = xy
        bad: bool | None = False
        if self._speed(rec) < self.cfg.dump_stop_kmh:
            if st.since is None or (x - st.x) ** 2 + (y - st.y) ** 2 > self.r2:
                st.since, st.x, st.y, st.outside = ts, x, y, None
                st.loaded = False
            # It may unload during the stop: loaded at any point of it is enough.
            st.loaded = st.loaded or st.payload == "loaded"
            bad = None
            if st.loaded and ts - st.since > self.after_ns:
                if st.outside is None:
                    st.outside = not self.sites.contains(st.x, st.y)
                bad = st.outside
        else:
            st.since = None
        r = st.streak.step(ts, bad, self.p)
        if r:
            mins = (ts - st.since) / (60 * NS) if st.since is not None else 0.0
            self._emit(
                r,
                rec,
                out,
                f"loaded and stopped {mins:.0f} min outside disposal sites and depots",
                mins,
                off_msg="moving again",
            )


def build(cfg: RulesConfig, city: Any) -> Rule | None:
    if city is None:
        return None
    return IllegalDump(projection_for(city), model_sites(city), **common_kwargs(cfg))
