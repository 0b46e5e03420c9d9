"""The JSON API's endpoints and the files the dashboard page loads. Read-only; served over HTTP by
clickhouse/web.py.

Request parameters are validated here (names, ranges, limits) and passed to clickhouse/queries.py
as typed values; no endpoint accepts SQL. A bad parameter is a BadRequest (400, naming the parameter).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs

from base.config import Settings
from clickhouse.queries import WINDOW_TABLES, Queries
from clickhouse.store import ThreadClients

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
VENDOR_DIR = STATIC_DIR / "vendor"  # third-party files, package data in the repository (scripts/vendor_chartjs.sh)
STATIC_FILES = {  # URL path -> file; nothing else on disk is reachable
    "/": STATIC_DIR / "dashboard.html",
    "/static/dashboard.js": STATIC_DIR / "dashboard.js",
    "/static/vendor/chart.umd.min.js": VENDOR_DIR / "chart.js" / "chart.umd.min.js",
}

MAX_RANGE = timedelta(days=366)
DEFAULT_RANGE = timedelta(hours=24)
MAX_LIMIT = 1000
USER_PATH = re.compile(r"^/api/users/([^/]*)/activity$")  # an empty id is a bad user_id too, not a missing route


class BadRequest(Exception):
    def __init__(self, message: str, parameter: str | None = None, status: HTTPStatus = HTTPStatus.BAD_REQUEST):
        super().__init__(message)
        self.parameter = parameter
        self.status = status


class Unavailable(BadRequest):
    """What an endpoint reads cannot be reached now (503): the request was right, retrying later may work."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=HTTPStatus.SERVICE_UNAVAILABLE)


# -- parameter parsing --------------------------------------------------------------------------
class Params:
    """The query string of one request; every accessor validates and names the parameter on error."""

    def __init__(self, query: str, allowed: set[str]) -> None:
        try:
            raw = parse_qs(query, keep_blank_values=True, strict_parsing=False, max_num_fields=20)
        except ValueError as exc:
            raise BadRequest(f"malformed query string: {exc}") from None
        for name, values in raw.items():
            if name not in allowed:
                known = ", ".join(sorted(allowed)) or "none"
                raise BadRequest(f"unknown parameter '{name}' (this endpoint takes: {known})", name)
            if len(values) > 1:
                raise BadRequest(f"parameter '{name}' given more than once", name)
        self.raw = {k: v[0] for k, v in raw.items()}

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        text = self.raw.get(name)
        if text is None:
            return default
        if not re.fullmatch(r"[0-9]{1,12}", text):
            raise BadRequest(f"'{name}' must be a whole number between {low} and {high}, got '{text[:40]}'", name)
        value = int(text)
        if not low <= value <= high:
            raise BadRequest(f"'{name}' must be between {low} and {high}, got {value}", name)
        return value

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.raw.get(name, default)
        if value not in choices:
            raise BadRequest(f"'{name}' must be one of {', '.join(choices)}, got '{value[:40]}'", name)
        return value

    def time(self, name: str) -> datetime | None:
        text = self.raw.get(name)
        if text is None:
            return None
        return parse_time(text, name)

    def time_range(self, default_end: datetime) -> tuple[datetime, datetime]:
        end = self.time("to") or default_end
        start = self.time("from") or end - DEFAULT_RANGE
        if start >= end:
            raise BadRequest("'from' must be before 'to'", "from")
        if end - start > MAX_RANGE:
            raise BadRequest(f"the range from 'from' to 'to' must be at most {MAX_RANGE.days} days", "from")
        return start, end


def parse_time(text: str, name: str) -> datetime:
    """ISO 8601 (UTC unless an offset is given) or epoch milliseconds."""
    if re.fullmatch(r"[0-9]{10,13}", text):
        return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
    if len(text) > 40:
        raise BadRequest(f"'{name}' is not a time", name)
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(
            f"'{name}' must be an ISO 8601 time (e.g. 2024-05-01T12:00:00Z) or epoch milliseconds, got '{text}'",
            name,
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        value = value.astimezone(UTC)
    except (OverflowError, ValueError):  # e.g. 0001-01-01T00:00:00+01:00: before year 1 in UTC
        raise BadRequest(f"'{name}' is out of range (years 1970..2299)", name) from None
    if not 1970 <= value.year <= 2299:
        raise BadRequest(f"'{name}' is out of range (years 1970..2299)", name)
    return value


# -- endpoints ------------------------------------------------------------------------------------
RANGE = {"from", "to"}


@dataclass(frozen=True)
class Route:
    """An endpoint a higher layer serves through this API: ``factory(settings)`` returns its handler,
    ``handler(params) -> JSON-able``, which raises BadRequest (400) or Unavailable (503). The factory must not
    reach anything (the service starts whether or not the handler's source is up); ``openapi`` is its path item."""

    parameters: frozenset[str]
    factory: Callable[[Settings], Callable[[Params], object]]
    openapi: dict


# Endpoints whose data lives above this layer (the ClickHouse part never imports the lakehouse), registered by the
# front end as it registers service.COMPANIONS: path -> Route. pipeline/cli.py registers /api/rejects
# (lakehouse/quality.py); a service built without the front end does not serve them.
ROUTES: dict[str, Route] = {}


class Api:
    """Endpoint functions: (queries, params) -> JSON-able. ``status_extra`` adds the loader's metrics; with
    ``settings``, the registered ROUTES are served too (without them, each answers 503 saying so)."""

    def __init__(self, clients: ThreadClients, database: str, status_extra: Callable[[], dict] | None = None,
                 settings: Settings | None = None):
        self.clients = clients
        self.database = database
        self.status_extra = status_extra or (lambda: {})
        self.routes: dict[str, tuple[set[str], Callable[[Queries, Params], object]]] = {
            "/api/status": (set(), self.status),
            "/api/top-users": (RANGE | {"limit", "window"}, self.top_users),
            "/api/action-types": (RANGE | {"limit"}, self.top_action_types),
            "/api/action-types/series": (RANGE | {"limit"}, self.action_types_series),
            "/api/events": (RANGE | {"window"}, self.events),
            "/api/hourly": (RANGE, self.hourly),
            "/api/distribution": (RANGE | {"window"}, self.distribution),
        }
        # Answered without a ClickHouse client: none is held from the pool while another source is read.
        self.registered: dict[str, tuple[set[str], Callable[[Params], object]]] = {
            path: (set(route.parameters), route.factory(settings) if settings is not None else _unwired(path))
            for path, route in ROUTES.items()}
        # listed with the others too: ``routes`` names every path the API answers (/metrics labels requests by it)
        self.routes.update({path: (allowed, lambda q, p, h=handler: h(p))
                            for path, (allowed, handler) in self.registered.items()})

    def handle(self, path: str, query: str) -> object:
        if path in self.registered:
            allowed, handler = self.registered[path]
            return handler(Params(query, allowed))
        match = USER_PATH.match(path)
        if match:
            params = Params(query, RANGE)
            with self.clients.borrow() as client:
                return self.user_activity(Queries(client, self.database), params, match.group(1))
        if path not in self.routes:
            raise BadRequest(f"no endpoint {path[:80]}; see /openapi.json", status=HTTPStatus.NOT_FOUND)
        allowed, fn = self.routes[path]
        params = Params(query, allowed)
        with self.clients.borrow() as client:
            return fn(Queries(client, self.database), params)

    def _range(self, q: Queries, p: Params) -> tuple[datetime, datetime]:
        # Default range: the 24 hours up to now, so a fresh dashboard shows what is live.
        return p.time_range(datetime.now(UTC).replace(microsecond=0))

    def status(self, q: Queries, p: Params) -> dict:
        tables = q.table_stats()
        return {
            "database": self.database,
            "now": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "latest_window_end": max((t["latest_window_end"] for t in tables if t["latest_window_end"]), default=None),
            "tables": tables,
            "loader": self.status_extra(),
            "restatements": q.restatements(),
            "dead_letters": q.dead_letters(),
            "maintenance": q.maintenance(),
        }

    def top_users(self, q: Queries, p: Params) -> dict:
        start, end = self._range(q, p)
        limit = p.integer("limit", 10, 1, MAX_LIMIT)
        window = p.choice("window", "2h", tuple(WINDOW_TABLES))
        return {**range_json(start, end), "window": window, "users": q.top_users(start, end, limit, window)}

    def user_activity(self, q: Queries, p: Params, raw_id: str) -> dict:
        if not re.fullmatch(r"[0-9]{1,10}", raw_id) or not 0 < int(raw_id) < 2**32:
            raise BadRequest(f"user id must be a whole number between 1 and {2**32 - 1}, got '{raw_id[:40]}'",
                             "user_id")
        start, end = self._range(q, p)
        return {**range_json(start, end), **q.user_activity(int(raw_id), start, end)}

    def top_action_types(self, q: Queries, p: Params) -> dict:
        start, end = self._range(q, p)
        limit = p.integer("limit", 10, 1, MAX_LIMIT)
        return {**range_json(start, end), "action_types": q.top_action_types(start, end, limit)}

    def action_types_series(self, q: Queries, p: Params) -> dict:
        start, end = self._range(q, p)
        limit = p.integer("limit", 5, 1, 50)
        return {**range_json(start, end), **q.action_types_over_time(start, end, limit)}

    def events(self, q: Queries, p: Params) -> dict:
        start, end = self._range(q, p)
        window = p.choice("window", "5m", tuple(WINDOW_TABLES))
        return {**range_json(start, end), "window": window, "points": q.events_per_window(start, end, window)}

    def hourly(self, q: Queries, p: Params) -> dict:
        start, end = self._range(q, p)
        return {**range_json(start, end), "hours": q.hourly(start, end)}

    def distribution(self, q: Queries, p: Params) -> dict:
        start, end = self._range(q, p)
        window = p.choice("window", "2h", tuple(WINDOW_TABLES))
        return {**range_json(start, end), "window": window, "buckets": q.distribution(start, end, window)}


def _unwired(path: str) -> Callable[[Params], object]:
    def handler(p: Params) -> object:
        raise Unavailable(f"{path} is not served by this service: it was built without the settings that endpoint "
                          "reads (Api(..., settings))")
    return handler


def range_json(start: datetime, end: datetime) -> dict:
    """The ``from`` and ``to`` every ranged answer carries, in milliseconds, UTC."""
    fmt = "%Y-%m-%dT%H:%M:%S.%f"
    return {"from": start.strftime(fmt)[:-3] + "Z", "to": end.strftime(fmt)[:-3] + "Z"}
