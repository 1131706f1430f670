"""Offline experiments on planted data: reading files, both protocols, the evaluate command."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from click.testing import CliRunner

from streamrec.cli.context import AppContext
from streamrec.cli.evaluate import evaluate
from streamrec.data.importers import open_source
from streamrec.data.interactions import Interactions, read_interactions
from streamrec.data.splits import new_user_split
from streamrec.data.synthetic import SyntheticConfig, generate
from streamrec.models import experiments
from streamrec.models.als import ALSParams, ImplicitALS
from streamrec.models.experiments import evaluate_new_users, evaluate_random
from streamrec.settings import Settings

PARAMS = ALSParams(factors=8, regularization=1.0, alpha=10.0, iterations=10)
METRICS = {"k", "precision", "recall", "ndcg", "map", "coverage", "users", "fit_seconds"}
TOP = {"protocol", "k", "seed", "params", "sizes", "rows", "ndcg_ratio"}

CSV = """user,item,weight,kind,timestamp
alice,a,2,play,100
alice,a,3,play,200
alice,b,2,view,150
bob,a,,purchase,120
bob,b,4,rating,300
bob,b,2,rating,100
bob,c,1,rating,100
bob,c,5,rating,400
carol,a,-1,play,100
carol,b,1,play,100,extra
carol,c,1,nonsense,100
dave,c,3,play,
"""


@pytest.fixture(scope="module")
def planted() -> Interactions:
    """Synthetic taste groups, one row per (user, item) pair: its first event."""
    events = generate(SyntheticConfig(n_users=240, n_items=96, n_groups=4, seed=7)).events
    users: dict[str, int] = {}
    items: dict[str, int] = {}
    rows: dict[tuple[int, int], tuple[float, float]] = {}
    for e in events:
        key = (users.setdefault(e.user, len(users)), items.setdefault(e.item, len(items)))
        rows.setdefault(key, (e.weight, e.timestamp))
    pairs = np.array(list(rows), dtype=np.int64)
    values = np.array(list(rows.values()))
    return Interactions(
        pairs[:, 0], pairs[:, 1], values[:, 0], values[:, 1], len(users), len(items)
    )


def test_read_interactions_weights_validates_and_keeps_the_newest_rating(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(CSV)
    loaded = read_interactions(open_source(path, "csv"), Settings())

    assert loaded.rejected == 3  # negative play, an extra column, an unknown kind
    assert loaded.users == ["alice", "bob", "dave"]
    assert loaded.items == ["a", "b", "c"]
    data = loaded.data
    assert (data.n_users, data.n_items) == (3, 3)
    rows = {
        (loaded.users[u], loaded.items[i], float(w))
        for u, i, w in zip(data.users, data.items, data.weights, strict=True)
    }
    # Plays stay separate rows, views count half, a purchase 4×; per pair the newest rating
    # wins whatever the line order.
    assert rows == {
        ("alice", "a", 2.0),
        ("alice", "a", 3.0),
        ("alice", "b", 1.0),
        ("bob", "a", 4.0),
        ("bob", "b", 4.0),
        ("bob", "c", 5.0),
        ("dave", "c", 3.0),
    }
    assert len(data) == 7
    matrix = data.to_csr()
    assert matrix[0, 0] == 5.0  # to_csr sums alice's two plays
    pairs = zip(data.users.tolist(), data.items.tolist(), strict=True)
    stamps = dict(zip(pairs, data.timestamps.tolist(), strict=True))
    assert stamps[1, 1] == 300.0 and stamps[1, 2] == 400.0
    assert math.isnan(stamps[2, 2])  # no timestamp in the file: unknown, not "now"


def test_read_interactions_reports_progress(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(CSV)
    seen: list[int] = []
    read_interactions(open_source(path, "csv"), Settings(), seen.append)
    assert sum(seen) == 12


def _check_metrics(row: dict[str, Any], k: int) -> None:
    assert set(row) == METRICS
    assert row["k"] == k and row["users"] > 0 and row["fit_seconds"] >= 0
    for name in ("precision", "recall", "ndcg", "map", "coverage"):
        assert 0.0 <= row[name] <= 1.0, name


def test_evaluate_random_reports_both_models(planted: Interactions) -> None:
    result = evaluate_random(planted, PARAMS, k=5, seed=3)
    assert set(result) == TOP | {"streamrec", "implicit"}
    assert result["rows"] == ["streamrec", "implicit"]
    assert (result["protocol"], result["k"], result["seed"]) == ("random", 5, 3)
    assert result["params"]["random_state"] == 3 and result["params"]["factors"] == 8
    assert result["sizes"]["train"] + result["sizes"]["test"] == len(planted)
    for name in result["rows"]:
        _check_metrics(result[name], 5)
    # Random lists would score about 5 / 96 precision; the planted groups are learnable.
    assert result["streamrec"]["precision"] > 0.15
    ratio = result["ndcg_ratio"]
    assert ratio == pytest.approx(result["streamrec"]["ndcg"] / result["implicit"]["ndcg"])
    assert ratio > 1.0  # 100 default factors overfit 96 items; 8 do not
    again = evaluate_random(planted, PARAMS, k=5, seed=3)  # the seed fixes everything
    assert again["streamrec"]["ndcg"] == result["streamrec"]["ndcg"]
    assert again["implicit"]["ndcg"] == result["implicit"]["ndcg"]


def test_evaluate_new_users_reports_fold_in_and_retrain(planted: Interactions) -> None:
    result = evaluate_new_users(planted, PARAMS, k=5, seed=3)
    assert set(result) == TOP | {"fold_in", "retrain"}
    assert result["rows"] == ["fold_in", "retrain"]
    assert result["protocol"] == "new-users"
    sizes = result["sizes"]
    assert sizes["base"] + sizes["fold_in"] + sizes["test"] == len(planted)
    assert sizes["new_users"] == round(0.2 * planted.n_users)
    for name in result["rows"]:
        _check_metrics(result[name], 5)
        assert result[name]["precision"] > 0.15
    ratio = result["ndcg_ratio"]
    assert ratio == pytest.approx(result["fold_in"]["ndcg"] / result["retrain"]["ndcg"])
    assert ratio > 0.8


class _Recording(ImplicitALS):
    """ImplicitALS that keeps every matrix it is trained on or folds in."""

    trained: list[sp.csr_matrix] = []  # noqa: RUF012 - shared on purpose, reset per test
    folded: list[sp.csr_matrix] = []  # noqa: RUF012

    def fit(self, user_items: sp.csr_matrix, *, show_progress: bool = False) -> ImplicitALS:
        self.trained.append(user_items.copy())
        return super().fit(user_items, show_progress=show_progress)

    def fold_in_users(self, user_items: sp.csr_matrix) -> np.ndarray:
        self.folded.append(user_items.copy())
        return super().fold_in_users(user_items)


def test_new_users_test_items_never_reach_training_or_fold_in(
    planted: Interactions, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(experiments, "ImplicitALS", _Recording)
    _Recording.trained, _Recording.folded = [], []
    evaluate_new_users(planted, PARAMS, k=5, seed=11)

    split = new_user_split(planted, experiments.KNOWN_USERS, experiments.FOLD_IN_FRACTION, seed=11)
    test = split.test.to_csr()
    base, fold_in = split.base.to_csr(), split.fold_in.to_csr()
    assert len(_Recording.trained) == 2 and len(_Recording.folded) == 2
    only_base, retrain = _Recording.trained
    assert (only_base != base).nnz == 0
    assert only_base[split.new_users].nnz == 0  # the fold-in model never saw a new user
    assert (retrain != base + fold_in).nnz == 0
    for history in _Recording.folded:
        assert (history != fold_in[split.new_users]).nnz == 0
    for matrix in [*_Recording.trained, *_Recording.folded]:
        assert matrix.shape[1] == planted.n_items
    # Pairs are unique in the planted data, so no test pair may appear anywhere else.
    for matrix in _Recording.trained:
        assert matrix.multiply(test).nnz == 0
    for history in _Recording.folded:
        assert history.multiply(test[split.new_users]).nnz == 0


def test_evaluate_command_prints_json_and_a_table(tmp_path: Path) -> None:
    events = generate(SyntheticConfig(n_users=120, n_items=60, n_groups=3, seed=5)).events
    lines = [f"{e.user},{e.item},{e.weight:g},play,{e.timestamp}" for e in events]
    path = tmp_path / "events.csv"
    path.write_text("user,item,weight,kind,timestamp\n" + "\n".join(lines) + "\nx,y,-1,play,1\n")
    app = AppContext(Settings())
    options = ["--data", str(path), "--format", "csv", "--factors", "8", "--iterations", "5"]

    result = CliRunner().invoke(
        evaluate, [*options, "--protocol", "new-users", "-k", "5", "--json"], obj=app
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["rows"] == ["fold_in", "retrain"] and report["k"] == 5
    assert report["params"]["factors"] == 8 and report["params"]["iterations"] == 5
    assert report["dataset"]["rejected"] == 1
    assert report["dataset"]["interactions"] == len(events)

    result = CliRunner().invoke(evaluate, options, obj=app)
    assert result.exit_code == 0, result.output
    assert "streamrec" in result.output and "implicit" in result.output
    assert "NDCG ratio streamrec / implicit" in result.output


def test_evaluate_command_rejects_a_file_without_valid_rows(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("user,item,weight\nx,y,-1\n")
    result = CliRunner().invoke(
        evaluate, ["--data", str(path), "--format", "csv", "--json"], obj=AppContext(Settings())
    )
    assert result.exit_code == 3
    assert "no valid interactions (1 rows rejected)" in result.output


def test_evaluate_kmf_reports_rmse_under_both_protocols(tmp_path: Path) -> None:
    config = SyntheticConfig(n_users=120, n_items=60, n_groups=3, seed=5, kind="rating")
    events = generate(config).events
    plays = [f"p{n},{e.item},2,play,{e.timestamp}" for n, e in enumerate(events[:50])]
    lines = [f"{e.user},{e.item},{e.weight:g},rating,{e.timestamp}" for e in events]
    path = tmp_path / "ratings.csv"
    path.write_text("user,item,weight,kind,timestamp\n" + "\n".join(lines + plays) + "\n")
    app = AppContext(Settings())
    options = ["--model", "kmf", "--data", str(path), "--format", "csv", "--factors", "8"]
    options += ["--epochs", "20", "--lr", "0.02"]

    result = CliRunner().invoke(evaluate, [*options, "--json"], obj=app)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["metric"] == "rmse" and report["rows"] == ["kmf", "global_mean"]
    pairs = len({(e.user, e.item) for e in events})  # a pair's ratings collapse to the newest
    assert report["sizes"]["train"] + report["sizes"]["test"] == pairs  # plays left out
    assert report["kmf"]["rmse"] < report["global_mean"]["rmse"]  # it learned the groups
    assert report["params"]["factors"] == 8 and report["params"]["epochs"] == 20

    result = CliRunner().invoke(evaluate, [*options, "--protocol", "new-users"], obj=app)
    assert result.exit_code == 0, result.output
    assert "update_users" in result.output and "RMSE ratio update_users" in result.output


def test_evaluate_refuses_options_and_metrics_of_the_other_model(tmp_path: Path) -> None:
    path = tmp_path / "ratings.csv"
    path.write_text("user,item,weight,kind\na,x,4,rating\n")
    app = AppContext(Settings())
    base = ["--data", str(path), "--format", "csv"]
    result = CliRunner().invoke(evaluate, [*base, "--model", "kmf", "--alpha", "3"], obj=app)
    assert result.exit_code != 0 and "--alpha: only for --model als" in result.output
    result = CliRunner().invoke(evaluate, [*base, "--model", "als", "--metric", "rmse"], obj=app)
    assert result.exit_code != 0 and "evaluated by --metric ranking" in result.output
    plays = tmp_path / "plays.csv"
    plays.write_text("user,item,weight\na,x,4\n")
    result = CliRunner().invoke(
        evaluate, ["--data", str(plays), "--format", "csv", "--model", "kmf"], obj=app
    )
    assert result.exit_code != 0 and "holds no ratings" in result.output
