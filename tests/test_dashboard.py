"""The dashboard in real headless Chromium (Debian package, driven by Playwright): charts render with data, the range
picker decides what every chart asks for (and lives in the URL), the health strip shows what /api/status said, and
the quality view shows the rejected records of a real Paimon table per reason."""

from __future__ import annotations

import json
import math
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from clickhouse.api import STATIC_FILES
from clickhouse.schema import SchemaOptions
from clickhouse.service import Service
from clickhouse.store import apply_schema
from clickhouse.testing import scratch_settings
from tests.test_clickhouse_api import DAY, lake_routes, seed, seed_rejects

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
CHARTS = ("events", "actionTypes", "topUsers", "distribution", "rejects")
RANGED = ("/api/events", "/api/action-types", "/api/top-users", "/api/distribution")  # the ClickHouse charts
DAY_VIEW = f"/?from={DAY:%Y-%m-%dT%H:%M:%S.000Z}&to={DAY + timedelta(days=1):%Y-%m-%dT%H:%M:%S.000Z}"


@pytest.fixture(scope="module")
def dashboard(settings, tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: sudo apt-get install chromium (needed only by this test)", pytrace=False)
    if not STATIC_FILES["/static/vendor/chart.umd.min.js"].exists():
        pytest.fail("chart.js is missing from clickhouse/static/vendor (package data): scripts/vendor_chartjs.sh",
                    pytrace=False)
    lake_routes()
    lake, _ = seed_rejects(scratch_settings(settings), tmp_path_factory.mktemp("warehouse"))
    db = f"t_{uuid.uuid4().hex[:10]}"
    service = Service(lake, SchemaOptions(database=db), loader_options=None, port=0)
    apply_schema(service.clients.get(), SchemaOptions(database=db))  # an administrator's: the API runs no DDL
    service.start()
    client = service.clients.get()
    seed(client, db)
    now = datetime.now(UTC).replace(microsecond=0)
    # what the health strip reads besides the aggregates: two dead letters, a restated slot, a maintenance pass
    client.insert(f"{db}.aggregate_rejects", [
        ["user_aggregations", 0, 7, "k", "v", "missing field: version", now - timedelta(minutes=3)],
        ["user_aggregations_realtime", 1, 9, "k", "v", "not JSON", now - timedelta(minutes=2)]],
        column_names=["topic", "partition", "offset", "raw_key", "raw_value", "reason", "rejected_at"])
    client.insert(f"{db}.restatements", [[DAY + timedelta(hours=10), now - timedelta(hours=1), 48, 3, 1]],
                  column_names=["slot_start", "restated_at", "lake_events", "rows_upserted", "rows_deleted"])
    pass_row = [now - timedelta(minutes=10), 4.5, 2, 12, 1, 3, 1, 0, "", 1, 128, 5, 640, 0]
    client.insert(f"{db}.maintenance_passes", [pass_row],
                  column_names=["finished_at", "duration_s", "compacted_slots", "snapshots_expired",
                                "partitions_expired", "orphans_removed", "restated_slots", "errors", "error",
                                "open_slots", "open_files", "closed_slots", "closed_files", "uncompacted_slots"])
    yield service.url
    service.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


class Page:
    """A tab on the dashboard that records every API request the page makes."""

    def __init__(self, browser, base: str) -> None:
        self.base = base
        self.page = browser.new_page(viewport={"width": 1280, "height": 1100})
        self.requests: list[str] = []
        self.failed: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("requestfailed", lambda r: self.failed.append(r.url))

    def open(self, path: str) -> None:
        self.page.goto(self.base + path, wait_until="load")

    def shown(self, key: str) -> None:
        """Wait until the page has drawn a refresh for the range ``key`` ("6h", or "from/to" in ISO)."""
        self.page.wait_for_function("key => document.body.dataset.shown === key", arg=key, timeout=30_000)

    def last(self, path: str) -> dict[str, str]:
        """The query of the newest request to ``path``."""
        for url in reversed(self.requests):
            parts = urlsplit(url)
            if parts.path == path:
                return {k: v[0] for k, v in parse_qs(parts.query).items()}
        raise AssertionError(f"no request to {path}: {self.requests[-20:]}")

    def span(self, path: str) -> tuple[datetime, datetime]:
        q = self.last(path)
        return _time(q["from"]), _time(q["to"])

    def card(self, card_id: str) -> tuple[str, str, str]:
        """(value, detail, level) of a health card."""
        return tuple(self.page.evaluate("""id => { const c = document.getElementById(id);
            return [c.querySelector('.value').textContent, c.querySelector('.detail').textContent,
                    c.dataset.level]; }""", card_id))


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def test_dashboard_renders_charts_with_data(dashboard, browser, tmp_path):
    shot = Path(os.environ.get("DASHBOARD_SCREENSHOT", tmp_path / "dashboard.png"))
    tab = Page(browser, dashboard)
    tab.open(DAY_VIEW)  # the day the seed wrote
    tab.shown(f"{_iso(DAY)}/{_iso(DAY + timedelta(days=1))}")
    assert tab.page.inner_text("#error") == ""
    counts = tab.page.evaluate(
        "ids => ids.map(id => { const c = Chart.getChart(id); return c ? c.data.datasets[0].data.length : -1; })",
        list(CHARTS))
    assert dict(zip(CHARTS, counts, strict=True)) == {"events": 4, "actionTypes": 3, "topUsers": 4,
                                                      "distribution": 3, "rejects": 24}
    # Painted, not just configured: each canvas has many non-transparent pixels.
    painted = tab.page.evaluate("""ids => ids.map(id => {
        const c = document.getElementById(id);
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
        return n; })""", list(CHARTS))
    assert all(n > 2000 for n in painted), painted
    assert "no data yet" not in tab.page.inner_text("#latest")
    tab.page.screenshot(path=str(shot), full_page=True)
    assert not tab.failed, tab.failed  # everything (chart library included) came from the service itself
    tab.page.close()
    assert shot.stat().st_size > 20_000


def test_quality_chart_shows_the_lakes_rejects_per_reason(dashboard, browser):
    tab = Page(browser, dashboard)
    tab.open(DAY_VIEW)
    tab.shown(f"{_iso(DAY)}/{_iso(DAY + timedelta(days=1))}")
    assert tab.last("/api/rejects") == {"from": _iso(DAY), "to": _iso(DAY + timedelta(days=1))}
    stacked = tab.page.evaluate("""() => { const c = Chart.getChart('rejects');
        return {labels: c.data.labels, sets: c.data.datasets.map(d => [d.label, d.data]),
                stacked: [c.options.scales.x.stacked, c.options.scales.y.stacked]}; }""")
    assert stacked["labels"] == [f"{h:02d}:00" for h in range(24)]
    assert stacked["stacked"] == [True, True]
    # the seeded rows of the day per reason and hour (tests/test_clickhouse_api.py REJECTS), most frequent first
    expected = {"unparseable JSON (4)": {10: 3, 12: 1}, "unknown action_type (2)": {12: 2},
                "user_id out of range (1)": {10: 1}}
    assert [label for label, _ in stacked["sets"]] == list(expected)
    for label, data in stacked["sets"]:
        assert {h: n for h, n in enumerate(data) if n} == expected[label], label
    note = tab.page.inner_text("#rejects-note")
    assert note.startswith("7 rejected records by ingest time; lake read: 1 partitions, 2 files, 7 rows"), note
    tab.page.close()


def test_range_picker_decides_what_every_chart_asks_for_and_lives_in_the_url(dashboard, browser):
    tab = Page(browser, dashboard)
    tab.open("/")
    tab.shown("24h")  # the default: the last 24 hours
    assert tab.page.get_attribute('#picker button[data-range="24h"]', "aria-pressed") == "true"
    for path in RANGED:
        start, end = tab.span(path)
        assert end - start == timedelta(hours=24), path
    assert tab.last("/api/events")["window"] == "5m"

    tab.page.click('#picker button[data-range="6h"]')
    tab.shown("6h")
    assert urlsplit(tab.page.url).query == "range=6h"
    spans = {path: tab.span(path) for path in RANGED}
    assert all(end - start == timedelta(hours=6) for start, end in spans.values()), spans
    assert abs(spans["/api/events"][1] - datetime.now(UTC)) < timedelta(minutes=1)  # up to now
    # the quality chart asks for whole hours covering the same range (its buckets; the service caches them)
    lo, hi = tab.span("/api/rejects")
    start, end = spans["/api/events"]
    assert lo == start.replace(minute=0, second=0) and lo.minute == hi.minute == hi.second == 0
    assert end <= hi < end + timedelta(hours=1)

    tab.page.click('#picker button[data-range="7d"]')
    tab.shown("7d")
    assert all(end - start == timedelta(days=7) for start, end in (tab.span(p) for p in RANGED))
    assert tab.last("/api/events")["window"] == "2h"  # 5-minute points over a week would be 2,016
    assert tab.page.inner_text("#events-title") == "Actions per 2 hours"

    tab.page.reload(wait_until="load")  # the URL keeps the choice
    tab.shown("7d")
    assert tab.page.get_attribute('#picker button[data-range="7d"]', "aria-pressed") == "true"
    assert all(end - start == timedelta(days=7) for start, end in (tab.span(p) for p in RANGED))

    # custom: from/to as typed (UTC), every chart asks for exactly that, and the link reproduces it
    tab.page.click('#picker button[data-range="custom"]')
    tab.page.fill("#custom-from", f"{DAY + timedelta(hours=10):%Y-%m-%dT%H:%M}")
    tab.page.fill("#custom-to", f"{DAY + timedelta(hours=14):%Y-%m-%dT%H:%M}")
    tab.page.click("#custom-apply")
    key = f"{_iso(DAY + timedelta(hours=10))}/{_iso(DAY + timedelta(hours=14))}"
    tab.shown(key)
    assert all(tab.span(p) == (DAY + timedelta(hours=10), DAY + timedelta(hours=14)) for p in (*RANGED,
                                                                                                "/api/rejects"))
    assert tab.page.evaluate("Chart.getChart('events').data.datasets[0].data") == [3, 4, 5, 2]
    assert tab.page.evaluate("Chart.getChart('rejects').data.labels") == ["10:00", "11:00", "12:00", "13:00"]
    link = tab.page.url
    assert parse_qs(urlsplit(link).query) == {"from": [_iso(DAY + timedelta(hours=10))],
                                              "to": [_iso(DAY + timedelta(hours=14))]}
    other = Page(browser, dashboard)
    other.page.goto(link, wait_until="load")
    other.shown(key)
    assert other.page.evaluate("Chart.getChart('events').data.datasets[0].data") == [3, 4, 5, 2]
    other.page.close()

    # a range the API would refuse is not applied
    tab.page.fill("#custom-from", f"{DAY + timedelta(hours=15):%Y-%m-%dT%H:%M}")
    tab.page.click("#custom-apply")
    assert tab.page.inner_text("#range-error") == "'from' must be before 'to'"
    assert tab.page.url == link

    tab.page.go_back()  # the browser's history holds the ranges chosen
    tab.shown("7d")
    assert all(end - start == timedelta(days=7) for start, end in (tab.span(p) for p in RANGED))
    assert not tab.failed, tab.failed
    tab.page.close()


def _age(seconds: float) -> str:
    """dashboard.js fmtAge (Math.round: halves up)."""
    def rnd(x: float) -> int:
        return math.floor(x + 0.5)

    if seconds < 120:
        return f"{rnd(seconds)} s"
    if seconds < 7200:
        return f"{rnd(seconds / 60)} min"
    if seconds < 172800:
        return f"{rnd(seconds / 3600)} h"
    return f"{rnd(seconds / 86400)} days"


def test_health_strip_shows_the_figures_of_api_status(dashboard, browser):
    tab = Page(browser, dashboard)
    served: list[dict] = []
    patch: dict = {}

    def status(route) -> None:  # the service's own answer, recorded (and changed where a case needs it)
        response = route.fetch()
        body = response.json()
        for key, value in patch.items():
            if value is None:
                body.pop(key, None)
            else:
                body[key] = {**body[key], **value} if isinstance(body.get(key), dict) else value
        served.append(body)
        route.fulfill(response=response, body=json.dumps(body))

    tab.page.route("**/api/status", status)
    tab.open(DAY_VIEW)
    tab.shown(f"{_iso(DAY)}/{_iso(DAY + timedelta(days=1))}")
    body = served[-1]
    tables = {t["table"]: t for t in body["tables"]}
    for table, t in tables.items():
        value, detail, level = tab.card(f"fresh-{table}")
        # the seeded windows ended yesterday: past the red threshold for both window lengths
        assert (value, level) == (_age(t["freshness_seconds"]), "bad"), table
        assert detail == f"newest window ends {t['latest_window_end'][:16].replace('T', ' ')}"
    assert tab.card("loader") == ("off", "this service runs no loader", "none")  # an API-only service
    assert body["dead_letters"]["total"] == 2
    assert tab.card("dead-letters") == ("2", "newest: user_aggregations_realtime, not JSON", "warn")
    assert tab.card("restated") == (
        f"slot {DAY + timedelta(hours=10):%Y-%m-%d %H:%M}",
        f"at {body['restatements'][0]['restated_at'][:16].replace('T', ' ')}: 48 lake events, 3 rows upserted, "
        "1 deleted", "ok")
    last = body["maintenance"]["last_pass"]
    assert tab.card("maintenance") == (
        f"{_age((_time(body['now']) - _time(last['finished_at'])).total_seconds())} ago",
        "2 slots compacted, 12 snapshots and 1 partitions expired, 3 orphans removed, 1 slots restated, 0 errors; "
        "1 passes in 24 h", "ok")

    # the thresholds: a loader behind and waiting for ClickHouse, fresh-enough tables, a failing maintenance pass
    refreshed = int(tab.page.evaluate("document.body.dataset.refreshed"))
    patch.update({
        "loader": {"running": True, "lag_total": 1_234_567, "rows_per_second": 2500.4,
                   "waiting_for_clickhouse_s": 75.0},
        "tables": [{**tables["user_aggregations_realtime"], "freshness_seconds": 16 * 60},
                   {**tables["user_aggregations"], "freshness_seconds": 2 * 3600 + 300},
                   {**tables["user_action_aggregations"], "freshness_seconds": 3 * 3600}],
        "maintenance": {"passes": 3, "last_pass": {**last, "errors": 1, "error": "compact: conflict"}},
    })
    tab.page.wait_for_function("n => Number(document.body.dataset.refreshed) > n + 1", arg=refreshed,
                               timeout=30_000)
    assert tab.card("loader") == ("1,234,567 records", "waiting for ClickHouse 75 s; 2,500 rows/s", "bad")
    assert tab.card("fresh-user_aggregations_realtime")[::2] == ("16 min", "warn")  # > 15 min
    assert tab.card("fresh-user_aggregations")[::2] == ("2 h", "ok")  # 2 h 5 min: a 2-hour window, within 2 h 10 min
    assert tab.card("fresh-user_action_aggregations")[::2] == ("3 h", "bad")  # > 2 h 55 min
    value, detail, level = tab.card("maintenance")
    assert (level, detail.endswith("1 errors (compact: conflict); 3 passes in 24 h")) == ("bad", True), detail

    patch.clear()
    patch["maintenance"] = None  # before the first pass (or a service that does not report it)
    refreshed = int(tab.page.evaluate("document.body.dataset.refreshed"))
    tab.page.wait_for_function("n => Number(document.body.dataset.refreshed) > n + 1", arg=refreshed,
                               timeout=30_000)
    assert "maintenance" not in served[-1]
    assert tab.card("maintenance") == ("no pass recorded", "", "none")
    tab.page.close()
