"""Generator and encoder properties: contract of every field, distributions, consistency, exact fractions."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest

from base.contract import MAX_USERS
from producer import devices
from producer.action_types import ACTION_SCREENS, ACTION_TYPES, ACTION_WEIGHTS
from producer.contract import DEVICE_FIELDS, EVENT_FIELDS, METADATA_FIELDS, check_event
from producer.encoding import encode
from producer.generator import EventGenerator, SimulationConfig
from producer.malformed import KINDS
from producer.partitioning import partitions_for_user_ids

START = 1_750_000_000_000  # 2025-06-15T15:06:40Z


def _records(config: SimulationConfig, n: int, batch: int = 5_000, **kw) -> list[bytes]:
    gen = EventGenerator(config, **kw)
    out: list[bytes] = []
    while len(out) < n:
        out += encode(gen.next_batch(min(batch, n - len(out)))).records()[0]
    return out


def test_action_types_are_153_unique_snake_case_names() -> None:
    assert len(ACTION_TYPES) == len(set(ACTION_TYPES)) == 153
    assert isinstance(ACTION_TYPES, tuple)
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", a) for a in ACTION_TYPES)
    assert len(ACTION_WEIGHTS) == len(ACTION_SCREENS) == 153 and min(ACTION_WEIGHTS) > 0


def test_every_field_follows_the_contract() -> None:
    records = _records(SimulationConfig(seed=1, start_ms=START), 20_000)
    ids = set()
    for raw in records:
        assert check_event(raw) is None, raw
        event = json.loads(raw)
        assert set(event) == set(EVENT_FIELDS)
        assert set(event["metadata"]) == set(METADATA_FIELDS)
        assert set(event["device_info"]) == set(DEVICE_FIELDS)
        assert type(event["user_id"]) is int and 1 <= event["user_id"] <= MAX_USERS
        assert type(event["timestamp"]) is int and START - 1_000 <= event["timestamp"] <= START + 10_000_000
        assert event["metadata"]["screen"] == ACTION_SCREENS[ACTION_TYPES.index(event["action_type"])]
        assert re.fullmatch(r"[0-9a-f]{16}", event["metadata"]["session_id"])
        assert type(event["metadata"]["duration_ms"]) is int and 1 <= event["metadata"]["duration_ms"] <= 600_000
        ids.add(event["event_id"])
    assert len(ids) == len(records)  # event ids unique


def _columns(config: SimulationConfig, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    gen = EventGenerator(config)
    batches = [gen.next_batch(10_000) for _ in range(n // 10_000)]
    return (
        np.concatenate([b.user_id for b in batches]),
        np.concatenate([b.action for b in batches]),
        np.concatenate([b.timestamp for b in batches]),
    )


def test_all_153_action_types_occur_with_their_weights() -> None:
    _, actions, _ = _columns(SimulationConfig(seed=2, start_ms=START), 1_000_000)
    counts = np.bincount(actions, minlength=153)
    assert (counts > 0).all(), [ACTION_TYPES[i] for i in np.nonzero(counts == 0)[0]]
    expected = np.array(ACTION_WEIGHTS) / sum(ACTION_WEIGHTS) * len(actions)
    common = expected > 1_000
    assert np.allclose(counts[common], expected[common], rtol=0.1)
    assert ACTION_TYPES[int(counts.argmax())] == "screen_view"


def test_user_activity_is_zipf_skewed() -> None:
    users, _, _ = _columns(SimulationConfig(seed=3, start_ms=START), 200_000)
    top = sorted(Counter(users.tolist()).values(), reverse=True)
    # Zipf(1) over 30M ranks: the 1,000 busiest users make ~40% of the events; uniform would be ~0.7%.
    assert sum(top[:1_000]) / len(users) > 0.3
    assert users.min() >= 1 and users.max() <= MAX_USERS
    assert np.unique(users).size > 50_000  # and a long tail of occasional users
    uniform, _, _ = _columns(SimulationConfig(seed=3, start_ms=START, zipf_exponent=0.0), 200_000)
    assert sum(sorted(Counter(uniform.tolist()).values(), reverse=True)[:1_000]) / len(uniform) < 0.02


def test_activity_follows_a_diurnal_curve() -> None:
    # 2 events per simulated second on average: 200k events cover more than one simulated day.
    midnight = START - START % 86_400_000
    _, _, ts = _columns(SimulationConfig(seed=4, start_ms=midnight, events_per_sim_second=2.0), 200_000)
    ts = ts[ts < midnight + 86_400_000]
    assert abs(len(ts) - 2 * 86_400) < 2_000  # the day holds its average number of events
    hours = np.bincount((ts // 3_600_000) % 24, minlength=24)
    assert hours.argmax() in (18, 19, 20) and hours.argmin() in (6, 7, 8)
    assert hours.max() > 2.5 * hours.min()


def test_device_info_is_consistent_per_device() -> None:
    records = _records(SimulationConfig(seed=5, start_ms=START, users=2_000), 20_000)
    seen: dict[int, dict] = {}
    for raw in records:
        event = json.loads(raw)
        device = seen.setdefault(event["user_id"], event["device_info"])
        assert device == event["device_info"]
    for user_id, device in list(seen.items())[:100]:
        assert devices.device_info(user_id) == device
    oses = Counter(d["os"] for d in seen.values())
    assert set(oses) == {"android", "ios"} and oses["android"] > oses["ios"]
    assert len({d["device_id"] for d in seen.values()}) == len(seen)


def test_a_seed_makes_a_run_reproducible() -> None:
    config = SimulationConfig(
        seed=42, start_ms=START, invalid_fraction=0.01, late_fraction=0.01, max_lateness_ms=60_000
    )
    assert _records(config, 12_000) == _records(config, 12_000)
    assert _records(config, 2_000) != _records(SimulationConfig(seed=43, start_ms=START), 2_000)


def test_default_stream_is_in_order_within_the_jitter() -> None:
    _, _, ts = _columns(SimulationConfig(seed=6, start_ms=START, jitter_ms=50), 50_000)
    assert np.diff(ts).min() >= -100


def test_late_fraction_pushes_exactly_that_many_events_back() -> None:
    config = SimulationConfig(seed=7, start_ms=START, jitter_ms=0, late_fraction=0.02, max_lateness_ms=300_000)
    gen = EventGenerator(config)
    batches = [gen.next_batch(5_000) for _ in range(4)]
    assert sum(b.late for b in batches) == 400
    ts = np.concatenate([b.timestamp for b in batches])
    clock = np.maximum.accumulate(ts)
    behind = clock - ts
    assert (behind > 0).sum() >= 350 and behind.max() <= 300_000


@pytest.mark.parametrize(("fraction", "count", "workers"), [(0.01, 25_000, 1), (0.003, 10_007, 3), (0.5, 999, 2)])
def test_invalid_fraction_gives_exactly_that_many_malformed_records(fraction: float, count: int, workers: int) -> None:
    bad, reasons = 0, Counter()
    for w in range(workers):
        start, share = count * w // workers, count * (w + 1) // workers - count * w // workers
        config = SimulationConfig(seed=8, start_ms=START, invalid_fraction=fraction)
        for raw in _records(config, share, batch=4_000, worker=w, workers=workers, position=start):
            reason = check_event(raw)
            if reason:
                bad += 1
                reasons[reason.split(":")[0]] += 1
    assert bad == int(fraction * count)
    if bad > 100:
        assert set(reasons) == {"bad_json", "missing_field", "wrong_type", "out_of_range_user_id",
                                "unknown_action_type"}
        assert len(KINDS) == 5


def test_workers_own_disjoint_users() -> None:
    seen = []
    for w in range(3):
        gen = EventGenerator(SimulationConfig(seed=9, start_ms=START, users=1_000), worker=w, workers=3)
        users = gen.next_batch(5_000).user_id
        assert ((users - 1) % 3 == w).all() and users.max() <= 1_000
        seen.append(set(users.tolist()))
    assert not (seen[0] & seen[1]) and not (seen[1] & seen[2])


def test_partitions_match_the_java_default_partitioner() -> None:
    from kafka.partitioner.default import murmur2

    users = np.concatenate([np.arange(1, 2_000), np.random.default_rng(0).integers(1, MAX_USERS, 5_000)])
    expected = [(murmur2(str(u).encode()) & 0x7FFFFFFF) % 6 for u in users.tolist()]
    assert partitions_for_user_ids(users, 6).tolist() == expected


def test_batches_encode_to_exactly_one_valid_record_each() -> None:
    """Speed is scripts/bench_producer.py's job; here: every event of consecutive batches becomes one record."""
    gen = EventGenerator(SimulationConfig(seed=10, start_ms=START))
    values, keys = [], []
    for _ in range(10):
        batch_values, batch_keys = encode(gen.next_batch(10_000)).records()
        values += batch_values
        keys += batch_keys
    assert len(values) == len(keys) == 100_000
    assert all(check_event(v) is None for v in values[::997])
    assert len({json.loads(v)["event_id"] for v in values}) == 100_000


def test_per_user_events_never_interleave_across_workers() -> None:
    by_user = defaultdict(set)
    for w in range(2):
        gen = EventGenerator(SimulationConfig(seed=11, start_ms=START, users=500), worker=w, workers=2)
        for u in gen.next_batch(2_000).user_id.tolist():
            by_user[u].add(w)
    assert all(len(ws) == 1 for ws in by_user.values())


def test_real_time_pace_keeps_event_time_on_the_wall_clock() -> None:
    # --rate without --sim-rate: 1,000 events per second of event time at any hour, so a producer paced at
    # 1,000 events/s stamps wall-clock time (the diurnal curve would slow the clock 1.55x in the evening).
    evening = START - START % 86_400_000 + 19 * 3_600_000
    config = SimulationConfig(seed=6, start_ms=evening, events_per_sim_second=1_000.0, diurnal_pace=False,
                              jitter_ms=0)
    _, _, ts = _columns(config, 60_000)
    assert abs((ts.max() - evening) - 60_000) < 5  # 60,000 events = 60 s of event time
    _, _, diurnal = _columns(replace(config, diurnal_pace=True), 60_000)
    assert diurnal.max() - evening < 40_000  # the simulated clock runs slow at the evening peak


@pytest.mark.parametrize("end_hour", [3, 7, 13, 19])
def test_a_simulation_started_at_start_for_ends_when_asked_through_quiet_and_busy_hours(end_hour: int) -> None:
    """The demo's 50-hour history at 300x: started where start_for says, the diurnal clock ends at the asked end
    (not hours past it, which Kafka and the job would refuse as the future)."""
    from producer.generator import start_for

    end = int(datetime(2026, 3, 2, end_hour, tzinfo=UTC).timestamp() * 1000)
    rate, events = 1000 / 300, 600_000
    gen = EventGenerator(SimulationConfig(seed=12, start_ms=start_for(end, events, rate), events_per_sim_second=rate))
    last = 0
    for _ in range(events // 2_000):
        last = int(gen.next_batch(2_000).sent_ms.max())
    span = end - start_for(end, events, rate)
    assert abs(last - end) < 0.01 * span, (last - end) / 3_600_000
