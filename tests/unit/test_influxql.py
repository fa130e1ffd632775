"""citywatch.influxql: what it sends, and that a refused query is an error, never "no data"."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from citywatch import credentials, influxql
from citywatch.settings import Settings

SERIES = [
    {"name": "bin", "tags": {"district": "n"}, "columns": ["time", "c"], "values": [[1, 2]]},
    {"name": "bin", "tags": {"district": "s"}, "columns": ["time", "c"], "values": [[1, 3]]},
]


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Answers each GET with ``sent["answer"]`` and records what was asked."""
    seen: dict[str, Any] = {"answer": {"results": [{"statement_id": 0, "series": SERIES}]}}

    def get(url: str, **kw: Any) -> httpx.Response:
        seen.update(url=url, **kw)
        return httpx.Response(200, json=seen["answer"], request=httpx.Request("GET", url))

    monkeypatch.setattr(httpx, "get", get)
    monkeypatch.setattr(credentials, "password", lambda s, name: "pw")
    return seen


def test_rows_flattens_every_series(sent: dict[str, Any]) -> None:
    assert influxql.rows(Settings(), "SELECT c FROM bin GROUP BY district") == [[1, 2], [1, 3]]
    assert "epoch" not in sent["params"]
    # Basic auth: a password in the URL would end up in logs.
    assert sent["auth"] == (Settings().influx.admin_user, "pw")
    assert "p" not in sent["params"] and "pw" not in sent["url"]


def test_series_keeps_tags_and_asks_for_the_epoch(sent: dict[str, Any]) -> None:
    got = influxql.series(Settings(), "q")
    assert [x["tags"]["district"] for x in got] == ["n", "s"]
    assert sent["params"]["epoch"] == "ns"
    influxql.series(Settings(), "q", epoch=None)
    assert "epoch" not in sent["params"]


@pytest.mark.parametrize("call", [influxql.rows, influxql.series])
def test_a_refused_query_raises_instead_of_reading_as_empty(
    sent: dict[str, Any], call: Any
) -> None:
    sent["answer"] = {"results": [{"statement_id": 0, "error": "undefined function nope()"}]}
    with pytest.raises(RuntimeError, match="undefined function"):
        call(Settings(), "SELECT nope(c) FROM bin")


def test_no_results_is_empty(sent: dict[str, Any]) -> None:
    sent["answer"] = {"results": [{"statement_id": 0}]}
    assert influxql.rows(Settings(), "q") == []
    assert influxql.series(Settings(), "q") == []


def test_a_refused_statement_raises_too(monkeypatch: pytest.MonkeyPatch) -> None:
    refused = {"results": [{"statement_id": 0, "error": "database not found: nope"}]}

    def post(url: str, **kw: Any) -> httpx.Response:
        return httpx.Response(200, json=refused, request=httpx.Request("POST", url))

    monkeypatch.setattr(httpx, "post", post)
    monkeypatch.setattr(credentials, "password", lambda s, name: "pw")
    with pytest.raises(RuntimeError, match="database not found"):
        influxql.execute(Settings(), "DELETE FROM bin WHERE time < 0")
    refused = {"results": [{"statement_id": 0}]}
    influxql.execute(Settings(), "DELETE FROM bin WHERE time < 0")
