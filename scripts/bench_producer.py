"""Producer benchmark: events/s delivered and acknowledged, against Kafka's own ProducerPerformance.

    .venv/bin/python scripts/bench_producer.py [--quick] [--metrics-cost [--repeats N]]

Measures, in one run against the local broker (a dedicated 6-partition bench topic, deleted after):
1. the generator alone (no Kafka), in this process = one core: columns only, + JSON, + Kafka-ready bytes;
2. Kafka's Java ProducerPerformance (the baseline) sending our own JSON records (same average size)
   with the same producer settings (acks=all, idempotence, linger.ms, batch.size);
3. `pipeline produce` with each backend and 1 and 2 workers (30M simulated devices), as a user runs it;
4. the cost of /metrics: `pipeline produce` with --metrics-port (scraped every second, 15x Prometheus's default
   pace) against the same run without, alternating on and off so the box's load drifts over both;
and prints each figure, the baseline, the ratio, the target, and the producer's peak memory.
--metrics-cost runs part 4 only.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
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


def bench_cli(settings: Settings, backend: str, workers: int, count: int, metrics_port: int | None = None) -> dict:
    """`pipeline produce` as a user runs it; returns its --summary-json (+ "scrapes" with a metrics port)."""
    with tempfile.TemporaryDirectory() as tmp:
        summary = Path(tmp) / "summary.json"
        cmd = [sys.executable, "-m", "pipeline", "--kafka-bootstrap", settings.kafka_bootstrap, "produce",
               "--quiet", "--backend", backend, "--workers", str(workers), "--count", str(count),
               "--topic", TOPIC, "--seed", "1", "--linger-ms", PRODUCER_PROPS["linger.ms"],
               "--batch-bytes", PRODUCER_PROPS["batch.size"], "--summary-json", str(summary)]  # fmt: skip
        done, scrapes = threading.Event(), []
        if metrics_port is not None:
            cmd += ["--metrics-port", str(metrics_port)]
            scraper = threading.Thread(target=_scrape_every_second, args=(metrics_port, done, scrapes))
            scraper.start()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        try:
            out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
        finally:
            done.set()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if out.returncode != 0:
            raise SystemExit(f"produce failed ({out.returncode}): {out.stderr.strip()}")
        result = json.loads(summary.read_text())
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        result["acked_per_cpu_s"] = result["acked"] / cpu if cpu > 0 else 0.0  # producer CPU only
        result["scrapes"] = len(scrapes)
        return result


def _scrape_every_second(port: int, done: threading.Event, scrapes: list[int]) -> None:
    while not done.wait(1.0):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                scrapes.append(len(response.read()))
        except OSError:
            pass  # not listening yet (interpreter start-up) or already gone


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_metrics_parts(rounds: int = 2_000) -> dict[str, float]:
    """CPU microseconds of each piece of the metrics, timed in this process (the box's load barely moves CPU time):
    the latency bookkeeping per batch (every worker, metrics on or off), one scrape of 2 workers' counters
    (collect + text format, in the parent), one sample of the send-rate window (the parent, once a second)."""
    from prometheus_client import CollectorRegistry, generate_latest

    from producer.counters import DeliveryClock, SharedCounters
    from producer.metrics import ProducerCollector

    counters = SharedCounters(2)
    clock = DeliveryClock(counters, 0)
    t0 = time.process_time()
    for i in range(1, 100 * rounds + 1):
        clock.sent(i * 100, time.monotonic())
        clock.answered(i * 100)
    per_batch = (time.process_time() - t0) / (100 * rounds)
    collector = ProducerCollector(counters, TOPIC, "confluent")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    t0 = time.process_time()
    for _ in range(rounds):
        generate_latest(registry)
    per_scrape = (time.process_time() - t0) / rounds
    t0 = time.process_time()
    for _ in range(rounds):
        collector._sample()
    per_sample = (time.process_time() - t0) / rounds
    collector.stop()
    return {"batch_us": per_batch * 1e6, "scrape_us": per_scrape * 1e6, "sample_us": per_sample * 1e6}


def _pair_ratio(pairs: list[dict], key: str) -> float:
    """Median over pairs of on/off: runs next to each other see about the same load on a busy box."""
    return statistics.median(p[True][key] / p[False][key] for p in pairs)


def bench_metrics_cost(settings: Settings, scale: float, repeats: int) -> None:
    print("\n4. cost of /metrics: pipeline produce --metrics-port P (scraped every second) vs without; "
          f"{repeats} pairs, each pair's order alternating; ratio = median over pairs of on/off")  # fmt: skip
    print(f"   {'backend':<13}{'workers':>8}{'events':>11}{'acked/s off':>13}{'on':>10}{'on/off':>8}"
          f"{'acked/CPU-s off':>17}{'on':>10}{'on/off':>8}{'scrapes':>9}")  # fmt: skip
    plan = [("confluent", 2, 1_000_000), ("kafka-python", 1, 200_000)]
    busy = {}
    for backend, workers, count in plan:
        pairs = []
        for i in range(repeats):
            pair = {}
            for on in ((False, True) if i % 2 == 0 else (True, False)):
                s = bench_cli(settings, backend, workers, int(count * scale), _free_port() if on else None)
                assert s["sent"] == s["acked"], s
                pair[on] = s
            pairs.append(pair)
        med = statistics.median
        off_rate, on_rate = (med(p[on]["acked_per_s"] for p in pairs) for on in (False, True))
        off_cpu, on_cpu = (med(p[on]["acked_per_cpu_s"] for p in pairs) for on in (False, True))
        scrapes = sum(p[True]["scrapes"] for p in pairs)
        rate_ratio, cpu_ratio = _pair_ratio(pairs, "acked_per_s"), _pair_ratio(pairs, "acked_per_cpu_s")
        print(f"   {backend:<13}{workers:>8}{int(count * scale):>11,}{off_rate:>13,.0f}{on_rate:>10,.0f}"
              f"{rate_ratio:>8.3f}{off_cpu:>17,.0f}{on_cpu:>10,.0f}{cpu_ratio:>8.3f}{scrapes:>9}")  # fmt: skip
        for key in ("acked_per_s", "acked_per_cpu_s"):
            print(f"      {key.replace('_per_', '/').replace('_s', '-s')} of each pair (off, on): "
                  + "; ".join(f"{p[False][key]:,.0f}, {p[True][key]:,.0f}" for p in pairs))
        busy[backend] = (on_cpu, on_rate)
    parts = bench_metrics_parts()
    print(f"   timed in this process: latency bookkeeping {parts['batch_us']:.2f} us per batch (every worker, on or "
          f"off), one scrape {parts['scrape_us']:.0f} us, one send-rate sample {parts['sample_us']:.1f} us (1/s)")
    for backend, (per_cpu_s, per_s) in busy.items():
        # CPU the producer spends per wall second at the rate measured, and what the metrics add to it per second
        # with a scrape every second: the parent's scrape and sample; the workers' bookkeeping is in both runs.
        producer_cpu_us = per_s / per_cpu_s * 1e6
        extra = parts["scrape_us"] + parts["sample_us"]
        print(f"   {backend}: /metrics scraped every second adds {extra:,.0f} us of CPU per second to the "
              f"producer's {producer_cpu_us:,.0f} us: {extra / producer_cpu_us:.3%} (target < 2 %)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a quarter of the volume (about a minute)")
    parser.add_argument("--metrics-cost", action="store_true", help="only part 4, the cost of --metrics-port")
    parser.add_argument("--repeats", type=int, default=3, help="runs with and without metrics each (default: 3)")
    args = parser.parse_args()
    scale = 0.25 if args.quick else 1.0
    settings = Settings.from_env()

    try:
        load = Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        load = ["?"]
    print(f"machine: {__import__('os').cpu_count()} cores, load average {' '.join(load)} at start "
          "(other work on the box lowers every figure below)")  # fmt: skip
    if args.metrics_cost:
        reset_topic(settings)
        try:
            bench_metrics_cost(settings, scale, args.repeats)
        finally:
            reset_topic(settings, delete_only=True)
        print(f"load average at the end: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
        return 0

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
        bench_metrics_cost(settings, scale, args.repeats)
    finally:
        reset_topic(settings, delete_only=True)
    print("\n(max RSS: the largest of the producer's parent and worker processes; acked/CPU-s: acknowledged "
          "events per CPU-second used by the producer processes, broker excluded)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
