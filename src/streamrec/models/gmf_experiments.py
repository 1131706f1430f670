"""Offline experiments of GMF: its RMSE under the rating protocols of
:mod:`~streamrec.models.rating_experiments` (same splits, sizes and result shape).

``new-users`` folds each new user in by GMF's exact ridge solve (numpy, items frozen).
"""

from __future__ import annotations

from typing import Any

from streamrec.data.interactions import Interactions
from streamrec.models import tf_runtime
from streamrec.models.gmf import GMF
from streamrec.models.gmf_params import GMFParams
from streamrec.models.rating_experiments import evaluate_rating_new_users, evaluate_rating_random


def evaluate_gmf_random(data: Interactions, params: GMFParams, seed: int = 42) -> dict[str, Any]:
    """:func:`~streamrec.models.rating_experiments.evaluate_rating_random` of GMF (row
    ``gmf``; ``fit_seconds`` excludes TensorFlow's import)."""
    tf_runtime.recommenders()  # TensorFlow loads before any clock starts
    return evaluate_rating_random(data, params, seed, _fit, "gmf")


def evaluate_gmf_new_users(data: Interactions, params: GMFParams, seed: int = 42) -> dict[str, Any]:
    """:func:`~streamrec.models.rating_experiments.evaluate_rating_new_users` of GMF."""
    tf_runtime.recommenders()
    return evaluate_rating_new_users(data, params, seed, _fit)


def _fit(params: GMFParams, train: Interactions) -> GMF:
    from streamrec.models.gmf_train import fit_gmf

    return fit_gmf(train.to_csr(), params)
