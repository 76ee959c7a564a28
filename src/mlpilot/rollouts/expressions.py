"""Custom analysis expressions: a small, safe boolean language over both arms' aggregates (never ``eval``).

``candidate.error_rate <= baseline.error_rate + 0.01 and candidate.latency_p99 < 1.5 * baseline.latency_p99``:
numbers, ``baseline.X`` / ``candidate.X`` (:data:`ATTRIBUTES`), ``+ - * /``, comparisons, ``and``/``or``/``not``,
``abs``/``min``/``max``. Parsed with :mod:`ast` and walked node by node; anything else is refused when the rollout
starts.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from typing import Any

from mlpilot.errors import InvalidArgument

#: What ``baseline.X`` / ``candidate.X`` may name in a custom expression.
ATTRIBUTES = (
    "requests", "errors", "error_rate", "latency_mean", "latency_p50", "latency_p90", "latency_p95", "latency_p99",
    "accuracy", "mae", "mean_reward", "prediction_mean", "confidence_mean", "rows",
    # LLM apps (means per answered request; see rollouts.llm.LLM_METRICS)
    "groundedness", "citation_rate", "refusal_rate", "empty_rate", "top_score", "cost", "input_tokens",
    "output_tokens", "answer_tokens", "ttft_s", "tool_errors",
)  # fmt: skip
_ARMS = ("baseline", "candidate")
_FUNCTIONS: dict[str, tuple[Callable[..., Any], int, int]] = {
    "abs": (abs, 1, 1),
    "min": (min, 2, 16),
    "max": (max, 2, 16),
}
_ARITH: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
}  # fmt: skip
_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}  # fmt: skip
_MAX_EXPRESSION = 1000


class MissingValue(Exception):
    """A value the evidence cannot provide (accuracy without labels …) or a division by zero."""


def parse_expression(text: Any) -> ast.Expression:
    """Parse and check a custom expression: numbers, ``baseline.X``/``candidate.X`` (:data:`ATTRIBUTES`),
    ``+ - * /``, comparisons, ``and``/``or``/``not``, ``abs``/``min``/``max``; the result must be a boolean.

    Raises:
        InvalidArgument: not a string, too long, a syntax error, a forbidden construct or an unknown attribute.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidArgument(f"expression must be a non-empty string, got {text!r}")
    if len(text) > _MAX_EXPRESSION:
        raise InvalidArgument(f"expression is {len(text)} characters long; the limit is {_MAX_EXPRESSION}")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise InvalidArgument(f"expression {text!r} is not valid syntax: {exc.msg}") from exc
    if _kind_of(tree.body) != "bool":
        raise InvalidArgument(f"expression {text!r} must be a comparison (or comparisons joined by and/or/not)")
    return tree


def _need(node: ast.expr, kind: str) -> None:
    if _kind_of(node) != kind:
        want = "a number" if kind == "num" else "a comparison"
        raise InvalidArgument(f"{ast.unparse(node)!r} is used where {want} is expected")


def _kind_of(node: ast.expr) -> str:
    """``num`` or ``bool`` for an allowed node; InvalidArgument for anything else."""
    if isinstance(node, ast.Constant) and type(node.value) in (bool, int, float):
        return "bool" if isinstance(node.value, bool) else "num"
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in _ARMS:
        if node.attr not in ATTRIBUTES:
            raise InvalidArgument(f"unknown attribute {node.value.id}.{node.attr}; known: {list(ATTRIBUTES)}")
        return "num"
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITH:
        _need(node.left, "num")
        _need(node.right, "num")
        return "num"
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub, ast.UAdd)):
        kind = "bool" if isinstance(node.op, ast.Not) else "num"
        _need(node.operand, kind)
        return kind
    if isinstance(node, ast.BoolOp):
        for value in node.values:
            _need(value, "bool")
        return "bool"
    if isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
        for operand in (node.left, *node.comparators):
            _need(operand, "num")
        return "bool"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS:
        _, least, most = _FUNCTIONS[node.func.id]
        if node.keywords or not least <= len(node.args) <= most or any(isinstance(a, ast.Starred) for a in node.args):
            raise InvalidArgument(f"{ast.unparse(node)!r}: {node.func.id} takes {least} to {most} plain arguments")
        for arg in node.args:
            _need(arg, "num")
        return "num"
    raise InvalidArgument(
        f"{ast.unparse(node)!r} ({type(node).__name__}) is not allowed in an expression; use numbers, "
        "baseline.X / candidate.X, + - * /, comparisons, and/or/not, abs/min/max"
    )


def evaluate(tree: ast.Expression, values: Mapping[str, Mapping[str, float | None]]) -> bool:
    """Evaluate a :func:`parse_expression` tree on per-arm values (``{"baseline": {...}, "candidate": {...}}``).

    Raises:
        MissingValue: an attribute whose value is None, or a division by zero.
    """
    return bool(_eval(tree.body, values))


def _eval(node: ast.expr, values: Mapping[str, Mapping[str, float | None]]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Attribute):
        assert isinstance(node.value, ast.Name)
        got = values[node.value.id].get(node.attr)
        if got is None:
            raise MissingValue(f"{node.value.id}.{node.attr}, which this evidence does not provide")
        return got
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left, values), _eval(node.right, values)
        if isinstance(node.op, ast.Div) and right == 0:
            raise MissingValue(f"a non-zero divisor in {ast.unparse(node)!r}")
        return _ARITH[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp):
        operand = _eval(node.operand, values)
        return not operand if isinstance(node.op, ast.Not) else -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BoolOp):
        parts = (bool(_eval(v, values)) for v in node.values)  # lazy: short-circuits like Python
        return all(parts) if isinstance(node.op, ast.And) else any(parts)
    if isinstance(node, ast.Compare):
        left = _eval(node.left, values)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _eval(comparator, values)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    return _FUNCTIONS[node.func.id][0](*(_eval(a, values) for a in node.args))
