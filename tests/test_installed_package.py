"""The package as an image installs it: a wheel (not an editable checkout) in a fresh virtual environment, run from
another directory. The CLI works, the defaults for data and jars point outside any checkout, and the dashboard page
loads every asset it names (Chart.js is package data: no npm, no .cache)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from base.config import PROJECT_ROOT
from tests.conftest import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def _base_python() -> str:
    """The interpreter the project's venv was made from (a venv of a venv would inherit nothing useful)."""
    return getattr(sys, "_base_executable", sys.executable)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the built wheel and its [embedded] extra (chDB, for the dashboard), pinned by
    constraints.txt; no [flink], no [dev], no editable link to this checkout."""
    root = tmp_path_factory.mktemp("installed")
    wheels = root / "wheels"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels),
                            str(PROJECT_ROOT)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = wheels.glob("user_actions_pipeline-*.whl")
    venv = root / "venv"
    subprocess.run([_base_python(), "-m", "venv", str(venv)], check=True, timeout=120)
    done = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
                           "-c", str(PROJECT_ROOT / "constraints.txt"), f"{wheel}[embedded]"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return venv


def _env(home: Path, **extra: str) -> dict[str, str]:
    """A user's environment: no project variables, no PYTHONPATH into the checkout, a home of its own."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ")}
    return {**env, "HOME": str(home), **extra}


def test_the_installed_cli_works_outside_the_checkout(installed: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    pipeline = str(installed / "bin" / "pipeline")
    shown = subprocess.run([pipeline, "config"], cwd=elsewhere, env=_env(tmp_path), capture_output=True, text=True,
                           timeout=120)
    assert shown.returncode == 0, shown.stderr
    config = dict(re.split(r"\s+", line.strip(), maxsplit=1) for line in shown.stdout.splitlines())
    data = tmp_path / ".local" / "share" / "user-actions-pipeline"
    assert config["DATA_DIR"] == str(data)
    assert config["JARS_DIR"] == str(data / "jars")
    assert config["PAIMON_WAREHOUSE"] == f"file://{data}/warehouse"
    imported = subprocess.run([str(installed / "bin" / "python"), "-c",
                               "import clickhouse, base.config as c; print(clickhouse.__file__, c.IN_CHECKOUT)"],
                              cwd=elsewhere, env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    where, in_checkout = imported.stdout.split()
    assert "site-packages" in where and not where.startswith(str(PROJECT_ROOT)) and in_checkout == "False"
    for args in (["--help"], ["clickhouse", "--help"], ["lake", "--help"], ["produce", "--help"]):
        ran = subprocess.run([pipeline, *args], cwd=elsewhere, env=_env(tmp_path), capture_output=True, text=True,
                             timeout=120)
        assert ran.returncode == 0 and "usage:" in ran.stdout, (args, ran.stderr[-2000:])
    # A part that needs an extra this install left out says so in one line.
    job = subprocess.run([pipeline, "flink-cluster", "start"], cwd=elsewhere, env=_env(tmp_path),
                         capture_output=True, text=True, timeout=120)
    assert job.returncode == 2 and "Traceback" not in job.stderr, job.stderr[-2000:]
    assert "[flink]" in job.stderr, job.stderr


def test_the_installed_dashboard_serves_every_asset_its_page_names(installed: Path, tmp_path: Path) -> None:
    port = free_port()
    env = _env(tmp_path, DATA_DIR=str(tmp_path / "data"), DASHBOARD_PORT=str(port))
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        serve = subprocess.Popen([str(installed / "bin" / "pipeline"), "clickhouse", "serve", "--no-loader"],
                                 cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert serve.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        with urllib.request.urlopen(f"{base}/", timeout=10) as resp:
            page = resp.read().decode()
        assets = re.findall(r'<(?:script|link)[^>]+(?:src|href)="(/[^"]+)"', page)
        assert any("chart" in a for a in assets), assets
        for asset in assets:
            with urllib.request.urlopen(f"{base}{asset}", timeout=10) as resp:
                body = resp.read()
                assert resp.status == 200 and len(body) > 100, asset
                if "chart" in asset:
                    assert b"Chart" in body[:5000], asset
    finally:
        os.killpg(serve.pid, 15)
        serve.wait(60)


def test_the_wheel_ships_every_file_the_job_reads(installed: Path) -> None:
    """The job reads its SQL at run time (flink_job/sql and its sub-folders, e.g. windows/operator.sql for the default
    window operator): every one of those files of the checkout is in the installed package, byte for byte."""
    found = list((installed / "lib").glob("python3*/site-packages/flink_job"))
    assert len(found) == 1, found
    site = found[0]
    job_dir = PROJECT_ROOT / "flink_job"
    wanted = sorted(p.relative_to(job_dir) for p in (job_dir / "sql").rglob("*.sql"))
    assert any(p.parts[:2] == ("sql", "windows") for p in wanted)
    missing = [str(p) for p in wanted if not (site / p).is_file()]
    assert not missing, f"not in the wheel (pyproject.toml [tool.setuptools.package-data]): {missing}"
    assert all((site / p).read_bytes() == (job_dir / p).read_bytes() for p in wanted)

