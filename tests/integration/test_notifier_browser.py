"""Live operations page in headless Chromium (Debian's /usr/bin/chromium via Playwright):
a new alert appears without reload, filters work, acknowledge/resolve buttons move orders."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from citywatch.settings import Settings
from notifier.store import Store

from .helpers import start_group_at_end, wait_for, wait_log
from .test_notifier_support import Receivers, alert, free_port, produce_alerts, write_config

pytestmark = pytest.mark.integration
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
def receivers(stack_settings: Settings, rid: str) -> Iterator[Receivers]:
    r = Receivers(stack_settings, f"crew-{rid}").start()
    yield r
    r.stop()


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium not installed")
async def test_live_page_shows_new_alert_and_acts(
    stack_settings: Settings, spawn: Any, rid: str, receivers: Receivers, tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright, expect

    s = stack_settings
    db = tmp_path / "orders.db"
    cfg = write_config(tmp_path / "c.toml", rid, receivers, db)
    env = {"CITYWATCH_CONFIG": str(cfg)}
    await start_group_at_end(s, f"citywatch-notifier-test-{rid}", s.kafka.alerts_topic)
    st = Store(f"sqlite:///{db}")
    st.create_schema()
    token = st.create_token(receivers.crew, "crew", [f"d{rid}"])
    port = free_port()
    notify = spawn("notify", env=env, name="notify")
    api = spawn("api", "--port", str(port), env=env, name="api")
    wait_log(notify, "notifier running", 60)
    wait_log(api, "Uvicorn running", 60)
    t0 = time.time_ns()
    await produce_alerts(
        s, [alert(rid, f"L{rid}", f"lamp-{rid}", "lamp_out", "major", "raised", t0)]
    )
    # Other tests' alerts share the topic (they go to nobody-<rid>): wait for ours.
    assert wait_for(lambda: st.list_orders(crew_id=receivers.crew), 60)

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = await browser.new_page()
        await page.goto(f"http://127.0.0.1:{port}/")
        await page.fill("#token", "wrong")
        await page.click("#login button")
        await expect(page.locator("#login-error")).to_have_text("token rejected")
        await page.fill("#token", token)
        await page.click("#login button")
        await expect(page.locator("#conn")).to_have_text("live")
        rows = page.locator("#orders tbody tr")
        await expect(rows).to_have_count(1)

        # A new alert arrives through Kafka and the notifier: the row appears, no reload.
        await page.evaluate("window.__marker = 42")
        await produce_alerts(
            s, [alert(rid, f"F{rid}", f"bin-{rid}", "bin_fire", "critical", "raised", t0 + 1)]
        )
        fire = rows.filter(has_text=f"bin-{rid}")
        await expect(fire).to_have_count(1, timeout=30_000)
        assert await page.evaluate("window.__marker") == 42  # same document: not reloaded

        await page.select_option("#f-severity", "critical")
        await expect(rows).to_have_count(1)
        await page.select_option("#f-severity", "")
        await expect(rows).to_have_count(2)

        await fire.locator("button[data-action=ack]").click()
        await expect(fire.locator("td").nth(2)).to_have_text("acknowledged")
        await fire.locator("input").fill("fire out, bin replaced")
        await fire.locator("button[data-action=resolve]").click()
        await expect(rows).to_have_count(1)
        await browser.close()

    done = [o for o in st.list_orders(statuses=["resolved"]) if o["target"] == f"bin-{rid}"]
    assert done and done[0]["resolved_by"] == receivers.crew
    assert done[0]["resolution_note"] == "fire out, bin replaced"
