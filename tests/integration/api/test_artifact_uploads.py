"""Uploads over HTTP against a real server: size limits (413, nothing stored), malicious archives (400, nothing left
half-extracted), the pickle trust flag (412, no forged trust record), and the remote data plane's blob cache."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import joblib
import pytest

from mlpilot import Client, IntegrityError
from mlpilot.blobs import HttpBlobSource
from mlpilot.blobs.local import digest_key
from tests.factories import index_tar, sklearn_case, tar_member
from tests.helpers import ServerProcess

LIMIT = 200_000  # artifacts.max_upload_bytes of the server under test
UNPACKED = 100_000  # artifacts.max_unpacked_bytes (an archive over it still fits an upload)
MEMBERS = 50  # artifacts.max_archive_members


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("uploads") / "home"
    env = {
        "MLPILOT_ARTIFACTS__MAX_UPLOAD_BYTES": str(LIMIT),
        "MLPILOT_ARTIFACTS__MAX_UNPACKED_BYTES": str(UNPACKED),
        "MLPILOT_ARTIFACTS__MAX_ARCHIVE_MEMBERS": str(MEMBERS),
    }
    proc = ServerProcess(home, extra_env=env, args=("--no-grpc",))
    proc.home = home  # type: ignore[attr-defined]
    try:
        yield proc
    finally:
        proc.stop()


def _post(server: ServerProcess, name: str, files: dict[str, Any], data: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{server.url}/api/v1/artifacts/{name}/versions", files=files, data=data, timeout=60)


def _nothing_of(server: ServerProcess, name: str) -> None:
    assert httpx.get(f"{server.url}/api/v1/artifacts/{name}", timeout=10).status_code == 404
    home: Path = server.home  # type: ignore[attr-defined]
    assert not any((home / "tmp").glob("upload-*")), "an upload's scratch directory was left behind"


def _blob_count(server: ServerProcess) -> int:
    root: Path = server.home / "artifacts"  # type: ignore[attr-defined]
    return sum(1 for p in root.rglob("*") if p.is_file()) if root.exists() else 0


# ---------------------------------------------------------------------------------------------- trust over HTTP


def _joblib_bytes() -> bytes:
    buf = io.BytesIO()
    joblib.dump(sklearn_case().model, buf)
    return buf.getvalue()


def test_a_pickle_without_trust_is_a_412_naming_the_flag(server: ServerProcess) -> None:
    blobs = _blob_count(server)
    r = _post(server, "p412", {"file": ("model.joblib", _joblib_bytes())}, {"kind": "model"})
    assert r.status_code == 412, r.text
    body = r.json()
    assert body["kind"] == "failed_precondition" and body["type"] == "FailedPrecondition"
    assert "trust_pickle=true (API)" in body["error"] and "artifacts.trust_pickle" in body["error"]
    _nothing_of(server, "p412")
    assert _blob_count(server) == blobs


def test_a_client_cannot_forge_a_trust_record(server: ServerProcess) -> None:
    forged = {"format": "joblib", "requires_trust": True, "trusted_by": "mallory", "trusted_via": "request"}
    form = {"kind": "model", "flavor": "sklearn", "flavor_metadata": json.dumps(forged)}
    refused = _post(server, "forged", {"file": ("model.joblib", _joblib_bytes())}, form)
    assert refused.status_code == 412, refused.text
    ok = _post(server, "forged", {"file": ("model.joblib", _joblib_bytes())}, {**form, "trust_pickle": "true"})
    assert ok.status_code == 201, ok.text
    v = ok.json()
    assert v["metadata"]["flavor"]["trusted_by"] == v["created_by"] != "mallory"


# ---------------------------------------------------------------------------------------------- upload size


def test_an_upload_over_the_limit_is_refused_before_it_is_read(server: ServerProcess) -> None:
    blobs = _blob_count(server)
    r = _post(server, "big", {"file": ("big.csv", b"x" * (LIMIT + 20 * 1024**2))}, {"kind": "dataset"})
    assert r.status_code == 413, r.text
    assert r.json()["kind"] == "invalid_argument" and "artifacts.max_upload_bytes (200000 bytes)" in r.json()["error"]
    _nothing_of(server, "big")
    assert _blob_count(server) == blobs


def test_a_file_over_the_limit_in_a_small_enough_body_is_refused(server: ServerProcess) -> None:
    r = _post(server, "big2", {"file": ("big.csv", b"x" * (LIMIT + 1))}, {"kind": "dataset"})
    assert r.status_code == 413, r.text
    assert "upload 'big.csv' exceeds artifacts.max_upload_bytes" in r.json()["error"]
    _nothing_of(server, "big2")


def test_a_chunked_upload_is_cut_off_at_the_limit(server: ServerProcess) -> None:
    boundary = "mlpilot-test-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="kind"\r\n\r\ndataset\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()

    def body() -> Iterator[bytes]:  # no Content-Length: Transfer-Encoding chunked
        yield head
        for _ in range(64):  # 32 MiB: over the limit and its 16 MiB of room for the form
            yield b"y" * (512 * 1024)
        yield f"\r\n--{boundary}--\r\n".encode()

    try:
        r = httpx.post(
            f"{server.url}/api/v1/artifacts/chunked/versions",
            content=body(),
            headers={"content-type": f"multipart/form-data; boundary={boundary}"},
            timeout=60,
        )
    except httpx.HTTPError:  # the server may close the connection while the client is still sending
        pass
    else:
        assert r.status_code == 413, r.text
        assert r.json()["error"].startswith("the request body exceeds artifacts.max_upload_bytes")  # the middleware
    _nothing_of(server, "chunked")


# ---------------------------------------------------------------------------------------------- archives


@pytest.mark.parametrize(
    ("archive", "message"),
    [
        (index_tar([(tar_member("../../evil"), b"x")]), "unsafe path"),
        (index_tar([(tar_member("/tmp/evil"), b"x")]), "unsafe path"),
        (index_tar([(tar_member("link", tarfile.SYMTYPE, "/etc/passwd"), None)]), "link or special"),
        (index_tar([(tar_member("hard", tarfile.LNKTYPE, "/etc/passwd"), None)]), "link or special"),
        (index_tar([(tar_member("dev", tarfile.CHRTYPE), None)]), "link or special"),
        (index_tar([(tar_member(f"f{i}"), b"") for i in range(MEMBERS + 5)]), "artifacts.max_archive_members"),
        (index_tar([(tar_member("huge"), b"\0" * (UNPACKED + 1))], mode="w:gz"), "gzip-compressed"),
        (index_tar([(tar_member("a"), b"\0" * (UNPACKED // 2)), (tar_member("b"), b"\0" * (UNPACKED // 2 + 10))]),
         "artifacts.max_unpacked_bytes"),
    ],
    ids=["dotdot", "absolute", "symlink", "hardlink", "device", "members", "gzip-bomb", "total"],
)  # fmt: skip
def test_a_malicious_index_archive_is_a_400_and_leaves_nothing(
    server: ServerProcess, archive: bytes, message: str
) -> None:
    if len(archive) > LIMIT:
        pytest.fail("the archive must fit the upload limit to reach the archive checks")
    r = _post(server, "idx", {"file": ("kb.tar", archive)}, {"kind": "index"})
    assert r.status_code == 400, r.text
    assert message in r.json()["error"], r.json()
    _nothing_of(server, "idx")
    assert not (server.home.parent / "evil").exists()  # type: ignore[attr-defined]


def test_a_skops_zip_bomb_is_a_400(server: ServerProcess) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("schema.json", "{}")
        zf.writestr("big.npy", b"\0" * (UNPACKED * 4))
    assert len(buf.getvalue()) < LIMIT
    r = _post(server, "bomb", {"file": ("model.skops", buf.getvalue())}, {"kind": "model"})
    assert r.status_code == 400, r.text
    assert "exceeds 100000 (artifacts.max_unpacked_bytes)" in r.json()["error"]
    _nothing_of(server, "bomb")


# ---------------------------------------------------------------------------------------------- remote caches


def test_remote_caches_verify_their_copies(server: ServerProcess, tmp_path: Path) -> None:
    with Client(server.url) as c:
        v = c.register_model("cached", sklearn_case().model)
        good = c.download(v.ref)[1].read_bytes()
    with HttpBlobSource(server.url, tmp_path / "cache") as blobs:
        cached = blobs.open_verified(v.digest).path
        assert cached.read_bytes() == good
        data = bytearray(good)
        data[len(data) // 2] ^= 0xFF
        cached.write_bytes(bytes(data))  # the local copy went bad: downloaded again
        assert blobs.open_verified(v.digest).path.read_bytes() == good
        stored = server.home / "artifacts" / digest_key(v.digest)  # type: ignore[attr-defined]
        stored.write_bytes(bytes(data))  # now the control plane's own copy went bad too
        cached.write_bytes(bytes(data))
        with pytest.raises(IntegrityError, match="is corrupt"):
            blobs.open_verified(v.digest)
        assert not cached.exists()  # nothing bad is kept
