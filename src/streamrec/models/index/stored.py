"""A model's item index in its version folder: ScaNN's files when it has a ScaNN index, none
for an exact one (rebuilt from the vectors at load, which costs nothing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from streamrec.models.index.exact import ExactIndex
from streamrec.models.index.scann import ScannIndex, build_index

#: Sub-folder of a model version holding its ScaNN index.
FOLDER = "index"

Index = ExactIndex | ScannIndex


def save_index(index: Index, folder: Path) -> None:
    """Write ``index`` beside a model's files in ``folder`` (nothing for an exact index)."""
    if isinstance(index, ScannIndex):
        index.save(folder / FOLDER)


def saved_index(folder: Path) -> ScannIndex | None:
    """The index saved in ``folder`` (with the items upserted into it since its build), or
    None when the model was saved with an exact one."""
    if (folder / FOLDER / "index.json").exists():
        return ScannIndex.load(folder / FOLDER)
    return None


def load_index(vectors: np.ndarray, folder: Path, exact_below: int) -> Index:
    """The index saved in ``folder``, or one built over ``vectors``
    (:func:`~streamrec.models.index.scann.build_index`)."""
    return saved_index(folder) or build_index(vectors, exact_below=exact_below)


class RebuildsIndex:
    """For a model with an item index (``self.index``) and ``params.exact_below``."""

    index: Any
    params: Any

    def rebuild_index(self) -> None:
        """Build the item index afresh: items folded in since it was built join ScaNN's."""
        self.index = rebuilt(self.index, self.params.exact_below)


def rebuilt(index: Index, exact_below: int) -> Index:
    """A fresh index over ``index``'s vectors: the items upserted since its build join
    ScaNN's own (or an exact index when the catalogue is small)."""
    return build_index(index.vectors, exact_below=exact_below)
