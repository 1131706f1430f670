"""Model commands: train, recommend, similar, explain."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import click
import msgspec
import numpy as np
from rich.table import Table
from rq import Retry

from streamrec import keys
from streamrec.cli.context import AppContext, pass_app
from streamrec.cli.ingest import progress_bar
from streamrec.cli.options import params_of
from streamrec.errors import NotFoundError
from streamrec.serving.registry import REGISTRY, ModelSpec
from streamrec.serving.training import TrainReport, train_model
from streamrec.state.client import RecommendationClient
from streamrec.state.erasure import pending_events
from streamrec.state.matrices import MatrixReader
from streamrec.state.queues import RETRAIN_MODEL, queue
from streamrec.state.vocab import ItemCatalog, Vocabulary


@click.group()
def train() -> None:
    """Retrain a model from the whole state and publish it."""


def _train_command(model: ModelSpec) -> click.Command:
    @click.command(
        model.name,
        help=f"Train {model.summary}, publish it and refresh the lists of its users.",
    )
    @params_of(model)
    @click.option(
        "--queue", "on_queue", is_flag=True, help="Enqueue on the training queue instead."
    )
    @pass_app
    def command(app: AppContext, on_queue: bool, values: dict[str, Any]) -> None:
        if on_queue:
            _enqueue(app, model.name, {k: v for k, v in values.items() if v is not None})
            return
        params = model.make_params(app.settings, values)
        _train(
            app,
            model.name,
            lambda report: train_model(app.connection, app.settings, model.name, params, report),
        )

    return command


for _model_spec in REGISTRY.values():
    train.add_command(_train_command(_model_spec))


def _enqueue(app: AppContext, model: str, params: dict[str, Any]) -> None:
    job = queue(app.connection, keys.TRAINING_QUEUE).enqueue(
        RETRAIN_MODEL, model, params,
        job_timeout=3600, retry=Retry(max=1), description=f"retrain {model}",
    )  # fmt: skip
    app.console.print(f"queued retrain job {job.id} on '{keys.TRAINING_QUEUE}'")


def _train(
    app: AppContext,
    model: str,
    run: Callable[[Callable[[str, int, int], None]], TrainReport],
) -> None:
    with progress_bar(app) as bar:
        task = bar.add_task(f"training {model}, then refreshing caches", total=None)

        def report(stage: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        result = run(report)
    app.console.print(
        f"{model} version {result.version}: {result.users:,} users, {result.items:,} items, "
        f"{result.interactions:,} interactions; fit {result.fit_seconds:.1f} s, "
        f"{result.refreshed:,} lists refreshed in {result.refresh_seconds:.1f} s"
    )


@click.command()
@click.argument("user")
@click.option("-k", type=click.IntRange(min=1), default=10, show_default=True, help="Items.")
@click.option("--model", type=click.Choice(list(REGISTRY)), default="als", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (names included).")
@pass_app
def recommend(app: AppContext, user: str, k: int, model: str, as_json: bool) -> None:
    """What an app reading USER's cached list gets, and how fresh it is."""
    if k > app.settings.top_k:
        raise click.BadParameter(
            f"lists hold {app.settings.top_k} items (STREAMREC_TOP_K); got {k}", param_hint="-k"
        )
    app.warn_if_unattended()
    client = RecommendationClient(app.settings, connection=app.connection, model=model)
    found = client.get(user, k, names=True)
    if found is None:
        raise NotFoundError(f"no list for {user!r} and no popular list yet: train a model first")
    now = int(app.connection.get(keys.user_version_key(user)) or 0)
    waiting = pending_events(app.connection, user, shards=app.settings.event_shards)
    fresh = {
        "age_seconds": round(time.time() - found.computed_at, 3),
        "history_version_now": now,
        "events_waiting": waiting,
        "up_to_date": found.personal and found.history_version >= now and waiting == 0,
    }
    if as_json:
        click.echo(json.dumps({**msgspec.to_builtins(found), "freshness": fresh}, indent=2))
        return
    source = (
        f"{found.model} v{found.version}"
        if found.personal
        else "popular items (no personal list yet), minus the user's own"
    )
    table = Table("item", "name", "score", "because", title=f"{user}: {source}")
    for rec in found.items:
        table.add_row(rec.item, rec.name or "", f"{rec.score:.3f}", ", ".join(rec.because_names))
    app.console.print(table)
    if found.personal:
        app.console.print(
            f"computed {fresh['age_seconds']:.2f} s ago from history version "
            f"{found.history_version} (now {now}{', up to date' if fresh['up_to_date'] else ''})"
        )
    if waiting != 0:
        app.console.print(
            "events of the user wait in the queue, not applied yet: "
            + ("more jobs wait than were counted" if waiting is None else f"{waiting}")
        )


#: Models whose item vectors give ``similar`` and whose scores ``explain`` decomposes.
_VECTOR_MODELS = [name for name, model in REGISTRY.items() if model.explains]
_MODEL_OPTION = click.option(
    "--model", type=click.Choice(_VECTOR_MODELS), default="als", show_default=True
)


@click.command()
@click.argument("item")
@click.option("-k", type=click.IntRange(min=1), default=10, show_default=True, help="Items.")
@_MODEL_OPTION
@click.option("--json", "as_json", is_flag=True)
@pass_app
def similar(app: AppContext, item: str, k: int, model: str, as_json: bool) -> None:
    """Items whose vectors are closest to ITEM's (cosine) in MODEL."""
    served = _model(app, model)
    dense = _item_id(app, item, served)
    ids, scores = served.similar_items(np.array([dense]), k)
    items = _externals(app, ids[0])
    rows = [{"item": i, "score": float(s)} for i, s in zip(items, scores[0], strict=False) if i]
    _print_items(app, rows, f"similar to {item}", as_json)


@click.command()
@click.argument("user")
@click.argument("item")
@click.option(
    "-n", type=click.IntRange(min=1), default=5, show_default=True, help="History items to show."
)
@_MODEL_OPTION
@click.option("--json", "as_json", is_flag=True)
@pass_app
def explain(app: AppContext, user: str, item: str, n: int, model: str, as_json: bool) -> None:
    """Which of USER's history items make ITEM score high for them in MODEL."""
    served = _model(app, model)
    dense = _item_id(app, item, served)
    rows = MatrixReader(app.connection).rows([user], n_items=served.n_items)
    if rows.matrix.nnz == 0:
        raise NotFoundError(f"user {user!r} has no history the model knows")
    reasons = served.explain(rows.matrix, dense, n)
    items = _externals(app, np.array([i for i, _ in reasons]))
    out = [{"item": i, "contribution": s} for i, (_, s) in zip(items, reasons, strict=True)]
    _print_items(app, out, f"why {item} for {user}", as_json)


def _model(app: AppContext, name: str) -> Any:
    model = REGISTRY[name].served(app.connection, app.settings).current()
    if model is None:
        raise NotFoundError(f"no {name} model has been trained yet: run `streamrec train {name}`")
    return model


def _item_id(app: AppContext, item: str, model: Any) -> int:
    dense = Vocabulary(app.connection, "items").id_of(item)
    if dense is None or dense >= model.n_items:
        raise NotFoundError(f"item {item!r} is not known to the model")
    return dense


def _externals(app: AppContext, ids: np.ndarray) -> list[str]:
    names = Vocabulary(app.connection, "items").externals([int(i) for i in ids])
    return [name or "" if i >= 0 else "" for i, name in zip(ids, names, strict=True)]


def _print_items(app: AppContext, rows: list[dict[str, Any]], title: str, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    names = ItemCatalog(app.connection).names([r["item"] for r in rows])
    table = Table("item", "name", *[c for c in rows[0] if c != "item"] if rows else [], title=title)
    for r in rows:
        table.add_row(
            r["item"], names.get(r["item"], ""), *[f"{v:.3f}" for c, v in r.items() if c != "item"]
        )
    app.console.print(table)
