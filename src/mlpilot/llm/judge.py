"""LLM-as-judge: rubric scores and pairwise preferences through any chat callable, with robust answer parsing.

A judge talks to a model through ``chat(messages) -> str``, so an :class:`~mlpilot.llm.backends.OpenAIBackend`
(via :func:`from_backend`, temperature 0), a local model or a scripted test fake all fit::

    judge = RubricJudge("Is the answer correct and complete given the reference?", chat=from_backend(llm))
    verdict = judge.score("Who wrote Hamlet?", "Shakespeare.", expected=["William Shakespeare"])
    verdict.score, verdict.reason, verdict.valid

    pairwise = PairwiseJudge("Which answer is more helpful and accurate?", chat=from_backend(llm))
    outcomes = [pairwise.compare(q, candidate(q), baseline(q)).outcome for q in questions]
    should_promote(outcomes)          # Wilson lower bound of the candidate's win rate > 0.5

Decisions:

* The judge is asked for strict JSON (:data:`RUBRIC_SYSTEM`, :data:`PAIRWISE_SYSTEM`) but its answer is parsed
  leniently: the first JSON object with the key anywhere in the text (code fences and chatter around it are
  fine), else ``Score: 4`` / ``**Rating:** 4/5`` / a bare ``4`` (``Winner: A``, ``[[B]]``, a bare ``tie`` for
  pairwise). A score outside the scale is invalid, never clamped.
* An unreadable answer is asked again once, with the bad answer and :data:`RUBRIC_REMINDER` appended to the
  conversation; if the second answer is unreadable too the verdict is recorded as invalid (``valid=False``) —
  parsing never raises. Errors of the chat callable itself (an unreachable backend) do propagate; the eval runner
  records them on the row.
* Pairwise judging asks twice with the answers' positions swapped, to cancel position bias: the outcome is the
  side both orders prefer, ``"tie"`` when they disagree (or both say tie), ``"invalid"`` when either order's
  answer stays unreadable.
* The win rate counts a tie as half a win: ``(wins + ties/2) / n`` over the valid outcomes, with a Wilson score
  interval. :func:`should_promote` promotes a candidate only when the interval's *lower* bound is above 0.5, i.e.
  the candidate is better than the baseline with the chosen confidence, not just on this sample's average.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Literal, Protocol

from mlpilot.errors import InvalidArgument

__all__ = [
    "PAIRWISE_REMINDER",
    "PAIRWISE_SYSTEM",
    "PAIRWISE_USER",
    "RUBRIC_REMINDER",
    "RUBRIC_SYSTEM",
    "RUBRIC_USER",
    "ChatFn",
    "Judge",
    "JudgeScore",
    "PairwiseJudge",
    "PairwiseResult",
    "RubricJudge",
    "WinRate",
    "from_backend",
    "parse_score",
    "parse_winner",
    "should_promote",
    "wilson_interval",
    "wilson_lower_bound",
    "win_rate",
]

#: A chat model as the judges see it: OpenAI-style messages in, the answer's text out.
ChatFn = Callable[[list[dict[str, str]]], str]

RUBRIC_SYSTEM = (
    "You are a strict, impartial evaluator. Grade the answer to the question using this rubric:\n"
    "{rubric}\n\n"
    "Score from {low} (worst) to {high} (best), as an integer.\n"
    'Reply with JSON only, nothing else: {{"score": <integer {low}-{high}>, "reason": "<one short sentence>"}}'
)
RUBRIC_USER = "Question:\n{question}\n\n{reference}{context}Answer to grade:\n{answer}"
RUBRIC_REMINDER = (
    "Your reply could not be read. Reply with JSON only, nothing else: "
    '{{"score": <integer {low}-{high}>, "reason": "<one short sentence>"}}'
)
PAIRWISE_SYSTEM = (
    "You are a strict, impartial evaluator. Compare two answers to the same input by these criteria:\n"
    "{criteria}\n\n"
    "Do not let the order of the answers or their length decide. Say tie only if neither is better.\n"
    'Reply with JSON only, nothing else: {{"winner": "A" or "B" or "tie", "reason": "<one short sentence>"}}'
)
PAIRWISE_USER = "Input:\n{question}\n\nAnswer A:\n{answer_a}\n\nAnswer B:\n{answer_b}"
PAIRWISE_REMINDER = (
    'Your reply could not be read. Reply with JSON only, nothing else: {"winner": "A" or "B" or "tie", '
    '"reason": "<one short sentence>"}'
)

_NUMBER = r"(-?\d+(?:\.\d+)?)"
_SCORE_RE = re.compile(
    r"(?i:\b(?:score|rating|grade)\b)[\"'*_\s]*(?:[:=]|(?i:is))[\"'*_\s]*"
    + _NUMBER
    + r"(?:\s*/\s*\d+|\s+(?i:out of)\s+\d+)?"
)
_BARE_SCORE_RE = re.compile(r"^\s*\**\s*" + _NUMBER + r"\s*(?:/\s*\d+|out of \d+)?\s*\**\s*\.?\s*$", re.IGNORECASE)
_BROKEN_JSON_RE = re.compile(r'\{\s*"(?i:score|rating|grade)"')
_REASON_RE = re.compile(r"(?i:\breason(?:ing)?\b)[\"'*_\s]*[:=][\"'*_\s]*(.+)", re.DOTALL)
_WINNER_RE = re.compile(
    r"(?i:\b(?:winner|verdict|better answer|preferred)\b)[\"'*_\s]*(?:[:=]|(?i:is))?[\"'*_\s]*"
    r"(?:(?i:answer)\s+)?(A|B|(?i:(?:a\s+)?(?:tie|draw)))\b"
)
_BRACKET_WINNER_RE = re.compile(r"\[\[(A|B|C|tie)\]\]", re.IGNORECASE)
_WINNERS = {"a": "A", "answer a": "A", "b": "B", "answer b": "B", "tie": "tie", "draw": "tie", "c": "tie"}
_WINNERS |= {"equal": "tie", "both": "tie", "neither": "tie"}


class _ChatBackend(Protocol):
    def chat(self, messages: Sequence[Mapping[str, Any]], **params: Any) -> Any: ...


def from_backend(backend: _ChatBackend, **params: Any) -> ChatFn:
    """A chat callable over anything with ``chat(messages, **params).text`` (an ``OpenAIBackend``), at temperature 0.

    ``params`` are sent with every call (``max_tokens``, ``response_format`` …); ``temperature`` may be overridden.
    """
    options = {"temperature": 0, **params}

    def chat(messages: list[dict[str, str]]) -> str:
        return str(backend.chat(messages, **options).text or "")

    return chat


# --------------------------------------------------------------------------------------------------- parsing


def _json_objects(text: str) -> Iterator[dict[str, Any]]:
    """Every JSON object that starts somewhere in ``text`` (outermost first), in order."""
    decoder = json.JSONDecoder()
    index = text.find("{")
    while index != -1:
        try:
            value, _ = decoder.raw_decode(text, index)
        except ValueError:
            value = None
        if isinstance(value, dict):
            yield value
        index = text.find("{", index + 1)


def _lookup(obj: Mapping[str, Any], *keys: str) -> Any:
    lowered = {str(k).lower(): v for k, v in obj.items()}
    for key in keys:
        if key in lowered:
            return lowered[key]
    return None


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        match = _BARE_SCORE_RE.match(value)
        if not match:
            return None
        number = float(match.group(1))
    else:
        return None
    return number if math.isfinite(number) else None


def _reason(text: str) -> str:
    match = _REASON_RE.search(text)
    return (match.group(1) if match else text).strip(" \n\t.:-*\"'}")[:1000]


def parse_score(text: str, scale: tuple[int, int] = (1, 5)) -> tuple[float, str] | None:
    """``(score, reason)`` read from a judge's answer, or ``None`` when there is no score or it is off the scale."""
    low, high = scale
    for obj in _json_objects(text):
        if _lookup(obj, "score", "rating", "grade") is None:
            continue
        score = _as_number(_lookup(obj, "score", "rating", "grade"))
        if score is None or not low <= score <= high:
            return None
        reason = _lookup(obj, "reason", "reasoning", "explanation", "rationale")
        return score, "" if reason is None else str(reason)
    if _BROKEN_JSON_RE.search(text):
        return None  # a JSON answer that did not parse: do not guess from its pieces
    match = _SCORE_RE.search(text) or _BARE_SCORE_RE.match(text)
    if match is None:
        return None
    score = float(match.group(1))
    if not low <= score <= high:
        return None
    rest = text[: match.start()] + text[match.end() :]
    return score, _reason(rest)


def parse_winner(text: str) -> tuple[Literal["A", "B", "tie"], str] | None:
    """``("A" | "B" | "tie", reason)`` read from a pairwise judge's answer, or ``None``."""
    for obj in _json_objects(text):
        value = _lookup(obj, "winner", "verdict", "better", "preferred")
        if value is None:
            continue
        winner = _WINNERS.get(str(value).strip().lower())
        if winner is None:
            return None
        reason = _lookup(obj, "reason", "reasoning", "explanation", "rationale")
        return _winner(winner), "" if reason is None else str(reason)
    stripped = text.strip().strip("*.\"'` ").strip()
    if stripped.lower() in _WINNERS:
        return _winner(_WINNERS[stripped.lower()]), ""
    match = _BRACKET_WINNER_RE.search(text) or _WINNER_RE.search(text)
    if match is None:
        return None
    found = match.group(1).lower()
    return _winner("tie" if found.endswith(("tie", "draw")) else _WINNERS[found]), _reason(text[match.end() :])


def _winner(value: str) -> Literal["A", "B", "tie"]:
    return "A" if value == "A" else "B" if value == "B" else "tie"


def _ask(
    chat: ChatFn, messages: list[dict[str, str]], parse: Callable[[str], Any], reminder: str
) -> tuple[Any, str, int]:
    """Ask, and once more with a reminder if the answer is unreadable: (parsed or None, last raw answer, attempts)."""
    raw = chat(messages)
    parsed = parse(raw)
    if parsed is not None:
        return parsed, raw, 1
    retry = [*messages, {"role": "assistant", "content": raw}, {"role": "user", "content": reminder}]
    raw = chat(retry)
    return parse(raw), raw, 2


# ---------------------------------------------------------------------------------------------- rubric judge


@dataclass(frozen=True)
class JudgeScore:
    """A rubric verdict: ``score`` on the judge's scale (``None`` when invalid), the judge's reason, its raw text."""

    score: float | None
    reason: str
    valid: bool
    raw: str
    attempts: int


class Judge(Protocol):
    """What the eval runner needs from a judge (``judge_score``)."""

    def score(
        self,
        question: str,
        answer: str,
        *,
        expected: Sequence[str] | None = None,
        contexts: Sequence[str] | None = None,
    ) -> JudgeScore: ...


class RubricJudge:
    """Scores one answer against a rubric on an integer scale, asking ``chat`` for ``{"score": n, "reason": …}``."""

    def __init__(self, rubric: str, *, chat: ChatFn, scale: tuple[int, int] = (1, 5)) -> None:
        if not isinstance(rubric, str) or not rubric.strip():
            raise InvalidArgument("a rubric judge needs a non-empty rubric")
        low, high = scale
        if isinstance(low, bool) or isinstance(high, bool) or not isinstance(low, int) or not isinstance(high, int):
            raise InvalidArgument(f"scale must be two integers (low, high), got {scale!r}")
        if low >= high:
            raise InvalidArgument(f"scale must have low < high, got {scale!r}")
        if not callable(chat):
            raise InvalidArgument("chat must be a callable: chat(messages) -> str (see from_backend)")
        self.rubric = rubric.strip()
        self.scale = (low, high)
        self.chat = chat

    def messages(
        self,
        question: str,
        answer: str,
        *,
        expected: Sequence[str] | None = None,
        contexts: Sequence[str] | None = None,
    ) -> list[dict[str, str]]:
        """The conversation sent to the judge."""
        low, high = self.scale
        reference = ""
        if expected:
            refs = [expected] if isinstance(expected, str) else list(expected)
            reference = "Reference answer:\n" + "\n".join(refs) + "\n\n"
        context = "Retrieved context:\n" + "\n---\n".join(contexts) + "\n\n" if contexts else ""
        user = RUBRIC_USER.format(question=question, reference=reference, context=context, answer=answer)
        return [
            {"role": "system", "content": RUBRIC_SYSTEM.format(rubric=self.rubric, low=low, high=high)},
            {"role": "user", "content": user},
        ]

    def score(
        self,
        question: str,
        answer: str,
        *,
        expected: Sequence[str] | None = None,
        contexts: Sequence[str] | None = None,
    ) -> JudgeScore:
        """Grade ``answer``; an answer unreadable twice is ``JudgeScore(valid=False, score=None)``."""
        low, high = self.scale
        parsed, raw, attempts = _ask(
            self.chat,
            self.messages(question, answer, expected=expected, contexts=contexts),
            lambda text: parse_score(text, self.scale),
            RUBRIC_REMINDER.format(low=low, high=high),
        )
        if parsed is None:
            return JudgeScore(None, "", False, raw, attempts)
        return JudgeScore(parsed[0], parsed[1], True, raw, attempts)


# -------------------------------------------------------------------------------------------- pairwise judge

Outcome = Literal["a", "b", "tie", "invalid"]


@dataclass(frozen=True)
class PairwiseResult:
    """The outcome over both orders, and what each order said (in terms of the caller's ``a``/``b``)."""

    outcome: Outcome
    first: Outcome  # answer_a shown as A
    second: Outcome  # answer_b shown as A
    reasons: tuple[str, str]
    attempts: int


class PairwiseJudge:
    """Which of two answers to the same input is better, asked in both orders to cancel position bias."""

    def __init__(self, criteria: str, *, chat: ChatFn) -> None:
        if not isinstance(criteria, str) or not criteria.strip():
            raise InvalidArgument("a pairwise judge needs non-empty criteria")
        if not callable(chat):
            raise InvalidArgument("chat must be a callable: chat(messages) -> str (see from_backend)")
        self.criteria = criteria.strip()
        self.chat = chat

    def messages(self, question: str, answer_a: str, answer_b: str) -> list[dict[str, str]]:
        """The conversation for one order (``answer_a`` shown as A)."""
        return [
            {"role": "system", "content": PAIRWISE_SYSTEM.format(criteria=self.criteria)},
            {"role": "user", "content": PAIRWISE_USER.format(question=question, answer_a=answer_a, answer_b=answer_b)},
        ]

    def _one(self, question: str, shown_a: str, shown_b: str) -> tuple[str | None, str, int]:
        parsed, raw, attempts = _ask(
            self.chat, self.messages(question, shown_a, shown_b), parse_winner, PAIRWISE_REMINDER
        )
        return (None, raw, attempts) if parsed is None else (parsed[0], parsed[1], attempts)

    def compare(self, question: str, answer_a: str, answer_b: str) -> PairwiseResult:
        """``"a"``/``"b"`` when both orders prefer that answer, ``"tie"`` otherwise, ``"invalid"`` if unreadable."""
        first, reason_1, attempts_1 = self._one(question, answer_a, answer_b)
        second, reason_2, attempts_2 = self._one(question, answer_b, answer_a)
        v1: Outcome = "invalid" if first is None else {"A": "a", "B": "b"}.get(first, "tie")  # type: ignore[assignment]
        v2: Outcome = "invalid" if second is None else {"A": "b", "B": "a"}.get(second, "tie")  # type: ignore[assignment]
        if "invalid" in (v1, v2):
            outcome: Outcome = "invalid"
        else:
            outcome = v1 if v1 == v2 else "tie"
        return PairwiseResult(outcome, v1, v2, (reason_1, reason_2), attempts_1 + attempts_2)


# ------------------------------------------------------------------------------------------------ win rates


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise InvalidArgument(f"confidence must be within (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(successes: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / n`` (``successes`` may be fractional: ties as ½).

    ``(0.0, 1.0)`` when ``n`` is 0 (nothing is known).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise InvalidArgument(f"n must be a non-negative integer, got {n!r}")
    if not 0 <= successes <= n:
        raise InvalidArgument(f"successes must be within [0, n={n}], got {successes}")
    z = _z(confidence)
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, center - half), min(1.0, center + half)


def wilson_lower_bound(successes: float, n: int, confidence: float = 0.95) -> float:
    """The lower end of :func:`wilson_interval` (0.0 when ``n`` is 0)."""
    return wilson_interval(successes, n, confidence)[0]


@dataclass(frozen=True)
class WinRate:
    """Wins, ties and losses of one side; ``rate = (wins + ties/2) / n`` with its Wilson interval."""

    wins: int
    ties: int
    losses: int
    invalid: int
    n: int
    rate: float
    low: float
    high: float


def win_rate(
    outcomes: Iterable[str | PairwiseResult], *, of: Literal["a", "b"] = "a", confidence: float = 0.95
) -> WinRate:
    """The win rate of side ``of`` over pairwise outcomes (``"a"``, ``"b"``, ``"tie"``; ``"invalid"`` skipped).

    With no valid outcome, ``rate`` is 0.0 and the interval ``(0.0, 1.0)``.
    """
    if of not in ("a", "b"):
        raise InvalidArgument(f"of must be 'a' or 'b', got {of!r}")
    counts = {"a": 0, "b": 0, "tie": 0, "invalid": 0}
    for item in outcomes:
        value = item.outcome if isinstance(item, PairwiseResult) else item
        if value not in counts:
            raise InvalidArgument(f"an outcome must be 'a', 'b', 'tie' or 'invalid', got {value!r}")
        counts[value] += 1
    wins, ties, losses = counts[of], counts["tie"], counts["b" if of == "a" else "a"]
    n = wins + ties + losses
    low, high = wilson_interval(wins + ties / 2, n, confidence)
    rate = (wins + ties / 2) / n if n else 0.0
    return WinRate(wins, ties, losses, counts["invalid"], n, rate, low, high)


def should_promote(
    outcomes: Iterable[str | PairwiseResult],
    *,
    of: Literal["a", "b"] = "a",
    confidence: float = 0.95,
    threshold: float = 0.5,
) -> bool:
    """Promote side ``of`` when the Wilson lower bound of its win rate is above ``threshold`` (0.5: better than
    the other side with the given confidence)."""
    return win_rate(outcomes, of=of, confidence=confidence).low > threshold
