"""The OpenAPI 3 description of the JSON API (served at /openapi.json)."""

from __future__ import annotations

from clickhouse.api import ROUTES

_TIME = {"type": "string", "description": "ISO 8601 (UTC unless an offset is given) or epoch milliseconds"}
_FROM = {"name": "from", "in": "query", "schema": _TIME,
         "description": "start of the range, inclusive, on window_start (default: 'to' minus 24 hours)"}
_TO = {"name": "to", "in": "query", "schema": _TIME, "description": "end of the range, exclusive (default: now)"}


def _limit(default: int, maximum: int) -> dict:
    return {"name": "limit", "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": maximum, "default": default}}


def _window(default: str) -> dict:
    return {"name": "window", "in": "query", "description": "5m: the 5-minute table; 2h: the 2-hour table",
            "schema": {"type": "string", "enum": ["5m", "2h"], "default": default}}


def get_path(summary: str, params: list[dict], errors: dict[str, str] | None = None) -> dict:
    """A path item answering GET with a JSON object, 400 for a bad parameter and ``errors`` (status -> why)."""
    return {"get": {
        "summary": summary,
        "parameters": params,
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}},
            **{status: {"description": why, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Error"}}}}
               for status, why in {"400": "a parameter is invalid", **(errors or {})}.items()},
        },
    }}


_get = get_path  # short, for the table of paths below


def openapi_document() -> dict:
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "User-action analytics API",
            "version": "1.0.0",
            "description": "Read-only analytics over the deduplicated ClickHouse aggregates "
                           "(2-hour and 5-minute tumbling windows, UTC).",
        },
        "paths": {
            "/api/status": _get("tables, row counts, freshness, the loader's lag and rows/s, when each 2-hour slot "
                                "was last restated from the lake, dead letters, and the lake maintenance's last pass "
                                "(null before the first)", []),
            "/api/top-users": _get("users with the most actions in the range", [_FROM, _TO, _limit(10, 1000),
                                                                                 _window("2h")]),
            "/api/users/{user_id}/activity": _get(
                "one user's 5-minute series and 2-hour totals by action type",
                [{"name": "user_id", "in": "path", "required": True,
                  "schema": {"type": "integer", "minimum": 1, "maximum": 4294967295}}, _FROM, _TO]),
            "/api/action-types": _get("actions and distinct users per action type", [_FROM, _TO, _limit(10, 1000)]),
            "/api/action-types/series": _get("actions per 2-hour window of the busiest action types",
                                             [_FROM, _TO, _limit(5, 50)]),
            "/api/events": _get("actions per window (5-minute by default)", [_FROM, _TO, _window("5m")]),
            "/api/hourly": _get("actions per hour of the day (UTC)", [_FROM, _TO]),
            "/api/distribution": _get("users by their number of actions, power-of-two buckets",
                                      [_FROM, _TO, _window("2h")]),
            # served by a higher layer, registered by the front end (clickhouse.api.ROUTES)
            **{path: route.openapi for path, route in ROUTES.items()},
        },
        "components": {"schemas": {"Error": {
            "type": "object",
            "properties": {"error": {"type": "string"}, "parameter": {"type": "string"},
                           "status": {"type": "integer"}},
            "required": ["error", "status"],
        }}},
    }
