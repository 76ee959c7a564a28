"""Checks of uploaded archives before anything reads them for real: sizes and counts from their headers only.

An archive can claim far more than it holds (a zip bomb: a few kB that inflate to terabytes; a tar whose pax or
long-name header is gigabytes that :mod:`tarfile` would read into memory). These checks read headers, never member
data, and refuse with :class:`~mlpilot.errors.InvalidArgument` before anything is decompressed or extracted:

* :func:`check_zip` (skops models): the declared uncompressed sizes (``zipfile`` never reads past them) and the
  member count.
* :func:`check_tar` (packed indexes): a plain tar only (a compressed stream can hold a header of any size for a
  few kB), metadata headers (pax, GNU long names) of at most 1 MiB, the member count and the total of the sizes
  the headers declare.

Paths, links and special files are refused by the extractor itself (:func:`mlpilot.llm.index.unpack_index`), which
sees names after pax overrides; it extracts into a temporary directory removed on any failure. :func:`matches_tar`
checks an unpacked copy (the data plane's index cache) against its digest-checked tar before it is used.
"""

from __future__ import annotations

import hashlib
import tarfile
import zipfile
from pathlib import Path
from typing import IO, BinaryIO

from mlpilot.errors import InvalidArgument

__all__ = ["MAX_METADATA_HEADER", "check_tar", "check_zip", "matches_tar"]

#: the largest pax or GNU long-name header accepted (real ones are a few hundred bytes).
MAX_METADATA_HEADER = 1 << 20
_COMPRESSED = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ": "xz", b"(\xb5/\xfd": "zstd", b"]\x00\x00": "lzma"}


def _over(what: str, name: str, limit: int, setting: str) -> InvalidArgument:
    return InvalidArgument(
        f"{name} is refused: its {what} exceeds {limit} (artifacts.{setting}); nothing was extracted",
        detail={"limit": limit, "setting": f"artifacts.{setting}"},
    )


def check_zip(path: Path | str, *, max_bytes: int, max_members: int, name: str | None = None) -> None:
    """Refuse a zip archive whose members would unpack to more than ``max_bytes`` or that has more than
    ``max_members`` members (read from its central directory only).

    Raises:
        InvalidArgument: over a limit, or not a readable zip archive.
    """
    label = name or Path(path).name
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise InvalidArgument(f"{label} is not a readable zip archive: {exc}") from exc
    if len(infos) > max_members:
        raise _over(f"member count ({len(infos)})", label, max_members, "max_archive_members")
    total = sum(i.file_size for i in infos)
    if total > max_bytes:
        raise _over(f"unpacked size ({total} bytes)", label, max_bytes, "max_unpacked_bytes")


def check_tar(path: Path | str, *, max_bytes: int, max_members: int, name: str | None = None) -> None:
    """Refuse a tar archive that is compressed, has a metadata header over :data:`MAX_METADATA_HEADER`, more than
    ``max_members`` members, or members declaring more than ``max_bytes`` in total. Walks the headers as
    :mod:`tarfile` resolves them (pax overrides included) and seeks over member data: no data is read.

    Raises:
        InvalidArgument: any of those, or an archive that does not parse.
    """
    label = name or Path(path).name
    with open(path, "rb") as f:
        head = f.read(6)
        for magic, kind in _COMPRESSED.items():
            if head.startswith(magic):
                raise InvalidArgument(
                    f"{label} is a {kind}-compressed archive: upload the plain tar (as pack_index writes it)"
                )
        f.seek(0)
        members = total = 0
        try:
            with tarfile.open(fileobj=_HeaderReads(f, label), mode="r:") as tar:  # type: ignore[call-overload]
                for info in tar:
                    members += 1
                    if members > max_members:
                        raise _over("member count", label, max_members, "max_archive_members")
                    if info.isreg():
                        total += info.size
                        if total > max_bytes:
                            raise _over(f"unpacked size (over {total} bytes)", label, max_bytes, "max_unpacked_bytes")
        except (tarfile.TarError, EOFError) as exc:
            raise InvalidArgument(f"{label} is not a readable tar archive: {exc}") from exc


class _HeaderReads:
    """The archive for :mod:`tarfile`, refusing any single read over :data:`MAX_METADATA_HEADER`: walking headers,
    tarfile reads only headers and pax/long-name payloads (each in one read), so a bigger read is a metadata bomb."""

    def __init__(self, f: BinaryIO, label: str) -> None:
        self._f = f
        self._label = label

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0 or n > MAX_METADATA_HEADER:
            raise InvalidArgument(
                f"{self._label} is refused: a metadata (pax or long-name) header of more than {MAX_METADATA_HEADER} "
                "bytes"
            )
        return self._f.read(n)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()


def matches_tar(tar_path: Path | str, root: Path | str) -> bool:
    """Whether directory ``root`` holds exactly what the (digest-checked) plain tar at ``tar_path`` unpacks to: the
    same regular files with the same bytes, nothing more (directories aside). Reads both in full; for caches of an
    unpacked archive, checked before each use like a cached blob.
    """
    base = Path(root)
    expected: dict[str, str] = {}
    try:
        with tarfile.open(tar_path, mode="r:") as tar:
            for member in tar:
                if not member.isreg():
                    continue
                src = tar.extractfile(member)
                if src is None:
                    return False
                with src:
                    expected[_clean(member.name)] = _sha256(src)
    except (tarfile.TarError, OSError, EOFError):
        return False
    found = {p.relative_to(base).as_posix(): p for p in base.rglob("*") if not p.is_dir()}
    if set(found) != set(expected):
        return False
    for name, path in found.items():
        if path.is_symlink():
            return False
        with open(path, "rb") as f:
            if _sha256(f) != expected[name]:
                return False
    return True


def _clean(name: str) -> str:
    return "/".join(p for p in name.replace("\\", "/").split("/") if p not in ("", "."))


def _sha256(f: IO[bytes]) -> str:
    h = hashlib.sha256()
    while block := f.read(1 << 20):
        h.update(block)
    return h.hexdigest()
