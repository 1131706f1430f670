"""Every model keeps its items in build_index's index: a ScaNN one when asked
(``exact_below``), saved with the model and loaded back, new items in its exact delta
until :meth:`rebuild_index`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from streamrec.models.als import ALSParams, ImplicitALS
from streamrec.models.gmf import GMF, GMFParams
from streamrec.models.index import ExactIndex, ScannIndex
from streamrec.models.kernel_mf import KernelMF, KernelMFParams
from streamrec.models.two_tower import TwoTower, TwoTowerParams

N_USERS, N_ITEMS, F = 60, 150, 8


def ratings(seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = np.where(
        rng.random((N_USERS, N_ITEMS)) < 0.2, rng.integers(1, 6, (N_USERS, N_ITEMS)), 0
    )
    return sp.csr_matrix(dense.astype(np.float64))


def als(exact_below: int) -> tuple[Any, int]:
    params = ALSParams(factors=F, iterations=3, num_threads=1, exact_below=exact_below)
    return ImplicitALS(params).fit(ratings()), F


def kmf(exact_below: int) -> tuple[Any, int]:
    return KernelMF(KernelMFParams(factors=F, epochs=3, exact_below=exact_below)).fit(
        ratings()
    ), F + 1


def gmf(exact_below: int) -> tuple[Any, int]:
    rng = np.random.default_rng(1)
    arrays = (
        rng.normal(0, 0.1, N_USERS),
        rng.normal(0, 0.1, N_ITEMS),
        rng.normal(0, 0.3, (N_USERS, F)),
        rng.normal(0, 0.3, (N_ITEMS, F)),
        np.ones(F) / np.sqrt(F),
    )
    return GMF.from_arrays(GMFParams(factors=F, exact_below=exact_below), 3.5, *arrays), F + 1


def two_tower(exact_below: int) -> tuple[Any, int]:
    rng = np.random.default_rng(2)
    params = TwoTowerParams(dim=F, exact_below=exact_below)
    history, items = rng.normal(size=(N_ITEMS, F)), rng.normal(size=(N_ITEMS, F))
    return TwoTower(params, history, np.eye(F), np.zeros(F), items), F


MODELS: dict[str, Callable[[int], tuple[Any, int]]] = {
    "als": als,
    "kmf": kmf,
    "gmf": gmf,
    "two-tower": two_tower,
}


@pytest.mark.parametrize("name", MODELS)
def test_a_model_saves_and_loads_its_scann_index(name: str, tmp_path: Path) -> None:
    model, _ = MODELS[name](1)
    assert isinstance(model.index, ScannIndex)
    queries = np.random.default_rng(3).normal(size=(5, model.index.vectors.shape[1]))
    expected = model.index.search(queries, 10)

    model.save(tmp_path)
    loaded = type(model).load(tmp_path)

    assert isinstance(loaded.index, ScannIndex)
    for got, want in zip(loaded.index.search(queries, 10), expected, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", MODELS)
def test_a_new_item_waits_in_the_delta_until_the_rebuild(name: str) -> None:
    model, width = MODELS[name](1)
    vector = np.full((1, width), 3.0, dtype=np.float32)  # scores above every trained item
    model.add_items(np.array([N_ITEMS]), vector)
    assert model.index.n_delta == 1 and model.n_items == N_ITEMS + 1
    query = np.ones((1, model.index.vectors.shape[1]), dtype=np.float32)
    assert model.index.search(query, 1)[0][0, 0] == N_ITEMS

    model.rebuild_index()

    assert isinstance(model.index, ScannIndex) and model.index.n_delta == 0
    assert model.index.search(query, 1)[0][0, 0] == N_ITEMS


@pytest.mark.parametrize("name", MODELS)
def test_small_catalogues_keep_the_exact_index(name: str, tmp_path: Path) -> None:
    model, _ = MODELS[name](50_000)
    assert isinstance(model.index, ExactIndex)
    model.save(tmp_path)
    assert not (tmp_path / "index").exists()
    assert isinstance(type(model).load(tmp_path).index, ExactIndex)
