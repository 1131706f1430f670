"""``streamrec evaluate`` of the TensorFlow-trained models on small planted files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from streamrec.cli.context import AppContext
from streamrec.cli.evaluate import evaluate
from streamrec.data.synthetic import SyntheticConfig, generate
from streamrec.settings import Settings

pytestmark = pytest.mark.slow


def write(tmp_path: Path, kind: str, in_group: float) -> Path:
    config = SyntheticConfig(
        n_users=150, n_items=80, n_groups=4, in_group=in_group, seed=5, kind=kind
    )
    events = generate(config).events
    lines = [f"{e.user},{e.item},{e.weight:g},{kind},{e.timestamp}" for e in events]
    path = tmp_path / f"{kind}.csv"
    path.write_text("user,item,weight,kind,timestamp\n" + "\n".join(lines) + "\n")
    return path


def test_two_tower_reports_top_k_accuracy_beside_ranking_metrics(tmp_path: Path) -> None:
    options = [
        "--model",
        "two-tower",
        "--data",
        str(write(tmp_path, "play", 0.9)),
        "--format",
        "csv",
    ]
    options += ["--dim", "16", "--epochs", "15", "--batch-size", "128"]
    app = AppContext(Settings())
    result = CliRunner().invoke(evaluate, [*options, "--json"], obj=app)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["metric"] == "topk-accuracy" and report["rows"] == ["two_tower", "popularity"]
    ours, popular = report["two_tower"], report["popularity"]
    assert [k for k in ours if k.startswith("top_")] == ["top_1", "top_5", "top_10", "top_50",
                                                         "top_100"]  # fmt: skip
    assert ours["top_100"] == 1.0  # 80 items: every item is in the top 100
    assert ours["top_10"] > 1.2 * popular["top_10"] and ours["ndcg"] > 1.2 * popular["ndcg"]
    assert report["params"]["dim"] == 16 and report["params"]["batch_size"] == 128

    result = CliRunner().invoke(
        evaluate, [*options, "--protocol", "new-users"], obj=app, env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    shown = " ".join(result.stdout.split())
    assert "fold_in" in shown and "trained_with_them" in shown
    assert "NDCG ratio fold-in / trained with them" in shown and "top-100 accuracy ratio" in shown


def test_gmf_reports_rmse_below_the_global_mean(tmp_path: Path) -> None:
    options = ["--model", "gmf", "--data", str(write(tmp_path, "rating", 0.6)), "--format", "csv"]
    options += ["--factors", "8", "--epochs", "60", "--batch-size", "128", "--lr", "0.01"]
    result = CliRunner().invoke(evaluate, [*options, "--json"], obj=AppContext(Settings()))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["metric"] == "rmse" and report["rows"] == ["gmf", "global_mean"]
    assert report["gmf"]["rmse"] < 0.9 * report["global_mean"]["rmse"]
    result = CliRunner().invoke(evaluate, options, obj=AppContext(Settings()))
    assert result.exit_code == 0, result.output
    assert "RMSE ratio gmf / global mean" in " ".join(result.stdout.split())
