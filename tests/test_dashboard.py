"""The dashboard in real headless Chromium (Debian package, driven by Playwright): charts render with data."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from clickhouse.api import STATIC_FILES
from clickhouse.schema import SchemaOptions
from clickhouse.service import Service
from clickhouse.store import apply_schema
from clickhouse.testing import scratch_settings
from tests.test_clickhouse_api import seed

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
CHARTS = ("events", "actionTypes", "topUsers", "distribution")


@pytest.fixture(scope="module")
def dashboard(settings):
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: sudo apt-get install chromium (needed only by this test)", pytrace=False)
    if not STATIC_FILES["/static/vendor/chart.umd.min.js"].exists():
        pytest.fail("chart.js is missing from clickhouse/static/vendor (package data): scripts/vendor_chartjs.sh",
                    pytrace=False)
    db = f"t_{uuid.uuid4().hex[:10]}"
    service = Service(scratch_settings(settings), SchemaOptions(database=db), loader_options=None, port=0)
    apply_schema(service.clients.get(), SchemaOptions(database=db))  # an administrator's: the API runs no DDL
    service.start()
    seed(service.clients.get(), db)
    yield service.url
    service.stop()


def test_dashboard_renders_charts_with_data(dashboard, tmp_path):
    from playwright.sync_api import sync_playwright

    shot = Path(os.environ.get("DASHBOARD_SCREENSHOT", tmp_path / "dashboard.png"))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            failed: list[str] = []
            page.on("requestfailed", lambda r: failed.append(r.url))
            page.goto(dashboard + "/", wait_until="load")
            page.wait_for_function("Number(document.body.dataset.refreshed || 0) >= 1", timeout=20_000)
            assert page.inner_text("#error") == ""
            counts = page.evaluate(
                "ids => ids.map(id => { const c = Chart.getChart(id); "
                "return c ? c.data.datasets[0].data.length : -1; })",
                list(CHARTS),
            )
            assert dict(zip(CHARTS, counts, strict=True)) == {"events": 4, "actionTypes": 3, "topUsers": 4,
                                                              "distribution": 3}
            # Painted, not just configured: each canvas has many non-transparent pixels.
            painted = page.evaluate("""ids => ids.map(id => {
                const c = document.getElementById(id);
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
                return n; })""", list(CHARTS))
            assert all(n > 2000 for n in painted), painted
            assert "no data yet" not in page.inner_text("#latest")
            page.screenshot(path=str(shot), full_page=True)
            assert not failed, failed  # everything (chart library included) came from the service itself
        finally:
            browser.close()
    assert shot.stat().st_size > 20_000
