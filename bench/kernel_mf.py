"""KernelMF and BaselineModel against matrix-factorization 1.3 on MovieLens 100K.

    OPENBLAS_NUM_THREADS=1 python bench/kernel_mf.py [--data …/ml-100k] [--seed 42] [--repeat 3]

1. Test RMSE and fit seconds on streamrec's ``random_split(data, 0.2, seed)``: streamrec
   KernelMF (defaults) and BaselineModel (sgd, als); the reference's KernelMF with its
   notebook's grid-search winner ("tuned") and its README parameters, and its BaselineModel
   with the notebook's parameters. The reference cannot predict ids it never saw under
   pandas ≥ 3 (a TypeError), so test ratings whose user or item has no training rating are
   dropped, for every row alike.
2. The fit-time race: 30 epochs × 50 factors, linear kernel, lr 0.01, reg 0.1, init sd 0.1
   for both, median of ``--repeat`` fits each, in this process after JIT warm-up (the
   warm-up and numba's import are timed separately).
3. Online updates with streamrec's defaults: ``update_users`` after ``new_user_split(data,
   0.8, 0.8, seed)``, and ``update_items`` after the same split of items (20 % of the items
   held out; each one's earliest 80 % of ratings folded in, the rest tested); each against
   a model trained with the folded-in ratings from the start (target: RMSE ratio ≤ 1.02).
4. Serving cost: what a worker does per user after a rating (``fold_in_users`` from the
   full rating history + top-20 through the index, rated items excluded), one user at a
   time and in batches of 100, milliseconds per user.

Without the ``matrix_factorization`` package the reference rows are skipped.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from streamrec.data.importers import open_source
from streamrec.data.interactions import Interactions, read_interactions
from streamrec.data.splits import new_user_split, random_split
from streamrec.models.baseline import BaselineModel, BaselineParams
from streamrec.models.kernel_mf import KernelMF
from streamrec.models.kernel_mf_params import KernelMFParams
from streamrec.settings import Settings

#: The reference's configurations (Quang-Vinh/matrix-factorization examples/ and README).
REFERENCE_KMF = {
    "tuned": {"n_epochs": 50, "n_factors": 50, "reg": 0.1, "kernel": "linear"},
    "README": {"n_epochs": 20, "n_factors": 100, "lr": 0.001, "reg": 0.005},
}
REFERENCE_BASELINE = {
    "sgd": {"method": "sgd", "n_epochs": 20, "reg": 0.005, "lr": 0.01},
    "als": {"method": "als", "n_epochs": 20, "reg": 0.5},
}
RACE = KernelMFParams(factors=50, epochs=30, lr=0.01, lr_decay=1.0, reg=0.1, init_sd=0.1)
RACE_REFERENCE = {"n_epochs": 30, "n_factors": 50, "lr": 0.01, "reg": 0.1}
TINY = Interactions(
    np.array([0, 0, 1]), np.array([0, 1, 1]), np.array([4.0, 2.0, 5.0]), np.zeros(3), 2, 2
)


def transposed(data: Interactions) -> Interactions:
    """Items as users and users as items (turns ``new_user_split`` into a new-item split)."""
    return Interactions(
        data.items, data.users, data.weights, data.timestamps, data.n_items, data.n_users
    )


def concat(a: Interactions, b: Interactions) -> Interactions:
    fields = ("users", "items", "weights", "timestamps")
    parts = [np.concatenate([getattr(a, f), getattr(b, f)]) for f in fields]
    return Interactions(*parts, n_users=a.n_users, n_items=a.n_items)


def rmse(predicted: Any, test: Interactions) -> float:
    return float(np.sqrt(np.mean((np.asarray(predicted, dtype=np.float64) - test.weights) ** 2)))


def timed(fit: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    model = fit()
    return model, time.perf_counter() - start


def numba_import_seconds() -> float:
    """``import numba`` in a fresh interpreter."""
    code = "import time; t = time.perf_counter(); import numba; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout)


def warm_up_streamrec() -> float:
    """Compile (or load from numba's cache) every kernel the bench uses."""
    start = time.perf_counter()
    model = KernelMF(KernelMFParams(factors=2, epochs=1)).fit(TINY.to_csr())
    model.predict(TINY.users, TINY.items)
    model.update_users(np.array([2]), TINY.to_csr()[:1])
    model.update_items(np.array([2]), TINY.to_csr().T.tocsr()[:1])
    BaselineModel().fit(TINY.to_csr())
    return time.perf_counter() - start


class Reference:
    """matrix-factorization 1.3 fed DataFrames, seeded through numpy's and numba's globals.

    Raises:
        ImportError: the package is not installed.
    """

    def __init__(self, seed: int) -> None:
        import numba
        import pandas as pd
        from matrix_factorization import BaselineModel as RefBaseline
        from matrix_factorization import KernelMF as RefKMF

        @numba.njit
        def seed_numba(value: int) -> None:
            np.random.seed(value)  # numba's own generator, used by the reference's shuffles

        self.pd, self.kmf, self.baseline = pd, RefKMF, RefBaseline
        self.seed, self.seed_numba = seed, seed_numba

    def frame(self, data: Interactions) -> Any:
        return self.pd.DataFrame({"user_id": data.users, "item_id": data.items})

    def fit(self, cls: Any, kwargs: dict[str, Any], train: Interactions) -> Any:
        np.random.seed(self.seed)
        self.seed_numba(self.seed)
        ratings = self.pd.Series(train.weights.astype(np.float64))
        return cls(verbose=0, **kwargs).fit(self.frame(train), ratings)

    def rmse(self, model: Any, test: Interactions) -> float:
        return rmse(model.predict(self.frame(test)), test)

    def warm_up(self) -> float:
        """Compile every signature used below (numba specialises on int vs float reg/lr)."""
        start = time.perf_counter()
        for kwargs in (*REFERENCE_KMF.values(), RACE_REFERENCE):
            self.fit(self.kmf, kwargs, TINY).predict(self.frame(TINY))
        for kwargs in REFERENCE_BASELINE.values():
            self.fit(self.baseline, kwargs, TINY).predict(self.frame(TINY))
        return time.perf_counter() - start


def quality(train: Interactions, test: Interactions, ref: Reference | None) -> None:
    rows = [("global mean of train", rmse(np.full(len(test), train.weights.mean()), test), 0.0)]
    model, seconds = timed(lambda: KernelMF().fit(train.to_csr()))
    rows.append(
        ("streamrec KernelMF defaults", rmse(model.predict(test.users, test.items), test), seconds)
    )
    for method in ("sgd", "als"):
        params = BaselineParams(method=method)  # type: ignore[arg-type]
        model, seconds = timed(lambda: BaselineModel(params).fit(train.to_csr()))  # noqa: B023
        name = f"streamrec BaselineModel {method} (defaults)"
        rows.append((name, rmse(model.predict(test.users, test.items), test), seconds))
    if ref is not None:
        configs = [(ref.kmf, f"KernelMF {name}", kw) for name, kw in REFERENCE_KMF.items()]
        configs += [(ref.baseline, "BaselineModel", kw) for kw in REFERENCE_BASELINE.values()]
        for cls, name, kwargs in configs:
            model, seconds = timed(lambda: ref.fit(cls, kwargs, train))  # noqa: B023
            rows.append((f"reference {name} {kwargs}", ref.rmse(model, test), seconds))
    print(f"\n{'model':<92} {'test RMSE':>9} {'fit s':>6}")
    for name, error, seconds in rows:
        print(f"{name:<92} {error:>9.4f} {seconds:>6.2f}")


def race(train: Interactions, test: Interactions, ref: Reference | None, repeat: int) -> None:
    print(f"\nfit-time race: {RACE_REFERENCE}, init sd 0.1 (median of {repeat} fits each)")
    seconds: dict[str, list[float]] = {"streamrec": [], "reference": []}
    for _ in range(repeat):
        ours, took = timed(lambda: KernelMF(RACE).fit(train.to_csr()))
        seconds["streamrec"].append(took)
        if ref is not None:
            theirs, took = timed(lambda: ref.fit(ref.kmf, RACE_REFERENCE, train))
            seconds["reference"].append(took)
    s = statistics.median(seconds["streamrec"])
    line = f"  streamrec {s:.2f}s (RMSE {rmse(ours.predict(test.users, test.items), test):.4f})"
    if ref is not None:
        r = statistics.median(seconds["reference"])
        line += f", reference {r:.2f}s (RMSE {ref.rmse(theirs, test):.4f}); ratio {s / r:.2f}"
    print(line)


def online(data: Interactions, seed: int) -> None:
    print("\nonline updates, streamrec defaults (RMSE on the later ratings of the new rows):")
    users = new_user_split(data, 0.8, 0.8, seed)
    items = new_user_split(transposed(data), 0.8, 0.8, seed)
    cases = [
        ("users", users.base, users.fold_in, users.test, users.new_users),
        (
            "items",
            *(transposed(s) for s in (items.base, items.fold_in, items.test)),
            items.new_users,
        ),
    ]
    for what, base, fold_in, test, ids in cases:
        model = KernelMF().fit(base.to_csr())
        start = time.perf_counter()
        if what == "users":
            model.update_users(ids, fold_in.to_csr()[ids])
        else:
            model.update_items(ids, fold_in.to_csr().T.tocsr()[ids])
        took = time.perf_counter() - start
        full = KernelMF().fit(concat(base, fold_in).to_csr())
        a, b = (rmse(m.predict(test.users, test.items), test) for m in (model, full))
        print(
            f"  new {what}: {len(ids)} of them, {len(fold_in):,} ratings folded in, "
            f"{len(test):,} tested: update_{what} {a:.4f} ({took:.3f}s), "
            f"trained with them {b:.4f}, ratio {a / b:.4f} (target ≤ 1.02)"
        )


def serving(train: Interactions, k: int = 20) -> None:
    model = KernelMF().fit(train.to_csr())
    ratings = train.to_csr()
    users = np.flatnonzero(np.diff(ratings.indptr))[:300]

    def serve(rows: Any) -> None:
        seen = [rows.indices[rows.indptr[n] : rows.indptr[n + 1]] for n in range(rows.shape[0])]
        model.recommend(model.fold_in_users(rows), k, seen)

    serve(ratings[users[:2]])  # JIT warm
    start = time.perf_counter()
    for u in users:
        serve(ratings[u : u + 1])
    single = (time.perf_counter() - start) * 1000 / len(users)
    start = time.perf_counter()
    for n in range(0, len(users), 100):
        serve(ratings[users[n : n + 100]])
    batched = (time.perf_counter() - start) * 1000 / len(users)
    mean = ratings.nnz / ratings.shape[0]
    print(
        f"\nserving, defaults: fold-in + top-{k} per user ({mean:.0f} ratings on average): "
        f"{single:.2f} ms one user at a time, {batched:.2f} ms in batches of 100"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/ml-100k"))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    data = read_interactions(
        open_source(args.data, "movielens-100k"), Settings.from_env(os.environ)
    ).data
    split = random_split(data, 0.2, args.seed)
    train = split.train
    known = np.isin(split.test.users, train.users) & np.isin(split.test.items, train.items)
    test = split.test.subset(known)
    print(
        f"MovieLens 100K, {len(data):,} ratings; seed-{args.seed} 80/20 split: {len(train):,} "
        f"train, {len(test):,} test ({int((~known).sum())} test ratings of a user or item "
        "without training ratings dropped, for every row)"
    )
    ref: Reference | None = None
    try:
        ref = Reference(args.seed)
    except ImportError:
        print("matrix_factorization not installed (pip install matrix-factorization==1.3): ")
        print("reference rows skipped")
    warm = f"JIT warm-up (compile or cache load): streamrec {warm_up_streamrec():.2f}s"
    if ref is not None:
        warm += f", reference {ref.warm_up():.2f}s"
    print(f"numba import {numba_import_seconds():.2f}s (fresh interpreter); {warm}")

    quality(train, test, ref)
    race(train, test, ref, args.repeat)
    online(data, args.seed)
    serving(train)


if __name__ == "__main__":
    main()
