"""RCA agent mode: an LLM gets the evidence collectors as tools and writes a narrative grounded in their evidence.

The deterministic engine (:func:`mlpilot.incidents.rca.diagnose`) always runs first and is never changed by the
agent; the agent only adds an explanation and, possibly, hypotheses the engine did not rank. Grounding is enforced
in code, not asked for: an agent hypothesis is kept only when its cause is a key of
:data:`~mlpilot.incidents.evidence.CAUSES`, its component is ``kind:name`` with the kind that cause points at, and
every evidence ref it cites was returned by a tool or is in the engine's evidence; confidences are clamped to
[0, 0.95]. Everything dropped is reported in :attr:`AgentReport.rejected` with why, as are refs the narrative cites
that no evidence has. :func:`merge` appends the kept hypotheses after the engine's without touching the verdict.
The model is any OpenAI-compatible chat endpoint behind the ``openai`` client (sync). A backend that refuses tools
(the offline SmolLM2 app) is asked again without them; the user message lists the engine's evidence to cite.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from mlpilot.errors import InvalidArgument
from mlpilot.incidents.collectors import COLLECTORS, changepoint
from mlpilot.incidents.evidence import CAUSES, Case, Diagnosis, Evidence, Hypothesis
from mlpilot.llm.tools import ToolSpec, check_arguments, to_openai_tool

__all__ = ["MAX_CONFIDENCE", "MAX_RESULT_CHARS", "AgentReport", "merge", "openai_tools", "run_agent", "tools"]

MAX_RESULT_CHARS = 4000  # a tool result the model reads (JSON text), at most
MAX_CONFIDENCE = 0.95  # an agent hypothesis never claims certainty
INDEX_LINES = 30  # evidence listed in the user message (strongest first)
_REF = re.compile(r"^[A-Za-z][A-Za-z_]*:[^\s\[\]]+$")
_COMPONENT = re.compile(r"^([a-z][a-z_]*):(\S+)$")
_BRACKETS = re.compile(r"\[([^\[\]\n]{1,200})\]")

_PROMPT = """You are an SRE for machine-learning systems, explaining one incident of a model deployment.
Tools return evidence items, each with a ref such as variant:canary, drift:amount or change:event:7. Use them to
check the deterministic engine's diagnosis and to look for what it missed. Every claim you make must cite the refs
of the evidence that supports it in square brackets, like [variant:canary]; cite only refs you were given.
When you are done, reply without tool calls with one JSON object and nothing else:
{"narrative": "what happened and why, citing [refs]", "hypotheses": [{"cause": "...", "component": "kind:name",
"confidence": 0.0, "evidence": ["ref", "..."], "rationale": "..."}]}
Causes and the component kind each points at: """
SYSTEM_PROMPT = _PROMPT + ", ".join(f"{c} ({k})" for c, k in CAUSES.items()) + "."


@dataclass(frozen=True)
class AgentReport:
    """What the agent said and did. ``hypotheses`` are the grounded ones (``source="agent"``); ``rejected`` holds
    ``{"hypothesis": …, "why": …}`` for dropped hypotheses and ``{"narrative_ref": ref}`` for refs the narrative
    cites that no evidence has; ``tool_calls`` one ``{"name", "arguments", "evidence_refs", "error"}`` per call;
    ``transcript`` the chat messages exchanged (JSON); ``stopped``: ``answered``, ``step_budget`` or ``error: …``.
    ``evidence``: what the tools returned beyond the engine's evidence (so merged hypotheses resolve their refs);
    ``notes``: how the run deviated from the plan (e.g. the backend refused tools)."""

    narrative: str
    hypotheses: tuple[Hypothesis, ...]
    rejected: tuple[dict[str, Any], ...]
    steps: int
    tool_calls: tuple[dict[str, Any], ...]
    transcript: tuple[dict[str, Any], ...]
    stopped: str
    evidence: tuple[Evidence, ...] = ()
    notes: tuple[str, ...] = ()


# ------------------------------------------------------------------------------------------------------ tools


def _schema(properties: dict[str, Any], required: Sequence[str] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


def _first_paragraph(fn: Callable[..., Any]) -> str:
    return " ".join((fn.__doc__ or "").strip().split("\n\n")[0].split())[:400]


def tools(case: Case) -> list[dict[str, Any]]:
    """The agent's tools in MCP's ``Tool`` shape (``name``, ``description``, ``inputSchema``): one per collector of
    :data:`~mlpilot.incidents.collectors.COLLECTORS` plus ``get_symptom``, ``list_changes``, ``get_evidence`` and
    ``engine_diagnosis``."""
    start = case.frame["ts"].min() if "ts" in case.frame and len(case.frame) else None
    window = f" between {start.isoformat()} and {case.now.isoformat()}" if start is not None else ""
    # no "format": "date-time" — with rfc3339-validator installed jsonschema would refuse a naive time, which the
    # agent reads in the case's time zone (models often omit the offset); _onset() parses and explains instead
    onset = {"type": "string", "description": f"ISO time the symptom started{window} (e.g. 2026-03-02T12:40:00Z); "
             "default: the engine's onset"}  # fmt: skip
    ref = {"type": "string", "minLength": 1, "description": "an evidence ref, e.g. variant:canary"}
    own = [
        ("get_symptom", f"What is wrong with deployment {case.deployment}: the alerted symptom and its change point "
         "(when it started, how abrupt, the per-minute series).", _schema({})),
        ("list_changes", "Every recorded change of the deployment (releases, config, rollouts, alias moves).",
         _schema({})),
        ("get_evidence", "One evidence item, in full, by its ref.", _schema({"ref": ref}, ["ref"])),
        ("engine_diagnosis", "The deterministic RCA engine's verdict and ranked hypotheses, with their evidence "
         "refs.", _schema({})),
    ]  # fmt: skip
    own += [
        (n, _first_paragraph(fn) + " Returns evidence items.", _schema({"onset": onset}))
        for n, fn in COLLECTORS.items()
    ]
    return [{"name": n, "description": d, "inputSchema": schema} for n, d, schema in own]


def openai_tools(case: Case) -> list[dict[str, Any]]:
    """:func:`tools` as OpenAI function tools: ``{"type": "function", "function": {name, description, parameters}}``."""
    return [to_openai_tool(ToolSpec.from_dict(t, source=f"tool {t['name']}")) for t in tools(case)]


def _fit(payload: dict[str, Any], key: str, items: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """``payload`` with ``items`` under ``key`` as JSON of at most :data:`MAX_RESULT_CHARS`: long values of ``data``
    go first, then ``data`` itself, then the weakest items (``omitted`` says how many). Returns the text and the
    items it holds."""

    def dump(its: list[dict[str, Any]], omitted: int = 0) -> str:
        return json.dumps({**payload, key: its, **({"omitted": omitted} if omitted else {})}, default=str)

    text = dump(items)
    if len(text) <= MAX_RESULT_CHARS:
        return text, items
    trimmed = [
        {**it, "data": {k: v for k, v in it["data"].items() if len(json.dumps(v, default=str)) <= 80}}
        if isinstance(it.get("data"), dict)
        else it
        for it in items
    ]
    text = dump(trimmed)
    if len(text) <= MAX_RESULT_CHARS:
        return text, trimmed
    kept = [{k: v for k, v in it.items() if k != "data"} for it in items]
    kept.sort(key=lambda it: -float(it.get("effect") or it.get("confidence") or 0.0))
    while kept and len(text := dump(kept, len(items) - len(kept))) > MAX_RESULT_CHARS:
        kept.pop()
    return (text if kept else dump([], len(items))), kept


class _Tools:
    """Runs tool calls for one agent run and remembers every evidence item the model was shown."""

    def __init__(self, case: Case, diagnosis: Diagnosis) -> None:
        self.case, self.diagnosis = case, diagnosis
        self.onset = diagnosis.onset or case.symptom.onset
        self.specs = {t["name"]: ToolSpec.from_dict(t) for t in tools(case)}
        self.engine = {e.ref: e for e in diagnosis.evidence}
        self.returned: dict[str, Evidence] = {}

    def known(self) -> set[str]:
        return set(self.engine) | set(self.returned)

    def call(self, name: str, raw_arguments: Any) -> tuple[str, dict[str, Any]]:
        """The tool message's content and the call's record; never raises (errors go back to the model)."""
        record: dict[str, Any] = {"name": name, "arguments": raw_arguments, "evidence_refs": [], "error": None}
        try:
            record["arguments"] = args = self._arguments(name, raw_arguments)
            text, record["evidence_refs"] = self._run(name, args)
            return text, record
        except Exception as exc:  # a tool failure is the model's to read, not the caller's to handle
            message = exc.message if isinstance(exc, InvalidArgument) else f"{type(exc).__name__}: {exc}"
            record["error"] = message
            return json.dumps({"error": message}), record

    def _arguments(self, name: str, raw: Any) -> dict[str, Any]:
        if name not in self.specs:
            raise InvalidArgument(f"unknown tool {name!r}; the tools are {sorted(self.specs)}")
        try:
            args = json.loads(raw) if isinstance(raw, str) and raw.strip() else raw or {}
        except json.JSONDecodeError as exc:
            raise InvalidArgument(f"tool {name!r}: arguments are not valid JSON ({exc.msg})") from None
        if not isinstance(args, dict):
            raise InvalidArgument(f"tool {name!r}: arguments must be a JSON object")
        check_arguments(self.specs[name], args)
        return args

    def _when(self, value: str | None) -> datetime:
        if value is None:
            return self.onset
        try:
            at = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value)
        except ValueError:
            raise InvalidArgument(f"onset {value!r} is not an ISO date-time (e.g. 2026-03-02T12:40:00Z)") from None
        if (at.tzinfo is None) != (self.onset.tzinfo is None):  # read in the case's convention
            at = at.replace(tzinfo=self.onset.tzinfo)
        start = self.case.frame["ts"].min() if len(self.case.frame) else None
        if (start is not None and at < start) or at > self.case.now:
            raise InvalidArgument(f"onset {value!r} is outside the incident's data ({start} to {self.case.now})")
        return at

    def _evidence(self, payload: dict[str, Any], found: Sequence[Evidence]) -> tuple[str, list[str]]:
        by_ref = {e.ref: e for e in found}
        text, shown = _fit(payload, "evidence", [e.to_dict() for e in found])
        refs = [str(it["ref"]) for it in shown]
        for ref in refs:
            self.returned[ref] = by_ref[ref]
        return text, refs

    def _run(self, name: str, args: dict[str, Any]) -> tuple[str, list[str]]:
        case, d = self.case, self.diagnosis
        if name == "get_symptom":
            s = case.symptom
            symptom = {"kind": s.kind, "metric": s.metric, "severity": s.severity, "alerted_onset": s.onset.isoformat()}
            payload = {"deployment": case.deployment, "symptom": symptom, "engine_onset": self.onset.isoformat()}
            return self._evidence(payload, changepoint(case))
        if name == "list_changes":
            data = [(c, {"change_kind": c.kind, **dict(c.data)}) for c in sorted(case.changes, key=lambda c: c.ts)]
            found = [Evidence(f"change:{c.ref}", "change", c.component, c.summary, 1.0, 0.8, c.ts, d) for c, d in data]
            return self._evidence({"deployment": case.deployment}, found)
        if name == "get_evidence":
            ref = str(args["ref"]).strip().strip("[]")
            e = self.returned.get(ref) or self.engine.get(ref)
            if e is None:
                raise InvalidArgument(f"unknown evidence ref {ref!r}; known refs: {sorted(self.known())[:40]}")
            return self._evidence({}, [e])
        if name == "engine_diagnosis":
            payload = {"verdict": d.verdict, "summary": d.summary, "onset": self.onset.isoformat()}
            text, shown = _fit(payload, "hypotheses", [h.to_dict() for h in d.hypotheses])
            return text, list(dict.fromkeys(r for h in shown for r in h["evidence"]))
        onset = self._when(args.get("onset"))
        return self._evidence({"onset": onset.isoformat()}, COLLECTORS[name](case, onset))


# ------------------------------------------------------------------------------------------------------ the loop


def _user_message(case: Case, d: Diagnosis) -> str:
    s = case.symptom
    variants = sorted(map(str, case.frame["variant"].dropna().unique())) if "variant" in case.frame else []
    lines = [
        f"Incident on deployment {case.deployment}: symptom {s.kind} ({s.severity}), metric: {s.metric or s.kind}",
        f"Alerted onset {s.onset.isoformat()}; engine onset {(d.onset or s.onset).isoformat()}; now "
        f"{case.now.isoformat()}; {len(case.frame)} requests; variants {variants or 'unknown'}; "
        f"{len(case.changes)} recorded changes.",
        "",
        f"Deterministic diagnosis: {d.verdict}: {d.summary}",
    ]
    for i, h in enumerate(d.hypotheses[:5]):
        lines.append(f"{i + 1}. {h.cause} on {h.component} ({h.confidence:.2f}), evidence "
                     + " ".join(f"[{r}]" for r in h.evidence))  # fmt: skip
    lines += ["", "Evidence (ref: summary), strongest first:"]
    for e in sorted(d.evidence, key=lambda e: -e.effect)[:INDEX_LINES]:
        lines.append(f"[{e.ref}] {e.summary}")
    lines += ["", "Check the diagnosis with the tools, then answer with the JSON object."]
    return "\n".join(lines)


def _as_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, Mapping):
        return dict(obj)
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        return dict(dump())
    raise TypeError(f"unexpected response of type {type(obj).__name__}")


def _refuses_tools(exc: Exception) -> bool:
    return getattr(exc, "status_code", None) == 400 and "tool" in str(exc).lower()


def run_agent(
    case: Case, diagnosis: Diagnosis, client: Any, model: str, *, max_steps: int = 6, temperature: float = 0.0
) -> AgentReport:
    """Let ``model`` (through ``client``, an ``openai.OpenAI``) investigate ``case`` with the collectors as tools,
    starting from the engine's ``diagnosis``; at most ``max_steps`` model responses. Never raises for what the model
    or the endpoint does: errors end the run with ``stopped="error: …"``."""
    runner = _Tools(case, diagnosis)
    offered: list[dict[str, Any]] | None = openai_tools(case)
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": _user_message(case, diagnosis)},
    ]
    calls: list[dict[str, Any]] = []
    notes: list[str] = []
    steps, stopped, final = 0, "step_budget", ""
    while steps < max_steps:
        kwargs: dict[str, Any] = {"model": model, "messages": messages, "temperature": temperature}
        if offered is not None:
            kwargs["tools"] = offered
        try:
            response = _as_dict(client.chat.completions.create(**kwargs))
            message = _as_dict(response["choices"][0]["message"])
        except Exception as exc:
            if offered is not None and _refuses_tools(exc):
                offered = None
                notes.append(f"the backend refused tools; asked again without them ({str(exc)[:200]})")
                continue
            stopped = f"error: {type(exc).__name__}: {str(exc)[:300]}"
            break
        steps += 1
        content = message.get("content")
        text = content if isinstance(content, str) else ""
        tool_calls = [_as_dict(c) for c in message.get("tool_calls") or []]
        assistant: dict[str, Any] = {"role": "assistant", "content": content if isinstance(content, str) else None}
        if not tool_calls:
            messages.append(assistant)
            stopped, final = "answered", text
            break
        assistant["tool_calls"] = []
        results = []
        for i, call in enumerate(tool_calls):
            fn = _as_dict(call.get("function") or {})
            call_id = str(call.get("id") or f"call_{steps}_{i}")
            name, arguments = str(fn.get("name") or ""), fn.get("arguments")
            assistant["tool_calls"].append(
                {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments or "{}"}}
            )
            result, record = runner.call(name, arguments)
            calls.append(record)
            results.append({"role": "tool", "tool_call_id": call_id, "content": result})
        messages += [assistant, *results]
        final = text
    narrative, hypotheses, rejected = _ground(final, runner.known(), parse=stopped == "answered")
    extra = tuple(e for ref, e in sorted(runner.returned.items()) if ref not in runner.engine)
    transcript = tuple(json.loads(json.dumps(messages, default=str)))
    return AgentReport(narrative, hypotheses, rejected, steps, tuple(calls), transcript, stopped, extra, tuple(notes))


# ------------------------------------------------------------------------------------------------------ grounding


def _answer(text: str) -> tuple[str, Any]:
    """The narrative and the raw ``hypotheses`` of the first JSON object in ``text`` that has either key; without
    one, the whole text is the narrative and there are no hypotheses."""
    decoder = json.JSONDecoder()
    for m in re.finditer(r"\{", text):
        try:
            obj, end = decoder.raw_decode(text, m.start())
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and ("narrative" in obj or "hypotheses" in obj):
            narrative = obj.get("narrative")
            if not isinstance(narrative, str):
                narrative = (text[: m.start()] + text[end:]).strip()
            return narrative, obj.get("hypotheses") or []
    return text.strip(), []


def _ref(value: Any) -> str:
    return str(value).strip().strip("[]").strip() if isinstance(value, str) else ""


def _hypothesis(item: Any, known: set[str]) -> tuple[Hypothesis | None, str]:
    """A grounded agent hypothesis from one raw item, or ``None`` and why it was dropped."""
    if not isinstance(item, dict):
        return None, "not an object"
    cause, component = item.get("cause"), item.get("component")
    if not isinstance(cause, str) or cause not in CAUSES:
        return None, f"unknown cause {cause!r}"
    if not isinstance(component, str) or (m := _COMPONENT.match(component)) is None:
        return None, f"bad component {component!r}: expected kind:name"
    if m.group(1) != CAUSES[cause]:
        return None, f"bad component {component!r}: {cause} points at a {CAUSES[cause]}:… component"
    cited = item.get("evidence")
    refs = [_ref(r) for r in cited] if isinstance(cited, list) else []
    if not refs:
        return None, "no evidence ref"
    unknown = [r for r in refs if r not in known]
    if unknown:
        return None, f"unknown evidence refs {unknown}"
    try:
        confidence = float(item.get("confidence", 0.0))
    except (TypeError, ValueError):
        return None, f"confidence {item.get('confidence')!r} is not a number"
    confidence = min(max(confidence, 0.0), MAX_CONFIDENCE) if confidence == confidence else 0.0
    rationale = str(item.get("rationale") or "")[:1000]
    return Hypothesis(cause, component, confidence, tuple(dict.fromkeys(refs)), rationale, None, "agent"), ""


def _ground(
    text: str, known: set[str], *, parse: bool
) -> tuple[str, tuple[Hypothesis, ...], tuple[dict[str, Any], ...]]:
    narrative, raw = _answer(text) if parse else (text.strip(), [])
    rejected: list[dict[str, Any]] = []
    kept: list[Hypothesis] = []
    if not isinstance(raw, list):
        rejected.append({"hypothesis": raw, "why": "hypotheses must be a list"})
        raw = []
    for item in raw:
        h, why = _hypothesis(item, known)
        if h is not None and any(k.component == h.component for k in kept):
            why = f"another hypothesis already names {h.component}"
        if h is None or why:
            rejected.append({"hypothesis": json.loads(json.dumps(item, default=str)), "why": why})
        else:
            kept.append(h)
    parts = (p.strip() for group in _BRACKETS.findall(narrative) for p in re.split(r"[,;]", group))
    rejected += [{"narrative_ref": r} for r in dict.fromkeys(parts) if _REF.match(r) and r not in known]
    return narrative, tuple(kept), tuple(rejected)


def merge(diagnosis: Diagnosis, report: AgentReport) -> Diagnosis:
    """The engine's diagnosis with the agent's hypotheses on components it does not name appended after its own,
    and the evidence they cite; the verdict, summary and order of the engine's hypotheses are unchanged."""
    named = {h.component for h in diagnosis.hypotheses}
    added = tuple(h for h in report.hypotheses if h.component not in named)
    have = {e.ref for e in diagnosis.evidence}
    cited = {r for h in added for r in h.evidence}
    evidence = tuple(e for e in report.evidence if e.ref in cited and e.ref not in have)
    return replace(diagnosis, hypotheses=(*diagnosis.hypotheses, *added), evidence=(*diagnosis.evidence, *evidence))
