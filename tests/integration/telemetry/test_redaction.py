"""Redaction end to end: a real server with ``logs.redact_fields``, requests over HTTP, then the stored request log
and the server's log output hold no raw value and no secret. And the strict-mode spill, redacted before it is
written."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd

from mlpilot import Client
from mlpilot.serving.dataplane import InferenceRecord
from mlpilot.telemetry.query import read_records
from mlpilot.telemetry.redact import REDACTED, Redactor
from mlpilot.telemetry.reqlog import RequestLog
from tests.helpers import ServerProcess

API_KEY = "mlp_0a1b2c3d_Zm9vYmFyYmF6cXV4cXV1eHh5enp5MTIzNDU2Nzg5MGFiYw"
OPENAI = "sk-proj-AbCdEfGhIjKlMnOpQrStUv0123"
EMAILS = ["alice@example.com", "bob@example.com", "carol@example.com"]

MODEL = f"""
import logging
import numpy as np

log = logging.getLogger("acme.fraud")


class Fraud:
    def predict(self, X):
        emails = [str(e) for e in X["email"]]
        log.warning("scoring %d rows: email=%s, Authorization: Bearer {API_KEY}", len(emails), emails[0])
        if (X["amount"] < 0).any():
            raise ValueError(f"lookup failed: email={{emails[0]}} api_key={OPENAI}")
        return {{"predict": np.asarray(X["amount"], dtype=float) * 2, "echo": np.asarray([e.upper() for e in emails])}}
"""


def _body(emails: list[str], amounts: list[float]) -> bytes:
    return orjson.dumps(
        {
            "inputs": [
                {"name": "email", "datatype": "BYTES", "shape": [len(emails)], "data": emails},
                {"name": "amount", "datatype": "FP64", "shape": [len(amounts)], "data": amounts},
            ]
        }
    )


def _until(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_a_server_logs_no_redacted_value_and_no_secret(tmp_path: Path) -> None:
    home = tmp_path / "home"
    model = tmp_path / "fraud.py"
    model.write_text(MODEL)
    env = {"MLPILOT_LOGS__REDACT_FIELDS": '["Email", "echo"]', "MLPILOT_LOGS__FLUSH_INTERVAL_S": "0.2"}
    server = ServerProcess(home, extra_env=env, args=("--no-grpc",))
    try:
        with Client(server.url) as c:
            sample = pd.DataFrame({"email": ["x@example.org"], "amount": [1.0]})
            c.register_model("fraud", model, sample=sample, trust_pickle=True)
            c.deploy("fraud", "fraud:1")
        url = f"{server.url}/v2/models/fraud/infer"

        def infer(emails: list[str], amounts: list[float]) -> httpx.Response:
            return httpx.post(url, content=_body(emails, amounts), timeout=30)

        _until(lambda: infer(EMAILS[:1], [1.0]).status_code == 200)
        ok = infer(EMAILS[1:], [2.0, 3.0])
        assert ok.status_code == 200, ok.text
        assert "BOB@EXAMPLE.COM" in ok.text  # the caller gets the real answer: only the log is redacted
        failed = infer(EMAILS[:1], [-1.0])
        assert failed.status_code >= 400 and OPENAI in failed.text  # the model's own error, answered as it is

        def logged() -> pd.DataFrame:
            return read_records(home / "logs", "fraud")

        _until(lambda: len(logged()) >= 4)  # 1 + 2 rows answered, 1 failed
    finally:
        server.stop()
    rows = logged()
    text = rows.astype(str).to_string()
    for raw in [*EMAILS, *(e.upper() for e in EMAILS), OPENAI, API_KEY]:
        assert raw not in text, raw
    assert set(rows["in.email"]) == {REDACTED}
    assert set(rows["out.echo"].dropna()) == {REDACTED}
    assert sorted(rows["in.amount"]) == [-1.0, 1.0, 2.0, 3.0]  # what is not redacted stays as it was
    error = rows.loc[rows["status"] == "error", "error"].iloc[0]
    assert f"email={REDACTED}" in error and "api_key=" in error and "lookup failed" in error

    output = server.log.read_text()
    assert API_KEY not in output and "alice@example.com" not in output
    assert f"scoring 1 rows: email={REDACTED}, Authorization: Bearer {REDACTED}" in output


def test_the_strict_spill_is_redacted_before_it_is_written(tmp_path: Path) -> None:
    log = RequestLog(tmp_path / "logs", durability="strict", flush_interval_s=3600, redactor=Redactor(["email"]))
    log.start()
    try:
        done = threading.Event()
        record = InferenceRecord(
            ts=time.time(),
            request_id="r1",
            deployment="d",
            variant="a",
            model="m:1",
            status="error",
            latency_s=0.01,
            error=f"backend refused {OPENAI}",
            inputs={"email": np.array(["alice@example.com"], dtype=object), "x": np.array([1.5])},
        )
        log.append_durable(record, done.set)
        assert done.wait(10)
        spill = b"".join(p.read_bytes() for p in (tmp_path / "logs" / "_spill").glob("*.jsonl"))
        assert b"r1" in spill  # the record is in the spill …
        assert b"alice@example.com" not in spill and OPENAI.encode() not in spill  # … redacted
    finally:
        log.stop()
    rows = read_records(tmp_path / "logs", "d")
    assert rows["in.email"].tolist() == [REDACTED] and rows["in.x"].tolist() == [1.5]
    assert OPENAI not in rows["error"].iloc[0]


def test_a_monitor_cannot_watch_a_redacted_feature(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    from mlpilot.settings import LogSettings, Settings

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"email": rng.normal(size=60), "amount": rng.normal(size=60)})
    settings = Settings(home=tmp_path / "home", logs=LogSettings(redact_fields=["email"], flush_interval_s=0.1))
    with Client(settings=settings) as c:
        v = c.register_model("m", LogisticRegression().fit(X, X["amount"] > 0), sample=X.head(3))
        c.register_dataset("ref", X, bind_to=v.ref)
        c.deploy("m", v.ref)
        for i in range(0, 60, 5):
            c.predict("m", X.iloc[i : i + 5])
        _until(lambda: len(c.logs("m", limit=100)) == 60)
        logged = c.logs("m", limit=100)
        assert set(logged["in.email"]) == {REDACTED} and logged["in.amount"].notna().all()
        c.create_monitor("m", "drift-email", {"kind": "drift", "window": "1h", "features": ["email"], "min_rows": 10})
        c.create_monitor("m", "drift-all", {"kind": "drift", "window": "1h", "min_rows": 10})
        results = {name: c.run_monitor("m", name) for name in ("drift-email", "drift-all")}
    assert results["drift-email"].status.value == "error"
    assert "redacted in the request log (logs.redact_fields)" in results["drift-email"].message
    assert results["drift-all"].status.value != "error", results["drift-all"].message
    assert [f["feature"] for f in results["drift-all"].detail["features"]] == ["amount"]  # email left out
