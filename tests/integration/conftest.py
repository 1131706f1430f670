"""Fixtures of the integration tests (the real Redis fixtures are in tests/conftest.py)."""

from __future__ import annotations

import pytest
import redis

from streamrec.producer.bulk import BulkLoader
from streamrec.producer.synthetic import generate
from streamrec.settings import Settings
from streamrec.worker.training import train_als
from tests.integration.helpers import ALS_CONFIG, ALS_PARAMS


@pytest.fixture
def trained(redis_conn: redis.Redis, settings: Settings) -> dict[str, int]:
    """A synthetic state with an ALS model trained on it: item -> planted group."""
    data = generate(ALS_CONFIG)
    BulkLoader(redis_conn, settings).load_events(data.events, "synthetic")
    report = train_als(redis_conn, settings, ALS_PARAMS)
    assert report.refreshed == ALS_CONFIG.n_users
    return data.item_group
