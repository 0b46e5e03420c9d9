"""The producer's /metrics, scraped over HTTP from a real run against the real local Kafka.

The run lingers after its summary (--metrics-linger), so the final scrape is taken after the counts settled and is
compared with the summary the same run printed; a scrape after the process ended would be impossible.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from base.config import PROJECT_ROOT, Settings
from scripts.faults import descendants
from tests.conftest import free_port, listening_addresses, listening_ports
from tests.test_operations import family, referenced_metrics

pytestmark = pytest.mark.integration

PREFIX = "pipeline_producer_"


def _scrape(port: int) -> dict[str, list]:
    """Samples by name, from the producer's /metrics (the library's own parser: the text format must be valid)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    samples: dict[str, list] = {}
    for metric in text_string_to_metric_families(text):
        for s in metric.samples:
            samples.setdefault(s.name, []).append(s)
    return samples


def _value(samples: dict[str, list], name: str) -> float:
    (sample,) = samples[PREFIX + name]  # one series per run: one topic, one backend
    return sample.value


def _read_summary(path: Path, proc: subprocess.Popen, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            return json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):  # not written yet, or half-written
            time.sleep(0.2)
    raise AssertionError(f"no summary within {timeout} s (exit code {proc.poll()}): {proc.stderr.read()}")


@pytest.mark.parametrize(("backend", "workers"), [("kafka-python", 1), ("confluent", 2)])
def test_metrics_equal_the_runs_own_summary(
    services: Settings, unique_name: str, tmp_path: Path, backend: str, workers: int
) -> None:
    port, count, rate = free_port(), 15_000, 5_000
    summary_path = tmp_path / "summary.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "--kafka-bootstrap", services.kafka_bootstrap, "produce", "--quiet",
         "--backend", backend, "--workers", str(workers), "--count", str(count), "--rate", str(rate),
         "--invalid-fraction", "0.01", "--late-fraction", "0.02", "--max-lateness", "60000", "--seed", "3",
         "--topic", unique_name, "--metrics-port", str(port), "--metrics-linger", "60",
         "--summary-json", str(summary_path)],
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60  # the interpreter starts, then the port is bound before the broker is asked
        while port not in listening_ports() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        # During the run: scrapes answer, the figures only grow and stay within the run's count.
        during, rate_seen = [], 0.0
        while not summary_path.exists() and proc.poll() is None:
            samples = _scrape(port)
            sent, acked = _value(samples, "events_sent_total"), _value(samples, "events_acked_total")
            if 0 < sent < count:
                during.append((sent, acked))
                rate_seen = max(rate_seen, _value(samples, "send_rate_events_per_second"))
                assert listening_addresses(proc.pid) == {f"127.0.0.1:{port}"}  # loopback only, by default
                assert all(not listening_addresses(w) for w in descendants(proc.pid))  # no forked worker kept a copy
            time.sleep(0.3)
        assert during, "no scrape fell inside the run"
        assert all(acked <= sent <= count for sent, acked in during)
        assert [s for s, _ in during] == sorted(s for s, _ in during)
        assert 0 < rate_seen <= 2 * rate  # acknowledged events/s, the last 10 s: about --rate

        summary = _read_summary(summary_path, proc)
        final = _scrape(port)  # the run is over, the process lingers: the settled counts
        assert summary["sent"] == summary["acked"] == count and summary["failed"] == 0
        for name, field in (("sent", "sent"), ("acked", "acked"), ("failed", "failed"), ("malformed", "invalid"),
                            ("late", "late")):  # fmt: skip
            assert _value(final, f"events_{name}_total") == summary[field], name
        assert summary["invalid"] == count // 100 and summary["late"] > 0

        # One latency observation per batch: the runner sends >= 50 batches/s per worker, rate/workers/50 events each.
        batches = count // (rate // workers // 50)
        assert _value(final, "delivery_latency_seconds_count") == batches > 0
        buckets = final[PREFIX + "delivery_latency_seconds_bucket"]
        assert buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == batches
        assert [b.value for b in buckets] == sorted(b.value for b in buckets)  # cumulative
        assert 0 < _value(final, "delivery_latency_seconds_sum") < batches * 120  # each below the delivery timeout
        assert all(s.labels == {"topic": unique_name, "backend": backend}
                   for name, series in final.items() if name != PREFIX + "delivery_latency_seconds_bucket"
                   for s in series)  # fmt: skip
        assert all(s.name.startswith(PREFIX) for series in final.values() for s in series)
        served = {family(name) for name in final}
        wanted = referenced_metrics(PREFIX)
        assert wanted, "the rules and dashboards name no producer metric"
        assert not {n: w for n, w in wanted.items() if n not in served}, "named in the rules/dashboards, not served"

        proc.send_signal(signal.SIGINT)  # ends the linger; the run itself was complete
        proc.communicate(timeout=30)
        assert proc.returncode == 0
        assert port not in listening_ports()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
