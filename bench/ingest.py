"""Ingest throughput: events applied per second by 1 and 2 worker processes, against the raw
Redis Streams rate (pipelined XADD, then XREADGROUP + XACK of the same events) on the same
server in the same run.

    python bench/ingest.py [--events 200000] [--batch-size 500]

Uses the embedded Redis under a temporary home unless STREAMREC_REDIS_URL is set (its
database is flushed). The events come from the synthetic generator, in time order, so a
batch holds events of many different users (the expensive case for the apply script).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from streamrec.producer.producer import Producer
from streamrec.producer.synthetic import SyntheticConfig, generate
from streamrec.settings import Settings
from streamrec.state.connection import connect, stop_embedded
from streamrec.state.stats import read_counts


def raw_streams(conn: redis.Redis, events: list[dict[str, object]]) -> tuple[float, float]:
    """Seconds for pipelined XADD of all events, and for XREADGROUP + XACK of them all."""
    stream, group = "bench:raw-stream", "bench"
    conn.delete(stream)
    conn.xgroup_create(stream, group, id="0", mkstream=True)
    fields = [{k: str(v) for k, v in e.items()} for e in events]  # encoded before the clock starts
    start = time.perf_counter()
    for i in range(0, len(fields), 1000):
        with conn.pipeline(transaction=False) as pipe:
            for f in fields[i : i + 1000]:
                pipe.xadd(stream, f)  # type: ignore[arg-type]
            pipe.execute()
    added = time.perf_counter()
    consumed = 0
    while consumed < len(events):
        reply = conn.xreadgroup(group, "c1", {stream: ">"}, count=1000)
        entries = reply[0][1]
        conn.xack(stream, group, *(entry_id for entry_id, _ in entries))
        consumed += len(entries)
    done = time.perf_counter()
    conn.delete(stream)
    return added - start, done - added


def through_streamrec(
    conn: redis.Redis,
    settings: Settings,
    events: list[dict[str, object]],
    workers: int,
    env: dict[str, str],
) -> tuple[float, float, float]:
    """Seconds to enqueue every event with the Producer, then for `workers` processes to apply
    them all (from spawn to the last event applied), and the apply time excluding start-up
    (from the first event applied)."""
    conn.flushdb()
    start = time.perf_counter()
    with Producer(conn, settings, linger=0) as producer:
        for e in events:
            producer.send_raw(e)
    enqueued = time.perf_counter()
    command = [sys.executable, "-m", "streamrec", "worker", "--burst"]
    procs = [subprocess.Popen(command, env=env) for _ in range(workers)]
    first = None
    while True:
        applied = read_counts(conn).events_applied
        now = time.perf_counter()
        if applied and first is None:
            first = now
        if applied >= len(events):
            break
        if all(p.poll() is not None for p in procs):
            raise RuntimeError(
                f"workers exited with only {applied} of {len(events)} events applied"
            )
        time.sleep(0.02)
    for p in procs:
        p.wait()
    assert first is not None
    return enqueued - start, now - enqueued, now - first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=None)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="streamrec-bench-"))
    env = dict(os.environ, STREAMREC_HOME=str(home))
    if args.batch_size:
        env["STREAMREC_BATCH_SIZE"] = str(args.batch_size)
    settings = Settings.from_env(env)
    conn = connect(settings)
    try:
        conn.flushdb()
        n_users = max(100, args.events // 20)
        data = generate(
            SyntheticConfig(n_users=n_users, n_items=max(200, n_users // 2), events_per_user=20)
        )
        events = [e.to_dict() for e in data.events[: args.events]]
        n = len(events)
        version = conn.info("server")["redis_version"]
        print(f"{n:,} events, {n_users:,} users, batch {settings.batch_size}, redis {version}")

        t_add, t_read = raw_streams(conn, events)
        raw = n / (t_add + t_read)
        print(
            f"raw streams   : XADD {n / t_add:>9,.0f}/s  XREADGROUP+XACK {n / t_read:>9,.0f}/s  "
            f"together {raw:>9,.0f}/s  (the ceiling)"
        )
        for workers in (1, 2):
            t_enq, t_apply, t_steady = through_streamrec(conn, settings, events, workers, env)
            rate = n / t_apply
            print(
                f"{workers} worker{'s' if workers > 1 else ' '}     : applied {rate:>9,.0f}/s "
                f"({rate / raw:5.1%} of raw)  excluding start-up {n / t_steady:>9,.0f}/s  "
                f"| producer enqueue {n / t_enq:>9,.0f}/s  "
                f"end to end {n / (t_enq + t_apply):>9,.0f}/s"
            )
        counts = read_counts(conn)
        assert counts.events_applied == n, counts
    finally:
        conn.close()
        if settings.redis_url is None:
            stop_embedded(settings)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
