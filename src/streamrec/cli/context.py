"""What every command shares: settings, a lazy Redis connection, a console, error mapping."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import update_wrapper
from typing import Any, TypeVar

import click
import redis
from rich.console import Console
from rq import Worker

from streamrec import keys
from streamrec.errors import (
    ConfigError,
    DatasetError,
    ImportFormatError,
    InvalidEventError,
    NotFoundError,
    RedisUnavailableError,
    StreamrecError,
)
from streamrec.settings import Settings
from streamrec.state.connection import connect
from streamrec.state.queues import queue

#: Exit codes by error class (the first matching class wins); anything else exits 1.
EXIT_CODES: tuple[tuple[type[StreamrecError], int], ...] = (
    (InvalidEventError, 3),
    (ImportFormatError, 3),
    (NotFoundError, 4),
    (RedisUnavailableError, 5),
    (DatasetError, 6),
    (ConfigError, 7),
)

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class AppContext:
    """Per-invocation state of the CLI: results go to ``console`` (stdout); progress, status
    lines and warnings to ``err`` (stderr), so that a command's output can be piped."""

    settings: Settings
    # Soft wrap: a line piped to a file or a script stays one line (the terminal wraps it).
    console: Console = field(default_factory=lambda: Console(soft_wrap=True))
    err: Console = field(default_factory=lambda: Console(stderr=True, soft_wrap=True))
    _connection: redis.Redis | None = None

    @property
    def connection(self) -> redis.Redis:
        """The Redis client (the embedded server is started on first use)."""
        if self._connection is None:
            self._connection = connect(self.settings)
        return self._connection

    def warn_if_unattended(self) -> None:
        """Warn (on stderr) when events wait in the queue and no worker listens to it: they
        are kept, but nothing applies them until ``streamrec worker`` runs."""
        for name in keys.events_queues(self.settings.event_shards):
            events = queue(self.connection, name)
            waiting = events.count
            if waiting and not Worker.count(connection=self.connection, queue=events):
                self.err.print(
                    f"[yellow]warning:[/] {waiting} batch(es) of events wait in queue "
                    f"'{name}' and no worker listens: start one with `streamrec worker`"
                )


class CommandError(click.ClickException):
    """A StreamrecError reported to the user with its exit code."""

    def __init__(self, error: StreamrecError) -> None:
        super().__init__(str(error))
        code = next((code for cls, code in EXIT_CODES if isinstance(error, cls)), 1)
        self.exit_code = code  # type: ignore[misc]


def pass_app(func: F) -> F:
    """Give a command the :class:`AppContext` and turn StreamrecErrors into exit codes."""

    @click.pass_context
    def wrapper(ctx: click.Context, *args: Any, **kwargs: Any) -> Any:
        try:
            return ctx.invoke(func, ctx.find_object(AppContext), *args, **kwargs)
        except StreamrecError as exc:
            logging.getLogger(__name__).debug("command failed", exc_info=True)
            raise CommandError(exc) from exc

    return update_wrapper(wrapper, func)  # type: ignore[return-value]
