"""Freshness in Redis: a small rolling histogram of event→cache latencies per model and minute.

``streamrec status`` reads Redis, not Prometheus, so workers keep their latency samples
here too: one hash per model and minute (:func:`~streamrec.keys.freshness_key`), field =
bucket number, value = events. Buckets are log-spaced, four per doubling from 1 ms
(:func:`bucket_of`), so a quantile read back is within 19 % of the true one; a hash has
at most :data:`N_BUCKETS` fields and expires after :data:`RETENTION_MINUTES`.

A worker adds samples in memory (:meth:`FreshnessLog.add`, no Redis call) and writes them
with :meth:`FreshnessLog.flush`, one pipelined round trip, from a thread once a second
(:meth:`FreshnessLog.run`): the batch path never waits for it. Workers add up (``HINCRBY``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from streamrec import keys

logger = logging.getLogger(__name__)

#: Upper bound of bucket 0, seconds; bucket ``b`` ends at ``SMALLEST * 2 ** (b / PER_DOUBLING)``.
SMALLEST = 0.001
PER_DOUBLING = 4
#: Buckets: the last one ends past 9 minutes and takes everything slower too.
N_BUCKETS = 80
#: Minutes a per-minute hash is kept.
RETENTION_MINUTES = 15
#: Minutes ``streamrec status`` looks back over by default.
WINDOW_MINUTES = 5
#: Seconds between writes of the samples a worker collected.
FLUSH_EVERY = 1.0


def bucket_of(seconds: float) -> int:
    """The bucket of a latency: the smallest ``b`` whose upper bound is ≥ ``seconds``."""
    if seconds <= SMALLEST:
        return 0
    return min(N_BUCKETS - 1, math.ceil(PER_DOUBLING * math.log2(seconds / SMALLEST) - 1e-9))


def upper_bound(bucket: int) -> float:
    """Upper bound of ``bucket``, seconds."""
    return float(SMALLEST * 2.0 ** (bucket / PER_DOUBLING))


def quantile(counts: dict[int, int], q: float) -> float | None:
    """The ``q`` quantile (0..1) of a bucket histogram, interpolated linearly inside its
    bucket (as Prometheus's ``histogram_quantile``); None when it is empty."""
    total = sum(counts.values())
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for bucket in sorted(counts):
        n = counts[bucket]
        if n <= 0:
            continue
        if seen + n >= rank:
            low = 0.0 if bucket == 0 else upper_bound(bucket - 1)
            high = upper_bound(bucket)
            return low + (high - low) * max(0.0, rank - seen) / n
        seen += n
    return upper_bound(max(counts))


@dataclass(frozen=True)
class Freshness:
    """Event→cache latency of one model over the last minutes.

    Attributes:
        model: the model's name.
        events: events whose user's entry was written in the window.
        p50: median latency, seconds (None without events).
        p99: 99th percentile, seconds (None without events).
    """

    model: str
    events: int
    p50: float | None
    p99: float | None


class FreshnessLog:
    """Collects latency samples in memory and writes them to Redis.

    Args:
        connection: a redis-py client (thread-safe: :meth:`run` uses it from a thread).
    """

    def __init__(self, connection: redis.Redis) -> None:
        self.connection = connection
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, int], dict[int, int]] = {}

    def add(self, model: str, seconds: float, count: int, now: float) -> None:
        """Record ``count`` events of ``model`` made visible ``seconds`` after they were sent,
        at epoch second ``now``."""
        key = (model, int(now // 60))
        bucket = bucket_of(seconds)
        with self._lock:
            cells = self._counts.setdefault(key, {})
            cells[bucket] = cells.get(bucket, 0) + count

    def flush(self) -> int:
        """Write the samples collected so far (one round trip); returns the events written.
        Samples that fail to reach Redis are dropped (the log is a gauge, not a ledger)."""
        with self._lock:
            counts, self._counts = self._counts, {}
        if not counts:
            return 0
        ttl = RETENTION_MINUTES * 60 + 60
        with self.connection.pipeline(transaction=False) as pipe:
            for (model, minute), cells in counts.items():
                key = keys.freshness_key(model, minute)
                for bucket, n in cells.items():
                    pipe.hincrby(key, str(bucket), n)
                pipe.expire(key, ttl)
            pipe.execute()
        return sum(n for cells in counts.values() for n in cells.values())

    def run(self, stop: threading.Event, every: float = FLUSH_EVERY) -> None:
        """Flush every ``every`` seconds until ``stop`` is set, then once more (a thread's
        target; a failed write is logged and the thread goes on)."""
        while not stop.wait(every):
            self._flush_logged()
        self._flush_logged()

    def _flush_logged(self) -> None:
        try:
            self.flush()
        except Exception:  # Redis away: the worker's main loop deals with it
            logger.debug("freshness: could not write latency samples", exc_info=True)


def read_freshness(
    connection: redis.Redis,
    models: Sequence[str],
    minutes: int = WINDOW_MINUTES,
    now: float | None = None,
) -> list[Freshness]:
    """Latency quantiles per model over the last ``minutes`` (the current one included),
    in one round trip."""
    minute = int((time.time() if now is None else now) // 60)
    span = range(minute - minutes + 1, minute + 1)
    with connection.pipeline(transaction=False) as pipe:
        for model in models:
            for m in span:
                pipe.hgetall(keys.freshness_key(model, m))
        replies = pipe.execute()
    found = []
    for n, model in enumerate(models):
        counts: dict[int, int] = {}
        for reply in replies[n * len(span) : (n + 1) * len(span)]:
            for bucket, count in reply.items():
                b = int(bucket)
                counts[b] = counts.get(b, 0) + int(count)
        events = sum(counts.values())
        found.append(Freshness(model, events, quantile(counts, 0.5), quantile(counts, 0.99)))
    return found
