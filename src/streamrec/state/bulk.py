"""Bulk import: stream a dataset straight into the state, bypassing the RQ queue.

Records are validated in chunks; each chunk becomes one batch applied atomically by the
apply script together with its dead letters, and ``pipeline_depth`` batches share a round
trip. Batch ids derive from the file's digest and the chunk's position, so importing the
same file again (with the same ``chunk_size``, within ``settings.ledger_retention``) finds
every batch in the ledger and changes nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice

import redis

from streamrec.data.importers import ImportSource, RawRecord
from streamrec.errors import ConfigError, InvalidEventError
from streamrec.events import Event, EventValidator
from streamrec.settings import Settings
from streamrec.state.deadletters import DeadLetter
from streamrec.state.histories import HistoryStore
from streamrec.state.vocab import ItemCatalog

logger = logging.getLogger(__name__)

#: Called with the number of records handled since the previous call.
Progress = Callable[[int], None]

NAMES_CHUNK = 10_000
_Batch = tuple[str, list[Event], list[DeadLetter]]


@dataclass(frozen=True)
class ImportReport:
    """What an import did.

    Attributes:
        events: events applied (0 for batches the ledger already held).
        dead_letters: records dead-lettered (invalid rows), in applied batches.
        batches: batches sent.
        skipped_batches: batches the ledger already held (an earlier import of the same data).
        seconds: wall-clock duration of the import.
    """

    events: int
    dead_letters: int
    batches: int
    skipped_batches: int
    seconds: float

    @property
    def rate(self) -> float:
        """Applied events per second."""
        return self.events / self.seconds if self.seconds > 0 else 0.0


class BulkLoader:
    """Validates records and applies them to the state in large pipelined batches.

    Args:
        connection: a redis-py client.
        settings: validation rules and state settings.
        chunk_size: records per batch (one apply-script call each); at most, and by
            default, ``settings.max_call_events``.
        pipeline_depth: batches sent per round trip.

    Raises:
        ConfigError: ``chunk_size`` or ``pipeline_depth`` below 1, or ``chunk_size`` above
            ``settings.max_call_events``.
    """

    def __init__(
        self,
        connection: redis.Redis,
        settings: Settings,
        chunk_size: int | None = None,
        pipeline_depth: int = 8,
    ) -> None:
        chunk_size = settings.max_call_events if chunk_size is None else chunk_size
        if not 1 <= chunk_size <= settings.max_call_events:
            raise ConfigError(
                f"chunk_size must be between 1 and max_call_events = {settings.max_call_events} "
                f"(got {chunk_size!r})"
            )
        if pipeline_depth < 1:
            raise ConfigError(f"pipeline_depth must be ≥ 1 (got {pipeline_depth!r})")
        self.connection = connection
        self.chunk_size = chunk_size
        self.pipeline_depth = pipeline_depth
        self.validator = EventValidator(settings)
        self.store = HistoryStore(connection, settings)
        self.catalog = ItemCatalog(connection)

    def load(self, source: ImportSource, progress: Progress | None = None) -> ImportReport:
        """Import every record of ``source``, then its item names.

        Batch ids are ``import-<first 16 hex digits of the file digest>-<chunk index>``.
        """
        start = time.perf_counter()
        prefix = f"import-{source.digest[:16]}"
        report = self.load_events(source.records, prefix, progress)
        # After the records: lastfm-360k's names are only complete once the file is read.
        names = list(source.item_names.items())
        for offset in range(0, len(names), NAMES_CHUNK):
            self.catalog.set_names(dict(names[offset : offset + NAMES_CHUNK]))
        seconds = time.perf_counter() - start
        logger.info(
            "import %s (%s): %d events, %d dead letters, %d item names, %d of %d batches "
            "already applied, %.1f s (%.0f events/s)",
            prefix,
            source.path,
            report.events,
            report.dead_letters,
            len(names),
            report.skipped_batches,
            report.batches,
            seconds,
            report.events / seconds if seconds > 0 else 0.0,
        )
        return ImportReport(
            report.events, report.dead_letters, report.batches, report.skipped_batches, seconds
        )

    def load_events(
        self,
        events: Iterable[Event | RawRecord],
        batch_prefix: str,
        progress: Progress | None = None,
    ) -> ImportReport:
        """Validate and apply events (already validated ones pass through).

        Args:
            events: :class:`Event` objects and/or :class:`RawRecord` rows.
            batch_prefix: batch ids are ``<batch_prefix>-<chunk index>``; use the same
                prefix for the same data to make a repeated load a no-op.
            progress: called with the number of records handled since its last call.
        """
        start = time.perf_counter()
        applied = dead = batches = skipped = 0
        for group in _groups(self._batches(events, batch_prefix), self.pipeline_depth):
            for outcome in self.store.apply_many(group):
                batches += 1
                if outcome.applied:
                    applied += outcome.events
                    dead += outcome.dead_letters
                else:
                    skipped += 1
            logger.debug("%s: %d batches sent, %d already applied", batch_prefix, batches, skipped)
            if progress is not None:
                progress(sum(len(valid) + len(letters) for _, valid, letters in group))
        return ImportReport(applied, dead, batches, skipped, time.perf_counter() - start)

    def _batches(self, events: Iterable[Event | RawRecord], prefix: str) -> Iterator[_Batch]:
        it = iter(events)
        index = 0
        while chunk := list(islice(it, self.chunk_size)):
            batch_id = f"{prefix}-{index}"
            yield (batch_id, *self._validate(chunk, batch_id, prefix))
            index += 1

    def _validate(
        self, chunk: list[Event | RawRecord], batch_id: str, prefix: str
    ) -> tuple[list[Event], list[DeadLetter]]:
        make = self.validator.make
        valid: list[Event] = []
        dead: list[DeadLetter] = []
        for rec in chunk:
            if isinstance(rec, Event):
                valid.append(rec)
                continue
            if rec.problem is not None:
                reason = f"line {rec.line}: {rec.problem}"
                dead.append(DeadLetter(reason, "payload", rec.as_payload(), batch_id, time.time()))
                continue
            # A deterministic id makes a re-import identical; zero padding lets the later
            # of two same-second ratings of one item win, as in the file.
            event_id = rec.event_id
            if event_id is None:
                event_id = f"{prefix[:100]}-{rec.line:010d}"
            kind = "play" if rec.kind is None else rec.kind
            try:
                valid.append(make(rec.user, rec.item, rec.weight, kind, rec.timestamp, event_id))
            except Exception as exc:  # any record the validator cannot take is a dead letter
                field = exc.field if isinstance(exc, InvalidEventError) else "payload"
                dead.append(
                    DeadLetter(
                        reason=f"line {rec.line}: {exc}",
                        field=field,
                        payload=rec.as_payload(),
                        batch_id=batch_id,
                        at=time.time(),
                    )
                )
        return valid, dead


def _groups(batches: Iterator[_Batch], size: int) -> Iterator[list[_Batch]]:
    while group := list(islice(batches, size)):
        yield group
