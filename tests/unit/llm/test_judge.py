"""LLM-as-judge with a scripted chat callable: answer parsing, retry then invalid, position swap, Wilson intervals."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from mlpilot.errors import InvalidArgument
from mlpilot.llm.judge import (
    PAIRWISE_SYSTEM,
    RUBRIC_REMINDER,
    PairwiseJudge,
    PairwiseResult,
    RubricJudge,
    from_backend,
    parse_score,
    parse_winner,
    should_promote,
    wilson_interval,
    wilson_lower_bound,
    win_rate,
)


class Script:
    """A chat callable answering from a list (or a function of the messages), recording every conversation."""

    def __init__(self, answers: Sequence[str] | Callable[[list[dict[str, str]]], str]) -> None:
        self.answers = answers
        self.calls: list[list[dict[str, str]]] = []

    def __call__(self, messages: list[dict[str, str]]) -> str:
        self.calls.append(messages)
        if callable(self.answers):
            return self.answers(messages)
        return self.answers[len(self.calls) - 1]


# --------------------------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"score": 4, "reason": "mostly right"}', (4.0, "mostly right")),
        ('Sure! Here it is:\n```json\n{"score": 5, "reason": "exact"}\n```', (5.0, "exact")),
        ('{"Score": "3", "Reason": "partial"}', (3.0, "partial")),
        ('{"note": {"x": 1}} then {"score": 2}', (2.0, "")),
        ('{"score": 4.5, "reason": "r"}', (4.5, "r")),
        ("Score: 4", (4.0, "")),
        ("score = 2\nreason: off topic", (2.0, "off topic")),
        ("**Score:** 4/5\n**Reason:** clear and correct", (4.0, "clear and correct")),
        ("The rating is 3 out of 5.", (3.0, "The")),
        ("4", (4.0, "")),
        ("  5/5. ", (5.0, "")),
        ("{'score': 1, 'reason': 'wrong'}", (1.0, "wrong")),
    ],
)
def test_parse_score_reads_many_shapes(text: str, expected: tuple[float, str]) -> None:
    assert parse_score(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "A fine answer.",
        '{"score": 7, "reason": "too high"}',  # out of range: invalid, never clamped
        '{"score": 0}',
        '{"score": "great"}',
        '{"score": true}',
        '{"score": null, "reason": "x"}',
        "Score: 9",
        "Score: -1",
        "10/10",
        '{"score": 4',  # broken JSON, no other score
    ],
)
def test_parse_score_rejects(text: str) -> None:
    assert parse_score(text) is None


def test_parse_score_other_scales() -> None:
    assert parse_score('{"score": 9}', (0, 10)) == (9.0, "")
    assert parse_score("Score: 0", (0, 10)) == (0.0, "")
    assert parse_score("Score: 11", (0, 10)) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"winner": "A", "reason": "more precise"}', ("A", "more precise")),
        ('```json\n{"winner": "b", "reason": "cites"}\n```', ("B", "cites")),
        ('{"winner": "Answer B"}', ("B", "")),
        ('{"winner": "tie", "reason": "same"}', ("tie", "same")),
        ('{"winner": "draw"}', ("tie", "")),
        ("[[A]]", ("A", "")),
        ("Both are fine. [[C]]", ("tie", "")),
        ("Winner: B. It cites its source.", ("B", "It cites its source")),
        ("The winner is a tie.", ("tie", "")),
        ("**Verdict:** Answer A", ("A", "")),
        ("B", ("B", "")),
        (" tie. ", ("tie", "")),
    ],
)
def test_parse_winner_reads_many_shapes(text: str, expected: tuple[str, str]) -> None:
    assert parse_winner(text) == expected


@pytest.mark.parametrize("text", ["", "Both answers have merit.", '{"winner": "C++"}', '{"reason": "no winner"}'])
def test_parse_winner_rejects(text: str) -> None:
    assert parse_winner(text) is None


# ---------------------------------------------------------------------------------------------- rubric judge


def test_rubric_judge_prompt_and_valid_answer() -> None:
    chat = Script(['{"score": 5, "reason": "matches the reference"}'])
    judge = RubricJudge("Correct and complete?", chat=chat)
    verdict = judge.score("Who wrote Hamlet?", "Shakespeare", expected=["William Shakespeare"], contexts=["c1", "c2"])
    assert (verdict.score, verdict.reason, verdict.valid, verdict.attempts) == (5.0, "matches the reference", True, 1)
    system, user = chat.calls[0]
    assert system["role"] == "system" and "Correct and complete?" in system["content"]
    assert "from 1 (worst) to 5 (best)" in system["content"] and '{"score": <integer 1-5>' in system["content"]
    assert user["role"] == "user"
    assert "Who wrote Hamlet?" in user["content"] and "Reference answer:\nWilliam Shakespeare" in user["content"]
    assert "Retrieved context:\nc1\n---\nc2" in user["content"] and user["content"].endswith("Shakespeare")


def test_rubric_judge_without_reference_or_context() -> None:
    chat = Script(["Score: 2"])
    verdict = RubricJudge("Helpful?", chat=chat, scale=(0, 3)).score("q", "a")
    assert verdict.score == 2.0 and verdict.valid
    assert "Reference" not in chat.calls[0][1]["content"] and "context" not in chat.calls[0][1]["content"]
    assert "from 0 (worst) to 3 (best)" in chat.calls[0][0]["content"]


def test_rubric_judge_retries_once_with_a_reminder() -> None:
    chat = Script(["I'd say it is quite good overall.", '{"score": 4, "reason": "good"}'])
    verdict = RubricJudge("Helpful?", chat=chat).score("q", "a")
    assert (verdict.score, verdict.valid, verdict.attempts) == (4.0, True, 2)
    retry = chat.calls[1]
    assert retry[:2] == chat.calls[0]
    assert retry[2] == {"role": "assistant", "content": "I'd say it is quite good overall."}
    assert retry[3] == {"role": "user", "content": RUBRIC_REMINDER.format(low=1, high=5)}
    assert '{"score": <integer 1-5>' in retry[3]["content"]


def test_rubric_judge_records_invalid_after_the_retry() -> None:
    chat = Script(["no idea", '{"score": 11, "reason": "off the scale"}'])
    verdict = RubricJudge("Helpful?", chat=chat).score("q", "a")
    assert (verdict.score, verdict.valid, verdict.attempts) == (None, False, 2)
    assert verdict.raw == '{"score": 11, "reason": "off the scale"}'
    assert len(chat.calls) == 2


def test_rubric_judge_rejects_bad_configuration() -> None:
    chat = Script([])
    for kwargs in ({"scale": (5, 1)}, {"scale": (1, 1)}, {"scale": (1.0, 5)}):
        with pytest.raises(InvalidArgument, match="scale"):
            RubricJudge("r", chat=chat, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="rubric"):
        RubricJudge("  ", chat=chat)
    with pytest.raises(InvalidArgument, match="callable"):
        RubricJudge("r", chat="gpt-4")  # type: ignore[arg-type]


@dataclass
class FakeResult:
    text: str


class FakeBackend:
    def __init__(self) -> None:
        self.calls: list[tuple[list[dict[str, Any]], dict[str, Any]]] = []

    def chat(self, messages: Sequence[Mapping[str, Any]], **params: Any) -> FakeResult:
        self.calls.append(([dict(m) for m in messages], params))
        return FakeResult('{"score": 3, "reason": "ok"}')


def test_from_backend_calls_chat_at_temperature_zero() -> None:
    backend = FakeBackend()
    verdict = RubricJudge("r", chat=from_backend(backend, max_tokens=50)).score("q", "a")
    assert verdict.score == 3.0
    assert backend.calls[0][1] == {"temperature": 0, "max_tokens": 50}
    assert backend.calls[0][0][0]["role"] == "system"


# -------------------------------------------------------------------------------------------- pairwise judge


def prefers(word: str) -> Callable[[list[dict[str, str]]], str]:
    """A consistent judge: picks the answer that contains ``word`` whichever position it is shown in."""

    def answer(messages: list[dict[str, str]]) -> str:
        shown_a = messages[-1]["content"].split("Answer A:\n")[1].split("\n\nAnswer B:")[0]
        return '{"winner": "A", "reason": "x"}' if word in shown_a else '{"winner": "B", "reason": "y"}'

    return answer


def test_pairwise_consistent_preference_wins_in_both_orders() -> None:
    chat = Script(prefers("Paris"))
    result = PairwiseJudge("Which is correct?", chat=chat).compare("Capital of France?", "Lyon", "Paris")
    assert (result.outcome, result.first, result.second) == ("b", "b", "b")
    assert result.reasons == ("y", "x") and result.attempts == 2
    first, second = chat.calls
    assert "Which is correct?" in first[0]["content"] and first[0]["content"] == PAIRWISE_SYSTEM.format(
        criteria="Which is correct?"
    )
    assert "Answer A:\nLyon\n\nAnswer B:\nParis" in first[1]["content"]
    assert "Answer A:\nParis\n\nAnswer B:\nLyon" in second[1]["content"]  # positions swapped
    assert PairwiseJudge("c", chat=Script(prefers("Paris"))).compare("q", "Paris", "Lyon").outcome == "a"


def test_pairwise_position_bias_becomes_a_tie() -> None:
    always_first = Script(['{"winner": "A"}', '{"winner": "A"}'])
    result = PairwiseJudge("c", chat=always_first).compare("q", "one", "two")
    assert (result.outcome, result.first, result.second) == ("tie", "a", "b")
    both_tie = PairwiseJudge("c", chat=Script(["tie", "[[C]]"])).compare("q", "one", "two")
    assert both_tie.outcome == "tie"
    half_tie = PairwiseJudge("c", chat=Script(['{"winner": "A"}', "tie"])).compare("q", "one", "two")
    assert (half_tie.outcome, half_tie.first, half_tie.second) == ("tie", "a", "tie")


def test_pairwise_unreadable_order_is_invalid_after_retry() -> None:
    chat = Script(["hmm", "still thinking", '{"winner": "B"}'])
    result = PairwiseJudge("c", chat=chat).compare("q", "one", "two")
    assert (result.outcome, result.first, result.second, result.attempts) == ("invalid", "invalid", "a", 3)
    assert chat.calls[1][-1]["content"].startswith("Your reply could not be read")
    with pytest.raises(InvalidArgument):
        PairwiseJudge("", chat=chat)


# ------------------------------------------------------------------------------------------------ win rates


def test_wilson_interval_by_hand() -> None:
    # 8 of 10, z = 1.959964: p = 0.8, z² = 3.841459, denominator = 1 + z²/n = 1.384146,
    # centre = (0.8 + z²/20) / 1.384146 = 0.716744, half-width = z/1.384146 · √(0.016 + z²/400) = 0.226582
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.716744 - 0.226582, abs=1e-5) and low == pytest.approx(0.490162, abs=1e-5)
    assert high == pytest.approx(0.943326, abs=1e-5)
    # 0 of 10: the interval is [0, z²/(n + z²)] = [0, 3.841459/13.841459]
    low, high = wilson_interval(0, 10)
    assert low == pytest.approx(0.0, abs=1e-12) and high == pytest.approx(3.841459 / 13.841459, abs=1e-6)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    # 90% interval uses z = 1.644854: narrower
    assert wilson_interval(8, 10, 0.90)[0] > 0.490162
    assert wilson_lower_bound(8, 10) == pytest.approx(0.490162, abs=1e-5)
    with pytest.raises(InvalidArgument):
        wilson_interval(11, 10)
    with pytest.raises(InvalidArgument):
        wilson_interval(1, -1)


def test_win_rate_counts_ties_as_half() -> None:
    outcomes = ["a"] * 6 + ["tie"] * 2 + ["b"] * 2 + ["invalid"]
    rate = win_rate(outcomes)
    assert (rate.wins, rate.ties, rate.losses, rate.invalid, rate.n) == (6, 2, 2, 1, 10)
    assert rate.rate == pytest.approx(0.7)  # (6 + 2/2) / 10
    # Wilson for 7 of 10: centre = (0.7 + 0.192073)/1.384146 = 0.644493, half = 1.416009 · 0.174939 = 0.247716
    assert (rate.low, rate.high) == pytest.approx((0.396778, 0.892209), abs=1e-5)
    other = win_rate(outcomes, of="b")
    assert other.rate == pytest.approx(0.3) and (other.wins, other.losses) == (2, 6)
    result = PairwiseResult("a", "a", "a", ("", ""), 2)
    assert win_rate([result, "b"]).rate == 0.5
    empty = win_rate([])
    assert (empty.n, empty.rate, empty.low, empty.high) == (0, 0.0, 0.0, 1.0)
    with pytest.raises(InvalidArgument):
        win_rate(["A"])
    with pytest.raises(InvalidArgument):
        win_rate([], of="c")  # type: ignore[arg-type]


def test_should_promote_needs_the_lower_bound_above_one_half() -> None:
    assert should_promote(["a"] * 18 + ["b"] * 2)  # 18/20: lower bound 0.699
    assert not should_promote(["a"] * 6 + ["b"] * 4)  # 60% on 10 rows: lower bound 0.313
    assert not should_promote(["a"] * 7 + ["tie"] * 2 + ["b"])  # 80% with ties: lower bound 0.490
    assert should_promote(["b"] * 18 + ["a"] * 2, of="b")
    assert not should_promote([])
