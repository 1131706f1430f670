"""Index rebuilds: the active model with the items folded in since it was published.

Workers give an item first seen after training a vector in memory (from the users who
played it) and keep serving it; a rebuild makes it part of a published version, so that a
worker starting afresh, ``similar`` and the model's item index hold it without folding it
in again. A rebuild publishes only if the version it started from is still active: a
retrain published meanwhile wins.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import redis

from streamrec.serving.registry import spec
from streamrec.settings import Settings
from streamrec.state.matrices import MatrixReader
from streamrec.state.registry import ModelRegistry
from streamrec.state.vocab import Vocabulary

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RebuildReport:
    """What a rebuild did.

    Attributes:
        model: the model's name.
        version: the version published (None: a newer version was published meanwhile,
            nothing was).
        replaced: the version rebuilt.
        items_before: items the replaced version knew.
        items: items the new version knows.
        seconds: time taken.
    """

    model: str
    version: int | None
    replaced: int
    items_before: int
    items: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def rebuild_index(connection: redis.Redis, settings: Settings, name: str) -> RebuildReport:
    """Rebuild the active version of ``name`` with every item stored since it was trained,
    and publish it (unless a newer version was published meanwhile).

    Raises:
        ConfigError: no such model.
        NotFoundError: the model was never trained.
    """
    start = time.perf_counter()
    registry = ModelRegistry(connection, settings)
    replaced, folder = registry.active_folder(name)
    served = spec(name).served(connection, settings)
    model = served.load(folder)
    served.serve(model, replaced)
    before = int(model.n_items)
    n_items = Vocabulary(connection, "items").capacity()
    after = before
    if n_items > before:
        reader = MatrixReader(connection)
        rows = reader.rows(reader.all_users(), n_items)
        after = served.add_new_items(rows)
    model.rebuild_index()  # items folded in since the index's build join ScaNN's own
    metadata = {"rebuilt_from": replaced, "items_before": before, "items": after}
    version = registry.publish(name, model.save, metadata, replaces=replaced)
    report = RebuildReport(name, version, replaced, before, after, time.perf_counter() - start)
    logger.info("rebuild of %s: %s", name, report)
    return report
