"""Ingest throughput: events applied per second by 1 and 2 worker processes, against the raw
Redis Streams rate (pipelined XADD, then XREADGROUP + XACK of the same events) on the same
server in the same run.

    python bench/ingest.py [--events 200000] [--batch-size 500] [--repeat 3] [--huge 200000]

Each repetition runs the raw ceiling, then 1 worker, then 2 workers; the figures printed at
the end are medians over the repetitions (this 2-core VM varies by ±20% from run to run).
Then one job of ``--huge`` events (what a careless or hostile client could enqueue) is
applied by one worker, and the longest single Redis call of every phase is printed (from
SLOWLOG): a worker splits a batch into calls of ``STREAMREC_MAX_CALL_EVENTS`` events, so
no call blocks the server for long.

Uses the embedded Redis under a temporary home unless STREAMREC_REDIS_URL is set (its
database is flushed). The events come from the synthetic generator, in time order, so a
batch holds events of many different users (the expensive case for the apply script).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from streamrec.data.synthetic import SyntheticConfig, generate
from streamrec.producer import Producer
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
    with Producer(settings, connection=conn, linger=0) as producer:
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


def slow_calls_reset(conn: redis.Redis) -> None:
    """Log every call of 1 ms or more from now on."""
    conn.config_set("slowlog-log-slower-than", 1000)
    conn.config_set("slowlog-max-len", 100_000)
    conn.slowlog_reset()


#: The bench's own commands, left out of the longest-call figures.
_OWN = {"FLUSHDB", "SLOWLOG", "CONFIG", "XADD", "XREADGROUP", "XACK", "DEL", "XGROUP", "INFO"}


def longest_call(conn: redis.Redis) -> tuple[float, str]:
    """The longest streamrec call logged since :func:`slow_calls_reset`: ms, command."""
    entries = [e for e in conn.slowlog_get(100_000) if _name(e) not in _OWN]
    if not entries:
        return 0.0, "-"
    worst = max(entries, key=lambda e: e["duration"])
    return worst["duration"] / 1000, _name(worst)


def _name(entry: dict[str, object]) -> str:
    command = entry["command"]
    text = command.decode(errors="replace") if isinstance(command, bytes) else str(command)
    return text.split(" ")[0].upper()


def huge_job(
    conn: redis.Redis, settings: Settings, events: list[dict[str, object]], env: dict[str, str]
) -> tuple[float, float, str]:
    """Seconds for one worker to apply a single job of all ``events``, and the longest call."""
    from streamrec.state.queues import APPLY_EVENTS, queue

    conn.flushdb()
    queue(conn).enqueue(APPLY_EVENTS, "huge", events, job_timeout=3600)
    slow_calls_reset(conn)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "streamrec", "worker", "--burst"], env=env, check=True)
    seconds = time.perf_counter() - start
    applied = read_counts(conn).events_applied
    assert applied == len(events), applied
    ms, command = longest_call(conn)
    return seconds, ms, command


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--huge", type=int, default=200_000, help="events of the one big job")
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

        runs: dict[str, list[float]] = {}
        slow_calls_reset(conn)
        for rep in range(args.repeat):
            t_add, t_read = raw_streams(conn, events)
            raw = n / (t_add + t_read)
            row = {"raw": raw, "xadd": n / t_add, "read": n / t_read}
            for workers in (1, 2):
                t_enq, t_apply, t_steady = through_streamrec(conn, settings, events, workers, env)
                row[f"apply{workers}"] = n / t_apply
                row[f"ratio{workers}"] = n / t_apply / raw
                row[f"ratio_xadd{workers}"] = n / t_apply / row["xadd"]
                row[f"steady{workers}"] = n / t_steady
                row[f"enqueue{workers}"] = n / t_enq
                row[f"e2e{workers}"] = n / (t_enq + t_apply)
            print(
                f"  run {rep + 1}: raw {raw:,.0f}/s, 1 worker {row['apply1']:,.0f}/s "
                f"({row['ratio1']:.1%}), 2 workers {row['apply2']:,.0f}/s ({row['ratio2']:.1%})"
            )
            for key, value in row.items():
                runs.setdefault(key, []).append(value)
        m = {key: statistics.median(values) for key, values in runs.items()}
        print(f"medians of {args.repeat} runs:")
        print(
            f"raw streams   : XADD {m['xadd']:>9,.0f}/s  XREADGROUP+XACK {m['read']:>9,.0f}/s  "
            f"together {m['raw']:>9,.0f}/s  (the ceiling)"
        )
        for workers in (1, 2):
            print(
                f"{workers} worker{'s' if workers > 1 else ' '}     : applied "
                f"{m[f'apply{workers}']:>9,.0f}/s ({m[f'ratio{workers}']:5.1%} of raw, "
                f"{m[f'ratio_xadd{workers}']:5.1%} of XADD alone)  "
                f"excluding start-up {m[f'steady{workers}']:>9,.0f}/s  | producer enqueue "
                f"{m[f'enqueue{workers}']:>9,.0f}/s  end to end {m[f'e2e{workers}']:>9,.0f}/s"
            )
        counts = read_counts(conn)
        assert counts.events_applied == n, counts  # the last run applied every event
        ms, command = longest_call(conn)
        print(f"longest Redis call during the runs above: {ms:.1f} ms ({command})")
        big = [e.to_dict() for e in data.events[: args.huge]]
        seconds, ms, command = huge_job(conn, settings, big, env)
        print(
            f"one job of {len(big):,} events: applied in {seconds:.1f} s by one worker; "
            f"longest Redis call {ms:.1f} ms ({command}); max_call_events "
            f"{settings.max_call_events}"
        )
    finally:
        conn.close()
        if settings.redis_url is None:
            stop_embedded(settings)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
