"""An event that ``send()`` accepted is applied exactly once, whatever the connection does:
lost replies (the server executed the enqueue, the client never heard), killed
connections, a paused or sleeping server, a server killed and restarted. Every test breaks
a real server; none patches a method."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import redis

from streamrec.errors import ConfigError, DeliveryError
from streamrec.events import Event
from streamrec.producer import Producer
from streamrec.settings import Settings
from streamrec.state.connection import connect
from streamrec.state.embedded import EmbeddedRedis
from streamrec.state.histories import HistoryStore
from streamrec.state.queues import queue
from streamrec.state.stats import read_counts
from tests.integration.conftest import kill_server
from tests.integration.helpers import drain


def send_events(producer: Producer, n: int, tag: str, rate: float | None = None) -> list[Event]:
    """Send ``n`` events, each of a distinct item, at ``rate`` per second; the accepted."""
    start = time.monotonic()
    accepted = []
    for i in range(n):
        accepted.append(producer.send(f"{tag}-u{i % 7}", f"{tag}-i{i}", 1))
        if rate is not None:
            ahead = (i + 1) / rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
    return accepted


def lost_and_doubled(conn: redis.Redis, settings: Settings, events: list[Event]) -> Counter[str]:
    """How many accepted events the state lacks, or holds more than once."""
    store = HistoryStore(conn, settings)
    histories = {user: store.get(user).interactions for user in {e.user for e in events}}
    result: Counter[str] = Counter()
    for e in events:
        value = histories[e.user].get(e.item)
        result["lost" if value is None else "doubled" if value > 1 else "once"] += 1
    return result


def test_a_lost_reply_never_loses_or_doubles_an_event(private_settings: Settings) -> None:
    """The server sleeps while the producer's enqueue waits in its socket: the client times
    out, the server then executes the enqueue anyway and the producer retries it."""
    conn = connect(private_settings)
    admin = connect(private_settings, socket_timeout=30)
    producer = Producer(private_settings, connection=conn, linger=0, batch_size=10)
    accepted = send_events(producer, 10, "w")
    producer.flush()  # the producer is connected and knows its server
    sleeper = threading.Thread(target=admin.execute_command, args=("DEBUG", "SLEEP", "1.5"))
    sleeper.start()
    time.sleep(0.2)
    accepted += send_events(producer, 10, "a")  # a full batch: its delivery times out
    time.sleep(0.6)
    accepted += send_events(producer, 15, "b")  # meanwhile: a new batch, not the old one
    sleeper.join()
    producer.close()
    queued = queue(conn).get_job_ids()
    assert len(queued) > len(set(queued))  # the timed-out enqueue did happen: twice
    drain(conn, private_settings)
    assert producer.attempts_failed >= 1
    assert lost_and_doubled(conn, private_settings, accepted) == Counter(once=35)


def test_killed_connections_never_lose_or_double_an_event(
    redis_conn: redis.Redis, settings: Settings
) -> None:
    admin = connect(settings)
    stop = threading.Event()

    def killer() -> None:
        while not stop.wait(0.03):
            admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")

    producer = Producer(settings, connection=connect(settings), batch_size=20, linger=0.005)
    thread = threading.Thread(target=killer)
    thread.start()
    try:
        accepted = send_events(producer, 3000, "k", rate=3000)
        producer.flush(timeout=30)
    finally:
        stop.set()
        thread.join()
        producer.close()
    drain(redis_conn, settings)
    assert lost_and_doubled(redis_conn, settings, accepted) == Counter(once=3000)


def test_a_paused_server_delays_delivery_and_loses_nothing(private_settings: Settings) -> None:
    conn = connect(private_settings)
    producer = Producer(private_settings, connection=conn, batch_size=20, linger=0.005)
    connect(private_settings).execute_command("CLIENT", "PAUSE", "1500")
    accepted = send_events(producer, 400, "p", rate=500)
    producer.close()
    drain(conn, private_settings)
    assert producer.attempts_failed >= 1
    assert lost_and_doubled(conn, private_settings, accepted) == Counter(once=400)


@pytest.mark.slow
def test_a_server_killed_and_restarted_mid_stream_loses_and_doubles_nothing(
    private_settings: Settings,
) -> None:
    """kill -9 of the server, and the last second of its append-only file lost with it (as
    a machine crash under ``appendfsync everysec`` would lose it), a restart a second
    later: the producer retries, then sends its recent batches again."""
    conn = connect(private_settings)
    producer = Producer(private_settings, connection=conn, batch_size=25, linger=0.01)
    accepted: list[Event] = []
    sender = threading.Thread(
        target=lambda: accepted.extend(send_events(producer, 3000, "r", rate=1000))
    )
    sender.start()
    aof = private_settings.redis_dir / "appendonly.aof"
    time.sleep(0.8)
    synced = aof.stat().st_size
    time.sleep(0.8)
    assert kill_server(private_settings)
    assert aof.stat().st_size > synced
    os.truncate(aof, synced)  # the writes of the last 0.8 s never reached the disk
    time.sleep(0.5)
    EmbeddedRedis(private_settings.redis_dir).ensure_running()
    sender.join()
    producer.flush(timeout=60)
    producer.close()
    drain(conn, private_settings)
    assert lost_and_doubled(conn, private_settings, accepted) == Counter(once=3000)
    assert producer.batches_resent >= 1


def test_send_never_waits_for_redis_and_flush_says_what_was_not_delivered(
    private_settings: Settings,
) -> None:
    conn = connect(private_settings)
    assert kill_server(private_settings)
    producer = Producer(private_settings, connection=conn, linger=0, batch_size=30)
    start = time.monotonic()
    accepted = send_events(producer, 100, "d")
    assert time.monotonic() - start < 1.0  # buffered: send() does not talk to Redis
    with pytest.raises(DeliveryError, match="100 events not delivered") as caught:
        producer.flush(timeout=1.0)
    assert caught.value.undelivered == 100 and producer.buffered == 100
    EmbeddedRedis(private_settings.redis_dir).ensure_running()
    producer.close()  # the buffered events are delivered now
    drain(conn, private_settings)
    assert lost_and_doubled(conn, private_settings, accepted) == Counter(once=100)


def test_send_refuses_an_event_it_cannot_buffer_and_keeps_none_of_it(
    private_settings: Settings,
) -> None:
    settings = private_settings.with_(max_buffered=50, delivery_timeout=0.5)
    conn = connect(settings)
    assert kill_server(settings)
    producer = Producer(settings, connection=conn, linger=0, batch_size=10)
    send_events(producer, 50, "f")
    with pytest.raises(DeliveryError, match="was not accepted"):
        producer.send("f-u0", "one-too-many", 1)
    assert producer.buffered == 50
    with pytest.raises(DeliveryError, match="50 events not delivered"):
        producer.close()
    assert producer.buffered == 0


def test_flush_gives_up_on_a_frozen_server_within_its_timeout(private_settings: Settings) -> None:
    conn = connect(private_settings)
    admin = connect(private_settings, socket_timeout=30)
    sleeper = threading.Thread(target=admin.execute_command, args=("DEBUG", "SLEEP", "3"))
    producer = Producer(private_settings, connection=conn, linger=0, batch_size=5)
    sleeper.start()
    time.sleep(0.2)
    send_events(producer, 5, "z")
    start = time.monotonic()
    with pytest.raises(DeliveryError, match="5 events not delivered"):
        producer.flush(timeout=0.8)
    assert time.monotonic() - start < 2.0
    sleeper.join()
    producer.close()
    drain(conn, private_settings)
    assert read_counts(conn).events_applied == 5


@pytest.mark.slow
def test_replay_survives_a_server_killed_and_restarted_mid_stream(
    private_settings: Settings, tmp_path: Path
) -> None:
    rows = [f"u{n % 9},i{n},1,{1_700_000_000 + n}" for n in range(1500)]
    data = tmp_path / "plays.csv"
    data.write_text("user,item,weight,timestamp\n" + "\n".join(rows) + "\n")
    env = private_settings.child_env(os.environ)
    conn = connect(private_settings)
    replay = subprocess.Popen(
        [sys.executable, "-m", "streamrec", "replay", str(data), "--format", "csv",
         "--rate", "1000"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    time.sleep(0.7)
    assert kill_server(private_settings)
    time.sleep(0.5)
    EmbeddedRedis(private_settings.redis_dir).ensure_running()
    _, err = replay.communicate(timeout=120)
    assert replay.returncode == 0, err.decode()[-2000:]
    drain(conn, private_settings)
    store = HistoryStore(conn, private_settings)
    values = Counter(store.get(f"u{n % 9}").interactions.get(f"i{n}", 0.0) for n in range(1500))
    assert values == Counter({1.0: 1500})


def test_a_batch_is_never_larger_than_the_cap(redis_conn: redis.Redis, settings: Settings) -> None:
    with pytest.raises(ConfigError, match="batch_size must be between 1 and 10000"):
        Producer(settings, connection=redis_conn, batch_size=1_000_000)
