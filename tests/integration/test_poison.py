"""Whatever reaches a queue, a worker goes on: entries RQ cannot load and jobs streamrec did
not send are set aside with their reason, never run, never pushed back."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from rq import Queue
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer

from streamrec import keys
from streamrec.cli import cli
from streamrec.producer import Producer
from streamrec.settings import Settings
from streamrec.state.quarantine import Quarantine
from streamrec.state.queues import APPLY_EVENTS, SafeJob, queue
from streamrec.state.stats import read_counts
from streamrec.worker.recovery import recover
from tests.integration.helpers import drain


def plain_queue(conn: redis.Redis, name: str = keys.EVENTS_QUEUE) -> Queue:
    """The queue as any RQ client (an attacker's) sees it: no allow-list."""
    return Queue(name, connection=conn, serializer=JSONSerializer)


def send_valid(conn: redis.Redis, settings: Settings, n: int, tag: str) -> None:
    with Producer(settings, connection=conn, linger=0, batch_size=5) as producer:
        for i in range(n):
            producer.send(f"{tag}-user-{i % 3}", f"item-{i}", 1)


def poison_entries(conn: redis.Redis, marker: Path) -> dict[str, str]:
    """Push one of each kind of poison onto the events queue; returns id -> expected reason."""
    q = plain_queue(conn)
    expected = {}
    # a job id RQ cannot parse, with no job behind it
    conn.rpush(q.key, "bad{id}:x")
    expected["bad{id}:x"] = "not a streamrec job id"
    # a job key of the wrong type
    conn.set("rq:job:wrongtype", "not a hash")
    conn.rpush(q.key, "wrongtype")
    expected["wrongtype"] = "cannot load"
    # a job hash with a field RQ cannot read
    job = q.enqueue(APPLY_EVENTS, "b-timeout", [{"user": "t", "item": "i"}], job_id="badtimeout")
    conn.hset(job.key, "timeout", "abc")
    expected["badtimeout"] = "cannot load"
    # a job naming a function that is not ours: would run a shell command
    q.enqueue("os.system", f"touch {marker}", job_id="runsos")
    expected["runsos"] = "'os.system' is not allowed"
    # our function, with a failure callback that would be imported and called
    job = q.enqueue(APPLY_EVENTS, "b-callback", [{"user": "c", "item": "i"}], job_id="callback")
    conn.hset(job.key, "failure_callback_name", "os.system")
    expected["callback"] = "no failure callback"
    # pickled data instead of JSON
    job = q.enqueue(APPLY_EVENTS, "b-pickle", [], job_id="pickled")
    conn.hset(job.key, "data", zlib.compress(pickle.dumps(("os.system", None, ("id",), {}))))
    expected["pickled"] = "cannot read its data"
    # the training function on the events queue
    q.enqueue("streamrec.worker.jobs.retrain_model", "als", job_id="wrongqueue")
    expected["wrongqueue"] = "not allowed on queue 'events'"
    return expected


def test_poison_entries_are_set_aside_and_the_batches_behind_them_are_applied(
    redis_conn: redis.Redis, settings: Settings, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    send_valid(redis_conn, settings, 10, "before")
    expected = poison_entries(redis_conn, marker)
    send_valid(redis_conn, settings, 10, "after")

    drain(redis_conn, settings)

    assert read_counts(redis_conn).events_applied == 20
    assert not marker.exists()
    found = {e["job_id"]: e["reason"] for e in Quarantine(redis_conn).entries(0)}
    assert set(found) == set(expected)
    for job_id, reason in expected.items():
        assert reason in found[job_id], (job_id, found[job_id])
    q = queue(redis_conn)
    assert q.count == 0 and q.intermediate_queue.get_job_ids() == []
    assert not redis_conn.exists("rq:job:runsos")  # set aside: nothing left to run
    shown = CliRunner().invoke(cli, ["quarantine", "--limit", "0"], catch_exceptions=False)
    assert "Quarantine (7)" in shown.output and "os.system" in shown.output
    status = CliRunner().invoke(cli, ["status", "--json"], catch_exceptions=False)
    assert json.loads(status.stdout)["state"]["quarantined"] == 7


def test_a_worker_process_exits_zero_only_after_applying_everything(
    redis_conn: redis.Redis, settings: Settings, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    poison_entries(redis_conn, tmp_path / "ran")
    send_valid(redis_conn, settings, 10, "after")
    done = subprocess.run(
        [sys.executable, "-m", "streamrec", "worker", "--burst"],
        env=subprocess_env,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert read_counts(redis_conn).events_applied == 10
    assert Quarantine(redis_conn).count() == 7


def test_recovery_never_pushes_a_poison_entry_back(
    redis_conn: redis.Redis, settings: Settings
) -> None:
    """A worker that died holding a poison entry (in the intermediate list, or started)
    leaves it to the next one, which sets it aside instead of requeueing it at the front."""
    q = queue(redis_conn)
    redis_conn.rpush(q.intermediate_queue_key, "bad{id}")
    job = plain_queue(redis_conn).enqueue(APPLY_EVENTS, "b", [], job_id="startedbad")
    redis_conn.hset(job.key, "timeout", "abc")
    redis_conn.lrem(q.key, 0, "startedbad")
    redis_conn.zadd(StartedJobRegistry(queue=q).key, {"startedbad:exec1": 0})
    send_valid(redis_conn, settings, 5, "ok")

    assert recover(redis_conn, [keys.EVENTS_QUEUE], Quarantine(redis_conn)) == 2
    assert redis_conn.lrange(q.key, 0, 0) != [b"bad{id}"]
    assert b"bad{id}" not in redis_conn.lrange(q.key, 0, -1)
    drain(redis_conn, settings)
    assert read_counts(redis_conn).events_applied == 5
    assert {e["job_id"] for e in Quarantine(redis_conn).entries(0)} == {"bad{id}", "startedbad"}


def test_rq_cleanup_of_a_dead_workers_job_never_calls_its_callback(
    redis_conn: redis.Redis, tmp_path: Path
) -> None:
    """RQ's own registry clean-up imports and calls a failure callback: ours never does."""
    marker = tmp_path / "called"
    q = queue(redis_conn)
    job = plain_queue(redis_conn).enqueue("os.system", f"touch {marker}", job_id="cb")
    redis_conn.hset(job.key, mapping={"failure_callback_name": "os.system", "status": "started"})
    redis_conn.zadd(StartedJobRegistry(queue=q).key, {"cb:exec1": 0})
    StartedJobRegistry(queue=q).cleanup()
    assert not marker.exists()
    loaded = SafeJob.fetch("cb", connection=redis_conn, serializer=JSONSerializer)
    assert loaded.failure_callback is None
    with pytest.raises(Exception, match="not allowed"):
        _ = loaded.func


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("os.system", ["true"]),
        ("subprocess.check_call", [["true"]]),
        ("builtins.eval", ["1"]),
        ("streamrec.worker.jobs.bound", []),
    ],
)
def test_only_streamrec_job_functions_pass_the_allow_list(
    redis_conn: redis.Redis, name: str, args: list[Any]
) -> None:
    job = plain_queue(redis_conn).enqueue(name, *args)
    loaded = SafeJob.fetch(job.id, connection=redis_conn, serializer=JSONSerializer)
    with pytest.raises(Exception, match="not allowed"):
        loaded.check()
