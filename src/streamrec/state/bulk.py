"""Bulk import: stream a dataset straight into the state, bypassing the RQ queue.

Records are validated in chunks; each chunk becomes one batch applied atomically by the
apply script together with its dead letters, and ``pipeline_depth`` batches share a round
trip. Batch ids derive from the file's digest and the chunk's position, so importing the
same file again (with the same ``chunk_size`` and ``prefix``, within
``settings.ledger_retention``) finds every batch in the ledger and changes nothing.

The loader also counts how many of the users and items it reads were already in the id
vocabularies before the import (one HMGET per id space and pipelined group of batches, for
ids not met earlier in the same import): the report tells a re-import (every id known) from
a file whose ids partly collide with another dataset's, which ``prefix`` keeps apart.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Literal

import redis

from streamrec import keys
from streamrec.data.importers import ImportSource, RawRecord
from streamrec.errors import ConfigError, InvalidEventError
from streamrec.events import MAX_ID_LENGTH, Event, EventValidator
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
        users_seen: distinct users of the valid events read (prefixed, when a prefix is set).
        users_known: how many of those were in the user vocabulary before the import.
        items_seen: distinct items of the valid events read.
        items_known: how many of those were in the item vocabulary before the import.
    """

    events: int
    dead_letters: int
    batches: int
    skipped_batches: int
    seconds: float
    users_seen: int = 0
    users_known: int = 0
    items_seen: int = 0
    items_known: int = 0

    @property
    def rate(self) -> float:
        """Applied events per second."""
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def overlap(self) -> Literal["none", "all", "partial"]:
        """How the data's ids met the state: ``none`` known before, ``all`` known (a
        re-import, or more of a dataset already imported), or ``partial``: some known and
        some new, as when two datasets that both number their ids from 1 share a home."""
        known = self.users_known + self.items_known
        if known == 0:
            return "none"
        return "all" if known == self.users_seen + self.items_seen else "partial"


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

    def load(
        self, source: ImportSource, progress: Progress | None = None, *, prefix: str = ""
    ) -> ImportReport:
        """Import every record of ``source``, then its item names and tags.

        Args:
            source: an opened dataset.
            progress: called with the number of records handled since its last call.
            prefix: prepended to every user id, item id, item-name and item-tags key of the
                file (``"ml100k:"``) before validation, so that datasets whose ids coincide
                stay apart; a prefixed id must still be 1–256 printable characters.

        Batch ids are ``import-<first 16 hex digits of the file digest>-<chunk index>``;
        with a prefix, ``import-<digest>-p<first 8 hex digits of the prefix's SHA-256>-<chunk
        index>``, so that the same file imported under another prefix is not taken for a
        re-import.

        Raises:
            ConfigError: ``prefix`` is not printable or leaves no room for an id.
        """
        start = time.perf_counter()
        batch_prefix = f"import-{source.digest[:16]}"
        records: Iterable[RawRecord] = source.records
        if prefix:
            _check_prefix(prefix)
            batch_prefix += f"-p{hashlib.sha256(prefix.encode()).hexdigest()[:8]}"
            records = (_prefixed(rec, prefix) for rec in records)
        report = self.load_events(records, batch_prefix, progress)
        # After the records: lastfm-360k's names are only complete once the file is read.
        names = [(prefix + item, name) for item, name in source.item_names.items()]
        for offset in range(0, len(names), NAMES_CHUNK):
            self.catalog.set_names(dict(names[offset : offset + NAMES_CHUNK]))
        tags = [(prefix + item, found) for item, found in source.item_tags.items()]
        for offset in range(0, len(tags), NAMES_CHUNK):
            self.catalog.set_tags(dict(tags[offset : offset + NAMES_CHUNK]))
        report = dataclasses.replace(report, seconds=time.perf_counter() - start)
        logger.info(
            "import %s (%s): %d events, %d dead letters, %d item names, %d items tagged, "
            "%d of %d batches already applied, %d of %d users and %d of %d items known "
            "before, %.1f s (%.0f events/s)",
            batch_prefix,
            source.path,
            report.events,
            report.dead_letters,
            len(names),
            len(tags),
            report.skipped_batches,
            report.batches,
            report.users_known,
            report.users_seen,
            report.items_known,
            report.items_seen,
            report.seconds,
            report.rate,
        )
        return report

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
        users: set[str] = set()
        items: set[str] = set()
        users_known = items_known = 0
        for group in _groups(self._batches(events, batch_prefix), self.pipeline_depth):
            # Before the group is applied: an id met for the first time in this import is
            # then in a vocabulary only if it was there before the import.
            new_users = {e.user for _, valid, _ in group for e in valid} - users
            new_items = {e.item for _, valid, _ in group for e in valid} - items
            known = self._count_known(new_users, new_items)
            users_known += known[0]
            items_known += known[1]
            users |= new_users
            items |= new_items
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
        seconds = time.perf_counter() - start
        return ImportReport(
            applied,
            dead,
            batches,
            skipped,
            seconds,
            users_seen=len(users),
            users_known=users_known,
            items_seen=len(items),
            items_known=items_known,
        )

    def _count_known(self, users: set[str], items: set[str]) -> tuple[int, int]:
        """How many of ``users`` and of ``items`` the vocabularies hold (one round trip)."""
        if not users and not items:
            return 0, 0
        with self.connection.pipeline(transaction=False) as pipe:
            # HMGET needs at least one field; "" is never an id, so it counts as unknown.
            pipe.hmget(keys.vocab_key("users"), list(users) or [""])
            pipe.hmget(keys.vocab_key("items"), list(items) or [""])
            found_users, found_items = pipe.execute()
        return (
            sum(value is not None for value in found_users),
            sum(value is not None for value in found_items),
        )

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
                letter = DeadLetter(
                    reason, rec.problem_field, rec.as_payload(), batch_id, time.time()
                )
                dead.append(letter)
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


def _check_prefix(prefix: str) -> None:
    if not (prefix.isprintable() and len(prefix) < MAX_ID_LENGTH):
        raise ConfigError(
            f"prefix must be printable text of at most {MAX_ID_LENGTH - 1} characters, so "
            f"that prefixed ids stay within the {MAX_ID_LENGTH} allowed (got {prefix!r}); "
            "use a short tag such as 'ml100k:'"
        )


def _prefixed(rec: RawRecord, prefix: str) -> RawRecord:
    """``rec`` with ``prefix`` before its user and item ids (a missing or empty id stays
    so, and fails validation as it would have)."""
    user = prefix + rec.user if isinstance(rec.user, str) and rec.user else rec.user
    item = prefix + rec.item if isinstance(rec.item, str) and rec.item else rec.item
    return dataclasses.replace(rec, user=user, item=item)


def _groups(batches: Iterator[_Batch], size: int) -> Iterator[list[_Batch]]:
    while group := list(islice(batches, size)):
        yield group
