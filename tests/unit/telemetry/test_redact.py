"""Redaction (mlpilot.telemetry.redact): secrets in any text, configured fields in request-log tables, spill lines,
JSON at any depth, and Python log records."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlpilot.errors import InvalidArgument
from mlpilot.monitors.kinds import input_frame, output_columns
from mlpilot.serving.dataplane import InferenceRecord
from mlpilot.settings import LogSettings
from mlpilot.telemetry.columns import partition_tables
from mlpilot.telemetry.redact import (
    REDACTED,
    Redactor,
    SecretFilter,
    install_log_redaction,
    redacted_columns,
    scrub_secrets,
    uninstall_log_redaction,
)

API_KEY = "mlp_0a1b2c3d_Zm9vYmFyYmF6cXV4cXV1eHh5enp5MTIzNDU2Nzg5MGFiYw"
OPENAI = "sk-proj-AbCdEfGhIjKlMnOpQrStUv0123"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSIsImF1ZCI6Im1scGlsb3QifQ.c2lnbmF0dXJlLWJ5dGVzLWhlcmU"
AWS = "AKIAIOSFODNN7EXAMPLE"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"Authorization: Bearer {API_KEY}", API_KEY),
        (f"headers {{'authorization': 'Bearer {JWT}'}}", JWT),
        ("authorization: Basic dXNlcjpodW50ZXIy", "dXNlcjpodW50ZXIy"),
        (f"X-Api-Key: {API_KEY}", API_KEY),
        (f"the key {API_KEY} was revoked", API_KEY),
        (f"calling OpenAI with {OPENAI}", OPENAI),
        (f"aws {AWS} failed", AWS),
        ("aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI"),
        ("connect to postgresql+psycopg://bob:hunter2@db:5432/mlpilot failed", "hunter2"),
        ("s3://AKID:s3cr3tvalue@bucket/prefix", "s3cr3tvalue"),
        ('{"password": "hunter2", "user": "bob"}', "hunter2"),
        ("login?user=bob&password=hunter2&next=/", "hunter2"),
        (f"a bare token {JWT} in text", JWT),
    ],
    ids=[
        "bearer-key", "bearer-jwt", "basic", "x-api-key", "bare-key", "openai", "aws-id", "aws-secret", "url-password",
        "url-key", "json-password", "query-password", "bare-jwt",
    ],
)  # fmt: skip
def test_secrets_are_scrubbed_from_any_text(text: str, secret: str) -> None:
    clean = scrub_secrets(text)
    assert secret not in clean and REDACTED in clean, clean


@pytest.mark.parametrize(
    "text",
    [
        "http://127.0.0.1:8000/v2/models/iris/infer",
        '{"max_tokens": 5, "input_tokens": 3, "output_tokens": 9}',
        "the basic idea of bearer bonds",
        "predict failed: ValueError: X has 3 features, but LogisticRegression is expecting 4",
        "task-runner finished",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert scrub_secrets(text) == text


def test_url_credentials_keep_the_user_and_host() -> None:
    assert scrub_secrets("postgresql://bob:hunter2@db/x") == f"postgresql://bob:{REDACTED}@db/x"


def test_fields_are_redacted_at_any_depth_of_json_case_insensitively() -> None:
    r = Redactor(["email", "SSN"])
    doc = {
        "messages": [{"role": "user", "content": "hi"}],
        "Email": "bob@example.com",
        "nested": {"x": [{"ssn": 123456789}], "keep": "yes"},
        "arguments": json.dumps({"email": "carol@example.com", "n": 1}),  # JSON inside a JSON string
    }
    out = r.text(json.dumps(doc))
    for raw in ("bob@example.com", "123456789", "carol@example.com"):
        assert raw not in out
    parsed = json.loads(out)
    assert parsed["Email"] == REDACTED and parsed["nested"]["x"][0]["ssn"] == REDACTED
    assert parsed["nested"]["keep"] == "yes" and parsed["messages"][0]["content"] == "hi"
    assert json.loads(parsed["arguments"]) == {"email": REDACTED, "n": 1}


def test_fields_are_redacted_in_key_value_text_and_escaped_json() -> None:
    r = Redactor(["email", "ssn"])
    assert r.text("lookup failed for email=bob@example.com, ssn: 123-45-6789") == (
        f"lookup failed for email={REDACTED}, ssn: {REDACTED}"
    )
    escaped = '{\\"email\\": \\"bob@example.com\\", \\"n\\": 1}'  # as it appears inside a JSON string
    assert "bob@example.com" not in r.text(escaped)
    assert r.text("emails are not the field: emails=2") == "emails are not the field: emails=2"


def test_hash_mode_is_stable_keyed_and_idempotent() -> None:
    a, b = Redactor(["email"], "hash", "salt-1"), Redactor(["email"], "hash", "salt-2")
    one = a.value("bob@example.com")
    assert one is not None and one.startswith("[REDACTED:") and len(one) == len("[REDACTED:]") + 16
    assert a.value("bob@example.com") == one and a.value("carol@example.com") != one
    assert b.value("bob@example.com") != one  # another salt, other hashes
    assert a.value(one) == one  # redacting twice changes nothing (a replayed spill)
    assert a.text("email=bob@example.com") == f"email={one}"
    assert a.value(None) is None


def test_hash_mode_needs_a_salt_and_the_settings_say_so() -> None:
    with pytest.raises(ValueError, match="salt"):
        Redactor(["email"], "hash")
    with pytest.raises(ValueError, match="redact_salt"):
        LogSettings(redact_fields=["email"], redact_mode="hash")
    assert LogSettings(redact_mode="hash", redact_salt="x").redact_salt.get_secret_value() == "x"


def _record(i: int, inputs: Any, outputs: dict[str, Any] | None, error: str | None = None) -> InferenceRecord:
    return InferenceRecord(
        ts=1_790_000_000.0 + i,
        request_id=f"r{i}",
        deployment="d",
        variant="a",
        model="m:1",
        status="ok" if error is None else "error",
        latency_s=0.001,
        error=error,
        inputs=inputs,
        outputs=outputs,
    )


def _table(records: list[InferenceRecord], redactor: Redactor | None) -> pd.DataFrame:
    tables = [t for part in partition_tables(records, redactor.table if redactor else None).values() for t in part]
    return pd.concat([t.to_pandas() for t in tables], ignore_index=True)


@pytest.mark.parametrize("mode", ["mask", "hash"])
def test_request_log_rows_hold_no_redacted_value(mode: str) -> None:
    r = Redactor(["email", "X", "score"], mode, "salt")  # type: ignore[arg-type]
    frame = pd.DataFrame({"email": ["bob@example.com", "carol@example.com"], "amount": [1.0, 2.0]})
    records = [
        _record(0, frame, {"predict": np.array([1, 0]), "score": np.array([0.9, 0.1])}),
        _record(1, {"x": np.array([[1.5, 2.5]]), "note": np.array([f"key {API_KEY}"], dtype=object)}, {"predict": [1]}),
        _record(2, frame.head(1), None, error=f"email=bob@example.com rejected; Authorization: Bearer {API_KEY}"),
    ]
    rows = _table(records, r)
    text = rows.astype(str).to_string()
    for raw in ("bob@example.com", "carol@example.com", API_KEY, "1.5", "2.5", "0.9"):
        assert raw not in text, raw
    assert set(rows["in.email"].dropna()) <= {REDACTED} if mode == "mask" else rows["in.email"].nunique() == 2
    assert rows["in.amount"].dropna().tolist() == [1.0, 2.0, 1.0]  # not a redacted field: untouched
    assert all(str(v).startswith("[REDACTED") for v in rows["in.x[0]"].dropna())  # every column of tensor x
    unredacted = _table(records, None).astype(str).to_string()
    assert "bob@example.com" in unredacted and API_KEY in unredacted  # the test would see a leak


def test_secrets_are_scrubbed_without_any_field() -> None:
    r = Redactor()
    rows = _table([_record(0, np.array([[1.0, 2.0]]), None, error=f"backend said: invalid key {OPENAI}")], r)
    assert OPENAI not in rows["error"].iloc[0] and REDACTED in rows["error"].iloc[0]
    assert rows["in[0]"].tolist() == [1.0]


def test_secrets_are_scrubbed_from_binary_strings() -> None:
    note = np.array([f"key {API_KEY}".encode(), b"\xff\xfe plain"], dtype=object)  # a BYTES tensor in binary form
    rows = _table([_record(0, {"note": note}, {"predict": np.array([1, 0])})], Redactor())
    assert rows["in.note"].tolist() == [f"key {REDACTED}".encode(), b"\xff\xfe plain"]


def test_an_unchanged_table_is_returned_as_is() -> None:
    import pyarrow as pa

    table = pa.table({"in.a": [1.0, 2.0], "error": pa.nulls(2, pa.string()), "in.s": ["x", "y"]})
    assert Redactor(["b"]).table(table) is table


def test_spill_lines_are_redacted_like_rows() -> None:
    r = Redactor(["email", "text"])
    body = {
        "inputs": {"__frame__": {"email": ["bob@example.com"], "query": [f"my key is {API_KEY}"]}},
        "outputs": {"text": ["secret answer"], "n": [1]},
        "error": "password=hunter2",
    }
    out = json.dumps(r.spill(body))
    for raw in ("bob@example.com", API_KEY, "secret answer", "hunter2"):
        assert raw not in out
    assert json.loads(out)["outputs"]["n"] == [1]
    arrays = r.spill({"inputs": [[f"{OPENAI}"]], "outputs": {}, "error": None})
    assert OPENAI not in json.dumps(arrays)


def test_monitors_leave_redacted_columns_out_and_refuse_to_watch_them() -> None:
    logged = pd.DataFrame(
        {"in.email": [REDACTED, REDACTED, None], "in.amount": [1.0, 2.0, 3.0], "out.score": ["[REDACTED:ab]"] * 3}
    )
    assert redacted_columns(logged) == ["in.email", "out.score"]
    assert list(input_frame(logged).columns) == ["amount"]
    assert list(output_columns(logged).columns) == []
    with pytest.raises(InvalidArgument, match=r"redacted in the request log \(logs.redact_fields\)"):
        input_frame(logged, ["email", "amount"])


# -------------------------------------------------------------------------------------------------- log records


@pytest.fixture
def scrubbed_logging() -> Iterator[None]:
    install_log_redaction(Redactor(["email"]))
    try:
        yield
    finally:
        uninstall_log_redaction()


def test_log_records_are_scrubbed_whatever_handler_writes_them(
    scrubbed_logging: None, caplog: pytest.LogCaptureFixture
) -> None:
    log = logging.getLogger("mlpilot.test.redact")
    with caplog.at_level(logging.INFO):
        log.warning("calling %s with Authorization: Bearer %s", "the backend", API_KEY)
        log.info("user email=%s signed up", "bob@example.com")
        try:
            raise RuntimeError(f"refused key {OPENAI}")
        except RuntimeError:
            log.exception("backend failed")
    text = caplog.text
    assert API_KEY not in text and OPENAI not in text and "bob@example.com" not in text
    assert "the backend" in text and text.count(REDACTED) >= 3 and "RuntimeError" in text


def test_uninstalled_logging_is_left_as_it_was(caplog: pytest.LogCaptureFixture) -> None:
    install_log_redaction()
    uninstall_log_redaction()
    with caplog.at_level(logging.INFO):
        logging.getLogger("mlpilot.test.redact").info("key %s", API_KEY)
    assert API_KEY in caplog.text  # the control: without the factory nothing is scrubbed


def test_secret_filter_for_a_logging_config(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("mlpilot.test.filter")
    log.addFilter(SecretFilter())
    try:
        with caplog.at_level(logging.INFO):
            log.info("token: %s", "abc123def")
    finally:
        log.filters.clear()
    assert "abc123def" not in caplog.text and REDACTED in caplog.text
