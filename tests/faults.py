"""Fault injection for the fault tests (tests/integration/faults, tests/e2e/test_faults_*): a small filesystem that
fills up, a TCP proxy that cuts a database off, another process holding SQLite's write lock. Real faults, no mocks;
everything started here is stopped by PID or closed in teardown."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mlpilot.serving.dataplane import InferenceRecord


@contextlib.contextmanager
def small_filesystem(path: Path, size: str = "2m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` (we run as root in CI), unmounted afterwards. Skips when mounting is
    not permitted, unless ``MLPILOT_REQUIRE_MOUNT=1`` (CI), where that is a failure."""
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True
    )
    if r.returncode != 0:
        why = f"cannot mount a {size} tmpfs for the disk-full tests: {(r.stderr or r.stdout).strip()}"
        if os.environ.get("MLPILOT_REQUIRE_MOUNT") == "1":
            pytest.fail(f"{why} (MLPILOT_REQUIRE_MOUNT=1)")
        pytest.skip(f"{why} (needs root or CAP_SYS_ADMIN)")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)  # still busy: detach it


def fill(directory: Path) -> Path:
    """Fill the filesystem of ``directory`` with one file until it is full (ENOSPC); delete the file to free it."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as f:  # unbuffered: a short write fills the last bytes, the next fails
        while True:
            try:
                f.write(chunk)
            except OSError:
                break
    return filler


class TcpProxy:
    """A TCP proxy on 127.0.0.1 to ``target``: :meth:`cut` resets every connection and every new one (the database
    is unreachable, as when its host or network goes away) until :meth:`restore`."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._listener.settimeout(0.1)
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._cut = False
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)
        self._thread.start()

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            conns, self._conns = self._conns, set()
        for s in conns:
            _reset(s)

    def restore(self) -> None:
        with self._lock:
            self._cut = False

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._thread.join(5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                refuse = self._cut
            if refuse:
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            _reset(s)
        with self._lock:
            self._conns.discard(src)
            self._conns.discard(dst)


def _reset(s: socket.socket) -> None:
    """Close with a TCP reset (no graceful FIN), so the peer's next read or write fails at once."""
    with contextlib.suppress(OSError):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        s.close()


_LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
conn.close()
"""


class SqliteWriteLock:
    """Another process holding SQLite's write lock on ``db`` (``BEGIN EXCLUSIVE`` on its own connection) until
    :meth:`release`; killed by PID in :meth:`close` if it is still there."""

    def __init__(self, db: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _LOCKER, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if line != "locked":
            self.close()
            raise RuntimeError(f"the locking process did not take the lock: {line!r}")

    def release(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        assert self.proc.wait(10) == 0

    def close(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                f.close()


def log_record(i: int, width: int = 8) -> InferenceRecord:
    """A small request-log record, request id ``r<i>``, its inputs ``width`` copies of ``i``."""
    return InferenceRecord(
        ts=time.time(),
        request_id=f"r{i}",
        deployment="d",
        variant="v",
        model="m:1",
        status="ok",
        latency_s=0.001,
        inputs=np.full((1, width), float(i)),
        outputs={"p": np.array([i])},
    )
