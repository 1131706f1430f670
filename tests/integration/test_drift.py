"""Drift checks on a real Redis: lists served by a real worker against a fresh in-process
retrain — close when nothing changed, far apart when the data moved under the model, and
then the scheduler's drift task retrains (never twice)."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from types import MappingProxyType

import numpy as np
import pytest
import redis
from click.testing import CliRunner

from streamrec import keys
from streamrec.cli import cli
from streamrec.data.synthetic import SyntheticConfig, generate
from streamrec.errors import NotFoundError
from streamrec.models.kernel_mf_params import KernelMFParams
from streamrec.models.two_tower import TwoTowerParams
from streamrec.producer import Producer
from streamrec.serving.drift import check_drift
from streamrec.serving.training import train_kmf, train_model
from streamrec.settings import Settings
from streamrec.state.bulk import BulkLoader
from streamrec.state.client import RecommendationClient
from streamrec.state.drift import DriftReports
from streamrec.state.queues import CHECK_DRIFT, RETRAIN_MODEL, queue
from streamrec.state.registry import ModelRegistry
from streamrec.worker.scheduler import Scheduler
from tests.integration.helpers import ALS_CONFIG, drain

K = 10
SAMPLE = 40


def checking(settings: Settings, **drift_every: float) -> Settings:
    """``settings`` with only drift checks scheduled (``drift_every`` per model)."""
    off: MappingProxyType[str, float] = MappingProxyType({})
    return replace(
        settings,
        retrain_every=off,
        retrain_after_events=off,
        rebuild_every=off,
        drift_every=MappingProxyType(drift_every),
        drift_threshold=0.5,
        drift_users=SAMPLE,
        top_k=K,
    )


def touch_users(conn: redis.Redis, settings: Settings, config: SyntheticConfig) -> list[str]:
    """A barely-there play (weight 0.001) of an item they already played, by the first
    :data:`SAMPLE` users, served by a real worker: their lists are written again from a newer
    history version, and the data is the same to a thousandth."""
    data = generate(config)
    first: dict[str, str] = {}
    for event in data.events:
        first.setdefault(event.user, event.item)
    users = sorted(first)[:SAMPLE]
    with Producer(settings, connection=conn, linger=0) as producer:
        for user in users:
            producer.send(user, first[user], 0.001)
    drain(conn, settings)
    return users


def move_tastes(
    conn: redis.Redis, settings: Settings, config: SyntheticConfig, kind: str = "play"
) -> None:
    """Change the data under the model: items fall into new groups that cut across the
    planted ones, and every user turns to one of them (a dozen heavy plays, or ratings of 5
    while everything they rated before gets 1); a real worker serves them."""
    data = generate(config)
    rng = np.random.default_rng(7)
    items = sorted(data.item_group)
    new_group = dict(zip(items, rng.permutation(len(items)) % 4, strict=True))
    members = {g: [i for i in items if new_group[i] == g] for g in range(4)}
    rated: dict[str, list[str]] = {}
    for event in data.events if kind == "rating" else []:
        rated.setdefault(event.user, []).append(event.item)
    with Producer(settings, connection=conn, linger=0) as producer:
        for n, user in enumerate(sorted(data.user_group)):
            for item in rated.get(user, []):
                producer.send(user, item, 1, kind="rating")
            for item in rng.choice(members[n % 4], size=12, replace=False):
                producer.send(user, str(item), 5 if kind == "rating" else 20, kind=kind)
    drain(conn, settings)


def test_served_lists_match_a_fresh_retrain_when_nothing_changed(
    redis_conn: redis.Redis, settings: Settings, trained: dict[str, int]
) -> None:
    chosen = checking(settings)
    client = RecommendationClient(connection=redis_conn)
    before = client.get_many(sorted(generate(ALS_CONFIG).user_group)[:SAMPLE])
    users = touch_users(redis_conn, chosen, ALS_CONFIG)
    after = client.get_many(users)
    for user in users:  # served again by the worker, from the newer history
        old, new = before[user], after[user]
        assert old is not None and new is not None and new.personal
        assert new.history_version == old.history_version + 1 and new.version == 1

    report = check_drift(redis_conn, chosen, "als", k=K)

    assert (report.model, report.version, report.k, report.users) == ("als", 1, K, SAMPLE)
    assert report.overlap is not None and report.overlap >= 0.9
    assert report.ndcg is not None and report.ndcg >= 0.9
    assert report.spearman is not None and report.spearman >= 0.8
    assert report.pearson is not None and report.pearson >= 0.8
    assert report.correlated >= SAMPLE // 2 and not report.drifted
    # kept for status, and nothing was published
    assert DriftReports(redis_conn).read(["als", "kmf"]) == {"als": report.as_dict()}
    assert ModelRegistry(redis_conn, chosen).active_version("als") == 1
    out = CliRunner().invoke(cli, ["status", "--json"], catch_exceptions=False)
    assert json.loads(out.stdout)["drift"]["als"]["overlap"] == report.overlap


def test_drift_is_detected_when_the_data_moves_and_the_scheduler_then_retrains(
    redis_conn: redis.Redis, settings: Settings, trained: dict[str, int]
) -> None:
    chosen = checking(settings, als=0.5)
    registry = ModelRegistry(redis_conn, chosen)
    move_tastes(redis_conn, chosen, ALS_CONFIG)
    runner = Scheduler(redis_conn, chosen, models=["als"])
    published = registry.last_published("als")
    assert published is not None
    time.sleep(max(0.0, published.at + 0.55 - time.time()))  # due 0.5 s after the publish
    due = runner.once()
    assert due is not None and [(j.kind, j.model) for j in due] == [("drift", "als")]
    assert runner.once() == []  # its job is queued: never a second one

    drain(redis_conn, chosen, keys.TRAINING_QUEUE)  # the check, then the retrain it enqueued

    last = DriftReports(redis_conn).read(["als"])["als"]
    assert last["drifted"] and last["overlap"] < 0.5 and last["users"] == SAMPLE
    assert last["version"] == 1 and registry.active_version("als") == 2
    tasks = json.loads(redis_conn.hget(keys.scheduler_tasks_key(), "retrain:als"))
    assert tasks["reason"].startswith("drift: overlap@10")
    # the retrain's lists are what a retrain gives
    after = check_drift(redis_conn, chosen, "als", k=K)
    assert after.version == 2 and after.overlap is not None and after.overlap >= 0.8
    assert not after.drifted


def test_a_drifted_check_never_doubles_a_queued_retrain(
    redis_conn: redis.Redis, settings: Settings, trained: dict[str, int]
) -> None:
    chosen = checking(settings)
    move_tastes(redis_conn, chosen, ALS_CONFIG)
    training = queue(redis_conn, keys.TRAINING_QUEUE)
    check = training.enqueue(CHECK_DRIFT, "als")
    training.enqueue(RETRAIN_MODEL, "als")  # queued behind it, by hand

    drain(redis_conn, chosen, keys.TRAINING_QUEUE)

    result = check.return_value()
    assert result is not None and result["drifted"] and result["retrain_job"] is None
    assert ModelRegistry(redis_conn, chosen).active_version("als") == 2  # one retrain


def test_the_cli_prints_the_report_and_refuses_an_untrained_model(
    redis_conn: redis.Redis, settings: Settings, trained: dict[str, int]
) -> None:
    touch_users(redis_conn, settings, ALS_CONFIG)
    out = CliRunner().invoke(
        cli, ["drift", "--model", "als", "--users", "5", "--k", "5", "--json"],
        catch_exceptions=False,
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert (report["users"], report["k"]) == (5, 5) and report["overlap"] >= 0.6
    table = CliRunner().invoke(cli, ["status"], catch_exceptions=False)
    assert "Drift" in table.stdout and "als" in table.stdout
    untrained = CliRunner().invoke(cli, ["drift", "--model", "kmf"])
    assert untrained.exit_code == 4 and "never trained" in untrained.output
    too_long = CliRunner().invoke(cli, ["drift", "--k", "500"])
    assert too_long.exit_code == 7 and "top_k" in too_long.output
    with pytest.raises(NotFoundError):
        check_drift(redis_conn, settings, "two-tower")


KMF_PARAMS = KernelMFParams(factors=8, epochs=40, lr=0.02, reg=0.02, update_epochs=40)
KMF_CONFIG = SyntheticConfig(
    n_users=150, n_items=120, n_groups=4, events_per_user=20, in_group=0.6, kind="rating"
)


def test_kernel_mf_drifts_when_ratings_move_and_not_before(
    redis_conn: redis.Redis, settings: Settings
) -> None:
    chosen = checking(settings)
    BulkLoader(redis_conn, chosen).load_events(generate(KMF_CONFIG).events, "ratings")
    train_kmf(redis_conn, chosen, KMF_PARAMS)
    data = generate(KMF_CONFIG)
    with Producer(chosen, connection=redis_conn, linger=0) as producer:
        for event in data.events[-SAMPLE:]:  # the same ratings again: nothing changes
            producer.send(event.user, event.item, event.weight, kind="rating")
    drain(redis_conn, chosen)

    steady = check_drift(redis_conn, chosen, "kmf", k=K)
    assert steady.users > 0 and steady.overlap is not None and steady.overlap >= 0.7
    assert not steady.drifted

    move_tastes(redis_conn, chosen, KMF_CONFIG, kind="rating")
    moved = check_drift(redis_conn, chosen, "kmf", k=K)
    assert moved.users == SAMPLE and moved.overlap is not None and moved.drifted
    assert moved.overlap < steady.overlap


@pytest.mark.slow
def test_the_two_tower_is_retrained_in_process_where_tensorflow_is_installed(
    redis_conn: redis.Redis, settings: Settings
) -> None:
    pytest.importorskip("tensorflow_recommenders")
    chosen = checking(settings)
    BulkLoader(redis_conn, chosen).load_events(generate(ALS_CONFIG).events, "synthetic")
    params = TwoTowerParams(dim=16, epochs=20, batch_size=128, lr=0.003, temperature=0.1)
    train_model(redis_conn, chosen, "two-tower", params)
    touch_users(redis_conn, chosen, ALS_CONFIG)

    steady = check_drift(redis_conn, chosen, "two-tower", k=K)
    assert steady.users == SAMPLE and steady.overlap is not None and steady.overlap >= 0.9
    assert steady.spearman is not None and steady.spearman >= 0.8 and not steady.drifted

    move_tastes(redis_conn, chosen, ALS_CONFIG)
    moved = check_drift(redis_conn, chosen, "two-tower", k=K)
    assert moved.overlap is not None and moved.overlap < 0.5 and moved.drifted
    assert ModelRegistry(redis_conn, chosen).active_version("two-tower") == 1  # not published
