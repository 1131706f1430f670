"""A model served through ScaNN: an item first seen after the index was built is recommended
and ``similar``-able at once (the indexes' exact deltas), and after a rebuild from ScaNN's
own build."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import redis
from click.testing import CliRunner

from streamrec.cli import cli
from streamrec.data.synthetic import generate
from streamrec.models.als import ImplicitALS
from streamrec.models.index import ScannIndex
from streamrec.models.index.stored import unit_rows
from streamrec.producer import Producer
from streamrec.serving.online import OnlineServing
from streamrec.serving.rebuild import rebuild_index
from streamrec.serving.served import ServedALS
from streamrec.serving.training import train_als
from streamrec.settings import Settings
from streamrec.state.bulk import BulkLoader
from streamrec.state.client import RecommendationClient
from streamrec.state.registry import ModelRegistry
from streamrec.state.vocab import Vocabulary
from tests.integration.helpers import ALS_CONFIG, ALS_PARAMS, drain

#: ScaNN even for the test's small catalogue.
PARAMS = replace(ALS_PARAMS, exact_below=1)


def listed(conn: redis.Redis, settings: Settings, user: str) -> list[str]:
    recs = RecommendationClient(settings, connection=conn).get(user)
    assert recs is not None and recs.personal, recs
    return [r.item for r in recs.items]


def anchor_of(model: ImplicitALS, item: int, candidates: list[int]) -> int:
    """The candidate among whose exact top-10 by cosine (no index) ``item`` ranks best."""
    unit = unit_rows(model.item_factors)
    scores = unit[candidates] @ unit.T
    scores[np.arange(len(candidates)), candidates] = -np.inf
    ranks = (scores > scores[:, [item]]).sum(axis=1)
    assert ranks.min() < 10, ranks  # the item is some candidate's exact neighbour
    return candidates[int(np.argmin(ranks))]


@pytest.mark.slow
def test_an_item_first_seen_after_the_build_is_recommended_and_similar_then_and_after_rebuild(
    redis_conn: redis.Redis, settings: Settings
) -> None:
    data = generate(ALS_CONFIG)
    BulkLoader(redis_conn, settings).load_events(data.events, "synthetic")
    train_als(redis_conn, settings, PARAMS)
    version, folder = ModelRegistry(redis_conn, settings).active_folder("als")
    assert (folder / "index" / "index.json").exists()  # published with its ScaNN index

    group = [item for item, g in data.item_group.items() if g == 1]
    fans = [f"fan-{n}" for n in range(6)]
    with Producer(settings, connection=redis_conn, linger=0) as producer:
        for fan in fans:  # the group's fans all play the new item, heavily
            for item in [*group[:6], "late-item"]:
                producer.send(fan, item, 9 if item == "late-item" else 2)
        for item in group[:6]:  # a newcomer of the same taste, who never played it
            producer.send("newcomer", item, 2)
    drain(redis_conn, settings)  # one worker: it folds the item in from the fans

    assert "late-item" in listed(redis_conn, settings, "newcomer")
    served = ServedALS(redis_conn, settings)
    model = served.current()
    assert model is not None and isinstance(model.index, ScannIndex)
    OnlineServing(redis_conn, settings, models=[served]).refresh(fans)  # as that worker did
    assert model.index.n_delta >= 1  # served from the exact delta, beside ScaNN's build
    assert "late-item" not in listed(redis_conn, settings, "fan-0")  # seen items never listed

    vocab = Vocabulary(redis_conn, "items")
    late = vocab.id_of("late-item")
    known = [vocab.id_of(item) for item in group]
    assert late is not None and None not in known
    group_ids = [i for i in known if i is not None]
    anchor = anchor_of(model, late, group_ids)
    similar = model.similar_index
    assert isinstance(similar, ScannIndex) and similar.n_delta >= 1
    assert not similar.in_build(np.array([late])).any()  # only the delta holds it
    assert late in model.similar_items(np.array([anchor]), 10)[0][0]
    near, _ = model.similar_items(np.array([late]), 10)
    assert late not in near[0] and sum(i in group_ids for i in near[0]) >= 6

    report = rebuild_index(redis_conn, settings, "als")

    assert report.version == version + 1 and report.items == report.items_before + 1
    rebuilt = ServedALS(redis_conn, settings).current()
    assert rebuilt is not None and isinstance(rebuilt.index, ScannIndex)
    assert rebuilt.index.n_delta == 0  # the new item is in ScaNN's own build now
    assert isinstance(rebuilt.similar_index, ScannIndex) and rebuilt.similar_index.n_delta == 0
    assert rebuilt.similar_index.in_build(np.array([late])).all()  # ScaNN's, no delta
    assert late in rebuilt.similar_items(np.array([anchor]), 10)[0][0]
    (anchor_name,) = vocab.externals([anchor])
    shown = CliRunner().invoke(cli, ["similar", str(anchor_name), "--model", "als", "--json"])
    assert shown.exit_code == 0, shown.output
    assert "late-item" in [r["item"] for r in json.loads(shown.stdout)]
    with Producer(settings, connection=redis_conn, linger=0) as producer:
        for item in group[:6]:  # served by a new worker, with no fan among its users
            producer.send("second-newcomer", item, 2)
    drain(redis_conn, settings)
    assert "late-item" in listed(redis_conn, settings, "second-newcomer")
