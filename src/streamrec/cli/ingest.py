"""Commands that bring events in: push, import, replay."""

from __future__ import annotations

import time
from pathlib import Path

import click
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from streamrec.cli.context import AppContext, pass_app
from streamrec.data.importers import FORMATS, open_source
from streamrec.errors import InvalidEventError
from streamrec.producer import Producer
from streamrec.state.bulk import BulkLoader, ImportReport

FORMAT_OPTION = click.option(
    "--format", "fmt", type=click.Choice(FORMATS), required=True, help="Layout of the file."
)


def progress_bar(app: AppContext) -> Progress:
    """The progress bar every long command uses."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=app.err,
        transient=False,
    )


@click.command()
@click.argument("user")
@click.argument("item")
@click.option("--weight", type=float, default=None, help="Play count, rating, ... (kind decides).")
@click.option("--kind", default="play", show_default=True, help="Event kind.")
@click.option("--timestamp", default=None, help="Epoch seconds or ISO 8601 [default: now].")
@click.option("--event-id", default=None, help="Unique id [default: assigned].")
@pass_app
def push(
    app: AppContext,
    user: str,
    item: str,
    weight: float | None,
    kind: str,
    timestamp: str | None,
    event_id: str | None,
) -> None:
    """Send one event through the producer (a worker applies it)."""
    ts: float | str | None = timestamp
    if timestamp is not None:
        try:
            ts = float(timestamp)
        except ValueError:
            ts = timestamp
    with Producer(app.settings, connection=app.connection, linger=0) as producer:
        event = producer.send(user, item, weight, kind, ts, event_id)
        batch_id = producer.flush()
    app.console.print(f"queued event {event.event_id} in batch {batch_id}")
    app.warn_if_unattended()


@click.command("import")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@FORMAT_OPTION
@click.option(
    "--prefix",
    default="",
    metavar="TEXT",
    help="Prepend TEXT to every user and item id of the file (e.g. ml100k:), so that "
    "datasets whose ids coincide stay apart.",
)
@pass_app
def import_(app: AppContext, path: Path, fmt: str, prefix: str) -> None:
    """Bulk-load a history file straight into the state (idempotent per file and prefix)."""
    source = open_source(path, fmt)
    loader = BulkLoader(app.connection, app.settings)
    if source.names_missing:
        app.err.print(
            f"[yellow]warning:[/] no {escape(str(source.names_file))}: the items of "
            f"{escape(source.path.name)} will have no names (ids are shown instead)",
            highlight=False,
        )
    with progress_bar(app) as bar:
        task = bar.add_task(f"importing {source.path.name}", total=source.size_hint)
        report = loader.load(source, progress=lambda n: bar.advance(task, n), prefix=prefix)
    app.console.print(
        f"imported {report.events:,} events in {report.seconds:.1f} s "
        f"({report.rate:,.0f}/s); {report.dead_letters:,} dead letters; "
        f"{report.skipped_batches} of {report.batches} batches were already applied"
    )
    app.console.print(overlap_line(report), highlight=False)
    if report.overlap == "partial" and report.skipped_batches < report.batches:
        app.err.print(
            f"[yellow]warning:[/] {_known(report)} of {escape(source.path.name)} already "
            "existed in this home, and their new events were added to them; if the file comes "
            "from another dataset than the data already here, unrelated ids were merged: import "
            "each dataset with its own --prefix (e.g. --prefix ml100k:) into a fresh home",
            highlight=False,
        )


def overlap_line(report: ImportReport) -> str:
    """One line on how the file's users and items met the ids already in the state."""
    both = f"{report.users_seen:,} users and {report.items_seen:,} items"
    if report.overlap == "none":
        return f"ids: none of the file's {both} existed before"
    if report.overlap == "partial":
        return (
            f"ids: {_known(report)} already existed: ids from different datasets may be "
            "merged (use --prefix to keep them apart)"
        )
    if report.batches and report.skipped_batches == report.batches:
        return f"ids: all {both} were already known: this file was imported before"
    return f"ids: all {both} were already known: was this file or its dataset imported before?"


def _known(report: ImportReport) -> str:
    return (
        f"{report.users_known:,} of {report.users_seen:,} users and "
        f"{report.items_known:,} of {report.items_seen:,} items"
    )


@click.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@FORMAT_OPTION
@click.option("--rate", type=float, default=1000.0, show_default=True, help="Events per second.")
@click.option("--limit", type=int, default=None, help="Stop after this many events.")
@pass_app
def replay(app: AppContext, path: Path, fmt: str, rate: float, limit: int | None) -> None:
    """Stream a file through the producer at RATE events/s (demos, load tests)."""
    if rate <= 0:
        raise click.BadParameter(f"must be > 0 (got {rate})", param_hint="--rate")
    source = open_source(path, fmt)
    sent = rejected = 0
    start = time.monotonic()
    with Producer(app.settings, connection=app.connection) as producer, progress_bar(app) as bar:
        task = bar.add_task(f"replaying {source.path.name}", total=limit or source.size_hint)
        for record in source.records:
            if limit is not None and sent + rejected >= limit:
                break
            if record.problem is not None:
                rejected += 1
                continue
            try:
                producer.send(
                    record.user, record.item, record.weight, record.kind or "play",
                    record.timestamp, record.event_id,
                )  # fmt: skip
                sent += 1
            except InvalidEventError:
                rejected += 1
            bar.advance(task)
            ahead = (sent + rejected) / rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
    elapsed = time.monotonic() - start
    app.console.print(
        f"sent {sent:,} events in {elapsed:.1f} s ({sent / max(elapsed, 1e-9):,.0f}/s); "
        f"{rejected:,} rejected by validation"
    )
