"""Which fixed bucket a user's rows live in, computed exactly as Paimon's writers compute it.

Paimon hashes the bucket key as a ``BinaryRow`` with MurmurHash3 (seed 42) and takes
``abs(hash % buckets)``. ``bucket_of`` asks pypaimon's own row-key extractor, so it follows Paimon by
construction; ``buckets_of`` is the same arithmetic vectorised with numpy for one BIGINT key, used to
write millions of synthetic rows quickly (pypaimon hashes row by row in Python). Tests check the two
agree, and that Flink's writer put rows in the bucket ``bucket_of`` names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    from pypaimon.table.file_store_table import FileStoreTable

_SEED = 42
_C1 = np.uint32(0xCC9E2D51)
_C2 = np.uint32(0x1B873593)


def bucket_of(table: FileStoreTable, key: int) -> int:
    """The bucket of ``key`` (the value of the table's single BIGINT bucket-key column)."""
    from pypaimon.write.row_key_extractor import FixedBucketRowKeyExtractor

    extractor = FixedBucketRowKeyExtractor(table.table_schema)
    (column,) = extractor.bucket_keys
    # A one-row batch in the table's column order; the extractor reads only the bucket key.
    batch = pa.RecordBatch.from_pydict(
        {f.name: pa.array([key], pa.int64()) if f.name == column else pa.nulls(1) for f in table.table_schema.fields}
    )
    _, buckets = extractor.extract_partition_bucket_batch(batch)
    return buckets[0]


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def _mix(h: np.ndarray, k: np.ndarray) -> np.ndarray:
    k = _rotl(k * _C1, 15) * _C2
    h = _rotl(h ^ k, 13)
    return h * np.uint32(5) + np.uint32(0xE6546B64)


def buckets_of(keys: np.ndarray, num_buckets: int) -> np.ndarray:
    """Buckets of many BIGINT keys at once (int32 array), the arithmetic of ``bucket_of`` in numpy.

    A one-column BinaryRow of a non-null BIGINT is 16 bytes: an 8-byte header (row kind and null
    bits, all zero) then the little-endian long, hashed as four 32-bit words.
    """
    v = np.asarray(keys, dtype=np.int64).view(np.uint64)
    with np.errstate(over="ignore"):
        h = np.full(v.shape, _SEED, dtype=np.uint32)
        zero = np.zeros(v.shape, dtype=np.uint32)
        for word in (zero, zero, (v & np.uint64(0xFFFFFFFF)).astype(np.uint32), (v >> np.uint64(32)).astype(np.uint32)):
            h = _mix(h, word)
        h ^= np.uint32(16)
        h ^= h >> np.uint32(16)
        h *= np.uint32(0x85EBCA6B)
        h ^= h >> np.uint32(13)
        h *= np.uint32(0xC2B2AE35)
        h ^= h >> np.uint32(16)
    # Java: Math.abs(hash % n) on the signed int, where % truncates toward zero like np.fmod.
    return np.abs(np.fmod(h.view(np.int32), np.int32(num_buckets))).astype(np.int32)
