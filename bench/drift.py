"""Drift benchmark: mlpilot's per-feature drift report against Evidently's DataDriftPreset, side by side, in one run.

Run from the repository root with mlpilot's virtualenv::

    .venv/bin/python bench/drift.py              # 1,000,000 rows x (20 numeric + 5 categorical), both windows
    .venv/bin/python bench/drift.py --quick      # 100,000 rows
    .venv/bin/python bench/drift.py --rows 300000 --repeat 3

The script writes a deterministic synthetic reference and current window once to Parquet (a temp dir), then runs
each measurement in its own subprocess, one after the other, so each has its own peak RSS:

- ``mlpilot``: ``TableDrift`` fit on the reference + predict on the current window, configured with the tests
  Evidently's preset picks for more than 1,000 rows (normed Wasserstein for numeric columns, Jensen-Shannon
  distance for categorical ones, threshold 0.1 each, no multiple-testing correction);
- ``mlpilot-scipy``: the hypothesis-test path (KS + chi-square, Holm), then the same p-values computed with
  ``scipy.stats.ks_2samp`` / ``chi2_contingency`` (also timed) and checked to agree to 1e-9;
- ``evidently``: ``Report([DataDriftPreset()])`` in its own virtualenv (``bench/.venvs/evidently``, created on
  first use with the pinned version below).

Only the report computation is timed (Parquet loading, imports and Evidently's ``Dataset.from_pandas`` are reported
separately). Exit status 1 when a per-feature verdict differs, the speed-up is below ``--min-ratio``, a p-value
differs from scipy's or Evidently picked other tests than expected. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
VENVS = BENCH / ".venvs"
RESULTS = BENCH / "results"
MLPILOT_PYTHON = REPO / ".venv" / "bin" / "python"

EVIDENTLY_VERSION = "0.7.23"
# evidently 0.7.23 imports pandas.core.dtypes.common.infer_dtype_from_object, which pandas 3 removed.
EVIDENTLY_REQUIREMENTS = [f"evidently=={EVIDENTLY_VERSION}", "pandas>=2.2,<3", "pyarrow"]
EVIDENTLY_METHODS = {"numeric": "Wasserstein distance (normed)", "categorical": "Jensen-Shannon distance"}
THRESHOLD = 0.1  # the default threshold of both of Evidently's distance tests
SEED = 20240601
P_VALUE_TOLERANCE = 1e-9

# --------------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Feature:
    name: str
    kind: str  # numeric | categorical
    expect: str  # what the injected change is designed to give: drift | stable | borderline-drift | ...
    change: str  # human description of reference -> current


def _zipf(k: int) -> list[float]:
    weights = [1.0 / (i + 1) for i in range(k)]
    total = sum(weights)
    return [w / total for w in weights]


def _tilt(k: int, amount: float) -> list[float]:
    weights = [1.0 + amount * (-1.0 + 2.0 * i / (k - 1)) for i in range(k)]
    total = sum(weights)
    return [w / total for w in weights]


# name -> (design, reference distribution, current distribution). A distribution is a numpy Generator method with
# its parameters (plus two composites below); "same" draws the current window from the reference distribution.
Dist = tuple[Any, ...]
NUMERIC: dict[str, tuple[str, Dist, Dist | str]] = {
    "num_00": ("drift", ("normal", 0, 1), ("normal", 0.5, 1)),  # mean +0.5 sd
    "num_01": ("drift", ("normal", 0, 1), ("normal", 0, 1.5)),  # sd x1.5
    "num_02": ("drift", ("lognormal", 0, 0.5), ("lognormal", 0.25, 0.5)),
    "num_03": ("drift", ("exponential", 1), ("exponential", 1.3)),
    "num_04": ("borderline-drift", ("normal", 10, 2), ("normal", 10.3, 2)),  # +0.15 sd
    "num_05": ("borderline-drift", ("normal", 0, 1), ("normal", 0.12, 1)),  # +0.12 sd
    "num_06": ("borderline-stable", ("normal", 0, 1), ("normal", 0.08, 1)),  # +0.08 sd
    "num_07": ("borderline-stable", ("uniform", 0, 1), ("uniform", 0.02, 1.02)),  # +0.07 sd
    "num_08": ("stable", ("gamma", 2, 1), ("gamma", 2, 1.03)),
    "num_09": ("stable", ("normal", 0, 1), "same"),
    "num_10": ("stable", ("uniform", -5, 5), "same"),
    "num_11": ("stable", ("poisson", 30), "same"),  # int64
    "num_12": ("stable", ("standard_t", 5), "same"),
    "num_13": ("stable", ("beta", 2, 5), "same"),
    "num_14": ("stable", ("lognormal", 3, 1), "same"),
    "num_15": ("stable", ("exponential", 0.5), "same"),
    "num_16": ("stable", ("gamma", 0.5, 2), "same"),
    "num_17": ("stable", ("normal_rounded", 100, 15), "same"),  # rounded to 0.1: many ties
    "num_18": ("stable", ("laplace", 0, 1), "same"),
    "num_19": ("stable", ("mixture", 0.3, 4.0), "same"),  # 0.7 normal(0,1) + 0.3 normal(4,1)
}


def _sample(rng: Any, dist: Dist, n: int) -> Any:
    method, *params = dist
    if method == "normal_rounded":
        return rng.normal(*params, n).round(1)
    if method == "mixture":
        share, shift = params
        return rng.normal(0, 1, n) + shift * (rng.random(n) < share)
    return getattr(rng, method)(*params, n)


def _describe(dist: Dist) -> str:
    return f"{dist[0]}({','.join(map(str, dist[1:]))})"


def _categorical_specs() -> dict[str, tuple[str, str, list[str], list[float], list[str], list[float]]]:
    """name -> (expectation, description, reference levels, reference p, current levels, current p)."""
    l4 = [f"c0_{c}" for c in ("red", "green", "blue", "black")]
    l10 = [f"c1_{i:02d}" for i in range(10)]
    l20 = [f"c2_{i:02d}" for i in range(20)]
    new = [f"c2_new_{i}" for i in range(3)]
    l100 = [f"c3_{i:03d}" for i in range(100)]
    yes_no = ["yes", "no"]
    return {
        "cat_0": ("drift", "4 levels, shares reversed", l4, [0.4, 0.3, 0.2, 0.1], l4, [0.1, 0.2, 0.3, 0.4]),
        "cat_1": ("borderline-stable", "10 levels, uniform -> linear tilt +-30%", l10, [0.1] * 10, l10, _tilt(10, 0.3)),
        "cat_2": (
            "drift",
            "20 levels -> 3 new levels take 5%",
            l20,
            [0.05] * 20,
            l20 + new,
            [0.05 * 0.95] * 20 + [0.05 / 3] * 3,
        ),
        "cat_3": ("stable", "100 levels, zipf, unchanged", l100, _zipf(100), l100, _zipf(100)),
        "cat_4": ("borderline-drift", "yes/no 70/30 -> 55/45", yes_no, [0.7, 0.3], yes_no, [0.55, 0.45]),
    }


def make_data(directory: Path, rows: int) -> dict[str, Any]:
    """Write ``reference.parquet`` and ``current.parquet`` (``rows`` rows each) and ``meta.json``; return meta."""
    import numpy as np
    import pandas as pd

    categorical = _categorical_specs()
    features: list[Feature] = []
    frames: dict[str, dict[str, Any]] = {"reference": {}, "current": {}}
    for index, (name, (expect, ref, cur)) in enumerate(NUMERIC.items()):
        current = ref if isinstance(cur, str) else cur  # "same"
        change = f"{_describe(ref)}, unchanged" if cur == "same" else f"{_describe(ref)} -> {_describe(current)}"
        features.append(Feature(name, "numeric", expect, change))
        for role_id, (role, dist) in enumerate((("reference", ref), ("current", current))):
            frames[role][name] = _sample(np.random.default_rng([SEED, index, role_id]), dist, rows)
    for index, (name, (expect, change, ref_l, ref_p, cur_l, cur_p)) in enumerate(categorical.items(), start=100):
        features.append(Feature(name, "categorical", expect, change))
        for role, (role_id, levels, p) in {"reference": (0, ref_l, ref_p), "current": (1, cur_l, cur_p)}.items():
            rng = np.random.default_rng([SEED, index, role_id])
            codes = rng.choice(len(levels), size=rows, p=np.asarray(p) / np.sum(p))
            frames[role][name] = np.asarray(levels, dtype=object)[codes]
    for role, columns in frames.items():
        pd.DataFrame(columns).to_parquet(directory / f"{role}.parquet", index=False)
    meta = {
        "rows": rows,
        "seed": SEED,
        "numeric": [f.name for f in features if f.kind == "numeric"],
        "categorical": [f.name for f in features if f.kind == "categorical"],
        "features": {f.name: {"kind": f.kind, "expect": f.expect, "change": f.change} for f in features},
        "parquet_bytes": {role: (directory / f"{role}.parquet").stat().st_size for role in frames},
    }
    (directory / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


# --------------------------------------------------------------------------------------------------- workers
# Each worker runs in its own process (the Evidently one in Evidently's venv: it must not import mlpilot) and
# writes one JSON document to ``--result``.


def _vm_hwm() -> int | None:
    """The process's RSS high-water mark so far, in bytes (Linux), or None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _load(data: Path) -> tuple[Any, Any, dict[str, Any], float]:
    import pandas as pd

    meta = json.loads((data / "meta.json").read_text())
    (ref, cur), seconds = _timed(
        lambda: (pd.read_parquet(data / "reference.parquet"), pd.read_parquet(data / "current.parquet"))
    )
    return ref, cur, meta, seconds


def worker_mlpilot(data: Path, repeat: int) -> dict[str, Any]:
    def imports() -> None:
        import scipy.spatial.distance
        import scipy.stats  # noqa: F401

        import mlpilot.monitoring  # noqa: F401

    _, import_s = _timed(imports)
    from importlib.metadata import version

    from mlpilot.monitoring import CategoricalJensenShannonDrift, TableDrift, WassersteinDrift

    ref, cur, meta, load_s = _load(data)
    hwm_load = _vm_hwm()

    def run() -> Any:
        detector = TableDrift(
            numeric_test=WassersteinDrift(threshold=THRESHOLD),
            categorical_test=CategoricalJensenShannonDrift(threshold=THRESHOLD),
            correction="none",
            drift_share=0.5,
            numeric_columns=meta["numeric"],
            categorical_columns=meta["categorical"],
        )
        return detector.fit(ref).predict(cur)

    times = []
    for _ in range(repeat):
        result, seconds = _timed(run)
        times.append(seconds)
    return {
        "tool": "mlpilot",
        "versions": {p: version(p) for p in ("mlpilot", "numpy", "scipy", "pandas", "pyarrow")},
        "import_s": import_s,
        "load_s": load_s,
        "compute_s": times,
        "vm_hwm_after_load": hwm_load,
        "vm_hwm_after_compute": _vm_hwm(),
        "dataset_drift": bool(result.is_drift),
        "share_drifted": result.share_drifted,
        "features": {
            f.feature: {"test": f.test, "score": f.statistic, "threshold": f.threshold, "drift": bool(f.is_drift)}
            for f in result.features
        },
    }


def _scipy_reference(ref: Any, cur: Any, meta: dict[str, Any]) -> dict[str, dict[str, float]]:
    """KS and chi-square statistics and p-values of every feature, computed by scipy alone."""
    import numpy as np
    import pandas as pd
    from scipy import stats

    out: dict[str, dict[str, float]] = {}
    for name in meta["numeric"]:
        ks = stats.ks_2samp(ref[name].to_numpy(np.float64), cur[name].to_numpy(np.float64))
        out[name] = {"statistic": float(ks.statistic), "p_value": float(ks.pvalue)}
    for name in meta["categorical"]:
        counts = pd.concat({"ref": ref[name].value_counts(), "cur": cur[name].value_counts()}, axis=1).fillna(0)
        chi2 = stats.chi2_contingency(counts.to_numpy().T, correction=False)
        out[name] = {"statistic": float(chi2.statistic), "p_value": float(chi2.pvalue)}
    return out


def worker_mlpilot_scipy(data: Path, repeat: int) -> dict[str, Any]:
    def imports() -> None:
        import scipy.stats  # noqa: F401

        import mlpilot.monitoring  # noqa: F401

    _, import_s = _timed(imports)
    from mlpilot.monitoring import TableDrift

    ref, cur, meta, load_s = _load(data)
    hwm_load = _vm_hwm()

    def run() -> Any:
        detector = TableDrift(
            numeric_test="ks",
            categorical_test="chi2",
            correction="holm",
            numeric_columns=meta["numeric"],
            categorical_columns=meta["categorical"],
        )
        return detector.fit(ref).predict(cur)

    times = []
    for _ in range(repeat):
        result, seconds = _timed(run)
        times.append(seconds)
    hwm_compute = _vm_hwm()
    expected, scipy_s = _timed(lambda: _scipy_reference(ref, cur, meta))
    checks = {}
    for f in result.features:
        want = expected[f.feature]
        raw_p = float(f.detail["raw_p_value"])
        checks[f.feature] = {
            "test": f.test,
            "statistic": f.statistic,
            "scipy_statistic": want["statistic"],
            "p_value": raw_p,
            "scipy_p_value": want["p_value"],
            "abs_diff": abs(raw_p - want["p_value"]),
            "rel_diff": abs(raw_p - want["p_value"]) / want["p_value"] if want["p_value"] > 0 else None,
            "statistic_rel_diff": abs(f.statistic - want["statistic"]) / max(abs(want["statistic"]), 1e-300),
        }
    return {
        "tool": "mlpilot-scipy",
        "import_s": import_s,
        "load_s": load_s,
        "compute_s": times,
        "scipy_loop_s": scipy_s,
        "vm_hwm_after_load": hwm_load,
        "vm_hwm_after_compute": hwm_compute,
        "checks": checks,
    }


def worker_evidently(data: Path, repeat: int) -> dict[str, Any]:
    def imports() -> None:
        import evidently  # noqa: F401
        from evidently.presets import DataDriftPreset  # noqa: F401

    _, import_s = _timed(imports)
    from importlib.metadata import version

    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    ref, cur, meta, load_s = _load(data)
    definition = DataDefinition(numerical_columns=meta["numeric"], categorical_columns=meta["categorical"])
    (ref_ds, cur_ds), wrap_s = _timed(
        lambda: (
            Dataset.from_pandas(ref, data_definition=definition),
            Dataset.from_pandas(cur, data_definition=definition),
        )
    )
    hwm_load = _vm_hwm()

    def run() -> Any:
        report = Report([DataDriftPreset()], include_tests=True)
        return report.run(current_data=cur_ds, reference_data=ref_ds)

    times = []
    for _ in range(repeat):
        snapshot, seconds = _timed(run)
        times.append(seconds)
    hwm_compute = _vm_hwm()
    document, extract_s = _timed(snapshot.dict)
    features: dict[str, dict[str, Any]] = {}
    dataset: dict[str, Any] = {}
    for metric in document["metrics"]:
        config = metric["config"]
        if config["type"].endswith("ValueDrift"):
            features[config["column"]] = {
                "test": config["method"],
                "score": float(metric["value"]),
                "threshold": config["threshold"],
            }
        elif config["type"].endswith("DriftedColumnsCount"):
            dataset = metric["value"]
    for test in document["tests"]:
        params = test["metric_config"]["params"]
        if test["id"] == "drift" and params["type"].endswith("ValueDrift"):
            features[params["column"]]["drift"] = test["status"] == "FAIL"  # Evidently's own verdict
        elif params["type"].endswith("DriftedColumnsCount"):
            dataset["dataset_drift"] = test["status"] == "FAIL"
    return {
        "tool": "evidently",
        "versions": {p: version(p) for p in ("evidently", "numpy", "scipy", "pandas", "pyarrow")},
        "import_s": import_s,
        "load_s": load_s,
        "dataset_from_pandas_s": wrap_s,
        "compute_s": times,
        "snapshot_dict_s": extract_s,
        "vm_hwm_after_load": hwm_load,
        "vm_hwm_after_compute": hwm_compute,
        "dataset": dataset,
        "features": features,
    }


WORKERS: dict[str, Callable[[Path, int], dict[str, Any]]] = {
    "mlpilot": worker_mlpilot,
    "mlpilot-scipy": worker_mlpilot_scipy,
    "evidently": worker_evidently,
}

# --------------------------------------------------------------------------------------------------- orchestration


def ensure_evidently() -> Path:
    """Create (or reuse) ``bench/.venvs/evidently``; a stamp file records the requirement list."""
    venv = VENVS / "evidently"
    python = venv / "bin" / "python"
    stamp = venv / ".bench-requirements.json"
    if python.exists() and stamp.exists() and json.loads(stamp.read_text()) == EVIDENTLY_REQUIREMENTS:
        return python
    RESULTS.mkdir(parents=True, exist_ok=True)
    log = RESULTS / "venv-evidently.log"
    print(f"setting up {venv.relative_to(REPO)}: pip install {' '.join(EVIDENTLY_REQUIREMENTS)} (log: {log})")
    with log.open("w") as out:
        if not python.exists():
            subprocess.run(["python3", "-m", "venv", str(venv)], stdout=out, stderr=out, check=True)
        cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check", *EVIDENTLY_REQUIREMENTS]
        if subprocess.run(cmd, stdout=out, stderr=out, check=False).returncode != 0:
            raise SystemExit(f"pip install into {venv} failed: see {log}")
    stamp.write_text(json.dumps(EVIDENTLY_REQUIREMENTS))
    return python


def run_worker(python: Path, mode: str, data: Path, repeat: int) -> dict[str, Any]:
    """Run one worker in a subprocess; return its JSON plus wall time and peak RSS (``wait4`` rusage)."""
    result_path = data / f"result-{mode}.json"
    argv = [str(python), str(Path(__file__).resolve()), "--worker", mode, "--data", str(data)]
    argv += ["--repeat", str(repeat), "--result", str(result_path)]
    env = {**os.environ, "PYTHONPATH": ""}
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=REPO)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"worker {mode} failed with exit code {proc.returncode}")
    out: dict[str, Any] = json.loads(result_path.read_text())
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    out.update(
        peak_rss_bytes=usage.ru_maxrss * scale,
        process_wall_s=wall,
        cpu_user_s=usage.ru_utime,
        cpu_sys_s=usage.ru_stime,
        loadavg_1m_before=load_before,
    )
    return out


def _mib(n: float | None) -> str:
    return "-" if n is None else f"{n / 2**20:,.0f} MiB"


def _best(times: list[float]) -> float:
    return min(times)


def compare(meta: dict[str, Any], mine: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    rows = []
    for name in meta["numeric"] + meta["categorical"]:
        kind = meta["features"][name]["kind"]
        a, b = mine["features"][name], theirs["features"].get(name, {})
        rows.append(
            {
                "feature": name,
                "kind": kind,
                "expect": meta["features"][name]["expect"],
                "mlpilot_test": a["test"],
                "evidently_test": b.get("test"),
                "mlpilot_score": a["score"],
                "evidently_score": b.get("score"),
                "score_abs_diff": abs(a["score"] - b["score"]) if "score" in b else None,
                "mlpilot_drift": a["drift"],
                "evidently_drift": b.get("drift"),
                "agree": a["drift"] == b.get("drift"),
            }
        )
    wrong_tests = [
        r["feature"]
        for r in rows
        if r["evidently_test"] != EVIDENTLY_METHODS[r["kind"]]
        or "threshold" not in theirs["features"][r["feature"]]
        or theirs["features"][r["feature"]]["threshold"] != THRESHOLD
    ]
    diffs = [r["score_abs_diff"] for r in rows if r["score_abs_diff"] is not None]
    return {
        "rows": rows,
        "n_agree": sum(r["agree"] for r in rows),
        "n_features": len(rows),
        "disagreements": [r for r in rows if not r["agree"]],
        "max_score_abs_diff": max(diffs) if diffs else None,
        "unexpected_evidently_tests": wrong_tests,
    }


def print_report(rows: int, repeat: int, runs: dict[str, dict[str, Any]], verdicts: dict[str, Any]) -> None:
    mine, ks, theirs = runs["mlpilot"], runs["mlpilot-scipy"], runs["evidently"]
    t_theirs = _best(theirs["compute_s"])
    print(f"\nDrift report, {rows:,} rows per window x 25 features (20 numeric + 5 categorical), best of {repeat}")
    header = f"{'tool':<56} {'compute s':>9} {'speed-up':>8} {'peak RSS':>10} {'RSS loaded':>10} {'load s':>6}"
    print(header + "\n" + "-" * len(header))
    # (label, seconds, peak RSS, RSS after loading, load seconds)
    table: list[tuple[str, float, int | None, int | None, float | None]] = [
        (
            f"Evidently {theirs['versions']['evidently']} DataDriftPreset (wasserstein + JS)",
            t_theirs,
            theirs["peak_rss_bytes"],
            theirs["vm_hwm_after_load"],
            theirs["load_s"],
        ),
        (
            "mlpilot TableDrift, same tests (wasserstein + JS)",
            _best(mine["compute_s"]),
            mine["peak_rss_bytes"],
            mine["vm_hwm_after_load"],
            mine["load_s"],
        ),
        (
            "mlpilot TableDrift, KS + chi-square (scipy-equal) [1]",
            _best(ks["compute_s"]),
            ks["vm_hwm_after_compute"],
            ks["vm_hwm_after_load"],
            ks["load_s"],
        ),
        ("scipy ks_2samp + chi2_contingency loop, same data [1]", ks["scipy_loop_s"], None, None, None),
    ]
    for label, seconds, peak, loaded, load in table:
        load_text = "-" if load is None else f"{load:.2f}"
        speedup = f"{t_theirs / seconds:.1f}x"
        print(f"{label:<56} {seconds:>9.2f} {speedup:>8} {_mib(peak):>10} {_mib(loaded):>10} {load_text:>6}")
    print(
        "[1] one process: the peak RSS of the KS + chi-square row is the high-water mark before the scipy loop ran\n"
        f"Not timed: Evidently's Dataset.from_pandas {theirs['dataset_from_pandas_s']:.2f} s, snapshot.dict() "
        f"{theirs['snapshot_dict_s']:.2f} s; imports: Evidently {theirs['import_s']:.1f} s, mlpilot "
        f"{mine['import_s']:.1f} s"
    )
    drifted_mine = sum(r["mlpilot_drift"] for r in verdicts["rows"])
    drifted_theirs = sum(bool(r["evidently_drift"]) for r in verdicts["rows"])
    print(
        f"\nverdicts: {verdicts['n_agree']}/{verdicts['n_features']} equal (drifted: mlpilot {drifted_mine}, "
        f"Evidently {drifted_theirs}); largest score difference {verdicts['max_score_abs_diff']:.1e}"
    )
    for r in verdicts["disagreements"]:
        print(
            f"  DIFFERS {r['feature']}: mlpilot {r['mlpilot_test']}={r['mlpilot_score']:.6f} drift={r['mlpilot_drift']}"
            f" | Evidently {r['evidently_test']}={r['evidently_score']} drift={r['evidently_drift']}"
        )
    if verdicts["unexpected_evidently_tests"]:
        print(f"  Evidently picked unexpected tests for {verdicts['unexpected_evidently_tests']}")
    checks = ks["checks"].values()
    rels = [c["rel_diff"] for c in checks if c["rel_diff"] is not None]
    worst_abs = max(c["abs_diff"] for c in checks)
    print(
        f"p-values vs scipy (ks_2samp / chi2_contingency, {len(checks)} features): largest difference {worst_abs:.1e} "
        f"absolute, {max(rels, default=0.0):.1e} relative -> {'OK' if worst_abs <= P_VALUE_TOLERANCE else 'FAIL'} "
        f"(tolerance {P_VALUE_TOLERANCE:g})"
    )
    print(f"\n{'feature':<8} {'design':<18} {'mlpilot':>9} {'Evidently':>9}  verdicts (mlpilot / Evidently)")
    for r in verdicts["rows"]:
        theirs_score = "-" if r["evidently_score"] is None else f"{r['evidently_score']:.4f}"
        flags = f"{'drift' if r['mlpilot_drift'] else 'ok':>5} / {'drift' if r['evidently_drift'] else 'ok':<5}"
        mark = "" if r["agree"] else "  <-- differs"
        print(f"{r['feature']:<8} {r['expect']:<18} {r['mlpilot_score']:>9.4f} {theirs_score:>9}  {flags}{mark}")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per window (default 1,000,000)")
    parser.add_argument("--quick", action="store_true", help="100,000 rows")
    parser.add_argument("--repeat", type=int, default=1, help="timed repetitions per tool; the best is reported")
    parser.add_argument("--min-ratio", type=float, default=20.0, help="required speed-up over Evidently")
    parser.add_argument("--out", type=Path, default=RESULTS / "drift.json")
    parser.add_argument("--keep-data", action="store_true", help="keep the Parquet files (the path is printed)")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        args.result.write_text(json.dumps(WORKERS[args.worker](args.data, args.repeat), indent=1))
        return 0

    rows = 100_000 if args.quick else args.rows
    if rows <= 1000:
        parser.error("--rows must exceed 1,000: below that Evidently's preset picks KS / chi-square / z-tests instead")
    evidently_python = ensure_evidently()
    data = Path(tempfile.mkdtemp(prefix="mlpilot-drift-bench-"))
    runs: dict[str, dict[str, Any]] = {}
    try:
        print(f"data: {rows:,} rows x (20 numeric + 5 categorical) per window -> {data}", flush=True)
        meta, gen_s = _timed(lambda: make_data(data, rows))
        print(f"  generated and written to Parquet in {gen_s:.1f} s", flush=True)
        workers = (("mlpilot", MLPILOT_PYTHON), ("mlpilot-scipy", MLPILOT_PYTHON), ("evidently", evidently_python))
        for mode, python in workers:  # one at a time, each in its own process
            print(f"running {mode} ...", flush=True)
            run = runs[mode] = run_worker(python, mode, data, args.repeat)
            print(f"  {_best(run['compute_s']):.2f} s, peak RSS {_mib(run['peak_rss_bytes'])}", flush=True)
    finally:
        if args.keep_data:
            print(f"data kept in {data}")
        else:
            shutil.rmtree(data, ignore_errors=True)

    verdicts = compare(meta, runs["mlpilot"], runs["evidently"])
    print_report(rows, args.repeat, runs, verdicts)
    t_mine, t_theirs = _best(runs["mlpilot"]["compute_s"]), _best(runs["evidently"]["compute_s"])
    ratio = t_theirs / t_mine
    worst_p = max(c["abs_diff"] for c in runs["mlpilot-scipy"]["checks"].values())
    failures = []
    if verdicts["n_agree"] != verdicts["n_features"]:
        failures.append("per-feature verdicts differ")
    if ratio < args.min_ratio:
        failures.append(f"speed-up {ratio:.1f}x < {args.min_ratio:g}x")
    if worst_p > P_VALUE_TOLERANCE:
        failures.append("p-values differ from scipy")
    if verdicts["unexpected_evidently_tests"]:
        failures.append("Evidently picked unexpected tests")
    print("\nPASS" if not failures else "\nFAIL: " + "; ".join(failures))

    document = {
        "benchmark": "drift",
        "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "rows": rows,
        "repeat": args.repeat,
        "evidently_requirements": EVIDENTLY_REQUIREMENTS,
        "data": meta,
        "generate_s": gen_s,
        "summary": {
            "evidently_s": t_theirs,
            "mlpilot_s": t_mine,
            "mlpilot_ks_chi2_s": _best(runs["mlpilot-scipy"]["compute_s"]),
            "scipy_loop_s": runs["mlpilot-scipy"]["scipy_loop_s"],
            "speedup": ratio,
            "peak_rss_bytes": {k: v["peak_rss_bytes"] for k, v in runs.items()},
            "verdicts_equal": verdicts["n_agree"],
            "n_features": verdicts["n_features"],
            "p_value_max_abs_diff": worst_p,
            "passed": not failures,
            "failures": failures,
        },
        "verdicts": verdicts,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=1))
    print(f"results: {args.out}")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
