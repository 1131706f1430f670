"""The two-tower model's served form (numpy): queries, exact score shares, new items, files.

No TensorFlow here: the towers are random arrays, which is all the numpy side needs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from streamrec.errors import ConfigError
from streamrec.models.two_tower import (
    TwoTower,
    TwoTowerParams,
    feature_matrix,
    feature_vocabulary,
)

N_ITEMS, DIM = 30, 6


@pytest.fixture
def model() -> TwoTower:
    rng = np.random.default_rng(7)
    return TwoTower(
        TwoTowerParams(dim=DIM, pooling="log"),
        rng.normal(size=(N_ITEMS, DIM)),
        rng.normal(size=(DIM, DIM)),
        rng.normal(size=DIM),
        rng.normal(size=(N_ITEMS, DIM)),
    )


def rows(*histories: dict[int, float], width: int = N_ITEMS) -> sp.csr_matrix:
    data, indices, indptr = [], [], [0]
    for history in histories:
        indices += list(history)
        data += list(history.values())
        indptr.append(len(indices))
    return sp.csr_matrix((data, indices, indptr), shape=(len(histories), width), dtype=np.float32)


def test_a_query_is_the_weighted_mean_of_the_history_through_the_dense_layer(
    model: TwoTower,
) -> None:
    history = {3: 1.0, 8: 4.0, 20: 2.0}
    w = np.log1p(np.array(list(history.values())))
    pooled = (w[:, None] * model.history[list(history)]).sum(axis=0) / w.sum()
    expected = pooled @ model.projection + model.bias
    np.testing.assert_allclose(model.fold_in_users(rows(history))[0], expected, rtol=1e-5)


def test_binary_pooling_weighs_every_item_alike() -> None:
    rng = np.random.default_rng(1)
    x, e = rng.normal(size=(N_ITEMS, DIM)), rng.normal(size=(N_ITEMS, DIM))
    binary = TwoTower(TwoTowerParams(dim=DIM, pooling="binary"), x, np.eye(DIM), np.zeros(DIM), e)
    query = binary.fold_in_users(rows({1: 1.0, 2: 100.0}))[0]
    np.testing.assert_allclose(query, (x[1] + x[2]) / 2, rtol=1e-5)


def test_a_user_with_no_known_item_gets_no_query_and_no_list(model: TwoTower) -> None:
    queries = model.fold_in_users(rows({}, {N_ITEMS + 2: 3.0}, {4: 1.0}, width=N_ITEMS + 5))
    assert not queries[0].any() and not queries[1].any() and queries[2].any()
    ids, _ = model.recommend(queries, 5)
    assert (ids[:2] == -1).all() and (ids[2] >= 0).all()


def test_shares_and_the_bias_term_sum_to_the_score(model: TwoTower) -> None:
    history = rows({2: 5.0, 9: 1.0, 17: 3.0, 25: 2.0})
    query = model.fold_in_users(history)[0]
    for item in (0, 11, 29):
        shares = model.explain(history, item, n=10)
        assert sorted(i for i, _ in shares) == [2, 9, 17, 25]
        total = sum(s for _, s in shares) + float(model.bias @ model.item_vectors[item])
        assert total == pytest.approx(float(query @ model.item_vectors[item]), rel=1e-4)
        assert [s for _, s in shares] == sorted((s for _, s in shares), reverse=True)


def test_because_names_the_largest_shares_each_once(model: TwoTower) -> None:
    histories = rows({5: 1.0}, {2: 5.0, 9: 1.0, 17: 3.0})  # served together, padded
    queries = model.fold_in_users(histories)
    ids, _ = model.recommend(queries, 4, [np.array([5]), np.array([2, 9, 17])])
    because = model.because(histories, ids, n=3)
    assert because.shape == (2, 4, 3)
    assert because[0].tolist() == [[5, -1, -1]] * 4  # one history item, named once
    for slot, item in enumerate(ids[1]):
        strongest = [i for i, _ in model.explain(histories[1], int(item), n=3)]
        assert because[1, slot].tolist() == strongest


def test_recommend_never_returns_an_excluded_item(model: TwoTower) -> None:
    queries = model.fold_in_users(rows({1: 1.0, 2: 1.0}))
    excluded = np.arange(0, N_ITEMS, 2)
    ids, scores = model.recommend(queries, 10, [excluded])
    assert not set(ids[0].tolist()) & set(excluded.tolist())
    assert (np.diff(scores[0]) <= 0).all()


def test_a_new_item_folded_in_from_its_fans_is_recommended_to_users_like_them(
    model: TwoTower,
) -> None:
    fans = rows({0: 2.0, 1: 2.0, 2: 2.0}, {0: 1.0, 1: 3.0})
    queries = model.fold_in_users(fans)
    new_vector = model.fold_in_items(sp.csr_matrix(np.ones((1, 2))), queries)
    model.add_items(np.array([N_ITEMS]), new_vector)
    assert model.n_items == N_ITEMS + 1 and model.trained_items == N_ITEMS
    mean_norm = np.linalg.norm(model.item_vectors[:N_ITEMS], axis=1).mean()
    assert np.linalg.norm(new_vector) == pytest.approx(mean_norm, rel=1e-5)
    ids, _ = model.recommend(model.fold_in_users(rows({0: 2.0, 1: 2.0})), 3)
    assert N_ITEMS in ids[0]
    # the new item names no reason (its history embedding is zero until retrained)
    assert model.explain(rows({N_ITEMS: 1.0, 0: 1.0}, width=N_ITEMS + 1), 3, 5)[0][0] == 0


def test_similar_items_are_the_closest_by_cosine(model: TwoTower) -> None:
    e = model.item_vectors
    unit = e / np.linalg.norm(e, axis=1, keepdims=True)
    cosine = unit @ unit[4]
    cosine[4] = -np.inf
    ids, _ = model.similar_items(np.array([4]), 3)
    assert ids[0].tolist() == np.argsort(-cosine)[:3].tolist()


def test_save_and_load_give_the_same_lists(model: TwoTower, tmp_path: Path) -> None:
    model.add_items(np.array([N_ITEMS]), np.ones((1, DIM), dtype=np.float32))
    model.save(tmp_path / "v1")
    loaded = TwoTower.load(tmp_path / "v1")
    assert loaded.params == model.params and loaded.trained_items == N_ITEMS
    history = rows({3: 1.0, 7: 2.0}, width=N_ITEMS + 1)
    np.testing.assert_array_equal(loaded.fold_in_users(history), model.fold_in_users(history))
    np.testing.assert_array_equal(loaded.item_vectors, model.item_vectors)


@pytest.mark.parametrize(
    ("field", "value"),
    [("dim", 0), ("epochs", 0), ("batch_size", -1), ("lr", 0.0), ("temperature", -1.0),
     ("pooling", "max"), ("feature_min_count", 0)],
)  # fmt: skip
def test_params_name_the_bad_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"{field} .*{value!r}"):
        TwoTowerParams(**{field: value})  # type: ignore[arg-type]


FEATURES = (("tag:drama", "word:heat"), ("tag:drama",), (), ("tag:comedy", "word:heat", "x"))


def test_the_feature_vocabulary_keeps_what_enough_items_have() -> None:
    assert feature_vocabulary(FEATURES, 2) == ("tag:drama", "word:heat")
    assert feature_vocabulary(FEATURES, 1) == ("tag:comedy", "tag:drama", "word:heat", "x")
    assert feature_vocabulary((("a", "a"), ("b",)), 2) == ()  # an item counts once


def test_the_feature_matrix_averages_the_known_features_of_each_item() -> None:
    pooled = feature_matrix(FEATURES, ("tag:drama", "word:heat")).toarray()
    np.testing.assert_allclose(pooled, [[0.5, 0.5], [1, 0], [0, 0], [0, 1]])


def test_items_without_trained_vectors_get_them_from_their_features(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    t = rng.normal(size=(2, DIM)).astype(np.float32)
    model = TwoTower(
        TwoTowerParams(dim=DIM), rng.normal(size=(N_ITEMS, DIM)), np.eye(DIM), np.zeros(DIM),
        rng.normal(size=(N_ITEMS, DIM)), features=("tag:drama", "word:heat"),
        feature_embeddings=t,
    )  # fmt: skip
    vectors = model.feature_vectors([("word:heat", "tag:drama", "unknown"), ("unknown",)])
    np.testing.assert_allclose(vectors, [(t[0] + t[1]) / 2, np.zeros(DIM)], rtol=1e-6)
    model.add_items(np.array([N_ITEMS]), vectors[:1])
    model.save(tmp_path / "v1")
    loaded = TwoTower.load(tmp_path / "v1")
    assert loaded.features == model.features
    np.testing.assert_array_equal(loaded.feature_embeddings, t)
    np.testing.assert_array_equal(loaded.item_vectors, model.item_vectors)


def test_a_model_saved_before_item_features_loads_with_none(
    model: TwoTower, tmp_path: Path
) -> None:
    model.save(tmp_path / "old")
    with np.load(tmp_path / "old" / "model.npz") as a:
        kept = {name: a[name] for name in a.files if not name.startswith("feature")}
    np.savez(tmp_path / "old" / "model.npz", **kept)
    loaded = TwoTower.load(tmp_path / "old")
    assert loaded.features == () and loaded.feature_embeddings.shape == (0, DIM)
    assert not loaded.feature_vectors([("tag:drama",)]).any()
    np.testing.assert_array_equal(loaded.item_vectors, model.item_vectors)


def test_feature_embeddings_must_match_the_vocabulary() -> None:
    with pytest.raises(ValueError, match=r"feature_embeddings must be \(1, 6\)"):
        TwoTower(
            TwoTowerParams(dim=DIM), np.zeros((2, DIM)), np.eye(DIM), np.zeros(DIM),
            np.zeros((2, DIM)), features=("a",), feature_embeddings=np.zeros((2, DIM)),
        )  # fmt: skip
