"""Scheduling commands: scheduler (retrains and rebuilds on their own) and rebuild."""

from __future__ import annotations

import json
import signal
import threading
from typing import Any

import click

from streamrec import keys
from streamrec.cli.context import AppContext, pass_app
from streamrec.serving.rebuild import rebuild_index
from streamrec.serving.registry import REGISTRY
from streamrec.state.queues import REBUILD_INDEX, queue
from streamrec.worker.exporter import metrics_registry, serve_metrics
from streamrec.worker.scheduler import Scheduler


@click.command()
@click.option("--once", is_flag=True, help="Enqueue what is due now and exit (for cron).")
@pass_app
def scheduler(app: AppContext, once: bool) -> None:
    """Enqueue retrains, index rebuilds and drift checks when they are due
    (STREAMREC_RETRAIN_EVERY, STREAMREC_RETRAIN_AFTER_EVENTS, STREAMREC_REBUILD_EVERY,
    STREAMREC_DRIFT_EVERY); one scheduler is active at a time, others stand by. A worker on
    the training queue runs the jobs."""
    runner = Scheduler(app.connection, app.settings)
    if once:
        done = runner.once()
        if done is None:
            click.echo("scheduler: another scheduler is active; nothing done", err=True)
            return
        for job in done:
            click.echo(f"enqueued the {job.kind} of {job.model} ({job.reason}): job {job.job_id}")
        if not done:
            click.echo("scheduler: nothing is due", err=True)
        return
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    if app.settings.metrics_port:
        registry = metrics_registry(app.connection, app.settings, list(REGISTRY))
        serve_metrics(app.settings.metrics_port, registry)
    click.echo(f"streamrec scheduler {runner.lease.token}: started", err=True)
    runner.run(stop)


@click.command()
@click.argument("model", type=click.Choice(list(REGISTRY)))
@click.option("--queue", "on_queue", is_flag=True, help="Enqueue on the training queue instead.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_app
def rebuild(app: AppContext, model: str, on_queue: bool, as_json: bool) -> None:
    """Publish the active MODEL again with the items folded in since it was trained."""
    if on_queue:
        job = queue(app.connection, keys.TRAINING_QUEUE).enqueue(REBUILD_INDEX, model)
        click.echo(f"enqueued the rebuild of {model}: job {job.id}")
        return
    report = rebuild_index(app.connection, app.settings, model)
    if as_json:
        click.echo(json.dumps(report.as_dict()))
    elif report.version is None:
        click.echo(f"{model}: version {report.replaced} was replaced meanwhile; nothing published")
    else:
        click.echo(
            f"{model}: version {report.version} published from {report.replaced} "
            f"({report.items_before} → {report.items} items) in {report.seconds:.2f} s"
        )
