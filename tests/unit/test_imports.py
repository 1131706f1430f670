"""Invariant 5: the ingest path (producer, worker jobs, CLI) never imports TensorFlow."""

from __future__ import annotations

import subprocess
import sys


def test_worker_and_cli_start_without_tensorflow() -> None:
    code = (
        "import sys, streamrec, streamrec.worker.jobs, streamrec.cli, streamrec.producer\n"
        "heavy = sorted(m for m in ('tensorflow', 'tensorflow_recommenders', 'scann') "
        "if m in sys.modules)\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
