"""Running the HTTP API under uvicorn (what ``streamrec http`` calls).

Starlette and uvicorn come with the ``http`` extra; without them :func:`make_server` says
how to install them, and nothing else of streamrec needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import redis

from streamrec.errors import ConfigError
from streamrec.settings import Settings
from streamrec.state.connection import connect

if TYPE_CHECKING:
    import uvicorn

#: Seconds open requests get to finish when the server is asked to stop.
GRACEFUL_SHUTDOWN = 5


def make_server(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    connection: redis.Redis | None = None,
) -> uvicorn.Server:
    """A uvicorn server of the HTTP API, not started (``.run()`` serves until stopped).

    Args:
        settings: as every streamrec process takes them.
        host: the address to bind (loopback by default: the API has no authentication).
        port: the TCP port.
        connection: a redis-py client (default: :func:`connect` to ``settings``).

    Raises:
        ConfigError: the ``http`` extra (Starlette, uvicorn) is not installed.
        RedisUnavailableError: Redis cannot be reached.
    """
    try:
        import uvicorn

        from streamrec.http.app import create_app
    except ImportError as exc:
        raise ConfigError(
            f"the HTTP API needs Starlette and uvicorn: pip install 'streamrec[http]' ({exc})"
        ) from exc
    app = create_app(settings, connect(settings) if connection is None else connection)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        # The process's logging (the CLI's -v) applies; one line per request is too many.
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
    )
    return uvicorn.Server(config)


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the HTTP API on ``host:port`` until interrupted (see :func:`make_server`)."""
    make_server(settings, host, port).run()
