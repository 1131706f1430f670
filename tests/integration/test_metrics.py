"""Prometheus metrics of real worker processes, and freshness in ``streamrec status``.

"Events refreshed" (the latency histogram's ``_count`` for a model) are the events of
applied batches whose user's entry of that model the worker wrote afterwards: here every
event goes to a user the model knows, so they are all the valid events applied, and the
test checks that each user's entry reached the user's final history version.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
import redis
from click.testing import CliRunner
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from streamrec import keys
from streamrec.cli import cli
from streamrec.producer import JOB_FUNCTION, Producer
from streamrec.settings import Settings
from streamrec.state.client import RecommendationClient
from streamrec.state.queues import queue
from streamrec.state.stats import read_counts
from tests.integration.helpers import drain

#: Every series a worker's /metrics serves (names as exposed, without _bucket/_count/...).
WORKER_SERIES = {
    "streamrec_events_applied": "counter",
    "streamrec_events_rejected": "counter",
    "streamrec_batch_apply_seconds": "histogram",
    "streamrec_fold_in_seconds": "histogram",
    "streamrec_event_to_cache_seconds": "histogram",
    "streamrec_queue_depth": "gauge",
    "streamrec_queue_oldest_seconds": "gauge",
    "streamrec_dead_letters": "gauge",
    "streamrec_quarantined": "gauge",
    "streamrec_unserved_batches": "gauge",
    "streamrec_model_version": "gauge",
    "streamrec_model_age_seconds": "gauge",
    "streamrec_redis_up": "gauge",
}
USERS = [f"user-{n:05d}" for n in range(0, 150, 3)]  # known to the trained model
LATENCY = "streamrec_event_to_cache_seconds"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape(port: int) -> Scraped:
    """Family name -> {(sample name, labels): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return {
        family.name: {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}
        for family in text_string_to_metric_families(text)
    }


Scraped = dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]
T = TypeVar("T")


def value(found: Scraped, family: str, suffix: str = "", **labels: str) -> float | None:
    """A sample of ``family`` (``suffix``: ``_count``, ``_total``, ...) with ``labels``."""
    return found.get(family, {}).get((family + suffix, tuple(sorted(labels.items()))))


def scraped_when(port: int, check: Callable[[Scraped], bool]) -> Callable[[], Scraped | None]:
    """A probe for :func:`wait_for`: the scrape, once ``check`` holds for it."""

    def probe() -> Scraped | None:
        found = scrape(port)
        return found if check(found) else None

    return probe


def applied_at_least(conn: redis.Redis, n: int) -> Callable[[], bool]:
    return lambda: read_counts(conn).events_applied >= n


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 60.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except OSError:  # the endpoint is not up yet
            result = None
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def push(settings: Settings, conn: redis.Redis, rounds: int) -> int:
    """Plays of USERS through the real producer, in several batches; returns events sent."""
    sent = 0
    with Producer(settings.with_(batch_size=40, linger=0.005), connection=conn) as producer:
        for r in range(rounds):
            for n, user in enumerate(USERS):
                producer.send(user, f"item-{(n * 7 + r) % 120:05d}", weight=1 + r % 3)
                sent += 1
            producer.flush()
    return sent


def poison(conn: redis.Redis) -> None:
    """One batch with two invalid events (a bad weight, an unknown kind) and a valid one."""
    events = [
        {"user": USERS[0], "item": "item-00001", "weight": -5, "kind": "play"},
        {"user": USERS[0], "item": "item-00001", "weight": 1, "kind": "teleport"},
        {"user": USERS[1], "item": "item-00002", "weight": 1, "kind": "click"},
    ]
    queue(conn).enqueue(JOB_FUNCTION, "poisoned-batch", events, result_ttl=0)


def all_refreshed(conn: redis.Redis, model: str = "als") -> bool:
    """Every pushed user's entry of ``model`` reflects the user's whole history."""
    for user in USERS:
        raw = conn.get(keys.recommendations_key(user, model))
        version = int(conn.get(keys.user_version_key(user)) or 0)
        if raw is None or json.loads(raw)["history_version"] != version:
            return False
    return True


def start(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    """``streamrec worker ARGS``, its log going to ``log`` (a pipe nobody reads would fill)."""
    with log.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "streamrec", "worker", *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )


def stop(process: subprocess.Popen[bytes], log: Path) -> str:
    """SIGTERM the worker, wait for it; its log's tail."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return log.read_text(errors="replace")[-3000:]


@pytest.mark.slow
def test_a_worker_serves_every_series_and_counts_each_refreshed_event(
    trained: dict[str, int],
    redis_conn: redis.Redis,
    settings: Settings,
    subprocess_env: dict[str, str],
    tmp_path: Path,
) -> None:
    port = free_port()
    worker = start({**subprocess_env, "STREAMREC_METRICS_PORT": str(port)}, tmp_path / "log")
    try:
        wait_for("the metrics endpoint", lambda: scrape(port))
        before = read_counts(redis_conn).events_applied
        sent = push(settings, redis_conn, rounds=6)
        poison(redis_conn)
        wait_for("every event applied", applied_at_least(redis_conn, before + sent + 1))
        wait_for("every user refreshed", lambda: all_refreshed(redis_conn))
        applied = read_counts(redis_conn).events_applied - before
        assert applied == sent + 1

        def counted(found: Scraped) -> bool:
            return value(found, LATENCY, "_count", model="als") == applied

        found = wait_for("the latency count", scraped_when(port, counted))
    finally:
        log = stop(worker, tmp_path / "log")
    assert worker.returncode == 0, log

    kinds = {name: kind for name, kind in WORKER_SERIES.items() if found.get(name)}
    assert kinds == WORKER_SERIES, "every series has samples"
    total = value(found, LATENCY, "_sum", model="als")
    assert total is not None and 0 < total / applied < 30  # seconds per event, on a busy box
    assert value(found, "streamrec_events_applied", "_total", kind="play") == sent
    assert value(found, "streamrec_events_applied", "_total", kind="click") == 1
    assert value(found, "streamrec_events_rejected", "_total", kind="play") == 1
    assert value(found, "streamrec_events_rejected", "_total", kind="other") == 1
    assert value(found, "streamrec_dead_letters") == 2
    assert value(found, "streamrec_model_version", model="als") == 1
    age = value(found, "streamrec_model_age_seconds", model="als")
    assert age is not None and 0 <= age < 600
    assert value(found, "streamrec_queue_depth", queue="events") == 0
    assert value(found, "streamrec_redis_up") == 1
    fold = value(found, "streamrec_fold_in_seconds", "_count", model="als")
    assert fold is not None and fold >= 1
    assert (value(found, "streamrec_batch_apply_seconds", "_count") or 0) >= 1
    # the rolling histogram in Redis that `status` reads holds the same events
    assert wait_for("the freshness log", lambda: _logged(redis_conn) == applied)


def _logged(conn: redis.Redis, model: str = "als") -> int:
    return sum(
        int(n) for key in conn.scan_iter(f"{keys.PREFIX}:freshness:{model}:*")
        for n in conn.hvals(key)
    )  # fmt: skip


def test_the_client_counts_its_reads(trained: dict[str, int], redis_conn: redis.Redis) -> None:
    """``streamrec_cache_reads_total`` is counted in the reading process (the app's)."""

    def reads(result: str) -> float:
        labels = {"model": "als", "result": result}
        return REGISTRY.get_sample_value("streamrec_cache_reads_total", labels) or 0.0

    before = {r: reads(r) for r in ("personal", "popular", "none")}
    client = RecommendationClient(connection=redis_conn)
    client.get(USERS[0])
    client.get_many([USERS[1], USERS[2], "nobody-at-all"])
    assert reads("personal") - before["personal"] == 3
    assert reads("popular") + reads("none") - before["popular"] - before["none"] == 1


@pytest.mark.slow
def test_worker_n_2_serves_the_sum_of_its_children(
    trained: dict[str, int],
    redis_conn: redis.Redis,
    settings: Settings,
    subprocess_env: dict[str, str],
    tmp_path: Path,
) -> None:
    port = free_port()
    env = {**subprocess_env, "STREAMREC_METRICS_PORT": str(port), "STREAMREC_DRAIN_BATCHES": "0"}
    before = read_counts(redis_conn).events_applied
    sent = push(settings, redis_conn, rounds=12)  # queued before the children start: both work
    supervisor = start(env, tmp_path / "log", "-n", "2")
    folder = settings.home / "metrics" / f"workers-{supervisor.pid}"
    try:
        wait_for("every event applied", applied_at_least(redis_conn, before + sent))
        wait_for("every user refreshed", lambda: all_refreshed(redis_conn))

        def counted(found: Scraped) -> bool:
            return value(found, LATENCY, "_count", model="als") == sent

        found = wait_for("the summed latency count", scraped_when(port, counted))
        per_child = _counts_per_child(folder, LATENCY)
    finally:
        log = stop(supervisor, tmp_path / "log")
    assert supervisor.returncode == 0, log
    assert not folder.exists(), "the multiprocess folder is removed when the workers stop"
    # both children recorded into the folder and the endpoint served their sum (which child
    # took how many jobs is up to the race for the queue: one may take them all)
    assert len(per_child) == 2 and sum(per_child.values()) == sent, per_child
    assert value(found, "streamrec_events_applied", "_total", kind="play") == sent
    assert value(found, "streamrec_redis_up") == 1


def _counts_per_child(folder: Path, histogram: str) -> dict[str, float]:
    """The latency count each child recorded (its own file, read alone)."""
    counts = {}
    for path in sorted(folder.glob("histogram_*.db")):
        alone = Path(tempfile.mkdtemp(prefix="sr-child-"))
        try:
            shutil.copy(path, alone / path.name)
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=str(alone))
            labels = {"model": "als"}
            counts[path.stem] = registry.get_sample_value(f"{histogram}_count", labels) or 0.0
        finally:
            shutil.rmtree(alone, ignore_errors=True)
    return counts


def test_status_json_shows_freshness_lag_and_the_last_retrain(
    trained: dict[str, int], redis_conn: redis.Redis, settings: Settings
) -> None:
    before = read_counts(redis_conn).events_applied
    sent = push(settings, redis_conn, rounds=3)
    assert queue(redis_conn).count > 0
    lagging = json.loads(CliRunner().invoke(cli, ["status", "--json"]).stdout)
    assert lagging["lag"]["queued_batches"] == queue(redis_conn).count
    assert lagging["lag"]["oldest_queued_seconds"] >= 0

    drain(redis_conn, settings)  # a real worker, in this process: it writes its samples as it stops
    assert read_counts(redis_conn).events_applied == before + sent
    result = CliRunner().invoke(cli, ["status", "--json"])
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    fresh = {f["model"]: f for f in status["freshness"]}
    assert fresh["als"]["events"] == sent
    assert 0 < fresh["als"]["p50"] <= fresh["als"]["p99"] < 120
    assert status["freshness_minutes"] == 5
    models = {m["name"]: m for m in status["models"]}
    assert models["als"]["version"] == 1
    assert 0 <= models["als"]["age_seconds"] < 600
    assert abs(models["als"]["published_at"] - (time.time() - models["als"]["age_seconds"])) < 5
    assert models["kmf"]["version"] is None  # never trained
    assert status["lag"] == {"queued_batches": 0, "oldest_queued_seconds": None}
    assert status["drift"] is None  # no drift check has run
    table = CliRunner().invoke(cli, ["status"]).stdout
    assert "Freshness" in table and "als" in table and "Lag: 0 batch(es) queued" in table
    assert os.environ.get("PROMETHEUS_MULTIPROC_DIR") is None  # nothing leaked here


@pytest.mark.slow
def test_the_scheduler_serves_the_redis_gauges(
    trained: dict[str, int],
    redis_conn: redis.Redis,
    subprocess_env: dict[str, str],
    tmp_path: Path,
) -> None:
    port = free_port()
    log = tmp_path / "log"
    with log.open("wb") as sink:
        scheduler = subprocess.Popen(
            [sys.executable, "-m", "streamrec", "scheduler"],
            env={**subprocess_env, "STREAMREC_METRICS_PORT": str(port)},
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    try:
        found = wait_for("the metrics endpoint", lambda: scrape(port))
    finally:
        text = stop(scheduler, log)
    assert scheduler.returncode == 0, text
    assert value(found, "streamrec_model_version", model="als") == 1
    assert value(found, "streamrec_queue_depth", queue="training") == 0
    assert value(found, "streamrec_redis_up") == 1
