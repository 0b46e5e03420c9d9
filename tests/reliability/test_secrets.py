"""A secret with every character that breaks naive quoting (' @ : / #) works end to end and is printed nowhere.

A private S3 server with such a secret key; the key reaches every part through S3_SECRET_KEY_FILE as a user
would hand it over: the Flink job writes the lake through it (the CREATE CATALOG literal is escaped), pypaimon and
boto3 read it back, and neither the CLI's output (`job`, `lake describe`, `lake table-function`, `config`) nor the
job's logs contain it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from base.config import PROJECT_ROOT, Settings
from tests.conftest import free_port
from tests.reliability.conftest import create_topics, day_ago_slot, encode, event, job_for, produce

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

SECRET = "s3-'@:/#?%-secret"


def test_a_secret_with_quotes_and_url_characters_works_and_is_never_printed(services: Settings, unique_name,
                                                                            tmp_path: Path) -> None:
    from local_services import s3
    from producer.action_types import ACTION_TYPES

    secret_file = tmp_path / "s3_secret_key"
    secret_file.write_text(SECRET + "\n")
    private = replace(services, data_dir=tmp_path / "data", s3_endpoint=f"http://127.0.0.1:{free_port()}",
                      s3_secret_key=SECRET, paimon_warehouse=f"s3://{services.s3_bucket}/{unique_name}")
    s3.start(private)
    try:
        s3.ensure_bucket(private)
        job = job_for(unique_name, parallelism=1)
        create_topics(services, job, source_partitions=1, aggregate_partitions=1)
        t0 = day_ago_slot()
        produce(services, job.source_topic, [encode(event(n, 1 + n % 5, ACTION_TYPES[0], t0 + n * 1000))
                                            for n in range(50)])
        env = {**os.environ, **private.to_env(), "S3_SECRET_KEY_FILE": str(secret_file),
               "FLINK_LOG_DIR": str(tmp_path / "flink-logs")}
        env.pop("S3_SECRET_KEY")

        def cli(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([sys.executable, "-m", "pipeline", *args], env=env, cwd=PROJECT_ROOT,
                                  capture_output=True, text=True, timeout=600)

        ran = cli("job", *job.to_argv())
        assert ran.returncode == 0, ran.stderr[-3000:]
        described = cli("lake", "describe")
        assert described.returncode == 0 and "rows         50" in described.stdout, described.stdout
        function = cli("lake", "table-function")
        assert function.returncode == 0 and "'${S3_SECRET_KEY}'" in function.stdout, function.stdout
        shown = cli("config")
        assert shown.returncode == 0 and "S3_SECRET_KEY" in shown.stdout
        printed = "".join(p.stdout + p.stderr for p in (ran, described, function, shown))
        logs = "".join(f.read_text(errors="replace") for f in (tmp_path / "flink-logs").rglob("*") if f.is_file())
        for text, where in ((printed, "the CLI's output"), (logs, "the job's logs")):
            for form in (SECRET, SECRET.replace("'", "''"), SECRET.replace("'", "\\'")):
                assert form not in text, f"the secret appears in {where}"
    finally:
        s3.stop(private)
