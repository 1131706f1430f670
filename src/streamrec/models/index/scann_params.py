"""ScaNN's knobs, sized from the catalogue, and the one door to ScaNN (import and build).

``import scann`` imports TensorFlow whenever it is importable (``scann/__init__.py`` tries
``import tensorflow`` to load its TF ops). Workers only need the pybind searcher, so
:func:`scann_pybind` hides TensorFlow for the length of that import unless the process
has already imported it (a trainer, where TFRS may want ScaNN's TF ops).
"""

from __future__ import annotations

import math
import sys
import threading
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any

import numpy as np

from streamrec.errors import ConfigError

#: Below this many searchable items :func:`~streamrec.models.index.scann.build_index` keeps
#: exact search: it costs at most ~1.5 ms for one query and ~0.5 ms per query in batches of
#: 100 there (64 dims, one thread), is exact, and needs no build and no rebuilds; beyond,
#: it grows linearly (3.6 ms at 100k, 36 ms at 1M) while ScaNN stays near 0.1 ms (see
#: ``bench/index.py --sizes``; Google's sizing guide says brute force below ~20k points).
EXACT_BELOW = 50_000
#: Below this many items a forced ScaNN index scores every item (no tree): too few points
#: per leaf for a partitioning to pay off.
TREE_BELOW = 10_000

#: Item norms varying more than this (standard deviation over mean) get a squared-L2 tree
#: rather than a spherical one. Learned factors' norms vary that much (popular items' are
#: long), and an L2 tree finds far more of their exact top k for the same work; vectors
#: of similar norms are told apart better by direction. ``bench/freshness.py --items``
#: (learned-like vectors) and ``bench/index.py`` (similar norms) measure the two cases.
SPHERICAL_BELOW_CV = 0.4

_import_lock = threading.Lock()


def norm_cv(vectors: np.ndarray) -> float:
    """The coefficient of variation (standard deviation over mean) of the rows' norms."""
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", v, v))  # no (n, dim) temporary
    mean = float(norms.mean()) if len(norms) else 0.0
    return float(norms.std()) / mean if mean > 0 else 0.0


@dataclass(frozen=True)
class ScannParams:
    """How a ScaNN searcher is built and queried (``None`` = derived from the item count).

    Attributes:
        num_leaves: tree partitions; ``None`` picks 0.7·sqrt(n) (no tree below
            ``TREE_BELOW`` items); 0 means no tree.
        leaves_to_search: partitions scanned per query; ``None`` picks 2.5 % of the
            leaves, at least 20.
        training_sample_size: items sampled to train the tree; ``None`` picks
            min(n, 250 · leaves). The tree's recall hinges on it: at 1M items, 1,000
            leaves trained on 50,000 items (50 a leaf) found 0.93 of the top 10 searching
            20 leaves, on 250,000 0.994 (``bench/index.py``). 700 leaves on 175,000,
            searching 20: 0.991 at 89 µs a query (400 on 50,000, searching 40: 0.992 at
            224 µs).
        quantizer_sample_size: items sampled to train the AH quantizer; ``None`` picks
            min(n, 50,000) (more changed neither recall nor speed).
        spherical: partition by direction (spherical k-means) rather than by squared L2;
            ``None`` picks it when the items' norms vary little (coefficient of variation
            below ``SPHERICAL_BELOW_CV``). Items of similar norms are told apart by
            direction, and a query finds its best ones in fewer leaves so. Where norms
            vary widely (learned factors: popular items' are long) the best inner
            products belong to long vectors of many directions, which direction-only
            leaves scatter; an L2 tree files long vectors in leaves of their own, whose
            long centres score high for the queries that want them.
        soar_lambda: if set, SOAR spilling (each item also filed under a second leaf
            with an orthogonality-amplified residual, at ``soar_lambda``): fewer leaves
            searched for the same recall, a slower build and a larger index.
        reorder: candidates rescored exactly (float32 dot products) per query, ≥ 1 so that
            returned scores are exact.
        reorder_multiple: at least this many candidates are rescored per result wanted
            (``k``), plus one per result asked for beyond ``k`` to survive filtering: the
            last of ``k`` results is only as good as ScaNN's ranking of its ``reorder``
            candidates (with ``k`` of ``k`` the tail is close to random).
        dims_per_block: dimensions per 4-bit block of the AH quantizer; ``None`` picks 2
            for a spherical tree and 1 for an L2 tree: where norms vary widely a long
            vector's quantization error is as long, and the finer code reaches the same
            recall with far fewer candidates reordered.
        anisotropic_threshold: the AH quantizer's anisotropic threshold (Google uses 0.2
            for inner products); ``None`` quantizes isotropically: at 1M items it built
            in 15 s of CPU instead of 22 for the same recall after the exact reorder.
        max_overfetch: at most this many results asked for beyond ``k`` on a first try, to
            survive filtering of excluded and re-vectored items (a refill asks for more).
        refill_rounds: re-searches, each with 4x the results and 4x the leaves, before a
            row that filtering left short falls back to exact search.
        training_threads: threads ScaNN trains with (0: all cores).
    """

    num_leaves: int | None = None
    leaves_to_search: int | None = None
    training_sample_size: int | None = None
    quantizer_sample_size: int | None = None
    spherical: bool | None = None
    soar_lambda: float | None = None
    reorder: int = 100
    reorder_multiple: int = 8
    dims_per_block: int | None = None
    anisotropic_threshold: float | None = None
    max_overfetch: int = 256
    refill_rounds: int = 2
    training_threads: int = 0

    def __post_init__(self) -> None:
        counts = {
            "num_leaves": self.num_leaves,
            "leaves_to_search": self.leaves_to_search,
            "training_sample_size": self.training_sample_size,
            "quantizer_sample_size": self.quantizer_sample_size,
        }
        for name, value in counts.items():
            if value is not None and value < 0:
                raise ConfigError(f"ScannParams.{name} must be ≥ 0 (got {value})")
        if self.reorder < 1:
            raise ConfigError(
                "ScannParams.reorder must be ≥ 1: returned scores are ScaNN's exact reorder "
                f"(got {self.reorder})"
            )
        for name, value in {
            "reorder_multiple": self.reorder_multiple,
            "dims_per_block": self.dims_per_block or 0,
            "max_overfetch": self.max_overfetch,
            "refill_rounds": self.refill_rounds,
            "training_threads": self.training_threads,
        }.items():
            if value < 0:
                raise ConfigError(f"ScannParams.{name} must be ≥ 0 (got {value})")
        if self.anisotropic_threshold is not None and not math.isfinite(self.anisotropic_threshold):
            raise ConfigError(
                "ScannParams.anisotropic_threshold must be finite "
                f"(got {self.anisotropic_threshold})"
            )

    def resolved(self, n_items: int, norm_cv: float = 0.0) -> ScannParams:
        """These parameters with every ``None`` filled in for ``n_items`` searchable items
        whose norms have the coefficient of variation ``norm_cv`` (:func:`norm_cv`), and
        the tree shrunk to what ScaNN can train (it fails with fewer points than leaves)."""
        leaves = self.num_leaves
        if leaves is None:
            leaves = 0 if n_items < TREE_BELOW else round(0.7 * math.sqrt(n_items))
        leaves = min(leaves, n_items // 50)  # ScaNN's min_partition_size is 50
        searched = self.leaves_to_search
        if searched is None:
            searched = max(20, round(0.025 * leaves))
        sample = self.training_sample_size
        if sample is None:
            sample = 250 * leaves if leaves else n_items
        quantizer = self.quantizer_sample_size
        if quantizer is None:
            quantizer = 50_000
        spherical = self.spherical
        if spherical is None:
            spherical = norm_cv < SPHERICAL_BELOW_CV
        return replace(
            self,
            spherical=spherical,
            dims_per_block=self.dims_per_block or (2 if spherical else 1),
            num_leaves=leaves,
            leaves_to_search=min(max(searched, 1), leaves) if leaves else 0,
            training_sample_size=max(1, min(sample, n_items)),
            quantizer_sample_size=max(1, min(quantizer, n_items)),
        )


def scann_pybind() -> ModuleType:
    """``scann.scann_ops_pybind``, imported without importing TensorFlow.

    If TensorFlow is already imported, ScaNN is imported as usual (its TF ops load too).

    Raises:
        ConfigError: ScaNN is not installed.
    """
    with _import_lock:
        try:
            if sys.modules.get("tensorflow") is not None:
                import scann
            else:
                _import_without_tensorflow()
                import scann
        except ImportError as exc:
            raise ConfigError(
                f"the ScaNN index needs the 'scann' package: pip install 'scann==1.4.2' ({exc})"
            ) from exc
    return scann.scann_ops_pybind  # type: ignore[no-any-return]


def _import_without_tensorflow() -> None:
    # A None entry in sys.modules makes `import tensorflow` raise ModuleNotFoundError,
    # which scann/__init__.py catches, skipping its TF ops.
    missing = "tensorflow" not in sys.modules
    sys.modules["tensorflow"] = None  # type: ignore[assignment]
    try:
        import scann  # noqa: F401
    finally:
        if missing:
            del sys.modules["tensorflow"]


def build_searcher(data: np.ndarray, params: ScannParams) -> Any:
    """A pybind ScaNN searcher over the rows of ``data`` for inner products: tree
    (if ``params.num_leaves``), AH hashing (4 bits per ``dims_per_block`` dimensions,
    anisotropic if asked), exact float32 reorder.

    Args:
        data: shape ``(n, dim)``, float32, n ≥ 1; ScaNN copies it.
        params: resolved parameters (:meth:`ScannParams.resolved`).
    """
    assert params.spherical is not None and params.dims_per_block is not None, "resolved()"
    builder = scann_pybind().builder(data, max(params.reorder, 10), "dot_product")
    if params.num_leaves:
        builder = builder.tree(
            num_leaves=params.num_leaves,
            num_leaves_to_search=params.leaves_to_search,
            training_sample_size=params.training_sample_size,
            spherical=params.spherical,
            soar_lambda=params.soar_lambda,
        )
    builder = builder.score_ah(
        params.dims_per_block,
        anisotropic_quantization_threshold=(
            math.nan if params.anisotropic_threshold is None else params.anisotropic_threshold
        ),
        training_sample_size=params.quantizer_sample_size,
    )
    builder = builder.reorder(params.reorder)
    if params.training_threads:
        builder = builder.set_n_training_threads(params.training_threads)
    return builder.build()
