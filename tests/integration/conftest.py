"""Fixtures of the integration tests (the real Redis fixtures are in tests/conftest.py)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from streamrec.data.synthetic import generate
from streamrec.serving.training import train_als
from streamrec.settings import Settings
from streamrec.state.bulk import BulkLoader
from streamrec.state.connection import stop_embedded
from tests.integration.helpers import ALS_CONFIG, ALS_PARAMS


@pytest.fixture
def trained(redis_conn: redis.Redis, settings: Settings) -> dict[str, int]:
    """A synthetic state with an ALS model trained on it: item -> planted group."""
    data = generate(ALS_CONFIG)
    BulkLoader(redis_conn, settings).load_events(data.events, "synthetic")
    report = train_als(redis_conn, settings, ALS_PARAMS)
    assert report.refreshed == ALS_CONFIG.n_users
    return data.item_group


@pytest.fixture
def private_settings() -> Iterator[Settings]:
    """Settings of an embedded Redis of this test's own (short) home, for tests that break
    the server (kill it, pause it, make it sleep): never the session's shared server, and
    independent of STREAMREC_REDIS_URL."""
    home = Path(tempfile.mkdtemp(prefix="sr-", dir="/tmp"))
    settings = Settings(home=home, socket_timeout=0.5, connect_timeout=0.5)
    try:
        yield settings
    finally:
        with contextlib.suppress(Exception):
            stop_embedded(settings)
        kill_server(settings)
        shutil.rmtree(home, ignore_errors=True)


def kill_server(settings: Settings) -> bool:
    """SIGKILL the embedded server of ``settings`` (no shutdown, no save); True if it ran."""
    pid_file = settings.redis_dir / "redis.pid"
    try:
        pid = int(pid_file.read_text())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.01)
    raise AssertionError(f"redis-server {pid} survived SIGKILL")
