"""The ``drift`` command, and the drift table ``status`` shows too."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import click
from rich.table import Table

from streamrec.cli.context import AppContext, pass_app
from streamrec.serving.drift import check_drift
from streamrec.serving.registry import REGISTRY


@click.command()
@click.option(
    "--model",
    type=click.Choice(list(REGISTRY)),
    default="als",
    show_default=True,
    help="The model whose served lists are checked.",
)
@click.option(
    "--users",
    type=click.IntRange(min=1),
    default=None,
    help="Users seen last to compare [default: STREAMREC_DRIFT_USERS, 200].",
)
@click.option(
    "--k",
    type=click.IntRange(min=1),
    default=None,
    help="List length compared [default: STREAMREC_TOP_K, the cached length].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_app
def drift(app: AppContext, model: str, users: int | None, k: int | None, as_json: bool) -> None:
    """Compare MODEL's cached lists of the users seen last with a fresh retrain's (trained
    here, never published): overlap@k, NDCG@k against the retrain's lists, and the
    correlation of the served items' scores under both. The report is kept for `status`."""
    with app.err.status(f"checking the drift of {model} (a retrain runs here)"):
        report = check_drift(app.connection, app.settings, model, users, k)
    if as_json:
        click.echo(json.dumps(report.as_dict()))
        return
    app.console.print(drift_table({model: report.as_dict()}))
    if report.drifted:
        app.console.print(
            f"{model} drifted: overlap below {report.threshold:g} "
            f"(`streamrec train {model}` retrains it)"
        )


def drift_table(reports: Mapping[str, Mapping[str, Any]]) -> Table:
    """A table of drift reports (``DriftReport.as_dict()``) by model."""
    table = Table(
        "model", "version", "users", "k", "overlap", "NDCG", "Spearman", "Pearson",
        "drifted", "checked (s ago)", title="Drift: served lists against a fresh retrain",
    )  # fmt: skip
    for model, r in reports.items():
        table.add_row(
            model, str(r["version"]), str(r["users"]), str(r["k"]), _num(r["overlap"]),
            _num(r["ndcg"]), _num(r["spearman"]), _num(r["pearson"]),
            "yes" if r["drifted"] else "no", _age(r["checked_at"]),
        )  # fmt: skip
    return table


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _age(at: float) -> str:
    return f"{max(0.0, time.time() - at):.0f}"
