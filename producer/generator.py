"""Vectorised event generation: one numpy call per column per batch, never a Python loop per event.

Realism, in short:
- users: a bounded Zipf-like law over ranks, so a small share of users makes most of the traffic;
  ranks map to user ids through a fixed affine permutation so heavy users are spread over the id range;
- action types: the per-type weights of ``action_types.ACTION_WEIGHTS``;
- time: a simulated clock whose pace follows a diurnal curve (quiet nights, busy evenings, UTC);
- devices: derived from the user id by hashing (``devices.py``), so a device never changes.

With several workers, worker ``w`` owns the users with ``(user_id - 1) % workers == w``: a user's
events all come from one producer, so they stay ordered within their partition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from base.contract import MAX_USERS
from producer.action_types import ACTION_WEIGHTS

SESSION_MS = 30 * 60 * 1000  # a session id changes every 30 simulated minutes per user
_PERMUTATION_A = 2_147_483_647  # prime > MAX_USERS, so rank -> user is a bijection for any user count
_PERMUTATION_B = 7_919
INVALID_KINDS = 5  # see malformed.KINDS


@dataclass(frozen=True)
class SimulationConfig:
    users: int = MAX_USERS
    seed: int | None = None
    start_ms: int = 0  # simulated time of the first event, epoch ms UTC
    events_per_sim_second: float = 10_000.0  # average pace of the simulated clock (all workers)
    # False: the clock advances exactly 1 s per events_per_sim_second events, so a producer paced at that
    # rate stamps wall-clock time (real time); True: events per simulated second follow the diurnal curve.
    diurnal_pace: bool = True
    zipf_exponent: float = 1.0
    jitter_ms: int = 50  # in-order within this jitter by default
    late_fraction: float = 0.0
    max_lateness_ms: int = 0
    invalid_fraction: float = 0.0


@dataclass
class EventBatch:
    """Columns of one batch; ``invalid`` marks records to be emitted malformed on purpose."""

    event_id: np.ndarray  # (n, 16) uint8, UUID v4 bytes
    user_id: np.ndarray  # int64
    action: np.ndarray  # int16 index into ACTION_TYPES
    timestamp: np.ndarray  # int64 epoch ms
    session: np.ndarray  # uint64 hash -> metadata.session_id
    duration_ms: np.ndarray  # int64
    invalid: np.ndarray  # int64 positions of records to break
    invalid_kind: np.ndarray  # index into malformed.KINDS per broken record
    late: int  # how many records were pushed back in time on purpose
    # int64: when each event was sent on the simulated clock (before jitter and lateness: a late event is sent now
    # and stamped earlier)
    sent_ms: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.user_id)


def diurnal_factor(ms: float) -> float:
    """Relative activity at a UTC instant: peaks at 19:00 and bottoms out at 07:00 (ratio ~3.4); mean 1."""
    hour = (ms / 3_600_000.0) % 24.0
    return 1.0 + 0.55 * math.cos(2.0 * math.pi * (hour - 19.0) / 24.0)


def _activity_integral(ms: float) -> float:
    """Events per unit of pace from the epoch to ``ms``: the integral of diurnal_factor, in seconds."""
    seconds, period = ms / 1000.0, 86_400.0
    return seconds + 0.55 * period / (2.0 * math.pi) * math.sin(2.0 * math.pi * (seconds / 3600.0 - 19.0) / 24.0)


def start_for(end_ms: int, events: int, events_per_sim_second: float) -> int:
    """The simulated start from which ``events`` at this average pace, following the diurnal curve, end at
    ``end_ms``: a simulation of a given length ends when asked (the clock runs faster through quiet hours, so a start
    computed at the average pace would run past the end)."""
    need = events / events_per_sim_second
    target = _activity_integral(end_ms) - need
    low, high = end_ms - need * 1000.0 / 0.45 - 1.0, float(end_ms)  # the curve's activity is at least 0.45
    for _ in range(100):  # bisection: the integral grows monotonically with time
        mid = (low + high) / 2.0
        if _activity_integral(mid) < target:
            low = mid
        else:
            high = mid
    return int(high)


def zipf_ranks(rng: np.random.Generator, n: int, support: int, exponent: float) -> np.ndarray:
    """Ranks in 1..support with P(rank) ~ rank^-exponent (continuous inverse CDF, vectorised)."""
    u = rng.random(n)
    if abs(exponent - 1.0) < 1e-9:
        r = np.exp(u * math.log(support + 1.0))
    else:
        one = 1.0 - exponent
        r = (1.0 + u * ((support + 1.0) ** one - 1.0)) ** (1.0 / one)
    return np.clip(r.astype(np.int64), 1, support)


def _share(fraction: float) -> Fraction:
    return Fraction(fraction).limit_denominator(10**9)


def _exact_count(fraction: Fraction, start: int, end: int) -> int:
    """Records in positions [start, end) selected at ``fraction``: the totals add up exactly over batches."""
    return (fraction.numerator * end) // fraction.denominator - (fraction.numerator * start) // fraction.denominator


class EventGenerator:
    """The event stream of one worker; call ``next_batch(n)`` repeatedly."""

    def __init__(self, config: SimulationConfig, worker: int = 0, workers: int = 1, position: int = 0) -> None:
        if not 1 <= config.users <= MAX_USERS:
            raise ValueError(f"users must be within 1..{MAX_USERS}")
        self.config = config
        self.worker, self.workers = worker, workers
        # Stream position of this worker's first record: makes exact fractions add up across workers.
        self.position = position
        self.local_users = (config.users - worker + workers - 1) // workers
        if self.local_users < 1:
            raise ValueError("more workers than users")
        self._seed = config.seed if config.seed is not None else int(np.random.SeedSequence().entropy % 2**63)
        self._batch = 0
        self._clock_ms = float(config.start_ms)
        self._pace = config.events_per_sim_second / workers
        w = np.asarray(ACTION_WEIGHTS, dtype=np.float64)
        self._action_cdf = np.cumsum(w) / w.sum()
        self._invalid = _share(config.invalid_fraction)
        self._late = _share(config.late_fraction)

    def next_batch(self, n: int) -> EventBatch:
        cfg = self.config
        rng = np.random.default_rng([self._seed, self.worker, self._batch])
        self._batch += 1

        ranks = zipf_ranks(rng, n, self.local_users, cfg.zipf_exponent)
        local = (_PERMUTATION_A * (ranks - 1) + _PERMUTATION_B) % self.local_users
        user_id = local * self.workers + self.worker + 1

        u = rng.random(n)
        action = np.minimum(np.searchsorted(self._action_cdf, u, side="right"), len(self._action_cdf) - 1)

        # The simulated clock advances faster when activity is low: events per simulated second
        # follow the diurnal curve while the wall-clock rate stays what the user asked for.
        activity = diurnal_factor(self._clock_ms) if cfg.diurnal_pace else 1.0
        span_ms = 1000.0 * n / (self._pace * activity)
        ts = self._clock_ms + (np.arange(n, dtype=np.float64) + 0.5) * (span_ms / n)
        self._clock_ms += span_ms
        sent_ms = np.ceil(ts).astype(np.int64)
        if cfg.jitter_ms > 0:
            ts += rng.uniform(-cfg.jitter_ms, cfg.jitter_ms, n)
        timestamp = ts.astype(np.int64)

        late = _exact_count(self._late, self.position, self.position + n) if cfg.max_lateness_ms > 0 else 0
        if late:
            where = rng.choice(n, size=late, replace=False)
            timestamp[where] -= rng.integers(1, cfg.max_lateness_ms + 1, late)

        event_id = rng.integers(0, 256, (n, 16), dtype=np.uint8)
        event_id[:, 6] = (event_id[:, 6] & 0x0F) | 0x40  # UUID version 4
        event_id[:, 8] = (event_id[:, 8] & 0x3F) | 0x80  # RFC 4122 variant

        from producer.devices import mix64

        session = mix64(user_id.astype(np.uint64) * np.uint64(1_000_003) + (timestamp // SESSION_MS).astype(np.uint64))
        # Dwell time: log-normal, median ~1.2 s, capped at 10 minutes.
        duration_ms = np.clip(rng.lognormal(7.1, 1.1, n), 1, 600_000).astype(np.int64)

        invalid_count = _exact_count(self._invalid, self.position, self.position + n)
        invalid = np.sort(rng.choice(n, size=invalid_count, replace=False)) if invalid_count else np.empty(0, np.int64)
        kinds = rng.integers(0, INVALID_KINDS, invalid_count)
        self.position += n
        return EventBatch(
            event_id, user_id, action.astype(np.int16), timestamp, session, duration_ms, invalid, kinds, late,
            sent_ms,
        )
