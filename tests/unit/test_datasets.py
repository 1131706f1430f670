"""Dataset fetching against a local HTTP server serving tiny generated archives (no network)."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from streamrec.data.datasets import (
    DATASETS,
    MARKER_NAME,
    DatasetSpec,
    dataset,
    fetch_dataset,
    with_mirror,
)
from streamrec.errors import ChecksumMismatchError, ConfigError, DatasetError, NotFoundError

U_DATA = b"1\t10\t5\t881250949\n1\t20\t3\t881250950\n2\t10\t4\t891717742\n"


@dataclass
class Server:
    root: Path
    base_url: str
    requests: list[str]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    root = tmp_path / "www"
    root.mkdir()
    requests: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self) -> None:
            requests.append(self.path)
            super().do_GET()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield Server(root, f"http://127.0.0.1:{httpd.server_address[1]}", requests)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "datasets"


def write_zip(path: Path, members: dict[str, bytes]) -> bytes:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path.read_bytes()


def write_tgz(path: Path, members: dict[str, bytes]) -> bytes:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path.read_bytes()


def spec_for(server: Server, file_name: str, payload: bytes, **changes: Any) -> DatasetSpec:
    spec = DatasetSpec(
        name="tiny",
        url=f"{server.base_url}/{file_name}",
        sha256=hashlib.sha256(payload).hexdigest(),
        md5=hashlib.md5(payload).hexdigest(),
        size=len(payload),
        archive="zip",
        data_path="ml-100k/u.data",
        import_format="movielens-100k",
        licence="test data",
    )
    return replace(spec, **changes)


@pytest.fixture
def tiny_zip(server: Server) -> DatasetSpec:
    payload = write_zip(
        server.root / "tiny.zip", {"ml-100k/u.data": U_DATA, "ml-100k/README": b"tiny\n"}
    )
    return spec_for(server, "tiny.zip", payload)


def test_fetch_downloads_verifies_unpacks_and_writes_marker(
    server: Server, dest: Path, tiny_zip: DatasetSpec
) -> None:
    calls: list[tuple[int, int | None]] = []
    got = fetch_dataset(tiny_zip, dest, progress=lambda done, total: calls.append((done, total)))
    assert got.downloaded
    assert got.folder == dest / "tiny"
    assert got.data_file == dest / "tiny" / "ml-100k" / "u.data"
    assert got.data_file.read_bytes() == U_DATA
    assert calls[-1] == (tiny_zip.size, tiny_zip.size)
    marker = json.loads((got.folder / MARKER_NAME).read_text(encoding="utf-8"))
    assert marker == {
        "url": tiny_zip.url,
        "sha256": tiny_zip.sha256,
        "md5": tiny_zip.md5,
        "size": tiny_zip.size,
    }
    assert [p.name for p in dest.iterdir()] == ["tiny"]  # no temporary leftovers


def test_second_fetch_uses_the_marker_without_network(
    server: Server, dest: Path, tiny_zip: DatasetSpec
) -> None:
    assert fetch_dataset(tiny_zip, dest).downloaded
    again = fetch_dataset(tiny_zip, dest)
    assert not again.downloaded
    assert again.data_file.read_bytes() == U_DATA
    assert server.requests == ["/tiny.zip"]
    forced = fetch_dataset(tiny_zip, dest, force=True)
    assert forced.downloaded and forced.data_file.read_bytes() == U_DATA
    assert len(server.requests) == 2
    assert [p.name for p in dest.iterdir()] == ["tiny"]


def test_missing_data_file_or_stale_marker_downloads_again(
    server: Server, dest: Path, tiny_zip: DatasetSpec
) -> None:
    got = fetch_dataset(tiny_zip, dest)
    got.data_file.unlink()
    assert fetch_dataset(tiny_zip, dest).downloaded
    marker_file = got.folder / MARKER_NAME
    marker = json.loads(marker_file.read_text(encoding="utf-8"))
    marker_file.write_text(json.dumps({**marker, "sha256": "0" * 64}), encoding="utf-8")
    assert fetch_dataset(tiny_zip, dest).downloaded
    assert len(server.requests) == 3


def test_sha256_mismatch_raises_and_leaves_nothing(
    server: Server, dest: Path, tiny_zip: DatasetSpec
) -> None:
    spec = replace(tiny_zip, sha256="0" * 64)
    with pytest.raises(ChecksumMismatchError) as info:
        fetch_dataset(spec, dest)
    message = str(info.value)
    assert "tiny" in message and "0" * 64 in message and str(tiny_zip.sha256) in message
    assert list(dest.iterdir()) == []


def test_size_mismatch_raises(server: Server, dest: Path, tiny_zip: DatasetSpec) -> None:
    assert tiny_zip.size is not None
    with pytest.raises(ChecksumMismatchError, match=rf"size .* is {tiny_zip.size}, expected 7"):
        fetch_dataset(replace(tiny_zip, size=7), dest)
    assert list(dest.iterdir()) == []


def test_md5_only_spec_is_verified(server: Server, dest: Path, tiny_zip: DatasetSpec) -> None:
    md5_only = replace(tiny_zip, sha256=None, size=None, md5=str(tiny_zip.md5).upper())
    assert fetch_dataset(md5_only, dest).downloaded
    with pytest.raises(ChecksumMismatchError, match="md5"):
        fetch_dataset(replace(md5_only, md5="f" * 32), dest, force=True)
    assert fetch_dataset(md5_only, dest).data_file.read_bytes() == U_DATA  # old copy kept


def test_tar_gz_is_unpacked(server: Server, dest: Path) -> None:
    tsv = b"00000c289a1829a808ac09c00daf10bc3c4e223b\t\tbetty blowtorch\t2137\n"
    data_path = "lastfm-dataset-360K/usersha1-artmbid-artname-plays.tsv"
    payload = write_tgz(server.root / "lastfm.tar.gz", {data_path: tsv})
    spec = spec_for(server, "lastfm.tar.gz", payload, archive="tar.gz", data_path=data_path)
    assert fetch_dataset(spec, dest).data_file.read_bytes() == tsv


def test_http_404_raises_dataset_error_with_url_and_hint(
    server: Server, dest: Path, tiny_zip: DatasetSpec
) -> None:
    spec = replace(tiny_zip, url=f"{server.base_url}/missing.zip")
    with pytest.raises(DatasetError) as info:
        fetch_dataset(spec, dest)
    assert not isinstance(info.value, ChecksumMismatchError)
    assert spec.url in str(info.value) and "404" in str(info.value)
    assert "by hand" in str(info.value) and str(dest / "tiny") in str(info.value)
    assert list(dest.iterdir()) == []


def test_unreachable_server_raises_dataset_error(dest: Path, tiny_zip: DatasetSpec) -> None:
    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    spec = replace(tiny_zip, url=f"http://127.0.0.1:{port}/tiny.zip")
    with pytest.raises(DatasetError, match="No internet"):
        fetch_dataset(spec, dest, timeout=2.0)


@pytest.mark.parametrize("archive", ["zip", "tar.gz"])
@pytest.mark.parametrize("evil", ["../evil", "ok/../../evil", "ABSOLUTE"])
def test_path_traversal_is_refused(
    server: Server, dest: Path, tmp_path: Path, archive: str, evil: str
) -> None:
    if evil == "ABSOLUTE":
        evil = str(tmp_path / "evil-absolute")
    members = {"ml-100k/u.data": U_DATA, evil: b"pwned\n"}
    file_name = f"evil.{archive}"
    write = write_zip if archive == "zip" else write_tgz
    payload = write(server.root / file_name, members)
    spec = spec_for(server, file_name, payload, archive=archive)
    with pytest.raises(DatasetError, match="escapes its folder"):
        fetch_dataset(spec, dest)
    assert list(dest.iterdir()) == []
    assert [p for p in tmp_path.rglob("evil*") if p.parent != server.root] == []


def test_with_mirror_keeps_file_name_and_checksums(
    server: Server, dest: Path, tiny_zip: DatasetSpec
) -> None:
    upstream = replace(tiny_zip, url="https://files.example.invalid/datasets/tiny.zip")
    mirrored = with_mirror(upstream, f"{server.base_url}/")
    assert mirrored.url == f"{server.base_url}/tiny.zip"
    assert (mirrored.sha256, mirrored.md5, mirrored.size) == (
        upstream.sha256,
        upstream.md5,
        upstream.size,
    )
    assert fetch_dataset(mirrored, dest).data_file.read_bytes() == U_DATA
    zenodo = with_mirror(dataset("lastfm-360k"), "https://mirror.example/ds")
    assert zenodo.url == "https://mirror.example/ds/lastfm-dataset-360K.tar.gz"
    with pytest.raises(ConfigError, match="scheme"):
        with_mirror(upstream, "mirror.example/ds")


def test_unknown_dataset_lists_known_names() -> None:
    assert dataset("movielens-100k") is DATASETS["movielens-100k"]
    with pytest.raises(NotFoundError, match="nope") as info:
        dataset("nope")
    assert all(name in str(info.value) for name in DATASETS)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_dataset_is_pinned(name: str) -> None:
    spec = DATASETS[name]
    assert spec.name == name
    assert spec.url.startswith("https://")
    assert spec.sha256 is not None or spec.md5 is not None
    assert spec.sha256 is None or len(spec.sha256) == 64
    assert spec.md5 is None or len(spec.md5) == 32
    assert spec.archive in ("zip", "tar.gz")
    assert not spec.data_path.startswith("/") and ".." not in spec.data_path.split("/")
    assert spec.import_format and "redistribute" in spec.licence
