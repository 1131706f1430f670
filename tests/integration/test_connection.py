"""The embedded Redis: one real server per home, shared by every process, persistent."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from streamrec.errors import RedisUnavailableError
from streamrec.settings import Settings
from streamrec.state.connection import connect, stop_embedded
from streamrec.state.embedded import EmbeddedRedis

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
    assert server.socket_path.parent.name == f"streamrec-{os.getuid()}"
    settings = Settings(home=deep)
    try:
        assert connect(settings).ping()
        assert os.lstat(server.socket_path.parent).st_mode & 0o777 == 0o700
    finally:
        stop_embedded(settings)


def test_connect_applies_the_timeouts_of_the_settings(settings: Settings) -> None:
    timed = settings.with_(socket_timeout=0.3, connect_timeout=1.25)
    client = connect(timed, retry=Retry(NoBackoff(), 0))
    options = client.connection_pool.connection_kwargs
    assert (options["socket_timeout"], options["socket_connect_timeout"]) == (0.3, 1.25)
    assert not options.get("health_check_interval")
    with pytest.raises(redis.TimeoutError):  # a read longer than socket_timeout gives up
        client.blpop(["streamrec:test:never-pushed"], timeout=2)
    client.close()
    blocking = connect(timed, socket_timeout=None)  # callers still override
    assert blocking.connection_pool.connection_kwargs["socket_timeout"] is None
    assert blocking.blpop(["streamrec:test:never-pushed"], timeout=1) is None
    blocking.close()


def _pid(server: EmbeddedRedis) -> int:
    return int((server.directory / "redis.pid").read_text())


def _refuses_connections(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
        except ConnectionRefusedError:
            return True
    return False


@pytest.mark.slow
def test_a_killed_server_is_restarted_with_the_data_it_synced(private_home: Settings) -> None:
    client = connect(private_home)
    client.mset({f"streamrec:probe:{i}": i for i in range(1_000)})
    client.incrby("streamrec:probe:counter", 41)
    client.close()
    time.sleep(1.5)  # appendfsync everysec: the append-only file is on disk by now
    server = EmbeddedRedis(private_home.redis_dir)
    killed = _pid(server)
    os.kill(killed, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not _refuses_connections(server.socket_path):
        assert time.monotonic() < deadline, "the killed server still accepts connections"
        time.sleep(0.02)
    assert server.socket_path.is_socket()  # stale socket and pid file left behind
    assert (server.directory / "redis.pid").exists()
    assert not server.is_running()

    server.ensure_running()

    assert _pid(server) != killed
    client = server.client()
    assert client.get("streamrec:probe:999") == b"999"
    assert client.dbsize() == 1_001
    assert client.incr("streamrec:probe:counter") == 42
    client.close()


def test_a_server_that_lost_its_socket_is_not_started_twice(private_home: Settings) -> None:
    connect(private_home).close()
    server = EmbeddedRedis(private_home.redis_dir)
    pid = _pid(server)
    server.socket_path.unlink()  # the server runs on, unreachable
    try:
        with pytest.raises(RedisUnavailableError, match=f"kill {pid}"):
            server.ensure_running()
        assert _pid(server) == pid
        assert not server.socket_path.exists()
    finally:
        os.kill(pid, signal.SIGTERM)


def test_a_server_that_does_not_answer_is_not_replaced(private_home: Settings) -> None:
    connect(private_home).close()
    server = EmbeddedRedis(private_home.redis_dir, timeout=0.5)
    pid = _pid(server)
    os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(RedisUnavailableError, match=rf"does not answer.*kill {pid}"):
            server.ensure_running()
        assert _pid(server) == pid
        assert server.socket_path.is_socket()
    finally:
        os.kill(pid, signal.SIGCONT)
    assert stop_embedded(private_home)


def test_a_server_that_cannot_start_is_reported_at_once(private_home: Settings) -> None:
    private_home.redis_dir.mkdir(parents=True, mode=0o700)
    (private_home.redis_dir / "appendonly.aof").write_text("not an append-only file\n")
    began = time.monotonic()
    with pytest.raises(RedisUnavailableError, match=r"exited while starting.*Bad file format"):
        connect(private_home)
    assert time.monotonic() - began < 5  # not the whole start timeout
