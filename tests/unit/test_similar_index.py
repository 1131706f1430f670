"""``similar`` through an index (ALS and two-tower, whose ``similar`` is a cosine): the
models keep a second index over their unit item vectors, as the top-k one: ScaNN when asked
(``exact_below``), its recall held against the exact index (the oracle), saved and loaded
with the model, new items in its exact delta until :meth:`rebuild_index`.

Planted data: item vectors around Gaussian cluster centres with log-normal norms (cosine
ignores the norms, inner product would not).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamrec.models.als import ALSParams, ImplicitALS
from streamrec.models.index import ExactIndex, ScannIndex
from streamrec.models.index.stored import SIMILAR, unit_rows
from streamrec.models.two_tower import TwoTower, TwoTowerParams

K = 10
#: Enough items for ScaNN's tree (``TREE_BELOW``), few enough for a quick build.
N_ITEMS, DIM, CLUSTERS = 20_000, 32, 200


def clustered(n: int, dim: int, clusters: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)) / np.sqrt(dim)
    items = centres[rng.integers(0, clusters, n)] + 0.5 * rng.normal(size=(n, dim)) / np.sqrt(dim)
    return (items * rng.lognormal(0.0, 0.25, (n, 1))).astype(np.float32)


def als(items: np.ndarray, exact_below: int, folder: Path) -> ImplicitALS:
    """An ALS model with these item factors, through :meth:`ImplicitALS.load` (as a worker
    gets one; training one over 20,000 items would take the test's whole budget)."""
    folder.mkdir(parents=True)
    users = np.zeros((1, items.shape[1]), dtype=np.float32)
    np.savez(folder / "model.npz", item_factors=items, user_factors=users)
    params = ALSParams(factors=items.shape[1], num_threads=1, exact_below=exact_below)
    (folder / "params.json").write_text(json.dumps(asdict(params)))
    return ImplicitALS.load(folder)


def two_tower(items: np.ndarray, exact_below: int, folder: Path) -> TwoTower:
    dim = items.shape[1]
    params = TwoTowerParams(dim=dim, exact_below=exact_below)
    history = np.random.default_rng(5).normal(size=items.shape).astype(np.float32)
    return TwoTower(params, history, np.eye(dim), np.zeros(dim), items)


MODELS: dict[str, Callable[[np.ndarray, int, Path], Any]] = {"als": als, "two-tower": two_tower}


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return sum(len(set(a) & set(b)) for a, b in zip(found, truth, strict=True)) / truth.size


def cosine_top(items: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    """The exact top-``k`` by cosine, the query item excluded (brute force, no index)."""
    unit = unit_rows(items)
    scores = unit[ids] @ unit.T
    scores[np.arange(len(ids)), ids] = -np.inf
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


@pytest.fixture(scope="module")
def items() -> np.ndarray:
    return clustered(N_ITEMS, DIM, CLUSTERS)


@pytest.mark.parametrize("name", MODELS)
def test_scann_similar_recalls_the_exact_indexs_neighbours(
    name: str, items: np.ndarray, tmp_path: Path
) -> None:
    scann = MODELS[name](items, 1, tmp_path / "scann")
    exact = MODELS[name](items, 10**9, tmp_path / "exact")
    assert isinstance(scann.similar_index, ScannIndex) and scann.similar_index.params.num_leaves
    assert isinstance(exact.similar_index, ExactIndex)
    queries = np.random.default_rng(1).choice(N_ITEMS, 500, replace=False)

    found, scores = scann.similar_items(queries, K)
    truth, truth_scores = exact.similar_items(queries, K)

    np.testing.assert_array_equal(truth, cosine_top(items, queries, K))  # the oracle is right
    assert recall(found, truth) >= 0.95
    assert not (found == queries[:, None]).any() and not (truth == queries[:, None]).any()
    assert found.shape == scores.shape == (len(queries), K) and (found >= 0).all()
    assert np.all(np.diff(scores, axis=1) <= 1e-6) and np.all(scores <= 1 + 1e-5)
    # scores are the exact cosines of the items returned
    cosines = np.sum(unit_rows(items)[found] * unit_rows(items)[queries][:, None], axis=2)
    np.testing.assert_allclose(scores, cosines, atol=1e-5)
    np.testing.assert_allclose(truth_scores[:, 0], scores[:, 0], atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_a_new_item_is_similar_at_once_and_from_scann_after_the_rebuild(
    name: str, tmp_path: Path
) -> None:
    items = clustered(300, 8, 6, seed=2)
    model = MODELS[name](items, 1, tmp_path / "m")
    assert isinstance(model.similar_index, ScannIndex)
    twin = 17  # the new item points the way item 17 does, twice as long
    model.add_items(np.array([len(items)]), 2 * items[twin : twin + 1])

    assert model.similar_index.n_delta == 1  # searched exactly until the rebuild
    ids, scores = model.similar_items(np.array([twin, len(items)]), 3)
    assert ids[0, 0] == len(items) and ids[1, 0] == twin
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)

    model.rebuild_index()

    assert isinstance(model.similar_index, ScannIndex) and model.similar_index.n_delta == 0
    assert model.similar_index.n_items == len(items) + 1
    rebuilt_ids, _ = model.similar_items(np.array([twin, len(items)]), 3)
    assert rebuilt_ids[0, 0] == len(items) and rebuilt_ids[1, 0] == twin


@pytest.mark.parametrize("name", MODELS)
def test_the_similar_index_is_saved_and_loaded_with_the_model(name: str, tmp_path: Path) -> None:
    items = clustered(300, 8, 6, seed=3)
    model = MODELS[name](items, 1, tmp_path / "m")
    model.add_items(np.array([len(items)]), items[:1] * 3)  # a delta, saved too
    queries = np.arange(0, len(items) + 1, 7)
    expected = model.similar_items(queries, K)

    model.save(tmp_path / "saved")
    assert (tmp_path / "saved" / SIMILAR / "index.json").exists()
    loaded = type(model).load(tmp_path / "saved")

    assert isinstance(loaded.similar_index, ScannIndex) and loaded.similar_index.n_delta == 1
    for got, want in zip(loaded.similar_items(queries, K), expected, strict=True):
        np.testing.assert_array_equal(got, want)
    # a version published before models had a similar index: built at load instead
    shutil.rmtree(tmp_path / "saved" / SIMILAR)
    older = type(model).load(tmp_path / "saved")
    assert isinstance(older.similar_index, ScannIndex)
    assert recall(older.similar_items(queries, K)[0], expected[0]) >= 0.95


@pytest.mark.parametrize("name", MODELS)
def test_small_catalogues_keep_an_exact_similar_index(name: str, tmp_path: Path) -> None:
    items = clustered(300, 8, 6, seed=4)
    model = MODELS[name](items, 50_000, tmp_path / "m")
    assert isinstance(model.similar_index, ExactIndex)
    queries = np.arange(0, len(items), 11)
    np.testing.assert_array_equal(model.similar_items(queries, K)[0], cosine_top(items, queries, K))
    model.save(tmp_path / "saved")
    assert not (tmp_path / "saved" / SIMILAR).exists()
