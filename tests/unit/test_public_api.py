"""The public API at the package root: what it exports, what importing it costs, and that
its clients neither connect on construction nor take optional arguments by position.

The import below is the documented one; every name of ``__all__`` is checked after it.
"""

from __future__ import annotations

import importlib
import inspect
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

import streamrec
from streamrec import (
    DeliveryError,
    Producer,
    RecommendationClient,
    RedisUnavailableError,
    Settings,
    StreamrecError,
)

#: Nothing listens on port 1: connecting there fails at once.
NOWHERE = "redis://127.0.0.1:1/0"

#: Where each public name is defined.
HOMES = {
    "Producer": "streamrec.producer",
    "RecommendationClient": "streamrec.state.client",
    "Recommendations": "streamrec.state.client",
    "Recommendation": "streamrec.state.client",
    "Settings": "streamrec.settings",
    "Event": "streamrec.events",
}


def loaded_after(code: str, modules: tuple[str, ...]) -> list[str]:
    """Which of ``modules`` a fresh interpreter has loaded after running ``code``."""
    probe = f"{code}\nimport sys\nprint(*sorted(m for m in {modules!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return out.stdout.split()


@pytest.mark.parametrize("name", [n for n in streamrec.__all__ if n != "__version__"])
def test_every_name_in_all_resolves_to_the_object_of_its_module(name: str) -> None:
    value = getattr(streamrec, name)
    home = importlib.import_module(HOMES.get(name, "streamrec.errors"))
    assert value is getattr(home, name)
    assert name in dir(streamrec)
    if name.endswith("Error"):
        assert issubclass(value, StreamrecError)


def test_all_lists_every_error_of_the_tree_and_nothing_unknown() -> None:
    errors = importlib.import_module("streamrec.errors")
    tree = {
        name
        for name, value in vars(errors).items()
        if inspect.isclass(value) and issubclass(value, StreamrecError)
    }
    assert set(streamrec.__all__) == tree | set(HOMES) | {"__version__"}
    with pytest.raises(AttributeError, match="module 'streamrec' has no attribute 'Nope'"):
        streamrec.Nope  # noqa: B018


def test_version_is_the_installed_distributions() -> None:
    assert streamrec.__version__ == version("streamrec") != "0+unknown"


def test_import_streamrec_loads_no_redis_numpy_or_tensorflow() -> None:
    heavy = ("redis", "numpy", "tensorflow")
    assert loaded_after("import streamrec", heavy) == []
    assert loaded_after("import streamrec; streamrec.__version__", heavy) == []


def test_the_whole_public_api_loads_no_tensorflow() -> None:
    code = "import streamrec\nfor name in streamrec.__all__: getattr(streamrec, name)"
    assert loaded_after(code, ("tensorflow", "tensorflow_recommenders", "redis")) == ["redis"]


def test_a_client_connects_on_first_use_not_on_construction(tmp_path: Path) -> None:
    client = RecommendationClient(Settings(redis_url=NOWHERE))
    assert client.model == "als"
    with pytest.raises(RedisUnavailableError, match=re.escape(f"cannot reach Redis at {NOWHERE}")):
        client.get("alice")
    RecommendationClient(Settings(home=tmp_path), model="kmf")
    assert list(tmp_path.iterdir()) == []  # no embedded server was started


def test_a_producer_buffers_without_connecting(tmp_path: Path) -> None:
    producer = Producer(Settings(home=tmp_path), linger=0)  # linger 0: nothing is sent
    event = producer.send("alice", "song-42", 3)
    assert (event.user, event.item, event.weight, event.kind) == ("alice", "song-42", 3, "play")
    assert producer.buffered == 1
    assert list(tmp_path.iterdir()) == []  # no embedded server was started


def test_a_producer_for_an_unreachable_redis_accepts_events_and_says_on_close() -> None:
    producer = Producer(Settings(redis_url=NOWHERE, delivery_timeout=0.3))
    producer.send("alice", "song-42")
    producer.send_raw({"user": "bob", "item": "film-7", "kind": "rating", "weight": 4})
    assert producer.buffered == 2
    with pytest.raises(DeliveryError, match=r"^2 events not delivered") as caught:
        producer.close()
    assert caught.value.undelivered == 2


def test_producer_optionals_are_keyword_only() -> None:
    settings = Settings(redis_url=NOWHERE)
    with pytest.raises(TypeError, match="positional"):
        Producer(settings, None)  # type: ignore[misc]
    with pytest.raises(TypeError, match="positional"):
        Producer(settings, None, 10)  # type: ignore[misc]
    producer = Producer(settings, connection=None, batch_size=10, linger=0, queue_name="events")
    assert (producer.batch_size, producer.linger, producer.queue_name) == (10, 0, "events")


def test_client_optionals_are_keyword_only() -> None:
    client = RecommendationClient(Settings(redis_url=NOWHERE))
    with pytest.raises(TypeError, match="positional"):
        RecommendationClient(Settings(), "kmf")  # type: ignore[misc]
    with pytest.raises(TypeError, match="positional"):
        RecommendationClient(Settings(), None, "kmf")  # type: ignore[misc]
    # the arguments are checked before anything connects
    with pytest.raises(TypeError, match="positional"):
        client.get("alice", 5, True)  # type: ignore[misc]
    with pytest.raises(TypeError, match="positional"):
        client.get_many(["alice"], 5, True)  # type: ignore[misc]
