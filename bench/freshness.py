"""Freshness: how soon a pushed event shows in the user's cached list, under load.

    python bench/freshness.py [--rate 2000] [--seconds 20] [--warmup 3] [--workers 1]
                              [--shards N] [--data …/ml-100k] [--models als[,two-tower,...]]
                              [--items 1000000]

1. State: MovieLens 100K imported (or, without it, synthetic data of the same size) and
   the ``--models`` trained (this process is the trainer; the workers import no
   TensorFlow), on the embedded Redis under a temporary home.
2. ``streamrec worker --processes <--workers>`` with ``--shards`` event shards (default:
   one per process, each process serving its own; the load starts once every process
   has loaded the models and registered); the producer sends each user's events to the
   user's shard, a sustained ``--rate`` events/s of ML-100K-like traffic for ``--warmup`` +
   ``--seconds`` (linger from ``STREAMREC_LINGER``). A fresh worker reads each user's
   history once before it can mirror it, so probes count after the warm-up; the whole run
   is reported too.
   Every 10th event is a probe: its user's next history version is known, and a reader
   process (not a thread: it must not share the producer's interpreter lock) reads that
   user's cache entries (one per model) whenever Redis notifies a write to one of them
   (keyspace notifications, enabled for the run) until every one's ``history_version``
   reaches it.
   Latency = push call to the last of the user's lists visible, p50/p99.
3. Fold-in + top-k per user: the model part (fold_in_users + recommend + contributions)
   and the whole refresh of one user (Redis reads, model, CAS write). With ``--items``,
   ALS's catalogue first grows to that many items (synthetic vectors around the learned
   ones, published with a ScaNN index as any model of that size), the index's recall of
   the users' top-k against exact search is printed, and the model part is timed with
   exact search over the same items too; the load then runs on that model, after the
   same load on the ML-100K-sized catalogue in the same run, and the ratio of the two
   p99s is printed.
   The worker's capacity from a backlog is printed with and without draining.
4. Cached reads per second through ``RecommendationClient.get`` vs raw redis-py ``GET`` of
   the same keys, in the same run: alternating rounds of the two, the ratio is the median
   of the rounds' ratios.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import queue
import random
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import hiredis
import numpy as np
import redis
from rq import Worker

from streamrec import keys
from streamrec.data.importers import open_source
from streamrec.data.synthetic import SyntheticConfig, generate
from streamrec.models.index import ExactIndex
from streamrec.producer import Producer
from streamrec.serving.online import OnlineServing
from streamrec.serving.served import ServedALS
from streamrec.serving.training import train_model
from streamrec.settings import Settings
from streamrec.state.bulk import BulkLoader
from streamrec.state.client import RecommendationClient
from streamrec.state.connection import connect, stop_embedded
from streamrec.state.matrices import MatrixReader
from streamrec.state.registry import ModelRegistry

PROBE_EVERY = 10
#: The history version of each entry named in KEYS (-1 for a missing one).
VERSIONS_SCRIPT = """
local out = {}
for i, key in ipairs(KEYS) do
  local raw = redis.call('GET', key)
  out[i] = raw and tonumber(string.match(raw, '"history_version":(%d+)')) or -1
end
return out
"""


def load_state(conn: redis.Redis, settings: Settings, data: Path) -> tuple[list[str], list[str]]:
    """Import the data (ML-100K when present) and return (users, items)."""
    if (data / "u.data").exists():
        BulkLoader(conn, settings).load(open_source(data, "movielens-100k"))
        print(f"state: MovieLens 100K from {data}")
    else:
        synthetic = generate(SyntheticConfig(n_users=943, n_items=1682, events_per_user=106))
        BulkLoader(conn, settings).load_events(synthetic.events, "synthetic")
        print("state: synthetic data of ML-100K size (MovieLens 100K not found)")
    users = sorted(k.decode() for k in conn.hkeys(keys.vocab_key("users")))
    items = sorted(k.decode() for k in conn.hkeys(keys.vocab_key("items")))
    return users, items


def watch_probes(
    home: str,
    models: list[str],
    probe_users: list[str],
    todo: Any,
    done: Any,
    ready: Any,
    stop: Any,
) -> None:
    """The probe watcher, in a process of its own (a thread would share the producer's
    interpreter lock, and a starved watcher would see entries late): it reports
    ``(probe, user, sent, latency)`` when the user's entry of every model in ``models``
    reaches the probe's history version; ``None`` when it is done. ``ready`` is set once
    it is subscribed: no probe may be sent before (its write could go unnoticed).

    It does not poll: it subscribes to the keyspace notifications of the probe users'
    cache keys (the run's server has ``notify-keyspace-events K$``) and reads the history
    versions of a probe's entries each time one of them is written (and when the probe
    arrives, if one was written since it was sent). It shares the machine with the
    workers it measures, so it must stay light."""
    conn = connect(Settings(home=Path(home)))
    db = conn.connection_pool.connection_kwargs.get("db", 0)
    prefix = f"__keyspace@{db}__:".encode()
    # Redis reads each entry's history version (a pattern on the stored JSON) and returns
    # only the numbers: the watcher neither moves whole entries nor parses them (a miss
    # reads as -1)
    script = conn.script_load(VERSIONS_SCRIPT)
    # two connections of its own, used below redis-py's client layers (they cost more CPU
    # per message than the watcher may take): one subscribed, read with a hiredis parser
    asker = conn.connection_pool.make_connection()
    listener = conn.connection_pool.make_connection()
    owner = {keys.recommendations_key(u, m).encode(): u for u in probe_users for m in models}
    listener.send_command("SUBSCRIBE", *(prefix + key for key in owner))
    sock, parser = listener._sock, hiredis.Reader()
    subscribed = 0
    while subscribed < len(owner):
        parser.feed(sock.recv(1 << 16))
        while (reply := parser.gets()) is not False:
            subscribed += reply[0] == b"subscribe"
    ready.set()
    pending: dict[str, tuple[int, int, float]] = {}  # user -> (probe, version, sent)
    last_write: dict[str, float] = {}  # user -> when one of its entries was last written
    deadline = None
    while True:
        written: set[str] = set()
        while not todo.empty():
            probe, user, version, sent = todo.get()
            pending[user] = (probe, version, sent)
            if last_write.get(user, -1.0) >= sent:  # written before the probe got here
                written.add(user)
        if stop.is_set():
            deadline = deadline or time.monotonic() + 60
            if (not pending and todo.empty()) or time.monotonic() > deadline:
                break
        if select.select([sock], [], [], 0.005)[0]:
            parser.feed(sock.recv(1 << 16))
            while (message := parser.gets()) is not False:
                user = owner.get(message[1][len(prefix) :])
                if message[0] == b"message" and user is not None:
                    last_write[user] = time.monotonic()
                    if user in pending:
                        written.add(user)
        if not written:
            continue
        users = sorted(written)
        probed = [keys.recommendations_key(u, m) for u in users for m in models]
        asker.send_command("EVALSHA", script, len(probed), *probed)
        stored = asker.read_response()
        now = time.monotonic()
        for n, user in enumerate(users):
            probe, version, sent = pending[user]
            if all(int(v) >= version for v in stored[n * len(models) : (n + 1) * len(models)]):
                done.put((probe, user, sent, now - sent))
                del pending[user]
    if pending:
        print(f"probe watcher: {len(pending)} probe(s) never reached their version", flush=True)
    listener.disconnect()
    asker.disconnect()
    done.put(None)


def sustained_load(
    conn: redis.Redis,
    settings: Settings,
    users: list[str],
    items: list[str],
    rate: float,
    seconds: float,
    warmup: float = 0.0,
    models: tuple[str, ...] = ("als",),
) -> tuple[list[float], list[float], int, float]:
    """Send ``rate`` events/s for ``warmup + seconds``.

    Returns:
        Probe latencies after the warm-up, those during it, events sent, seconds taken.
    """
    rng = random.Random(7)
    probe_users = users[: len(users) // 10]
    background = users[len(users) // 10 :]
    versions = {u: int(conn.get(keys.user_version_key(u)) or 0) for u in probe_users}
    context = multiprocessing.get_context("spawn")
    todo, done = context.Queue(), context.Queue()
    ready, stop = context.Event(), context.Event()
    conn.config_set("notify-keyspace-events", "K$")  # the watcher's wake-ups (string writes)
    watcher = context.Process(
        target=watch_probes,
        args=(str(settings.home), list(models), probe_users, todo, done, ready, stop),
        daemon=True,
    )
    watcher.start()
    if not ready.wait(120):
        raise RuntimeError("the probe watcher did not subscribe within 120 s")
    waiting: set[str] = set()
    latencies: list[tuple[float, float]] = []  # (sent, latency)

    def collect(block: bool) -> bool:
        while True:
            try:
                result = done.get(timeout=120) if block else done.get_nowait()
            except queue.Empty:
                return False
            if result is None:
                return True
            _, user, sent, latency = result
            waiting.discard(user)
            latencies.append((sent, latency))

    total = int(rate * (warmup + seconds))
    start = time.perf_counter()
    measured_from = time.monotonic() + warmup
    with Producer(settings, connection=conn) as producer:
        for n in range(total):
            if n % PROBE_EVERY == 0:
                collect(block=False)
                user = rng.choice(probe_users)
                if user not in waiting:
                    versions[user] += 1
                    waiting.add(user)
                    sent = time.monotonic()
                    producer.send(user, rng.choice(items), 1)
                    todo.put((n, user, versions[user], sent))
                else:
                    producer.send(rng.choice(background), rng.choice(items), 1)
            else:
                producer.send(rng.choice(background), rng.choice(items), 1)
            ahead = (n + 1) / rate - (time.perf_counter() - start)
            if ahead > 0.001:  # pace to the millisecond: a sleep per event costs the CPU
                time.sleep(ahead)
    elapsed = time.perf_counter() - start
    stop.set()
    while not collect(block=True):
        pass
    watcher.join(timeout=60)
    conn.config_set("notify-keyspace-events", "")
    steady = [lat for sent, lat in latencies if sent >= measured_from]
    early = [lat for sent, lat in latencies if sent < measured_from]
    return steady, early, total, elapsed


def grow_catalogue(conn: redis.Redis, settings: Settings, n_items: int) -> None:
    """Publish the active ALS model again with ``n_items`` items: the learned ones and
    synthetic ones (a learned item's vector, jittered and rescaled: clustered like real
    items), indexed by ScaNN as any model of that size (``build_index``)."""
    registry = ModelRegistry(conn, settings)
    model = ServedALS(conn, settings).load(registry.active_folder("als")[1])
    learned = model.item_factors
    rng = np.random.default_rng(5)
    extra = n_items - len(learned)
    base = learned[rng.integers(0, len(learned), extra)]
    jitter = rng.normal(0.0, 0.3, base.shape) * np.abs(base).mean()
    scale = rng.lognormal(0.0, 0.25, (extra, 1))
    vectors = ((base + jitter) * scale).astype(np.float32)
    start = time.perf_counter()
    model.add_items(np.arange(len(learned), n_items), vectors)
    model.rebuild_index()  # one build over all of them, as a scheduled rebuild does
    built = time.perf_counter() - start
    registry.publish("als", model.save, {"synthetic_items": extra})
    print(
        f"catalogue: {n_items:,} items ({extra:,} synthetic), {type(model.index).__name__} "
        f"built in {built:.1f} s"
    )


def fold_in_timing(
    conn: redis.Redis, settings: Settings, users: list[str], exact: bool = False
) -> dict[str, float]:
    """Milliseconds per user of fold-in + top-k + explanations (the worker's calls), one
    user at a time and in batches of 100, and of a whole one-user refresh; ``exact``: with
    the model's items searched exactly instead of through its index."""
    served = ServedALS(conn, settings)
    online = OnlineServing(conn, settings, models=[served])
    model = served.current()
    assert model is not None
    if exact:
        model.index = ExactIndex(model.index.vectors)
    sample = users[:300]
    rows = MatrixReader(conn).rows(sample, n_items=model.n_items)

    def serve(matrix: object) -> None:
        systems = model.solve_users(matrix)  # type: ignore[arg-type]
        conf = systems.confidence
        seen = [conf.indices[conf.indptr[r] : conf.indptr[r + 1]] for r in range(conf.shape[0])]
        ids, _ = model.recommend(systems.vectors, served.k, seen)
        model.because(systems, ids, served.because)

    start = time.perf_counter()
    for r in range(len(sample)):
        serve(rows.matrix[r])
    single = (time.perf_counter() - start) * 1000 / len(sample)
    start = time.perf_counter()
    for r in range(0, len(sample), 100):
        serve(rows.matrix[r : r + 100])
    batched = (time.perf_counter() - start) * 1000 / len(sample)
    start = time.perf_counter()
    for user in sample[:100]:
        online.refresh([user])
    refresh = (time.perf_counter() - start) * 1000 / 100
    return {"single": single, "batched": batched, "refresh": refresh}


def index_recall(conn: redis.Redis, settings: Settings, users: list[str], k: int) -> float:
    """Recall@``k`` of the served model's index against exact search over the same items,
    for 300 users folded in from their histories, their seen items filtered (as served)."""
    model = ServedALS(conn, settings).current()
    assert model is not None
    rows = MatrixReader(conn).rows(users[:300], n_items=model.n_items)
    vectors = model.solve_users(rows.matrix).vectors
    m = rows.matrix
    seen = [m.indices[m.indptr[r] : m.indptr[r + 1]] for r in range(m.shape[0])]
    found, _ = model.index.search(vectors, k, seen)
    truth, _ = ExactIndex(model.index.vectors).search(vectors, k, seen)
    hits = [len(set(a[a >= 0]) & set(b[b >= 0])) / k for a, b in zip(found, truth, strict=True)]
    return float(np.mean(hits))


def read_rates(
    conn: redis.Redis, users: list[str], n: int = 3_000, rounds: int = 9
) -> tuple[float, float, float]:
    """Reads per second through the client and through raw GET of the same keys (medians),
    and the median of the per-round ratios: the two alternate over ``rounds`` rounds, so a
    round's ratio compares them under the same machine load."""
    client = RecommendationClient(connection=conn)
    rng = random.Random(3)
    picks = [rng.choice(users) for _ in range(n)]
    key_of = {u: keys.recommendations_key(u, "als") for u in set(picks)}
    raw_rates, client_rates = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        for user in picks:
            conn.get(key_of[user])
        raw_rates.append(n / (time.perf_counter() - start))
        start = time.perf_counter()
        for user in picks:
            client.get(user)
        client_rates.append(n / (time.perf_counter() - start))
    ratios = [c / r for c, r in zip(client_rates, raw_rates, strict=True)]
    return float(np.median(client_rates)), float(np.median(raw_rates)), float(np.median(ratios))


def worker_capacity(
    conn: redis.Redis,
    settings: Settings,
    env: dict[str, str],
    users: list[str],
    items: list[str],
    drain: int,
    batches: int = 500,
    size: int = 40,
) -> float:
    """Events/s one worker applies and serves from a backlog: ``batches`` jobs of ``size``
    events queued with no worker running, then ``streamrec worker --burst`` timed on them
    less its time on an empty queue (start-up and model load), with ``drain_batches``
    set to ``drain``."""
    rng = random.Random(11)

    def burst(n: int) -> float:
        with Producer(settings, connection=conn, batch_size=size, linger=60.0) as producer:
            for _ in range(n * size):
                producer.send(rng.choice(users), rng.choice(items), 1)
        command = [sys.executable, "-m", "streamrec", "worker", "--burst"]
        start = time.perf_counter()
        subprocess.run(command, env=dict(env, STREAMREC_DRAIN_BATCHES=str(drain)), check=True)
        return time.perf_counter() - start

    idle = burst(0)
    return batches * size / (burst(batches) - idle)


def run_load(
    conn: redis.Redis,
    settings: Settings,
    env: dict[str, str],
    users: list[str],
    items: list[str],
    models: tuple[str, ...],
    args: argparse.Namespace,
    label: str | None,
) -> float:
    """``streamrec worker --processes <--workers>`` (one supervisor, each process serving
    its own shards) under the sustained load, once every process has registered (the
    models load first); prints the latencies and returns the p99 after the warm-up."""
    command = [sys.executable, "-m", "streamrec", "worker", "--processes", str(args.workers)]
    before = Worker.count(connection=conn)
    supervisor = subprocess.Popen(command, env=env)
    try:
        deadline = time.monotonic() + 300
        while Worker.count(connection=conn) < before + args.workers:
            if time.monotonic() > deadline or supervisor.poll() is not None:
                raise RuntimeError("the workers did not start within 300 s")
            time.sleep(0.1)
        forks = int(conn.info("stats")["total_forks"])
        steady, early, sent, elapsed = sustained_load(
            conn, settings, users, items, args.rate, args.seconds, args.warmup, models
        )
        forks = int(conn.info("stats")["total_forks"]) - forks
    finally:
        supervisor.terminate()
        supervisor.wait()
    on = f" at {label}" if label else ""
    print(
        f"{args.workers} worker(s) on {settings.event_shards} event shard(s) serving "
        f"{', '.join(models)}{on}, "
        f"linger {settings.linger * 1000:.0f} ms, sustained "
        f"{sent / elapsed:,.0f} events/s for {elapsed:.1f} s ({sent:,} events); "
        f"Redis forked {forks} time(s) meanwhile (snapshots, AOF rewrites)"
    )
    for name, latencies in (
        (f"after {args.warmup:g} s warm-up", steady),
        ("whole run incl. warm-up", steady + early),
    ):
        lat = np.array(latencies) * 1000
        print(
            f"  {name}: {len(lat)} probes, push → cache entry "
            f"p50 {np.percentile(lat, 50):.1f} ms, p90 {np.percentile(lat, 90):.1f} ms, "
            f"p99 {np.percentile(lat, 99):.1f} ms, max {lat.max():.1f} ms  "
            "[targets p50 ≤ 50, p99 ≤ 100]"
        )
    return float(np.percentile(np.array(steady) * 1000, 99))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--shards", type=int, help="event shards (default: one per worker process)")
    parser.add_argument(
        "--warmup",
        type=float,
        default=3.0,
        help="seconds of load before probes count (a new worker reads each user once)",
    )
    parser.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/ml-100k"
    )
    parser.add_argument("--models", default="als", help="comma-separated models to train and serve")
    parser.add_argument(
        "--items",
        type=int,
        default=0,
        help="grow ALS's catalogue to this many items (synthetic vectors; ScaNN from 50,000)",
    )
    args = parser.parse_args()
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # Keras 2 for TFRS, before TensorFlow
    models = tuple(args.models.split(","))

    home = Path(tempfile.mkdtemp(prefix="streamrec-fresh-"))
    shards = args.workers if args.shards is None else args.shards
    env = dict(
        os.environ,
        STREAMREC_HOME=str(home),
        OPENBLAS_NUM_THREADS="1",
        STREAMREC_EVENT_SHARDS=str(shards),
    )
    settings = Settings.from_env(env)
    conn = connect(settings)
    try:
        users, items = load_state(conn, settings, args.data)
        for model in models:
            report = train_model(conn, settings, model)
            print(
                f"{model} trained: fit {report.fit_seconds:.2f} s, "
                f"{report.refreshed} lists in {report.refresh_seconds:.2f} s"
            )

        baseline = None
        if args.items:  # the same load on the ML-100K-sized catalogue first: the baseline
            baseline = run_load(conn, settings, env, users, items, models, args, None)
            grow_catalogue(conn, settings, args.items)
            recall = index_recall(conn, settings, users, settings.top_k)
            print(
                f"index recall@{settings.top_k} against exact search, seen items filtered "
                f"(300 users): {recall:.3f}"
            )
            t = fold_in_timing(conn, settings, users, exact=True)
            print(
                f"exact search over the same items: fold-in + top-{settings.top_k} + "
                f"explanations per user {t['single']:.2f} ms one at a time, "
                f"{t['batched']:.2f} ms in batches of 100"
            )
        t = fold_in_timing(conn, settings, users)
        target = "model part ≤ 1 ms" if args.items else "whole refresh ≤ 2 ms"
        print(
            f"fold-in + top-{settings.top_k} + explanations per user: "
            f"{t['single']:.2f} ms one user at a time, {t['batched']:.2f} ms in batches of 100; "
            f"whole refresh of one user (reads, model, CAS write) {t['refresh']:.2f} ms  "
            f"[target {target}]"
        )

        capacity = {d: worker_capacity(conn, settings, env, users, items, d) for d in (0, 15)}
        print(
            f"worker capacity from a backlog (500 jobs of 40 events): "
            f"{capacity[15]:,.0f} events/s taking up to 15 queued jobs per job, "
            f"{capacity[0]:,.0f} events/s one job at a time ({capacity[15] / capacity[0]:.2f}×)"
        )

        label = f"{args.items:,} items" if args.items else None
        p99 = run_load(conn, settings, env, users, items, models, args, label)
        if baseline is not None:
            print(
                f"push → cache p99 at {args.items:,} items over the ML-100K-sized run's: "
                f"{p99:.1f} / {baseline:.1f} ms = {p99 / baseline:.2f}×  [target ≤ 2×]"
            )

        through, raw, ratio = read_rates(conn, users)
        print(
            f"cached reads: client {through:,.0f}/s, raw GET {raw:,.0f}/s (median of the "
            f"per-round ratios {ratio:.1%})  [target ≥ 80%]"
        )
    finally:
        conn.close()
        stop_embedded(settings)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
