"""Run an InfluxQL query against citywatch's database and get its rows, or run a statement.

Example:
    >>> from citywatch.settings import Settings
    >>> rows(Settings(), "SELECT count(fill_ratio) FROM bin")  # doctest: +SKIP
    [['1970-01-01T00:00:00Z', 1234]]
    >>> execute(Settings(), "DELETE FROM bin WHERE time < 0")  # doctest: +SKIP
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


def _params(s: Settings) -> dict[str, str]:
    return {
        "db": s.influx.database,
        "u": s.influx.admin_user,
        "p": credentials.password(s, "influx"),
    }


def rows(s: Settings, q: str, timeout_s: float = 30.0) -> list[list[Any]]:
    """All rows of all series of the query's results; raises httpx.HTTPError on failure."""
    r = httpx.get(f"{s.influx.url}/query", params={**_params(s), "q": q}, timeout=timeout_s)
    r.raise_for_status()
    out: list[list[Any]] = []
    for res in r.json().get("results", []):
        for series in res.get("series", []) or []:
            out.extend(series.get("values", []))
    return out


def execute(s: Settings, q: str, timeout_s: float = 120.0) -> None:
    """Run a statement that changes data (DELETE, DROP ...): InfluxDB wants those POSTed.

    Raises httpx.HTTPError on failure, RuntimeError when InfluxDB refused the statement.
    """
    r = httpx.post(f"{s.influx.url}/query", params=_params(s), data={"q": q}, timeout=timeout_s)
    r.raise_for_status()
    for res in r.json().get("results", []):
        if "error" in res:
            raise RuntimeError(f"InfluxDB refused {q[:80]!r}: {res['error']}")


def id_regex(ids: Iterable[str]) -> str:
    """An InfluxQL regex literal matching exactly these tag values."""
    return "/^(" + "|".join(re.escape(i).replace("/", "\\/") for i in ids) + ")$/"
