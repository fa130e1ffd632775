"""Panel builders shared by the dashboards: InfluxQL targets and the panel kinds we use.

grafana-foundation-sdk ships no InfluxDB query type, so :class:`InfluxQuery` is the one
dataquery written here (a raw InfluxQL target, as Grafana's InfluxDB datasource stores it);
everything else is the SDK's builders.

Example:
    >>> from dashboards.kpis import kpis
    >>> from citywatch.settings import Settings
    >>> p = kpi_stat(kpis(Settings())["bins_over"], "citywatch-influxdb").build()
    >>> p.type_val, p.targets[0].to_json()["rawQuery"]
    ('stat', True)
"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import (
    bargauge,
    expr,
    geomap,
    stat,
    table,
    text,
    timeseries,
)
from grafana_foundation_sdk.builders import (
    common as cb,
)
from grafana_foundation_sdk.builders import (
    dashboard as db,
)
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dm

from dashboards.kpis import Format, Kpi

INFLUX_TYPE = "influxdb"


class InfluxQuery(cogvariants.Dataquery):
    """A raw InfluxQL target of Grafana's InfluxDB datasource."""

    def __init__(self, ref_id: str, query: str, fmt: Format, ds_uid: str, alias: str = "") -> None:
        self.ref_id = ref_id
        self.query = query
        self.fmt = fmt
        self.ds_uid = ds_uid
        self.alias = alias

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "refId": self.ref_id,
            "datasource": {"type": INFLUX_TYPE, "uid": self.ds_uid},
            "rawQuery": True,
            "query": self.query,
            "resultFormat": self.fmt,
        }
        if self.alias:
            out["alias"] = self.alias
        return out


class Influx(cogbuilder.Builder[InfluxQuery]):
    def __init__(self, ref_id: str, query: str, fmt: Format, ds_uid: str, alias: str = "") -> None:
        self._q = InfluxQuery(ref_id, query, fmt, ds_uid, alias)

    def build(self) -> InfluxQuery:
        return self._q


def ds_ref(uid: str) -> dm.DataSourceRef:
    return dm.DataSourceRef(type_val=INFLUX_TYPE, uid=uid)


def target(k: Kpi, ds: str, ref: str = "A", alias: str = "") -> Influx:
    return Influx(ref, k.query, k.fmt, ds, alias)


def thresholds(*steps: tuple[float | None, str]) -> db.ThresholdsConfig:
    return (
        db.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=v, color=c) for v, c in steps])
    )


def kpi_stat(
    k: Kpi,
    ds: str,
    *,
    span: int = 4,
    steps: tuple[tuple[float | None, str], ...] = ((None, "blue"),),
    description: str = "",
) -> stat.Panel:
    return (
        stat.Panel()
        .title(k.title)
        .description(description or k.doc)
        .datasource(ds_ref(ds))
        .with_target(target(k, ds))
        .unit(k.unit)
        .span(span)
        .height(5)
        .thresholds(thresholds(*steps))
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]))
        .color_mode(common.BigValueColorMode.BACKGROUND)
    )


def ratio_stat(
    title: str, num: Kpi, den: Kpi, expression: str, ds: str, *, span: int = 6
) -> stat.Panel:
    """A stat of a server-side math expression over two InfluxQL results (refIds A, B)."""
    math = expr.TypeMath().ref_id("C").expression(expression)
    return (
        stat.Panel()
        .title(title)
        .description(f"{expression} with A = {num.title}, B = {den.title}")
        .datasource(ds_ref(ds))
        .targets([target(num, ds, "A"), target(den, ds, "B"), math])
        .unit("percentunit")
        .span(span)
        .height(5)
        .thresholds(thresholds((None, "red"), (0.95, "orange"), (0.98, "green")))
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).fields("/^C$/"))
        .color_mode(common.BigValueColorMode.BACKGROUND)
    )


def series(
    title: str,
    ks: list[Kpi],
    ds: str,
    *,
    span: int = 12,
    unit: str | None = None,
    steps: tuple[tuple[float | None, str], ...] | None = None,
    bars: bool = False,
) -> timeseries.Panel:
    p = (
        timeseries.Panel()
        .title(title)
        .description("; ".join(k.doc for k in ks if k.doc))
        .datasource(ds_ref(ds))
        .targets([target(k, ds, chr(ord("A") + i)) for i, k in enumerate(ks)])
        .unit(unit or ks[0].unit)
        .span(span)
        .height(8)
    )
    if bars:
        p = p.draw_style(common.GraphDrawStyle.BARS).fill_opacity(60)
    if steps is not None:
        p = p.thresholds(thresholds(*steps)).thresholds_style(
            cb.GraphThresholdsStyleConfig().mode(common.GraphTresholdsStyleMode.LINE)
        )
    return p


def kpi_table(
    title: str,
    k: Kpi,
    ds: str,
    *,
    span: int = 12,
    transformations: list[dm.DataTransformerConfig] | None = None,
) -> table.Panel:
    p = (
        table.Panel()
        .title(title)
        .description(k.doc)
        .datasource(ds_ref(ds))
        .with_target(target(k, ds))
        .span(span)
        .height(9)
        .transformations([merge(), *(transformations or [])])
    )
    return p


def bars(title: str, k: Kpi, ds: str, *, span: int = 12) -> bargauge.Panel:
    return (
        bargauge.Panel()
        .title(title)
        .description(k.doc)
        .datasource(ds_ref(ds))
        .with_target(target(k, ds, alias="$tag_" + k.tags[0] if k.tags else ""))
        .unit(k.unit)
        .span(span)
        .height(8)
        .orientation(common.VizOrientation.HORIZONTAL)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]))
    )


def merge() -> dm.DataTransformerConfig:
    """Grafana's InfluxQL table format gives one frame per series; merge them into one."""
    return dm.DataTransformerConfig(id_val="merge", options={})


def calculate(alias: str, left: str, op: str, right: str) -> dm.DataTransformerConfig:
    return dm.DataTransformerConfig(
        id_val="calculateField",
        options={
            "mode": "binary",
            "alias": alias,
            "binary": {"left": left, "operator": op, "right": right},
        },
    )


def points_map(
    title: str,
    ks: list[Kpi],
    ds: str,
    *,
    lat: float,
    lon: float,
    color_field: str,
    span: int = 12,
    transformations: list[dm.DataTransformerConfig] | None = None,
    route: bool = False,
) -> geomap.Panel:
    """A Geomap of lat/lon rows, coloured by ``color_field`` (thresholds: 0 ok .. 3 critical)."""
    layer_cfg: dict[str, Any] = {
        "showLegend": True,
        "style": {
            "size": {"fixed": 5},
            "color": {"field": color_field, "fixed": "green"},
            "opacity": 0.8,
        },
    }
    layer = (
        cb.MapLayerOptions()
        .type("route" if route else "markers")
        .name(title)
        .config(layer_cfg)
        .location(
            cb.FrameGeometrySource()
            .mode(common.FrameGeometrySourceMode.COORDS)
            .latitude("lat")
            .longitude("lon")
        )
        .tooltip(True)
    )
    return (
        geomap.Panel()
        .title(title)
        .description("; ".join(k.doc for k in ks if k.doc))
        .datasource(ds_ref(ds))
        .targets([target(k, ds, chr(ord("A") + i)) for i, k in enumerate(ks)])
        .span(span)
        .height(12)
        .view(geomap.MapViewConfig().id("coords").lat(int(lat)).lon(int(lon)).zoom(12))
        .basemap(cb.MapLayerOptions().type("default").name("Basemap"))
        .layers([layer])
        .thresholds(thresholds((None, "green"), (1, "yellow"), (2, "orange"), (3, "red")))
        .transformations([merge(), *(transformations or [])])
    )


def note(title: str, markdown: str, *, span: int = 12) -> text.Panel:
    return text.Panel().title(title).content(markdown).span(span).height(4)


def variables(ds: str) -> list[cogbuilder.Builder[dm.VariableModel]]:
    """``$district`` (from the data) and ``$family`` (the four measurements), multi + All."""
    district = (
        db.QueryVariable("district")
        .label("District")
        .datasource(ds_ref(ds))
        .query('SHOW TAG VALUES WITH KEY = "district"')
        .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
    )
    family = (
        db.CustomVariable("family")
        .label("Family")
        .values("streetlight,bin,vehicle,dust")
        .multi(True)
        .include_all(True)
    )
    return [district, family]
