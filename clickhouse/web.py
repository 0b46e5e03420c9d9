"""The dashboard and JSON API over HTTP: a WSGI app (access control, routing, errors) served by waitress.

Why waitress rather than http.server's thread per connection: a bounded pool of worker threads, while idle or slow
connections wait in its event loop (poll, no descriptor limit) and are closed after ``IDLE_TIMEOUT_S``, so hundreds
of idle connections cannot starve /healthz; a request body is read whole (up to a small limit) before the app sees
the request, so a refused POST's body is never parsed as the next request; HEAD gets GET's headers, no body.

Access: read-only (GET and HEAD); a bearer token (DASHBOARD_TOKEN, compared in constant time; a browser opens
/?token=... once and gets it as an HttpOnly cookie) is required whenever one is set, and bound beyond loopback the
service refuses to start without one; the Host header must name an allowed host (DASHBOARD_ALLOWED_HOSTS: a
DNS-rebinding page cannot reach a loopback dashboard). /healthz answers without a token.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs

from base.config import Settings
from base.errors import UserError
from clickhouse.api import STATIC_FILES, USER_PATH, Api, BadRequest
from clickhouse.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from clickhouse.metrics import ServiceMetrics
from clickhouse.openapi import openapi_document

log = logging.getLogger(__name__)

THREADS = 8  # workers: at most this many requests (and pooled ClickHouse clients) at once
CONNECTION_LIMIT = 1000
IDLE_TIMEOUT_S = 30
MAX_BODY_BYTES = 64 * 1024
COOKIE = "dashboard_token"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
# ClickHouse errors that say "not this query, not now" rather than "a bug": (status, message)
_QUERY_LIMITS = {
    159: (HTTPStatus.SERVICE_UNAVAILABLE, "the query ran longer than the API allows ({timeout} s, "
                                          "DASHBOARD_QUERY_TIMEOUT): narrow the range"),
    241: (HTTPStatus.SERVICE_UNAVAILABLE, "the query needed more memory than the API allows: narrow the range"),
    396: (HTTPStatus.SERVICE_UNAVAILABLE, "the result is larger than the API allows: narrow the range"),
    60: (HTTPStatus.SERVICE_UNAVAILABLE, "the analytics tables do not exist yet: run `pipeline clickhouse schema`"),
    81: (HTTPStatus.SERVICE_UNAVAILABLE, "the analytics database does not exist yet: run `pipeline clickhouse schema`"),
}


@dataclass(frozen=True)
class Access:
    token: str | None
    allowed_hosts: frozenset[str]

    @classmethod
    def for_settings(cls, settings: Settings, host: str) -> Access:
        """The rules for a server bound to ``host``: a token is required beyond loopback (start-up is refused
        without one), and the bind address is an allowed host name too."""
        if not _loopback(host) and not settings.dashboard_token:
            raise UserError(f"DASHBOARD_HOST={host} serves the dashboard and API beyond this machine: set "
                            "DASHBOARD_TOKEN (or DASHBOARD_TOKEN_FILE) to a secret that clients send as a bearer token")
        hosts = {h.strip().lower().strip("[]") for h in settings.dashboard_allowed_hosts.split(",") if h.strip()}
        if host not in ("0.0.0.0", "::"):
            hosts.add(host.lower())
        return cls(settings.dashboard_token or None, frozenset(hosts))

    def host_allowed(self, header: str) -> bool:
        name = header.strip().lower()
        if name.startswith("["):  # [::1]:8050
            name = name[1:].split("]", 1)[0]
        elif name.count(":") == 1:
            name = name.split(":", 1)[0]
        return name in self.allowed_hosts

    def authorized(self, environ: dict) -> bool:
        if self.token is None:
            return True
        header = environ.get("HTTP_AUTHORIZATION", "")
        given = header[7:].strip() if header[:7].lower() == "bearer " else _cookie(environ, COOKIE)
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


def _cookie(environ: dict, name: str) -> str | None:
    for part in environ.get("HTTP_COOKIE", "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


Response = tuple[HTTPStatus, list[tuple[str, str]], bytes]


def make_app(api: Api, access: Access, timeout_s: int, metrics: ServiceMetrics | None = None) -> Callable:
    """The WSGI application: every request passes the Host check, then (but for /healthz) the token. With
    ``metrics``, /metrics serves them (behind the token like the API) and every request is counted by endpoint."""

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        started = time.perf_counter()
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/") or "/"
        status, headers, body = _respond(method, path, environ)
        if metrics is not None:
            metrics.observe(_endpoint(path), status.value, time.perf_counter() - started)
        headers += [("Content-Length", str(len(body))), ("Cache-Control", "no-store"),
                    ("X-Content-Type-Options", "nosniff")]
        start_response(f"{status.value} {status.phrase}", headers)
        return [b"" if method == "HEAD" else body]

    def _respond(method: str, path: str, environ: dict) -> Response:
        if not access.host_allowed(environ.get("HTTP_HOST", "")):
            return _json(HTTPStatus.MISDIRECTED_REQUEST, {"error": "this host name is not served here "
                                                                    "(DASHBOARD_ALLOWED_HOSTS)"})
        if method not in ("GET", "HEAD"):
            return _json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "read-only API: only GET and HEAD are allowed"},
                         [("Allow", "GET, HEAD")])
        if path == "/healthz":
            return _json(HTTPStatus.OK, {"ok": True})
        query = environ.get("QUERY_STRING", "")
        if access.token is not None and path == "/" and "token=" in query:
            return _login(query)
        if not access.authorized(environ):
            return _json(HTTPStatus.UNAUTHORIZED, {"error": "a bearer token is required (Authorization: Bearer ..., "
                                                            "or open /?token=... once)"},
                         [("WWW-Authenticate", 'Bearer realm="dashboard"')])
        try:
            if path in STATIC_FILES:
                return _file(STATIC_FILES[path])
            if path == "/openapi.json":
                return _json(HTTPStatus.OK, openapi_document())
            if path == "/metrics" and metrics is not None:
                return HTTPStatus.OK, [("Content-Type", METRICS_CONTENT_TYPE)], metrics.render()
            return _json(HTTPStatus.OK, api.handle(path, query))
        except BadRequest as exc:
            body = {"error": str(exc), "status": exc.status.value}
            if exc.parameter:
                body["parameter"] = exc.parameter
            return _json(exc.status, body)
        except Exception as exc:
            limit = _QUERY_LIMITS.get(getattr(exc, "code", None))
            if limit is not None:
                return _json(limit[0], {"error": limit[1].format(timeout=timeout_s), "status": limit[0].value})
            log.exception("request %s failed", path)
            return _json(HTTPStatus.INTERNAL_SERVER_ERROR,
                         {"error": "the query failed on the server; see the service log", "status": 500})

    def _endpoint(path: str) -> str:
        """The route a path asked for: a bounded set of label values, whatever clients send."""
        if path in api.routes or path in ("/healthz", "/metrics", "/openapi.json"):
            return path
        if path in STATIC_FILES:
            return "/static"
        if USER_PATH.match(path):
            return "/api/users/{user_id}/activity"
        return "other"

    def _login(query: str) -> Response:
        given = (parse_qs(query).get("token") or [""])[0]
        if not hmac.compare_digest(given.encode(), (access.token or "").encode()):
            return _json(HTTPStatus.UNAUTHORIZED, {"error": "wrong token"})
        cookie = f"{COOKIE}={given}; HttpOnly; SameSite=Strict; Path=/"
        return HTTPStatus.SEE_OTHER, [("Location", "/"), ("Set-Cookie", cookie)], b""

    return app


def _file(path: Path) -> Response:
    if not path.is_file():
        return _json(HTTPStatus.NOT_FOUND, {"error": f"{path.name} is missing from the installed package "
                                                     "(a packaging error: reinstall it)", "status": 404})
    return HTTPStatus.OK, [("Content-Type", CONTENT_TYPES.get(path.suffix, "application/octet-stream"))], \
        path.read_bytes()


def _json(status: HTTPStatus, body: object, headers: list[tuple[str, str]] | None = None) -> Response:
    return status, [("Content-Type", "application/json"), *(headers or [])], \
        json.dumps(body, default=_json_default).encode()


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class Server:
    """waitress on ``host``:``port`` (0 = any free port): a bounded pool of workers, idle connections closed."""

    def __init__(self, app: Callable, host: str, port: int) -> None:
        from waitress.server import create_server

        self._server = create_server(
            app, host=host, port=port, threads=THREADS, connection_limit=CONNECTION_LIMIT,
            channel_timeout=IDLE_TIMEOUT_S, cleanup_interval=5, asyncore_use_poll=True,
            max_request_body_size=MAX_BODY_BYTES, ident="clickhouse-analytics", expose_tracebacks=False)

    @property
    def address(self) -> tuple[str, int]:
        return self._server.effective_host, int(self._server.effective_port)

    def serve_forever(self) -> None:
        try:
            self._server.run()
        except (OSError, ValueError):  # the listening socket closed by shutdown()
            pass

    def shutdown(self) -> None:
        self._server.close()
        self._server.task_dispatcher.shutdown(timeout=5)
