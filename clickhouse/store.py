"""The one front door to ClickHouse: ``clickhouse_connect.get_client(dsn=...)`` plus the schema.

The DSN is ``settings.clickhouse_dsn``: a server URL when CLICKHOUSE_URL is set, otherwise
``chdb:///<DATA_DIR>/chdb``. Callers never branch on the backend. One process at a time may own
an embedded chDB directory; inside that process any number of clients share the engine.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlparse

import clickhouse_connect
from clickhouse_connect import common as clickhouse_common
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError, ProgrammingError

from base.config import mask_url
from base.errors import UserError
from clickhouse.schema import SchemaOptions, analytics_statements

log = logging.getLogger(__name__)

# FINAL reads partition by partition: a key never spans two days (window_start is in the key).
QUERY_SETTINGS = {"do_not_merge_across_partitions_select_final": 1}


def is_embedded(dsn: str) -> bool:
    return dsn.startswith("chdb:")


def chdb_path(dsn: str) -> Path | None:
    return Path(urlparse(dsn).path) if is_embedded(dsn) else None


def api_limits(timeout_s: int) -> dict[str, object]:
    """Per-query limits of the API's queries: ClickHouse stops a query past them with an error the API turns into a
    clear 503. A user whose profile is readonly=1 cannot change settings: they are dropped (with a warning by
    clickhouse-connect) and the profile's own limits apply (docker-compose's api_reader profile sets the same)."""
    return {"max_execution_time": timeout_s, "max_memory_usage": 2_000_000_000, "max_result_rows": 200_000,
            "result_overflow_mode": "throw"}


def connect(dsn: str, settings: dict[str, object] | None = None) -> Client:
    """A client for ``dsn``; a chDB directory owned by another process becomes a UserError."""
    path = chdb_path(dsn)
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
    # A setting the user may not change (a readonly profile) is dropped, not an error on every query.
    clickhouse_common.set_setting("invalid_setting_action", "drop")
    try:
        return clickhouse_connect.get_client(dsn=dsn, settings={**QUERY_SETTINGS, **(settings or {})})
    except ImportError:
        raise UserError("the embedded ClickHouse needs chDB, which this install left out: pip install "
                        "'user-actions-pipeline[embedded]', or set CLICKHOUSE_URL to a ClickHouse server") from None
    except ProgrammingError as exc:
        if path is not None:
            raise UserError(
                f"clickhouse: the embedded chDB directory {path} is in use by another process "
                f"(one process owns it: stop the ClickHouse service with `pipeline clickhouse stop`, "
                f"or use its HTTP API)"
            ) from None
        raise UserError(f"clickhouse: cannot connect to {mask_url(dsn)}: {_safe_text(str(exc), dsn)}") from None
    except ClickHouseError as exc:
        raise UserError(f"clickhouse: cannot connect to {mask_url(dsn)}: {_safe_text(str(exc), dsn)}") from None


def redactor(dsn: str) -> Callable[[str], str]:
    """A function that masks the DSN's password in any text (what the loader shows in /api/status)."""
    return lambda text: _safe_text(text, dsn)


def _safe_text(text: str, dsn: str) -> str:
    """An error message with the DSN's password (raw or percent-encoded) masked: drivers quote the URL they used."""
    parsed = urlparse(dsn)
    for secret in {parsed.password, unquote(parsed.password or "")} - {None, ""}:
        text = text.replace(secret, "***")
    return text


class ThreadClients:
    """Clients for many threads: ``get()`` gives a long-lived thread (the loader) its own client,
    ``borrow()`` lends a pooled one to a short-lived thread (an HTTP request). A chDB handle
    serialises its calls and an HTTP client is not thread-safe, so no two threads share one."""

    def __init__(self, dsn: str, settings: dict[str, object] | None = None) -> None:
        self.dsn = dsn
        self.settings = settings  # on every query of these clients (the API's limits)
        self._local = threading.local()
        self._all: list[Client] = []
        self._idle: list[Client] = []
        self._lock = threading.Lock()

    @contextmanager
    def borrow(self) -> Iterator[Client]:
        with self._lock:
            client = self._idle.pop() if self._idle else None
        if client is None:
            client = connect(self.dsn, self.settings)
            with self._lock:
                self._all.append(client)
        try:
            yield client
        finally:
            with self._lock:
                self._idle.append(client)

    def get(self) -> Client:
        client = getattr(self._local, "client", None)
        if client is None:
            client = connect(self.dsn, self.settings)
            self._local.client = client
            with self._lock:
                self._all.append(client)
        return client

    def close(self) -> None:
        with self._lock:
            for client in self._all:
                try:
                    client.close()
                except Exception:  # closing is best effort at shutdown
                    log.debug("closing a ClickHouse client failed", exc_info=True)
            self._all.clear()
            self._idle.clear()


def apply_schema(client: Client, options: SchemaOptions) -> int:
    """Create the database, tables and views if missing, and bring the TTLs to ``options``.

    Returns the number of statements run. Idempotent: a second run changes nothing.
    """
    stmts = analytics_statements(options)
    for stmt in stmts:
        client.command(stmt)
    return len(stmts) + _apply_ttls(client, options)


def _apply_ttls(client: Client, options: SchemaOptions) -> int:
    """CREATE ... IF NOT EXISTS keeps an existing table's TTL; a changed setting is applied with ALTER."""
    wanted = {
        "user_aggregations": options.window_ttl_days,
        "user_action_aggregations": options.window_ttl_days,
        "user_aggregations_realtime": options.realtime_ttl_days,
    }
    current = dict(client.query(
        "SELECT name, engine_full FROM system.tables WHERE database = {db:String}",
        parameters={"db": options.database},
    ).result_rows)
    changed = 0
    for table, days in wanted.items():
        if f"toIntervalDay({days})" not in current.get(table, ""):
            # Expired rows go at the next merge instead of a rewrite of every part now.
            client.command(
                f"ALTER TABLE {options.database}.{table} MODIFY TTL toDateTime(window_start) + INTERVAL {days} DAY",
                settings={"materialize_ttl_after_modify": 0},
            )
            changed += 1
    return changed

