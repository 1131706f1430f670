"""What the HTTP API's read endpoints do, without any web framework: read a user's list,
find similar items, ping Redis.

Lists are read by :class:`~streamrec.state.client.RecommendationClient`, one per model, so an
HTTP client gets exactly what an app reading Redis gets. ``similar`` needs item vectors: the
served model (:meth:`~streamrec.serving.served.ServedModel.current`) is loaded read-only
from the published version, reloaded when a newer one is published, and never imports
TensorFlow.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import msgspec
import numpy as np
import redis

from streamrec.errors import NotFoundError, RedisUnavailableError
from streamrec.http.metrics import CACHE_READS
from streamrec.http.problems import RequestError
from streamrec.serving.registry import REGISTRY
from streamrec.serving.served import ServedModel
from streamrec.settings import Settings
from streamrec.state.client import RecommendationClient
from streamrec.state.vocab import Vocabulary

logger = logging.getLogger(__name__)

#: The model read when ``model`` is not given.
DEFAULT_MODEL = "als"
#: Items returned when ``k`` is not given (at most the settings' ``top_k``).
DEFAULT_K = 10
#: Largest ``k`` of ``similar`` (it ranks the whole catalogue, not a cached list).
MAX_SIMILAR_K = 1000

_encode = msgspec.json.Encoder().encode


class ReadService:
    """The read side of the HTTP API. Thread-safe (endpoints run in a thread pool).

    Args:
        settings: ``top_k`` (the largest ``k`` of a list) and where the models are.
        connection: a redis-py client of the state.
    """

    def __init__(self, settings: Settings, connection: redis.Redis) -> None:
        self.settings = settings
        self.connection = connection
        self.clients = {
            name: RecommendationClient(settings, connection=connection, model=name)
            for name in REGISTRY
        }
        self.similar_models = [name for name, spec in REGISTRY.items() if spec.explains]
        self._served: dict[str, ServedModel[Any]] = {}
        self._lock = threading.Lock()

    def recommendations(self, user: str, model: str | None, k: str | None) -> bytes:
        """``user``'s list as JSON (the fields of
        :class:`~streamrec.state.client.Recommendations`): one ``GET``, or the popular list.

        Raises:
            RequestError: an unknown model (422), ``k`` not an integer in 1..top_k (422).
            NotFoundError: no list for the user and no popular list yet.
        """
        name = _choice("model", model, list(self.clients))
        top_k = self.settings.top_k
        count = _count("k", k, min(DEFAULT_K, top_k), top_k, "lists hold STREAMREC_TOP_K items")
        found = self.clients[name].get(user, count)
        CACHE_READS.labels(name, "none" if found is None else _result(found.personal)).inc()
        if found is None:
            raise NotFoundError(
                f"no {name} list for {user!r} and no popular list yet: train a model or "
                "send events first"
            )
        return _encode(found)

    def similar(self, item: str, model: str | None, k: str | None) -> dict[str, Any]:
        """Items closest to ``item`` (cosine of the served model's item vectors), best first:
        ``{"item", "model", "version", "items": [{"item", "score"}, ...]}``.

        Raises:
            RequestError: a model without item vectors or unknown (422), a bad ``k`` (422),
                an item the model does not know (404).
            NotFoundError: the model was never trained.
        """
        name = _choice("model", model, self.similar_models)
        count = _count("k", k, DEFAULT_K, MAX_SIMILAR_K, "similar ranks the whole catalogue")
        dense = Vocabulary(self.connection, "items").id_of(item)
        # One request at a time: a reload, or an index the model builds on first use, is
        # never raced. The served model is only read here (no fold-in, no new items).
        with self._lock:
            served = self._served.get(name)
            if served is None:
                served = self._served[name] = REGISTRY[name].served(self.connection, self.settings)
            current: Any = served.current()
            version = served.version
            if current is None:
                raise NotFoundError(
                    f"no {name} model has been trained yet: run `streamrec train {name}`"
                )
            if dense is None or dense >= current.n_items:
                raise RequestError(404, "item", item, f"is not known to the {name} model")
            ids, scores = current.similar_items(np.array([dense]), count)
        wanted = [int(i) for i in ids[0] if i >= 0]
        externals = Vocabulary(self.connection, "items").externals(wanted)
        items = [
            {"item": external, "score": float(score)}
            for external, score in zip(externals, scores[0], strict=False)
            if external is not None
        ]
        return {"item": item, "model": name, "version": version, "items": items}

    def health(self) -> dict[str, Any]:
        """``{"status": "ok", "redis": "ok"}`` when Redis answers ``PING``.

        Raises:
            RedisUnavailableError: it does not.
        """
        try:
            self.connection.ping()
        except redis.RedisError as exc:
            raise RedisUnavailableError(f"Redis does not answer PING: {exc}") from exc
        return {"status": "ok", "redis": "ok"}


def _result(personal: bool) -> str:
    return "personal" if personal else "popular"


def _choice(field: str, value: str | None, allowed: list[str]) -> str:
    if value is None:
        return DEFAULT_MODEL
    if value not in allowed:
        raise RequestError(422, field, value, f"must be one of {', '.join(allowed)}")
    return value


def _count(field: str, value: str | None, default: int, most: int, why: str) -> int:
    if value is None:
        return default
    text = value.strip()
    number = int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else None
    if number is None or not 1 <= number <= most:
        raise RequestError(422, field, value, f"must be an integer from 1 to {most}: {why}")
    return number
