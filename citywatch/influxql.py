"""InfluxQL against citywatch's database: its rows or its series, or a statement that changes data.

Example:
    >>> from citywatch.settings import Settings
    >>> rows(Settings(), "SELECT count(fill_ratio) FROM bin")  # doctest: +SKIP
    [['1970-01-01T00:00:00Z', 1234]]
    >>> execute(Settings(), "DELETE FROM bin WHERE time < 0")  # doctest: +SKIP
    >>> write(Settings(), "bin,device_id=bin-1 fill_ratio=0.5 0")  # doctest: +SKIP
    >>> print(id_regex(["lamp-1", "bin-2"]))
    /^(lamp\\-1|bin\\-2)$/
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import httpx

from citywatch import credentials
from citywatch.settings import Settings


def auth(s: Settings) -> tuple[str, str]:
    """The admin user's credentials, for HTTP basic auth on any InfluxDB request.

    Basic auth, not the ``u``/``p`` URL parameters InfluxDB 1.x also takes: a URL ends up in
    logs and error messages.
    """
    return s.influx.admin_user, credentials.password(s, "influx")


def _results(s: Settings, q: str, timeout_s: float, epoch: str | None) -> list[dict[str, Any]]:
    params = {"db": s.influx.database, "q": q}
    if epoch:
        params["epoch"] = epoch
    r = httpx.get(f"{s.influx.url}/query", params=params, auth=auth(s), timeout=timeout_s)
    return _accepted(q, r)


def _accepted(q: str, r: httpx.Response) -> list[dict[str, Any]]:
    """The answer's results; httpx.HTTPStatusError on an HTTP error, RuntimeError if InfluxDB
    refused the statement."""
    r.raise_for_status()
    results: list[dict[str, Any]] = r.json().get("results", [])
    for res in results:
        # A refused statement answers 200 with an error inside: never read it as "no data".
        if "error" in res:
            raise RuntimeError(f"InfluxDB refused {q[:80]!r}: {res['error']}")
    return results


def rows(s: Settings, q: str, timeout_s: float = 30.0) -> list[list[Any]]:
    """All rows of all series of the query's results, times as RFC 3339 strings.

    Raises httpx.HTTPError on failure, RuntimeError when InfluxDB refused the query.
    """
    out: list[list[Any]] = []
    for res in _results(s, q, timeout_s, None):
        for ser in res.get("series", []) or []:
            out.extend(ser.get("values", []))
    return out


def series(
    s: Settings, q: str, timeout_s: float = 300.0, epoch: str | None = "ns"
) -> list[dict[str, Any]]:
    """The series of one query as InfluxDB returns them (``tags``, ``values``), times in
    ``epoch`` units (``None``: RFC 3339 strings).

    Raises httpx.HTTPError on failure, RuntimeError when InfluxDB refused the query.
    """
    results = _results(s, q, timeout_s, epoch)
    return list(results[0].get("series") or []) if results else []


def execute(s: Settings, q: str, timeout_s: float = 120.0) -> None:
    """Run a statement that changes data (DELETE, DROP ...): InfluxDB wants those POSTed.

    Raises httpx.HTTPError on failure, RuntimeError when InfluxDB refused the statement.
    """
    r = httpx.post(
        f"{s.influx.url}/query",
        params={"db": s.influx.database},
        data={"q": q},
        auth=auth(s),
        timeout=timeout_s,
    )
    _accepted(q, r)


def write_request(
    s: Settings, db: str | None = None, rp: str | None = None, precision: str = "ns"
) -> tuple[str, dict[str, str]]:
    """URL and parameters of a line-protocol write to InfluxDB's 1.x ``/write`` (the lines
    are the POST body). For the benchmarks, whose ceilings must not pay for a client library,
    and for tests; the pipeline writes through influxdb-client (processors/sinks/influx.py).

    >>> write_request(Settings(), rp="kpi", precision="s")[1]
    {'db': 'citywatch', 'precision': 's', 'rp': 'kpi'}
    """
    params = {"db": db or s.influx.database, "precision": precision}
    if rp:
        params["rp"] = rp
    return f"{s.influx.url}/write", params


def write(
    s: Settings,
    lines: str | bytes,
    *,
    db: str | None = None,
    rp: str | None = None,
    precision: str = "ns",
    timeout_s: float = 120.0,
) -> None:
    """Write line protocol as it is (``write_request``). Raises httpx.HTTPError on failure."""
    url, params = write_request(s, db, rp, precision)
    httpx.post(
        url, params=params, content=lines, auth=auth(s), timeout=timeout_s
    ).raise_for_status()


def id_regex(ids: Iterable[str]) -> str:
    """An InfluxQL regex literal matching exactly these tag values."""
    return "/^(" + "|".join(re.escape(i).replace("/", "\\/") for i in ids) + ")$/"
