"""Item features: what an item's metadata says about it, as strings a model can embed.

An item's features are its tags (MovieLens genres), ``tag:<tag in lower case>``, and the
words of its display name, ``word:<word>``: lower-case runs of letters and digits, with
apostrophes dropped inside a word (``"Schindler's"`` is ``schindlers``), a year in
parentheses (``(1995)``, ``(2006–2007)``) and a few articles and particles (``the``,
``la``, ``of``) left out. So
``"Shawshank Redemption, The (1994)"`` with the genre ``Drama`` has the features
``tag:drama``, ``word:shawshank`` and ``word:redemption``. The offline readers
(:mod:`streamrec.data.interactions`) and the state (:mod:`streamrec.state.vocab`) build
them with the same function, so a model sees the same features either way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

#: Features per item (dense id order); an item without metadata has ``()``.
ItemFeatures = tuple[tuple[str, ...], ...]

TAG = "tag:"
WORD = "word:"

_WORD = re.compile(r"[^\W_]+")  # letters and digits of any script
_APOSTROPHES = re.compile(r"(?<=[^\W_])['’](?=[^\W_])")
#: A year or span of years in parentheses: "(1995)", "(2006–2007)", "(2010- )".
_YEARS = re.compile(r"\(\s*(?:18|19|20)\d\d(?:\s*[-–]\s*(?:(?:18|19|20)\d\d)?)?\s*\)")
#: Words too common in titles to say anything (MovieLens writes "Heat, The" and "Vie, La").
STOP_WORDS = frozenset({
    "a", "an", "and", "at", "by", "das", "de", "del", "der", "des", "di", "die", "du", "el",
    "for", "from", "il", "in", "l", "la", "le", "les", "los", "of", "on", "or", "the", "to",
    "with",
})  # fmt: skip


def name_words(name: str) -> tuple[str, ...]:
    """The words of a display name, in order and each once (see the module docstring)."""
    words = _WORD.findall(_APOSTROPHES.sub("", _YEARS.sub(" ", name.lower())))
    return tuple(dict.fromkeys(w for w in words if w not in STOP_WORDS))


def features_of(name: str | None, tags: Iterable[str]) -> tuple[str, ...]:
    """One item's features: its tags, then the words of its name (no repeats)."""
    found = [TAG + t.strip().lower() for t in tags if t.strip()]
    if name:
        found += [WORD + w for w in name_words(name)]
    return tuple(dict.fromkeys(found))


def item_features(
    items: Sequence[str], names: Mapping[str, str], tags: Mapping[str, Sequence[str]]
) -> ItemFeatures:
    """Features of ``items`` (external ids, in dense id order) from their names and tags.

    Args:
        items: external item ids; position ``n`` is dense item ``n``.
        names: item -> display name (items without one are absent).
        tags: item -> tags (items without tags are absent).
    """
    return tuple(features_of(names.get(item), tags.get(item, ())) for item in items)
