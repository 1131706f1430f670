"""The model registry: versioned artifacts on disk, the active-version pointer in Redis.

A version is written completely under ``STREAMREC_HOME/models/<name>/<version>/`` (into a
temporary folder renamed into place), and only then does the pointer flip, so a reader sees
version N or N+1, never a mixture. Workers compare the pointer with the version they hold
and reload only when it is newer. The newest ``keep`` versions are kept on disk.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from streamrec import keys
from streamrec.errors import NotFoundError
from streamrec.settings import Settings

logger = logging.getLogger(__name__)

METADATA = "metadata.json"


@dataclass(frozen=True)
class Published:
    """The last publish of a model.

    Attributes:
        version: the version published.
        at: when, epoch seconds (a training, or a rebuild of a trained version).
        events: events the state had applied by the last training.
        trained_at: when the model was last trained (a rebuild keeps it).
    """

    version: int
    at: float
    events: int
    trained_at: float


class ModelRegistry:
    """Publishes and locates model versions.

    Args:
        connection: a redis-py client.
        settings: where the artifacts live (``settings.home / "models"``) and how many
            versions to keep (``models_kept``).
    """

    def __init__(self, connection: redis.Redis, settings: Settings) -> None:
        self.connection = connection
        self.root = settings.home / "models"
        self.keep = settings.models_kept

    def publish(
        self,
        name: str,
        write: Callable[[Path], None],
        metadata: dict[str, Any],
        *,
        replaces: int | None = None,
    ) -> int | None:
        """Write a new version with ``write(folder)``, then make it the active one.

        Args:
            name: the model.
            write: writes the artifact's files into a folder.
            metadata: stored beside them (``metadata.json``).
            replaces: publish only if this version is still the active one when the new
                one is written (a rebuild of version N must not undo a retrain published
                meanwhile); None publishes in any case.

        Returns:
            The new version number (None when ``replaces`` was no longer active: nothing
            was published).
        """
        version = int(self.connection.incr(keys.model_counter_key(name)))
        on_disk = self._versions_on_disk(name)
        if on_disk and version <= on_disk[-1]:
            # Redis lost the counter (a flush, a new server) but the files remain: go past them.
            version = on_disk[-1] + 1
            self.connection.set(keys.model_counter_key(name), version)
        final = self.folder(name, version)
        staging = final.with_name(f".staging-{version}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        write(staging)
        meta = {**metadata, "model": name, "version": version, "published_at": time.time()}
        (staging / METADATA).write_text(json.dumps(meta, indent=2, default=str))
        staging.rename(final)
        events = int(self.connection.hget(keys.stats_key(), "events_applied") or 0)
        published: dict[str, float] = {"version": version, "at": meta["published_at"]}
        if replaces is None:  # a training: a rebuild keeps the last one's time and events
            published.update(events=events, trained_at=meta["published_at"])
        active = keys.model_active_key(name)
        with self.connection.pipeline(transaction=True) as pipe:
            try:
                if replaces is not None:
                    pipe.watch(active)  # type: ignore[no-untyped-call]
                    if pipe.get(active) != str(replaces).encode():
                        raise redis.WatchError
                    pipe.multi()
                pipe.set(active, version)
                pipe.zadd(keys.model_versions_key(name), {str(version): meta["published_at"]})
                pipe.hset(keys.model_published_key(name), mapping=published)  # type: ignore[arg-type]
                pipe.execute()
            except redis.WatchError:
                logger.info(
                    "model %s: version %d no longer active, %d dropped", name, replaces, version
                )
                shutil.rmtree(final, ignore_errors=True)
                return None
        logger.info("model %s: published version %d in %s", name, version, final)
        self._prune(name, version)
        return version

    def active_version(self, name: str) -> int | None:
        """The published version of ``name`` (None if never trained)."""
        value = self.connection.get(keys.model_active_key(name))
        return None if value is None else int(value)

    def active_versions(self, names: Sequence[str]) -> list[int | None]:
        """The published versions of several models, in one round trip."""
        values = self.connection.mget([keys.model_active_key(name) for name in names])
        return [None if value is None else int(value) for value in values]

    def last_published(self, name: str) -> Published | None:
        """When ``name`` was last published and how many events the state had applied by
        then (None if never)."""
        found = self.connection.hgetall(keys.model_published_key(name))
        if not found:
            return None
        at = float(found[b"at"])
        trained = float(found.get(b"trained_at", at))  # written before rebuilds kept it
        return Published(int(found[b"version"]), at, int(found.get(b"events", 0)), trained)

    def folder(self, name: str, version: int) -> Path:
        """Where version ``version`` of ``name`` lives."""
        return self.root / name / str(version)

    def active_folder(self, name: str) -> tuple[int, Path]:
        """The active version and its folder.

        Raises:
            NotFoundError: the model was never trained (or its files are gone).
        """
        version = self.active_version(name)
        if version is None:
            raise NotFoundError(
                f"no {name} model has been trained yet: run `streamrec train {name}`"
            )
        folder = self.folder(name, version)
        if not folder.is_dir():
            raise NotFoundError(
                f"{name} version {version} is active but {folder} is missing: "
                f"is STREAMREC_HOME shared with the trainer?"
            )
        return version, folder

    def _versions_on_disk(self, name: str) -> list[int]:
        base = self.root / name
        if not base.is_dir():
            return []
        return sorted(int(p.name) for p in base.iterdir() if p.name.isdigit())

    def _prune(self, name: str, newest: int) -> None:
        versions = self._versions_on_disk(name)
        for old in versions[: max(0, len(versions) - self.keep)]:
            if old != newest:
                shutil.rmtree(self.folder(name, old), ignore_errors=True)
                self.connection.zrem(keys.model_versions_key(name), str(old))
