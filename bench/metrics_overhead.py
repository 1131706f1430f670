"""What the metrics cost a worker per batch, next to what the batch itself costs.

    OPENBLAS_NUM_THREADS=1 python bench/metrics_overhead.py [--events 500] [--users 250]
                                                            [--models 1] [--batches 200]

1. Instrumentation alone (no Redis): everything the worker path does for metrics on one
   batch of ``--events`` events over ``--users`` users, served by ``--models`` models —
   the handler's outcome stamping, per-kind counts and apply timing, the serving side's
   fold-in timings and the event→cache latency (Prometheus histogram and the in-memory
   rolling histogram) — CPU time over many repetitions; in this process's ordinary mode and,
   in a child process, in ``prometheus_client``'s multiprocess mode (``worker -n N``).
   The freshness log's write (one pipelined round trip) runs in a thread once a second,
   not per batch; its cost is printed per flush.
2. For scale: a real batch of the same shape applied and served by an ALS worker path
   (:class:`EventHandler` with :class:`OnlineServing`, embedded Redis, synthetic state),
   median over ``--batches``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def instrumentation(n_events: int, n_users: int, n_models: int, reps: int) -> float:
    """Seconds per batch of the metrics code alone."""
    from collections import Counter

    import redis

    from streamrec import metrics
    from streamrec.events import Event
    from streamrec.serving.handler import EventHandler, ParsedBatch
    from streamrec.serving.latency import LatencyTracker, SentBatch
    from streamrec.settings import Settings
    from streamrec.state.freshness import FreshnessLog
    from streamrec.state.outcome import BatchOutcome, TouchedUser

    rng = np.random.default_rng(1)
    users = [f"user-{n}" for n in range(n_users)]
    picks = rng.integers(0, n_users, n_events)
    events = [
        Event(users[u], f"item-{n % 97}", 1.0, "play" if n % 5 else "rating", 1.7e9, f"e{n}")
        for n, u in enumerate(picks)
    ]
    per_user = Counter(users[u] for u in picks)
    touched = tuple(TouchedUser(u, n, 10 + c, c) for n, (u, c) in enumerate(per_user.items()))
    outcome = BatchOutcome("b", True, n_events, 0, touched, n_users=len(touched))
    parsed = [ParsedBatch("b", events, [])]
    handler = EventHandler.__new__(EventHandler)  # only the counting part: no Redis
    handler.kinds = Settings().kinds
    tracker = LatencyTracker(FreshnessLog(redis.Redis()))  # never flushed here
    models = ["als", "kmf", "two-tower", "gmf"][:n_models]
    entries = {m: [("k", "{}", u) for u in per_user] for m in models}
    rated = {e.user for e in events if e.kind == "rating"}
    entries_rated = {m: [e for e in entries[m] if e[2] in rated] for m in models}
    sent_at = time.time() - 0.05

    from dataclasses import replace

    started = time.process_time()  # CPU time: the machine may be shared
    for r in range(reps):
        # handler.handle_many
        t = time.perf_counter()
        metrics.BATCH_APPLY_SECONDS.observe(time.perf_counter() - t)
        stamped = [replace(outcome, sent_at=sent_at)]
        handler._count(parsed, stamped)
        # OnlineServing: the batch's send time kept, fold-in timed, latency recorded
        batch = SentBatch.of(stamped[0])
        assert batch is not None
        for m in models:
            t = time.perf_counter()
            metrics.labelled(metrics.FOLD_IN_SECONDS, m).observe(time.perf_counter() - t)
        # a rating model (kmf, gmf) writes only raters' entries: the per-user path
        written = {m: entries_rated[m] if m in ("kmf", "gmf") else entries[m] for m in models}
        tracker.written(len(per_user), written, [batch])
        if r % 1000 == 999:
            tracker.log._counts.clear()  # what the thread's flush does, minus Redis
    return (time.process_time() - started) / reps


def flush_cost(n_models: int, reps: int = 200) -> float:
    """Seconds of one write of the rolling histogram (a second's samples) to Redis."""
    from streamrec.settings import Settings
    from streamrec.state.connection import connect, stop_embedded
    from streamrec.state.freshness import FreshnessLog

    home = Path(tempfile.mkdtemp(prefix="sr-bench-"))
    settings = Settings(home=home)
    try:
        log = FreshnessLog(connect(settings))
        times = []
        for _ in range(reps):
            for m in ["als", "kmf", "two-tower", "gmf"][:n_models]:
                for latency in (0.02, 0.03, 0.05, 0.08, 0.2, 0.9):  # a second's spread
                    log.add(m, latency, 100, time.time())
            t = time.perf_counter()
            log.flush()
            times.append(time.perf_counter() - t)
        return statistics.median(times)
    finally:
        stop_embedded(settings)
        shutil.rmtree(home, ignore_errors=True)


def real_batch(n_events: int, n_users: int, batches: int) -> float:
    """Median seconds of one batch applied and served by ALS on the embedded Redis."""
    from streamrec.data.synthetic import SyntheticConfig, generate
    from streamrec.events import EventValidator
    from streamrec.models.als import ALSParams
    from streamrec.serving.training import train_als
    from streamrec.settings import Settings
    from streamrec.state.bulk import BulkLoader
    from streamrec.state.connection import connect, stop_embedded
    from streamrec.worker.jobs import prepare

    home = Path(tempfile.mkdtemp(prefix="sr-bench-"))
    settings = Settings(home=home)
    try:
        conn = connect(settings)
        data = generate(SyntheticConfig(n_users=943, n_items=1682, events_per_user=106))
        BulkLoader(conn, settings).load_events(data.events, "synthetic")
        train_als(conn, settings, ALSParams(factors=64, iterations=8))
        handler = prepare(conn, settings)
        validator = EventValidator(settings)
        rng = np.random.default_rng(2)
        times = []
        for b in range(batches):
            picked = rng.integers(0, 943, n_events) % n_users
            raw = [
                validator.make(
                    f"user-{u:05d}", f"item-{rng.integers(1682):05d}", 1, "play"
                ).to_dict()
                for u in picked
            ]
            t = time.perf_counter()
            handler.handle_many([(f"bench-{b}", raw, time.time())])
            times.append(time.perf_counter() - t)
        return statistics.median(times[batches // 10 :])
    finally:
        stop_embedded(settings)
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=500, help="events per batch")
    parser.add_argument("--users", type=int, default=250, help="distinct users per batch")
    parser.add_argument("--models", type=int, default=1, choices=[1, 2, 3, 4])
    parser.add_argument("--batches", type=int, default=200, help="real batches timed")
    parser.add_argument("--reps", type=int, default=5000, help="repetitions of part 1")
    parser.add_argument("--only-instrumentation", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    shape = (args.events, args.users, args.models, args.reps)
    if args.only_instrumentation:  # the multiprocess-mode child
        print(instrumentation(*shape))
        return
    plain = instrumentation(*shape)
    folder = tempfile.mkdtemp(prefix="sr-prom-")
    try:
        child = subprocess.run(
            [sys.executable, __file__, "--only-instrumentation", *sys.argv[1:]],
            env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": folder},
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        multi = float(child.stdout.strip())
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"batch: {args.events} events, {args.users} users, {args.models} model(s)")
    print(
        f"instrumentation per batch: {plain * 1e6:.1f} µs (multiprocess mode {multi * 1e6:.1f} µs)"
    )
    print(f"freshness log write (thread, once a second): {flush_cost(args.models) * 1e3:.2f} ms")
    real = real_batch(args.events, args.users, args.batches)
    print(f"a real batch applied + served (ALS, embedded Redis): {real * 1e3:.2f} ms median")
    print(f"overhead: {plain / real:.2%} (multiprocess mode {multi / real:.2%})")


if __name__ == "__main__":
    main()
