"""Run the pipeline job in the background for the demo: a mini-cluster process, or a cluster submission."""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request

from base.config import PROJECT_ROOT, Settings
from base.errors import UserError
from local_services.process import ManagedProcess

# Short checkpoints in the demo: Paimon rows become visible on each checkpoint.
DEMO_CHECKPOINT_INTERVAL = "10 s"


def process(settings: Settings) -> ManagedProcess:
    return ManagedProcess("flink-job", settings.run_dir, settings.logs_dir)


def start(settings: Settings, cluster: bool = False, checkpoint_interval: str = DEMO_CHECKPOINT_INTERVAL) -> str:
    """Start the streaming job; returns a one-line status."""
    job_flags = ["--checkpoint-interval", checkpoint_interval, "--parallelism", "2"]
    if cluster:
        from flink_job.cli import add_job_arguments, job_config
        from local_services import flink_cluster

        lines = [flink_cluster.start(settings)]
        import argparse

        parser = argparse.ArgumentParser()
        add_job_arguments(parser)
        lines.append(flink_cluster.submit(settings, job_config(parser.parse_args(job_flags))).splitlines()[-1])
        return "; ".join(lines)
    proc = process(settings)
    if proc.pid() is not None:
        raise UserError(f"a Flink job from an earlier demo is still running (pid {proc.pid()}): "
                        f"stop it with `kill {proc.pid()}` or wait for it to end")
    argv = [sys.executable, "-m", "flink_job", *job_flags]
    # the whole environment passed on (no variable read here), the settings on top
    pid = proc.start(argv, env={**os.environ, **settings.to_env()}, cwd=PROJECT_ROOT)
    time.sleep(3)
    if proc.pid() is None:
        raise UserError(f"the Flink job exited at start; see {proc.log_file}:\n{proc.log_tail()}")
    return f"flink job started in a local mini-cluster (pid {pid}); log {proc.log_file}"


def stop(settings: Settings, cluster: bool = False) -> str:
    if cluster:
        from local_services import flink_cluster

        _cancel_running_jobs(flink_cluster.rest_url(settings))
        return flink_cluster.stop(settings)
    return "flink job stopped" if process(settings).stop(timeout=30) else "flink job was not running"


def _cancel_running_jobs(rest: str) -> None:
    try:
        with urllib.request.urlopen(f"{rest}/jobs", timeout=5) as resp:
            jobs = json.load(resp)["jobs"]
        for job in jobs:
            if job["status"] == "RUNNING":
                req = urllib.request.Request(f"{rest}/jobs/{job['id']}?mode=cancel", method="PATCH")
                urllib.request.urlopen(req, timeout=10).close()
    except OSError:
        pass  # the cluster is going down anyway
