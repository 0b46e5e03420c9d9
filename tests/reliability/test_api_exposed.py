"""The API as it is exposed beyond this machine (compose's dashboard): a real service process with a token, per-query
limits, a bounded pool of workers. Bound to 127.0.0.1 like every test service, with DASHBOARD_TOKEN set: a set token
is always required, and bound beyond loopback without one the service refuses to start.

- a start beyond loopback without a token is refused with one line, before anything listens;
- without the token (or with a wrong one) 401, with it 200, a browser's /?token= becomes an HttpOnly cookie;
- a Host the service does not serve (DNS rebinding) is refused; /healthz answers HEAD and needs no token;
- a query over the time limit is a clear 503 within the limit while other requests keep answering;
- 500 idle connections do not keep /healthz from answering.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace

import pytest

from base.config import PROJECT_ROOT, Settings
from tests.conftest import free_port

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

TOKEN = "s3cr3t-'@:/#-token"
TIMEOUT_S = 1
# 60M 5-minute rows over the last 60 days (inside the realtime table's 90-day TTL): a year's distribution query
# reads them all, longer than TIMEOUT_S on this box (seeded in ~7 s through the CLI).
SEED = ("INSERT INTO analytics.user_aggregations_realtime SELECT "
        "toDateTime64(now() - INTERVAL 60 DAY, 3, 'UTC') + toIntervalMinute(5 * intDiv(number, 100000)), "
        "toDateTime64(now() - INTERVAL 60 DAY, 3, 'UTC') + toIntervalMinute(5 * intDiv(number, 100000) + 5), "
        "number % 30000000 + 1, 1, 1 FROM numbers(60000000)")


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], env=env, cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def exposed(services: Settings, tmp_path_factory):
    from clickhouse import service_process

    settings = replace(services, data_dir=tmp_path_factory.mktemp("ch-exposed"), dashboard_port=free_port(),
                       clickhouse_url=None, dashboard_token=TOKEN, dashboard_query_timeout=TIMEOUT_S)
    env = {**os.environ, **settings.to_env()}
    assert _cli(env, "clickhouse", "schema").returncode == 0
    seeded = _cli(env, "clickhouse", "sql", SEED)
    assert seeded.returncode == 0, seeded.stderr
    service_process.start(settings, extra_args=["--no-loader"])
    try:
        yield settings
    finally:
        service_process.stop(settings)


def _get(settings: Settings, path: str, method: str = "GET", headers: dict | None = None,
         timeout: float = 30) -> tuple[int, dict, http.client.HTTPResponse]:
    conn = http.client.HTTPConnection("127.0.0.1", settings.dashboard_port, timeout=timeout)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        parsed = json.loads(body) if resp.getheader("Content-Type") == "application/json" and body else {}
        return resp.status, parsed, resp
    finally:
        conn.close()


def test_beyond_loopback_without_a_token_the_service_refuses_to_start(services, tmp_path) -> None:
    env = {**os.environ, "DATA_DIR": str(tmp_path), "DASHBOARD_HOST": "0.0.0.0", "DASHBOARD_PORT": str(free_port())}
    env.pop("DASHBOARD_TOKEN", None)
    env.pop("CLICKHOUSE_URL", None)
    done = _cli(env, "clickhouse", "serve", "--no-loader")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip().splitlines()[-1]]
    assert "set DASHBOARD_TOKEN" in done.stderr


def test_a_token_is_required_and_compared_whole(exposed: Settings) -> None:
    assert _get(exposed, "/api/status")[0] == 401
    status, body, resp = _get(exposed, "/api/status", headers={"Authorization": "Bearer wrong"})
    assert status == 401 and resp.getheader("WWW-Authenticate") == 'Bearer realm="dashboard"', body
    assert _get(exposed, "/api/status", headers={"Authorization": f"Bearer {TOKEN[:-1]}"})[0] == 401
    assert _get(exposed, "/", headers={"Authorization": "Bearer wrong"})[0] == 401  # the page too
    status, body, _ = _get(exposed, "/api/status", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and body["database"] == "analytics", body
    # A browser: /?token=... once, then the HttpOnly cookie carries it.
    from urllib.parse import quote

    status, _, resp = _get(exposed, f"/?token={quote(TOKEN, safe='')}")
    cookie = resp.getheader("Set-Cookie")
    assert status == 303 and resp.getheader("Location") == "/" and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert _get(exposed, "/?token=wrong")[0] == 401
    assert _get(exposed, "/static/dashboard.js", headers={"Cookie": cookie.split(";")[0]})[0] == 200
    assert _get(exposed, "/healthz")[0] == 200  # health checkers carry no token
    status, _, resp = _get(exposed, "/healthz", method="HEAD")
    assert status == 200 and resp.getheader("Content-Length") == "12"


def test_a_host_it_does_not_serve_is_refused(exposed: Settings) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for host in ("attacker.example", "attacker.example:8050", "127.0.0.1.nip.io"):
        status, body, _ = _get(exposed, "/api/status", headers={**auth, "Host": host})
        assert status == 421 and "DASHBOARD_ALLOWED_HOSTS" in body["error"], (host, status)
    for host in ("localhost", f"127.0.0.1:{exposed.dashboard_port}", "[::1]:8050"):
        assert _get(exposed, "/api/status", headers={**auth, "Host": host})[0] == 200, host


def test_a_query_over_the_time_limit_is_a_clear_error_and_others_keep_answering(exposed: Settings) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    slow: dict = {}

    def ask_a_year() -> None:
        began = time.monotonic()
        slow["status"], slow["body"], _ = _get(exposed, "/api/distribution?window=5m&from="
                                                        f"{int((time.time() - 366 * 86400) * 1000)}", headers=auth)
        slow["took"] = time.monotonic() - began

    thread = threading.Thread(target=ask_a_year)
    thread.start()
    meanwhile = []
    while thread.is_alive():
        began = time.monotonic()
        meanwhile.append((_get(exposed, "/healthz")[0], time.monotonic() - began))
        time.sleep(0.05)
    thread.join()
    assert slow["status"] == 503 and f"longer than the API allows ({TIMEOUT_S} s" in slow["body"]["error"], slow
    assert slow["took"] < TIMEOUT_S + 5, slow  # ClickHouse stopped it at the limit
    assert meanwhile and all(status == 200 and took < 2 for status, took in meanwhile), meanwhile


def test_500_idle_connections_do_not_starve_the_health_check(exposed: Settings) -> None:
    idle = [socket.create_connection(("127.0.0.1", exposed.dashboard_port), timeout=5) for _ in range(500)]
    try:
        began = time.monotonic()
        status, body, _ = _get(exposed, "/healthz", timeout=10)
        assert (status, body) == (200, {"ok": True}) and time.monotonic() - began < 2
        # and a request with a half-sent body holds no worker either
        half = socket.create_connection(("127.0.0.1", exposed.dashboard_port), timeout=5)
        half.sendall(b"POST /api/status HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\nabc")
        assert _get(exposed, "/healthz", timeout=10)[0] == 200
        half.close()
    finally:
        for sock in idle:
            sock.close()
