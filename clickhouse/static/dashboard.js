// Dashboard: a time range chosen in the header (kept in the URL, so a link or a reload shows the same view), a
// pipeline-health strip from /api/status, and charts over the range, redrawn every few seconds.
"use strict";
const REFRESH_MS = 5000;
const HOUR_MS = 3600 * 1000;
const PRESETS = { "1h": HOUR_MS, "6h": 6 * HOUR_MS, "24h": 24 * HOUR_MS, "7d": 7 * 24 * HOUR_MS };
const DEFAULT_PRESET = "24h";
const MAX_RANGE_MS = 366 * 24 * HOUR_MS;  // what the API accepts (clickhouse/api.py MAX_RANGE)
// Tableau 20: the job has about 25 reasons (one per missing or mistyped field), so ten colours would repeat too soon
const PALETTE = ["#4e79a7", "#a0cbe8", "#f28e2b", "#ffbe7d", "#59a14f", "#8cd17d", "#b6992d", "#f1ce63", "#499894",
                 "#86bcb6", "#e15759", "#ff9d9a", "#79706e", "#bab0ac", "#d37295", "#fabfd2", "#b07aa1", "#d4a6c8",
                 "#9d7660", "#d7b5a6"];
const charts = {};
let generation = 0;  // a refresh started for an older range must not draw over a newer one
let busy = 0;  // the generation of the refresh in flight (0: none): a slow one is not superseded by the next tick

// -- the range: {preset: "6h"} (the last 6 hours up to each refresh) or {from: Date, to: Date} ------------------
function rangeFromUrl() {
  const q = new URLSearchParams(location.search);
  if (q.has("from") || q.has("to")) {
    const from = new Date(q.get("from")), to = new Date(q.get("to"));
    if (!isNaN(from) && !isNaN(to) && from < to && to - from <= MAX_RANGE_MS) return { from, to };
    showRangeError("the link's from/to is not a valid range: showing the last 24 h");
  }
  return { preset: PRESETS[q.get("range")] ? q.get("range") : DEFAULT_PRESET };
}

function rangeToUrl(range) {
  const q = new URLSearchParams();
  if (range.preset) q.set("range", range.preset);
  else { q.set("from", range.from.toISOString()); q.set("to", range.to.toISOString()); }
  return "?" + q.toString();
}

// The range's bounds now: a preset ends at this refresh, so the view follows the live data.
function bounds(range) {
  if (!range.preset) return { start: range.from, end: range.to };
  const end = new Date(Math.floor(Date.now() / 1000) * 1000);
  return { start: new Date(end.getTime() - PRESETS[range.preset]), end };
}

let range = rangeFromUrl();

function choose(next) {
  range = next;
  history.pushState(null, "", rangeToUrl(range));
  showPicker();
  refresh();
}

function showPicker() {
  const key = range.preset || "custom";
  document.querySelectorAll("#picker button[data-range]").forEach(b => b.setAttribute("aria-pressed", String(b.dataset.range === key)));
  document.getElementById("custom").classList.toggle("open", key === "custom");
  if (!range.preset) {
    document.getElementById("custom-from").value = range.from.toISOString().slice(0, 16);
    document.getElementById("custom-to").value = range.to.toISOString().slice(0, 16);
  }
}

function showRangeError(text) { document.getElementById("range-error").textContent = text; }

function setUpPicker() {
  document.querySelectorAll("#picker button[data-range]").forEach(b => b.addEventListener("click", () => {
    showRangeError("");
    if (b.dataset.range === "custom") {
      if (range.preset) {  // start from the range shown now, to be edited
        const { start, end } = bounds(range);
        document.getElementById("custom-from").value = start.toISOString().slice(0, 16);
        document.getElementById("custom-to").value = end.toISOString().slice(0, 16);
      }
      document.getElementById("custom").classList.add("open");
      return;
    }
    choose({ preset: b.dataset.range });
  }));
  document.getElementById("custom-apply").addEventListener("click", () => {
    // datetime-local has no zone: read as UTC, like every time on this page
    const from = new Date(document.getElementById("custom-from").value + ":00Z");
    const to = new Date(document.getElementById("custom-to").value + ":00Z");
    if (isNaN(from) || isNaN(to)) return showRangeError("give both from and to");
    if (from >= to) return showRangeError("'from' must be before 'to'");
    if (to - from > MAX_RANGE_MS) return showRangeError("at most 366 days");
    showRangeError("");
    choose({ from, to });
  });
  window.addEventListener("popstate", () => { range = rangeFromUrl(); showPicker(); refresh(); });
  showPicker();
}

// -- charts ------------------------------------------------------------------------------------------------------
function chart(id, type, options) {
  if (!charts[id]) {
    charts[id] = new Chart(document.getElementById(id), {
      type,
      data: { labels: [], datasets: [{ label: "actions", data: [], backgroundColor: "#4e79a7", borderColor: "#4e79a7",
                                       pointRadius: 0, fill: type === "line" ? "origin" : false, tension: 0.2 }] },
      options: Object.assign({ animation: false, responsive: true, maintainAspectRatio: false,
                               plugins: { legend: { display: false } } }, options || {}),
    });
  }
  return charts[id];
}

function setData(c, labels, values) {
  c.data.labels = labels;
  c.data.datasets[0].data = values;
  c.update();
}

function rejectsChart() {
  if (!charts.rejects) {
    charts.rejects = new Chart(document.getElementById("rejects"), {
      type: "bar",
      data: { labels: [], datasets: [] },
      options: { animation: false, responsive: true, maintainAspectRatio: false,
                 plugins: { legend: { position: "bottom", labels: { boxWidth: 12, font: { size: 11 } } } },
                 scales: { x: { stacked: true, ticks: { maxTicksLimit: 12 } },
                           y: { stacked: true, title: { display: true, text: "records" } } } },
    });
  }
  return charts.rejects;
}

async function getJson(path) {
  const resp = await fetch(path, { cache: "no-store" });
  const body = await resp.json();
  if (!resp.ok) throw new Error(body.error || resp.statusText);
  return body;
}

function fmtTime(iso, long) { return long ? `${iso.slice(5, 10)} ${iso.slice(11, 16)}` : iso.slice(11, 16); }
function fmtNumber(n) { return Number(n).toLocaleString("en"); }

function fmtAge(seconds) {
  if (seconds == null) return "–";
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} days`;
}

// -- the health strip: each card a value, a detail line and a level (ok, warn, bad; none = nothing to judge) ----------
function card(id, value, detail, level) {
  const el = document.getElementById(id);
  el.querySelector(".value").textContent = value;
  el.querySelector(".detail").textContent = detail || "";
  el.dataset.level = level;
}

// A window's row reaches ClickHouse only after the window closes (the 5-minute one ~11 s later, README
// "Benchmarks"), so freshness normally runs up to one window length. Amber once it is 10 minutes past that (two
// 5-minute windows missing: the job or the loader is behind), red at 55 minutes past (nothing for an hour: stopped,
// not slow). For the 5-minute table that is > 15 min amber, > 1 h red; for the 2-hour tables 2 h 10 min and 2 h 55 min.
const WINDOW_S = { user_aggregations_realtime: 300, user_aggregations: 7200, user_action_aggregations: 7200 };
const FRESH_WARN_S = 600, FRESH_BAD_S = 3300;
// A closing 2-hour window emits a row per active user at once (hundreds of thousands), which the loader drains in
// seconds (~200,000 rows/s measured); past a million waiting it is not keeping up. ClickHouse refusing inserts for a
// minute is an outage, not a hiccup (the loader retries with backoff meanwhile and loses nothing).
const LAG_WARN = 1000000, WAITING_BAD_S = 60;
// The maintenance runs every 5 minutes by default (24 s in ./run.sh): an hour without a pass is a dozen missed.
const MAINTENANCE_WARN_S = 3600;

function showHealth(status) {
  for (const t of status.tables || []) {
    if (!document.getElementById(`fresh-${t.table}`)) continue;
    const f = t.freshness_seconds, length = WINDOW_S[t.table] || 300;
    const level = f == null ? "none" : f > length + FRESH_BAD_S ? "bad" : f > length + FRESH_WARN_S ? "warn" : "ok";
    card(`fresh-${t.table}`, f == null ? "no data" : fmtAge(f),
         t.latest_window_end ? `newest window ends ${t.latest_window_end.slice(0, 16).replace("T", " ")}` : "", level);
  }
  const loader = status.loader || {};
  if (!loader.running || loader.lag_total == null) {
    card("loader", "off", "this service runs no loader", "none");
  } else {
    const waiting = loader.waiting_for_clickhouse_s;
    const level = waiting != null && waiting >= WAITING_BAD_S ? "bad"
      : waiting != null || loader.lag_total > LAG_WARN ? "warn" : "ok";
    card("loader", `${fmtNumber(loader.lag_total)} records`,
         (waiting != null ? `waiting for ClickHouse ${fmtAge(waiting)}; ` : "")
         + `${fmtNumber(Math.round(loader.rows_per_second || 0))} rows/s`, level);
  }
  const dead = status.dead_letters || {};
  const newest = (dead.newest || [])[0];
  card("dead-letters", dead.total == null ? "–" : fmtNumber(dead.total),
       newest ? `newest: ${newest.topic}, ${newest.reason.slice(0, 80)}` : "",
       dead.total == null ? "none" : dead.total > 0 ? "warn" : "ok");
  const restated = (status.restatements || [])[0];
  if (restated) {
    card("restated", `slot ${restated.slot_start.slice(0, 16).replace("T", " ")}`,
         `at ${restated.restated_at.slice(0, 16).replace("T", " ")}: ${fmtNumber(restated.lake_events)} lake events, `
         + `${fmtNumber(restated.rows_upserted)} rows upserted, ${fmtNumber(restated.rows_deleted)} deleted`, "ok");
  } else {
    card("restated", "none yet", "", "none");
  }
  const last = status.maintenance && status.maintenance.last_pass;
  if (!last) {
    card("maintenance", "no pass recorded", "", "none");
  } else {
    const age = (Date.parse(status.now) - Date.parse(last.finished_at)) / 1000;
    card("maintenance", `${fmtAge(age)} ago`,
         `${last.compacted_slots} slots compacted, ${last.snapshots_expired} snapshots and ${last.partitions_expired} `
         + `partitions expired, ${last.orphans_removed} orphans removed, ${last.restated_slots} slots restated, `
         + `${last.errors} errors` + (last.error ? ` (${last.error.slice(0, 80)})` : "")
         + `; ${status.maintenance.passes} passes in 24 h`,
         last.errors > 0 ? "bad" : age > MAINTENANCE_WARN_S ? "warn" : "ok");
  }
}

// -- the quality view: rejected records per reason and hour, from the lake --------------------------------------------
function showRejects(body, long) {
  const c = rejectsChart();
  c.data.labels = body.hours.map(h => fmtTime(h, long));
  c.data.datasets = Object.entries(body.series).map(([reason, counts], i) => ({
    label: `${reason} (${fmtNumber(body.totals[reason])})`, data: counts, backgroundColor: PALETTE[i % PALETTE.length],
  }));
  c.update();
  const read = body.read;
  document.getElementById("rejects-note").textContent =
    `${fmtNumber(body.total)} rejected records by ingest time; lake read: ${read.partitions} partitions, ${read.files} `
    + `files, ${fmtNumber(read.rows)} rows, ${read.ms} ms` + (body.cached_s ? ` (cached ${body.cached_s} s ago)` : "");
}

async function rejects(start, end) {
  // Whole hours: the buckets are hours, and the same hours asked again hit the service's 30-second cache.
  const from = new Date(Math.floor(start.getTime() / HOUR_MS) * HOUR_MS);
  const to = new Date(Math.ceil(end.getTime() / HOUR_MS) * HOUR_MS);
  try {
    return await getJson(`/api/rejects?from=${encodeURIComponent(from.toISOString())}&to=${encodeURIComponent(to.toISOString())}`);
  } catch (err) {
    return { error: err.message };
  }
}

async function refresh() {
  const gen = ++generation;
  busy = gen;
  try {
    const { start, end } = bounds(range);
    const long = end - start > 24 * HOUR_MS;
    const grain = long ? "2h" : "5m";  // a week of 5-minute points is 2,016 on one line: the 2-hour table has 84
    const q = `from=${encodeURIComponent(start.toISOString())}&to=${encodeURIComponent(end.toISOString())}`;
    const lake = rejects(start, end);  // a lake read (tens of ms to a second when not cached): drawn when it comes
    const [status, events, types, users, dist] = await Promise.all([
      getJson("/api/status"),
      getJson(`/api/events?window=${grain}&${q}`),
      getJson(`/api/action-types?limit=12&${q}`),
      getJson(`/api/top-users?limit=15&window=2h&${q}`),
      getJson(`/api/distribution?window=2h&${q}`),
    ]);
    if (gen !== generation) return;
    document.getElementById("latest").textContent = status.latest_window_end || "no data yet";
    document.getElementById("range").textContent =
      `${start.toISOString().slice(0, 16).replace("T", " ")} – ${end.toISOString().slice(0, 16).replace("T", " ")} UTC`;
    showHealth(status);
    document.getElementById("events-title").textContent = long ? "Actions per 2 hours" : "Actions per 5 minutes";
    setData(chart("events", "line", { scales: { x: { ticks: { maxTicksLimit: 12 } } } }),
            events.points.map(p => fmtTime(p.window_start, long)), events.points.map(p => p.actions));
    setData(chart("actionTypes", "bar", { indexAxis: "y" }),
            types.action_types.map(t => t.action_type), types.action_types.map(t => t.actions));
    setData(chart("topUsers", "bar"), users.users.map(u => String(u.user_id)), users.users.map(u => u.actions));
    setData(chart("distribution", "bar", { scales: { y: { type: "logarithmic", title: { display: true, text: "users" } } } }),
            dist.buckets.map(b => b.min_actions === b.max_actions ? `${b.min_actions}` : `${b.min_actions}–${b.max_actions}`),
            dist.buckets.map(b => b.users));
    const rej = await lake;
    if (gen !== generation) return;
    if (rej.error) {  // the lake may be out of this service's reach while ClickHouse answers: the rest still shows
      const c = rejectsChart();
      c.data.labels = [];
      c.data.datasets = [];
      c.update();
      document.getElementById("rejects-note").textContent = rej.error;
    } else {
      showRejects(rej, long);
    }
    document.getElementById("updated").textContent = new Date().toISOString().slice(11, 19) + " UTC";
    document.getElementById("error").textContent = "";
    // what the page shows now (a preset or from/to), and how many refreshes it drew: for a test or a screenshot tool
    document.body.dataset.shown = range.preset || `${range.from.toISOString()}/${range.to.toISOString()}`;
    document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
  } catch (err) {
    if (gen === generation) document.getElementById("error").textContent = `refresh failed: ${err.message}`;
  } finally {
    if (busy === gen) busy = 0;
  }
}

setUpPicker();
refresh();
setInterval(() => { if (!busy) refresh(); }, REFRESH_MS);
