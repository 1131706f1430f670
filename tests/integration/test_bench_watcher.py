"""The freshness benchmark's probe watcher (bench/freshness.py): its figures are only as
true as its report of when a probe's entries became readable."""

from __future__ import annotations

import json
import multiprocessing
import queue
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from streamrec import keys
from streamrec.settings import Settings
from streamrec.state.connection import connect

BENCH = Path(__file__).resolve().parents[2] / "bench"
MODELS = ["als", "two-tower"]


def _write(conn: Any, user: str, model: str, version: int) -> None:
    entry = {"user": user, "model": model, "version": 1, "history_version": version}
    conn.set(keys.recommendations_key(user, model), json.dumps(entry, separators=(",", ":")))


def _report(done: Any, timeout: float) -> Any:
    try:
        return done.get(timeout=timeout)
    except queue.Empty:
        return "nothing"


def test_a_probe_is_reported_once_every_model_entry_reaches_its_version(
    private_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(BENCH))  # the spawned watcher imports it by name
    freshness = __import__("freshness")
    conn = connect(private_settings)
    conn.config_set("notify-keyspace-events", "K$")
    context = multiprocessing.get_context("spawn")
    todo, done = context.Queue(), context.Queue()
    ready, stop = context.Event(), context.Event()
    args = (str(private_settings.home), MODELS, ["u1", "u2"], todo, done, ready, stop)
    watcher = context.Process(target=freshness.watch_probes, args=args, daemon=True)
    watcher.start()
    try:
        assert ready.wait(60)
        # u1: written at an older version first, then one model at a time
        sent = time.monotonic()
        todo.put((10, "u1", 5, sent))
        time.sleep(0.2)
        _write(conn, "u1", "als", 4)
        _write(conn, "u1", "two-tower", 5)
        assert _report(done, 0.5) == "nothing"
        _write(conn, "u1", "als", 5)
        probe, user, at, latency = _report(done, 10)
        assert (probe, user, at) == (10, "u1", sent)
        assert 0.2 < latency < 5
        # u2: both entries written after the probe was sent, before it reached the watcher
        sent = time.monotonic()
        _write(conn, "u2", "als", 7)
        _write(conn, "u2", "two-tower", 8)
        time.sleep(0.2)
        todo.put((20, "u2", 7, sent))
        assert _report(done, 10)[:3] == (20, "u2", sent)
        stop.set()
        assert _report(done, 30) is None
    finally:
        stop.set()
        watcher.join(timeout=30)
        if watcher.is_alive():
            watcher.kill()
        sys.modules.pop("freshness", None)
