"""The compiled serving kernels against the numpy code they replaced, in one process.

    OPENBLAS_NUM_THREADS=1 python bench/serving_kernels.py [--data …/ml-100k] [--batch 100]

What a worker does per refreshed user, on MovieLens 100K (or generated data of the same
size when it is absent): ALS fold-in (``solve_users``), its ``because``, the two-tower's
``because`` (random towers of the served size: the cost does not depend on training) and
exact top-20 search with seen items excluded. Each is timed for the kernels
(:mod:`streamrec.models.kernels`, the exact index's one-pass top-k) and for the batched
numpy reference below (padded groups, one batched inverse, ``argpartition``), alternating
rounds on the same batches, CPU time (``process_time``) so another process on the machine
does not count. Both must give the same answers: the reference is the oracle.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from streamrec.models.als import ALSParams, ImplicitALS
from streamrec.models.index.exact import ExactIndex
from streamrec.models.padded import padded_groups, strongest
from streamrec.models.two_tower import TwoTower, TwoTowerParams

K, REASONS = 20, 2


def load(data: Path) -> sp.csr_matrix:
    """Users × items ratings of ML-100K, or a random matrix of its shape and density."""
    if (data / "u.data").exists():
        d = np.loadtxt(data / "u.data", dtype=np.int64)
        users, items, weights = d[:, 0] - 1, d[:, 1] - 1, d[:, 2].astype(np.float32)
    else:
        rng = np.random.default_rng(0)
        users, items = rng.integers(0, 943, 100_000), rng.integers(0, 1682, 100_000)
        weights = rng.integers(1, 6, 100_000).astype(np.float32)
    return sp.csr_matrix((weights, (users, items)), shape=(943, 1682))


def reference_solve(model: ImplicitALS, rows: sp.csr_matrix) -> tuple[Any, np.ndarray, list[Any]]:
    """The batched numpy fold-in: padded groups, one batched inverse (the code before)."""
    conf = model._clip(rows)
    y, alpha = model.item_factors, model.params.alpha
    n, f = conf.shape[0], y.shape[1]
    a = np.repeat(model._yty().astype(np.float32)[None], n, axis=0)
    a[:, np.arange(f), np.arange(f)] += model.params.regularization
    b = np.zeros((n, f), dtype=np.float32)
    groups = padded_groups(conf)
    for group in groups:
        yh = y[group.items]
        c = group.confidence * alpha
        a[group.rows] += np.matmul(yh.transpose(0, 2, 1) * ((c - 1.0) * group.mask)[:, None], yh)
        b[group.rows] = np.matmul(yh.transpose(0, 2, 1), c[..., None])[..., 0]
    inverse = np.linalg.inv(a)
    vectors = np.matmul(inverse, b[..., None])[..., 0].astype(np.float32)
    return (conf, inverse, groups), vectors, groups


def reference_als_because(model: ImplicitALS, solved: Any, items: np.ndarray) -> np.ndarray:
    _, inverse, groups = solved
    y, alpha = model.item_factors, model.params.alpha
    out = np.full((*items.shape, REASONS), -1, dtype=np.int64)
    z = np.matmul(inverse, y[np.maximum(items, 0)].transpose(0, 2, 1))
    for group in groups:
        contrib = np.matmul(y[group.items], z[group.rows]) * (group.confidence * alpha)[..., None]
        contrib[~group.mask] = -np.inf
        out[group.rows] = strongest(contrib, group.items, REASONS)
    out[items < 0] = -1
    return out


def reference_tt_because(model: TwoTower, rows: sp.csr_matrix, ids: np.ndarray) -> np.ndarray:
    w = model.weights(rows)
    out = np.full((*ids.shape, REASONS), -1, dtype=np.int64)
    e = model.item_vectors[np.maximum(ids, 0)]
    for group in padded_groups(w):
        share = np.matmul(model._projected[group.items], e[group.rows].transpose(0, 2, 1))
        share *= group.confidence[..., None]
        share[~group.mask | (group.confidence == 0)] = -np.inf
        out[group.rows] = strongest(share, group.items, REASONS)
    out[ids < 0] = -1
    return out


def reference_search(vectors: np.ndarray, queries: np.ndarray, seen: list[np.ndarray]) -> Any:
    block = queries @ vectors.T
    for row, banned in enumerate(seen):
        block[row, banned] = -np.inf
    part = np.argpartition(-block, K - 1, axis=1)[:, :K]
    part_scores = np.take_along_axis(block, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/ml-100k"))
    parser.add_argument("--batch", type=int, default=100, help="users per refresh")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()

    matrix = load(args.data)
    als = ImplicitALS(ALSParams(num_threads=1)).fit(matrix)
    rng = np.random.default_rng(1)
    n_items, dim = matrix.shape[1], 64
    tt = TwoTower(
        TwoTowerParams(),
        rng.normal(0, 0.1, (n_items, dim)).astype(np.float32),
        rng.normal(0, 0.1, (dim, dim)).astype(np.float32),
        np.zeros(dim, dtype=np.float32),
        rng.normal(0, 0.1, (n_items, dim)).astype(np.float32),
    )
    index = ExactIndex(als.item_factors)
    timings: dict[str, list[float]] = {}
    agree: list[bool] = []

    def timed(label: str, call: Callable[..., Any], *args: Any) -> Any:
        start = time.process_time()
        out = call(*args)
        timings.setdefault(label, []).append(time.process_time() - start)
        return out

    warm = matrix[: args.batch]
    als.because(als.solve_users(warm), np.zeros((args.batch, K), dtype=np.int64))
    tt.because(warm, np.zeros((args.batch, K), dtype=np.int64))
    index.search(als.item_factors[:2], K)
    for _ in range(args.rounds):
        rows = matrix[rng.choice(matrix.shape[0], args.batch, replace=False)]
        seen = [rows.indices[rows.indptr[r] : rows.indptr[r + 1]] for r in range(args.batch)]
        ids = rng.integers(0, n_items, (args.batch, K))
        systems = timed("als fold-in: kernel", als.solve_users, rows)
        solved, vectors, _ = timed("als fold-in: numpy", reference_solve, als, rows)
        agree.append(np.allclose(systems.vectors, vectors, atol=1e-3))
        new = timed("als because: kernel", als.because, systems, ids, REASONS)
        old = timed("als because: numpy", reference_als_because, als, solved, ids)
        agree.append(bool((new == old).all()))
        new = timed("two-tower because: kernel", tt.because, rows, ids, REASONS)
        old = timed("two-tower because: numpy", reference_tt_because, tt, rows, ids)
        agree.append(bool((new == old).all()))
        queries = systems.vectors
        found, _ = timed("top-20 search: kernel", index.search, queries, K, seen)
        ref = timed("top-20 search: numpy", reference_search, index.vectors, queries, seen)
        agree.append(bool((found == ref).mean() > 0.99))  # ties may order apart

    total = {"kernel": 0.0, "numpy": 0.0}
    print(f"{args.batch} users per refresh, {args.rounds} rounds, CPU µs per user:")
    for part in ("als fold-in", "als because", "two-tower because", "top-20 search"):
        new = sum(timings[f"{part}: kernel"]) / (args.rounds * args.batch) * 1e6
        old = sum(timings[f"{part}: numpy"]) / (args.rounds * args.batch) * 1e6
        total["kernel"] += new
        total["numpy"] += old
        print(f"  {part:18s} kernel {new:7.1f}  numpy {old:7.1f}  ({old / new:.2f}x)")
    ratio = total["numpy"] / total["kernel"]
    print(
        f"serving_kernels: us_per_user={total['kernel']:.1f} numpy_us_per_user="
        f"{total['numpy']:.1f} speedup={ratio:.2f}x same_answers={all(agree)}"
    )


if __name__ == "__main__":
    main()
