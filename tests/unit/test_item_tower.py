"""The two-tower trainer's item tower learns from item features (TensorFlow, small planted
data): items nobody played in training are placed by their tags, which ids cannot do."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from streamrec.data.synthetic import SyntheticConfig, generate
from streamrec.models import tf_runtime
from streamrec.models.two_tower import TwoTower, TwoTowerParams
from streamrec.models.two_tower_train import TrainedTwoTower, fit_two_tower

pytestmark = pytest.mark.slow

CONFIG = SyntheticConfig(
    n_users=200, n_items=240, n_groups=4, events_per_user=12, in_group=0.9, seed=3
)
PARAMS = TwoTowerParams(dim=16, epochs=5, batch_size=128, lr=0.01, seed=1)
WARM = 200  # items 200.. are cold: their plays are left out of training


class Planted:
    """Plays of users who each like one group of items; every item's features are its
    group and a tag that says nothing (``noise-<n % 5>``)."""

    def __init__(self) -> None:
        data = generate(CONFIG)
        users = {u: n for n, u in enumerate(data.users())}
        items = sorted(data.item_group)
        column = {item: n for n, item in enumerate(items)}
        self.item_group = np.array([data.item_group[i] for i in items])
        self.user_group = np.array([data.user_group[u] for u in users])
        self.features = tuple(
            (f"tag:group-{g}", f"tag:noise-{n % 5}") for n, g in enumerate(self.item_group)
        )
        played = [(users[e.user], column[e.item]) for e in data.events if column[e.item] < WARM]
        rows, cols = np.array(played).T
        shape = (len(users), len(items))
        self.train = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=shape)

    def cold_in_group(self, model: TwoTower) -> float:
        """Share of each user's top 10 cold items that are of the user's group."""
        scores = model.fold_in_users(self.train) @ model.item_vectors[WARM:].T
        top = np.argsort(-scores, axis=1)[:, :10]
        return float((self.item_group[WARM:][top] == self.user_group[:, None]).mean())


@pytest.fixture(scope="module")
def planted() -> Planted:
    return Planted()


@pytest.fixture(scope="module")
def with_features(planted: Planted) -> TwoTower:
    return fit_two_tower(planted.train, PARAMS, item_features=planted.features)


def test_cold_items_are_placed_by_their_features(planted: Planted, with_features: TwoTower) -> None:
    ids_only = fit_two_tower(
        planted.train, replace(PARAMS, item_features=False), item_features=planted.features
    )
    assert ids_only.features == ()
    assert planted.cold_in_group(ids_only) < 0.5  # chance is a quarter
    assert planted.cold_in_group(with_features) > 0.8


def test_the_export_keeps_the_features_and_its_saved_model_ranks_as_numpy(
    planted: Planted, with_features: TwoTower, tmp_path: Path
) -> None:
    model = with_features
    assert isinstance(model, TrainedTwoTower)
    assert set(model.features) == {f for item in planted.features for f in item}
    t = dict(zip(model.features, model.feature_embeddings, strict=True))
    first = planted.features[0]
    np.testing.assert_allclose(
        model.feature_vectors([first])[0], (t[first[0]] + t[first[1]]) / 2, rtol=1e-5
    )

    model.save(tmp_path / "v1")
    np.testing.assert_array_equal(TwoTower.load(tmp_path / "v1").item_vectors, model.item_vectors)
    tf = tf_runtime.tensorflow()
    saved = tf.saved_model.load(str(tmp_path / "v1" / "saved_model"))
    found = saved.signatures["recommend"](
        items=tf.constant([[3, 17, 40]], dtype=tf.int64), weights=tf.ones((1, 3))
    )
    history = sp.csr_matrix(([1.0] * 3, [3, 17, 40], [0, 3]), shape=(1, planted.train.shape[1]))
    ids, _ = model.recommend(model.fold_in_users(history), 10)
    assert found["items"].numpy()[0, :10].tolist() == ids[0].tolist()
