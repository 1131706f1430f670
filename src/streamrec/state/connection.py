"""Connections to Redis: a URL, or the embedded server of this home
(:mod:`~streamrec.state.embedded`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis

from streamrec.errors import ConfigError, RedisUnavailableError
from streamrec.settings import Settings, check_redis_url, redact_url
from streamrec.state.embedded import EmbeddedRedis


def connect(settings: Settings, **kwargs: Any) -> redis.Redis:
    """A client for the configured Redis, starting the embedded server if needed.

    Commands time out after ``settings.socket_timeout`` seconds and connecting after
    ``settings.connect_timeout`` seconds unless ``kwargs`` say otherwise.

    Args:
        settings: where Redis is (``redis_url``) or where the embedded one lives (``home``).
        **kwargs: extra ``redis.Redis`` options, overriding the defaults (e.g.
            ``socket_timeout=None`` for blocking reads).

    Raises:
        ConfigError: ``redis_url`` is not a Redis URL, or ``redis_ca_certs`` is set without a
            ``rediss://`` URL or names no file.
        RedisUnavailableError: the server cannot be reached or started, or the socket of the
            embedded server is not private or is served by another server.
    """
    options: dict[str, Any] = {
        "socket_timeout": settings.socket_timeout,
        "socket_connect_timeout": settings.connect_timeout,
        **kwargs,
    }
    if settings.redis_url:
        url = check_redis_url(settings.redis_url)
        if settings.redis_ca_certs is not None:
            options.setdefault("ssl_ca_certs", str(_ca_certs(settings.redis_ca_certs, url)))
        try:
            client = redis.Redis.from_url(url, **options)
        except ValueError as exc:
            raise ConfigError(
                f"STREAMREC_REDIS_URL is not a usable Redis URL ({exc}; got {redact_url(url)!r})"
            ) from None
        _ping(client, url)
        return client
    server = EmbeddedRedis(settings.redis_dir)
    server.ensure_running()
    return server.client(**options)


def _ca_certs(path: Path, url: str) -> Path:
    # Only an SSL connection takes ssl_ca_certs (redis-py's plain one refuses the argument),
    # and a missing file would surface later as an unreachable server.
    if not url.startswith("rediss://"):
        raise ConfigError(
            "STREAMREC_REDIS_CA_CERTS needs a rediss:// STREAMREC_REDIS_URL "
            f"(got {redact_url(url)!r})"
        )
    if not path.is_file():
        raise ConfigError(f"STREAMREC_REDIS_CA_CERTS must name a PEM file (got {str(path)!r})")
    return path


def stop_embedded(settings: Settings) -> bool:
    """Shut the embedded server of this home down (saving its data). True if one was running."""
    return EmbeddedRedis(settings.redis_dir).stop()


def describe(settings: Settings) -> str:
    """Where the configured Redis is, for humans (passwords hidden)."""
    if settings.redis_url:
        return redact_url(settings.redis_url)
    return f"embedded redis-server at {EmbeddedRedis(settings.redis_dir).socket_path}"


def _ping(client: redis.Redis, url: str) -> None:
    safe = redact_url(url)
    try:
        client.ping()
    except redis.AuthenticationError as exc:
        client.close()
        raise RedisUnavailableError(
            f"Redis at {safe} refused the credentials in STREAMREC_REDIS_URL: {exc}"
        ) from exc
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        client.close()
        raise RedisUnavailableError(f"cannot reach Redis at {safe}: {exc}") from exc
