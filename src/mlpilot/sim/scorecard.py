"""The incident benchmark: run the scenario suite and score it.

Metrics (per run, then aggregated):

* **detection** — a fault run is detected when an alert fires from the fault's minute on; controls *page* when a
  page-severity alert fires;
* **time to detect** — minutes from the fault to the first alert;
* **AC@k** — the truth is among the first k components the engine ranked, over detected fault runs (RCA runs on
  incidents); **Avg@5** = mean of AC@1..AC@5; **grounded AC@1** — AC@1 where the top hypothesis also cites evidence
  that points at the truth component itself;
* **correct abstention** — on controls and on fault runs whose right answer is "change nothing", the engine's
  verdict is ``benign``/``inconclusive`` or its remediation changes nothing that serves;
* **time to mitigate** — minutes from detection (the incident's opening) to the remediation that verification then
  confirmed (auto-mitigable scenarios); **fault to mitigation** — the same from the fault's first minute;
* **share of traffic affected** — rows the fault touched from its start to the end of the run;
* **harmful actions** — actions that changed what serves on a control or on a "no action" scenario.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from mlpilot.sim.runner import RunResult, run_one
from mlpilot.sim.scenarios import CONTROLS, FAULTS, SEVERITIES, Scenario, by_name

SERVING = frozenset(
    {
        "rollback_alias",
        "rollback_release",
        "revert_config",
        "abort_rollout",
        "shift_traffic",
        "disable_variant",
        "restart_runtime",
        "scale",
        "pin_backend",
        "failover_backend",
        "switch_index_alias",
        "quarantine_inputs",
    }
)


@dataclass(frozen=True)
class Job:
    scenario: str
    severity: str
    seed: int
    baselines: bool = True


def jobs(
    seeds: Sequence[int] = range(5), control_seeds: Sequence[int] = range(12), *, only: Iterable[str] = ()
) -> list[Job]:
    wanted = set(only)
    out = [
        Job(s.name, sev, seed) for s in FAULTS if not wanted or s.name in wanted for sev in SEVERITIES for seed in seeds
    ]
    out += [Job(c.name, "medium", seed) for c in CONTROLS if not wanted or c.name in wanted for seed in control_seeds]
    return out


def _run(job: Job) -> RunResult:
    r = run_one(by_name(job.scenario), job.severity, job.seed, job.baselines)
    r.diagnosis_dict = r.diagnosis.to_dict() if r.diagnosis else None
    r.diagnosis = None  # evidence frames stay in the worker
    return r


def run_suite(all_jobs: Sequence[Job], workers: int = 2) -> list[RunResult]:
    if workers <= 1:
        return [_run(j) for j in all_jobs]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(_run, all_jobs, chunksize=2))


def _ac(ranking: Sequence[str], truth: str, k: int) -> float:
    return 1.0 if truth in ranking[:k] else 0.0


def _grounded(r: RunResult) -> bool:
    d = r.diagnosis_dict
    if not d or not d["hypotheses"]:
        return False
    top = d["hypotheses"][0]
    if top["component"] != r.truth:
        return False
    cited = {e["ref"]: e for e in d["evidence"]}
    return any(cited.get(ref, {}).get("component", "").split("@")[0] == r.truth for ref in top["evidence"])


def no_action_right(s: Scenario) -> bool:
    return s.control or not s.right


def score(results: Sequence[RunResult]) -> dict[str, Any]:
    faults = [r for r in results if not r.control]
    controls = [r for r in results if r.control]
    detected = [r for r in faults if r.detected]
    out: dict[str, Any] = {"runs": len(results), "fault_runs": len(faults), "control_runs": len(controls)}
    for sev in SEVERITIES:
        rs = [r for r in faults if r.severity == sev]
        out[f"detection_{sev}"] = sum(r.detected for r in rs) / max(len(rs), 1)
    out["controls_paged"] = sum(r.paged for r in controls) / max(len(controls), 1)
    ttd = [r.detected_minute - r.fault_minute for r in detected if r.detected_minute is not None]
    out["median_time_to_detect_min"] = statistics.median(ttd) if ttd else None

    def acs(ranking_of: Any) -> dict[str, float]:
        if not detected:
            return {}
        res = {f"ac@{k}": sum(_ac(ranking_of(r), r.truth, k) for r in detected) / len(detected) for k in range(1, 6)}
        res["avg@5"] = sum(res[f"ac@{k}"] for k in range(1, 6)) / 5
        return res

    out["engine"] = acs(lambda r: r.ranking)
    out["engine"]["grounded_ac@1"] = sum(_grounded(r) for r in detected) / max(len(detected), 1)
    names = sorted({n for r in detected for n in r.baselines})
    out["baselines"] = {n: acs(lambda r, n=n: r.baselines.get(n, [])) for n in names}
    # abstention and harm
    no_action = [r for r in results if no_action_right(by_name(r.scenario))]
    harmful = [r for r in no_action if any(a.action.kind in SERVING for a in r.actions)]
    out["harmful_actions"] = sum(sum(a.action.kind in SERVING for a in r.actions) for r in harmful)
    out["harmful_runs"] = len(harmful)
    abst = [
        r
        for r in no_action
        if not any(a.action.kind in SERVING for a in r.actions)
        and (
            r.diagnosis_dict is None
            or r.diagnosis_dict["verdict"] in ("benign", "inconclusive")
            or not _suggests_serving_change(r)
        )
    ]
    out["correct_abstention"] = len(abst) / max(len(no_action), 1)
    auto = [r for r in faults if by_name(r.scenario).auto]
    ttm = [
        r.mitigated_minute - r.detected_minute
        for r in auto
        if r.mitigated_minute is not None and r.detected_minute is not None
    ]
    out["auto_runs"] = len(auto)
    out["auto_mitigated"] = len(ttm) / max(len(auto), 1)
    out["median_time_to_mitigate_min"] = statistics.median(ttm) if ttm else None
    ftm = [r.mitigated_minute - r.fault_minute for r in auto if r.mitigated_minute is not None]
    out["median_fault_to_mitigation_min"] = statistics.median(ftm) if ftm else None
    wrong = [a for r in faults if not no_action_right(by_name(r.scenario)) for a in r.actions if a.reverted]
    out["reverted_actions"] = len(wrong)
    out["traffic_affected"] = sum(r.affected for r in faults) / max(sum(r.total_after for r in faults), 1)
    out["seconds_per_run"] = statistics.mean(r.seconds for r in results) if results else 0.0
    return out


def _suggests_serving_change(r: RunResult) -> bool:
    d = r.diagnosis_dict
    top = d["hypotheses"][0] if d and d["hypotheses"] else None
    return bool(top and top["suggestion"] and top["suggestion"]["action"] in SERVING)


def per_scenario(results: Sequence[RunResult]) -> list[dict[str, Any]]:
    rows = []
    for s in [*FAULTS, *CONTROLS]:
        rs = [r for r in results if r.scenario == s.name]
        if not rs:
            continue
        det = [r for r in rs if r.detected]
        rows.append(
            {
                "scenario": s.name,
                "runs": len(rs),
                "detected": sum(r.detected for r in rs) / len(rs),
                "paged": sum(r.paged for r in rs) / len(rs),
                "ac@1": (sum(_ac(r.ranking, r.truth, 1) for r in det) / len(det)) if det and not s.control else None,
                "ac@3": (sum(_ac(r.ranking, r.truth, 3) for r in det) / len(det)) if det and not s.control else None,
                "baro@1": (sum(_ac(r.baselines.get("baro", []), r.truth, 1) for r in det) / len(det))
                if det and not s.control
                else None,
                "actions": sum(len(r.actions) for r in rs),
                "mitigated": sum(r.mitigated_minute is not None for r in rs),
            }
        )
    return rows
