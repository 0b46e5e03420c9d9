"""A Flink TableEnvironment with the pinned connector jars on its classpath."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.config import Settings
from pipeline.errors import UserError

if TYPE_CHECKING:
    from pyflink.table import TableEnvironment


def connector_jars(settings: Settings) -> list[str]:
    """file:// URLs of the Kafka and Paimon jars fetched by scripts/setup.sh."""
    jars = sorted((settings.jars_dir / "flink").glob("*.jar"))
    names = " ".join(j.name for j in jars)
    for needed in ("flink-sql-connector-kafka", "paimon-flink", "paimon-s3"):
        if needed not in names:
            raise UserError(
                f"Flink connector jar {needed}-*.jar is missing in {settings.jars_dir / 'flink'}: "
                "run scripts/setup.sh"
            )
    return [j.as_uri() for j in jars]


def create_table_env(
    settings: Settings, streaming: bool = True, parallelism: int = 1, extra: dict[str, str] | None = None
) -> TableEnvironment:
    from pyflink.table import EnvironmentSettings, TableEnvironment

    env_settings = EnvironmentSettings.in_streaming_mode() if streaming else EnvironmentSettings.in_batch_mode()
    t_env = TableEnvironment.create(env_settings)
    conf = t_env.get_config()
    conf.set("pipeline.jars", ";".join(connector_jars(settings)))
    conf.set("parallelism.default", str(parallelism))
    for key, value in (extra or {}).items():
        conf.set(key, value)
    return t_env
