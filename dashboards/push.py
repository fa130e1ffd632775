"""``citywatch dashboards push``: datasource, folder and dashboards into an existing Grafana.

Idempotent: the datasource is created or updated by uid, the folder created only when missing,
every dashboard uploaded with ``overwrite``. Uses grafana-client (Grafana's HTTP API); the
InfluxDB password is sent in ``secureJsonData`` and never logged.

No Grafana server runs on the development machines: tests/unit/test_dashboards_push.py checks
the requests against a local fake HTTP server; this was never run against a real Grafana.

Example:
    $ citywatch dashboards push --url http://grafana:3000 --token glsa_...
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaClientError

from citywatch import credentials
from citywatch.settings import Settings
from dashboards.build import render


def datasource(s: Settings, influx_url: str | None = None) -> dict[str, Any]:
    """The InfluxDB (InfluxQL) datasource as Grafana's API wants it."""
    g, i = s.grafana, s.influx
    return {
        "uid": g.datasource_uid,
        "name": g.datasource_name,
        "type": "influxdb",
        "access": "proxy",
        "url": influx_url or i.url,
        "user": i.admin_user,
        "database": i.database,
        "isDefault": False,
        "jsonData": {"dbName": i.database, "httpMode": "GET", "version": "InfluxQL"},
        "secureJsonData": {"password": credentials.password(s, "influx")},
    }


def push(
    s: Settings,
    url: str,
    token: str,
    *,
    influx_url: str | None = None,
    log: Callable[[str], None] = print,
) -> list[str]:
    """Upload everything; returns the uids of the dashboards uploaded."""
    api = GrafanaApi.from_url(url, credential=token)
    g = s.grafana
    ds = datasource(s, influx_url)
    try:
        api.datasource.get_datasource_by_uid(g.datasource_uid)
    except GrafanaClientError as exc:
        if getattr(exc, "status_code", None) != 404:
            raise
        api.datasource.create_datasource(ds)
        log(f"datasource {g.datasource_uid}: created")
    else:
        api.datasource.update_datasource_by_uid(g.datasource_uid, ds)
        log(f"datasource {g.datasource_uid}: updated")
    folder_uid = f"citywatch-{g.folder}".lower()
    try:
        api.folder.get_folder(folder_uid)
    except GrafanaClientError as exc:
        if getattr(exc, "status_code", None) != 404:
            raise
        api.folder.create_folder(g.folder, uid=folder_uid)
        log(f"folder {g.folder}: created")
    uids = []
    for name, text in sorted(render(s).items()):
        board = json.loads(text)
        board.pop("id", None)
        api.dashboard.update_dashboard(
            {
                "dashboard": board,
                "folderUid": folder_uid,
                "overwrite": True,
                "message": "citywatch dashboards push",
            }
        )
        uids.append(board["uid"])
        log(f"dashboard {name}: uploaded")
    return uids
