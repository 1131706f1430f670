"""The one exception tree of streamrec.

::

    StreamrecError
    ├── ConfigError              a STREAMREC_* setting or option has a bad value
    ├── InvalidEventError        an event failed validation (names the field and the value)
    ├── InvalidRatingError       ratings a model cannot take: NaN, inf or off its scale
    ├── ImportFormatError        a file cannot be read in the format it was given as
    ├── DatasetError             a dataset cannot be fetched or unpacked
    │   └── ChecksumMismatchError    the download is not the file we pinned
    ├── RedisUnavailableError    the embedded server cannot start or the URL cannot be reached
    ├── DeliveryError            the producer gave up sending events (names how many)
    ├── ForbiddenJobError        a queue entry streamrec did not send (set aside, never run)
    └── NotFoundError            a user, item or dataset that does not exist

Handlers live only at process edges: the CLI maps these to exit codes, RQ records job failures.
"""

from __future__ import annotations

from typing import Any


class StreamrecError(Exception):
    """Base class of every error streamrec raises on purpose."""


class ConfigError(StreamrecError):
    """A setting (environment variable or option) has an unusable value."""


class InvalidEventError(StreamrecError):
    """An event is malformed.

    Attributes:
        field: the offending field (``user``, ``item``, ``weight``, ``kind``, ``timestamp``,
            ``event_id``, or ``payload`` when the event as a whole is unreadable).
        value: the value that was seen.
        reason: what is wrong and how to fix it.
    """

    def __init__(self, field: str, value: Any, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"{field} {reason} (got {_shorten(value)})")


class InvalidRatingError(StreamrecError, ValueError):
    """Ratings given to a model are not finite or lie outside its rating scale.

    Attributes:
        field: the offending argument (e.g. ``ratings``).
        value: the first offending value.
        reason: what is wrong, how many values are, and how to fix it.
    """

    def __init__(self, field: str, value: Any, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"{field} {reason} (got {_shorten(value)})")


class ImportFormatError(StreamrecError):
    """A file does not match the import format it was given as."""


class DatasetError(StreamrecError):
    """A dataset cannot be downloaded, verified or unpacked."""


class ChecksumMismatchError(DatasetError):
    """A downloaded file's checksum differs from the pinned one."""


class RedisUnavailableError(StreamrecError):
    """Redis cannot be reached, or the embedded server cannot be started."""


class DeliveryError(StreamrecError):
    """The producer could not hand events to Redis within its delivery timeout.

    The events stay buffered (a later :meth:`flush` retries them) unless the producer was
    being closed.

    Attributes:
        undelivered: events accepted by ``send`` and not yet delivered.
    """

    def __init__(self, undelivered: int, reason: str) -> None:
        self.undelivered = undelivered
        super().__init__(f"{undelivered} events not delivered: {reason}")


class ForbiddenJobError(StreamrecError):
    """A queue entry that streamrec did not send: it is set aside and never run.

    Attributes:
        job_id: the entry's job id, as found.
        reason: what is wrong with it.
    """

    def __init__(self, job_id: str, reason: str) -> None:
        self.job_id = job_id
        self.reason = reason
        super().__init__(f"job {_shorten(job_id)}: {reason}")


class NotFoundError(StreamrecError):
    """A user, item or other named thing does not exist."""


def _shorten(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
