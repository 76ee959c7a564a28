"""HTTP tools against a real HTTP server on 127.0.0.1: good calls, errors, timeouts, bad answers."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from mlpilot.llm.tools import ToolRunner, ToolSpec, call_tool

INPUT = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city"],
}
OUTPUT = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "temp_c": {"type": "number"}},
    "required": ["city", "temp_c"],
}


class ToolServer(ThreadingHTTPServer):
    """A tiny weather service; ``seen`` records (method, path, headers, body) of every request."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.seen: list[tuple[str, str, dict[str, str], Any]] = []
        self.release = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the client of /slow hangs up on purpose; nothing to report


class Handler(BaseHTTPRequestHandler):
    server: ToolServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        self.server.seen.append(("GET", url.path, dict(self.headers), dict(parse_qsl(url.query))))
        query = dict(parse_qsl(url.query))
        self._answer(200, json.dumps({"city": query["city"], "temp_c": float(query["days"])}).encode())

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"null")
        self.server.seen.append((self.command, self.path, dict(self.headers), body))
        if self.path == "/weather":
            self._answer(200, json.dumps({"city": body["city"], "temp_c": 21.5}).encode())
        elif self.path == "/fail":
            self._answer(500, b"database is down: " + b"x" * 1000, "text/plain")
        elif self.path == "/slow":
            self.server.release.wait(10)
            self._answer(200, b'{"city": "late", "temp_c": 0}')
        elif self.path == "/bad-json":
            self._answer(200, b'{"city": "Oslo", "temp_c": ')
        elif self.path == "/wrong-shape":
            self._answer(200, b'{"city": "Oslo", "temp_c": "warm"}')
        elif self.path == "/text":
            self._answer(200, f"sunny in {body['city']}".encode(), "text/plain; charset=utf-8")
        elif self.path == "/empty":
            self._answer(204, b"")
        else:
            self._answer(404, b'{"error": "no such route"}')

    do_PUT = do_POST


@pytest.fixture
def server() -> Iterator[ToolServer]:
    srv = ToolServer()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.release.set()
        srv.shutdown()
        srv.server_close()
        thread.join(5)


def http_tool(url: str, *, output: dict[str, Any] | None = OUTPUT, **impl: Any) -> ToolSpec:
    doc: dict[str, Any] = {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "inputSchema": INPUT,
        "implementation": {"type": "http", "url": url, **impl},
    }
    if output is not None:
        doc["outputSchema"] = output
    return ToolSpec.from_dict(doc)


def test_good_call_posts_json_and_returns_structured_content(server: ToolServer) -> None:
    spec = http_tool(f"{server.url}/weather", headers={"X-Api-Key": "k1"})
    result = call_tool(spec, {"city": "Oslo", "days": 2})
    assert result.is_error is False, result.text
    assert result.structured_content == {"city": "Oslo", "temp_c": 21.5}
    assert json.loads(result.text) == {"city": "Oslo", "temp_c": 21.5}
    assert result.duration_s > 0
    method, path, headers, body = server.seen[-1]
    assert (method, path, body) == ("POST", "/weather", {"city": "Oslo", "days": 2})
    assert headers["X-Api-Key"] == "k1"
    assert headers["Content-Type"] == "application/json"


def test_runner_reuses_its_connection_pool(server: ToolServer) -> None:
    with ToolRunner(http_tool(f"{server.url}/weather")) as runner:
        cities = [runner.call({"city": c}).structured_content for c in ("Oslo", "Rome", "Lima")]
    assert [c["city"] for c in cities if c] == ["Oslo", "Rome", "Lima"]
    assert len(server.seen) == 3


def test_get_sends_arguments_as_query_parameters(server: ToolServer) -> None:
    result = call_tool(http_tool(f"{server.url}/weather", method="GET"), {"city": "Oslo", "days": 3})
    assert result.structured_content == {"city": "Oslo", "temp_c": 3.0}
    assert server.seen[-1][0] == "GET" and server.seen[-1][3] == {"city": "Oslo", "days": "3"}


def test_put_method(server: ToolServer) -> None:
    result = call_tool(http_tool(f"{server.url}/weather", method="PUT"), {"city": "Oslo"})
    assert not result.is_error and server.seen[-1][0] == "PUT"
    assert result.structured_content == {"city": "Oslo", "temp_c": 21.5}


def test_text_answer_without_output_schema_is_text(server: ToolServer) -> None:
    result = call_tool(http_tool(f"{server.url}/text", output=None), {"city": "Oslo"})
    assert result.content == [{"type": "text", "text": "sunny in Oslo"}]
    assert result.structured_content is None and not result.is_error


def test_empty_answer_has_no_content(server: ToolServer) -> None:
    result = call_tool(http_tool(f"{server.url}/empty", output=None), {"city": "Oslo"})
    assert result.content == [] and not result.is_error


@pytest.mark.parametrize(
    "path,output,kind,needles",
    [
        ("/fail", OUTPUT, "http_status", ["HTTP 500 from ", "/fail: database is down: xxx", "…"]),
        ("/missing", OUTPUT, "http_status", ["HTTP 404 from ", '{"error": "no such route"}']),
        ("/bad-json", OUTPUT, "bad_output", ["answered invalid JSON", '\'{"city": "Oslo", "temp_c": \'']),
        ("/wrong-shape", OUTPUT, "bad_output", ["output.temp_c: 'warm' is not of type 'number'"]),
        ("/text", OUTPUT, "bad_output", ["answered text/plain, not JSON, but has outputSchema"]),
    ],
    ids=["500", "404", "bad-json", "output-violation", "text-with-output-schema"],
)
def test_failed_answers_are_error_results(
    server: ToolServer, path: str, output: dict[str, Any], kind: str, needles: list[str]
) -> None:
    result = call_tool(http_tool(f"{server.url}{path}", output=output), {"city": "Oslo"})
    assert result.is_error is True and result.error_kind == kind
    assert result.text.startswith("tool 'get_weather' failed: ")
    for needle in needles:
        assert needle in result.text
    assert len(result.text) < 500, "the body is quoted, not copied"
    assert result.structured_content is None


def test_slow_endpoint_answers_within_a_generous_timeout(server: ToolServer) -> None:
    server.release.set()
    result = call_tool(http_tool(f"{server.url}/slow", timeout_s=5), {"city": "Oslo"})
    assert result.structured_content == {"city": "late", "temp_c": 0}


def test_slow_endpoint_times_out(server: ToolServer) -> None:
    start = time.perf_counter()
    result = call_tool(http_tool(f"{server.url}/slow", timeout_s=5), {"city": "Oslo"}, timeout_s=0.3)
    elapsed = time.perf_counter() - start
    assert result.is_error and result.error_kind == "timeout"
    assert "timed out after 0.3 s" in result.text
    assert 0.3 <= result.duration_s < 3 and elapsed < 3


def test_timeout_from_the_tool_file(server: ToolServer) -> None:
    result = call_tool(http_tool(f"{server.url}/slow", timeout_s=0.2), {"city": "Oslo"})
    assert result.error_kind == "timeout" and "timed out after 0.2 s" in result.text


def test_unreachable_server_is_a_transport_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        result = call_tool(http_tool(f"http://127.0.0.1:{port}/weather", timeout_s=2), {"city": "Oslo"})
    assert result.is_error and result.error_kind == "transport"
    assert f"cannot reach http://127.0.0.1:{port}/weather: ConnectError" in result.text


def test_bad_arguments_never_reach_the_server(server: ToolServer) -> None:
    from mlpilot.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match=r"arguments\.days: 'two' is not of type 'integer'"):
        call_tool(http_tool(f"{server.url}/weather"), {"city": "Oslo", "days": "two"})
    assert server.seen == []
