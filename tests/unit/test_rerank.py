"""GMF re-ranking the two-tower's candidates: the numpy stage, its served form and its
offline protocol, on planted models (no Redis, no TensorFlow)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
import scipy.sparse as sp
from click.testing import CliRunner

from streamrec.cli.context import AppContext
from streamrec.cli.evaluate import evaluate
from streamrec.data.interactions import Interactions
from streamrec.models.gmf import GMF
from streamrec.models.gmf_params import GMFParams
from streamrec.models.rerank import rerank, rerank_by_gmf, rerank_order
from streamrec.models.rerank_experiments import (
    evaluate_gmf_rerank_new_users,
    evaluate_gmf_rerank_random,
)
from streamrec.models.two_tower import TwoTower, TwoTowerParams
from streamrec.serving.registry import REGISTRY
from streamrec.serving.reranking import link_rerankers, reranked_by
from streamrec.serving.served import ServedALS, ServedGMF, ServedTwoTower
from streamrec.settings import RERANKERS, Settings

#: A client that never connects: served models handed a model are ranked without Redis.
NOWHERE = redis.Redis(unix_socket_path="/nonexistent")


def planted_gmf(n_items: int = 6) -> GMF:
    """One factor, ``h = 1``: a user vector ``[p, b]`` rates item ``i`` at
    ``3 + b + p · q_i`` (item biases 0), clipped to 0.5–5."""
    q = np.linspace(-1.0, 1.0, n_items)[:, None]  # item 0 the most disliked by p > 0
    return GMF.from_arrays(
        GMFParams(factors=1), 3.0, np.zeros(2), np.zeros(n_items), np.zeros((2, 1)), q, [1.0]
    )


def test_discount_trades_places_for_predicted_stars() -> None:
    ids = np.array([[10, 11, 12, 13, -1]])
    ratings = np.array([[1.0, 5.0, 3.0, 5.0, np.nan]])
    by_rating, _ = rerank_order(ids, ratings, 0.0)
    assert ids[0, by_rating[0]].tolist() == [11, 13, 12, 10, -1]  # ties: the retrieval order
    # scores 1 − 0, 5 − 1, 3 − 2, 5 − 3: place 0 and place 2 tie at 1, place 0 first
    order, scores = rerank_order(ids, ratings, 1.0)
    assert ids[0, order[0]].tolist() == [11, 13, 10, 12, -1]
    assert scores[0].tolist() == [4.0, 2.0, 1.0, 1.0, -np.inf]
    kept, _ = rerank_order(ids, ratings, 100.0)
    assert kept[0].tolist() == [0, 1, 2, 3, 4]


def test_rows_that_are_not_personal_keep_order_and_scores() -> None:
    ids = np.array([[1, 2, 3], [4, 5, 6]])
    scores = np.array([[0.9, 0.8, 0.7], [0.6, 0.5, 0.4]], dtype=np.float32)
    ratings = np.array([[1.0, 2.0, 4.0], [1.0, 2.0, 4.0]])
    top, top_scores = rerank(ids, scores, ratings, np.array([True, False]), 2, 0.0)
    assert top.tolist() == [[3, 2], [4, 5]]
    np.testing.assert_allclose(top_scores, [[4.0, 2.0], [0.6, 0.5]])
    assert top.dtype == np.int64 and top_scores.dtype == np.float32


def test_gmf_rates_folded_in_users_as_it_predicts_stored_ones() -> None:
    rng = np.random.default_rng(3)
    model = GMF.from_arrays(
        GMFParams(factors=3), 3.5, rng.normal(size=4), rng.normal(size=5),
        rng.normal(size=(4, 3)), rng.normal(size=(5, 3)), np.array([0.6, 0.8, 0.0]),
    )  # fmt: skip
    users = np.hstack([model.user_factors, model.user_bias[:, None]])
    items = np.array([[0, 1, 4], [2, 3, 0], [4, 4, 1], [3, 2, 1]])
    expected = model.predict(np.repeat(np.arange(4), 3), items.ravel()).reshape(4, 3)
    np.testing.assert_allclose(model.rate(users, items), expected)
    # an item the model does not hold is rated μ + b_u; padding is NaN
    rated = model.rate(users[:1], np.array([[7, -1]]))
    assert rated[0, 0] == pytest.approx(np.clip(3.5 + model.user_bias[0], 0.5, 5.0))
    assert np.isnan(rated[0, 1])


def test_planted_tastes_reorder_the_candidates() -> None:
    model = planted_gmf()
    ids = np.array([[0, 1, 2, 3, 4, 5]] * 3)  # the retrieval order: item 0 first
    scores = np.tile(np.linspace(1.0, 0.5, 6, dtype=np.float32), (3, 1))
    vectors = np.array([[2.0, 0.0], [-2.0, 0.0], [0.0, 0.0]])  # likes high q, low q, unknown
    top, top_scores = rerank_by_gmf(ids, scores, model, vectors, 3, 0.0)
    assert top.tolist() == [[5, 4, 3], [0, 1, 2], [0, 1, 2]]
    np.testing.assert_allclose(top_scores[[0, 2]], [[5.0, 4.2, 3.4], [1.0, 0.9, 0.8]], rtol=1e-6)
    # a large discount keeps the retrieval order: GMF only breaks near-ties
    kept, _ = rerank_by_gmf(ids, scores, model, vectors, 3, 10.0)
    assert kept.tolist() == [[0, 1, 2]] * 3


def served_pair(settings: Settings) -> tuple[ServedTwoTower, ServedGMF, TwoTower]:
    """A served two-tower over 6 items whose query prefers low ids, and a served GMF."""
    dim = 2
    items = np.column_stack([np.linspace(1.0, 0.5, 6), np.zeros(6)]).astype(np.float32)
    tower = TwoTower(TwoTowerParams(dim=dim), np.ones((6, dim)), np.eye(dim), np.zeros(dim), items)
    two_tower, gmf = ServedTwoTower(NOWHERE, settings), ServedGMF(NOWHERE, settings)
    two_tower.serve(tower, 1)
    gmf.serve(planted_gmf(), 4)
    return two_tower, gmf, tower


def test_the_served_two_tower_is_reranked_only_with_a_gmf_version_and_ratings() -> None:
    settings = Settings(top_k=3, rerank="gmf", rerank_candidates=5, rerank_discount=0.1)
    two_tower, gmf, tower = served_pair(settings)
    # user 0 rated item 0 (GMF's lowest q) 1 star and item 5 (its highest) 5: likes high q
    played = sp.csr_matrix(np.array([[1, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 1]], dtype=np.float32))
    ratings = sp.csr_matrix(np.array([[1, 0, 0, 0, 0, 5], [0, 0, 0, 0, 0, 0]], dtype=np.float32))
    seen = [np.array([0, 5]), np.array([5])]
    plain, _, _ = two_tower.rank(played, seen, ratings)
    assert plain.tolist() == [[1, 2, 3], [0, 1, 2]]  # no stage linked: the two-tower's order

    two_tower.rerank_with(gmf, sync=False)
    ids, scores, because = two_tower.rank(played, seen, ratings)
    assert gmf.model is not None
    vectors = gmf.model.fold_in_users(ratings)
    candidates, candidate_scores = tower.recommend(tower.fold_in_users(played), 5, seen)
    expected, expected_scores = rerank_by_gmf(
        candidates, candidate_scores, planted_gmf(), vectors, 3, 0.1
    )
    assert ids.tolist() == expected.tolist() and ids[0].tolist() == [4, 3, 2]
    assert ids[1].tolist() == plain[1].tolist()  # no rating: the two-tower's order
    np.testing.assert_allclose(scores, expected_scores)
    np.testing.assert_array_equal(because, tower.because(played, ids, 2))

    gmf.model = None  # GMF not trained: the two-tower's own order
    assert two_tower.rank(played, seen, ratings)[0].tolist() == plain.tolist()


def test_link_shares_a_served_gmf_or_brings_its_own() -> None:
    on = Settings(rerank="gmf")
    two_tower, gmf = ServedTwoTower(NOWHERE, on), ServedGMF(NOWHERE, on)
    link_rerankers([ServedALS(NOWHERE, on), two_tower, gmf], NOWHERE, on)
    assert two_tower.reranker is gmf and not two_tower._sync_reranker
    alone = ServedTwoTower(NOWHERE, on)
    link_rerankers([alone], NOWHERE, on)  # a two-tower retrain: GMF reloads itself
    assert isinstance(alone.reranker, ServedGMF) and alone._sync_reranker
    off = ServedTwoTower(NOWHERE, Settings())
    link_rerankers([off, ServedGMF(NOWHERE, Settings())], NOWHERE, Settings())
    assert off.reranker is None
    assert [m.name for m in reranked_by("gmf", NOWHERE, on)] == ["two-tower"]
    assert reranked_by("gmf", NOWHERE, Settings()) == reranked_by("als", NOWHERE, on) == []


def test_the_settings_know_the_registrys_rerankers() -> None:
    assert {name for name, m in REGISTRY.items() if m.reranks} == set(RERANKERS)
    for name in RERANKERS:
        assert REGISTRY[name].reranks in REGISTRY
        assert set(REGISTRY[name].rerank_protocols) == set(REGISTRY[name].protocols)


def planted_data(n_users: int = 60, n_items: int = 40) -> Interactions:
    """Ratings of two taste groups: 5 for the own group's items, 1 for the other's."""
    rng = np.random.default_rng(7)
    users, items, ratings = [], [], []
    for u in range(n_users):
        for i in rng.choice(n_items, 12, replace=False):
            users.append(u)
            items.append(i)
            ratings.append(5.0 if i % 2 == u % 2 else 1.0)
    n = len(users)
    stamps = np.arange(n, dtype=np.float64)
    return Interactions(users, items, ratings, stamps, n_users=n_users, n_items=n_items)


def stand_ins() -> dict[str, Any]:
    """Trainers without TensorFlow: a two-tower that ranks items by id parity noise, and a
    GMF whose planted factor is the item's parity (users' vectors come from fold-in)."""

    def trainer(train: sp.csr_matrix, params: TwoTowerParams, *_: Any) -> TwoTower:
        rng = np.random.default_rng(params.seed)
        n, dim = train.shape[1], 4
        return TwoTower(
            params, rng.normal(size=(n, dim)), np.eye(dim), np.zeros(dim), rng.normal(size=(n, dim))
        )

    def gmf_trainer(ratings: sp.csr_matrix, params: GMFParams) -> GMF:
        n_users, n_items = ratings.shape
        q = np.where(np.arange(n_items) % 2 == 0, 1.0, -1.0)[:, None] * np.ones((1, params.factors))
        h = np.ones(params.factors) / np.sqrt(params.factors)
        return GMF.from_arrays(
            params, 3.0, np.zeros(n_users), np.zeros(n_items),
            np.zeros((n_users, params.factors)), q, h,
        )  # fmt: skip

    return {"trainer": trainer, "gmf_trainer": gmf_trainer}


@pytest.mark.parametrize("protocol", ["random", "new-users"])
def test_the_protocols_add_a_reranked_row_on_the_same_split(protocol: str) -> None:
    data = planted_data()
    evaluate = {"random": evaluate_gmf_rerank_random, "new-users": evaluate_gmf_rerank_new_users}
    rows = {"random": ("two_tower", "gmf_rerank"), "new-users": ("fold_in", "fold_in_gmf_rerank")}
    base, reranked = rows[protocol]
    params, gmf_params = TwoTowerParams(dim=4), GMFParams(factors=2)

    def run(discount: float) -> dict[str, Any]:
        return evaluate[protocol](data, data, params, gmf_params, 5, 3, 20, discount, **stand_ins())

    kept = run(1e6)  # a huge discount keeps the two-tower's order
    assert kept["rows"][:2] == [base, reranked]
    for name in ("precision", "recall", "ndcg", "map", "top_1", "top_10", "liked_ndcg"):
        assert kept[reranked][name] == pytest.approx(kept[base][name]), name
    assert kept["rerank"]["discount"] == 1e6 and kept["rerank_ndcg_ratio"] == pytest.approx(1.0)

    tastes = run(0.0)  # by predicted rating: the planted GMF knows each user's group
    assert {**tastes[base], "fit_seconds": 0} == {**kept[base], "fit_seconds": 0}  # same split
    assert tastes[reranked]["liked_precision"] > 1.5 * tastes[base]["liked_precision"]
    assert tastes[reranked]["top_50"] == pytest.approx(tastes[base]["top_50"])  # 40 items


def test_evaluate_rerank_prints_both_rows_and_refuses_other_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = planted_data()
    lines = [
        f"u{u},i{i},{w:g},rating,{t}"
        for u, i, w, t in zip(data.users, data.items, data.weights, data.timestamps, strict=True)
    ]
    path = tmp_path / "ratings.csv"
    path.write_text("user,item,weight,kind,timestamp\n" + "\n".join(lines) + "\n")
    protocols = REGISTRY["gmf"].rerank_protocols
    monkeypatch.setitem(
        protocols, "random", functools.partial(evaluate_gmf_rerank_random, **stand_ins())
    )
    options = ["--model", "two-tower", "--data", str(path), "--format", "csv", "--rerank", "gmf"]
    app = AppContext(Settings(rerank_discount=0.0, rerank_candidates=30))
    shown = CliRunner().invoke(evaluate, options, obj=app, env={"COLUMNS": "250"})
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.stdout.split())
    assert "gmf_rerank" in text and "liked NDCG@10" in text and "MAP@10" in text
    assert "NDCG ratio gmf re-rank / two-tower:" in text and "30 candidates, discount 0" in text
    report = json.loads(CliRunner().invoke(evaluate, [*options, "--json"], obj=app).stdout)
    assert report["rows"] == ["two_tower", "gmf_rerank", "popularity"]
    assert report["rerank"]["candidates"] == 30

    refused = CliRunner().invoke(evaluate, ["--model", "als", *options[2:]], obj=app)
    assert refused.exit_code == 7 and "--rerank gmf re-ranks --model two-tower" in refused.output
