"""The HTTP API: a real uvicorn server on a free loopback port, a real httpx client, the real
test Redis and real burst workers (issue 13)."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import msgspec
import pytest
import redis
from click.testing import CliRunner
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from streamrec import keys
from streamrec.cli import cli
from streamrec.data.synthetic import generate
from streamrec.events import FIELDS
from streamrec.http.server import make_server
from streamrec.settings import Settings
from streamrec.state.client import RecommendationClient
from streamrec.state.connection import connect
from tests.integration.conftest import kill_server
from tests.integration.helpers import ALS_CONFIG, drain


class Server:
    """A uvicorn server of the HTTP API in a thread of this process."""

    def __init__(self, settings: Settings, connection: redis.Redis) -> None:
        # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets whose proto says TCP,
        # and without it every reply waits out the client's delayed ACK (~40 ms).
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.server = make_server(settings, connection=connection)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )

    def __enter__(self) -> httpx.Client:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "server did not start"
            time.sleep(0.01)
        self.client = httpx.Client(base_url=self.url, timeout=30)
        return self.client

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(10)
        self.socket.close()
        assert not self.thread.is_alive()


@pytest.fixture
def api(redis_conn: redis.Redis, settings: Settings) -> Iterator[httpx.Client]:
    """An httpx client of a fresh HTTP API server over the test Redis."""
    with Server(settings, redis_conn) as client:
        yield client


def cache_reads(api: httpx.Client, model: str, result: str) -> float:
    """The HTTP API's cache-read counter for ``model`` and ``result``, from ``/metrics``."""
    text = api.get("/metrics").text
    found = re.search(
        rf'^streamrec_http_cache_reads_total\{{model="{model}",result="{result}"\}} (\S+)$',
        text,
        flags=re.M,
    )
    return float(found.group(1)) if found else 0.0


def test_a_users_list_is_the_cached_entry(
    api: httpx.Client, redis_conn: redis.Redis, trained: dict[str, int]
) -> None:
    user = generate(ALS_CONFIG).users()[0]
    reply = api.get(f"/users/{user}/recommendations", params={"k": 5})
    assert reply.status_code == 200 and reply.headers["content-type"] == "application/json"
    expected = RecommendationClient(connection=redis_conn).get(user, 5)
    assert reply.json() == json.loads(msgspec.json.encode(expected))
    found = reply.json()
    assert found["personal"] and found["model"] == "als" and found["version"] == 1
    assert len(found["items"]) == 5 and found["user"] == user
    # Without k: ten items (fewer than the top_k a list holds).
    assert len(api.get(f"/users/{user}/recommendations").json()["items"]) == 10


def test_an_unknown_user_gets_the_popular_list(
    api: httpx.Client, redis_conn: redis.Redis, trained: dict[str, int]
) -> None:
    before = cache_reads(api, "als", "popular")
    reply = api.get("/users/nobody-at-all/recommendations", params={"model": "als", "k": 7})
    assert reply.status_code == 200
    found = reply.json()
    assert not found["personal"] and found["version"] == 0 and len(found["items"]) == 7
    expected = RecommendationClient(connection=redis_conn).get("nobody-at-all", 7)
    assert found == json.loads(msgspec.json.encode(expected))
    assert cache_reads(api, "als", "popular") == before + 1


@pytest.mark.parametrize(
    ("path", "params", "status", "field", "value"),
    [
        ("/users/u1/recommendations", {"model": "nope"}, 422, "model", "nope"),
        ("/users/u1/recommendations", {"k": "abc"}, 422, "k", "abc"),
        ("/users/u1/recommendations", {"k": "0"}, 422, "k", "0"),
        ("/users/u1/recommendations", {"k": "21"}, 422, "k", "21"),  # top_k is 20
        ("/users/u1/recommendations", {"k": "-3"}, 422, "k", "-3"),
        ("/items/i1/similar", {"model": "kmf"}, 422, "model", "kmf"),
        ("/items/i1/similar", {"k": "1001"}, 422, "k", "1001"),
        ("/items/no-such-item/similar", {}, 404, "item", "no-such-item"),
    ],
)
def test_errors_name_the_field_and_the_value(
    api: httpx.Client,
    trained: dict[str, int],
    path: str,
    params: dict[str, str],
    status: int,
    field: str,
    value: str,
) -> None:
    reply = api.get(path, params=params)
    assert reply.status_code == status, reply.text
    error = reply.json()
    assert error["field"] == field and error["value"] == value
    assert error["error"].startswith(f"{field} ") and repr(value) in error["error"]


def test_nothing_to_serve_is_a_404_that_says_why(api: httpx.Client) -> None:
    reply = api.get("/users/u1/recommendations")
    assert reply.status_code == 404
    assert "no popular list yet" in reply.json()["error"]
    reply = api.get("/items/i1/similar")
    assert reply.status_code == 404 and "streamrec train als" in reply.json()["error"]
    assert api.get("/no/such/route").json() == {"error": "Not Found"}
    assert api.delete("/events").status_code == 405


def test_similar_items_come_from_the_served_model(
    api: httpx.Client, trained: dict[str, int]
) -> None:
    item = next(i for i, g in trained.items() if g == 3)
    reply = api.get(f"/items/{item}/similar", params={"k": 5})
    assert reply.status_code == 200
    found = reply.json()
    assert found["item"] == item and found["model"] == "als" and found["version"] == 1
    similar = [r["item"] for r in found["items"]]
    assert len(similar) == 5 and item not in similar
    assert sum(trained[i] == 3 for i in similar) >= 4  # the planted groups show through
    cli_rows = (
        CliRunner()
        .invoke(cli, ["similar", item, "-k", "5", "--json"], catch_exceptions=False)
        .stdout
    )
    assert found["items"] == json.loads(cli_rows)


def test_posted_events_are_applied_and_make_the_list_personal(
    api: httpx.Client, redis_conn: redis.Redis, settings: Settings, trained: dict[str, int]
) -> None:
    user = "team/newcomer ü"  # a slash and non-ASCII: the path is percent-encoded
    plays = [item for item, g in trained.items() if g == 2][:5]
    path = f"/users/{quote(user, safe='')}/recommendations"
    assert not api.get(path).json()["personal"]
    body = [{"user": user, "item": item, "weight": 3} for item in plays]
    reply = api.post("/events", json=body)
    assert reply.status_code == 202, reply.text
    assert reply.json()["accepted"] == 5 and reply.json()["rejected"] == 0
    assert len(reply.json()["event_ids"]) == 5
    # Delivered before the reply: the queue holds the batch.
    assert redis_conn.llen(f"rq:queue:{keys.EVENTS_QUEUE}") >= 1
    drain(redis_conn, settings)
    found = api.get(path, params={"k": 10}).json()
    assert found["personal"] and found["user"] == user and found["history_version"] == 5
    items = [r["item"] for r in found["items"]]
    assert not set(items) & set(plays)
    assert sum(trained[i] == 2 for i in items) >= 8


def test_bad_events_are_rejected_with_reasons_and_good_ones_applied(
    api: httpx.Client, redis_conn: redis.Redis, settings: Settings
) -> None:
    body: list[Any] = [
        {"user": "good", "item": "a"},
        {"user": "bad", "item": "b", "weight": "3"},
        {"user": "bad"},
        {"user": "bad", "item": "b", "kind": "like"},
        {"user": "bad", "item": "b", "colour": "red"},
        7,
        '{"user": "bad", "item": "b"}',
        {"user": "good", "item": "b", "kind": "rating", "weight": 4.5},
    ]
    reply = api.post("/events", json=body)
    assert reply.status_code == 202, reply.text
    found = reply.json()
    assert (found["accepted"], found["rejected"]) == (2, 6)
    rejected = [(e["index"], e["field"], e["value"]) for e in found["errors"]]
    assert rejected == [
        (1, "weight", "3"),
        (2, "item", None),
        (3, "kind", "like"),
        (4, "payload", "{'user': 'bad', 'item': 'b', 'colour': 'red'}"),
        (5, "payload", 7),
        (6, "payload", '{"user": "bad", "item": "b"}'),
    ]
    assert "send 3, not '3'" in found["errors"][0]["reason"]
    assert all(e["error"].startswith(e["field"]) for e in found["errors"])
    drain(redis_conn, settings)
    assert redis_conn.get(keys.user_version_key("good")) == b"2"
    assert redis_conn.get(keys.user_version_key("bad")) is None

    one = api.post("/events", json={"user": "good", "item": "c", "event_id": "e-1"})
    assert one.status_code == 202 and one.json()["event_ids"] == ["e-1"]
    none_good = api.post("/events", json=[{"user": "x"}, {"item": "y"}])
    assert none_good.status_code == 422 and none_good.json()["rejected"] == 2
    assert api.post("/events", json=[]).json() == {
        "accepted": 0, "rejected": 0, "event_ids": [], "errors": [],
    }  # fmt: skip


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"{not json", 400, "is not valid JSON"),
        (b"\xff\xfe", 400, "must be UTF-8"),
        (b"[" * 100_000, 400, "nested too deeply"),
        (b"[" + b"9" * 5000 + b"]", 400, "not readable JSON"),
        (b"[" + b"{}," * 10_000 + b"{}]", 413, "at most 10000 events"),
        (b" " * (9 * 1024 * 1024), 413, "at most"),
    ],
)
def test_a_body_that_is_not_json_events_is_refused_whole(
    api: httpx.Client, body: bytes, status: int, reason: str
) -> None:
    reply = api.post("/events", content=body)
    assert reply.status_code == status
    assert reply.json()["field"] == "body" and reason in reply.json()["reason"]


def test_a_lone_surrogate_is_rejected_and_shown(api: httpx.Client) -> None:
    reply = api.post("/events", content=b'{"user": "\\ud800", "item": "i"}')
    assert reply.status_code == 422
    error = reply.json()["errors"][0]
    assert (error["field"], error["value"]) == ("user", "'\\ud800'")
    assert "printable" in error["reason"]


def test_healthz_and_metrics(api: httpx.Client, trained: dict[str, int]) -> None:
    assert api.get("/healthz").json() == {"status": "ok", "redis": "ok"}
    user = generate(ALS_CONFIG).users()[1]
    before = cache_reads(api, "als", "personal")
    for _ in range(3):
        assert api.get(f"/users/{user}/recommendations").status_code == 200
    reply = api.get("/metrics")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    assert "# TYPE streamrec_http_cache_reads_total counter" in reply.text
    assert cache_reads(api, "als", "personal") == before + 3


def test_healthz_says_when_redis_is_gone(private_settings: Settings) -> None:
    conn = connect(private_settings)
    with Server(private_settings, conn) as client:
        assert client.get("/healthz").status_code == 200
        assert kill_server(private_settings)
        reply = client.get("/healthz")
        assert reply.status_code == 503 and "Redis" in reply.json()["error"]
        assert client.get("/users/u/recommendations").status_code == 503
    conn.close()


#: The ``streamrec http`` command in a fresh interpreter; on exit it prints which of
#: TensorFlow, TFRS and tf-keras it ever imported (the server must import none).
CLI_SERVER = """
import atexit, sys
HEAVY = ("tensorflow", "tensorflow_recommenders", "tf_keras")
atexit.register(lambda: print(sorted(m for m in HEAVY if m in sys.modules), flush=True))
from streamrec.cli import main
sys.argv = ["streamrec", "http", "--port", sys.argv[1]]
main()
"""


def test_streamrec_http_serves_similar_items_without_tensorflow(
    redis_conn: redis.Redis, subprocess_env: dict[str, str], trained: dict[str, int]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-c", CLI_SERVER, str(port)], env=subprocess_env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, process.communicate()[1]
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "streamrec http did not start"
                    time.sleep(0.1)
            item = next(iter(trained))
            assert len(client.get(f"/items/{item}/similar").json()["items"]) == 10
            user = generate(ALS_CONFIG).users()[0]
            assert client.get(f"/users/{user}/recommendations").json()["personal"]
            assert client.post("/events", json={"user": "u", "item": "i"}).status_code == 202
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "serving on http://127.0.0.1" in err
    assert out.strip().splitlines()[-1] == "[]"


_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_EVENT_LIKE = st.dictionaries(st.sampled_from((*FIELDS, "extra")), _JSON, max_size=7)
_BODIES = st.one_of(
    st.one_of(_JSON, _EVENT_LIKE, st.lists(_EVENT_LIKE | _JSON, max_size=5)).map(
        lambda v: json.dumps(v).encode()
    ),
    st.binary(max_size=64),
)


@hypothesis_settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=_BODIES)
def test_no_body_makes_post_events_fail_with_500(api: httpx.Client, body: bytes) -> None:
    reply = api.post("/events", content=body)
    assert reply.status_code in (202, 400, 422), reply.text
    found = reply.json()
    if reply.status_code == 400:
        assert found["field"] == "body"
        return
    value = json.loads(body)
    assert found["accepted"] + found["rejected"] == (len(value) if isinstance(value, list) else 1)
    assert (reply.status_code == 422) == (found["accepted"] == 0 and found["rejected"] > 0)
