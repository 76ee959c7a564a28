"""A real ``mlpilot up`` whose request log lives on a 2 MB filesystem that fills up under traffic.

Fast mode: inference keeps answering 200; records that cannot be kept are counted in ``mlpilot_log_dropped_total``
(every acknowledged request is either in the log, once, or counted). Strict mode: a request whose record cannot be
made durable is refused with 503 (counted too), never answered unlogged. Either way the failure is logged once, not
per request, and once space is freed the server writes again by itself, without a restart."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from mlpilot import Client
from mlpilot.telemetry.query import read_records
from tests.factories import iris_frame
from tests.faults import fill, small_filesystem
from tests.helpers import ServerProcess

pytestmark = pytest.mark.slow

BODY = orjson.dumps(
    {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]}
)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    from sklearn.linear_model import LogisticRegression

    X, y = iris_frame()
    Xn = X.to_numpy()
    with Client(home=tmp_path / "home") as c:
        c.register_model("iris", LogisticRegression(max_iter=300).fit(Xn, y), sample=Xn[:2])
        c.deploy("iris", "iris:1")
    return tmp_path / "home"


@pytest.fixture
def small(tmp_path: Path) -> Iterator[Path]:
    with small_filesystem(tmp_path / "small") as path:
        yield path


def _until(cond: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _dropped(http: httpx.Client) -> float:
    m = re.search(r"^mlpilot_log_dropped_total (\S+)$", http.get("/metrics").text, re.M)
    assert m, "mlpilot_log_dropped_total is missing from /metrics"
    return float(m.group(1))


def _logged(root: Path) -> Counter[str]:
    if not (root / "iris").is_dir():
        return Counter()
    return Counter(read_records(root, "iris", columns=["request_id"]).request_id)


def _infer(http: httpx.Client, n: int, statuses: Counter[int], acked: list[str], refused: list[str]) -> None:
    for _ in range(n):
        r = http.post("/v2/models/iris/infer", content=BODY)
        statuses[r.status_code] += 1
        if r.status_code == 200:
            acked.append(r.headers["x-request-id"])
        elif r.status_code == 503:
            assert "request log cannot write (No space left on device)" in r.json()["error"], r.text
            refused.append(r.headers["x-request-id"])


@pytest.mark.parametrize("durability", ["fast", "strict"])
def test_a_full_log_disk_degrades_counts_and_recovers_by_itself(home: Path, small: Path, durability: str) -> None:
    root = small / "logs"
    env = {
        "MLPILOT_LOGS__ROOT": str(root),
        "MLPILOT_LOGS__DURABILITY": durability,
        "MLPILOT_LOGS__FLUSH_INTERVAL_S": "0.2",
        "MLPILOT_LOGS__CAPACITY": "100",  # small, so a few hundred requests overflow what fast mode keeps in memory
        "MLPILOT_SERVER__GRPC": "0",
    }
    server = ServerProcess(home, extra_env=env)
    statuses: Counter[int] = Counter()
    acked: list[str] = []
    refused: list[str] = []
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            _infer(http, 20, statuses, acked, refused)
            _until(lambda: len(_logged(root)) == 20, what="the first records")
            filler = fill(small)
            _infer(http, 400, statuses, acked, refused)
            if durability == "fast":
                assert statuses == {200: 420}  # inference keeps answering
            else:
                assert set(statuses) <= {200, 503} and statuses[503] >= 300  # refused, never answered unlogged
            _until(lambda: _dropped(http) > 0, what="the drop counter")
            if durability == "strict":
                _until(lambda: _dropped(http) == len(refused), what="every refused record counted")
            full = len(_logged(root))
            filler.unlink()  # space is back: no restart
            if durability == "fast":  # the queue is full until what waited in memory is written
                _until(lambda: len(_logged(root)) > full, what="what waited in memory, written")
            before = len(acked)
            _infer(http, 30, statuses, acked, refused)
            assert statuses[500] == 0 and acked[before:] and len(acked) - before == 30
            _until(lambda: set(acked[before:]) <= set(_logged(root)), what="records written again")
            # every acknowledged request is in the log, or (fast mode, beyond what it could keep) counted as dropped;
            # every refused one (strict mode) is counted too — the counter is reported every second
            _until(
                lambda: len(set(acked) - set(_logged(root))) + len(refused) == _dropped(http),
                5,
                "every record not written to be counted",
            )
            dropped = _dropped(http)
    finally:
        server.stop()
    logged = _logged(root)
    assert max(logged.values()) == 1  # exactly once
    assert not set(refused) & set(logged)
    missing = set(acked) - set(logged)
    if durability == "strict":
        assert not missing and dropped == len(refused)
    else:
        assert len(missing) == dropped > 0
    text = server.log.read_text()
    assert text.count("request log: cannot write") == 1, text[-3000:]  # once, not per request or flush
    assert text.count("request log: writing again after") == 1
    assert not list(small.rglob(".seg-*.tmp"))
