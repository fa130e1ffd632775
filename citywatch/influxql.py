"""InfluxQL against citywatch's database: its rows or its series, or a statement that changes data.

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


def _auth(s: Settings) -> tuple[str, str]:
    # Basic auth, not the ``u``/``p`` URL parameters InfluxDB 1.x also takes: a URL ends up
    # in logs and error messages.
    return s.influx.admin_user, credentials.password(s, "influx")


def rows(s: Settings, q: str, timeout_s: float = 30.0) -> list[list[Any]]:
    """All rows of all series of the query's results; raises httpx.HTTPError on failure."""
    r = httpx.get(
        f"{s.influx.url}/query",
        params={"db": s.influx.database, "q": q},
        auth=_auth(s),
        timeout=timeout_s,
    )
    r.raise_for_status()
    out: list[list[Any]] = []
    for res in r.json().get("results", []):
        for series in res.get("series", []) or []:
            out.extend(series.get("values", []))
    return out


def series(s: Settings, q: str, timeout_s: float = 300.0) -> list[dict[str, Any]]:
    """The series of one query as InfluxDB returns them (``tags``, ``values``), times in ns.

    Raises httpx.HTTPError on failure, RuntimeError when InfluxDB refused the query (where
    ``rows`` would return nothing, and an empty answer could be mistaken for no data).
    """
    r = httpx.get(
        f"{s.influx.url}/query",
        params={"db": s.influx.database, "q": q, "epoch": "ns"},
        auth=_auth(s),
        timeout=timeout_s,
    )
    r.raise_for_status()
    res = r.json()["results"][0]
    if "error" in res:
        raise RuntimeError(f"InfluxDB refused {q[:80]!r}: {res['error']}")
    return list(res.get("series") or [])


def execute(s: Settings, q: str, timeout_s: float = 120.0) -> None:
    """Run a statement that changes data (DELETE, DROP ...): InfluxDB wants those POSTed.

    Raises httpx.HTTPError on failure, RuntimeError when InfluxDB refused the statement.
    """
    r = httpx.post(
        f"{s.influx.url}/query",
        params={"db": s.influx.database},
        data={"q": q},
        auth=_auth(s),
        timeout=timeout_s,
    )
    r.raise_for_status()
    for res in r.json().get("results", []):
        if "error" in res:
            raise RuntimeError(f"InfluxDB refused {q[:80]!r}: {res['error']}")


def id_regex(ids: Iterable[str]) -> str:
    """An InfluxQL regex literal matching exactly these tag values."""
    return "/^(" + "|".join(re.escape(i).replace("/", "\\/") for i in ids) + ")$/"
