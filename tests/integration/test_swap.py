"""A retrain publishes a new version under traffic: a real worker applies events all along
and switches between batches; readers never see an error, an empty list, or a list of one
version stamped with another."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from typing import Any

import pytest
import redis

from streamrec.producer import Producer
from streamrec.serving.training import train_als
from streamrec.settings import Settings
from streamrec.state.client import RecommendationClient
from streamrec.state.connection import connect
from streamrec.state.registry import ModelRegistry
from tests.integration.helpers import ALS_PARAMS

pytestmark = pytest.mark.slow


def items_of(client: RecommendationClient, users: list[str]) -> dict[str, tuple[int, list[str]]]:
    found = client.get_many(users)
    out = {}
    for user, recs in found.items():
        assert recs is not None and recs.personal
        out[user] = (recs.version, [r.item for r in recs.items])
    return out


def test_readers_see_one_whole_version_or_the_next_through_a_retrain_under_load(
    redis_conn: redis.Redis,
    settings: Settings,
    subprocess_env: dict[str, str],
    trained: dict[str, int],
) -> None:
    client = RecommendationClient(settings, connection=redis_conn)
    users = sorted(u.decode() for u in redis_conn.hkeys("streamrec:vocab:users"))
    quiet, busy = users[:40], users[40:]  # quiet users get no events during the test
    old_version = ModelRegistry(redis_conn, settings).active_version("als")
    before = items_of(client, quiet)
    assert {v for v, _ in before.values()} == {old_version}

    worker = subprocess.Popen(
        [sys.executable, "-m", "streamrec", "worker"],
        env=subprocess_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stop = threading.Event()
    reads: list[tuple[str, int, list[str]]] = []
    problems: list[str] = []
    items = sorted(trained)

    def read() -> None:
        conn = connect(settings)
        reader = RecommendationClient(settings, connection=conn)
        while not stop.is_set():
            try:
                for user, recs in reader.get_many(quiet + busy[:20]).items():
                    if recs is None or not recs.items or not recs.personal:
                        problems.append(f"{user}: {recs}")
                    elif user in before:
                        reads.append((user, recs.version, [r.item for r in recs.items]))
            except Exception as exc:  # any error a reader meets fails the test
                problems.append(repr(exc))

    def write() -> None:
        conn = connect(settings)
        with Producer(settings, connection=conn) as producer:
            n = 0
            while not stop.is_set():
                producer.send(busy[n % len(busy)], items[(n * 7) % len(items)], 1)
                n += 1
                time.sleep(0.001)

    threads = [threading.Thread(target=read), threading.Thread(target=write)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(1.5)
        report = train_als(redis_conn, settings, ALS_PARAMS)  # publishes, refreshes everyone
        assert report.version == (old_version or 0) + 1
        time.sleep(1.5)  # the worker serves busy users with the new version meanwhile
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        worker.terminate()
        worker.wait(timeout=30)

    after = items_of(client, quiet)
    assert {v for v, _ in after.values()} == {report.version}
    assert not problems, problems[:5]
    expected: dict[tuple[str, int], list[str]] = {}
    for user in quiet:
        expected[(user, before[user][0])] = before[user][1]
        expected[(user, after[user][0])] = after[user][1]
    versions_seen: dict[int, int] = {}
    for user, version, listed in reads:
        assert listed == expected[(user, version)], (user, version)
        versions_seen[version] = versions_seen.get(version, 0) + 1
    assert set(versions_seen) == {old_version, report.version}, versions_seen
    busy_versions: Any = {r.version for r in client.get_many(busy[:20]).values() if r}
    assert busy_versions == {report.version}
