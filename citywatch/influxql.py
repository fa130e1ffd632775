"""Run an InfluxQL query against citywatch's database and get its rows.

Example:
    >>> from citywatch.settings import Settings
    >>> rows(Settings(), "SELECT count(fill_ratio) FROM bin")  # doctest: +SKIP
    [['1970-01-01T00:00:00Z', 1234]]
"""

from __future__ import annotations

from typing import Any

import httpx

from citywatch import credentials
from citywatch.settings import Settings


def rows(s: Settings, q: str, timeout_s: float = 30.0) -> list[list[Any]]:
    """All rows of all series of the query's results; raises httpx.HTTPError on failure."""
    r = httpx.get(
        f"{s.influx.url}/query",
        params={
            "db": s.influx.database,
            "u": s.influx.admin_user,
            "p": credentials.password(s, "influx"),
            "q": q,
        },
        timeout=timeout_s,
    )
    r.raise_for_status()
    out: list[list[Any]] = []
    for res in r.json().get("results", []):
        for series in res.get("series", []) or []:
            out.extend(series.get("values", []))
    return out
