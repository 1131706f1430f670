"""Re-ranking stages (``settings.rerank``): a served model that re-orders another's lists.

The registry says which model a re-ranker re-ranks (:attr:`ModelSpec.reranks`: GMF the
two-tower). :func:`link_rerankers` hands the stage to the served model it re-ranks, and
:func:`reranked_by` names the served models whose lists a re-ranker's retrain refreshes.
The re-ranked model's entries keep its own name and version: the stage changes their
order and scores only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis

from streamrec.serving.registry import spec
from streamrec.serving.served import ServedGMF, ServedModel, ServedTwoTower
from streamrec.settings import Settings


def link_rerankers(
    models: Sequence[ServedModel[Any]], connection: redis.Redis, settings: Settings
) -> None:
    """Give the model ``settings.rerank`` re-ranks its stage, when that model is among
    ``models``: the re-ranker among ``models`` (kept current by whoever serves them), or
    else one of its own that reloads itself from the registry before each ranking."""
    if settings.rerank is None:
        return
    stage_spec = spec(settings.rerank)
    target = next((m for m in models if m.name == stage_spec.reranks), None)
    if not isinstance(target, ServedTwoTower):
        return
    shared = next((m for m in models if m.name == stage_spec.name), None)
    stage = shared if shared is not None else stage_spec.served(connection, settings)
    assert isinstance(stage, ServedGMF)  # the one re-ranker (settings.RERANKERS)
    target.rerank_with(stage, sync=shared is None)


def reranked_by(name: str, connection: redis.Redis, settings: Settings) -> list[ServedModel[Any]]:
    """Served forms of the models whose lists the model ``name`` re-ranks under
    ``settings`` (none unless ``settings.rerank`` is ``name``)."""
    if settings.rerank != name:
        return []
    target = spec(name).reranks
    return [] if target is None else [spec(target).served(connection, settings)]
