"""Table maintenance through Paimon's own Flink procedures (paimon-flink 1.1):

- ``sys.compact``: rewrite small files of the given partitions into target-size files;
- ``sys.expire_snapshots``: drop old snapshots (and the files only they reference) by retention;
- ``sys.expire_partitions``: drop partitions whose date is older than an expiration time;
- ``LocalOrphanFilesClean`` (what ``sys.remove_orphan_files`` runs): delete files no snapshot
  references, e.g. a killed writer's leftovers, and say which.

The first three commit a new snapshot through Paimon's optimistic commit, so they are safe to run while the
streaming job writes: a conflicting commit (the writer compacted the same bucket meanwhile) fails and is
retried or reported, never half-applied. Expiry keeps ``retain_min`` snapshots and never removes the
snapshot a running writer or reader holds (Paimon tracks consumers).

Signatures (from the procedure classes in paimon-flink-2.0-1.1.1.jar):
  compact(table, partitions, order_strategy, order_by, options, where, partition_idle_time, compact_strategy)
  expire_snapshots(table, retain_max, retain_min, older_than, max_deletes, options)
  expire_partitions(table, expiration_time, timestamp_formatter, timestamp_pattern, expire_strategy,
                    max_expires, options)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from base.config import Settings
from base.errors import UserError
from lakehouse.catalog import DATABASE, flink_create_catalog_sql

if TYPE_CHECKING:
    from pyflink.table import TableEnvironment


@dataclass
class Maintenance:
    """A batch Flink TableEnvironment with the Paimon catalog, created on first use and reused.

    Starting the local Flink runtime takes tens of seconds; run several procedures on one instance.
    """

    settings: Settings
    parallelism: int = 1
    _t_env: TableEnvironment | None = field(default=None, init=False, repr=False)

    @property
    def t_env(self) -> TableEnvironment:
        if self._t_env is None:
            from lakehouse.catalog import CATALOG_NAME
            from local_services.flink_runtime import create_table_env

            # table.dml-sync: Paimon's procedures wait for their Flink job only when this is set;
            # otherwise CALL sys.compact returns at submission with the files not yet rewritten.
            t_env = create_table_env(self.settings, streaming=False, parallelism=self.parallelism,
                                     extra={"table.dml-sync": "true"})
            t_env.execute_sql(flink_create_catalog_sql(self.settings))
            t_env.use_catalog(CATALOG_NAME)
            self._t_env = t_env
        return self._t_env

    def call(self, procedure: str, **args: str | int | bool | None) -> list[tuple]:
        """``CALL sys.<procedure>(name => value, ...)``; None arguments are left out. Returns its rows."""
        named = ", ".join(f"`{k}` => {_literal(v)}" for k, v in args.items() if v is not None)
        statement = f"CALL sys.{procedure}({named})"
        try:
            result = self.t_env.execute_sql(statement)
            with result.collect() as rows:
                return [tuple(r) for r in rows]
        except Exception as exc:  # Py4J wraps Flink's exception; its first line names the problem
            raise UserError(f"{statement} failed: {_first_line(exc)}") from None

    def compact(self, table: str, partitions: list[dict[str, str | int]] | None = None,
                full: bool = True) -> list[tuple]:
        """Compact ``partitions`` (each a {column: value} dict; None = the whole table).

        ``full`` rewrites every file of each bucket (what removes small files in a batch run);
        otherwise Paimon's normal, minor compaction picks files by ``compaction.*`` options.
        """
        return self.call(
            "compact",
            table=_qualified(table),
            partitions=partition_spec(partitions) if partitions else None,
            compact_strategy="full" if full else "minor",
        )

    def expire_snapshots(self, table: str, retain_max: int | None = None, retain_min: int | None = None,
                         older_than: str | None = None, max_deletes: int | None = None) -> list[tuple]:
        """Expire snapshots beyond ``retain_max``, or older than ``older_than`` ('yyyy-MM-dd HH:mm:ss')
        while more than ``retain_min`` remain. Returns [(expired snapshot count,)]."""
        if retain_max is None and older_than is None:
            raise UserError("expire-snapshots: give --retain-max and/or --older-than")
        if retain_min is not None and retain_min < 1:
            raise UserError("expire-snapshots: --retain-min must be at least 1 (the latest snapshot stays)")
        return self.call("expire_snapshots", table=_qualified(table), retain_max=retain_max,
                         retain_min=retain_min, older_than=older_than, max_deletes=max_deletes)

    def expire_partitions(self, table: str, expiration_time: str, timestamp_pattern: str,
                          timestamp_formatter: str = "yyyy-MM-dd", max_expires: int | None = None) -> list[tuple]:
        """Drop partitions whose time (``timestamp_pattern`` over partition values, e.g. '$event_date',
        parsed with ``timestamp_formatter``) is older than now minus ``expiration_time`` ('7 d').
        Returns one row per expired partition."""
        return self.call("expire_partitions", table=_qualified(table), expiration_time=expiration_time,
                         timestamp_formatter=timestamp_formatter, timestamp_pattern=timestamp_pattern,
                         max_expires=max_expires)


    def remove_orphan_files(self, table: str, older_than: datetime, dry_run: bool = True) -> list[str]:
        """Files under the table that no snapshot, manifest or index references and that are older than
        ``older_than`` (UTC); deleted unless ``dry_run``. Returns their paths either way.

        Paimon's own cleaner (``LocalOrphanFilesClean``, what ``CALL sys.remove_orphan_files`` runs in
        local mode), called through the Flink runtime's JVM because the procedure returns only a count
        and a dry run should say which files. Keep ``older_than`` well in the past (Paimon's default is
        one day): a file a writer has written but not yet committed is unreferenced too.
        """
        from pyflink.java_gateway import get_gateway

        from lakehouse.catalog import flink_catalog_options

        _ = self.t_env  # starts the runtime whose class path holds Paimon
        jvm = get_gateway().jvm
        options = jvm.org.apache.paimon.options.Options()
        for key, value in flink_catalog_options(self.settings).items():
            if key != "type":
                options.set(key, value)
        database, _, name = _qualified(table).partition(".")
        try:
            catalog = jvm.org.apache.paimon.catalog.CatalogFactory.createCatalog(
                jvm.org.apache.paimon.catalog.CatalogContext.create(options))
            java_table = catalog.getTable(jvm.org.apache.paimon.catalog.Identifier.create(database, name))
            millis = int(older_than.astimezone(UTC).timestamp() * 1000)
            result = jvm.org.apache.paimon.operation.LocalOrphanFilesClean(java_table, millis, dry_run).clean()
        except Exception as exc:  # Py4J wraps the Java exception; its first line names the problem
            raise UserError(f"remove orphan files of {database}.{name} failed: {_first_line(exc)}") from None
        paths = result.getDeletedFilesPath()
        return sorted(str(p.toString()) for p in paths) if paths is not None else []


def partition_spec(partitions: list[dict[str, str | int]]) -> str:
    """Paimon's partitions argument: 'k1=v1,k2=v2;k1=v3,k2=v4'."""
    for p in partitions:
        for k, v in p.items():
            if any(c in f"{k}{v}" for c in ",;='"):
                raise UserError(f"partition value {k}={v} contains one of , ; = '")
    return ";".join(",".join(f"{k}={v}" for k, v in p.items()) for p in partitions)


def parse_partition(text: str) -> dict[str, str]:
    """'event_date=2026-11-23,event_hour=4' -> {'event_date': '2026-11-23', 'event_hour': '4'}."""
    spec: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise UserError(f"--partition '{text}': expected col=value[,col=value]")
        spec[key.strip()] = value.strip()
    return spec


def _qualified(table: str) -> str:
    return table if "." in table else f"{DATABASE}.{table}"


def _literal(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def _first_line(exc: Exception) -> str:
    text = str(exc)
    for line in text.splitlines():
        if "Exception:" in line and "Py4J" not in line:
            return line.strip()
    return text.splitlines()[0] if text else type(exc).__name__
