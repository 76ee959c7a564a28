"""What a chat call returns: a whole answer, the chunks of a streamed one, and the stream (sync and async) that
keeps its running totals. Shared by the HTTP backends and the local models."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AsyncChatStream", "ChatChunk", "ChatResult", "ChatStream"]


@dataclass(frozen=True)
class ChatResult:
    """One answer of a chat (or text) completion.

    ``tool_calls`` are OpenAI dicts (``{"id", "type": "function", "function": {"name", "arguments"}}``);
    ``latency_s`` is the wall time of the whole call (retries and fallbacks included); ``backend`` is the name of
    the backend that answered; ``attempts`` counts every HTTP attempt made, across fallbacks.
    """

    text: str
    tool_calls: list[dict[str, Any]]
    finish_reason: str | None
    input_tokens: int | None
    output_tokens: int | None
    latency_s: float
    backend: str
    attempts: int
    model: str | None = None


@dataclass(frozen=True)
class ChatChunk:
    """One event of a streamed chat: a text delta, tool-call deltas, a finish reason, or the final usage.

    ``elapsed_s`` is the time since the call started.
    """

    text: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    elapsed_s: float = 0.0


class ChatStream(Iterator[ChatChunk]):
    """The chunks of a streamed chat; also keeps the running totals.

    The request is sent on the first ``next()``. After the stream is exhausted, :meth:`result` gives the whole
    answer; :attr:`time_to_first_token_s` is the time from the call to the first chunk with content.
    Close it (or use it as a context manager) when leaving a stream before its end.
    """

    def __init__(self, chunks: Iterator[ChatChunk], started: float) -> None:
        self._chunks = chunks
        self._started = started
        self.text = ""
        self.tool_calls: list[dict[str, Any]] = []
        self.finish_reason: str | None = None
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.time_to_first_token_s: float | None = None
        self.latency_s: float | None = None
        self.backend: str | None = None
        self.attempts = 0
        self.model: str | None = None
        self.done = False

    def __iter__(self) -> ChatStream:
        return self

    def __next__(self) -> ChatChunk:
        try:
            chunk = next(self._chunks)
        except StopIteration:
            self.done = True
            self.latency_s = time.perf_counter() - self._started
            raise
        return self._absorb(chunk)

    def _absorb(self, chunk: ChatChunk) -> ChatChunk:
        self.text += chunk.text
        if chunk.finish_reason:
            self.finish_reason = chunk.finish_reason
        if chunk.input_tokens is not None:
            self.input_tokens = chunk.input_tokens
        if chunk.output_tokens is not None:
            self.output_tokens = chunk.output_tokens
        if self.time_to_first_token_s is None and (chunk.text or chunk.tool_calls):
            self.time_to_first_token_s = chunk.elapsed_s
        return chunk

    def result(self) -> ChatResult:
        """The whole answer, once the stream is exhausted (reads what is left of it first)."""
        for _ in self:
            pass
        return self._result()

    def _result(self) -> ChatResult:
        return ChatResult(
            text=self.text,
            tool_calls=self.tool_calls,
            finish_reason=self.finish_reason,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            latency_s=self.latency_s or 0.0,
            backend=self.backend or "",
            attempts=self.attempts,
            model=self.model,
        )

    def close(self) -> None:
        """Stop reading and release the connection."""
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncChatStream(ChatStream):
    """The async twin of :class:`ChatStream` (``async for``); :meth:`result` once it is exhausted."""

    def __init__(self, chunks: AsyncIterator[ChatChunk], started: float) -> None:
        super().__init__(iter(()), started)
        self._achunks = chunks

    def __aiter__(self) -> AsyncChatStream:
        return self

    async def __anext__(self) -> ChatChunk:
        try:
            chunk = await self._achunks.__anext__()
        except StopAsyncIteration:
            self.done = True
            self.latency_s = time.perf_counter() - self._started
            raise
        return self._absorb(chunk)

    def result(self) -> ChatResult:
        """The whole answer; the stream must have been read to its end."""
        if not self.done:
            raise RuntimeError("read the stream to its end (async for) before asking for its result")
        return self._result()

    async def aclose(self) -> None:
        """Stop reading and release the connection."""
        aclose = getattr(self._achunks, "aclose", None)
        if aclose is not None:
            await aclose()
