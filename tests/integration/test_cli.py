"""The `streamrec` CLI through click's CliRunner, on the real test Redis."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from streamrec.cli import cli
from streamrec.producer import JOB_FUNCTION
from streamrec.settings import Settings
from streamrec.state.client import RecommendationClient
from streamrec.state.deadletters import DeadLetterStore
from streamrec.state.histories import HistoryStore
from streamrec.state.queues import queue
from tests.integration.helpers import drain


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def invoke(runner: CliRunner, *args: str) -> str:
    """The command's standard output (results; progress and warnings go to stderr)."""
    result = runner.invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_push_then_worker_then_status(
    runner: CliRunner, redis_conn: redis.Redis, settings: Settings
) -> None:
    pushed = runner.invoke(cli, ["push", "alice", "song-1", "--weight", "3"])
    assert "no worker listens" in pushed.stderr and "no worker" not in pushed.stdout
    invoke(runner, "push", "alice", "film-1", "--kind", "rating", "--weight", "4.5",
           "--timestamp", "2024-05-01T10:00:00")  # fmt: skip
    status = json.loads(invoke(runner, "status", "--json"))
    assert {q["name"]: q["queued"] for q in status["queues"]}["events"] == 2
    invoke(runner, "worker", "--burst")
    status = json.loads(invoke(runner, "status", "--json"))
    assert status["state"]["users"] == 1 and status["state"]["events_applied"] == 2
    history = HistoryStore(redis_conn, settings).get("alice")
    assert history.interactions == {"song-1": 3.0} and history.ratings == {"film-1": 4.5}
    table = invoke(runner, "status")
    assert "events applied" in table and "Queues" in table


def test_push_rejects_an_invalid_event_with_a_clear_error(
    runner: CliRunner, redis_conn: redis.Redis
) -> None:
    result = runner.invoke(cli, ["push", "alice", "film", "--kind", "rating", "--weight", "11"])
    assert result.exit_code == 3
    assert "weight must be a rating between 0.5 and 5 (got 11.0)" in result.output
    assert queue(redis_conn).count == 0


def test_dead_letters_show_and_retry(
    runner: CliRunner, redis_conn: redis.Redis, settings: Settings
) -> None:
    queue(redis_conn).enqueue(
        JOB_FUNCTION,
        "b1",
        [{"user": "bob", "item": "x", "kind": "like"}, {"user": "bob", "item": "y"}],
    )
    drain(redis_conn, settings)
    listing = invoke(runner, "dead-letters", "--json")
    letter = json.loads(listing.splitlines()[0])
    assert letter["field"] == "kind" and "like" in letter["reason"]
    out = invoke(runner, "dead-letters", "--retry")
    assert "0 events" in out and "1 are still invalid" in out
    # once the kind is configured, a retry applies it
    env = {"STREAMREC_KIND_WEIGHTS": "play=1,like=2"}
    out = runner.invoke(cli, ["dead-letters", "--retry"], env=env, catch_exceptions=False).output
    assert "re-sent 1 events" in out
    assert DeadLetterStore(redis_conn).count() == 0
    runner.invoke(cli, ["worker", "--burst"], env=env, catch_exceptions=False)
    assert HistoryStore(redis_conn, settings).get("bob").interactions == {"y": 1.0, "x": 2.0}


def test_forget_removes_the_user(runner: CliRunner, redis_conn: redis.Redis) -> None:
    invoke(runner, "push", "carol", "a")
    invoke(runner, "worker", "--burst")
    assert "forgot carol" in invoke(runner, "forget", "carol")
    assert [k for k in redis_conn.scan_iter(match="streamrec:*carol*")] == []
    assert "was not known" in invoke(runner, "forget", "carol")


def test_import_and_replay_a_csv(
    runner: CliRunner, redis_conn: redis.Redis, settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "events.csv"
    path.write_text(
        "user,item,weight,kind,timestamp\nu1,i1,2,play,1700000000\nu1,i2,,click,\nu2,i1,abc,play,\n"
    )
    out = invoke(runner, "import", str(path), "--format", "csv")
    assert "imported 2 events" in out and "1 dead letters" in out
    assert HistoryStore(redis_conn, settings).get("u1").interactions == {"i1": 2.0, "i2": 1.0}
    out = invoke(runner, "replay", str(path), "--format", "csv", "--rate", "1000")
    assert "sent 2 events" in out and "1 rejected" in out
    drain(redis_conn, settings)
    assert HistoryStore(redis_conn, settings).get("u1").interactions == {"i1": 4.0, "i2": 2.0}


def test_unreachable_redis_url_is_a_clear_error(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["--redis-url", "redis://127.0.0.1:1/0", "status"])
    assert result.exit_code == 5
    assert "cannot reach Redis at redis://127.0.0.1:1/0" in result.output
    result = runner.invoke(cli, ["--redis-url", "redis://app:s3cret@127.0.0.1:1/0", "status"])
    assert "@127.0.0.1:1/0" in result.output and "s3cret" not in result.output


def test_a_second_process_shares_the_server(
    redis_conn: redis.Redis, subprocess_env: dict[str, str]
) -> None:
    redis_conn.hset("streamrec:stats", "events_applied", 41)
    out = subprocess.run(
        [sys.executable, "-m", "streamrec", "status", "--json"],
        env=subprocess_env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert json.loads(out)["state"]["events_applied"] == 41


@pytest.mark.slow
def test_demo_runs_the_whole_pipeline(runner: CliRunner, redis_conn: redis.Redis) -> None:
    args = ["demo", "--users", "120", "--items", "80", "--live-users", "5", "--rate", "2000"]
    result = runner.invoke(cli, [*args, "--reset"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "history version" in result.output and "events applied" in result.output
    assert "critic: kmf list" in result.output
    entry = RecommendationClient(connection=redis_conn, model="kmf").get("critic")
    assert entry is not None and entry.personal and entry.user == "critic"
    assert entry.history_version == 4
    status = json.loads(invoke(runner, "status", "--json"))
    assert status["state"]["users"] == 121  # the generated people and the live critic
    assert status["queues"][0]["queued"] == 0
