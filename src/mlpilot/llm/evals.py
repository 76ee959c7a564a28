"""Evaluating LLM and RAG apps: deterministic metrics, an eval runner with bootstrap intervals, paired comparison.

A pure library (stdlib + numpy): no model, no network. An eval dataset is a list of rows::

    {"id": "q1", "input": "Who wrote Hamlet?", "expected": ["Shakespeare", "William Shakespeare"],
     "relevant_ids": ["doc-7"], "metadata": {"topic": "literature"}}

``input`` is a question or a dict of prompt variables; ``expected`` a string or a list of acceptable answers;
``relevant_ids`` a list of relevant document ids or a dict id → graded relevance (> 0 is relevant)::

    run = run_eval(rows, answer_fn, metrics=["exact_match", "token_f1", "mrr"], judge=judge, concurrency=4)
    run.summary["token_f1"].mean, run.summary["token_f1"].ci_low, run.summary["token_f1"].errors
    compare(baseline_run, candidate_run, "token_f1").difference          # candidate - baseline

Decisions (conventions for the edge cases; every metric is deterministic and never divides by zero):

* **Text** is normalised the SQuAD way (:func:`normalize_text`: lowercase, Unicode punctuation deleted, the
  articles a/an/the removed, whitespace collapsed). Two texts that both normalise to nothing match (EM = F1 = 1);
  one empty side scores 0. An empty list of references scores 0.
* **ROUGE-L** tokenises like the reference ``rouge-score`` package (lowercase, runs of letters/digits; articles
  are *kept*), so its values match published ones, and uses F1 (β = 1) of the LCS precision and recall.
* **Retrieval** metrics dedupe the ranked ids (first occurrence wins) and cut them at ``k`` (``None``: the whole
  list). With no relevant id they are 0. nDCG uses linear gains (``rel / log2(rank + 1)``, as trec_eval and
  scikit-learn) unless ``gain="exponential"`` (``2**rel - 1``); the ideal ranking uses every relevant grade.
* **Groundedness** is lexical: the share of the answer's distinct content tokens (normalised, minus
  :data:`STOPWORDS`) found in the contexts. An answer without content tokens scores 0 (nothing to support it) —
  refusals and empty answers are measured by ``refusal_rate`` instead.
* **Runner**: an answer that raised or carries ``error`` is excluded from every metric and counted in each
  metric's ``errors``; an invalid judge answer is excluded from ``judge_score`` and counted there. A metric with
  no value (``cost`` not reported) is excluded without being an error. Means come with a 95% percentile
  bootstrap interval (1000 resamples, seeded: the same rows give the same interval); a metric with no value
  has ``mean = ci_low = ci_high = None``.
"""

from __future__ import annotations

import json
import math
import re
import time
import unicodedata
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np

from mlpilot.errors import InvalidArgument
from mlpilot.llm.judge import Judge, JudgeScore

__all__ = [
    "METRICS",
    "REFUSAL_PATTERNS",
    "STOPWORDS",
    "Answer",
    "AnswerLength",
    "Comparison",
    "EvalCase",
    "EvalResult",
    "EvalRun",
    "MetricSummary",
    "answer_length",
    "bootstrap_ci",
    "citation_rate",
    "cited_ids",
    "compare",
    "content_tokens",
    "exact_match",
    "groundedness",
    "groundedness_sentences",
    "has_citation",
    "hit_rate_at_k",
    "is_empty",
    "is_refusal",
    "mrr",
    "ndcg_at_k",
    "normalize_text",
    "recall_at_k",
    "rouge_l",
    "run_eval",
    "token_f1",
]

#: A small English stopword list (in normalised form: lowercase, apostrophes deleted — "don't" is "dont").
_STOPWORDS_TEXT = """
    a about above after again against all also am an and any are as at be because been before being below between
    both but by can cannot could did do does doing down during each few for from further had has have having he her
    here hers herself him himself his how i if in into is it its itself just me more most my myself no nor not of
    off on once only or other our ours ourselves out over own same she should so some such than that the their
    theirs them themselves then there these they this those through to too under until up very was we were what
    when where which while who whom why will with would you your yours yourself yourselves
    dont doesnt didnt isnt arent wasnt werent cant couldnt wont wouldnt shouldnt hasnt havent hadnt im ive id youre
    hes shes its were theyre thats theres whats lets may might must shall yes ok
"""
STOPWORDS: frozenset[str] = frozenset(_STOPWORDS_TEXT.split())

#: What :func:`is_refusal` looks for (case-insensitive regexes, searched anywhere; curly apostrophes count as ').
#: An empty or whitespace-only answer is a refusal too.
REFUSAL_PATTERNS: tuple[str, ...] = (
    r"\bi (?:do not|don't|dont) know\b",
    r"\bi (?:cannot|can't|can not|am unable to|'m unable to|am not able to|'m not able to)\b",
    r"\bi (?:won't|will not) (?:help|answer|provide)\b",
    r"\b(?:unable|not able) to (?:answer|find|help|provide|determine)\b",
    r"\bno (?:relevant |such |further )?information\b",
    r"\bi (?:do not|don't|dont) have (?:enough |any |the )?(?:information|access|data|details)\b",
    r"\b(?:not|isn't|is not) (?:mentioned|provided|available|specified|stated) in the "
    r"(?:context|documents?|sources?|provided)",
    r"\b(?:there is|there's) no (?:answer|mention)\b",
    r"\bi(?:'m| am) sorry,? but\b",
    r"\bi apologi[sz]e,? but\b",
    r"\bas an ai\b",
)
_REFUSAL_RE = re.compile("|".join(f"(?:{p})" for p in REFUSAL_PATTERNS), re.IGNORECASE)
_ARTICLES_RE = re.compile(r"\b(?:a|an|the)\b")
_ROUGE_TOKEN_RE = re.compile(r"[^\W_]+")
_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+|\n+")
_CITATION_RE = re.compile(r"\[([^\[\]\n]{1,200})\](?!\()")
_CITE_PREFIX_RE = re.compile(r"^(?:source|sources|doc|document|ref|id)\s*(?:[:#]|\s)\s*", re.IGNORECASE)

Refs = str | Sequence[str]
Relevance = Collection[str] | Mapping[str, float]


# ------------------------------------------------------------------------------------------------------ text


def normalize_text(text: str) -> str:
    """SQuAD normalisation: lowercase, delete punctuation (any Unicode ``P*``), drop a/an/the, collapse spaces."""
    text = "".join(ch for ch in text.lower() if not unicodedata.category(ch).startswith("P"))
    return " ".join(_ARTICLES_RE.sub(" ", text).split())


def _tokens(text: str) -> list[str]:
    return normalize_text(text).split()


def content_tokens(text: str) -> list[str]:
    """The normalised tokens of ``text`` without :data:`STOPWORDS` (numbers are content)."""
    return [t for t in _tokens(text) if t not in STOPWORDS]


def _refs(refs: Refs) -> list[str]:
    return [refs] if isinstance(refs, str) else list(refs)


def exact_match(pred: str, refs: Refs) -> float:
    """1.0 if the normalised prediction equals any normalised reference, else 0.0 (0.0 for no references)."""
    normalized = normalize_text(pred)
    return float(any(normalized == normalize_text(r) for r in _refs(refs)))


def _f1(common: int, n_pred: int, n_ref: int) -> float:
    if n_pred == 0 or n_ref == 0:
        return float(n_pred == n_ref)
    if common == 0:
        return 0.0
    precision, recall = common / n_pred, common / n_ref
    return 2 * precision * recall / (precision + recall)


def token_f1(pred: str, refs: Refs) -> float:
    """SQuAD token F1 (bag-of-tokens overlap, counts clipped), the best over the references."""
    pred_tokens = _tokens(pred)
    best = 0.0
    for ref in _refs(refs):
        ref_tokens = _tokens(ref)
        remaining: dict[str, int] = {}
        for t in ref_tokens:
            remaining[t] = remaining.get(t, 0) + 1
        common = 0
        for t in pred_tokens:
            if remaining.get(t, 0) > 0:
                remaining[t] -= 1
                common += 1
        best = max(best, _f1(common, len(pred_tokens), len(ref_tokens)))
    return best


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(pred: str, refs: Refs) -> float:
    """ROUGE-L F1: LCS of the token sequences over their lengths, the best over the references.

    Lin (2004): "police killed the gunman" against "police kill the gunman" → LCS 3 of 4 and 4 → 0.75.
    """
    pred_tokens = _ROUGE_TOKEN_RE.findall(pred.lower())
    best = 0.0
    for ref in _refs(refs):
        ref_tokens = _ROUGE_TOKEN_RE.findall(ref.lower())
        best = max(best, _f1(_lcs(pred_tokens, ref_tokens), len(pred_tokens), len(ref_tokens)))
    return best


# ------------------------------------------------------------------------------------------------ retrieval


def _ranked(retrieved: Sequence[str], k: int | None) -> list[str]:
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise InvalidArgument(f"k must be a positive integer or None, got {k!r}")
    seen: dict[str, None] = {}
    for doc in retrieved:
        seen.setdefault(doc, None)
    ranked = list(seen)
    return ranked if k is None else ranked[:k]


def _grades(relevant: Relevance) -> dict[str, float]:
    if isinstance(relevant, Mapping):
        return {str(d): float(g) for d, g in relevant.items() if float(g) > 0}
    return {str(d): 1.0 for d in relevant}


def hit_rate_at_k(retrieved: Sequence[str], relevant: Relevance, k: int | None = None) -> float:
    """1.0 if any relevant id is in the top ``k``, else 0.0."""
    grades = _grades(relevant)
    return float(any(d in grades for d in _ranked(retrieved, k)))


def mrr(retrieved: Sequence[str], relevant: Relevance, k: int | None = None) -> float:
    """Reciprocal rank of the first relevant id in the top ``k`` (0.0 when none is there)."""
    grades = _grades(relevant)
    for rank, doc in enumerate(_ranked(retrieved, k), start=1):
        if doc in grades:
            return 1.0 / rank
    return 0.0


def recall_at_k(retrieved: Sequence[str], relevant: Relevance, k: int | None = None) -> float:
    """Share of the relevant ids found in the top ``k`` (0.0 when nothing is relevant)."""
    grades = _grades(relevant)
    if not grades:
        return 0.0
    return sum(1 for d in _ranked(retrieved, k) if d in grades) / len(grades)


def ndcg_at_k(
    retrieved: Sequence[str],
    relevant: Relevance,
    k: int | None = None,
    *,
    gain: Literal["linear", "exponential"] = "linear",
) -> float:
    """Normalised discounted cumulative gain of the top ``k``: DCG / ideal DCG, ``DCG = Σ g(rel_i) / log2(i + 1)``.

    ``relevant`` is a list (binary relevance) or a dict id → grade; ``g`` is the grade (linear) or ``2**grade - 1``.
    """
    if gain not in ("linear", "exponential"):
        raise InvalidArgument(f"gain must be 'linear' or 'exponential', got {gain!r}")
    grades = _grades(relevant)
    ranked = _ranked(retrieved, k)

    def g(grade: float) -> float:
        return grade if gain == "linear" else 2.0**grade - 1.0

    dcg = sum(g(grades.get(d, 0.0)) / math.log2(i + 2) for i, d in enumerate(ranked))
    ideal = sorted(grades.values(), reverse=True)
    if k is not None:
        ideal = ideal[:k]
    idcg = sum(g(grade) / math.log2(i + 2) for i, grade in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


# ----------------------------------------------------------------------------------------- answer quality


def groundedness(answer: str, contexts: Sequence[str]) -> float:
    """Share of the answer's distinct content tokens that appear in the contexts (0.0 without content tokens)."""
    tokens = set(content_tokens(answer))
    if not tokens:
        return 0.0
    context = {t for c in contexts for t in _tokens(c)}
    return len(tokens & context) / len(tokens)


def groundedness_sentences(answer: str, contexts: Sequence[str], threshold: float = 0.5) -> float:
    """Share of the answer's sentences whose :func:`groundedness` against the contexts is ≥ ``threshold``.

    Sentences end at ``.``, ``!`` or ``?`` followed by whitespace, or at a line break; sentences without content
    tokens are skipped; 0.0 when no sentence is left.
    """
    if not 0.0 <= threshold <= 1.0:
        raise InvalidArgument(f"threshold must be within [0, 1], got {threshold}")
    context = {t for c in contexts for t in _tokens(c)}
    scored = 0
    supported = 0
    for sentence in _SENTENCE_RE.split(answer):
        tokens = set(content_tokens(sentence))
        if tokens:
            scored += 1
            supported += len(tokens & context) / len(tokens) >= threshold
    return supported / scored if scored else 0.0


def cited_ids(answer: str, doc_ids: Sequence[str]) -> list[str]:
    """The retrieved ids the answer cites, in order of first citation.

    A citation is a bracket: ``[1]`` (1-based position in ``doc_ids``), ``[doc-id]``, ``[source: doc-id]`` (also
    ``doc:``, ``ref:``, ``id:``), several separated by ``,`` or ``;`` (``[1, 3]``). Markdown links ``[text](url)``
    and brackets naming nothing retrieved are not citations.
    """
    known = {str(d) for d in doc_ids}
    found: dict[str, None] = {}
    for match in _CITATION_RE.finditer(answer):
        for part in re.split(r"[,;]", match.group(1)):
            ref = part.strip()
            ref = ref if ref in known else _CITE_PREFIX_RE.sub("", ref).strip()
            if ref.isdigit() and 1 <= int(ref) <= len(doc_ids):
                found.setdefault(str(doc_ids[int(ref) - 1]), None)
            elif ref in known:
                found.setdefault(ref, None)
    return list(found)


def has_citation(answer: str, doc_ids: Sequence[str]) -> bool:
    """Whether the answer cites at least one retrieved source (see :func:`cited_ids`)."""
    return bool(cited_ids(answer, doc_ids))


def citation_rate(answers: Sequence[str], doc_ids: Sequence[Sequence[str]]) -> float:
    """Share of answers that cite one of their own retrieved sources (0.0 for no answers)."""
    if len(answers) != len(doc_ids):
        raise InvalidArgument(f"citation_rate needs one id list per answer: {len(answers)} answers, {len(doc_ids)}")
    if not answers:
        return 0.0
    return sum(has_citation(a, d) for a, d in zip(answers, doc_ids, strict=True)) / len(answers)


def is_empty(answer: str | None) -> bool:
    """Whether the answer is missing or only whitespace."""
    return answer is None or not answer.strip()


def is_refusal(answer: str | None) -> bool:
    """Whether the answer is empty or matches one of :data:`REFUSAL_PATTERNS`."""
    if answer is None or is_empty(answer):
        return True
    return _REFUSAL_RE.search(answer.replace("\u2019", "'").replace("\u2018", "'")) is not None


class AnswerLength(NamedTuple):
    tokens: int
    chars: int


def answer_length(answer: str | None) -> AnswerLength:
    """Length in whitespace-separated tokens and in characters (both 0 for ``None``)."""
    text = answer or ""
    return AnswerLength(len(text.split()), len(text))


# ------------------------------------------------------------------------------------------------ statistics


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, *, confidence: float = 0.95, resamples: int = 1000, seed: int = 0
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean: ``resamples`` resamples with replacement, seeded (deterministic).

    ``None`` for no values; a single value (or constant values) gives a zero-width interval.
    """
    if not 0.0 < confidence < 1.0:
        raise InvalidArgument(f"confidence must be within (0, 1), got {confidence}")
    if resamples < 1:
        raise InvalidArgument(f"resamples must be at least 1, got {resamples}")
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return None
    rng = np.random.default_rng(seed)
    batch = max(1, 2_000_000 // data.size)  # bounds memory for big datasets; the draws stay the same sequence
    means = np.concatenate(
        [
            data[rng.integers(0, data.size, size=(min(batch, resamples - start), data.size))].mean(axis=1)
            for start in range(0, resamples, batch)
        ]
    )
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


# ---------------------------------------------------------------------------------------------------- runner


@dataclass
class Answer:
    """What an app answered for one row. ``error`` (or an exception from ``answer_fn``) marks a failed row."""

    text: str = ""
    retrieved_ids: list[str] = field(default_factory=list)
    contexts: list[str] = field(default_factory=list)
    latency_s: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class EvalCase:
    """One validated row. ``expected`` is always a list; ``relevant`` maps id → grade (1.0 for a list)."""

    id: str
    input: str | dict[str, Any]
    expected: list[str] | None = None
    relevant: dict[str, float] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def question(self) -> str:
        """The input as text: the string, else a dict's ``question``/``query``/``input``, else its JSON."""
        if isinstance(self.input, str):
            return self.input
        for key in ("question", "query", "input"):
            if isinstance(self.input.get(key), str):
                return str(self.input[key])
        return json.dumps(self.input, sort_keys=True, default=str)


@dataclass
class EvalResult:
    """One row's outcome: its scores, and why a metric has no score (``metric_errors``)."""

    case: EvalCase
    answer: Answer | None
    scores: dict[str, float] = field(default_factory=dict)
    metric_errors: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    judge: JudgeScore | None = None

    @property
    def id(self) -> str:
        return self.case.id


@dataclass(frozen=True)
class MetricSummary:
    """A metric over a run: mean of the rows with a score, how many, the bootstrap interval, rows in error."""

    metric: str
    mean: float | None
    n: int
    ci_low: float | None
    ci_high: float | None
    errors: int


@dataclass
class EvalRun:
    """Every row's result (in input order) and a summary per metric."""

    results: list[EvalResult]
    summary: dict[str, MetricSummary]
    metrics: tuple[str, ...]

    def scores(self, metric: str) -> dict[str, float]:
        """Row id → score, for the rows that have one."""
        return {r.id: r.scores[metric] for r in self.results if metric in r.scores}


@dataclass(frozen=True)
class _Metric:
    needs: Literal["expected", "relevant", "judge"] | None
    fn: Callable[[EvalCase, Answer, int | None], float | None]


def _num(value: float | int | None) -> float | None:
    return None if value is None else float(value)


#: The metric registry: name → what a row needs and how one row is scored (retrieval metrics cut at the run's k).
METRICS: dict[str, _Metric] = {
    "exact_match": _Metric("expected", lambda c, a, k: exact_match(a.text, c.expected or [])),
    "token_f1": _Metric("expected", lambda c, a, k: token_f1(a.text, c.expected or [])),
    "rouge_l": _Metric("expected", lambda c, a, k: rouge_l(a.text, c.expected or [])),
    "hit_rate": _Metric("relevant", lambda c, a, k: hit_rate_at_k(a.retrieved_ids, c.relevant or {}, k)),
    "mrr": _Metric("relevant", lambda c, a, k: mrr(a.retrieved_ids, c.relevant or {}, k)),
    "ndcg": _Metric("relevant", lambda c, a, k: ndcg_at_k(a.retrieved_ids, c.relevant or {}, k)),
    "recall": _Metric("relevant", lambda c, a, k: recall_at_k(a.retrieved_ids, c.relevant or {}, k)),
    "groundedness": _Metric(None, lambda c, a, k: groundedness(a.text, a.contexts)),
    "citation_rate": _Metric(None, lambda c, a, k: float(has_citation(a.text, a.retrieved_ids))),
    "refusal_rate": _Metric(None, lambda c, a, k: float(is_refusal(a.text))),
    "answer_tokens": _Metric(None, lambda c, a, k: float(answer_length(a.text).tokens)),
    "latency_s": _Metric(None, lambda c, a, k: _num(a.latency_s)),
    "cost": _Metric(None, lambda c, a, k: _num(a.cost)),
    "judge_score": _Metric("judge", lambda c, a, k: None),  # scored by the runner through the judge
}


def _validate_rows(rows: Sequence[Mapping[str, Any]]) -> list[EvalCase]:
    if isinstance(rows, (str, bytes, Mapping)):
        raise InvalidArgument("rows must be a list of row objects")
    cases: list[EvalCase] = []
    seen: dict[str, int] = {}
    for i, row in enumerate(rows):
        where = f"row {i}"
        if not isinstance(row, Mapping):
            raise InvalidArgument(f"{where} must be an object with 'id' and 'input', got {type(row).__name__}")
        unknown = set(row) - {"id", "input", "expected", "relevant_ids", "metadata"}
        if unknown:
            raise InvalidArgument(f"{where} has unknown fields {sorted(unknown)}")
        row_id = row.get("id")
        if isinstance(row_id, bool) or not isinstance(row_id, (str, int)) or str(row_id).strip() == "":
            raise InvalidArgument(f"{where} is missing its 'id' (a non-empty string or an integer)")
        row_id = str(row_id)
        where = f"row {i} (id {row_id!r})"
        if row_id in seen:
            raise InvalidArgument(f"{where}: duplicate id, already used by row {seen[row_id]}")
        seen[row_id] = i
        value = row.get("input")
        if not isinstance(value, (str, Mapping)):
            raise InvalidArgument(f"{where}: 'input' must be a question string or a dict of prompt variables")
        expected = row.get("expected")
        if expected is not None:
            expected = [expected] if isinstance(expected, str) else expected
            if not isinstance(expected, list) or not expected or not all(isinstance(e, str) for e in expected):
                raise InvalidArgument(f"{where}: 'expected' must be a string or a non-empty list of strings")
        relevant = row.get("relevant_ids")
        if relevant is not None:
            relevant = _relevance(relevant, where)
        metadata = row.get("metadata") or {}
        if not isinstance(metadata, Mapping):
            raise InvalidArgument(f"{where}: 'metadata' must be an object")
        data = value if isinstance(value, str) else dict(value)
        cases.append(EvalCase(row_id, data, list(expected) if expected else None, relevant, dict(metadata)))
    return cases


def _relevance(value: Any, where: str) -> dict[str, float]:
    if isinstance(value, Mapping):
        out: dict[str, float] = {}
        for doc, grade in value.items():
            if isinstance(grade, bool) or not isinstance(grade, (int, float)) or not math.isfinite(grade) or grade < 0:
                raise InvalidArgument(f"{where}: 'relevant_ids' grade of {doc!r} must be a number ≥ 0, got {grade!r}")
            out[str(doc)] = float(grade)
        return out
    if isinstance(value, (list, tuple)) and all(isinstance(d, str) for d in value):
        return dict.fromkeys(value, 1.0)
    raise InvalidArgument(f"{where}: 'relevant_ids' must be a list of ids or a dict id → grade")


def _default_metrics(cases: Sequence[EvalCase], judge: Judge | None) -> list[str]:
    chosen = []
    for name, metric in METRICS.items():
        if metric.needs == "expected" and not all(c.expected for c in cases):
            continue
        if metric.needs == "relevant" and not all(c.relevant for c in cases):
            continue
        if metric.needs == "judge" and judge is None:
            continue
        chosen.append(name)
    return chosen


def _check_metrics(metrics: Sequence[str], cases: Sequence[EvalCase], judge: Judge | None) -> None:
    if isinstance(metrics, str):
        raise InvalidArgument("metrics must be a list of metric names")
    for name in metrics:
        if name not in METRICS:
            raise InvalidArgument(f"unknown metric {name!r}; known: {', '.join(METRICS)}")
        needs = METRICS[name].needs
        if needs == "judge" and judge is None:
            raise InvalidArgument("metric 'judge_score' needs a judge: run_eval(..., judge=RubricJudge(...))")
        for case in cases:
            if needs == "expected" and not case.expected:
                raise InvalidArgument(f"metric {name!r} needs 'expected', which row {case.id!r} does not have")
            if needs == "relevant" and not case.relevant:
                raise InvalidArgument(f"metric {name!r} needs 'relevant_ids', which row {case.id!r} does not have")
    if len(set(metrics)) != len(metrics):
        raise InvalidArgument(f"metrics has duplicates: {list(metrics)}")


def _evaluate(
    case: EvalCase,
    answer_fn: Callable[[EvalCase], Answer | str],
    metrics: Sequence[str],
    judge: Judge | None,
    k: int | None,
) -> EvalResult:
    started = time.perf_counter()
    try:
        answer = answer_fn(case)
    except Exception as exc:  # a failing app is a result to report, never the end of the eval
        answer = Answer(error=f"{type(exc).__name__}: {exc}")
    elapsed = time.perf_counter() - started
    if isinstance(answer, str):
        answer = Answer(text=answer)
    if not isinstance(answer, Answer):
        answer = Answer(error=f"answer_fn returned {type(answer).__name__}, not Answer or str")
    if answer.latency_s is None:
        answer.latency_s = elapsed
    result = EvalResult(case, answer, error=answer.error)
    if answer.error is not None:
        result.metric_errors = dict.fromkeys(metrics, answer.error)
        return result
    for name in metrics:
        if name == "judge_score" and judge is not None:
            try:
                verdict = judge.score(case.question, answer.text, expected=case.expected, contexts=answer.contexts)
            except Exception as exc:  # an unreachable judge fails its metric on this row, not the eval
                result.metric_errors[name] = f"{type(exc).__name__}: {exc}"
                continue
            result.judge = verdict
            if verdict.valid and verdict.score is not None:
                result.scores[name] = verdict.score
            else:
                result.metric_errors[name] = f"invalid judge answer: {verdict.raw[:200]!r}"
            continue
        value = METRICS[name].fn(case, answer, k)
        if value is not None:
            result.scores[name] = value
    return result


def _summarise(name: str, results: Sequence[EvalResult], confidence: float, seed: int) -> MetricSummary:
    values = [r.scores[name] for r in results if name in r.scores]
    errors = sum(1 for r in results if name in r.metric_errors)
    ci = bootstrap_ci(values, confidence=confidence, seed=seed)
    if ci is None:
        return MetricSummary(name, None, 0, None, None, errors)
    return MetricSummary(name, float(np.mean(values)), len(values), ci[0], ci[1], errors)


def run_eval(
    rows: Sequence[Mapping[str, Any]],
    answer_fn: Callable[[EvalCase], Answer | str],
    metrics: Sequence[str] | None = None,
    judge: Judge | None = None,
    concurrency: int = 1,
    *,
    k: int | None = 10,
    confidence: float = 0.95,
    seed: int = 0,
) -> EvalRun:
    """Answer every row, score it, and summarise each metric.

    Args:
        rows: the dataset (see the module docstring); validated completely before any call.
        answer_fn: called with each row's :class:`EvalCase`; returns an :class:`Answer` (or just its text). An
            exception is recorded as the row's error. Without ``latency_s`` the call's wall time is used.
        metrics: names from :data:`METRICS`; ``None`` picks every metric every row has the data for
            (``judge_score`` when a judge is given).
        judge: scores ``judge_score`` (anything with :meth:`RubricJudge.score`).
        concurrency: rows answered at once (threads); results keep the input order.
        k: the cut-off of the retrieval metrics (``None``: the whole ranking).
        confidence, seed: of the bootstrap intervals.

    Raises:
        InvalidArgument: a row without id, a duplicate id, an invalid field (named with the row), an unknown
            metric, or a metric that needs data (``expected``, ``relevant_ids``, a judge) a row lacks.
    """
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise InvalidArgument(f"concurrency must be a positive integer, got {concurrency!r}")
    cases = _validate_rows(rows)
    chosen = _default_metrics(cases, judge) if metrics is None else list(metrics)
    _check_metrics(chosen, cases, judge)
    _ranked([], k)  # validates k
    if concurrency == 1 or len(cases) <= 1:
        results = [_evaluate(c, answer_fn, chosen, judge, k) for c in cases]
    else:
        with ThreadPoolExecutor(max_workers=min(concurrency, len(cases)), thread_name_prefix="mlpilot-eval") as pool:
            results = list(pool.map(lambda c: _evaluate(c, answer_fn, chosen, judge, k), cases))
    summary = {name: _summarise(name, results, confidence, seed) for name in chosen}
    return EvalRun(results, summary, tuple(chosen))


@dataclass(frozen=True)
class Comparison:
    """Paired comparison of one metric over the rows both runs scored: ``difference = mean(b - a)``."""

    metric: str
    n: int
    mean_a: float
    mean_b: float
    difference: float
    ci_low: float
    ci_high: float

    @property
    def significant(self) -> bool:
        """Whether the interval of the difference excludes 0."""
        return self.ci_low > 0 or self.ci_high < 0


def compare(
    results_a: EvalRun | Sequence[EvalResult],
    results_b: EvalRun | Sequence[EvalResult],
    metric: str,
    *,
    confidence: float = 0.95,
    resamples: int = 1000,
    seed: int = 0,
) -> Comparison:
    """Paired difference ``b - a`` of ``metric`` over the row ids both runs scored, with a bootstrap interval.

    Rows only one side has (or scored) are left out. Raises :class:`InvalidArgument` when no row is left.
    """
    if metric not in METRICS:
        raise InvalidArgument(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    a = {
        r.id: r.scores[metric]
        for r in (results_a.results if isinstance(results_a, EvalRun) else results_a)
        if metric in r.scores
    }
    b_rows = results_b.results if isinstance(results_b, EvalRun) else results_b
    pairs = [(a[r.id], r.scores[metric]) for r in b_rows if metric in r.scores and r.id in a]
    if not pairs:
        raise InvalidArgument(f"the two runs have no row in common with a {metric!r} score")
    va = np.array([p[0] for p in pairs])
    vb = np.array([p[1] for p in pairs])
    ci = bootstrap_ci(vb - va, confidence=confidence, resamples=resamples, seed=seed)
    assert ci is not None
    return Comparison(metric, len(pairs), float(va.mean()), float(vb.mean()), float((vb - va).mean()), ci[0], ci[1])
