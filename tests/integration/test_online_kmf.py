"""KernelMF online on a real Redis: train from stored ratings, fold rating events in, cache."""

from __future__ import annotations

import json

import pytest
import redis
from click.testing import CliRunner

from streamrec import keys
from streamrec.cli import cli
from streamrec.data.synthetic import SyntheticConfig, generate
from streamrec.errors import NotFoundError
from streamrec.models.als import ALSParams
from streamrec.models.kernel_mf_params import KernelMFParams
from streamrec.producer import Producer
from streamrec.serving.training import train_als, train_kmf
from streamrec.settings import Settings
from streamrec.state.bulk import BulkLoader
from streamrec.state.client import RecommendationClient
from streamrec.worker.runner import run_worker
from tests.integration.helpers import drain

PARAMS = KernelMFParams(factors=8, epochs=40, lr=0.02, reg=0.02, update_epochs=40)
CONFIG = SyntheticConfig(
    n_users=150, n_items=120, n_groups=4, events_per_user=20, in_group=0.6, kind="rating"
)


@pytest.fixture
def trained(redis_conn: redis.Redis, settings: Settings) -> dict[str, int]:
    data = generate(CONFIG)
    BulkLoader(redis_conn, settings).load_events(data.events, "ratings")
    report = train_kmf(redis_conn, settings, PARAMS)
    assert report.model == "kmf" and report.version == 1
    assert report.refreshed == CONFIG.n_users  # every user rated something
    return data.item_group


def group_items(item_group: dict[str, int], group: int) -> list[str]:
    return sorted(item for item, g in item_group.items() if g == group)


def test_a_new_rater_gets_predicted_ratings_of_their_liked_group(
    redis_conn: redis.Redis, settings: Settings, trained: dict[str, int]
) -> None:
    loved, disliked = group_items(trained, 2)[:5], group_items(trained, 0)[:4]
    with Producer(settings, connection=redis_conn, linger=0) as producer:
        for item in loved:
            producer.send("rater", item, 5, kind="rating")
        for item in disliked:
            producer.send("rater", item, 1, kind="rating")
    drain(redis_conn, settings)
    entry = RecommendationClient(connection=redis_conn, model="kmf").get("rater", 10)
    assert entry is not None and entry.personal and entry.user == "rater" and entry.model == "kmf"
    assert entry.history_version == 9 and entry.version == 1
    items = [i.item for i in entry.items]
    assert len(items) == 10 and not set(items) & set(loved + disliked)
    assert sum(trained[i] == 2 for i in items) >= 7  # their taste, not the popular list
    scores = [i.score for i in entry.items]
    assert scores == sorted(scores, reverse=True)
    assert all(settings.rating_min <= s <= settings.rating_max for s in scores)
    reasons = {r for i in entry.items for r in i.because}
    assert reasons and reasons <= set(loved)  # only ratings above the mean explain
    out = CliRunner().invoke(
        cli, ["recommend", "rater", "--model", "kmf", "--json"], catch_exceptions=False
    )
    shown = json.loads(out.stdout)
    assert shown["model"] == "kmf" and shown["freshness"]["up_to_date"]


def test_plays_leave_the_rating_list_alone_and_a_rating_refreshes_it(
    redis_conn: redis.Redis, settings: Settings, trained: dict[str, int]
) -> None:
    user = generate(CONFIG).users()[0]
    before = RecommendationClient(connection=redis_conn, model="kmf").get(user, 20)
    assert before is not None and before.personal and before.user == user
    items = sorted(trained)
    with Producer(settings, connection=redis_conn, linger=0) as producer:
        producer.send(user, items[0], 1)  # a play: kmf does not learn from it
    drain(redis_conn, settings)
    after_play = RecommendationClient(connection=redis_conn, model="kmf").get(user, 20)
    assert after_play is not None
    assert after_play.history_version == before.history_version
    with Producer(settings, connection=redis_conn, linger=0) as producer:
        producer.send(user, items[1], 4, kind="rating")
    drain(redis_conn, settings)
    after_rating = RecommendationClient(connection=redis_conn, model="kmf").get(user, 20)
    version = int(redis_conn.get(keys.user_version_key(user)) or 0)
    assert after_rating is not None and after_rating.history_version == version
    assert items[1] not in [i.item for i in after_rating.items]


def test_an_item_first_rated_after_training_becomes_recommendable(
    redis_conn: redis.Redis, settings: Settings, trained: dict[str, int]
) -> None:
    fans = [f"fan-{n}" for n in range(8)]
    with Producer(settings, connection=redis_conn, linger=0, batch_size=100) as producer:
        for fan in fans:
            for item in group_items(trained, 1)[:6]:
                producer.send(fan, item, 5, kind="rating")
            for item in group_items(trained, 3)[:3]:
                producer.send(fan, item, 1, kind="rating")
            if fan != fans[-1]:
                producer.send(fan, "brand-new-film", 5, kind="rating")
    drain(redis_conn, settings)
    entry = RecommendationClient(connection=redis_conn, model="kmf").get(fans[-1], 10)
    assert entry is not None and "brand-new-film" in [i.item for i in entry.items]


def test_train_kmf_on_the_training_queue_and_from_the_cli(
    redis_conn: redis.Redis, settings: Settings, trained: dict[str, int]
) -> None:
    out = CliRunner().invoke(
        cli, ["train", "kmf", "--factors", "8", "--epochs", "5", "--queue"], catch_exceptions=False
    )
    assert "queued retrain job" in out.output
    run_worker(redis_conn, settings, [keys.TRAINING_QUEUE], burst=True)
    user = generate(CONFIG).users()[3]
    entry = RecommendationClient(connection=redis_conn, model="kmf").get(user)
    assert entry is not None and entry.version == 2
    out = CliRunner().invoke(cli, ["train", "kmf", "--epochs", "5"], catch_exceptions=False)
    assert "kmf version 3" in out.output


def test_kmf_without_ratings_says_what_it_needs(
    redis_conn: redis.Redis, settings: Settings
) -> None:
    BulkLoader(redis_conn, settings).load_events(generate(SyntheticConfig()).events, "plays")
    with pytest.raises(NotFoundError, match="no ratings are stored"):
        train_kmf(redis_conn, settings, PARAMS)
    out = CliRunner().invoke(cli, ["train", "kmf"])
    assert out.exit_code != 0 and "no ratings are stored" in out.output


def test_one_worker_serves_both_models_from_one_batch(
    redis_conn: redis.Redis, settings: Settings, trained: dict[str, int]
) -> None:
    train_als(redis_conn, settings, ALSParams(factors=8, iterations=5))
    items = group_items(trained, 3)
    with Producer(settings, connection=redis_conn, linger=0) as producer:
        producer.send("both", items[0], 5, kind="rating")
        producer.send("both", items[1], 2)  # a play
    drain(redis_conn, settings)
    als = RecommendationClient(connection=redis_conn, model="als").get("both")
    kmf = RecommendationClient(connection=redis_conn, model="kmf").get("both")
    assert als is not None and kmf is not None
    assert als.personal and kmf.personal and als.user == kmf.user == "both"
    assert als.history_version == kmf.history_version == 2
    for entry in (als, kmf):  # neither recommends what was played or rated
        assert not {i.item for i in entry.items} & set(items[:2])
