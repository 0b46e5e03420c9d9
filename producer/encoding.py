"""JSON encoding of a whole batch at once, by templating over columns (no per-event Python).

A record is a fixed template with holes. Every hole is a column: integers become decimal text with
Arrow's cast kernel, categorical parts (action + screen, the device profile) are ``take`` from small
pre-encoded tables, ids are hex from a byte lookup table. ``binary_join_element_wise`` then
concatenates the columns row by row in C++. The result is one Arrow binary array: one contiguous
buffer and offsets, which the delivery backends slice into Kafka records.

Field names and nesting are exactly the contract's (docs/design.md); ``timestamp`` and ``user_id`` are
JSON integers, ``metadata`` and ``device_info`` nested objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from producer import devices
from producer.action_types import ACTION_SCREENS, ACTION_TYPES
from producer.generator import EventBatch

# byte -> two lowercase hex digits, as one uint16 in memory order
_HEX_PAIRS = np.array(
    [int.from_bytes(f"{b:02x}".encode(), "little") for b in range(256)], dtype=np.uint16
)
_DASH = ord("-")


@dataclass
class EncodedBatch:
    """Serialized records: ``values`` (JSON) and ``keys`` (decimal user_id), as Arrow binary arrays."""

    values: pa.BinaryArray
    keys: pa.BinaryArray
    broken: dict[int, bytes]  # position -> malformed record that replaces the valid one
    user_id: np.ndarray  # the record keys as integers (for vectorised partitioning)
    late: int = 0
    sent_ms: np.ndarray | None = None  # when each record was sent on the simulated clock (its Kafka time then)

    @property
    def invalid(self) -> int:
        return len(self.broken)

    def records(self) -> tuple[list[bytes], list[bytes]]:
        """(values, keys) as one ``bytes`` per record: what the Kafka clients take."""
        values = to_bytes_list(self.values)
        for pos, record in self.broken.items():
            values[pos] = record
        return values, to_bytes_list(self.keys)

    def __len__(self) -> int:
        return len(self.values)


def to_bytes_list(arr: pa.BinaryArray) -> list[bytes]:
    """One ``bytes`` per element (what Kafka clients take), sliced from the contiguous buffer."""
    return arr.to_numpy(zero_copy_only=False).tolist()


def _hex(raw: np.ndarray) -> np.ndarray:
    """(n, k) uint8 -> (n, 2k) uint8 ASCII lowercase hex."""
    return _HEX_PAIRS[raw].view(np.uint8).reshape(len(raw), -1)


def _fixed(chars: np.ndarray) -> pa.Array:
    """(n, w) uint8 ASCII -> Arrow binary array of n strings of width w, without copying the bytes."""
    n, width = chars.shape
    offsets = pa.py_buffer(np.arange(0, (n + 1) * width, width, dtype=np.int32))
    return pa.BinaryArray.from_buffers(pa.binary(), n, [None, offsets, pa.py_buffer(np.ascontiguousarray(chars))])


def _uuid_text(raw: np.ndarray) -> np.ndarray:
    h = _hex(raw)
    out = np.empty((len(raw), 36), dtype=np.uint8)
    out[:, 0:8], out[:, 9:13], out[:, 14:18], out[:, 19:23], out[:, 24:36] = (
        h[:, 0:8], h[:, 8:12], h[:, 12:16], h[:, 16:20], h[:, 20:32],
    )  # fmt: skip
    out[:, [8, 13, 18, 23]] = _DASH
    return out


def _u64_hex(values: np.ndarray) -> np.ndarray:
    """uint64 -> 16 hex digits, most significant first."""
    return _hex(values.astype(">u8").view(np.uint8).reshape(-1, 8))


def _decimal(values: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(values, type=pa.int64()), pa.string()).view(pa.binary())


def _digits13(values: np.ndarray) -> np.ndarray:
    """13-digit non-negative integers (epoch ms of years 2001..2286) -> (n, 13) ASCII digits."""
    text = pc.cast(pa.array(values, type=pa.int64()), pa.string())
    data = np.frombuffer(text.buffers()[2], dtype=np.uint8)
    return data[: len(values) * 13].reshape(len(values), 13)


@lru_cache(maxsize=1)
def _action_fragments() -> pa.Array:
    # <user_id>,"action_type":"<name>","metadata":{"screen":"<screen>","session_id":"<session>...
    return pa.array(
        [
            f',"action_type":"{name}","metadata":{{"screen":"{screen}","session_id":"'.encode()
            for name, screen in zip(ACTION_TYPES, ACTION_SCREENS, strict=True)
        ],
        type=pa.binary(),
    )


@lru_cache(maxsize=1)
def _hardware_fragments() -> pa.Array:
    # <device_id>","os":"android","os_version":"15","model":"..."  (92 entries)
    return pa.array(
        [f',"os":"{os}","os_version":"{ver}","model":"{model}"'.encode() for os, ver, model in devices.HARDWARE],
        type=pa.binary(),
    )


@lru_cache(maxsize=1)
def _locale_fragments() -> pa.Array:
    # ...,"app_version":"6.4.0","country":"US","network":"wifi"}}  (app x country x network, 560 entries);
    # two small tables instead of one per profile keep the lookups in cache.
    return pa.array(
        [
            f',"app_version":"{app}","country":"{country}","network":"{network}"}}}}'.encode()
            for app, _ in devices.APP_VERSIONS
            for country, _ in devices.COUNTRIES
            for network, _ in devices.NETWORKS
        ],
        type=pa.binary(),
    )


class _FixedBlock:
    """A fixed-width run of the template (literals and fixed-width columns), filled in numpy."""

    def __init__(self, *parts: str | int) -> None:
        # str = literal text, int = width of a column slot
        self.parts = parts
        self.width = sum(len(p) if isinstance(p, str) else p for p in parts)
        self._matrices: dict[int, np.ndarray] = {}

    def fill(self, n: int, *columns: np.ndarray) -> pa.Array:
        # The literals are written once per batch size; each batch only overwrites the column slots.
        # Reusing the matrix is safe: binary_join_element_wise copies it before the next batch.
        out = self._matrices.get(n)
        if out is None:
            out = self._matrices[n] = np.empty((n, self.width), dtype=np.uint8)
            at = 0
            for part in self.parts:
                if isinstance(part, str):
                    out[:, at : at + len(part)] = np.frombuffer(part.encode(), dtype=np.uint8)
                at += len(part) if isinstance(part, str) else part
        col, at = iter(columns), 0
        for part in self.parts:
            if isinstance(part, int):
                out[:, at : at + part] = next(col)
            at += len(part) if isinstance(part, str) else part
        return _fixed(out)


_HEAD = _FixedBlock('{"event_id":"', 36, '","user_id":')
_SESSION = _FixedBlock(16, '","duration_ms":')
_TIME_DEVICE = _FixedBlock('},"timestamp":', 13, ',"device_info":{"device_id":"', 16, '"')
_EMPTY = pa.scalar(b"", type=pa.binary())


def encode_valid(batch: EventBatch) -> tuple[pa.BinaryArray, pa.BinaryArray]:
    """(JSON values, keys) for every row of the batch, all well-formed.

    Template: {"event_id":"…","user_id":…,"action_type":"…","metadata":{"screen":"…","session_id":"…",
    "duration_ms":…},"timestamp":…,"device_info":{"device_id":"…","os":"…","os_version":"…","model":"…",
    "app_version":"…","country":"…","network":"…"}}
    """
    n = len(batch)
    device_hash, hardware, locale = devices.device_codes(batch.user_id.astype(np.uint64))
    user_text = _decimal(batch.user_id)
    values = pc.binary_join_element_wise(
        _HEAD.fill(n, _uuid_text(batch.event_id)),
        user_text,
        _action_fragments().take(pa.array(batch.action)),
        _SESSION.fill(n, _u64_hex(batch.session)),
        _decimal(batch.duration_ms),
        _TIME_DEVICE.fill(n, _digits13(batch.timestamp), _u64_hex(device_hash)),
        _hardware_fragments().take(pa.array(hardware)),
        _locale_fragments().take(pa.array(locale)),
        _EMPTY,
    )
    return values, user_text


def encode(batch: EventBatch) -> EncodedBatch:
    """Serialize a batch; the rows in ``batch.invalid`` are replaced by malformed records."""
    values, keys = encode_valid(batch)
    broken: dict[int, bytes] = {}
    if len(batch.invalid):
        from producer.malformed import break_records

        records = break_records(values, batch.invalid, batch.invalid_kind)
        broken = dict(zip(batch.invalid.tolist(), records, strict=True))
    return EncodedBatch(values, keys, broken, batch.user_id, late=batch.late, sent_ms=batch.sent_ms)
