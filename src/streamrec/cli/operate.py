"""Operator commands: worker, status, dead-letters, forget, server."""

from __future__ import annotations

import json
import os
import shutil

import click
from rich.table import Table

from streamrec import keys
from streamrec.cli.context import AppContext, pass_app
from streamrec.cli.drift import drift_table
from streamrec.errors import InvalidEventError
from streamrec.producer import Producer
from streamrec.serving import registry
from streamrec.state.connection import describe, stop_embedded
from streamrec.state.deadletters import DeadLetterStore
from streamrec.state.embedded import EmbeddedRedis
from streamrec.state.erasure import forget_user
from streamrec.state.quarantine import Quarantine
from streamrec.worker.exporter import metrics_registry, serve_metrics
from streamrec.worker.processes import shard_queues, supervise
from streamrec.worker.runner import run_worker, worker_connection
from streamrec.worker.status import Status, collect_status


@click.command()
@click.option("--burst", is_flag=True, help="Exit when the queues are empty.")
@click.option(
    "--queue",
    "-q",
    "queues",
    multiple=True,
    help="Queue to serve (repeatable; every process serves them). Default: the events "
    "queues, each event shard served by one of the processes (STREAMREC_EVENT_SHARDS).",
)
@click.option(
    "--processes",
    "-n",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    envvar="STREAMREC_WORKERS",
    help="Worker processes to run.",
)
@pass_app
def worker(app: AppContext, burst: bool, queues: tuple[str, ...], processes: int) -> None:
    """Run RQ workers that apply event batches to the state."""
    known = keys.all_queues(app.settings.event_shards)
    unknown = sorted(set(queues) - set(known))
    if unknown:
        raise click.BadParameter(
            f"{', '.join(unknown)} (queues are {', '.join(known)})", param_hint="--queue"
        )
    queue_sets = (
        [list(queues)] * processes if queues else shard_queues(processes, app.settings.event_shards)
    )
    click.echo(
        f"streamrec worker: {processes} process(es) on queue(s) "
        f"{'; '.join(', '.join(names) for names in dict.fromkeys(map(tuple, queue_sets)))}",
        err=True,
    )
    port = app.settings.metrics_port
    if processes == 1:
        if port:
            serve_metrics(port, metrics_registry(app.connection, app.settings, registry.names()))
        try:
            connection = worker_connection(app.settings)
            run_worker(connection, app.settings, queue_sets[0], burst=burst, freeze=True)
        except RuntimeError as exc:
            raise click.ClickException(str(exc)) from exc
        return
    _ = app.connection  # start the embedded server once, before the children race for it
    settings, environ = app.settings, dict(os.environ)
    # one endpoint for all children: they record to files (prometheus_client's multiprocess
    # mode, chosen by this variable), this process serves their sum
    folder = settings.home / "metrics" / f"workers-{os.getpid()}"
    if port:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
        serve_metrics(port, metrics_registry(app.connection, settings, registry.names(), folder))
        settings = settings.with_(metrics_port=0)
    try:
        code = supervise(queue_sets, settings, environ=environ, burst=burst)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if code:
        raise SystemExit(code)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@pass_app
def status(app: AppContext, as_json: bool) -> None:
    """Queues, workers, users, items, events applied, dead letters, freshness per model, lag,
    last publishes, last drift checks."""
    snapshot = collect_status(app.connection, describe(app.settings), app.settings)
    app.warn_if_unattended()
    if as_json:
        click.echo(json.dumps(snapshot.to_dict(), indent=2))
        return
    app.console.print(f"Redis: {snapshot.redis}")
    queues = Table("queue", "queued", "started", "failed", "scheduled", title="Queues")
    for q in snapshot.queues:
        queues.add_row(q.name, str(q.queued), str(q.started), str(q.failed), str(q.scheduled))
    app.console.print(queues)
    workers = Table("worker", "state", "queues", "current job", "done", "failed", title="Workers")
    for w in snapshot.workers:
        workers.add_row(
            w.name, w.state, ",".join(w.queues), w.current_job or "-",
            str(w.successful_jobs), str(w.failed_jobs),
        )  # fmt: skip
    app.console.print(workers)
    s = snapshot.state
    state = Table("", "count", title="State")
    for label, value in (
        ("users", s.users),
        ("items", s.items),
        ("events applied", s.events_applied),
        ("batches applied", s.batches_applied),
        ("redelivered batches skipped", s.batches_duplicate),
        ("dead letters", s.dead_letters),
        ("queue entries set aside (quarantine)", s.quarantined),
        ("events dropped: user forgotten", s.dropped_forgotten),
        ("batches whose users wait to be served", s.unserved),
    ):
        state.add_row(label, f"{value:,}")
    app.console.print(state)
    _print_freshness(app, snapshot)


def _print_freshness(app: AppContext, snapshot: Status) -> None:
    def secs(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    lag = snapshot.lag
    app.console.print(
        f"Lag: {lag.queued_batches} batch(es) queued, oldest {secs(lag.oldest_queued_seconds)} s"
    )
    table = Table(
        "model", "version", "last publish (s ago)", "events", "p50 (s)", "p99 (s)",
        title=f"Freshness: event → cache, last {snapshot.freshness_minutes} min",
    )  # fmt: skip
    for model, fresh in zip(snapshot.models, snapshot.freshness, strict=True):
        table.add_row(
            model.name, "-" if model.version is None else str(model.version),
            secs(model.age_seconds), f"{fresh.events:,}", secs(fresh.p50), secs(fresh.p99),
        )  # fmt: skip
    app.console.print(table)
    if snapshot.drift is None:
        app.console.print("Drift: not checked (`streamrec drift`, STREAMREC_DRIFT_EVERY)")
    else:
        app.console.print(drift_table(snapshot.drift))


@click.command("dead-letters")
@click.option("--retry", is_flag=True, help="Send entries that are now valid through the producer.")
@click.option("--limit", type=int, default=20, show_default=True, help="Entries to show (0: all).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
@pass_app
def dead_letters(app: AppContext, retry: bool, limit: int, as_json: bool) -> None:
    """Show the events that could not be applied, and why; optionally retry them."""
    store = DeadLetterStore(app.connection)
    if retry:
        letters = store.take_all()
        still_bad = []
        with Producer(app.settings, connection=app.connection, linger=0) as producer:
            for letter in letters:
                try:
                    producer.send_raw(letter.payload)
                except InvalidEventError:
                    still_bad.append(letter)
        store.put_back(still_bad)
        app.console.print(
            f"re-sent {len(letters) - len(still_bad)} events; {len(still_bad)} are still invalid"
        )
        return
    letters = store.recent(limit)
    if as_json:
        for letter in letters:
            click.echo(letter.to_json())
        return
    table = Table("batch", "field", "reason", "payload", title=f"Dead letters ({store.count()})")
    for letter in letters:
        table.add_row(
            letter.batch_id[:18], letter.field, letter.reason, json.dumps(letter.payload)[:60]
        )
    app.console.print(table)


@click.command()
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="Entries to show (0: all).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
@pass_app
def quarantine(app: AppContext, limit: int, as_json: bool) -> None:
    """Show the queue entries set aside unrun, and why (not streamrec jobs, or unreadable)."""
    store = Quarantine(app.connection)
    entries = store.entries(limit)
    if as_json:
        for entry in entries:
            click.echo(json.dumps(entry))
        return
    table = Table("queue", "job", "reason", title=f"Quarantine ({store.count()})")
    for entry in entries:
        table.add_row(
            str(entry.get("queue", "?")),
            str(entry.get("job_id", entry.get("unreadable", "?")))[:40],
            str(entry.get("reason", "unreadable entry")),
        )
    app.console.print(table)


@click.command()
@click.argument("user")
@pass_app
def forget(app: AppContext, user: str) -> None:
    """Delete every trace of USER: history, ids, cached lists, queued events, dead letters."""
    report = forget_user(app.connection, app.settings, user, registry.names())
    if not report.found:
        app.console.print(f"{user} was not known; nothing changed")
        return
    app.console.print(
        f"forgot {user} ({report.queued_events} queued events in {report.jobs} jobs, "
        f"{report.dead_letters} dead letters, {report.quarantined} quarantined jobs removed)"
    )


@click.group()
def server() -> None:
    """Manage the embedded Redis server."""


@server.command("stop")
@pass_app
def server_stop(app: AppContext) -> None:
    """Stop the embedded server of this home (data is saved)."""
    if app.settings.redis_url:
        raise click.ClickException(
            "STREAMREC_REDIS_URL is set: there is no embedded server to stop"
        )
    stopped = stop_embedded(app.settings)
    app.console.print("stopped" if stopped else "not running")


@server.command("status")
@pass_app
def server_status(app: AppContext) -> None:
    """Tell whether the embedded server of this home is running."""
    running = EmbeddedRedis(app.settings.redis_dir).is_running()
    app.console.print(f"{describe(app.settings)}: {'running' if running else 'stopped'}")
