"""GMF on a real Redis: trained with TensorFlow in this process, then a brand-new rater is
folded in (an exact ridge solve) by a worker process that never imports TensorFlow."""

from __future__ import annotations

import json

import pytest
import redis
from click.testing import CliRunner

from streamrec.cli import cli
from streamrec.data.synthetic import SyntheticConfig, generate
from streamrec.models.gmf_params import GMFParams
from streamrec.producer import Producer
from streamrec.serving.training import train_model
from streamrec.settings import Settings
from streamrec.state.bulk import BulkLoader
from streamrec.state.client import RecommendationClient
from tests.integration.helpers import drain_in_a_fresh_worker

pytestmark = pytest.mark.slow

CONFIG = SyntheticConfig(
    n_users=150, n_items=120, n_groups=4, events_per_user=20, in_group=0.6, kind="rating"
)
PARAMS = GMFParams(factors=8, epochs=60, batch_size=128, lr=0.01)


@pytest.fixture
def item_group(redis_conn: redis.Redis, settings: Settings) -> dict[str, int]:
    data = generate(CONFIG)
    BulkLoader(redis_conn, settings).load_events(data.events, "ratings")
    report = train_model(redis_conn, settings, "gmf", PARAMS)
    assert report.model == "gmf" and report.version == 1
    assert report.refreshed == CONFIG.n_users
    return data.item_group


def test_a_new_rater_gets_a_gmf_list_from_a_worker_without_tensorflow(
    redis_conn: redis.Redis,
    settings: Settings,
    subprocess_env: dict[str, str],
    item_group: dict[str, int],
) -> None:
    loved = sorted(i for i, g in item_group.items() if g == 2)[:5]
    disliked = sorted(i for i, g in item_group.items() if g == 0)[:4]
    with Producer(settings, connection=redis_conn, linger=0) as producer:
        for item in loved:
            producer.send("rater", item, 5, kind="rating")
        for item in disliked:
            producer.send("rater", item, 1, kind="rating")
    assert drain_in_a_fresh_worker(subprocess_env) == []  # no TensorFlow in the worker
    entry = RecommendationClient(connection=redis_conn, model="gmf").get("rater", 10)
    assert entry is not None and entry.personal and entry.model == "gmf"
    assert entry.history_version == 9 and entry.version == 1
    items = [r.item for r in entry.items]
    assert len(items) == 10 and not set(items) & set(loved + disliked)
    assert sum(item_group[i] == 2 for i in items) >= 7
    scores = [r.score for r in entry.items]
    assert scores == sorted(scores, reverse=True)
    assert all(settings.rating_min <= s <= settings.rating_max for s in scores)
    reasons = {r for i in entry.items for r in i.because}
    assert reasons and reasons <= set(loved)  # only ratings above the mean explain
    shown = CliRunner().invoke(cli, ["recommend", "rater", "--model", "gmf", "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["freshness"]["up_to_date"]


def test_gmf_without_ratings_says_what_it_needs(redis_conn: redis.Redis) -> None:
    result = CliRunner().invoke(cli, ["train", "gmf"])
    assert result.exit_code == 4
    assert "no ratings are stored: gmf learns from 'rating' events" in result.output
