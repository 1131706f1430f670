"""The online path on a real Redis: train, fold in a brand-new user, cache, read, forget."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import redis
from click.testing import CliRunner

from streamrec import keys
from streamrec.cli import cli
from streamrec.data.synthetic import generate
from streamrec.producer import Producer
from streamrec.serving.online import OnlineServing
from streamrec.serving.served import ServedALS
from streamrec.serving.training import train_als
from streamrec.settings import Settings
from streamrec.state.bulk import BulkLoader
from streamrec.state.cache import RecommendationCache, encode_entry
from streamrec.state.client import RecommendationClient
from streamrec.state.queues import queue
from streamrec.state.registry import ModelRegistry
from streamrec.worker import jobs
from streamrec.worker.jobs import prepare
from streamrec.worker.runner import StreamrecWorker
from tests.integration.helpers import ALS_CONFIG as CONFIG
from tests.integration.helpers import ALS_PARAMS as PARAMS
from tests.integration.helpers import drain


def test_a_new_user_gets_a_personal_list_from_their_plays(
    redis_conn: redis.Redis, settings: Settings, trained: dict[str, int]
) -> None:
    plays = [item for item, g in trained.items() if g == 2][:5]
    with Producer(settings, connection=redis_conn, linger=0) as producer:
        for item in plays:
            producer.send("newcomer", item, 3)
    client = RecommendationClient(connection=redis_conn)
    popular = client.get("nobody-at-all", 10)
    assert popular is not None and not popular.personal
    drain(redis_conn, settings)
    entry = client.get("newcomer", 10)
    assert entry is not None and entry.personal and entry.user == "newcomer"
    assert entry.history_version == 5 and entry.version == 1
    items = [i.item for i in entry.items]
    assert len(items) == 10 and not set(items) & set(plays)
    assert items != [i.item for i in popular.items]
    assert sum(trained[i] == 2 for i in items) >= 8  # the planted taste shows through
    assert all(set(i.because) <= set(plays) and i.because for i in entry.items)
    out = CliRunner().invoke(
        cli, ["explain", "newcomer", items[0], "--json"], catch_exceptions=False
    )
    assert {r["item"] for r in json.loads(out.stdout)} <= set(plays)


def test_a_cache_entry_from_an_older_history_never_replaces_a_newer_one(
    redis_conn: redis.Redis,
) -> None:
    cache = RecommendationCache(redis_conn)
    key = keys.recommendations_key("u", "als")

    def entry(version: int, history: int, item: str) -> tuple[str, str, str]:
        return key, encode_entry("u", "als", version, history, [item], [1.0], [[]]), "u"

    def cached() -> str:
        return str(json.loads(redis_conn.get(key))["items"][0]["item"])

    assert cache.write_encoded([entry(1, 7, "a")]) == 1
    assert cache.write_encoded([entry(1, 6, "b")]) == 0  # an older history
    assert cached() == "a"
    assert cache.write_encoded([entry(2, 7, "c")]) == 1  # a newer model, same history
    assert cached() == "c"


def test_items_first_seen_after_training_become_recommendable(
    redis_conn: redis.Redis, settings: Settings, trained: dict[str, int]
) -> None:
    fans = [f"fan-{n}" for n in range(12)]
    group_items = [item for item, g in trained.items() if g == 1][:4]
    with Producer(settings, connection=redis_conn, linger=0, batch_size=10_000) as producer:
        for fan in fans:
            for item in group_items:
                producer.send(fan, item, 3)
            if fan != fans[-1]:
                producer.send(fan, "brand-new-item", 3)
    drain(redis_conn, settings)
    entry = RecommendationClient(connection=redis_conn).get(fans[-1], 10)
    assert entry is not None and "brand-new-item" in [i.item for i in entry.items]


def test_publishing_is_atomic_and_workers_reload_only_newer_versions(
    redis_conn: redis.Redis, settings: Settings, trained: dict[str, int]
) -> None:
    registry = ModelRegistry(redis_conn, settings)
    online = ServedALS(redis_conn, settings)
    first = online.current()
    assert online.version == 1 and online.current() is first  # no reload without a new version
    for _ in range(3):
        train_als(redis_conn, settings, PARAMS)
    assert registry.active_version("als") == 4
    assert online.current() is not first and online.version == 4
    kept = sorted(
        int(p.name) for p in (settings.home / "models" / "als").iterdir() if p.name.isdigit()
    )
    assert kept == [2, 3, 4]  # settings.models_kept
    assert not [p for p in (settings.home / "models" / "als").iterdir() if p.name.startswith(".")]
    entry = RecommendationClient(connection=redis_conn).get(generate(CONFIG).users()[0])
    assert entry is not None and entry.version == 4


def test_retrain_on_the_training_queue(
    redis_conn: redis.Redis, settings: Settings, trained: dict[str, int]
) -> None:
    result = CliRunner().invoke(
        cli, ["train", "als", "--factors", "8", "--queue"], catch_exceptions=False
    )
    assert "queued retrain job" in result.output
    from streamrec.worker.runner import run_worker

    run_worker(redis_conn, settings, [keys.TRAINING_QUEUE], burst=True)
    assert ModelRegistry(redis_conn, settings).active_version("als") == 2
    assert (
        json.loads(
            ModelRegistry(redis_conn, settings).folder("als", 2).joinpath("params.json").read_text()
        )["factors"]
        == 8
    )


def test_forget_deletes_the_cached_list(
    redis_conn: redis.Redis, settings: Settings, trained: dict[str, int]
) -> None:
    user = generate(CONFIG).users()[0]
    assert redis_conn.exists(keys.recommendations_key(user, "als"))
    CliRunner().invoke(cli, ["forget", user], catch_exceptions=False)
    assert not list(redis_conn.scan_iter(match=f"*{user}*"))


@pytest.mark.slow
def test_concurrent_workers_leave_the_list_of_the_final_history(
    redis_conn: redis.Redis,
    settings: Settings,
    trained: dict[str, int],
    subprocess_env: dict[str, str],
) -> None:
    users = [f"busy-{n}" for n in range(3)]
    items = sorted(trained)
    with Producer(settings, connection=redis_conn, linger=0, batch_size=7) as producer:
        for n in range(240):
            producer.send(users[n % 3], items[(n * 7) % len(items)], 1)
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "streamrec", "worker", "--burst"], env=subprocess_env
        )
        for _ in range(3)
    ]
    for worker in workers:
        assert worker.wait(timeout=120) == 0
    for user in users:
        entry = RecommendationClient(connection=redis_conn).get(user, 20)
        assert entry is not None and entry.personal and entry.user == user
        assert entry.history_version == int(redis_conn.get(keys.user_version_key(user)) or 0) == 80
        history = set(redis_conn.hkeys(keys.user_history_key(user)))
        assert not {i.item.encode() for i in entry.items} & history


def test_a_lost_version_counter_does_not_overwrite_model_files(
    redis_conn: redis.Redis, settings: Settings, trained: dict[str, int]
) -> None:
    redis_conn.delete(keys.model_counter_key("als"))  # as if Redis lost its data
    assert ModelRegistry(redis_conn, settings).publish("als", lambda folder: None, {}) == 2


def test_the_client_built_from_settings_reads_with_one_get(
    redis_conn: redis.Redis, settings: Settings, trained: dict[str, int]
) -> None:
    user = generate(CONFIG).users()[0]
    client = RecommendationClient(settings)
    client.get(user)  # the connection's handshake happens here
    redis_conn.config_resetstat()
    entry = client.get(user, 5)
    stats = redis_conn.info("commandstats")
    assert entry is not None and len(entry.items) == 5 and entry.personal and entry.user == user
    assert stats["cmdstat_get"]["calls"] == 1
    # this test's own CONFIG RESETSTAT and INFO (Redis 7 names it cmdstat_config|resetstat)
    own = ("cmdstat_config", "cmdstat_info")
    assert {k: v["calls"] for k, v in stats.items() if not k.startswith(own)} == {"cmdstat_get": 1}


@pytest.mark.parametrize("coalesce", [False, True])
def test_a_busy_worker_coalesces_refreshes_and_leaves_every_list_current(
    redis_conn: redis.Redis, settings: Settings, trained: dict[str, int], coalesce: bool
) -> None:
    users = [f"burst-{n}" for n in range(12)]
    items = sorted(trained)
    batches = 30
    with Producer(settings, connection=redis_conn, linger=0, batch_size=6) as producer:
        for n in range(batches * 6):
            producer.send(users[n % len(users)], items[(n * 5) % len(items)], 1)
    handler = prepare(redis_conn, settings, coalesce=coalesce)
    online = handler.deferring[0]
    assert isinstance(online, OnlineServing)
    jobs.bind(redis_conn, settings, handler)
    worker = StreamrecWorker(
        [queue(redis_conn)], connection=redis_conn, settings=settings, handler=handler
    )
    worker.work(burst=True)
    # all batches were queued before the worker started: a coalescing worker serves them
    # in a few refreshes, a plain one once per batch
    assert online.serves < batches / 3 if coalesce else online.serves == batches
    assert online.pending == 0
    for user in users:
        entry = RecommendationClient(connection=redis_conn).get(user, 20)
        assert entry is not None and entry.personal and entry.user == user
        assert entry.history_version == int(redis_conn.get(keys.user_version_key(user)) or 0)
        history = set(redis_conn.hkeys(keys.user_history_key(user)))
        assert not {i.item.encode() for i in entry.items} & history


def test_a_worker_serves_deferred_users_as_soon_as_its_queue_is_empty(
    redis_conn: redis.Redis, settings: Settings, trained: dict[str, int]
) -> None:
    users = [f"late-{n}" for n in range(4)]
    with Producer(settings, connection=redis_conn, linger=0, batch_size=2) as producer:
        for n, item in enumerate(sorted(trained)[:8]):
            producer.send(users[n % len(users)], item, 1)
    handler = prepare(redis_conn, settings, coalesce=True)
    online = handler.deferring[0]
    assert isinstance(online, OnlineServing)
    online.busy = lambda: True  # as if more jobs waited, then another worker took them
    jobs.bind(redis_conn, settings, handler)
    worker = StreamrecWorker(
        [queue(redis_conn)], connection=redis_conn, settings=settings, handler=handler
    )
    worker.work(burst=True)
    assert online.serves == 1 and online.pending == 0
    for user in users:
        entry = RecommendationClient(connection=redis_conn).get(user, 20)
        assert entry is not None and entry.personal and entry.user == user
        assert entry.history_version == 2


def test_a_batch_applied_before_the_worker_saw_a_new_model_is_served_with_it(
    redis_conn: redis.Redis, settings: Settings
) -> None:
    """A worker applies a batch without detail while it serves no model; when the model was
    published meanwhile, the batch's users are served from their stored histories."""
    data = generate(CONFIG)
    BulkLoader(redis_conn, settings).load_events(data.events, "synthetic")
    handler = prepare(redis_conn, settings)  # no model yet: applies without detail
    train_als(redis_conn, settings, PARAMS)
    items = sorted(data.item_group)[:3]
    outcome = handler.handle("late", [{"user": "late-comer", "item": i} for i in items])
    assert not outcome.detailed and outcome.n_users == 1
    entry = RecommendationClient(connection=redis_conn).get("late-comer")
    assert entry is not None and entry.personal and entry.user == "late-comer"
    assert entry.history_version == 3
