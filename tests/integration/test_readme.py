"""The README's Python examples run as written, in a fresh interpreter, on the test server."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import redis

from streamrec import keys
from streamrec.settings import Settings
from tests.integration.helpers import drain

README = Path(__file__).resolve().parents[2] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", README.read_text(), flags=re.S | re.M)


def run(code: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_readme_examples_use_only_the_public_api() -> None:
    blocks = python_blocks()
    assert len(blocks) == 2
    imports = {line for b in blocks for line in b.splitlines() if "import" in line}
    assert imports == {
        "import os",  # the app's edge reads its environment: Settings.from_env(os.environ)
        "from streamrec import Producer, Settings",
        "from streamrec import RecommendationClient, Settings",
    }


def test_the_readme_examples_send_and_read(
    redis_conn: redis.Redis, settings: Settings, subprocess_env: dict[str, str]
) -> None:
    send, read = python_blocks()
    run(send, subprocess_env)
    assert redis_conn.llen(f"rq:queue:{keys.EVENTS_QUEUE}") >= 1
    # Before a worker ran, nothing is cached: the example prints nothing and does not fail.
    assert run(read, subprocess_env) == ""

    drain(redis_conn, settings)
    redis_conn.hset(keys.item_names_key(), "song-42", "Song Forty-Two")
    # No model is trained, so the lists are the popular ones minus each user's own items:
    # alice has both items; bob has film-7 and gets song-42, named.
    shown = run(
        read + "\nprint(sorted((u, [i.name for i in r.items]) for u, r in lists.items()))",
        subprocess_env,
    )
    assert shown.strip() == "[('alice', []), ('bob', ['Song Forty-Two'])]"
