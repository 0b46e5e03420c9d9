"""The event contract (docs/design.md) as a checker: what a consumer may rely on in every valid record."""

from __future__ import annotations

import json
import uuid

from base.contract import ACTION_TYPE_SET, EVENT_FIELDS, MAX_USERS

METADATA_FIELDS = ("screen", "session_id", "duration_ms")
DEVICE_FIELDS = ("device_id", "os", "os_version", "model", "app_version", "country", "network")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_event(raw: bytes) -> str | None:
    """None if ``raw`` is a valid event, else a short reason (why a consumer must reject it)."""
    try:
        event = json.loads(raw)
    except ValueError:
        return "bad_json"
    if not isinstance(event, dict):
        return "not_an_object"
    missing = [f for f in EVENT_FIELDS if f not in event]
    if missing:
        return f"missing_field:{missing[0]}"
    try:
        if not isinstance(event["event_id"], str) or uuid.UUID(event["event_id"]).version != 4:
            return "wrong_type:event_id"
    except (ValueError, TypeError, AttributeError):
        return "wrong_type:event_id"
    if not _is_int(event["user_id"]):
        return "wrong_type:user_id"
    if not 1 <= event["user_id"] <= MAX_USERS:
        return "out_of_range_user_id"
    if not isinstance(event["action_type"], str):
        return "wrong_type:action_type"
    if event["action_type"] not in ACTION_TYPE_SET:
        return "unknown_action_type"
    if not _is_int(event["timestamp"]) or event["timestamp"] < 0:
        return "wrong_type:timestamp"
    for name, fields in (("metadata", METADATA_FIELDS), ("device_info", DEVICE_FIELDS)):
        obj = event[name]
        if not isinstance(obj, dict):
            return f"wrong_type:{name}"
        for f in fields:
            if f not in obj:
                return f"missing_field:{name}.{f}"
    if not _is_int(event["metadata"]["duration_ms"]):
        return "wrong_type:metadata.duration_ms"
    if not all(isinstance(event["device_info"][f], str) for f in DEVICE_FIELDS):
        return "wrong_type:device_info"
    return None
