"""Catalog access in one place: the same warehouse and S3 options for Flink SQL and for pypaimon."""

from __future__ import annotations

from typing import TYPE_CHECKING

from base.config import Settings

if TYPE_CHECKING:
    from pypaimon.catalog.catalog import Catalog

CATALOG_NAME = "paimon"  # Flink catalog name; tables are paimon.lake.<table>
DATABASE = "lake"


def flink_catalog_options(settings: Settings) -> dict[str, str]:
    """Options of ``CREATE CATALOG lake WITH (...)`` for Paimon's Flink connector."""
    options = {"type": "paimon", "warehouse": settings.paimon_warehouse}
    if settings.warehouse_is_s3:
        options.update(
            {
                # Paimon's S3 file IO is Hadoop S3A underneath: s3.* maps to fs.s3a.*.
                "s3.endpoint": settings.s3_endpoint,
                "s3.access-key": settings.s3_access_key,
                "s3.secret-key": settings.s3_secret_key,
                "s3.path.style.access": "true",
                # Without this, every file close also deletes parent "directory markers" through a
                # small shared pool, which stalls writers of 128 buckets at once (seen with S3A 3.x).
                "s3.directory.marker.retention": "keep",
            }
        )
    return options


def flink_create_catalog_sql(settings: Settings) -> str:
    """The DDL with every option as an escaped SQL literal: a key or secret with a quote cannot break it."""
    opts = ",\n  ".join(f"{_literal(k)} = {_literal(v)}" for k, v in flink_catalog_options(settings).items())
    return f"CREATE CATALOG IF NOT EXISTS {CATALOG_NAME} WITH (\n  {opts}\n)"


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def pypaimon_catalog_options(settings: Settings) -> dict[str, str]:
    options = {"warehouse": settings.paimon_warehouse}
    if settings.warehouse_is_s3:
        options.update(
            {
                "fs.s3.endpoint": settings.s3_endpoint,
                "fs.s3.accessKeyId": settings.s3_access_key,
                "fs.s3.accessKeySecret": settings.s3_secret_key,
                "fs.s3.region": "us-east-1",
                # Path-style requests (endpoint/bucket/key), as Flink's S3A above: they work on every S3 server,
                # MinIO without MINIO_DOMAIN included; virtual hosts (bucket.endpoint) need DNS for each bucket.
                "fs.s3.path-style-access": "true",
            }
        )
    return options


def open_catalog(settings: Settings) -> Catalog:
    """The pypaimon catalog on the configured warehouse, with the ``lake`` database present."""
    from pypaimon.catalog.catalog_factory import CatalogFactory

    catalog = CatalogFactory.create(pypaimon_catalog_options(settings))
    catalog.create_database(DATABASE, True)
    return catalog


def open_table(settings: Settings, name: str):  # -> pypaimon FileStoreTable
    """``lake.<name>`` on the configured warehouse; a missing table is a UserError, not a traceback."""
    from pypaimon.catalog.catalog_exception import TableNotExistException

    from base.errors import UserError

    try:
        return open_catalog(settings).get_table(f"{DATABASE}.{name}")
    except TableNotExistException:
        raise UserError(
            f"Paimon table {DATABASE}.{name} does not exist in {settings.paimon_warehouse} "
            "(the Flink job creates it; check PAIMON_WAREHOUSE)"
        ) from None
