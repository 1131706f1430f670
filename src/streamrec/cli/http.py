"""The ``http`` command: serve the HTTP API (the ``http`` extra)."""

from __future__ import annotations

import ipaddress
import signal
from typing import Any

import click

from streamrec.cli.context import AppContext, pass_app
from streamrec.http.server import make_server


@click.command("http")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    envvar="STREAMREC_HTTP_HOST",
    help="Address to bind (the API has no authentication: keep it on loopback or behind a proxy).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    envvar="STREAMREC_HTTP_PORT",
    help="TCP port.",
)
@pass_app
def http(app: AppContext, host: str, port: int) -> None:
    """Serve recommendations, similar items and event intake over HTTP (needs
    `pip install 'streamrec[http]'`): GET /users/USER/recommendations, GET
    /items/ITEM/similar, POST /events, /healthz, /metrics."""
    server = make_server(app.settings, host, port)
    if not _loopback(host):
        click.echo(
            f"warning: serving on {host}, beyond this machine; the API has no authentication",
            err=True,
        )
    click.echo(f"streamrec http: serving on http://{host}:{port}", err=True)

    # uvicorn stops gracefully on SIGINT/SIGTERM, then raises the signal again for the
    # handler it found: a quiet one makes a stop exit 0 instead of "Aborted!".
    def stopped(signum: int, frame: Any) -> None:
        click.echo("streamrec http: stopped", err=True)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stopped)
    server.run()


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
