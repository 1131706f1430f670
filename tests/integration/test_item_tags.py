"""Item tags in the state: the bulk loader stores a file's genres beside its titles, and a
retrain of the two-tower model hands them (with the names' words) to the trainer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
import scipy.sparse as sp

from streamrec import keys
from streamrec.data.importers import open_source
from streamrec.models import two_tower_train
from streamrec.models.two_tower import TwoTower, TwoTowerParams
from streamrec.serving.training import train_model
from streamrec.settings import Settings
from streamrec.state.bulk import BulkLoader
from streamrec.state.vocab import ItemCatalog, Vocabulary

U_DATA = "1\t10\t4\t881250949\n1\t20\t3\t881250950\n2\t30\t5\t881250951\n2\t10\t2\t881250952\n"
U_ITEM = (
    "10|Café Society (1995)|01-Jan-1995||http://x|0|0|1|1\n"
    "20|Heat (1995)|01-Jan-1995||http://y|0|1|0|0\n"
    "30|Untagged (1996)|01-Jan-1996||http://z|0|0|0|0\n"
)
U_GENRE = "unknown|0\nAction|1\nComedy|2\nDrama|3\n"


@pytest.fixture
def ml_folder(tmp_path: Path) -> Path:
    (tmp_path / "u.data").write_text(U_DATA)
    (tmp_path / "u.item").write_bytes(U_ITEM.encode("latin-1"))
    (tmp_path / "u.genre").write_text(U_GENRE)
    return tmp_path


def test_the_bulk_loader_stores_tags_joined_by_pipes(
    redis_conn: redis.Redis, settings: Settings, ml_folder: Path
) -> None:
    loader = BulkLoader(redis_conn, settings)
    loader.load(open_source(ml_folder, "movielens-100k"))
    assert redis_conn.hgetall(keys.item_tags_key()) == {b"10": b"Comedy|Drama", b"20": b"Action"}
    catalog = ItemCatalog(redis_conn)
    tags = catalog.tags(["10", "20", "30", "nope"])
    assert tags == {"10": ("Comedy", "Drama"), "20": ("Action",)}
    before = redis_conn.hgetall(keys.item_tags_key())
    loader.load(open_source(ml_folder, "movielens-100k"))  # a re-import changes nothing
    assert redis_conn.hgetall(keys.item_tags_key()) == before

    loader.load(open_source(ml_folder, "movielens-100k"), prefix="ml:")
    assert catalog.tags(["ml:10", "ml:30"]) == {"ml:10": ("Comedy", "Drama")}


def test_features_line_up_with_the_dense_item_ids(
    redis_conn: redis.Redis, settings: Settings, ml_folder: Path
) -> None:
    BulkLoader(redis_conn, settings).load(open_source(ml_folder, "movielens-100k"))
    ItemCatalog(redis_conn).set_tags({"30": ["Sci|Fi", " "], "40": [" "]})  # a pipe in a tag
    vocab = Vocabulary(redis_conn, "items")
    features = ItemCatalog(redis_conn).features(vocab.capacity() + 1)  # one id never handed out
    assert features[vocab.id_of("10") or 0] == (
        "tag:comedy", "tag:drama", "word:café", "word:society",
    )  # fmt: skip
    assert features[vocab.id_of("20") or 0] == ("tag:action", "word:heat")
    assert features[vocab.id_of("30") or 0] == ("tag:sci/fi", "word:untagged")
    assert features[-1] == ()
    assert redis_conn.hget(keys.item_tags_key(), "40") is None  # no tags, nothing stored


class _Recorded:
    """Stands in for the TensorFlow trainer: records what it was given."""

    features: Any = "not called"

    def __call__(
        self,
        train: sp.csr_matrix,
        params: TwoTowerParams,
        progress: Any = None,
        item_features: Any = None,
    ) -> TwoTower:
        self.features = item_features
        n, dim = train.shape[1], params.dim
        rng = np.random.default_rng(0)
        return TwoTower(params, rng.normal(size=(n, dim)), np.eye(dim), np.zeros(dim),
                        rng.normal(size=(n, dim)))  # fmt: skip


@pytest.mark.parametrize("on", [True, False])
def test_a_two_tower_retrain_reads_the_features_from_the_state(
    redis_conn: redis.Redis,
    settings: Settings,
    ml_folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    on: bool,
) -> None:
    BulkLoader(redis_conn, settings).load(open_source(ml_folder, "movielens-100k"))
    fake = _Recorded()
    monkeypatch.setattr(two_tower_train, "fit_two_tower", fake)
    params = TwoTowerParams(dim=4, item_features=on)
    assert train_model(redis_conn, settings, "two-tower", params).version == 1
    vocab = Vocabulary(redis_conn, "items")
    if on:
        assert fake.features[vocab.id_of("20") or 0] == ("tag:action", "word:heat")
        assert len(fake.features) == vocab.capacity()
    else:
        assert fake.features is None
