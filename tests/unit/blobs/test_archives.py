"""Header-only checks of archives (mlpilot.blobs.archives): bombs fail fast, before anything is decompressed."""

from __future__ import annotations

import gzip
import io
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from mlpilot.blobs.archives import MAX_METADATA_HEADER, check_tar, check_zip, matches_tar
from mlpilot.errors import InvalidArgument

MiB = 1024**2


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_a_zip_bomb_is_refused_from_its_directory_alone(tmp_path: Path) -> None:
    bomb = _zip(tmp_path / "model.skops", {"schema.json": b"{}", "big.npy": b"\0" * (64 * MiB)})
    assert bomb.stat().st_size < MiB  # small on disk …
    t0 = time.perf_counter()
    with pytest.raises(InvalidArgument, match=r"unpacked size .* exceeds 16777216 \(artifacts.max_unpacked_bytes\)"):
        check_zip(bomb, max_bytes=16 * MiB, max_members=100)
    assert time.perf_counter() - t0 < 0.5  # … and refused without inflating it
    check_zip(bomb, max_bytes=128 * MiB, max_members=100)  # the same archive under a higher limit passes


def test_a_zip_with_too_many_members_is_refused(tmp_path: Path) -> None:
    many = _zip(tmp_path / "m.skops", {f"f{i}": b"x" for i in range(50)})
    with pytest.raises(InvalidArgument, match=r"member count \(50\) exceeds 10 \(artifacts.max_archive_members\)"):
        check_zip(many, max_bytes=MiB, max_members=10)


def test_a_broken_zip_is_invalid(tmp_path: Path) -> None:
    bad = tmp_path / "m.skops"
    bad.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(InvalidArgument, match="not a readable zip"):
        check_zip(bad, max_bytes=MiB, max_members=10)


def _tar(
    path: Path, members: dict[str, bytes], fmt: int = tarfile.PAX_FORMAT, pax: dict[str, str] | None = None
) -> Path:
    with tarfile.open(path, "w", format=fmt, pax_headers=pax or {}) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_a_plain_tar_within_limits_passes(tmp_path: Path) -> None:
    check_tar(_tar(tmp_path / "i.tar", {"manifest.json": b"{}", "a/b.bin": b"x" * 1000}), max_bytes=2000, max_members=2)


@pytest.mark.parametrize(
    ("limits", "message"),
    [((1500, 100), r"unpacked size .* exceeds 1500"), ((10**6, 2), r"member count exceeds 2")],
    ids=["bytes", "members"],
)
def test_a_tar_over_a_limit_is_refused(tmp_path: Path, limits: tuple[int, int], message: str) -> None:
    path = _tar(tmp_path / "i.tar", {"a": b"x" * 1000, "b": b"y" * 1000, "c": b""})
    with pytest.raises(InvalidArgument, match=message):
        check_tar(path, max_bytes=limits[0], max_members=limits[1])


def test_a_compressed_tar_is_refused(tmp_path: Path) -> None:
    plain = _tar(tmp_path / "i.tar", {"manifest.json": b"{}"})
    packed = tmp_path / "i.tar.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    with pytest.raises(InvalidArgument, match="gzip-compressed archive: upload the plain tar"):
        check_tar(packed, max_bytes=MiB, max_members=10)


def test_a_huge_pax_header_is_refused_without_reading_it(tmp_path: Path) -> None:
    # a pax header tarfile would read into memory in one piece
    path = _tar(tmp_path / "i.tar", {"manifest.json": b"{}"}, pax={"comment": "x" * (2 * MAX_METADATA_HEADER)})
    with pytest.raises(InvalidArgument, match=r"metadata .* header of more than 1048576 bytes"):
        check_tar(path, max_bytes=10 * MiB, max_members=10)


def test_garbage_is_not_a_tar(tmp_path: Path) -> None:
    bad = tmp_path / "i.tar"
    bad.write_bytes(b"this is not a tar archive" * 40)
    with pytest.raises(InvalidArgument, match="not a readable tar"):
        check_tar(bad, max_bytes=MiB, max_members=10)


def test_matches_tar_detects_any_difference(tmp_path: Path) -> None:
    path = _tar(tmp_path / "i.tar", {"manifest.json": b"{}", "t/data.bin": b"abc" * 100})
    root = tmp_path / "out"
    with tarfile.open(path) as tar:
        tar.extractall(root, filter="data")
    assert matches_tar(path, root)
    (root / "t" / "data.bin").write_bytes(b"abd" * 100)  # same size, other bytes
    assert not matches_tar(path, root)
    (root / "t" / "data.bin").write_bytes(b"abc" * 100)
    assert matches_tar(path, root)
    (root / "extra").write_bytes(b"")
    assert not matches_tar(path, root)
    (root / "extra").unlink()
    (root / "manifest.json").unlink()
    assert not matches_tar(path, root)
