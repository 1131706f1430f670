"""The one door to TensorFlow: trainers get ``tf`` and ``tfrs`` from here, never by importing
them directly, so that Keras 2 (tf-keras) is selected before TensorFlow loads.

Only trainers call these functions; workers, the producer and the CLI's serving commands
never import this module's TensorFlow (the ``tf`` extra may not even be installed).
"""

from __future__ import annotations

import os
from typing import Any

from streamrec.errors import ConfigError


def tensorflow() -> Any:
    """``tensorflow``, with tf-keras as ``tf.keras`` (TFRS needs Keras 2).

    Raises:
        ConfigError: the ``tf`` extra is not installed.
    """
    # Must be set before TensorFlow is first imported; setdefault keeps a caller's choice.
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ModuleNotFoundError as exc:
        raise ConfigError(
            "training this model needs TensorFlow: pip install 'streamrec[tf]'"
        ) from exc
    return tf


def recommenders() -> Any:
    """``tensorflow_recommenders`` (importing TensorFlow first, see :func:`tensorflow`).

    Raises:
        ConfigError: the ``tf`` extra is not installed.
    """
    tensorflow()
    try:
        import tensorflow_recommenders as tfrs
    except ModuleNotFoundError as exc:
        raise ConfigError(
            "training this model needs TensorFlow Recommenders: pip install 'streamrec[tf]'"
        ) from exc
    return tfrs


def seed(value: int) -> None:
    """Seed Python's, NumPy's and TensorFlow's generators for a reproducible fit."""
    tensorflow().keras.utils.set_random_seed(value)
