"""``citywatch dashboards build``: the dashboards as JSON under dashboards/json/ (committed).

tests/unit/test_dashboards.py fails when the committed JSON differs from what the builders
produce, so a change to a query or a panel ships only with its regenerated JSON.

Example:
    >>> from citywatch.settings import Settings
    >>> sorted(render(Settings()))[:2]
    ['citywatch-dust.json', 'citywatch-muck.json']
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.cog.encoder import JSONEncoder

from citywatch.settings import Settings
from dashboards.boards import build_all

JSON_DIR = Path(__file__).resolve().parent / "json"


def as_dict(obj: object) -> dict[str, Any]:
    """A built SDK object as plain JSON data (the SDK's own encoder)."""
    out: dict[str, Any] = json.loads(json.dumps(obj, cls=JSONEncoder))
    return out


def render(s: Settings) -> dict[str, str]:
    """File name -> JSON text, for every dashboard."""
    out: dict[str, str] = {}
    for d in build_all(s):
        data = as_dict(d)
        # Grafana wants panel ids unique within a dashboard; the builders leave them 0.
        for i, panel in enumerate(data.get("panels", []), start=1):
            panel["id"] = i
        text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False)
        out[f"{data['uid']}.json"] = text + "\n"
    return out


def write(s: Settings, out_dir: Path = JSON_DIR) -> list[Path]:
    """Write every dashboard; remove JSON files of dashboards that no longer exist."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = render(s)
    for stale in out_dir.glob("*.json"):
        if stale.name not in files:
            stale.unlink()
    paths = []
    for name, text in files.items():
        p = out_dir / name
        if not p.exists() or p.read_text() != text:
            p.write_text(text)
        paths.append(p)
    return paths


def stale(s: Settings, out_dir: Path = JSON_DIR) -> list[str]:
    """Names of dashboards whose committed JSON differs from the builders' output."""
    files = render(s)
    bad = [
        n for n, t in files.items() if not (out_dir / n).exists() or (out_dir / n).read_text() != t
    ]
    bad += [p.name for p in out_dir.glob("*.json") if p.name not in files]
    return sorted(bad)
