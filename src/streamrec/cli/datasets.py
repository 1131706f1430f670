"""``streamrec datasets``: list and fetch public datasets (checksums verified)."""

from __future__ import annotations

import click
from rich.progress import DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from streamrec.cli.context import AppContext, pass_app
from streamrec.data.datasets import DATASETS, dataset, fetch_dataset, with_mirror


@click.group()
def datasets() -> None:
    """Public datasets: MovieLens, Last.fm."""


@datasets.command("list")
@pass_app
def list_(app: AppContext) -> None:
    """Show the datasets streamrec can fetch."""
    table = Table("name", "import format", "url", "licence")
    for spec in DATASETS.values():
        table.add_row(spec.name, spec.import_format, spec.url, spec.licence)
    app.console.print(table)


@datasets.command()
@click.argument("name", type=click.Choice(sorted(DATASETS)))
@click.option("--force", is_flag=True, help="Download again even if present.")
@click.option(
    "--mirror",
    envvar="STREAMREC_DATASETS_MIRROR",
    default=None,
    help="Base URL of a mirror holding the same archives (checksums stay pinned).",
)
@pass_app
def fetch(app: AppContext, name: str, force: bool, mirror: str | None) -> None:
    """Download NAME from its official site, verify its checksum, unpack it."""
    spec = dataset(name)
    if mirror:
        spec = with_mirror(spec, mirror)
    with Progress(
        *Progress.get_default_columns(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=app.err,
    ) as bar:
        task = bar.add_task(f"fetching {name}", total=None)

        def report(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        fetched = fetch_dataset(spec, app.settings.datasets_dir, progress=report, force=force)
    verb = "downloaded" if fetched.downloaded else "already present"
    app.console.print(f"{name}: {verb} in {fetched.folder}")
    app.console.print(
        f"import it with: streamrec import {fetched.data_file} --format {spec.import_format}"
    )
