"""GMF re-ranking the two-tower's lists on a real Redis (``STREAMREC_RERANK=gmf``): both
trained with TensorFlow in this process, a rater served by a worker process that never
imports TensorFlow."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

from streamrec.data.synthetic import SyntheticConfig, generate
from streamrec.models.gmf_params import GMFParams
from streamrec.models.two_tower import TwoTowerParams
from streamrec.producer import Producer
from streamrec.serving.online import OnlineServing
from streamrec.serving.registry import spec
from streamrec.serving.training import train_model
from streamrec.settings import Settings
from streamrec.state.bulk import BulkLoader
from streamrec.state.client import RecommendationClient
from streamrec.state.matrices import MatrixReader
from tests.integration.helpers import drain_in_a_fresh_worker

pytestmark = pytest.mark.slow

CONFIG = SyntheticConfig(
    n_users=150, n_items=120, n_groups=4, events_per_user=20, in_group=0.6, kind="rating"
)
TWO_TOWER = TwoTowerParams(dim=16, epochs=20, batch_size=128, lr=0.003, temperature=0.1)
GMF = GMFParams(factors=8, epochs=60, batch_size=128, lr=0.01)


def served_items(conn: redis.Redis, settings: Settings, user: str) -> list[str]:
    """The two-tower list ``settings`` make of ``user``'s stored history, computed here."""
    models = [spec(name).served(conn, settings) for name in ("two-tower", "gmf")]
    online = OnlineServing(conn, settings, models=models)  # links them when rerank is set
    assert online.current()
    entries = online.served("two-tower").entries(MatrixReader(conn).rows([user]))
    return [item["item"] for item in json.loads(entries[0][1])["items"]]


def test_the_two_tower_list_is_reranked_once_gmf_is_trained(
    redis_conn: redis.Redis, settings: Settings, subprocess_env: dict[str, str]
) -> None:
    data = generate(CONFIG)
    BulkLoader(redis_conn, settings).load_events(data.events, "ratings")
    on = settings.with_(rerank="gmf")
    env = {**subprocess_env, "STREAMREC_RERANK": "gmf"}
    train_model(redis_conn, on, "two-tower", TWO_TOWER)
    group = data.item_group
    loved = sorted(i for i, g in group.items() if g == 2)[:5]
    disliked = sorted(i for i, g in group.items() if g == 0)[:5]
    client = RecommendationClient(connection=redis_conn, model="two-tower")

    def send(*ratings: tuple[str, float]) -> Any:
        with Producer(settings, connection=redis_conn, linger=0) as producer:
            for item, stars in ratings:
                producer.send("rater", item, stars, kind="rating")
        assert drain_in_a_fresh_worker(env) == []  # no TensorFlow in the worker
        entry = client.get("rater", 10)
        assert entry is not None and entry.personal and entry.model == "two-tower"
        assert entry.version == 1  # the two-tower's version, re-ranked or not
        return entry

    # GMF not trained yet: the two-tower's own order
    plain = send(*[(i, 5.0) for i in loved], *[(i, 1.0) for i in disliked])
    items = [r.item for r in plain.items]
    assert items == served_items(redis_conn, settings, "rater")[:10]

    # a GMF retrain refreshes the two-tower's lists too: re-ranked by predicted rating
    report = train_model(redis_conn, on, "gmf", GMF)
    assert report.refreshed == 2 * (CONFIG.n_users + 1)  # gmf and two-tower lists
    reranked = client.get("rater", 10)
    assert reranked is not None and reranked.version == 1 and reranked.history_version == 10
    ranked = [r.item for r in reranked.items]
    assert ranked == served_items(redis_conn, on, "rater")[:10] and ranked != items
    assert sum(group[i] == 2 for i in ranked) > sum(group[i] == 2 for i in items)
    # the loved group climbs to the top (the two-tower had other groups there too)
    assert all(group[i] == 2 for i in ranked[:5]) and not all(group[i] == 2 for i in items[:5])

    # the next rating: a worker without TensorFlow re-ranks the list it serves
    extra = sorted(i for i, g in group.items() if g == 2)[5]
    later = send((extra, 5.0))
    assert later.history_version == 11
    served = [r.item for r in later.items]
    assert served == served_items(redis_conn, on, "rater")[:10]
    assert sum(group[i] == 2 for i in served) >= 7
    scores = [r.score for r in later.items]
    assert scores == sorted(scores, reverse=True)  # predicted rating less 0.25 per place
    history = {*loved, *disliked, extra}
    assert all(r.because and set(r.because) <= history for r in later.items)  # the two-tower's
