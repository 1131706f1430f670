"""The ``streamrec`` command line: one click group; commands only wire options to the library."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click

from streamrec.cli.context import AppContext
from streamrec.errors import ConfigError
from streamrec.settings import Settings, check_redis_url


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--redis-url",
    envvar="STREAMREC_REDIS_URL",
    help="redis:// or rediss:// URL; unset runs the embedded server.",
)
@click.option(
    "--home",
    envvar="STREAMREC_HOME",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the embedded Redis, datasets and models [default: ~/.streamrec].",
)
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
@click.version_option(package_name="streamrec")
@click.pass_context
def cli(ctx: click.Context, redis_url: str | None, home: Path | None, verbose: int) -> None:
    """streamrec: recommendations that learn while they serve."""
    # The process, not library code, picks Keras 2 for TFRS (before TensorFlow is ever
    # imported: a trainer imports it later), and quiets TensorFlow's C++ start-up logs.
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(
        level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = Settings.from_env(os.environ)  # the edge: the process environment
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    changes: dict[str, object] = {}
    if redis_url:
        try:
            changes["redis_url"] = check_redis_url(redis_url)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from exc
    if home:
        changes["home"] = home
    ctx.obj = AppContext(settings.with_(**changes) if changes else settings)


def _register() -> None:
    from streamrec.cli import (
        datasets,
        demo,
        drift,
        evaluate,
        http,
        ingest,
        models,
        operate,
        schedule,
    )

    for command in (
        ingest.push,
        ingest.import_,
        ingest.replay,
        operate.worker,
        operate.status,
        operate.dead_letters,
        operate.quarantine,
        operate.forget,
        operate.server,
        schedule.scheduler,
        schedule.rebuild,
        datasets.datasets,
        models.train,
        models.recommend,
        models.similar,
        models.explain,
        evaluate.evaluate,
        drift.drift,
        demo.demo,
        http.http,
    ):
        cli.add_command(command)


_register()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="streamrec")
