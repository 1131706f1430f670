"""HTTP read API: requests/s and latency of ``GET /users/{u}/recommendations`` against a raw
Redis ``GET`` of the same cache key, in the same run.

    python bench/http_api.py [--users 1000] [--processes 2] [--threads 4] [--seconds 4]
                             [--rounds 3]

(Not ``bench/http.py``: run as a script, that name would shadow the standard library's
``http`` package for everything the script imports.)

1. An embedded Redis under a temporary home; the cache filled with a list of ``top_k`` (20)
   items, with explanations, for each of ``--users`` users (what a worker writes).
2. ``streamrec http`` in its own process on a free loopback port (uvicorn, one process).
3. Load: ``--processes`` client processes of ``--threads`` threads each, every thread one
   keep-alive connection asking for random users' lists as fast as it gets replies. HTTP
   clients use the standard library's ``http.client`` (lighter than httpx, so the server
   rather than the client is measured); raw clients use redis-py ``GET`` of the same keys.
   ``--rounds`` alternating rounds of ``--seconds`` each (HTTP, then raw); every reply is
   checked (status 200, the user's own list).
4. Printed: requests/s, p50 and p99 latency of each, and ratio = HTTP requests/s ÷ raw
   ``GET``s/s (the median of the rounds' ratios). The machine's cores are shared by the
   server, Redis and the clients: figures move with other load.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from streamrec import keys
from streamrec.settings import Settings
from streamrec.state.cache import RecommendationCache, encode_entry
from streamrec.state.connection import connect, stop_embedded


def fill_cache(settings: Settings, n_users: int, n_items: int = 2000) -> list[str]:
    """Cache a list of ``top_k`` items for each of ``n_users`` users; their ids."""
    rng = random.Random(42)
    conn = connect(settings)
    items = [f"item-{i:05d}" for i in range(n_items)]
    users = [f"user-{u:06d}" for u in range(n_users)]
    cache = RecommendationCache(conn)
    k = settings.top_k
    for start in range(0, n_users, 200):
        entries = []
        for user in users[start : start + 200]:
            picks = rng.sample(items, k)
            scores = sorted((rng.random() for _ in range(k)), reverse=True)
            because = [rng.sample(items, 2) for _ in range(k)]
            entry = encode_entry(user, "als", 1, 1, picks, scores, because)
            entries.append((keys.recommendations_key(user, "als"), entry, user))
        cache.write_encoded(entries)
    conn.close()
    return users


def start_server(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    """``streamrec http`` on a free loopback port, once it answers ``/healthz``."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    command = [sys.executable, "-m", "streamrec", "http", "--port", str(port)]
    server = subprocess.Popen(command, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return server, port
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("streamrec http did not start within 60 s")


def http_thread(port: int, users: list[str], until: float, out: list[float]) -> None:
    """Ask for random users' lists on one keep-alive connection until ``until``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    rng = random.Random()
    while (start := time.perf_counter()) < until:
        user = rng.choice(users)
        conn.request("GET", f"/users/{user}/recommendations?k=20")
        reply = conn.getresponse()
        body = reply.read()
        out.append(time.perf_counter() - start)
        if reply.status != 200 or json.loads(body)["user"] != user:
            raise RuntimeError(f"bad reply for {user}: {reply.status} {body[:200]!r}")
    conn.close()


def raw_thread(home: str, users: list[str], until: float, out: list[float]) -> None:
    """``GET`` random users' cache keys on one connection until ``until``."""
    conn = connect(Settings(home=Path(home)), max_connections=1)
    rng = random.Random()
    while (start := time.perf_counter()) < until:
        user = rng.choice(users)
        value = conn.get(keys.recommendations_key(user, "als"))
        out.append(time.perf_counter() - start)
        if value is None:
            raise RuntimeError(f"no cache entry for {user}")
    conn.close()


def client_process(
    kind: str, target: Any, users: list[str], threads: int, start_at: float, seconds: float
) -> list[float]:
    """One client process: ``threads`` threads of ``kind`` from ``start_at`` (wall clock)
    for ``seconds``; every request's latency, seconds."""
    run = http_thread if kind == "http" else raw_thread
    time.sleep(max(0.0, start_at - time.time()))
    until = time.perf_counter() + seconds
    outs: list[list[float]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []

    def checked(out: list[float]) -> None:
        try:
            run(target, users, until, out)
        except BaseException as exc:  # reported by the process, not lost with the thread
            errors.append(exc)

    pool = [threading.Thread(target=checked, args=(out,)) for out in outs]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise errors[0]
    return [x for out in outs for x in out]


def load_round(
    ctx: Any, kind: str, target: Any, users: list[str], args: argparse.Namespace
) -> list[float]:
    """One round of ``kind`` load from every client process; all latencies."""
    start_at = time.time() + 1.0  # every process starts together, after it is spawned
    with ctx.Pool(args.processes) as pool:
        parts = pool.starmap(
            client_process,
            [(kind, target, users, args.threads, start_at, args.seconds)] * args.processes,
        )
    return [x for part in parts for x in part]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1000, help="users with a cached list")
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    parser.add_argument("--threads", type=int, default=4, help="connections per process")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each (alternating)")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="streamrec-http-"))
    env = dict(os.environ, STREAMREC_HOME=str(home), OPENBLAS_NUM_THREADS="1")
    env.pop("STREAMREC_REDIS_URL", None)
    settings = Settings.from_env(env)
    server: subprocess.Popen[bytes] | None = None
    try:
        users = fill_cache(settings, args.users)
        print(f"cache: {len(users):,} users with {settings.top_k}-item lists (embedded Redis)")
        server, port = start_server(env)
        ctx = multiprocessing.get_context("spawn")
        results: dict[str, list[float]] = {"http": [], "raw": []}
        rates: dict[str, list[float]] = {"http": [], "raw": []}
        for n in range(args.rounds):
            for kind, target in (("http", port), ("raw", str(home))):
                latencies = load_round(ctx, kind, target, users, args)
                results[kind] += latencies
                rates[kind].append(len(latencies) / args.seconds)
                print(
                    f"round {n + 1} {kind:>4}: {rates[kind][-1]:,.0f} requests/s, "
                    f"p50 {np.percentile(latencies, 50) * 1000:.2f} ms, "
                    f"p99 {np.percentile(latencies, 99) * 1000:.2f} ms"
                )
        ratio = statistics.median(h / r for h, r in zip(rates["http"], rates["raw"], strict=True))
        figures = {
            kind: (
                sum(rates[kind]) / len(rates[kind]),
                float(np.percentile(results[kind], 50)) * 1000,
                float(np.percentile(results[kind], 99)) * 1000,
            )
            for kind in results
        }
        clients = f"{args.processes} processes × {args.threads} connections"
        for kind, label in (("http", "HTTP GET /users/{u}/recommendations"), ("raw", "raw GET")):
            rps, p50, p99 = figures[kind]
            print(f"{label} ({clients}): {rps:,.0f}/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms")
        print(
            f"http: rps={figures['http'][0]:.0f} p99_ms={figures['http'][2]:.2f} "
            f"raw_get_rps={figures['raw'][0]:.0f} raw_get_p99_ms={figures['raw'][2]:.2f} "
            f"ratio={ratio:.3f}"
        )
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
        stop_embedded(settings)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
