"""Malformed records on purpose, to exercise the pipeline's rejected-records path.

Each broken record starts from a valid event and breaks it one way (``KINDS``). They are few
(``--invalid-fraction``), so plain Python per record is fine here.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

from base.contract import EVENT_FIELDS, MAX_USERS
from producer.generator import INVALID_KINDS

KINDS = ("bad_json", "missing_field", "wrong_type", "out_of_range_user_id", "unknown_action_type")
assert len(KINDS) == INVALID_KINDS

# A wrong JSON type for a field that no lenient parser can coerce back (e.g. no numeric strings).
_WRONG_TYPES = (
    ("user_id", "user-42"),
    ("timestamp", "2024-06-01T12:00:00Z"),
    ("metadata", "not an object"),
    ("device_info", ["android"]),
    ("action_type", 17),
)
_BAD_USER_IDS = (0, -1, MAX_USERS + 1, 10**12)
_UNKNOWN_ACTIONS = ("teleport", "app_opened", "SCREEN_VIEW", "")


def break_record(valid: bytes, kind: int, salt: int) -> bytes:
    """One malformed variant of a valid JSON record; ``salt`` picks among the variants of a kind."""
    name = KINDS[kind]
    if name == "bad_json":
        return valid[: max(1, len(valid) // 2)]  # truncated mid-object
    event = json.loads(valid)
    if name == "missing_field":
        del event[EVENT_FIELDS[salt % len(EVENT_FIELDS)]]
    elif name == "wrong_type":
        field, value = _WRONG_TYPES[salt % len(_WRONG_TYPES)]
        event[field] = value
    elif name == "out_of_range_user_id":
        event["user_id"] = _BAD_USER_IDS[salt % len(_BAD_USER_IDS)]
    else:
        event["action_type"] = _UNKNOWN_ACTIONS[salt % len(_UNKNOWN_ACTIONS)]
    return json.dumps(event, separators=(",", ":")).encode()


def break_records(values: pa.BinaryArray, positions: np.ndarray, kinds: np.ndarray) -> list[bytes]:
    """Malformed versions of ``values[positions]``, one kind each."""
    return [break_record(values[int(p)].as_py(), int(k), int(p)) for p, k in zip(positions, kinds, strict=True)]
