"""The embedded Redis: one real server per home, shared by every process, persistent."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamrec.settings import Settings
from streamrec.state.connection import EmbeddedRedis, connect, stop_embedded

START_AND_PID = (
    "import sys; from pathlib import Path; from streamrec.settings import Settings; "
    "from streamrec.state.connection import connect; "
    "print(connect(Settings(home=Path(sys.argv[1]))).info('server')['process_id'])"
)


@pytest.fixture
def private_home(tmp_path: Path) -> Iterator[Settings]:
    settings = Settings(home=tmp_path / "home")
    yield settings
    stop_embedded(settings)


def test_processes_starting_at_once_share_one_server(private_home: Settings) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", START_AND_PID, str(private_home.home)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    pids = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(pids) == 1 and pids != {""}


def test_data_survives_a_stop_and_restart(private_home: Settings) -> None:
    connect(private_home).set("streamrec:probe", "kept")
    assert stop_embedded(private_home)
    assert not EmbeddedRedis(private_home.redis_dir).is_running()
    assert connect(private_home).get("streamrec:probe") == b"kept"


def test_a_deep_home_gets_a_short_socket_path(tmp_path: Path) -> None:
    deep = tmp_path.joinpath(*["a-rather-long-folder-name"] * 6)
    server = EmbeddedRedis(deep / "redis")
    assert len(str(server.socket_path)) <= 100
    settings = Settings(home=deep)
    try:
        assert connect(settings).ping()
    finally:
        stop_embedded(settings)
