"""The ``evaluate`` command: offline metrics of a model on a dataset file (no Redis).

ALS is scored by ranking metrics (``--metric ranking``) on every interaction; KernelMF by
rating error (``--metric rmse``) on the file's ratings only; the two-tower model by TFRS's
top-k accuracy beside the ranking metrics (``--metric topk-accuracy``); ``--rerank gmf`` adds
the two-tower's lists re-ranked by GMF (``STREAMREC_RERANK_CANDIDATES`` and
``STREAMREC_RERANK_DISCOUNT`` as workers serve them) on the same split.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from streamrec.cli.context import AppContext, pass_app
from streamrec.cli.ingest import FORMAT_OPTION, progress_bar
from streamrec.cli.options import all_params, check_options
from streamrec.data.importers import open_source
from streamrec.data.interactions import LoadedInteractions, read_interactions
from streamrec.errors import ConfigError, ImportFormatError
from streamrec.serving.registry import REGISTRY, spec

_PROTOCOLS = ("random", "new-users")
_METRICS = sorted({model.metric for model in REGISTRY.values()})
_RATIO_LABELS = {
    "random": "NDCG ratio streamrec / implicit (defaults)",
    "new-users": "NDCG ratio fold-in / retrain",
}
_TOPK_LABELS = {
    "random": "NDCG ratio two-tower / popularity",
    "new-users": "NDCG ratio fold-in / trained with them",
}
_RERANK_LABELS = {
    "random": "NDCG ratio {model} re-rank / two-tower",
    "new-users": "NDCG ratio fold-in {model} re-rank / fold-in",
}
#: Re-ranking models by name (``--rerank``) and the model each re-ranks.
_RERANKERS = {name: model.reranks for name, model in REGISTRY.items() if model.reranks}
_RMSE_LABELS = {
    "random": "RMSE ratio {model} / global mean",
    "new-users": "RMSE ratio update_users / trained with them",
}


@click.command()
@click.option("--model", type=click.Choice(list(REGISTRY)), default="als", show_default=True)
@click.option(
    "--metric",
    type=click.Choice(_METRICS),
    default=None,
    help="ranking (P/R/NDCG/MAP@k, coverage: als), rmse (rating error: kmf) or "
    "topk-accuracy (TFRS FactorizedTopK beside P/R/NDCG/MAP@k: two-tower); default: the model's.",
)
@click.option(
    "--data",
    "path",
    type=click.Path(exists=True, path_type=Path),
    required=True,
    help="Dataset file or folder.",
)
@FORMAT_OPTION
@click.option(
    "--protocol",
    type=click.Choice(_PROTOCOLS),
    default="random",
    show_default=True,
    help="random: 20 % of interactions held out; new-users: 20 % of users folded in.",
)
@click.option(
    "--rerank",
    type=click.Choice(list(_RERANKERS)),
    default=None,
    help="Also score the lists re-ranked by this model (gmf: --model two-tower), with "
    "STREAMREC_RERANK_CANDIDATES and STREAMREC_RERANK_DISCOUNT.",
)
@click.option("--seed", type=int, default=42, show_default=True, help="Split and model seed.")
@click.option("-k", type=click.IntRange(min=1), default=10, show_default=True, help="Cut-off.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@all_params
@pass_app
def evaluate(
    app: AppContext,
    model: str,
    metric: str | None,
    path: Path,
    fmt: str,
    protocol: str,
    rerank: str | None,
    seed: int,
    k: int,
    as_json: bool,
    values: dict[str, Any],
) -> None:
    """Split a dataset, train MODEL and score it: precision, recall, NDCG, MAP at k and
    coverage for als; RMSE and MAE of held-out ratings for kmf."""
    chosen = spec(model)
    check_options(chosen)
    metric = metric or chosen.metric
    if metric != chosen.metric:
        raise ConfigError(f"--model {model} is evaluated by --metric {chosen.metric}")
    if rerank is not None and _RERANKERS[rerank] != model:
        raise ConfigError(f"--rerank {rerank} re-ranks --model {_RERANKERS[rerank]} (got {model})")
    mine = {option.name for option in chosen.options}
    params = chosen.make_params(app.settings, {k: v for k, v in values.items() if k in mine})
    source = open_source(path, fmt)

    def run(loaded: LoadedInteractions) -> dict[str, Any]:
        if rerank is not None:
            return _reranked(app, loaded, rerank, protocol, params, k, seed)
        if not chosen.ratings_only:
            return chosen.protocols[protocol](loaded.data, params, k, seed)
        ratings = loaded.ratings()
        if len(ratings) == 0:
            raise ImportFormatError(
                f"{source.path} holds no ratings: {model} learns from rating rows (kind 'rating')"
            )
        return chosen.protocols[protocol](ratings, params, seed)

    if as_json:  # stdout carries only the JSON document: no progress display
        loaded = _require_rows(read_interactions(source, app.settings), source.path)
        result = run(loaded)
    else:
        with progress_bar(app) as bar:
            task = bar.add_task(f"reading {source.path.name}", total=source.size_hint)
            loaded = read_interactions(source, app.settings, lambda n: bar.advance(task, n))
        _require_rows(loaded, source.path)
        with app.err.status(f"training and scoring ({protocol} protocol)"):
            result = run(loaded)
    result = {"model": model, "metric": metric, "data": str(source.path), "format": fmt, **result}
    result["dataset"] = {
        "interactions": len(loaded.data),
        "users": loaded.data.n_users,
        "items": loaded.data.n_items,
        "rejected": loaded.rejected,
    }
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        _print_table(app, result)


def _reranked(
    app: AppContext,
    loaded: LoadedInteractions,
    rerank: str,
    protocol: str,
    params: Any,
    k: int,
    seed: int,
) -> dict[str, Any]:
    stage = spec(rerank)
    ratings = loaded.ratings()
    if len(ratings) == 0:
        raise ImportFormatError(f"the data holds no ratings: --rerank {rerank} learns from them")
    settings = app.settings
    return stage.rerank_protocols[protocol](
        loaded.data, ratings, params, stage.make_params(settings), k, seed,
        candidates=settings.rerank_candidates, discount=settings.rerank_discount,
    )  # fmt: skip


def _require_rows(loaded: LoadedInteractions, path: Path) -> LoadedInteractions:
    if len(loaded.data) == 0:
        raise ImportFormatError(
            f"{path} holds no valid interactions ({loaded.rejected} rows rejected); "
            "check the file and --format"
        )
    return loaded


def _print_table(app: AppContext, result: dict[str, Any]) -> None:
    data = result["dataset"]
    app.console.print(
        f"{result['data']}: {data['interactions']:,} interactions, {data['users']:,} users, "
        f"{data['items']:,} items, {data['rejected']:,} rows rejected"
    )
    p = result["params"]
    head = f"{result['protocol']} protocol, seed {result['seed']}"
    k = result.get("k")
    if result["metric"] == "rmse":
        kernel = f"{p['kernel']} kernel, " if "kernel" in p else ""
        title = (
            f"{head}: {kernel}{p['factors']} factors, {p['epochs']} epochs, "
            f"lr {p['lr']:g}, reg {p['reg']:g}"
        )
        columns = ["RMSE", "MAE", "ratings", "fit s"]
        figures: tuple[str, ...] = ("rmse", "mae")
        counted, ratio, label = "ratings", result["rmse_ratio"], _RMSE_LABELS
    elif result["metric"] == "topk-accuracy":
        title = f"{head}: " + ", ".join(
            f"{name.replace('_', ' ')} {value}" for name, value in p.items() if name != "seed"
        )
        tops = [name for name in result[result["rows"][0]] if name.startswith("top_")]
        columns = [f"top-{name[4:]}" for name in tops]
        columns += [f"{name}@{k}" for name in ("P", "R", "NDCG", "MAP")]
        figures = (*tops, "precision", "recall", "ndcg", "map")
        if "rerank" in result:  # and the metrics of the held-out ratings near the top
            columns += [f"liked {name}@{k}" for name in ("P", "NDCG")]
            figures += ("liked_precision", "liked_ndcg")
        columns += ["users", "fit s"]
        counted, ratio, label = "users", result["ndcg_ratio"], _TOPK_LABELS
    else:
        title = (
            f"{head}: factors {p['factors']}, λ {p['regularization']:g}, α {p['alpha']:g}, "
            f"{p['iterations']} iterations, {p['confidence']} confidence"
        )
        columns = [f"{name}@{k}" for name in ("P", "R", "NDCG", "MAP")]
        columns += ["coverage", "users", "fit s"]
        figures = ("precision", "recall", "ndcg", "map", "coverage")
        counted, ratio, label = "users", result["ndcg_ratio"], _RATIO_LABELS
    table = Table(title=title, title_justify="left")
    table.add_column("model")
    for name in columns:
        table.add_column(name, justify="right")
    for row in result["rows"]:
        m = result[row]
        table.add_row(
            row,
            *(f"{m[name]:.4f}" for name in figures),
            f"{m[counted]:,}",
            f"{m['fit_seconds']:.2f}",
        )
    app.console.print(table)
    shown = "n/a (denominator is 0)" if ratio is None else f"{ratio:.3f}"
    app.console.print(f"{label[result['protocol']].format(model=result['model'])}: {shown}")
    if "top_100_ratio" in result and result["top_100_ratio"] is not None:
        app.console.print(f"top-100 accuracy ratio: {result['top_100_ratio']:.3f}")
    if "rerank" in result:
        stage, ratio = result["rerank"], result["rerank_ndcg_ratio"]
        shown = "n/a (denominator is 0)" if ratio is None else f"{ratio:.3f}"
        app.console.print(
            f"{_RERANK_LABELS[result['protocol']].format(model=stage['model'])}: {shown} "
            f"({stage['candidates']} candidates, discount {stage['discount']:g} per place; "
            f"liked: held-out ratings ≥ {stage['params']['max_rating'] - 1:g})"
        )
