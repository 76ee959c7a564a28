"""The incident scenario suite: detection, RCA (engine vs baselines), healing, on the simulator.

    .venv/bin/python bench/incidents.py                  # full suite: 18 faults x 3 severities x 5 seeds + 60 controls
    .venv/bin/python bench/incidents.py --seeds 1 --control-seeds 2 --only null_spike,traffic_surge
    .venv/bin/python bench/incidents.py --json bench/results/incidents.json

Prints the scorecard, a per-scenario table, and the failing runs (wrong top hypothesis, missed detection, harmful
action) so the engine can be improved against the suite, not against one run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

from mlpilot.sim.scenarios import by_name
from mlpilot.sim.scorecard import SERVING, jobs, no_action_right, per_scenario, run_suite, score


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--control-seeds", type=int, default=12)
    p.add_argument("--only", default="", help="comma-separated scenario names")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--no-baselines", action="store_true")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--failures", action="store_true", help="list every failing run")
    a = p.parse_args()
    warnings.simplefilter("ignore")
    only = [x for x in a.only.split(",") if x]
    js = jobs(range(a.seeds), range(a.control_seeds), only=only)
    if a.no_baselines:
        js = [type(j)(j.scenario, j.severity, j.seed, False) for j in js]
    t0 = time.perf_counter()
    results = run_suite(js, a.workers)
    wall = time.perf_counter() - t0
    card = score(results)
    card["wall_seconds"] = round(wall, 1)
    card["workers"] = a.workers
    print(json.dumps(card, indent=2, default=str))
    heads = ("runs", "det", "page", "ac@1", "ac@3", "baro", "acts", "mit")
    print(f"\n{'scenario':34s} " + " ".join(f"{h:>4s}" if h in ("runs", "acts", "mit") else f"{h:>5s}" for h in heads))
    for row in per_scenario(results):
        f = lambda v: "  -  " if v is None else f"{v:5.2f}"  # noqa: E731
        print(
            f"{row['scenario']:34s} {row['runs']:4d} {f(row['detected'])} {f(row['paged'])} {f(row['ac@1'])} "
            f"{f(row['ac@3'])} {f(row['baro@1'])} {row['actions']:4d} {row['mitigated']:4d}"
        )
    if a.failures:
        print("\nfailing runs:")
        for r in results:
            top = r.ranking[:3]
            bad_rca = not r.control and r.detected and (not top or top[0] != r.truth)
            missed = not r.control and not r.detected and r.severity != "low"
            harmful = no_action_right(by_name(r.scenario)) and any(a.action.kind in SERVING for a in r.actions)
            if bad_rca or missed or harmful or (r.control and r.paged):
                verdict = r.diagnosis_dict["verdict"] if r.diagnosis_dict else None
                acts = [(a.minute - r.fault_minute, a.action.kind, a.helped) for a in r.actions]
                print(
                    f"  {r.scenario}/{r.severity}/{r.seed}: truth={r.truth} top={top} verdict={verdict} "
                    f"detected={r.detected_minute and r.detected_minute - r.fault_minute} paged={r.paged} acts={acts}"
                )
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"scorecard": card, "scenarios": per_scenario(results)}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
