"""The HTTP API's Prometheus series, exposed with the default registry on ``/metrics``."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, generate_latest

#: Lists read from the cache for HTTP clients, by model and by what was found:
#: ``personal`` (the user's own list), ``popular`` (the fallback) or ``none``.
CACHE_READS = Counter(
    "streamrec_http_cache_reads",
    "Recommendation lists read from the cache by the HTTP API.",
    ["model", "result"],
)


def exposition() -> tuple[bytes, str]:
    """The default registry in Prometheus' text format, and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
