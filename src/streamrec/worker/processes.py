"""``streamrec worker -n N``: worker processes started, supervised and stopped together.

Each child is ``python -m streamrec worker`` with the parent's settings (see
:meth:`Settings.child_env`); SIGTERM or SIGINT to the parent reaches every child, and a
child that dies is started again.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from types import FrameType

from streamrec import keys
from streamrec.settings import Settings

logger = logging.getLogger(__name__)


def spawn_workers(
    count: int,
    queue_names: Sequence[str],
    settings: Settings,
    *,
    environ: Mapping[str, str],
    burst: bool = False,
) -> list[subprocess.Popen[bytes]]:
    """Start ``count`` worker processes (``python -m streamrec worker``) with ``settings``.

    ``environ`` is the environment the children start from (the CLI passes its own: PATH
    and the like); its ``STREAMREC_*`` variables are replaced by ``settings``, so flags
    given to the parent reach the children too."""
    command = [sys.executable, "-m", "streamrec", "worker", "--processes", "1"]
    for name in queue_names:
        command += ["--queue", name]
    if burst:
        command.append("--burst")
    env = settings.child_env(environ)
    return [subprocess.Popen(command, env=env) for _ in range(count)]


def stop_workers(children: Sequence[subprocess.Popen[bytes]], timeout: float = 60.0) -> None:
    """Ask worker processes to finish their job and exit (SIGTERM), and wait for them
    (SIGKILL after ``timeout`` seconds)."""
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for child in children:
        try:
            child.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def supervise(
    queue_sets: Sequence[Sequence[str]],
    settings: Settings,
    *,
    environ: Mapping[str, str],
    burst: bool = False,
) -> int:
    """Run one worker process per entry of ``queue_sets``, on those queues (see
    :func:`spawn_workers`), until SIGTERM or SIGINT, which they get too; a child that dies
    is started again on its queues (except in burst mode).

    Returns:
        The exit status: 0, or the first non-zero status of a child in burst mode.
    """
    children = [
        spawn_workers(1, names, settings, environ=environ, burst=burst)[0] for names in queue_sets
    ]
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    status = 0
    try:
        while not stopping.is_set():
            for n, child in enumerate(children):
                code = child.poll()
                if code is None:
                    continue
                if burst:
                    status = status or code
                    continue
                logger.warning(
                    "worker process %d exited with %s: starting another", child.pid, code
                )
                children[n] = spawn_workers(1, queue_sets[n], settings, environ=environ)[0]
            if burst and all(child.poll() is not None for child in children):
                return status
            stopping.wait(0.5)
    finally:
        stop_workers(children)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status


def shard_queues(processes: int, shards: int) -> list[list[str]]:
    """The events queues of each of ``processes`` worker processes when ``shards`` event
    shards exist: every shard has a process, and a process serves shards of its own (one
    each when there are at least as many processes as shards; a process beyond the shards
    shares one with another)."""
    if processes >= shards:
        return [[keys.events_queue(n % shards)] for n in range(processes)]
    return [[keys.events_queue(s) for s in range(n, shards, processes)] for n in range(processes)]
