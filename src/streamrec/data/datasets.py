"""Public datasets: download, verify against pinned checksums, unpack.

:func:`fetch_dataset` streams an archive into ``dest_root`` (``settings.datasets_dir``), checks
size, SHA-256 and MD5, unpacks it into a temporary folder and renames that to
``dest_root / spec.name`` with a ``.streamrec-fetched.json`` marker, so failures leave nothing
half-done and the next call needs no network. The archives are not ours to redistribute (see
``licence``).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import ssl
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

from streamrec.errors import ChecksumMismatchError, ConfigError, DatasetError, NotFoundError

logger = logging.getLogger(__name__)

MARKER_NAME = ".streamrec-fetched.json"
_CHUNK = 1 << 20  # 1 MiB
# Failures of the download itself; other OSErrors (a full disk) are not the network's fault.
_NETWORK_ERRORS = (urllib.error.URLError, TimeoutError, ConnectionError, ssl.SSLError,
                   http.client.HTTPException)  # fmt: skip
_GROUPLENS = "https://files.grouplens.org/datasets"
Progress = Callable[[int, int | None], None]  # (bytes so far, total bytes or None if unknown)
_MOVIELENS = "GroupLens Research (University of Minnesota); research use, do not redistribute"


@dataclass(frozen=True)
class DatasetSpec:
    """A downloadable archive and where its main data file sits once unpacked.

    Attributes:
        name: folder name under the datasets root, e.g. ``"movielens-100k"``.
        url: where the archive is downloaded from.
        sha256, md5: pinned hex digests of the archive, each verified when set.
        size: archive size in bytes, verified when set.
        archive: ``"zip"`` or ``"tar.gz"``.
        data_path: main data file relative to the unpacked folder, ``/``-separated.
        import_format: the streamrec import format that reads ``data_path``.
        licence: who publishes the data, and that it must not be redistributed.
    """

    name: str
    url: str
    sha256: str | None
    md5: str | None
    size: int | None
    archive: str
    data_path: str
    import_format: str
    licence: str


@dataclass(frozen=True)
class FetchedDataset:
    """A dataset unpacked in ``folder``; ``downloaded`` is False when it was already there."""

    spec: DatasetSpec
    folder: Path
    data_file: Path
    downloaded: bool


# Checksums: tensorflow/datasets tensorflow_datasets/url_checksums/movielens.txt,
# ISG-Siegen/OmniRec data_loaders, sisinflab/DataRec.
# fmt: off
DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (
    DatasetSpec(name="movielens-100k", url=f"{_GROUPLENS}/movielens/ml-100k.zip", archive="zip",
                sha256="50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
                md5="0e33842e24a9c977be4e0107933c0723", size=4924029, licence=_MOVIELENS,
                data_path="ml-100k/u.data", import_format="movielens-100k"),
    # GroupLens regenerates the "latest" archives; this pins the 2018-09 build.
    DatasetSpec(name="movielens-latest-small", url=f"{_GROUPLENS}/movielens/ml-latest-small.zip",
                sha256="696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
                md5=None, size=978202, archive="zip", licence=_MOVIELENS,
                data_path="ml-latest-small/ratings.csv", import_format="movielens-csv"),
    DatasetSpec(name="movielens-1m", url=f"{_GROUPLENS}/movielens/ml-1m.zip", archive="zip",
                sha256="a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
                md5="c4d9eecfca2ab87c1945afe126590906", size=5917549, licence=_MOVIELENS,
                data_path="ml-1m/ratings.dat", import_format="movielens-1m"),
    DatasetSpec(name="lastfm-360k", archive="tar.gz",
                url="https://zenodo.org/records/6090214/files/lastfm-dataset-360K.tar.gz",
                sha256=None, md5="635e6ed3fc873aa4ba33aba0ebce02b1", size=None,
                import_format="lastfm-360k",
                data_path="lastfm-dataset-360K/usersha1-artmbid-artname-plays.tsv",
                licence="Oscar Celma from Last.fm data; non-commercial use, do not redistribute"),
    DatasetSpec(name="lastfm-hetrec", url=f"{_GROUPLENS}/hetrec2011/hetrec2011-lastfm-2k.zip",
                sha256="6738f48195667ff03caaab4d32ca9a3133d8cc026b7c3cdaf6ce1010e913c59c",
                md5="296d61afe4e8632b173fc2dd3be20ce2", size=None, archive="zip",
                data_path="user_artists.dat", import_format="lastfm-hetrec",
                licence="HetRec 2011 (GroupLens, Last.fm data); research use, do not redistribute"),
)}
# fmt: on


def dataset(name: str) -> DatasetSpec:
    """The spec of a known dataset; :class:`NotFoundError` listing the known names if unknown."""
    try:
        return DATASETS[name]
    except KeyError:
        raise NotFoundError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None


def with_mirror(spec: DatasetSpec, base_url: str) -> DatasetSpec:
    """A copy of ``spec`` downloaded from ``base_url/<archive file name>``; checksums stay pinned.

    ``base_url`` needs a scheme (``https://``, ``http://``, ``file://``), else :class:`ConfigError`.
    """
    if "://" not in base_url:
        raise ConfigError(f"mirror URL must start with a scheme like https:// (got {base_url!r})")
    file_name = PurePosixPath(urllib.parse.urlsplit(spec.url).path).name
    return replace(spec, url=f"{base_url.rstrip('/')}/{file_name}")


def fetch_dataset(
    spec: DatasetSpec,
    dest_root: Path,
    *,
    progress: Progress | None = None,
    force: bool = False,
    timeout: float = 60.0,
) -> FetchedDataset:
    """Download, verify and unpack ``spec`` into ``dest_root / spec.name``.

    Unless ``force``, a folder whose data file exists and whose marker matches the pinned
    checksums (the URL if none are pinned; so a mirror is the same dataset) is reused as is.

    Args:
        spec: the dataset.
        dest_root: datasets root, normally ``settings.datasets_dir``; created if missing.
        progress: called after every chunk with (bytes so far, total bytes or ``None``).
        force: download again even if the dataset is present.
        timeout: seconds to wait for the server on connect and on every read.

    Raises:
        ChecksumMismatchError: size, SHA-256 or MD5 differ from the spec.
        DatasetError: the download or unpacking failed, or the archive is unsafe.
    """
    folder, data_file = dest_root / spec.name, dest_root / spec.name / spec.data_path
    if not force and _already_fetched(spec, folder, data_file):
        logger.info("dataset %s: already present in %s", spec.name, folder)
        return FetchedDataset(spec, folder, data_file, downloaded=False)
    try:
        dest_root.mkdir(parents=True, exist_ok=True)
        # Everything happens in a hidden folder beside the target, removed however we leave.
        with tempfile.TemporaryDirectory(prefix=f".{spec.name}-", dir=dest_root) as tmp:
            archive, unpacked = Path(tmp, "download"), Path(tmp, "unpacked")
            logger.info("dataset %s: downloading %s", spec.name, spec.url)
            marker = _download(spec, archive, folder, progress, timeout)
            _unpack(spec, archive, unpacked)
            if not (unpacked / spec.data_path).is_file():
                raise DatasetError(f"dataset {spec.name}: {spec.url} lacks {spec.data_path}")
            (unpacked / MARKER_NAME).write_text(json.dumps(marker) + "\n", encoding="utf-8")
            if folder.exists():
                folder.rename(Path(tmp, "previous"))
            unpacked.rename(folder)
    except OSError as exc:
        raise DatasetError(f"dataset {spec.name}: cannot write into {dest_root}: {exc}") from exc
    logger.info("dataset %s: %d bytes unpacked into %s", spec.name, marker["size"], folder)
    return FetchedDataset(spec, folder, data_file, downloaded=True)


def _already_fetched(spec: DatasetSpec, folder: Path, data_file: Path) -> bool:
    try:
        marker = json.loads((folder / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not (isinstance(marker, dict) and data_file.is_file()):
        return False
    expected = _pinned(spec) or {"url": spec.url}  # the URL only when nothing is pinned
    return all(marker.get(key) == value for key, value in expected.items())


def _pinned(spec: DatasetSpec) -> dict[str, str | int]:
    values = {"size": spec.size, "sha256": spec.sha256, "md5": spec.md5}
    return {k: v.lower() if isinstance(v, str) else v for k, v in values.items() if v is not None}


def _download(
    spec: DatasetSpec, target: Path, folder: Path, progress: Progress | None, timeout: float
) -> dict[str, Any]:
    """Stream ``spec.url`` to ``target`` and check it; returns the marker (url and digests)."""
    sha256, md5, done = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    request = urllib.request.Request(spec.url, headers={"User-Agent": "streamrec"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, target.open("wb") as out:
            length = response.headers.get("Content-Length", "")
            total = int(length) if length.isdigit() else spec.size
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                sha256.update(chunk)
                md5.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
    except _NETWORK_ERRORS as exc:
        if isinstance(exc, urllib.error.HTTPError):
            exc.close()  # an unclosed HTTPError leaks its socket
        reason = exc if isinstance(exc, urllib.error.HTTPError) else getattr(exc, "reason", exc)
        raise DatasetError(
            f"dataset {spec.name}: cannot download {spec.url}: {reason}. No internet? Download it "
            f"by hand from {spec.url} and unpack it into {folder} so that {spec.data_path} is in it"
        ) from exc
    actual = {"url": spec.url, "sha256": sha256.hexdigest(), "md5": md5.hexdigest(), "size": done}
    for key, expected in _pinned(spec).items():
        if actual[key] != expected:
            target.unlink()
            raise ChecksumMismatchError(
                f"dataset {spec.name}: {key} of {spec.url} is {actual[key]}, expected "
                f"{expected}; the download is corrupt or the file changed upstream"
            )
    return actual


def _unpack(spec: DatasetSpec, archive: Path, into: Path) -> None:
    try:
        if spec.archive == "zip":
            with zipfile.ZipFile(archive) as zf:
                _check_members(spec, zf.namelist())
                zf.extractall(into)
        elif spec.archive == "tar.gz":
            with tarfile.open(archive, "r:gz") as tf:
                _check_members(spec, tf.getnames())
                tf.extractall(into, filter="data")  # also refuses links and devices
        else:
            raise DatasetError(f"dataset {spec.name}: unknown archive type {spec.archive!r}")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise DatasetError(f"dataset {spec.name}: cannot unpack {spec.url}: {exc}") from exc


def _check_members(spec: DatasetSpec, names: list[str]) -> None:
    for name in names:
        path = PurePosixPath(name.replace("\\", "/"))
        if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
            raise DatasetError(f"dataset {spec.name}: archive member {name!r} escapes its folder")
