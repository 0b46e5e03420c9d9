// Dashboard: polls the JSON API every few seconds and redraws four Chart.js charts.
// The range is the 24 hours up to the latest window in the data, so a paused pipeline still shows its data.
"use strict";
const REFRESH_MS = 5000;
const charts = {};

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

async function getJson(path) {
  const resp = await fetch(path, { cache: "no-store" });
  const body = await resp.json();
  if (!resp.ok) throw new Error(body.error || resp.statusText);
  return body;
}

function fmtTime(iso) { return iso.slice(11, 16); }

function fmtAge(seconds) {
  if (seconds == null) return "–";
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} days`;
}

async function refresh() {
  try {
    const status = await getJson("/api/status");
    const loader = status.loader || {};
    document.getElementById("latest").textContent = status.latest_window_end || "no data yet";
    const realtime = (status.tables || []).find(t => t.table === "user_aggregations_realtime") || {};
    document.getElementById("freshness").textContent = fmtAge(realtime.freshness_seconds);
    document.getElementById("loader").textContent = loader.rows_per_second == null ? "off"
      : `${Math.round(loader.rows_per_second).toLocaleString("en")} rows/s, lag ${loader.lag_total.toLocaleString("en")}`;
    const dead = status.dead_letters || {};
    document.getElementById("dead-letters").textContent = dead.total === undefined ? "–"
      : `${dead.total}` + (dead.newest && dead.newest.length ? ` (newest: ${dead.newest[0].topic}, ${dead.newest[0].reason.slice(0, 60)})` : "");
    const restated = (status.restatements || [])[0];
    document.getElementById("restated").textContent = restated
      ? `${restated.slot_start.slice(0, 16)} (at ${restated.restated_at.slice(0, 16)}, ${restated.rows_upserted + restated.rows_deleted} keys)`
      : "none yet";
    const end = status.latest_window_end ? new Date(status.latest_window_end) : new Date();
    const start = new Date(end.getTime() - 24 * 3600 * 1000);
    const range = `from=${encodeURIComponent(start.toISOString())}&to=${encodeURIComponent(end.toISOString())}`;
    document.getElementById("range").textContent = `${start.toISOString().slice(0, 16)} – ${end.toISOString().slice(0, 16)} UTC`;

    const [events, types, users, dist] = await Promise.all([
      getJson(`/api/events?window=5m&${range}`),
      getJson(`/api/action-types?limit=12&${range}`),
      getJson(`/api/top-users?limit=15&window=2h&${range}`),
      getJson(`/api/distribution?window=2h&${range}`),
    ]);
    setData(chart("events", "line", { scales: { x: { ticks: { maxTicksLimit: 12 } } } }),
            events.points.map(p => fmtTime(p.window_start)), events.points.map(p => p.actions));
    setData(chart("actionTypes", "bar", { indexAxis: "y" }),
            types.action_types.map(t => t.action_type), types.action_types.map(t => t.actions));
    setData(chart("topUsers", "bar"), users.users.map(u => String(u.user_id)), users.users.map(u => u.actions));
    setData(chart("distribution", "bar", { scales: { y: { type: "logarithmic", title: { display: true, text: "users" } } } }),
            dist.buckets.map(b => b.min_actions === b.max_actions ? `${b.min_actions}` : `${b.min_actions}–${b.max_actions}`),
            dist.buckets.map(b => b.users));
    document.getElementById("updated").textContent = new Date().toISOString().slice(11, 19) + " UTC";
    document.getElementById("error").textContent = "";
    document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
  } catch (err) {
    document.getElementById("error").textContent = `refresh failed: ${err.message}`;
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
