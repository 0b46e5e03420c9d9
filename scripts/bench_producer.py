"""Producer benchmark: events/s delivered and acknowledged, against Kafka's own ProducerPerformance.

    .venv/bin/python scripts/bench_producer.py [--quick]

Measures, in one run against the local broker (a dedicated 6-partition bench topic, deleted after):
1. the generator alone (no Kafka), in this process = one core: columns only, + JSON, + Kafka-ready bytes;
2. Kafka's Java ProducerPerformance (the baseline) sending our own JSON records (same average size)
   with the same producer settings (acks=all, idempotence, linger.ms, batch.size);
3. `pipeline produce` with each backend and 1 and 2 workers (30M simulated devices), as a user runs it;
and prints each figure, the baseline, the ratio, the target, and the producer's peak memory.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from base.config import Settings  # noqa: E402
from producer.encoding import encode  # noqa: E402
from producer.generator import EventGenerator, SimulationConfig  # noqa: E402

TOPIC = "bench_producer_user_actions"
PRODUCER_PROPS = {"acks": "all", "enable.idempotence": "true", "linger.ms": "20", "batch.size": "1000000"}
START_MS = 1_750_000_000_000


def bench_generator(events: int) -> dict[str, float]:
    """Events/s of one process (one core): columns; columns + JSON; + one bytes object per record."""
    gen = EventGenerator(SimulationConfig(seed=1, start_ms=START_MS))
    encode(gen.next_batch(10_000))  # warm-up: builds the fragment tables once
    t_cols = t_json = t_bytes = 0.0
    size = 0
    cpu0 = time.process_time()
    for _ in range(events // 10_000):
        t0 = time.perf_counter()
        batch = gen.next_batch(10_000)
        t1 = time.perf_counter()
        enc = encode(batch)
        t2 = time.perf_counter()
        values, _ = enc.records()
        t3 = time.perf_counter()
        t_cols, t_json, t_bytes = t_cols + t1 - t0, t_json + t2 - t1, t_bytes + t3 - t2
        size += sum(map(len, values))
    return {
        "kafka_ready_per_cpu_s": events / (time.process_time() - cpu0),
        "columns_per_s": events / t_cols,
        "json_per_s": events / (t_cols + t_json),
        "kafka_ready_per_s": events / (t_cols + t_json + t_bytes),
        "avg_record_bytes": size / events,
    }


def reset_topic(settings: Settings, delete_only: bool = False) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(settings.kafka_client_config())
    if TOPIC in admin.list_topics(timeout=10).topics:
        admin.delete_topics([TOPIC])[TOPIC].result(timeout=30)
        while TOPIC in admin.list_topics(timeout=10).topics:
            time.sleep(0.2)
    if not delete_only:
        for _ in range(50):  # deletion completes asynchronously on the broker
            try:
                admin.create_topics([NewTopic(TOPIC, 6, 1)])[TOPIC].result(timeout=30)
                return
            except Exception:
                time.sleep(0.3)
        raise SystemExit(f"could not create {TOPIC}")


def bench_baseline(settings: Settings, records: int, payload_file: Path) -> float:
    """records/s of org.apache.kafka.tools.ProducerPerformance (Java client) with our payloads."""
    jars = ROOT / ".cache" / "jars" / "kafka"
    props = [f"bootstrap.servers={settings.kafka_bootstrap}", *(f"{k}={v}" for k, v in PRODUCER_PROPS.items())]
    cmd = ["java", "-Xmx1g", "-cp", f"{jars}/*", "org.apache.kafka.tools.ProducerPerformance",
           "--topic", TOPIC, "--num-records", str(records), "--throughput", "-1",
           "--payload-file", str(payload_file), "--producer-props", *props]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    match = re.findall(r"(\d+) records sent, ([\d.]+) records/sec", out.stdout)
    if out.returncode != 0 or not match:
        raise SystemExit(f"ProducerPerformance failed: {out.stderr[-2000:] or out.stdout[-2000:]}")
    return float(match[-1][1])


def bench_cli(settings: Settings, backend: str, workers: int, count: int) -> dict:
    """`pipeline produce` as a user runs it; returns its --summary-json."""
    with tempfile.TemporaryDirectory() as tmp:
        summary = Path(tmp) / "summary.json"
        cmd = [sys.executable, "-m", "pipeline", "--kafka-bootstrap", settings.kafka_bootstrap, "produce",
               "--quiet", "--backend", backend, "--workers", str(workers), "--count", str(count),
               "--topic", TOPIC, "--seed", "1", "--linger-ms", PRODUCER_PROPS["linger.ms"],
               "--batch-bytes", PRODUCER_PROPS["batch.size"], "--summary-json", str(summary)]  # fmt: skip
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if out.returncode != 0:
            raise SystemExit(f"produce failed ({out.returncode}): {out.stderr.strip()}")
        result = json.loads(summary.read_text())
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        result["acked_per_cpu_s"] = result["acked"] / cpu if cpu > 0 else 0.0  # producer CPU only
        return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a quarter of the volume (about a minute)")
    args = parser.parse_args()
    scale = 0.25 if args.quick else 1.0
    settings = Settings.from_env()

    try:
        load = Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        load = ["?"]
    print(f"machine: {__import__('os').cpu_count()} cores, load average {' '.join(load)} at start "
          "(other work on the box lowers every figure below)")  # fmt: skip

    gen = bench_generator(int(1_000_000 * scale))
    print("\n1. generator alone, one process (= one core), 30M simulated devices")
    print(f"   columns (numpy)            {gen['columns_per_s']:>12,.0f} events/s")
    print(f"   + JSON records (Arrow)     {gen['json_per_s']:>12,.0f} events/s")
    print(f"   + one bytes per record     {gen['kafka_ready_per_s']:>12,.0f} events/s   (target >= 1,000,000/core)")
    print(f"   (per CPU-second of this process: {gen['kafka_ready_per_cpu_s']:,.0f} events, all three steps)")
    print(f"   average record size        {gen['avg_record_bytes']:>12,.1f} bytes")

    reset_topic(settings)
    try:
        with tempfile.NamedTemporaryFile("wb", suffix=".jsonl", delete=False) as f:
            sample = encode(EventGenerator(SimulationConfig(seed=2, start_ms=START_MS)).next_batch(20_000))
            f.write(b"\n".join(sample.records()[0]))
            payload = Path(f.name)
        baseline = bench_baseline(settings, int(3_000_000 * scale), payload)
        payload.unlink()
        print(f"\n2. baseline: Kafka ProducerPerformance (Java), same records and producer settings "
              f"({', '.join(f'{k}={v}' for k, v in PRODUCER_PROPS.items())})")  # fmt: skip
        print(f"   {baseline:>12,.0f} records/s")

        print("\n3. pipeline produce -> the same broker, topic with 6 partitions")
        print(f"   {'backend':<13}{'workers':>8}{'events':>11}{'acked/s':>12}{'vs baseline':>13}"
              f"{'max RSS':>10}{'acked/CPU-s':>13}  target")  # fmt: skip
        results = []
        plan = [("confluent", 1, 2_000_000), ("confluent", 2, 3_000_000),
                ("kafka-python", 1, 300_000), ("kafka-python", 2, 400_000)]  # fmt: skip
        for backend, workers, count in plan:
            s = bench_cli(settings, backend, workers, int(count * scale))
            target = ">= 200,000/s and >= 0.8x" if backend == "confluent" else ">= 50,000/s"
            assert s["sent"] == s["acked"], s
            print(f"   {backend:<13}{workers:>8}{s['acked']:>11,}{s['acked_per_s']:>12,.0f}"
                  f"{s['acked_per_s'] / baseline:>12.2f}x{s['max_rss_mib']:>7,.0f} MiB"
                  f"{s['acked_per_cpu_s']:>13,.0f}  {target}")  # fmt: skip
            results.append({"backend": backend, "workers": workers, **s})
    finally:
        reset_topic(settings, delete_only=True)
    print("\n(max RSS: the largest of the producer's parent and worker processes; acked/CPU-s: acknowledged "
          "events per CPU-second used by the producer processes, broker excluded)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
