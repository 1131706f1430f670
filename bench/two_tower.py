"""streamrec's two-tower model beside the TFRS tutorials' models, ALS, KernelMF and GMF.

    OPENBLAS_NUM_THREADS=1 python bench/two_tower.py [--data …/ml-100k] [--seed 42] [--epochs 5]

One ``random_split(data, 0.2, seed)`` of MovieLens 100K for every row, trained in this
process one after the other:

* ``quickstart`` and ``basic-retrieval``: the TFRS tutorials' models (user-id and item-id
  towers, their optimizers and batch sizes) at ``--epochs`` and at the tutorials' 3;
* ``two-tower``: streamrec's (history-pooling user tower, logQ correction; item tower from
  the item id and the item's genres and title words, read from ``u.item`` and ``u.genre``)
  at ``--epochs``, and ``two-tower, ids only``: the same without item features;
* ``popularity``; ``als`` (streamrec's defaults); ``kmf`` and ``gmf`` (rating models: items
  ranked by predicted rating).

Every row: TFRS's ``FactorizedTopK`` protocol (held-out pair's item in the user's top-k over
all 1,682 items, nothing filtered; k = 1, 5, 10, 50, 100), P@10 and NDCG@10 with the
user's train items filtered, and training seconds (TensorFlow's import excluded). Then the
new-users protocol of the two-tower model (queries pooled without retraining against a
model trained with those users). The last line sums up the issue's targets.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from streamrec.data.importers import open_source
from streamrec.data.interactions import read_interactions
from streamrec.data.splits import random_split
from streamrec.models import tf_runtime
from streamrec.models.als import ImplicitALS
from streamrec.models.retrieval_experiments import (
    evaluate_two_tower_new_users,
    retrieval_scores,
)
from streamrec.settings import Settings

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # Keras 2 for TFRS, before TensorFlow
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

    loaded = read_interactions(open_source(args.data, "movielens-100k"), Settings())
    split = random_split(loaded.data, 0.2, args.seed)
    train, test = split.train.to_csr(), split.test.to_csr()
    users = np.arange(train.shape[0])
    tf_runtime.recommenders()  # imported once, before any clock starts
    print(f"{args.data}: {train.nnz:,} train / {test.nnz:,} test interactions, seed {args.seed}")
    described = sum(bool(f) for f in loaded.data.item_features or ())
    print(f"item features (genres, title words): {described:,} of {train.shape[1]:,} items")

    rows: dict[str, dict[str, Any]] = {}

    def row(name: str, queries: np.ndarray, items: np.ndarray, seconds: float) -> None:
        rows[name] = retrieval_scores(queries, items, train, test, users, 10)
        rows[name]["fit_seconds"] = seconds
        print(_line(name, rows[name]), flush=True)

    print(_header())
    from streamrec.models.tfrs_tutorials import fit_tutorial

    for recipe in ("quickstart", "basic-retrieval"):
        for epochs in sorted({3, args.epochs}):
            m = fit_tutorial(train, recipe, epochs=epochs, seed=args.seed)
            row(f"{recipe} ({epochs} ep)", m.user_vectors, m.item_vectors, m.fit_seconds)

    from streamrec.models.two_tower import TwoTowerParams
    from streamrec.models.two_tower_train import fit_two_tower

    params = TwoTowerParams(epochs=args.epochs, seed=args.seed)
    features = loaded.data.item_features
    ours, seconds = _timed(lambda: fit_two_tower(train, params, item_features=features))
    row(f"two-tower ({args.epochs} ep)", ours.fold_in_users(train), ours.item_vectors, seconds)
    ids_only = replace(params, item_features=False)
    plain, seconds = _timed(lambda: fit_two_tower(train, ids_only))
    row("two-tower, ids only", plain.fold_in_users(train), plain.item_vectors, seconds)

    counts = np.bincount(train.indices, minlength=train.shape[1]).astype(np.float32)
    row("popularity", np.ones((train.shape[0], 1), np.float32), counts[:, None], 0.0)

    als, seconds = _timed(lambda: ImplicitALS().fit(train))
    row("als", als.fold_in_users(train), als.item_factors, seconds)

    from streamrec.models.gmf_train import fit_gmf
    from streamrec.models.kernel_mf import KernelMF

    kmf, seconds = _timed(lambda: KernelMF().fit(train))
    row("kmf", _rating_scores(kmf.predict, *train.shape), np.eye(train.shape[1]), seconds)
    gmf, seconds = _timed(lambda: fit_gmf(train))
    row("gmf", _rating_scores(gmf.predict, *train.shape), np.eye(train.shape[1]), seconds)

    start = time.perf_counter()
    new = evaluate_two_tower_new_users(loaded.data, params, 10, args.seed)
    print(
        f"\nnew users ({new['sizes']['new_users']} users, {time.perf_counter() - start:.0f} s):"
        f" fold-in top-100 {new['fold_in']['top_100']:.4f} NDCG@10 {new['fold_in']['ndcg']:.4f};"
        f" trained with them {new['trained_with_them']['top_100']:.4f} / "
        f"{new['trained_with_them']['ndcg']:.4f}; ratios top-100 {new['top_100_ratio']:.3f}"
        f" NDCG {new['ndcg_ratio']:.3f}"
    )
    tt = rows[f"two-tower ({args.epochs} ep)"]
    tutorial = rows[f"basic-retrieval ({args.epochs} ep)"]
    print(
        f"two_tower: top100={tt['top_100']:.4f} "
        f"vs_tutorial={tt['top_100'] / tutorial['top_100']:.2f}x "
        f"vs_popularity={tt['top_100'] / rows['popularity']['top_100']:.2f}x "
        f"ndcg10={tt['ndcg']:.4f} vs_als={tt['ndcg'] / rows['als']['ndcg']:.3f}x "
        f"train_time_vs_tutorial={tt['fit_seconds'] / tutorial['fit_seconds']:.2f}x "
        f"new_users_top100={new['top_100_ratio']:.3f}x new_users_ndcg={new['ndcg_ratio']:.3f}x"
    )


def _timed(fit: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    model = fit()
    return model, time.perf_counter() - start


def _rating_scores(
    predict: Callable[[np.ndarray, np.ndarray], np.ndarray], n_users: int, n_items: int
) -> np.ndarray:
    """Every user's predicted rating of every item (a rating model's ranking)."""
    users = np.repeat(np.arange(n_users), n_items)
    items = np.tile(np.arange(n_items), n_users)
    return predict(users, items).reshape(n_users, n_items).astype(np.float32)


def _header() -> str:
    return (
        f"{'model':<24}{'top-1':>8}{'top-5':>8}{'top-10':>8}{'top-50':>8}{'top-100':>8}"
        f"{'P@10':>8}{'NDCG@10':>9}{'fit s':>8}"
    )


def _line(name: str, m: dict[str, Any]) -> str:
    tops = "".join(f"{m[f'top_{k}']:>8.4f}" for k in (1, 5, 10, 50, 100))
    return f"{name:<24}{tops}{m['precision']:>8.4f}{m['ndcg']:>9.4f}{m['fit_seconds']:>8.1f}"


if __name__ == "__main__":
    main()
