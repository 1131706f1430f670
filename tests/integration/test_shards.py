"""Event shards: each user's events go to one events queue, and the workers of different
shards share no user (``settings.event_shards``)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import redis
from click.testing import CliRunner

from streamrec import keys
from streamrec.cli import cli
from streamrec.producer import Producer
from streamrec.serving.online import OnlineServing
from streamrec.settings import Settings
from streamrec.state.erasure import forget_user
from streamrec.state.histories import HistoryStore
from streamrec.state.queues import SafeJob, queue
from streamrec.state.stats import read_counts
from streamrec.worker.runner import run_worker
from streamrec.worker.status import collect_status
from tests.integration.helpers import dump_state

USERS = [f"user-{n}" for n in range(40)] + ["ünïcode ✓", "x" * 200]


def send_all(
    conn: redis.Redis, settings: Settings, per_user: int = 3, items: list[str] | None = None
) -> Counter[str]:
    """``per_user`` plays of every user of :data:`USERS`, interleaved; events per user."""
    items = items or [f"item-{n}" for n in range(11)]
    sent: Counter[str] = Counter()
    with Producer(settings, connection=conn, batch_size=16, linger=60) as producer:
        for n in range(per_user):
            for user in USERS:
                item = items[(n * 7 + len(user)) % len(items)]
                producer.send(user, item, 1, timestamp=1_700_000_000 + n)
                sent[user] += 1
    return sent


def queued_users(conn: redis.Redis, name: str) -> Counter[str]:
    """Events per user in the jobs waiting on queue ``name`` (checked as a worker would)."""
    found: Counter[str] = Counter()
    for job_id in queue(conn, name).get_job_ids():
        job = SafeJob.fetch(job_id, connection=conn, serializer=queue(conn).serializer)
        job.check()
        assert job.origin == name
        found.update(event["user"] for event in job.args[1])
    return found


def test_the_producer_sends_every_event_of_a_user_to_the_users_shard(
    redis_conn: redis.Redis, settings: Settings
) -> None:
    sharded = settings.with_(event_shards=3)
    sent = send_all(redis_conn, sharded)

    by_queue = {name: queued_users(redis_conn, name) for name in keys.events_queues(3)}
    for shard, name in enumerate(keys.events_queues(3)):
        assert by_queue[name], f"no events reached {name}"
        assert {keys.shard_of(user, 3) for user in by_queue[name]} == {shard}
    assert sum(by_queue.values(), Counter()) == sent
    assert queue(redis_conn, "events-3").count == 0


def test_workers_on_their_own_shards_apply_every_event_once_and_serve_each_user(
    redis_conn: redis.Redis, settings: Settings, trained: dict[str, int]
) -> None:
    sharded = settings.with_(event_shards=2)
    sent = send_all(redis_conn, sharded, items=sorted(trained))
    assert all(queue(redis_conn, name).count for name in keys.events_queues(2))

    run_worker(redis_conn, sharded, [keys.events_queue(1)], burst=True)  # shard 1 alone
    assert queue(redis_conn, keys.events_queue(1)).count == 0
    assert queue(redis_conn, keys.EVENTS_QUEUE).count > 0  # shard 0 untouched
    run_worker(redis_conn, sharded, [keys.EVENTS_QUEUE], burst=True)

    store = HistoryStore(redis_conn, sharded)
    assert read_counts(redis_conn).events_applied >= sum(sent.values())
    online = OnlineServing(redis_conn, sharded)
    for user, n in sent.items():
        history = store.get(user)
        assert history.version == n and sum(history.interactions.values()) == n
        raw = redis_conn.get(keys.recommendations_key(user, "als"))
        assert raw is not None, f"{user} was not served"
        assert json.loads(raw)["history_version"] == history.version
    assert online.cache.connection.hlen(keys.unserved_key()) == 0


def test_two_worker_processes_of_one_command_split_the_shards_and_match_a_serial_apply(
    redis_conn: redis.Redis, settings: Settings, subprocess_env: dict[str, str]
) -> None:
    sharded = settings.with_(event_shards=2)
    send_all(redis_conn, sharded, per_user=6)
    expected_counts = {name: queue(redis_conn, name).count for name in keys.events_queues(2)}
    assert all(expected_counts.values())

    env = dict(subprocess_env, STREAMREC_EVENT_SHARDS="2")
    done = subprocess.run(
        [sys.executable, "-m", "streamrec", "worker", "--processes", "2", "--burst"],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "2 process(es) on queue(s) events; events-1" in done.stderr
    applied = dump_state(redis_conn, HistoryStore(redis_conn, sharded))
    assert all(queue(redis_conn, name).count == 0 for name in keys.events_queues(2))

    redis_conn.flushdb()  # the same events, one shard, one worker in this process
    send_all(redis_conn, settings, per_user=6)
    run_worker(redis_conn, settings, [keys.EVENTS_QUEUE], burst=True)
    assert dump_state(redis_conn, HistoryStore(redis_conn, settings)) == applied


def test_status_counts_every_shard_and_forget_scrubs_the_users_shard(
    redis_conn: redis.Redis, settings: Settings
) -> None:
    sharded = settings.with_(event_shards=2)
    sent = send_all(redis_conn, sharded)
    waiting = sum(queue(redis_conn, name).count for name in keys.events_queues(2))

    status = collect_status(redis_conn, "test", sharded)
    assert status.lag.queued_batches == waiting
    assert [q.name for q in status.queues] == ["events", "events-1", "training"]

    user = "ünïcode ✓"
    report = forget_user(redis_conn, sharded, user, ["als"])
    assert report.queued_events == sent[user]
    name = keys.events_queue(keys.shard_of(user, 2))
    assert user not in queued_users(redis_conn, name)


def test_the_worker_command_serves_only_the_shards_that_exist(
    redis_conn: redis.Redis, settings: Settings
) -> None:
    runner = CliRunner()
    refused = runner.invoke(cli, ["worker", "--burst", "-q", "events-1"])
    assert refused.exit_code == 2
    assert "events-1 (queues are events, training)" in refused.output

    env = {"STREAMREC_EVENT_SHARDS": "2"}
    send_all(redis_conn, settings.with_(event_shards=2))
    ran = runner.invoke(cli, ["worker", "--burst", "-q", "events-1"], env=env)
    assert ran.exit_code == 0, ran.output
    assert queue(redis_conn, "events-1").count == 0 and queue(redis_conn).count > 0
