"""The scheduler: interval and event-count triggers, never a second job of a task, one
active scheduler of several (takeover when it is killed), rebuilds, nothing pickled."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zlib
from dataclasses import replace
from types import MappingProxyType

import pytest
import redis
from click.testing import CliRunner

from streamrec import keys
from streamrec.cli import cli
from streamrec.producer import Producer
from streamrec.settings import Settings
from streamrec.state.lock import Lease
from streamrec.state.queues import RETRAIN_MODEL, queue
from streamrec.state.registry import ModelRegistry
from streamrec.worker.scheduler import Scheduler
from tests.integration.helpers import drain


def schedule(settings: Settings, **per_model: dict[str, float]) -> Settings:
    """``settings`` with only the given per-model schedules (others off)."""
    values = {"retrain_every": {}, "retrain_after_events": {}, "rebuild_every": {}}
    values.update(per_model)
    return replace(settings, **{k: MappingProxyType(v) for k, v in values.items()})


def training_jobs(conn: redis.Redis) -> list[tuple[str, str]]:
    """(function, model) of every job on the training queue."""
    jobs = queue(conn, keys.TRAINING_QUEUE).get_jobs()
    return [(job.func_name, job.args[0]) for job in jobs]


def test_lease_one_holder_renewal_and_takeover_after_expiry(redis_conn: redis.Redis) -> None:
    first = Lease(redis_conn, keys.scheduler_lease_key(), 1.0, "a")
    second = Lease(redis_conn, keys.scheduler_lease_key(), 1.0, "b")
    assert first.acquire() and not second.acquire()
    time.sleep(0.6)
    assert first.acquire()  # renewed: lasts another second
    time.sleep(0.6)
    assert not second.acquire()
    time.sleep(1.1)  # the first stopped renewing
    assert second.acquire() and not first.acquire()
    assert not first.release() and second.release() and first.acquire()


def sleep_past(registry: ModelRegistry, model: str, seconds: float) -> None:
    """Sleep until ``seconds`` have passed since ``model``'s last publish."""
    published = registry.last_published(model)
    assert published is not None
    time.sleep(max(0.0, published.at + seconds + 0.05 - time.time()))


def test_an_interval_retrain_is_enqueued_once_and_again_after_the_next_publish(
    redis_conn: redis.Redis, settings: Settings, trained: dict[str, int]
) -> None:
    every = 3.0  # longer than the fixture's publish-to-here time on a loaded machine
    chosen = schedule(settings, retrain_every={"als": every})
    registry = ModelRegistry(redis_conn, chosen)
    runner = Scheduler(redis_conn, chosen, models=["als", "kmf"])
    assert runner.once() == []  # just trained; kmf never was
    sleep_past(registry, "als", every)

    first = runner.once()
    assert first is not None and [(j.kind, j.model) for j in first] == [("retrain", "als")]
    assert "since the last training" in first[0].reason
    time.sleep(every)
    assert runner.once() == []  # its job is still queued
    assert training_jobs(redis_conn) == [(RETRAIN_MODEL, "als")]

    before = registry.active_version("als")
    drain(redis_conn, chosen, keys.TRAINING_QUEUE)
    assert registry.active_version("als") == (before or 0) + 1
    assert runner.once() == []  # just published
    sleep_past(registry, "als", every)
    again = runner.once()
    assert again is not None and [(j.kind, j.model) for j in again] == [("retrain", "als")]


def test_enough_new_events_trigger_a_retrain(
    redis_conn: redis.Redis, settings: Settings, trained: dict[str, int]
) -> None:
    chosen = schedule(settings, retrain_after_events={"*": 30})
    runner = Scheduler(redis_conn, chosen, models=["als"])
    with Producer(chosen, connection=redis_conn, linger=0) as producer:
        for n in range(29):
            producer.send(f"late-{n % 5}", f"item-{n}", 1)
    drain(redis_conn, chosen)
    assert runner.once() == []
    with Producer(chosen, connection=redis_conn, linger=0) as producer:
        producer.send("late-0", "item-x", 1)
    drain(redis_conn, chosen)

    due = runner.once()
    assert due is not None and len(due) == 1 and "30 events" in due[0].reason


def test_a_retrain_queued_by_hand_is_not_doubled(
    redis_conn: redis.Redis, settings: Settings, trained: dict[str, int]
) -> None:
    chosen = schedule(settings, retrain_every={"als": 0.5})
    runner = Scheduler(redis_conn, chosen, models=["als"])
    result = CliRunner().invoke(cli, ["train", "als", "--queue"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    time.sleep(0.6)
    assert runner.once() == []
    assert training_jobs(redis_conn) == [(RETRAIN_MODEL, "als")]


def test_a_rebuild_publishes_the_items_folded_in_since_training(
    redis_conn: redis.Redis, settings: Settings, trained: dict[str, int]
) -> None:
    chosen = schedule(settings, rebuild_every={"als": 0.5})
    registry = ModelRegistry(redis_conn, chosen)
    trained_version = registry.active_version("als")
    known = [item for item, group in trained.items() if group == 1][:4]
    with Producer(chosen, connection=redis_conn, linger=0) as producer:
        for user in ("fan-a", "fan-b"):
            for item in [*known, "brand-new-item"]:
                producer.send(user, item, 3)
    drain(redis_conn, chosen)
    time.sleep(0.6)
    due = Scheduler(redis_conn, chosen, models=["als"]).once()
    assert due is not None and [(j.kind, j.model) for j in due] == [("rebuild", "als")]

    drain(redis_conn, chosen, keys.TRAINING_QUEUE)

    version, folder = registry.active_folder("als")
    assert version == (trained_version or 0) + 1
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["rebuilt_from"] == trained_version
    assert meta["items"] == meta["items_before"] + 1


def test_rebuilds_do_not_put_off_the_retrain(
    redis_conn: redis.Redis, settings: Settings, trained: dict[str, int]
) -> None:
    """A rebuild publishes, but the retrain interval and event count run from the last
    training: frequent rebuilds never hold a retrain back."""
    chosen = schedule(
        settings, retrain_every={"als": 600.0}, rebuild_every={"als": 0.5},
        retrain_after_events={"als": 40},
    )  # fmt: skip
    registry = ModelRegistry(redis_conn, chosen)
    runner = Scheduler(redis_conn, chosen, models=["als"])
    trained_at = registry.last_published("als")
    assert trained_at is not None
    with Producer(chosen, connection=redis_conn, linger=0) as producer:
        for n in range(30):
            producer.send(f"rebuilt-{n % 3}", f"item-{n}", 1)
    drain(redis_conn, chosen)
    time.sleep(0.6)
    due = runner.once()
    assert due is not None and [j.kind for j in due] == ["rebuild"]
    drain(redis_conn, chosen, keys.TRAINING_QUEUE)  # publishes the rebuild
    after = registry.last_published("als")
    assert after is not None and after.version == trained_at.version + 1
    assert (after.trained_at, after.events) == (trained_at.trained_at, trained_at.events)
    with Producer(chosen, connection=redis_conn, linger=0) as producer:
        for n in range(10):  # 40 events since the training, 10 since the rebuild
            producer.send(f"rebuilt-{n % 3}", f"item-{n}", 1)
    drain(redis_conn, chosen)
    due = runner.once()
    assert due is not None and [j.kind for j in due] == ["retrain"]
    assert "40 events since the last training" in due[0].reason
    drain(redis_conn, chosen, keys.TRAINING_QUEUE)
    time.sleep(max(0.0, registry.last_published("als").at + 0.6 - time.time()))  # type: ignore[union-attr]
    due = runner.once()  # a retrain is a publish too: the rebuild waits for its interval
    assert due is not None and [j.kind for j in due] == ["rebuild"]


def test_a_rebuild_never_replaces_a_version_published_meanwhile(
    redis_conn: redis.Redis, settings: Settings, trained: dict[str, int]
) -> None:
    registry = ModelRegistry(redis_conn, settings)
    old = registry.active_version("als")
    newer = registry.publish("als", lambda folder: None, {"by": "a retrain"})
    dropped = registry.publish("als", lambda folder: None, {"by": "a rebuild"}, replaces=old)
    assert dropped is None and registry.active_version("als") == newer


def start_scheduler(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "streamrec", "scheduler"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def holder_pid(conn: redis.Redis) -> int | None:
    token = Lease(conn, keys.scheduler_lease_key(), 1, "probe").holder()
    return None if token is None else int(token.split(":")[1])


@pytest.mark.slow
def test_one_of_two_schedulers_is_active_and_the_other_takes_over_when_it_is_killed(
    redis_conn: redis.Redis,
    settings: Settings,
    subprocess_env: dict[str, str],
    trained: dict[str, int],
) -> None:
    env = dict(
        subprocess_env,
        STREAMREC_SCHEDULER_TTL="2",
        STREAMREC_RETRAIN_EVERY="als=1",
        STREAMREC_RETRAIN_AFTER_EVENTS="-",
        STREAMREC_REBUILD_EVERY="-",
    )
    schedulers = [start_scheduler(env) for _ in range(2)]
    try:
        deadline = time.monotonic() + 30
        while not training_jobs(redis_conn):
            assert time.monotonic() < deadline, "no scheduler enqueued the due retrain"
            time.sleep(0.1)
        time.sleep(3)  # both had time to enqueue it if the lease let them
        assert training_jobs(redis_conn) == [(RETRAIN_MODEL, "als")]
        active = holder_pid(redis_conn)
        assert active in {s.pid for s in schedulers}

        os.kill(active, signal.SIGKILL)
        killed_at = time.monotonic()
        while holder_pid(redis_conn) in (active, None):
            assert time.monotonic() - killed_at < 6, "the standby did not take over"
            time.sleep(0.1)
        standby = holder_pid(redis_conn)
        assert standby in {s.pid for s in schedulers} - {active}

        drain(redis_conn, settings, keys.TRAINING_QUEUE)  # the retrain runs and publishes
        deadline = time.monotonic() + 20
        while not training_jobs(redis_conn):  # the new active scheduler goes on
            assert time.monotonic() < deadline, "the new active scheduler enqueued nothing"
            time.sleep(0.1)
        assert training_jobs(redis_conn) == [(RETRAIN_MODEL, "als")]
    finally:
        for process in schedulers:
            process.kill()
            process.wait()


def test_nothing_on_any_queue_is_pickled(
    redis_conn: redis.Redis, settings: Settings, trained: dict[str, int]
) -> None:
    chosen = schedule(settings, retrain_every={"*": 0.5}, rebuild_every={"*": 0.5})
    time.sleep(0.6)
    assert Scheduler(redis_conn, chosen).once()
    with Producer(chosen, connection=redis_conn, linger=0) as producer:
        producer.send("someone", "something", 1)
    found = 0
    for key in redis_conn.scan_iter("rq:job:*"):
        if redis_conn.type(key) != b"hash":
            continue
        data = redis_conn.hget(key, "data")
        if data is None:
            continue
        decoded = json.loads(zlib.decompress(data))  # JSON, not pickle (which starts 0x80)
        assert isinstance(decoded, list)
        found += 1
    assert found >= 3
