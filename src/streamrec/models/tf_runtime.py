"""The one door to TensorFlow: trainers get ``tf`` and ``tfrs`` from here, never by importing
them directly, and learn at once when TensorFlow's Keras is not Keras 2 (tf-keras), which
TFRS needs. Library code does not touch the environment: the process selects Keras 2 by
``TF_USE_LEGACY_KERAS=1`` before TensorFlow is imported (the ``streamrec`` command does).

Only trainers call these functions; workers, the producer and the CLI's serving commands
never import this module's TensorFlow (the ``tf`` extra may not even be installed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streamrec.errors import ConfigError


def tensorflow() -> Any:
    """``tensorflow``, with tf-keras as ``tf.keras`` (TFRS needs Keras 2).

    Raises:
        ConfigError: the ``tf`` extra is not installed, or ``tf.keras`` is Keras 3 (the
            process did not set ``TF_USE_LEGACY_KERAS=1`` before importing TensorFlow).
    """
    try:
        import tensorflow as tf
    except ModuleNotFoundError as exc:
        raise ConfigError(
            "training this model needs TensorFlow: pip install 'streamrec[tf]'"
        ) from exc
    if not tf.keras.__name__.startswith("tf_keras"):
        raise ConfigError(
            "TensorFlow Recommenders needs Keras 2: set TF_USE_LEGACY_KERAS=1 before "
            f"TensorFlow is imported (tf.keras is {tf.keras.__name__})"
        )
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


#: Called after every epoch with (epochs done, epochs, mean training loss).
EpochProgress = Callable[[int, int, float], None]


def epoch_callback(progress: EpochProgress, epochs: int) -> Any:
    """A Keras callback that reports each finished epoch to ``progress``."""

    def on_epoch_end(epoch: int, logs: dict[str, Any] | None = None) -> None:
        progress(epoch + 1, epochs, float((logs or {}).get("loss", float("nan"))))

    return tensorflow().keras.callbacks.LambdaCallback(on_epoch_end=on_epoch_end)


def seed(value: int) -> None:
    """Seed Python's, NumPy's and TensorFlow's generators for a reproducible fit."""
    tensorflow().keras.utils.set_random_seed(value)
