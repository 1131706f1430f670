"""streamrec: a recommender that learns while it serves.

Apps send events with a :class:`Producer` and read each user's cached list with a
:class:`RecommendationClient` (or one Redis ``GET`` from any language); both take the one
:class:`Settings` object (``Settings.from_env(os.environ)`` reads ``STREAMREC_*``)::

    import os

    from streamrec import Producer, RecommendationClient, Settings

    settings = Settings.from_env(os.environ)
    with Producer(settings) as producer:
        producer.send("alice", "song-42", weight=3)

    recs = RecommendationClient(settings).get("alice", 10)

Names are imported lazily: ``import streamrec`` loads neither Redis clients nor models.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streamrec.errors import (
        ChecksumMismatchError,
        ConfigError,
        DatasetError,
        DeliveryError,
        ForbiddenJobError,
        ImportFormatError,
        InvalidEventError,
        InvalidRatingError,
        NotFoundError,
        RedisUnavailableError,
        StreamrecError,
    )
    from streamrec.events import Event
    from streamrec.producer import Producer
    from streamrec.settings import Settings
    from streamrec.state.client import Recommendation, RecommendationClient, Recommendations

try:
    __version__ = version("streamrec")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

_WHERE = {
    "Producer": "streamrec.producer",
    "RecommendationClient": "streamrec.state.client",
    "Recommendations": "streamrec.state.client",
    "Recommendation": "streamrec.state.client",
    "Settings": "streamrec.settings",
    "Event": "streamrec.events",
    **dict.fromkeys(
        (
            "StreamrecError",
            "ConfigError",
            "InvalidEventError",
            "InvalidRatingError",
            "ImportFormatError",
            "DatasetError",
            "ChecksumMismatchError",
            "RedisUnavailableError",
            "DeliveryError",
            "ForbiddenJobError",
            "NotFoundError",
        ),
        "streamrec.errors",
    ),
}

__all__ = [
    "ChecksumMismatchError",
    "ConfigError",
    "DatasetError",
    "DeliveryError",
    "Event",
    "ForbiddenJobError",
    "ImportFormatError",
    "InvalidEventError",
    "InvalidRatingError",
    "NotFoundError",
    "Producer",
    "Recommendation",
    "RecommendationClient",
    "Recommendations",
    "RedisUnavailableError",
    "Settings",
    "StreamrecError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'streamrec' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
