"""Faults: exactly-once application and fresh caches while workers and Redis are killed and
hostile entries reach the queue, on loopback.

    python bench/faults.py [--data …/ml-100k/u.data] [--history 40000] [--rate 2000]
                           [--seconds 30] [--kill-every 4] [--lose-tail 1.0]

1. State: the first ``--history`` rows of MovieLens 100K (by timestamp) imported as plays,
   and ALS trained once, on a private embedded Redis under a temporary home.
2. Two worker processes; the producer replays the next rows as plays (weight 1, event id
   ``r<row>``) at ``--rate`` events/s for ``--seconds``, while a fault thread
   - SIGKILLs one worker every ``--kill-every`` seconds (alternating) and starts another
     at once, as a supervisor would;
   - SIGKILLs the redis-server once, at a third of the run, and cuts its append-only file
     back to its size ``--lose-tail`` seconds earlier: the writes a machine crash would
     lose under ``appendfsync everysec`` (a killed process alone loses nothing, its writes
     are in the OS cache). It starts the server again 1 s later (workers may restart it
     first); recovery is the time from the kill until ``events_applied`` grows again;
   - three times pushes garbage onto the events queue: an id RQ cannot load, a job naming
     ``os.system``, a job whose ``timeout`` field is ``abc``, a batch that is not a list,
     and batches mixing malformed events with valid ones (users ``fault-*``, which no
     replayed pair can collide with).
3. Then the producer is closed and the run waits until the queue, its intermediate list,
   the started registry and the unserved-batches hash are empty (drain lag: from the last send), and
   stops the workers with SIGTERM.
4. Checks: ML-100K holds each (user, item) pair once, so every replayed event must have
   made its history value exactly 1.0 (missing: lost, ≥ 2: doubled), and every replayed
   user's ALS entry must carry the user's current history version (else stale). The
   ``os.system`` job must not have run. Exits non-zero if any of these fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq import Queue, Worker
from rq import Retry as JobRetry
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer

from streamrec import keys
from streamrec.errors import DeliveryError, RedisUnavailableError
from streamrec.events import EventValidator
from streamrec.producer import Producer
from streamrec.serving.training import train_als
from streamrec.settings import Settings
from streamrec.state.bulk import BulkLoader
from streamrec.state.connection import connect, stop_embedded
from streamrec.state.embedded import EmbeddedRedis
from streamrec.state.queues import APPLY_EVENTS, queue

MARKER = Path("/tmp/sr-faults-pwned")
#: Fractions of the run at which garbage is pushed (away from the Redis kill at a third).
GARBAGE_AT = (0.15, 0.55, 0.8)
REDIS_KILL_AT = 1 / 3
DRAIN_TIMEOUT = 120.0
SAMPLE_EVERY = 0.02

Row = tuple[str, str, float]  # user, item, timestamp


def read_rows(path: Path) -> list[Row]:
    """The rows of ``u.data`` in time order (ties keep file order)."""
    rows = []
    with open(path) as f:
        for line in f:
            user, item, _, ts = line.split("\t")
            rows.append((user, item, float(ts)))
    rows.sort(key=lambda r: r[2])
    assert len({(u, i) for u, i, _ in rows}) == len(rows), "a (user, item) pair repeats"
    return rows


class Workers:
    """Worker processes logging into the home; a killed one is replaced at once."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home = home
        self.env = env
        self.slots: list[tuple[subprocess.Popen[bytes], Path]] = []
        self.logs: list[Path] = []
        self.kills = 0
        self.exited: list[tuple[int, int, Path]] = []  # exited on their own: pid, code, log
        self.lock = threading.Lock()
        self.closed = False  # after kill_all nothing is started again

    def _spawn(self) -> tuple[subprocess.Popen[bytes], Path]:
        log = self.home / f"worker-{len(self.logs) + 1}.log"
        self.logs.append(log)
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "streamrec", "worker"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return proc, log

    def start(self, n: int) -> None:
        with self.lock:
            self.slots = [self._spawn() for _ in range(n)]

    def kill_and_replace(self, slot: int) -> int:
        """SIGKILL the worker in ``slot`` and start another; the killed pid."""
        with self.lock:
            proc, _ = self.slots[slot]
            if self.closed:
                return proc.pid
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                self.kills += 1
            proc.wait()
            self.slots[slot] = self._spawn()
            return proc.pid

    def replace_exited(self) -> None:
        """Start another worker for each one that exited on its own (as a supervisor)."""
        with self.lock:
            for slot, (proc, log) in enumerate(self.slots):
                code = proc.poll()
                if code is not None and not self.closed:
                    self.exited.append((proc.pid, code, log))
                    self.slots[slot] = self._spawn()

    def stop(self, timeout: float = 60.0) -> list[int | None]:
        """SIGTERM every worker and wait; their exit codes (None: killed after ``timeout``)."""
        with self.lock:
            for proc, _ in self.slots:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            codes: list[int | None] = []
            deadline = time.monotonic() + timeout
            for proc, _ in self.slots:
                try:
                    codes.append(proc.wait(max(0.0, deadline - time.monotonic())))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    codes.append(None)
            return codes

    def kill_all(self) -> None:
        with self.lock:
            self.closed = True
            for proc, _ in self.slots:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()


class Monitor(threading.Thread):
    """Samples ``events_applied`` every 20 ms, through Redis outages (no client retries)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(name="monitor", daemon=True)
        self.conn = connect(settings, retry=Retry(NoBackoff(), 0), socket_timeout=0.5)
        self.samples: list[tuple[float, int | None]] = []  # (perf_counter, value or None)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(SAMPLE_EVERY):
            try:
                value: int | None = int(self.conn.hget(keys.stats_key(), "events_applied") or 0)
            except (redis.RedisError, OSError):
                value = None
            self.samples.append((time.perf_counter(), value))

    def recovery(self, killed_at: float) -> tuple[float | None, int | None, int | None]:
        """Seconds from ``killed_at`` until the counter grew past its first value read after
        the restart; the last value before the kill and that first value after it."""
        before = [v for t, v in self.samples if t < killed_at and v is not None]
        after = [(t, v) for t, v in self.samples if t > killed_at and v is not None]
        if not after:
            return None, before[-1] if before else None, None
        restored = after[0][1]
        grown = next((t for t, v in after if v > restored), None)
        seconds = None if grown is None else grown - killed_at
        return seconds, before[-1] if before else None, restored


@dataclass
class Garbage:
    """What the fault thread pushed onto the events queue, and what should become of it."""

    rounds: int = 0
    quarantine_expected: int = 0
    dead_letters_expected: int = 0
    valid: list[tuple[str, str]] = field(default_factory=list)  # (user, item) to apply once
    never: list[str] = field(default_factory=list)  # users whose events must not apply


def push_garbage(conn: redis.Redis, settings: Settings, n: int, garbage: Garbage) -> None:
    """One round of hostile or malformed queue entries (ids cannot collide with replays)."""
    q = queue(conn)
    # 1. an id that is no job id at all
    conn.rpush(q.key, f"bad{{{n}}}")
    garbage.quarantine_expected += 1
    # 2. a job naming os.system, enqueued the way any Redis client could
    Queue(keys.EVENTS_QUEUE, connection=conn, serializer=JSONSerializer).enqueue(
        "os.system", f"touch {MARKER}"
    )
    garbage.quarantine_expected += 1
    # 3. a streamrec job whose timeout field RQ cannot parse (its events must not apply)
    user = f"fault-timeout-{n}"
    job = q.create_job(
        APPLY_EVENTS,
        args=(f"faults-timeout-{n}", [_event(user, "fault-item", f"fault-t-{n}")]),
        job_id=f"faults-timeout-{n}",
        result_ttl=0,
    )
    job.save()
    conn.hset(job.key, "timeout", "abc")
    conn.rpush(q.key, job.id)
    garbage.never.append(user)
    garbage.quarantine_expected += 1
    # 4. a batch whose payload is not a list: one dead letter
    q.enqueue(
        APPLY_EVENTS,
        f"faults-notlist-{n}",
        {"user": "fault-x", "item": "fault-y"},
        job_id=f"faults-notlist-{n}",
        result_ttl=0,
        retry=JobRetry(max=settings.job_retries),
    )
    garbage.dead_letters_expected += 1
    # 5. batches of valid events with malformed ones among them
    for b in range(2):
        bid = f"faults-mixed-{n}-{b}"
        valid = [(f"fault-u{n}-{b}-{k}", f"fault-i{k}") for k in range(3)]
        bad: list[Any] = [
            {"user": ["x"], "item": "i"},
            {"user": f"fault-big-{n}", "item": "i", "weight": 1e308, "kind": "purchase"},
            {"item": "no-user"},
            {"user": "fault-s", "item": "i", "weight": "3"},
            "not an object",
        ]
        events: list[Any] = [_event(u, i, f"{bid}-{k}") for k, (u, i) in enumerate(valid)]
        events[1:1] = bad  # malformed ones in the middle
        q.enqueue(
            APPLY_EVENTS,
            bid,
            events,
            job_id=bid,
            result_ttl=0,
            retry=JobRetry(max=settings.job_retries),
        )
        garbage.valid += valid
        garbage.never.append(f"fault-big-{n}")
        garbage.dead_letters_expected += len(bad)
    garbage.rounds += 1


def _event(user: str, item: str, event_id: str) -> dict[str, Any]:
    return {"user": user, "item": item, "weight": 1, "kind": "play", "event_id": event_id}


class Faults(threading.Thread):
    """Runs the fault schedule of one replay (times in seconds from ``start``)."""

    def __init__(
        self,
        settings: Settings,
        workers: Workers,
        seconds: float,
        kill_every: float,
        lose_tail: float,
    ) -> None:
        super().__init__(name="faults", daemon=True)
        self.settings = settings
        self.lose_tail = lose_tail
        self.aof_sizes: list[tuple[float, int]] = []
        self.aof_lost_bytes = 0
        self.workers = workers
        self.conn = connect(settings)
        self.garbage = Garbage()
        self.stop = threading.Event()
        self.start_at = 0.0
        self.redis_kills = 0
        self.redis_killed_at: float | None = None
        self.redis_back_after: float | None = None
        self.restarter: threading.Thread | None = None
        self.log: list[str] = []
        self.errors: list[str] = []
        schedule: list[tuple[float, Callable[[], None]]] = []
        t, slot = kill_every, 0
        while t < seconds:
            schedule.append((t, lambda s=slot: self._kill_worker(s)))
            t, slot = t + kill_every, 1 - slot
        schedule.append((seconds * REDIS_KILL_AT, self._kill_redis))
        for n, at in enumerate(GARBAGE_AT):
            schedule.append((seconds * at, lambda n=n: self._garbage(n)))
        self.schedule = sorted(schedule, key=lambda e: e[0])

    def run(self) -> None:
        try:
            self._run()
        finally:
            if self.restarter is not None:
                self.restarter.join()

    def _run(self) -> None:
        for at, action in self.schedule:
            while not self.stop.is_set():
                left = self.start_at + at - time.perf_counter()
                if left <= 0:
                    break
                self.workers.replace_exited()
                self._sample_aof()
                self.stop.wait(min(left, 0.1))
            if self.stop.is_set():
                return
            try:
                action()
            except Exception as exc:  # a fault that could not be injected is reported
                self.errors.append(f"{at:.1f} s: {type(exc).__name__}: {exc}")
        while not self.stop.wait(0.25):
            self.workers.replace_exited()

    def _note(self, text: str) -> None:
        self.log.append(f"  {time.perf_counter() - self.start_at:5.1f} s  {text}")

    def _kill_worker(self, slot: int) -> None:
        pid = self.workers.kill_and_replace(slot)
        self._note(f"SIGKILL worker pid {pid} (slot {slot}), replacement started")

    def _sample_aof(self) -> None:
        aof = self.settings.redis_dir / "appendonly.aof"
        if aof.exists():
            self.aof_sizes.append((time.perf_counter(), aof.stat().st_size))

    def _kill_redis(self) -> None:
        pid = server_pid(self.settings)
        if pid is None:
            raise RuntimeError("no live redis-server in the pid file")
        os.kill(pid, signal.SIGKILL)
        killed = time.perf_counter()
        synced = [size for at, size in self.aof_sizes if at <= killed - self.lose_tail]
        aof = self.settings.redis_dir / "appendonly.aof"
        if self.lose_tail > 0 and synced and aof.stat().st_size > synced[-1]:
            self.aof_lost_bytes = aof.stat().st_size - synced[-1]
            os.truncate(aof, synced[-1])  # before anyone restarts the server
        self.redis_killed_at = killed
        self.redis_kills += 1
        self._note(
            f"SIGKILL redis-server pid {pid}; its AOF lost its last {self.aof_lost_bytes:,} "
            f"bytes ({self.lose_tail:g} s of writes)"
        )
        # restarted beside the schedule, so that the worker kills keep their times
        self.restarter = threading.Thread(target=self._restart_redis, name="restart-redis")
        self.restarter.start()

    def _restart_redis(self) -> None:
        server = EmbeddedRedis(self.settings.redis_dir)
        time.sleep(1.0)
        deadline = time.monotonic() + 15.0
        while True:
            try:
                server.ensure_running()
                break
            except RedisUnavailableError as exc:
                if time.monotonic() > deadline:
                    self.errors.append(f"redis-server not restarted: {exc}")
                    return
                self._note(f"restart not yet possible: {exc}")
                time.sleep(0.2)
        self.redis_back_after = time.perf_counter() - self.redis_killed_at
        new_pid = (self.settings.redis_dir / "redis.pid").read_text().strip()
        self._note(f"redis-server answers again (pid {new_pid})")

    def _garbage(self, n: int) -> None:
        deadline = time.monotonic() + 10.0
        while True:
            try:
                push_garbage(self.conn, self.settings, n, self.garbage)
                break
            except (redis.RedisError, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)  # ids are fixed: pushing the round again is harmless
        self._note(f"garbage round {n + 1} pushed")


@dataclass
class Replay:
    """What the producer did."""

    accepted: list[int]  # rows accepted by send()
    refused: int
    close_error: str | None
    seconds: float
    last_send: float
    acknowledged: int
    batches: int
    resent: int
    attempts_failed: int


def replay(
    settings: Settings, rows: list[Row], first: int, rate: float, seconds: float, start: float
) -> Replay:
    """Send rows ``first, first + 1, ...`` at ``rate`` events/s for ``seconds``."""
    producer = Producer(settings, connection=connect(settings))
    accepted: list[int] = []
    refused = 0
    row = first
    n = 0
    while row < len(rows) and time.perf_counter() - start < seconds:
        user, item, ts = rows[row]
        try:
            producer.send(user, item, 1, "play", ts, f"r{row}")
            accepted.append(row)
        except DeliveryError:
            refused += 1
        row += 1
        n += 1
        ahead = n / rate - (time.perf_counter() - start)
        if ahead > 0.001:
            time.sleep(ahead)
    last_send = time.perf_counter()
    elapsed = last_send - start
    close_error = None
    try:
        producer.close()
    except DeliveryError as exc:
        close_error = str(exc)
    return Replay(
        accepted, refused, close_error, elapsed, last_send, producer.events_sent,
        producer.batches_sent, producer.batches_resent, producer.attempts_failed,
    )  # fmt: skip


def wait_drained(conn: redis.Redis, timeout: float) -> tuple[bool, dict[str, int]]:
    """Wait until nothing is queued, taken, running or unserved (twice in a row)."""
    q = queue(conn)
    started = StartedJobRegistry(queue=q)
    deadline = time.monotonic() + timeout
    calm = 0
    while True:
        try:
            with conn.pipeline(transaction=True) as pipe:
                pipe.llen(q.key)
                pipe.llen(q.intermediate_queue_key)
                pipe.zcard(started.key)
                pipe.hlen(keys.unserved_key())
                queued, taken, running, unserved = pipe.execute()
            state = {"queued": queued, "taken": taken, "started": running, "unserved": unserved}
        except (redis.RedisError, OSError):
            state = {}
        calm = calm + 1 if state and not any(state.values()) else 0
        if calm >= 2:
            return True, state
        if time.monotonic() > deadline:
            return False, state
        time.sleep(0.05)


def check_pairs(conn: redis.Redis, pairs: list[tuple[str, str]]) -> Counter[str]:
    """How many pairs hold exactly 1.0 (``ok``), none (``lost``), ≥ 2 (``doubled``), else
    (``odd``)."""
    counts: Counter[str] = Counter()
    for start in range(0, len(pairs), 5000):
        chunk = pairs[start : start + 5000]
        with conn.pipeline(transaction=False) as pipe:
            for user, item in chunk:
                pipe.hget(keys.user_history_key(user), item)
            values = pipe.execute()
        for value in values:
            if value is None:
                counts["lost"] += 1
            elif float(value) == 1.0:
                counts["ok"] += 1
            elif float(value) >= 2.0:
                counts["doubled"] += 1
            else:
                counts["odd"] += 1
    return counts


def check_cache(conn: redis.Redis, users: list[str]) -> tuple[int, int, list[str]]:
    """Users whose ALS entry is missing, users whose entry is behind their history
    version, and a few examples."""
    missing = behind = 0
    examples: list[str] = []
    with conn.pipeline(transaction=False) as pipe:
        for user in users:
            pipe.get(keys.recommendations_key(user, "als"))
            pipe.get(keys.user_version_key(user))
        replies = pipe.execute()
    for n, user in enumerate(users):
        raw, version = replies[2 * n], int(replies[2 * n + 1] or 0)
        if raw is None:
            missing += 1
            examples.append(f"user {user}: no entry (version {version})")
            continue
        entry = json.loads(raw)
        if entry["history_version"] != version:
            behind += 1
            examples.append(f"user {user}: entry at {entry['history_version']}, history {version}")
    return missing, behind, examples[:5]


def quarantine_reasons(conn: redis.Redis) -> Counter[str]:
    reasons: Counter[str] = Counter()
    for raw in conn.lrange(keys.quarantine_key(), 0, -1):
        reason = str(json.loads(raw).get("reason", "?"))
        reasons[re.sub(r"\d+", "N", reason)[:96]] += 1
    return reasons


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, default=Path("/work/shared/data/ml-100k/u.data"), help="u.data"
    )
    parser.add_argument("--history", type=int, default=40_000, help="rows imported first")
    parser.add_argument("--rate", type=float, default=2000.0, help="events/s replayed")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the replay")
    parser.add_argument("--kill-every", type=float, default=4.0, help="seconds between kills")
    parser.add_argument(
        "--lose-tail", type=float, default=1.0, help="seconds of AOF writes the Redis kill loses"
    )
    args = parser.parse_args()

    rows = read_rows(args.data)
    MARKER.unlink(missing_ok=True)
    home = Path(tempfile.mkdtemp(prefix="sr-f-", dir="/tmp"))
    settings = Settings(home=home)
    env = {**settings.child_env(os.environ), "OPENBLAS_NUM_THREADS": "1"}
    workers = Workers(home, env)
    threads: list[Monitor | Faults] = []
    failed = True
    try:
        conn = connect(settings)
        make = EventValidator(settings).make
        history = [
            make(user, item, 1, "play", ts, f"h{n}")
            for n, (user, item, ts) in enumerate(rows[: args.history])
        ]
        report = BulkLoader(conn, settings).load_events(history, "faults-history")
        trained = train_als(conn, settings)
        print(
            f"state: {report.events:,} plays of {args.data} imported; ALS version "
            f"{trained.version} on {trained.users} users × {trained.items} items, "
            f"{trained.refreshed} entries cached; redis {conn.info('server')['redis_version']}"
        )

        workers.start(2)
        deadline = time.monotonic() + 60
        while Worker.count(connection=conn) < 2:
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers did not start; logs: {workers.logs}")
            time.sleep(0.1)
        monitor = Monitor(settings)
        faults = Faults(settings, workers, args.seconds, args.kill_every, args.lose_tail)
        threads = [monitor, faults]
        monitor.start()
        print(
            f"replay: rows {args.history:,}… at {args.rate:,.0f} events/s for "
            f"{args.seconds:g} s, 2 workers, a worker killed every {args.kill_every:g} s"
        )
        start = time.perf_counter()
        faults.start_at = start
        faults.start()
        sent = replay(settings, rows, args.history, args.rate, args.seconds, start)
        faults.stop.set()
        faults.join()
        drained, state = wait_drained(conn, DRAIN_TIMEOUT)
        drain_s = time.perf_counter() - sent.last_send
        codes = workers.stop()
        monitor.stop.set()
        monitor.join()

        for line in faults.log:
            print(line)
        for error in faults.errors:
            print(f"  fault not injected: {error}")
        pairs = [(rows[r][0], rows[r][1]) for r in sent.accepted]
        counts = check_pairs(conn, pairs)
        users = sorted({user for user, _ in pairs})
        no_entry, behind, examples = check_cache(conn, users)
        stale = no_entry + behind
        garbage = faults.garbage
        injected = check_pairs(conn, garbage.valid)
        leaked = sum(1 for user in garbage.never if conn.exists(keys.user_history_key(user)))
        stats = {k.decode(): int(v) for k, v in conn.hgetall(keys.stats_key()).items()}
        applied_total = stats.get("events_applied", 0)
        expected_total = report.events + len(pairs) + len(garbage.valid)
        quarantined = int(conn.llen(keys.quarantine_key()))
        dead = int(conn.llen(keys.dead_letters_key()))
        failed_jobs = FailedJobRegistry(queue=queue(conn)).count
        recovery, before_kill, restored = (
            monitor.recovery(faults.redis_killed_at) if faults.redis_killed_at else (None,) * 3
        )
        pwned = MARKER.exists()

        print(
            f"sent          : {len(sent.accepted):,} events accepted by send() in "
            f"{sent.seconds:.1f} s ({len(sent.accepted) / sent.seconds:,.0f}/s), "
            f"{sent.refused} refused"
        )
        print(
            f"acknowledged  : {sent.acknowledged:,} events delivered in {sent.batches:,} "
            f"batches; {sent.resent} batches re-sent after the restart, "
            f"{sent.attempts_failed} delivery attempts failed"
            + (f"; close(): {sent.close_error}" if sent.close_error else "")
        )
        print(
            f"applied       : {counts['ok']:,} replayed pairs at exactly 1.0; lost "
            f"{counts['lost']}, doubled {counts['doubled']}, other values {counts['odd']}"
        )
        print(
            f"counter       : events_applied {applied_total:,}, expected {expected_total:,} "
            f"({report.events:,} imported + {len(pairs):,} replayed + "
            f"{len(garbage.valid)} valid injected); redelivered batches skipped by the ledger "
            f"{stats.get('batches_duplicate', 0):,}"
        )
        print(
            f"cache         : {len(users)} replayed users; {no_entry} without an ALS entry, "
            f"{behind} behind their history version"
        )
        for example in examples:
            print(f"                {example}")
        print(
            f"worker kills  : {workers.kills} (exited on their own: {len(workers.exited)}); "
            f"exit codes after SIGTERM: {codes}"
        )
        for pid, code, log in workers.exited:
            print(f"                pid {pid} exited with {code}: {log}")
        print(
            f"redis kills   : {faults.redis_kills} (its AOF lost its last "
            f"{faults.aof_lost_bytes:,} bytes); answering again after "
            + (f"{faults.redis_back_after:.2f} s" if faults.redis_back_after else "-")
            + ", events_applied grew again after "
            + (f"{recovery:.2f} s" if recovery is not None else "- (never)")
            + f" (counter {before_kill} before the kill, {restored} after the restart)"
        )
        print(
            f"drain lag     : {drain_s:.1f} s from the last send to nothing queued, running "
            f"or unserved"
            + ("" if drained else f" (NOT drained after {DRAIN_TIMEOUT:g} s: {state})")
        )
        print(
            f"garbage       : {garbage.rounds} rounds; quarantined {quarantined} (expected "
            f"{garbage.quarantine_expected}), dead letters {dead} (expected "
            f"{garbage.dead_letters_expected}), failed jobs {failed_jobs}; valid injected "
            f"{injected['ok']}/{len(garbage.valid)} applied once, events of quarantined or "
            f"invalid users applied: {leaked}"
        )
        for reason, count in sorted(quarantine_reasons(conn).items()):
            print(f"                {count} × {reason}")
        print(f"os.system     : marker {MARKER} {'EXISTS' if pwned else 'absent'}")

        lost = counts["lost"]
        doubled = counts["doubled"] + counts["odd"]
        recovery_s = f"{recovery:.2f}" if recovery is not None else "nan"
        print(
            f"faults: sent={len(sent.accepted)} acknowledged={sent.acknowledged} "
            f"applied={counts['ok'] + counts['doubled'] + counts['odd']} lost={lost} "
            f"doubled={doubled} stale={stale} worker_kills={workers.kills} "
            f"redis_kills={faults.redis_kills} recovery_s={recovery_s} drain_s={drain_s:.1f} "
            f"quarantined={quarantined}"
        )
        failed = bool(lost or doubled or stale or pwned)
        return 1 if failed else 0
    finally:
        for thread in threads:
            thread.stop.set()
        workers.kill_all()
        for thread in threads:
            thread.join(timeout=30)
        if failed and workers.logs:
            kept = Path(tempfile.mkdtemp(prefix="sr-faults-logs-", dir="/tmp"))
            for log in [*workers.logs, settings.redis_dir / "redis.log"]:
                if log.exists():
                    shutil.copy(log, kept / log.name)
            print(f"logs kept in {kept}: {', '.join(p.name for p in sorted(kept.iterdir()))}")
        stop_server(settings)
        shutil.rmtree(home, ignore_errors=True)


def stop_server(settings: Settings) -> None:
    """Shut the embedded server down; SIGKILL it if it does not go."""
    try:
        stop_embedded(settings)
    except Exception as exc:
        print(f"stopping redis-server: {exc}")
    pid = server_pid(settings)
    if pid is not None:
        os.kill(pid, signal.SIGKILL)


def server_pid(settings: Settings) -> int | None:
    """The pid in the embedded server's pid file, if that process is a live redis-server."""
    try:
        pid = int((settings.redis_dir / "redis.pid").read_text().strip())
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError):
        return None
    return pid if name.startswith("redis-server") else None


if __name__ == "__main__":
    sys.exit(main())
