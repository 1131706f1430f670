"""ScaNN index against exact (brute-force) search: recall@k, speed-up, build time, memory.

    python bench/index.py [--n 1000000] [--queries 10000] [--k 10] [--seed 0]   # ~3 min
    OPENBLAS_NUM_THREADS=1 python bench/index.py --vectors als [--data …/ml-100k/u.data]
    python bench/index.py --vectors items.npy [--user-vectors users.npy] [--no-synthetic]
    python bench/index.py --sweep --sizes   # + leaves/reorder trade-off, exact vs ScaNN by size

Synthetic data: ``--n`` × ``--dim`` float32 items around ``--clusters``
Gaussian centres (centre ~ N(0, I/dim), so |centre| ≈ 1; item = centre + ``--spread`` ·
N(0, I/dim), so an item lies about ``spread`` from its centre), times a log-normal(0,
``--norm-sigma``) norm, the popularity-like spread of norms learned factors have. Cluster
sizes are log-normal(0, ``--size-sigma``) shares: a long tail of small clusters and a few
big ones. Queries: items drawn at random, perturbed by ``spread``/2 · N(0, I/dim) (a user
near what they like).

``--vectors`` first runs the same measurements on learned vectors: ``als`` trains
ImplicitALS (default parameters, one thread) on ``--data`` (MovieLens 100K, the largest
data set this machine holds: only 1,682 items) and queries with its users' vectors; a
``.npy`` path gives the non-zero rows of a learned ``(n, dim)`` matrix, queried by the rows
of ``--user-vectors`` or by perturbed items (noise scaled to the items' per-dimension
spread). ScaNN is forced on (``ScannIndex``, whatever the size; a model would keep its
exact index below ``EXACT_BELOW`` items). Its summary line is
``index(vectors=LABEL): recall@10=R speedup=S build_s=B peak_rss_gb=M`` (LABEL
``als-ml100k`` or the file's stem), printed before the synthetic run starts.

Everything is timed on one thread (``threadpool_limits(1)``; ScaNN's ``search_batched``,
not its parallel form); only ScaNN's training uses every core (``--threads``). Brute force
is numpy at its best: a matrix product per 64 queries, then a top-k pruned by block
maxima (the textbook ``argpartition`` over every score is timed too, slower, and so is one
query at a time, a matrix-vector product that reads every item vector per query, as issue
12's prototype measured its ~37 queries/s: 5-7x slower than the batched form). Exact top-k
for recall comes from it for every query; the first ``--brute-timed`` are timed (brute
force costs the same for every query, so the rate extrapolates), the rest run on every
core untimed. Then: per-query latency for batches of 1 and 100, with and without 50
excluded items per query (the exact top-5 among them), ScaNN and exact; save/load; and
search with a delta of 1 % of the items, before and after ``rebuild()``.

The synthetic run's last line, the output's last, is
``index: recall@10=R speedup=S build_s=B peak_rss_gb=M``: recall of
ScannIndex.search against exact top-k, ScaNN's queries/s over brute force's (both one
thread, all queries in one batch), build seconds, and the whole process's peak RSS (the
exact-search latency rows and the rebuild raise it; the RSS after the build is printed
with the build).
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

#: Queries per matrix product in the brute-force baseline (its fastest on this machine
#: among 16–256; the score block stays in a few hundred MB at 1M items).
BRUTE_CHUNK = 64
#: Scores per block whose maximum prunes brute force's top-k selection.
BLOCK = 1024


def clustered(
    n: int,
    dim: int,
    clusters: int,
    spread: float,
    n_queries: int,
    seed: int,
    norm_sigma: float = 0.25,
    size_sigma: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """``(items (n, dim), queries (n_queries, dim))``, float32, as the module says."""
    rng = np.random.default_rng(seed)
    scale = np.float32(1 / np.sqrt(dim))
    centres = rng.standard_normal((clusters, dim), dtype=np.float32) * scale
    shares = rng.lognormal(0.0, size_sigma, clusters)
    labels = rng.choice(clusters, size=n, p=shares / shares.sum())
    items = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):  # bounded temporaries
        stop = min(start + 100_000, n)
        noise = rng.standard_normal((stop - start, dim), dtype=np.float32)
        items[start:stop] = centres[labels[start:stop]] + np.float32(spread) * scale * noise
        items[start:stop] *= rng.lognormal(0.0, norm_sigma, (stop - start, 1)).astype(np.float32)
    queries = perturbed(items, n_queries, spread / 2 * scale, rng)
    return items, queries


def perturbed(
    items: np.ndarray, n_queries: int, noise: float | np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Random items plus Gaussian noise of scale ``noise`` (scalar or per dimension)."""
    picked = items[rng.integers(0, len(items), n_queries)]
    jitter = rng.standard_normal(picked.shape, dtype=np.float32) * np.float32(1) * noise
    return (picked + jitter).astype(np.float32)


def brute_force(
    items: np.ndarray, queries: np.ndarray, k: int, chunk: int = BRUTE_CHUNK
) -> np.ndarray:
    """Exact top-``k`` ids by inner product, best first, as fast as numpy does it: one
    matrix product per chunk of queries, then per row only the scores at or above the k-th
    largest of the blocks' maxima are ranked (at least ``k`` of them exist; 4-5x faster
    than ``argpartition`` over every score)."""
    ids = np.empty((len(queries), k), dtype=np.int64)
    n, width = len(items), BLOCK
    for start in range(0, len(queries), chunk):
        block = queries[start : start + chunk] @ items.T
        if n < k * width:
            ids[start : start + chunk] = _top(block, k)
            continue
        full = n // width * width
        maxima = block[:, :full].reshape(len(block), -1, width).max(axis=2)
        if full < n:
            maxima = np.concatenate([maxima, block[:, full:].max(axis=1, keepdims=True)], 1)
        floor = np.partition(maxima, -k, axis=1)[:, -k]
        for row, (scores, least) in enumerate(zip(block, floor, strict=True)):
            candidates = np.flatnonzero(scores >= least)
            best = _top(scores[candidates][None], k)[0]
            ids[start + row] = candidates[best]
    return ids


def brute_force_argpartition(items: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """The textbook form: ``argpartition`` over every score (for comparison only)."""
    ids = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), BRUTE_CHUNK):
        ids[start : start + BRUTE_CHUNK] = _top(queries[start : start + BRUTE_CHUNK] @ items.T, k)
    return ids


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    part = np.argpartition(scores, -k, axis=1)[:, -k:]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1)
    return np.take_along_axis(part, order, axis=1)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each row of ``truth`` that ``found`` holds."""
    hits = sum(len(set(a) & set(b)) for a, b in zip(found.tolist(), truth.tolist(), strict=True))
    return hits / truth.size


def timed(run: Callable[..., Any], *args: Any, repeat: int = 1) -> tuple[Any, float]:
    """``run(*args)``'s result and its best wall time over ``repeat`` runs, in seconds."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = run(*args)
        best = min(best, time.perf_counter() - start)
    return result, best


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux


@contextmanager
def one_thread() -> Iterator[None]:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


def exact_with_exclusion(
    items: np.ndarray, queries: np.ndarray, k: int, banned: list[np.ndarray]
) -> np.ndarray:
    wide = brute_force(items, queries, k + max(len(b) for b in banned))
    rows = [[i for i in row if i not in set(b)][:k] for row, b in zip(wide, banned, strict=True)]
    return np.array(rows, dtype=np.int64)


def batches(
    index: Any, queries: np.ndarray, k: int, size: int, banned: list[np.ndarray] | None
) -> np.ndarray:
    """``index.search`` over ``queries`` in batches of ``size``; the ids, stacked."""
    found = []
    for s in range(0, len(queries), size):
        found.append(index.search(queries[s : s + size], k, banned and banned[s : s + size])[0])
    return np.concatenate(found)


def latency(index: Any, exact: Any, items: np.ndarray, queries: np.ndarray, k: int) -> None:
    """Per-query milliseconds of ``index.search`` and of exact search, batches of 1 and
    100, with and without 50 excluded items (the exact top-5 and 45 random ones)."""
    rng = np.random.default_rng(1)
    queries = queries[:1000]
    truth = brute_force(items, queries, k)
    banned = [np.union1d(t[:5], rng.integers(0, len(items), 45)) for t in truth]
    truth_banned = exact_with_exclusion(items, queries, k, banned)
    print("\nper-query latency, ms (one thread; 1,000 queries; recall@k vs exact in brackets)")
    print(f"{'':34} {'batch 1':>16} {'batch 100':>16}")
    for name, searcher in (("ScannIndex.search", index), ("exact (numpy brute force)", exact)):
        for excluded in (False, True):
            cells = []
            for batch in (1, 100):
                n_run = len(queries) if batch > 1 or name.startswith("Scann") else 100
                ex = banned if excluded else None
                found, seconds = timed(batches, searcher, queries[:n_run], k, batch, ex, repeat=2)
                ref = (truth_banned if excluded else truth)[:n_run]
                cells.append(f"{seconds / n_run * 1e3:8.3f} [{recall(found, ref):.3f}]")
            label = name + (", 50 excluded" if excluded else "")
            print(f"{label:34} {cells[0]:>16} {cells[1]:>16}")
    if hasattr(index, "_searcher"):
        raw = index._searcher
        one = queries[:1]
        _, per_call = timed(lambda: [raw.search_batched(one, k) for _ in range(1000)], repeat=2)
        _, single = timed(lambda: [raw.search(one[0], k) for _ in range(1000)], repeat=2)
        print(
            f"raw ScaNN, one query: search_batched {per_call:.3f} ms, search {single:.3f} ms "
            "per call (1,000 calls)"
        )


def delta_and_persistence(index: Any, items: np.ndarray, queries: np.ndarray, k: int) -> None:
    """Save/load time and size; then search cost and recall with a delta of 1 % of the
    catalogue (half new ids, half re-vectored built items), before and after rebuild."""
    import tempfile

    queries = queries[:1000]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "index"
        _, save_s = timed(index.save, folder)
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1024**3
        loaded, load_s = timed(type(index).load, folder)
        same = np.array_equal(loaded.search(queries, k)[0], index.search(queries, k)[0])
    print(
        f"\nsave {save_s:.1f} s, load {load_s:.1f} s, {size:.2f} GB on disk, same results: {same}"
    )
    rng = np.random.default_rng(2)
    n, m = len(items), len(items) // 200
    moved = rng.choice(n, m, replace=False)
    fresh = perturbed(items, 2 * m, 0.1 * float(items.std()), rng)
    index.upsert(np.concatenate([moved, np.arange(n, n + m)]), fresh)
    print(f"after upserting {m:,} new and {m:,} re-vectored items (delta {index.n_delta:,}):")
    truth = brute_force(index.vectors, queries, k)
    for label in ("with the delta", "after rebuild()"):
        if label.startswith("after"):
            _, rebuild_s = timed(index.rebuild)
            label += f" ({rebuild_s:.1f} s)"
        cells = []
        for batch in (1, 100):
            found, seconds = timed(batches, index, queries, k, batch, None, repeat=2)
            cells.append(f"{seconds / len(queries) * 1e3:.3f} ms [{recall(found, truth):.3f}]")
        print(f"  {label:28} batch 1 {cells[0]}, batch 100 {cells[1]}")


def sweep(index: Any, queries: np.ndarray, truth: np.ndarray, k: int, brute_qps: float) -> None:
    """Recall and speed-up as leaves searched and candidates reordered vary on one build."""
    print(f"\nsweep over {len(queries):,} queries, num_leaves={index.params.num_leaves}:")
    print(
        f"{'leaves_to_search':>16} {'reordered':>9} {'recall@k':>9} {'µs/query':>9} {'speedup':>8}"
    )
    base = index.params
    for leaves in (2, 5, 10, 15, 20, 30, 40, 60, 80, 120):
        if leaves > (base.num_leaves or 1):
            continue
        for reorder in (20, 50, 100, 200):
            index.params = replace(
                base, leaves_to_search=leaves, reorder=reorder, reorder_multiple=0
            )
            found, seconds = timed(lambda: index.search(queries, k)[0], repeat=2)
            qps = len(queries) / seconds
            print(
                f"{leaves:>16} {max(reorder, k):>9} {recall(found, truth):>9.4f} "
                f"{seconds / len(queries) * 1e6:>9.1f} {qps / brute_qps:>8.0f}"
            )
    index.params = base


def sizes(dim: int, k: int, seed: int) -> None:
    """Exact search against a (forced) ScaNN index on small catalogues: where ScaNN starts
    to pay (``EXACT_BELOW``)."""
    from streamrec.models.index.exact import ExactIndex
    from streamrec.models.index.scann import ScannIndex

    print("\nexact vs ScaNN by catalogue size (one thread; ms per query; 1,000 queries)")
    print(
        f"{'items':>8} {'build s':>8} {'recall':>7} {'exact b1':>9} {'scann b1':>9} "
        f"{'exact b100':>11} {'scann b100':>11}"
    )
    for n in (10_000, 20_000, 50_000, 100_000, 200_000):
        items, queries = clustered(n, dim, max(n // 500, 20), 0.5, 1000, seed)
        index, build_s = timed(ScannIndex, items)
        exact = ExactIndex(items)
        with one_thread():
            r = recall(index.search(queries, k)[0], brute_force(items, queries, k))
            cells = []
            for batch in (1, 100):
                for searcher in (exact, index):
                    _, seconds = timed(batches, searcher, queries, k, batch, None, repeat=2)
                    cells.append(seconds / len(queries) * 1e3)
        print(
            f"{n:>8,} {build_s:>8.1f} {r:>7.3f} {cells[0]:>9.3f} {cells[1]:>9.3f} "
            f"{cells[2]:>11.3f} {cells[3]:>11.3f}"
        )
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="items (synthetic data)")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--clusters", type=int, default=2000)
    parser.add_argument("--spread", type=float, default=0.5, help="item distance to centre")
    parser.add_argument("--norm-sigma", type=float, default=0.25, help="log-normal item norms")
    parser.add_argument("--size-sigma", type=float, default=1.0, help="log-normal cluster sizes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--vectors",
        help="also learned item vectors: an (n, dim) .npy, or 'als' (ALS trained on --data)",
    )
    parser.add_argument("--user-vectors", type=Path, help="queries (n, dim) .npy")
    parser.add_argument("--data", type=Path, default=ML100K, help="u.data for --vectors als")
    parser.add_argument("--no-synthetic", action="store_true", help="only the --vectors run")
    parser.add_argument("--brute-timed", type=int, default=2000, help="queries timed")
    parser.add_argument("--num-leaves", type=int, help="default: ScannParams' rule")
    parser.add_argument("--leaves-to-search", type=int, help="default: ScannParams' rule")
    parser.add_argument("--reorder", type=int, help="default: ScannParams' default")
    parser.add_argument("--sample", type=int, help="tree training sample size")
    parser.add_argument("--threads", type=int, default=0, help="ScaNN training threads")
    parser.add_argument("--soar-lambda", type=float, help="SOAR spilling (default: off)")
    parser.add_argument(
        "--l2-tree", action="store_true", help="squared-L2 tree (default: by the norms' spread)"
    )
    parser.add_argument("--sweep", action="store_true", help="leaves/reorder trade-off table")
    parser.add_argument("--no-latency", action="store_true", help="skip the latency table")
    parser.add_argument("--sizes", action="store_true", help="first: exact vs ScaNN, 10k-200k")
    args = parser.parse_args()
    if args.sizes:
        sizes(args.dim, args.k, args.seed)

    from streamrec.models.index.scann_params import ScannParams

    overrides = {
        "num_leaves": args.num_leaves,
        "leaves_to_search": args.leaves_to_search,
        "training_sample_size": args.sample,
        "reorder": args.reorder,
    }
    params = ScannParams(
        **{key: value for key, value in overrides.items() if value is not None},
        training_threads=args.threads,
        soar_lambda=args.soar_lambda,
        spherical=False if args.l2_tree else None,  # None: by the norms' spread
    )
    rng = np.random.default_rng(args.seed)
    if args.vectors is not None:  # first: its peak RSS is its own
        (label, items, queries), gen_s = timed(lambda: learned(args, rng))
        print(f"queries {len(queries):,}, k = {args.k}; data ready in {gen_s:.1f} s")
        figures = measure(items, queries, args, params, details=False)
        print(f"index(vectors={label}): {figures}\n")
    if not args.no_synthetic:
        (items, queries), gen_s = timed(lambda: clustered(
            args.n, args.dim, args.clusters, args.spread, args.queries, args.seed,
            args.norm_sigma, args.size_sigma,
        ))  # fmt: skip
        print(
            f"items {items.shape[0]:,} × {items.shape[1]} float32 from clustered synthetic "
            f"({args.clusters} clusters, spread {args.spread})"
        )
        print(f"queries {len(queries):,}, k = {args.k}; data ready in {gen_s:.1f} s")
        print(f"index: {measure(items, queries, args, params, details=True)}")


def measure(
    items: np.ndarray, queries: np.ndarray, args: argparse.Namespace, params: Any, details: bool
) -> str:
    """Brute force and ScaNN over ``items`` for ``queries`` (one thread), printed as they
    come; returns ``recall@k=R speedup=S build_s=B peak_rss_gb=M``. ``details``: the
    ``--sweep`` and latency tables too."""
    from streamrec.models.index.exact import ExactIndex
    from streamrec.models.index.scann import ScannIndex

    k = args.k
    n_timed = min(args.brute_timed, len(queries))
    with one_thread():
        brute_force(items, queries[:BRUTE_CHUNK], k)  # warm-up
        timed_truth, brute_s = timed(lambda: brute_force(items, queries[:n_timed], k))
    rest = brute_force(items, queries[n_timed:], k)  # every core, untimed
    truth = np.concatenate([timed_truth, rest])
    brute_qps = n_timed / brute_s
    print(
        f"brute force, 1 thread: {brute_s / n_timed * 1e3:.3f} ms/query = {brute_qps:.0f} "
        f"queries/s ({n_timed:,} of {len(queries):,} queries timed; block-maximum pruning)"
    )
    with one_thread():
        few = queries[: min(4 * BRUTE_CHUNK, len(queries))]
        plain, plain_s = timed(lambda: brute_force_argpartition(items, few, k))
    assert recall(plain, truth[: len(few)]) == 1.0
    print(f"  (argpartition over every score instead: {plain_s / len(few) * 1e3:.3f} ms/query)")
    with one_thread():
        _, single_s = timed(lambda: [_top((items @ q)[None], k) for q in queries[:50]])
    single_qps = min(50, len(queries)) / single_s
    print(
        f"  (one query at a time, matrix-vector product + argpartition, as issue 12's "
        f"prototype: {1e3 / single_qps:.3f} ms/query = {single_qps:.0f} queries/s)"
    )

    index, build_s = timed(lambda: ScannIndex(items, params))
    print(f"ScaNN build: {build_s:.1f} s with {index.params}; peak RSS {peak_rss_gb():.2f} GB")
    with one_thread():
        index.search(queries[:100], k)  # warm-up
        found, scann_s = timed(lambda: index.search(queries, k)[0], repeat=2)
        scann_qps = len(queries) / scann_s
        r = recall(found, truth)
        print(
            f"ScannIndex.search, 1 thread: {scann_s / len(queries) * 1e6:.1f} µs/query = "
            f"{scann_qps:.0f} queries/s, recall@{k} {r:.4f}"
        )
        p = index.params
        raw = index._searcher.search_batched
        _, raw_s = timed(raw, queries, k, p.reorder, p.leaves_to_search or None, repeat=2)
        print(f"  (ScaNN's search_batched alone: {raw_s / len(queries) * 1e6:.1f} µs/query)")
        if details and args.sweep:
            sweep(index, queries[:n_timed], truth[:n_timed], k, brute_qps)
        if details and not args.no_latency:
            exact = ExactIndex(items)
            latency(index, exact, items, queries, k)
            del exact
            delta_and_persistence(index, items, queries, k)  # changes items: last
    speedup = scann_qps / brute_qps
    print(f"  (speed-up over one query at a time instead: {scann_qps / single_qps:.0f})")
    return (
        f"recall@{k}={r:.4f} speedup={speedup:.{0 if speedup >= 10 else 2}f} "
        f"build_s={build_s:.1f} peak_rss_gb={peak_rss_gb():.2f}"
    )


#: The largest data set this machine holds (``--vectors als``).
ML100K = Path("/work/shared/data/ml-100k/u.data")


def learned(
    args: argparse.Namespace, rng: np.random.Generator
) -> tuple[str, np.ndarray, np.ndarray]:
    """``(label, items, queries)`` of ``--vectors``: an ALS model trained here on ``--data``
    (queries: its users' vectors), or a ``.npy`` of item vectors (queries: the rows of
    ``--user-vectors``, or perturbed items). Untrained (zero) rows are dropped."""
    if args.vectors == "als":
        items, queries = als_vectors(args.data)
        label = "als-ml100k" if args.data.parent.name == "ml-100k" else f"als-{args.data.stem}"
    else:
        path = Path(args.vectors)
        items = np.asarray(np.load(path, allow_pickle=False), dtype=np.float32)
        label = path.stem
        queries = None
        if args.user_vectors is not None:
            queries = np.load(args.user_vectors, allow_pickle=False).astype(np.float32)
    items = np.ascontiguousarray(items[np.any(items != 0, axis=1)])  # never results
    if queries is None:
        queries = perturbed(items, args.queries, items.std(axis=0) / 2, rng)
    queries = np.ascontiguousarray(queries[: args.queries], dtype=np.float32)
    print(f"items {items.shape[0]:,} × {items.shape[1]} float32 from {label}")
    if len(items) < 50_000:
        print(
            f"  only {len(items):,} items: ScaNN is forced here (ScannIndex, no tree below "
            "TREE_BELOW items); serving would keep the exact index below EXACT_BELOW"
        )
    return label, items, queries


def als_vectors(data: Path) -> tuple[np.ndarray, np.ndarray]:
    """Item and user vectors of :class:`~streamrec.models.als.ImplicitALS` (default
    parameters, one solver thread, BLAS limited to one thread) trained on every rating of
    the MovieLens ``u.data`` at ``data``."""
    from streamrec.data.importers import open_source
    from streamrec.data.interactions import read_interactions
    from streamrec.models.als import ALSParams, ImplicitALS
    from streamrec.settings import Settings

    loaded = read_interactions(open_source(data, "movielens-100k"), Settings.from_env(os.environ))
    matrix = loaded.data.to_csr()
    model, fit_s = timed(lambda: ImplicitALS(ALSParams(num_threads=1)).fit(matrix))
    print(
        f"ALS ({model.params.factors} factors) trained on {data}: {matrix.shape[0]:,} users × "
        f"{matrix.shape[1]:,} items, {matrix.nnz:,} interactions, {fit_s:.1f} s"
    )
    return model.item_factors, model.user_factors


if __name__ == "__main__":
    main()
