"""Why an insert failed, and what the loader does about it: classified by ClickHouse's own error codes, not guessed.

- ``DATA``: the rows themselves can never be inserted (a value the column cannot hold, a block spanning more
  partitions than a single INSERT may create). The loader splits the batch until the rows that fail are alone and
  dead-letters those with the server's reason; the rest are loaded.
- ``WAIT``: the server is down, busy or not ready for this insert (connection refused, timeouts, too many parts
  waiting for merges, memory, a table detached or read-only for a while, a missing grant). Retried with backoff
  until it works, without giving up the Kafka partitions: nothing is dead-lettered for a fault of the server.
- ``UNKNOWN``: anything else. Retried a few times (it may be a passing fault), then treated as ``DATA``.
"""

from __future__ import annotations

import enum
import re


class Kind(enum.Enum):
    DATA = "data"
    WAIT = "wait"
    UNKNOWN = "unknown"


# ClickHouse error codes (src/Common/ErrorCodes.cpp) that depend on the rows being inserted.
DATA_CODES = {
    6,    # CANNOT_PARSE_TEXT
    27,   # CANNOT_PARSE_INPUT_ASSERTION_FAILED
    38,   # CANNOT_PARSE_DATE
    41,   # CANNOT_PARSE_DATETIME
    53,   # TYPE_MISMATCH
    69,   # ARGUMENT_OUT_OF_BOUND
    70,   # CANNOT_CONVERT_TYPE
    72,   # CANNOT_PARSE_NUMBER
    117,  # INCORRECT_DATA
    321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    407,  # DECIMAL_OVERFLOW
}
# Codes that say "not now": the same insert succeeds once the server (or its operator) has recovered.
WAIT_CODES = {
    3,    # UNEXPECTED_END_OF_FILE (connection cut)
    16,   # NO_SUCH_COLUMN_IN_TABLE (a schema change in progress; fixed by the operator, not by the rows)
    60,   # UNKNOWN_TABLE (detached or dropped: the loader waits for it)
    81,   # UNKNOWN_DATABASE
    159,  # TIMEOUT_EXCEEDED
    164,  # READONLY
    202,  # TOO_MANY_SIMULTANEOUS_QUERIES
    203,  # NO_FREE_CONNECTION
    209,  # SOCKET_TIMEOUT
    210,  # NETWORK_ERROR
    236,  # ABORTED
    241,  # MEMORY_LIMIT_EXCEEDED
    242,  # TABLE_IS_READ_ONLY
    252,  # TOO_MANY_PARTS (merges behind; but see _SINGLE_BLOCK below)
    274,  # AIO_READ_ERROR
    319,  # UNKNOWN_STATUS_OF_INSERT
    394,  # QUERY_WAS_CANCELLED
    425,  # SYSTEM_ERROR
    497,  # ACCESS_DENIED (a grant missing: the operator's to fix)
    516,  # AUTHENTICATION_FAILED
    999,  # KEEPER_EXCEPTION
}
# Code 252 also means "Too many partitions for single INSERT block (more than N)": the block's rows span too many
# days (a backfill), which no retry fixes but a smaller block does.
_SINGLE_BLOCK = re.compile(r"too many partitions for single insert block", re.IGNORECASE)
_CODE = re.compile(r"\bCode:\s*(\d+)")


def classify(exc: BaseException) -> Kind:
    """What to do about ``exc``, raised by an insert through clickhouse-connect (server or chDB)."""
    if isinstance(exc, ConnectionError | TimeoutError | OSError):
        return Kind.WAIT
    code = getattr(exc, "code", None)
    if code is None:
        found = _CODE.search(str(exc))
        code = int(found.group(1)) if found else None
    if code == 252 and _SINGLE_BLOCK.search(str(exc)):
        return Kind.DATA
    if code in DATA_CODES:
        return Kind.DATA
    if code in WAIT_CODES:
        return Kind.WAIT
    from clickhouse_connect.driver.exceptions import OperationalError

    if code is None and isinstance(exc, OperationalError):  # transport: refused, reset, timed out
        return Kind.WAIT
    return Kind.UNKNOWN


def reason(exc: BaseException, limit: int = 300) -> str:
    """The server's message, one line, without its stack trace (for a dead letter's reason)."""
    text = " ".join(str(exc).split())
    return text[:limit]
