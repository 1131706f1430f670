"""The two-tower model on a real Redis: trained by TensorFlow Recommenders in this process,
then served to a brand-new user by a worker process that never imports TensorFlow."""

from __future__ import annotations

import json

import numpy as np
import pytest
import redis
import scipy.sparse as sp
from click.testing import CliRunner

from streamrec.cli import cli
from streamrec.data.synthetic import generate
from streamrec.models import tf_runtime
from streamrec.models.two_tower import TwoTower, TwoTowerParams
from streamrec.producer import Producer
from streamrec.serving.training import train_model
from streamrec.settings import Settings
from streamrec.state.bulk import BulkLoader
from streamrec.state.client import RecommendationClient
from streamrec.state.registry import ModelRegistry
from tests.integration.helpers import ALS_CONFIG, drain_in_a_fresh_worker

pytestmark = pytest.mark.slow

PARAMS = TwoTowerParams(dim=16, epochs=20, batch_size=128, lr=0.003, temperature=0.1)


@pytest.fixture
def item_group(redis_conn: redis.Redis, settings: Settings) -> dict[str, int]:
    data = generate(ALS_CONFIG)
    BulkLoader(redis_conn, settings).load_events(data.events, "synthetic")
    report = train_model(redis_conn, settings, "two-tower", PARAMS)
    assert report.model == "two-tower" and report.version == 1
    assert report.refreshed == ALS_CONFIG.n_users
    return data.item_group


def test_trained_lists_follow_the_planted_tastes(
    redis_conn: redis.Redis, item_group: dict[str, int]
) -> None:
    data = generate(ALS_CONFIG)
    client = RecommendationClient(connection=redis_conn, model="two-tower")
    users = data.users()[:40]
    lists = client.get_many(users, 10)
    in_taste = 0
    for user in users:
        entry = lists[user]
        assert entry is not None and entry.personal and entry.model == "two-tower"
        played = {e.item for e in data.events if e.user == user}
        taste = max(range(4), key=lambda g: sum(item_group[i] == g for i in played))
        assert not {r.item for r in entry.items} & played
        assert all(set(r.because) <= played and len(set(r.because)) == len(r.because)
                   for r in entry.items)  # fmt: skip
        in_taste += sum(item_group[r.item] == taste for r in entry.items)
    assert in_taste >= 0.7 * 10 * len(users)  # chance would be a quarter


def test_a_new_user_is_served_by_a_worker_without_tensorflow(
    redis_conn: redis.Redis,
    settings: Settings,
    subprocess_env: dict[str, str],
    item_group: dict[str, int],
) -> None:
    played = sorted(i for i, g in item_group.items() if g == 2)[:5]
    with Producer(settings, connection=redis_conn, linger=0) as producer:
        for item in played:
            producer.send("newbie", item, 3)
    assert drain_in_a_fresh_worker(subprocess_env) == []  # no TensorFlow in the worker
    entry = RecommendationClient(connection=redis_conn, model="two-tower").get("newbie", 10)
    assert entry is not None and entry.personal and entry.history_version == 5
    items = [r.item for r in entry.items]
    assert len(items) == 10 and not set(items) & set(played)
    assert sum(item_group[i] == 2 for i in items) >= 7
    assert all(r.because and set(r.because) <= set(played) for r in entry.items)

    runner = CliRunner()
    shown = runner.invoke(cli, ["recommend", "newbie", "--model", "two-tower", "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["freshness"]["up_to_date"]
    similar = runner.invoke(cli, ["similar", played[0], "--model", "two-tower", "--json"])
    assert similar.exit_code == 0, similar.output
    near = [r["item"] for r in json.loads(similar.stdout)]
    assert played[0] not in near and sum(item_group[i] == 2 for i in near) >= 7
    why = runner.invoke(cli, ["explain", "newbie", items[0], "--model", "two-tower", "--json"])
    assert why.exit_code == 0, why.output
    assert {r["item"] for r in json.loads(why.stdout)} == set(played)


def test_the_published_version_holds_a_saved_model_that_ranks_as_the_numpy_one(
    redis_conn: redis.Redis, settings: Settings, item_group: dict[str, int]
) -> None:
    _, folder = ModelRegistry(redis_conn, settings).active_folder("two-tower")
    model = TwoTower.load(folder)
    tf = tf_runtime.tensorflow()
    saved = tf.saved_model.load(str(folder / "saved_model"))
    items = np.array([[3, 17, 40, -1], [5, -1, -1, -1]], dtype=np.int64)
    weights = np.array([[1, 2, 5, 0], [3, 0, 0, 0]], dtype=np.float32)
    found = saved.signatures["recommend"](items=tf.constant(items), weights=tf.constant(weights))
    rows = [{3: 1.0, 17: 2.0, 40: 5.0}, {5: 3.0}]
    for n, history in enumerate(rows):
        matrix = np.zeros((1, model.n_items), dtype=np.float32)
        matrix[0, list(history)] = list(history.values())
        query = model.fold_in_users(sp.csr_matrix(matrix))
        ids, scores = model.recommend(query, 10)
        assert found["items"].numpy()[n, :10].tolist() == ids[0].tolist()
        np.testing.assert_allclose(found["scores"].numpy()[n, :10], scores[0], rtol=1e-4)
