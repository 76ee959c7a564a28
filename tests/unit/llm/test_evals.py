"""Eval metrics against hand-computed values, their edge cases, the eval runner and paired comparison."""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from mlpilot.errors import InvalidArgument
from mlpilot.llm.evals import (
    METRICS,
    Answer,
    EvalCase,
    answer_length,
    bootstrap_ci,
    citation_rate,
    cited_ids,
    compare,
    content_tokens,
    exact_match,
    groundedness,
    groundedness_sentences,
    has_citation,
    hit_rate_at_k,
    is_empty,
    is_refusal,
    mrr,
    ndcg_at_k,
    normalize_text,
    recall_at_k,
    rouge_l,
    run_eval,
    token_f1,
)
from mlpilot.llm.judge import JudgeScore

# ------------------------------------------------------------------------------------------------------ text


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("The  Cat's hat!", "cats hat"),
        ("An apple, a day...", "apple day"),
        ("Caf\u00e9\u2019s \u201cbest\u201d", "caf\u00e9s best"),
        ("  ", ""),
        ("theatre another", "theatre another"),  # articles are whole words only
    ],
)
def test_normalize_text_is_squad_style(text: str, normalized: str) -> None:
    assert normalize_text(text) == normalized


def test_exact_match_over_references() -> None:
    assert exact_match("The Eiffel Tower.", ["eiffel tower"]) == 1.0
    assert exact_match("Shakespeare", ["Marlowe", "shakespeare!"]) == 1.0
    assert exact_match("William Shakespeare", "Shakespeare") == 0.0
    assert exact_match("anything", []) == 0.0
    assert exact_match("", "") == 1.0 and exact_match("The.", "a") == 1.0  # both normalise to nothing
    assert exact_match("", "Paris") == 0.0


def test_token_f1_squad_example() -> None:
    # "cat sat on mat" vs "cat on mat": 3 common tokens, P = 3/4, R = 3/3, F1 = 2·0.75·1/1.75 = 6/7
    assert token_f1("the cat sat on the mat", "a cat on a mat") == pytest.approx(6 / 7)
    assert token_f1("the cat sat on the mat", ["dog", "a cat on a mat"]) == pytest.approx(6 / 7)
    # counts are clipped: "cat cat cat" vs "cat" → 1 common, P = 1/3, R = 1, F1 = 0.5
    assert token_f1("cat cat cat", "cat") == pytest.approx(0.5)
    assert token_f1("dog", "cat") == 0.0
    assert token_f1("", "") == 1.0 and token_f1("", "cat") == 0.0 and token_f1("cat", "") == 0.0
    assert token_f1("cat", []) == 0.0


def test_rouge_l_lin_2004_examples() -> None:
    ref = "police kill the gunman"
    # LCS("police killed the gunman", ref) = "police the gunman" = 3; P = R = 3/4
    assert rouge_l("police killed the gunman", ref) == pytest.approx(0.75)
    # LCS("the gunman kill police", ref) = "the gunman" = 2; P = R = 2/4
    assert rouge_l("the gunman kill police", ref) == pytest.approx(0.5)
    assert rouge_l("the gunman kill police", ["nothing", ref]) == pytest.approx(0.5)
    # unequal lengths: pred "a b c d e f" vs ref "a c f" → LCS 3, P = 3/6, R = 3/3, F1 = 2/3
    assert rouge_l("a b c d e f", "a c f") == pytest.approx(2 / 3)
    assert rouge_l("", "") == 1.0 and rouge_l("", "x") == 0.0 and rouge_l("x", []) == 0.0


# ------------------------------------------------------------------------------------------------ retrieval

RANKED = ["d3", "d1", "d7", "d2"]


def test_retrieval_metrics_binary() -> None:
    relevant = ["d1", "d2"]
    assert hit_rate_at_k(RANKED, relevant, 1) == 0.0
    assert hit_rate_at_k(RANKED, relevant, 2) == 1.0
    assert mrr(RANKED, relevant) == 0.5
    assert mrr(RANKED, relevant, k=1) == 0.0
    assert recall_at_k(RANKED, relevant, 2) == 0.5
    assert recall_at_k(RANKED, relevant) == 1.0
    # DCG@3 = 1/log2(3); IDCG@3 = 1 + 1/log2(3)
    assert ndcg_at_k(RANKED, relevant, 3) == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert ndcg_at_k(["d1", "d2"], relevant) == pytest.approx(1.0)


def test_ndcg_graded_by_hand() -> None:
    ranked = ["d1", "d2", "d3", "d4"]
    grades = {"d1": 3, "d2": 2, "d3": 3, "d5": 1}
    # linear: DCG = 3/1 + 2/log2(3) + 3/2 + 0; ideal (3, 3, 2, 1): 3 + 3/log2(3) + 2/2 + 1/log2(5)
    dcg = 3 + 2 / 1.5849625 + 1.5
    idcg = 3 + 3 / 1.5849625 + 1 + 1 / 2.3219281
    assert ndcg_at_k(ranked, grades) == pytest.approx(dcg / idcg, abs=1e-6)
    assert ndcg_at_k(ranked, grades) == pytest.approx(0.911187, abs=1e-6)
    # exponential gains 2**rel - 1: (7, 3, 7, 0) vs ideal (7, 7, 3, 1)
    dcg = 7 + 3 / 1.5849625 + 7 / 2
    idcg = 7 + 7 / 1.5849625 + 3 / 2 + 1 / 2.3219281
    assert ndcg_at_k(ranked, grades, gain="exponential") == pytest.approx(dcg / idcg, abs=1e-6)
    # at k = 2 the ideal is cut too: (3 + 2/log2 3) / (3 + 3/log2 3)
    assert ndcg_at_k(ranked, grades, 2) == pytest.approx((3 + 2 / 1.5849625) / (3 + 3 / 1.5849625), abs=1e-6)
    # grade 0 is not relevant
    assert recall_at_k(["x"], {"x": 0, "y": 1}) == 0.0


def test_retrieval_edge_cases() -> None:
    assert recall_at_k(["d1", "d1", "d2"], ["d1", "d2"], 2) == 1.0  # duplicates count once
    assert mrr(["d1", "d1", "d2"], ["d2"]) == 0.5
    for fn in (hit_rate_at_k, mrr, recall_at_k, ndcg_at_k):
        assert fn([], ["d1"]) == 0.0
        assert fn(["d1"], []) == 0.0
        assert fn(["d1"], {}) == 0.0
        with pytest.raises(InvalidArgument, match="k must be"):
            fn(["d1"], ["d1"], 0)
    with pytest.raises(InvalidArgument, match="gain"):
        ndcg_at_k(["d1"], ["d1"], gain="cubic")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------- answer quality


def test_groundedness_token_share() -> None:
    answer = "The Eiffel Tower is in Paris and was built in 1889 by Gustave Eiffel."
    # content tokens: eiffel, tower, paris, built, 1889, gustave (6 distinct); 4 are in the context
    assert set(content_tokens(answer)) == {"eiffel", "tower", "paris", "built", "1889", "gustave"}
    assert groundedness(answer, ["The Eiffel Tower, in Paris, opened in 1889."]) == pytest.approx(4 / 6)
    assert groundedness(answer, ["Eiffel Tower: Paris", "built in 1889 by Gustave Eiffel"]) == 1.0
    assert groundedness(answer, []) == 0.0
    assert groundedness("", ["anything"]) == 0.0
    assert groundedness("It is what it is.", ["it is"]) == 0.0  # no content tokens


def test_groundedness_sentences() -> None:
    contexts = ["Paris is the capital of France."]
    answer = "Paris is in France. Bananas are purple! And?"  # "And?" has no content token: skipped
    assert groundedness_sentences(answer, contexts) == 0.5
    # "Paris grows purple bananas": 1 of 4 content tokens supported → below 0.5, at threshold 0.25 it counts
    assert groundedness_sentences("Paris grows purple bananas.", contexts) == 0.0
    assert groundedness_sentences("Paris grows purple bananas.", contexts, threshold=0.25) == 1.0
    assert groundedness_sentences("", contexts) == 0.0
    with pytest.raises(InvalidArgument):
        groundedness_sentences("x", contexts, threshold=1.5)


def test_citations() -> None:
    ids = ["doc-1", "doc-9", "kb/42"]
    assert cited_ids("Paris [1].", ids) == ["doc-1"]
    assert cited_ids("See [doc-9] and [source: kb/42] and [Source:doc-9].", ids) == ["doc-9", "kb/42"]
    assert cited_ids("Both [1, 3].", ids) == ["doc-1", "kb/42"]
    assert cited_ids("[5] is out of range, [doc-2] unknown, [a link](http://x) no", ids) == []
    assert has_citation("Paris [2]", ids) and not has_citation("Paris", ids)
    assert not has_citation("Paris [1]", [])
    assert citation_rate(["a [1]", "b", "c [x]", "d [x]"], [["u"], ["u"], ["x"], ["y"]]) == 0.5
    assert citation_rate([], []) == 0.0
    with pytest.raises(InvalidArgument):
        citation_rate(["a"], [])


@pytest.mark.parametrize(
    "answer",
    [
        "",
        "   ",
        None,
        "I don't know.",
        "I do not know the answer.",
        "I cannot answer that.",
        "Sorry, I can\u2019t help with that.",
        "There is no information about this in the documents.",
        "I'm sorry, but that is not mentioned in the context.",
        "I don't have enough information to answer.",
        "As an AI, I won't speculate.",
        "I am unable to find that.",
    ],
)
def test_is_refusal_positive(answer: str | None) -> None:
    assert is_refusal(answer)


@pytest.mark.parametrize(
    "answer", ["Paris is the capital of France.", "The canal was known to traders.", "No, it opened in 1889."]
)
def test_is_refusal_negative(answer: str) -> None:
    assert not is_refusal(answer)


def test_is_empty_and_length() -> None:
    assert is_empty(None) and is_empty(" \n") and not is_empty("x")
    assert answer_length("Hello  world") == (2, 12)
    assert answer_length("") == (0, 0) and answer_length(None) == (0, 0)
    assert answer_length("Hello world").tokens == 2


# ------------------------------------------------------------------------------------------------ bootstrap


def test_bootstrap_ci_is_seeded_and_contains_the_mean() -> None:
    values = np.random.default_rng(7).random(50)
    low, high = bootstrap_ci(values) or (0.0, 0.0)
    assert low < float(values.mean()) < high
    assert bootstrap_ci(values) == (low, high)
    assert bootstrap_ci(values, seed=1) != (low, high)
    narrow = bootstrap_ci(values, confidence=0.5)
    assert narrow is not None and low < narrow[0] < narrow[1] < high
    assert bootstrap_ci([0.4] * 5) == pytest.approx((0.4, 0.4))
    assert bootstrap_ci([0.3]) == pytest.approx((0.3, 0.3))
    assert bootstrap_ci([]) is None
    with pytest.raises(InvalidArgument):
        bootstrap_ci(values, confidence=1.0)


# --------------------------------------------------------------------------------------------------- runner

ROWS: list[dict[str, Any]] = [
    {"id": "q1", "input": "Capital of France?", "expected": "Paris", "relevant_ids": ["d1"]},
    {"id": "q2", "input": {"question": "Who wrote Hamlet?", "style": "short"}, "expected": ["Shakespeare"],
     "relevant_ids": {"d2": 2, "d5": 1}},
    {"id": "q3", "input": "Largest planet?", "expected": ["Jupiter"], "relevant_ids": ["d3"], "metadata": {"t": 1}},
]  # fmt: skip
ANSWERS = {
    "Capital of France?": Answer("Paris.", ["d1", "d9"], ["Paris is the capital of France."], 0.2, cost=0.001),
    "Who wrote Hamlet?": Answer("William Shakespeare", ["d5", "d2"], ["Hamlet by William Shakespeare"], 0.4),
    "Largest planet?": Answer("I don't know", ["d8"], [], 0.3, cost=0.003),
}


def answer(case: EvalCase) -> Answer:
    return ANSWERS[case.question]


def test_run_eval_scores_rows_and_summarises() -> None:
    run = run_eval(ROWS, answer, metrics=["exact_match", "token_f1", "mrr", "refusal_rate", "cost", "latency_s"])
    assert [r.id for r in run.results] == ["q1", "q2", "q3"]
    assert run.results[1].case.input == {"question": "Who wrote Hamlet?", "style": "short"}
    assert run.results[2].case.metadata == {"t": 1}
    assert run.scores("exact_match") == {"q1": 1.0, "q2": 0.0, "q3": 0.0}
    assert run.scores("token_f1")["q2"] == pytest.approx(2 / 3)  # P = 1/2, R = 1
    assert run.scores("mrr") == {"q1": 1.0, "q2": 1.0, "q3": 0.0}
    assert run.scores("cost") == {"q1": 0.001, "q3": 0.003}  # q2 reported no cost: no value, no error
    f1 = run.summary["token_f1"]
    assert (f1.n, f1.errors) == (3, 0) and f1.mean == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert f1.ci_low is not None and f1.ci_high is not None and f1.ci_low <= f1.mean <= f1.ci_high
    assert run.summary["refusal_rate"].mean == pytest.approx(1 / 3)
    assert run.summary["cost"].n == 2 and run.summary["latency_s"].mean == pytest.approx(0.3)
    again = run_eval(ROWS, answer, metrics=["exact_match", "token_f1", "mrr", "refusal_rate", "cost", "latency_s"])
    assert again.summary == run.summary


def test_run_eval_default_metrics_and_k() -> None:
    run = run_eval(ROWS, answer)
    assert "judge_score" not in run.metrics
    assert set(run.metrics) == set(METRICS) - {"judge_score"}
    only_questions = run_eval([{"id": 1, "input": "Capital of France?"}], answer)
    assert "token_f1" not in only_questions.metrics and "groundedness" in only_questions.metrics
    assert only_questions.results[0].id == "1"
    # q2 ranks d5 (grade 1) before d2 (grade 2): at k=1 the hit counts, recall is 1 of 2 relevant
    at_1 = run_eval(ROWS, answer, metrics=["hit_rate", "recall"], k=1)
    assert at_1.scores("hit_rate")["q2"] == 1.0 and at_1.scores("recall")["q2"] == 0.5


def test_run_eval_records_failures_without_stopping() -> None:
    def flaky(case: EvalCase) -> Answer | str:
        if case.id == "q1":
            raise RuntimeError("backend down")
        if case.id == "q2":
            return Answer(error="timeout")
        return "Jupiter"

    run = run_eval(ROWS, flaky, metrics=["exact_match", "latency_s"])
    assert run.results[0].error == "RuntimeError: backend down" and run.results[1].error == "timeout"
    assert run.results[2].answer is not None and run.results[2].answer.latency_s is not None  # measured
    summary = run.summary["exact_match"]
    assert (summary.n, summary.errors, summary.mean) == (1, 2, 1.0)
    assert run.results[0].metric_errors["exact_match"] == "RuntimeError: backend down"

    def broken(case: EvalCase) -> Answer:
        raise ValueError("always")

    none = run_eval(ROWS, broken, metrics=["token_f1"]).summary["token_f1"]
    assert (none.mean, none.n, none.ci_low, none.ci_high, none.errors) == (None, 0, None, None, 3)


def test_run_eval_concurrency_keeps_order() -> None:
    threads: set[str] = set()
    barrier = threading.Barrier(3, timeout=5)

    def slow(case: EvalCase) -> Answer:
        threads.add(threading.current_thread().name)
        barrier.wait()  # all three rows are in flight at once
        return answer(case)

    run = run_eval(ROWS, slow, metrics=["exact_match"], concurrency=3)
    assert [r.id for r in run.results] == ["q1", "q2", "q3"]
    assert run.scores("exact_match") == {"q1": 1.0, "q2": 0.0, "q3": 0.0}
    assert len(threads) == 3


class FakeJudge:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, Sequence[str] | None, Sequence[str] | None]] = []

    def score(
        self,
        question: str,
        answer: str,
        *,
        expected: Sequence[str] | None = None,
        contexts: Sequence[str] | None = None,
    ) -> JudgeScore:
        self.seen.append((question, answer, expected, contexts))
        if "Shakespeare" in answer:
            return JudgeScore(None, "", False, "blah", 2)
        if "know" in answer:
            raise ConnectionError("judge unreachable")
        return JudgeScore(5.0, "correct", True, '{"score": 5}', 1)


def test_run_eval_with_a_judge() -> None:
    judge = FakeJudge()
    run = run_eval(ROWS, answer, metrics=["judge_score"], judge=judge)
    assert run.scores("judge_score") == {"q1": 5.0}
    summary = run.summary["judge_score"]
    assert (summary.n, summary.errors, summary.mean) == (1, 2, 5.0)
    assert run.results[1].metric_errors["judge_score"].startswith("invalid judge answer")
    assert run.results[2].metric_errors["judge_score"] == "ConnectionError: judge unreachable"
    assert run.results[0].judge is not None and run.results[0].judge.reason == "correct"
    assert judge.seen[0] == ("Capital of France?", "Paris.", ["Paris"], ["Paris is the capital of France."])
    assert judge.seen[1][0] == "Who wrote Hamlet?"  # a dict input's question
    assert "judge_score" in run_eval(ROWS, answer, judge=judge).metrics


@pytest.mark.parametrize(
    ("rows", "kwargs", "message"),
    [
        ([{"input": "x"}], {}, "row 0 is missing its 'id'"),
        ([{"id": "", "input": "x"}], {}, "row 0 is missing its 'id'"),
        ([{"id": "a", "input": "x"}, {"id": "a", "input": "y"}], {}, r"row 1 \(id 'a'\): duplicate id"),
        ([{"id": "a", "input": 3}], {}, r"row 0 \(id 'a'\): 'input'"),
        ([{"id": "a", "input": "x", "expected": []}], {}, "'expected' must be"),
        ([{"id": "a", "input": "x", "relevant_ids": {"d": -1}}], {}, "grade of 'd'"),
        ([{"id": "a", "input": "x", "relevant_ids": "d1"}], {}, "'relevant_ids' must be"),
        ([{"id": "a", "input": "x", "answer": "y"}], {}, r"unknown fields \['answer'\]"),
        (["q"], {}, "row 0 must be an object"),
        (
            [{"id": "a", "input": "x", "expected": "y"}, {"id": "b", "input": "z"}],
            {"metrics": ["token_f1"]},
            "metric 'token_f1' needs 'expected', which row 'b' does not have",
        ),
        ([{"id": "a", "input": "x"}], {"metrics": ["ndcg"]}, "needs 'relevant_ids', which row 'a'"),
        ([{"id": "a", "input": "x"}], {"metrics": ["bleu"]}, "unknown metric 'bleu'"),
        ([{"id": "a", "input": "x"}], {"metrics": ["judge_score"]}, "needs a judge"),
        ([{"id": "a", "input": "x"}], {"metrics": ["cost", "cost"]}, "duplicates"),
        ([{"id": "a", "input": "x"}], {"concurrency": 0}, "concurrency"),
        ([{"id": "a", "input": "x"}], {"k": 0}, "k must be"),
    ],
)
def test_run_eval_validates_up_front(rows: list[Any], kwargs: dict[str, Any], message: str) -> None:
    calls: list[EvalCase] = []
    with pytest.raises(InvalidArgument, match=message):
        run_eval(rows, lambda case: calls.append(case) or "x", **kwargs)
    assert calls == []


# -------------------------------------------------------------------------------------------------- compare


def test_compare_is_paired_over_common_rows() -> None:
    rows = [{"id": f"r{i}", "input": f"q{i}", "expected": "yes"} for i in range(30)]
    baseline = run_eval(rows, lambda c: "yes" if int(c.id[1:]) % 3 == 0 else "no", metrics=["exact_match"])
    candidate = run_eval(rows[5:], lambda c: "yes" if int(c.id[1:]) % 3 else "no", metrics=["exact_match"])
    result = compare(baseline, candidate, "exact_match")
    # rows r5..r29 (25): baseline right on multiples of 3 (r6…r27: 8 rows), candidate right on the other 17
    assert (result.n, result.mean_a, result.mean_b) == (25, 8 / 25, 17 / 25)
    assert result.difference == pytest.approx(9 / 25)
    assert result.ci_low <= result.difference <= result.ci_high
    assert compare(baseline, candidate, "exact_match") == result  # seeded
    reverse = compare(candidate.results, baseline.results, "exact_match")
    assert reverse.difference == pytest.approx(-9 / 25)
    same = compare(baseline, baseline, "exact_match")
    assert (same.difference, same.ci_low, same.ci_high, same.significant) == (0.0, 0.0, 0.0, False)
    with pytest.raises(InvalidArgument, match="no row in common"):
        compare(baseline, candidate, "token_f1")
    with pytest.raises(InvalidArgument, match="unknown metric"):
        compare(baseline, candidate, "bleu")
