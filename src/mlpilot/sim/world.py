"""Simulated services on a virtual clock: an ML scoring service (``fraud``) and an LLM app (``support``).

Each simulated minute :meth:`World.step` produces the request rows the service would have logged (the same
columns the request log gives RCA: ``ts``, ``variant``, ``status``, ``error``, ``latency_s``, ``stage.*_s``,
``in.*``, ``pred``, ``score``, ``label`` — labels arrive later — and ``llm.*`` for the app), resource samples and
recorded changes. A fault is a function of the world's state (``World.faults``), so remediations act on the state
(abort the canary, roll back the release, move an alias back, fail over the provider, quarantine rows, scale) and
the rows that follow show whether they helped. Every row knows whether the fault touched it (``_affected``), which
gives the share of traffic affected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from mlpilot.incidents.evidence import Change

COUNTRIES = np.array(["US", "GB", "DE", "FR", "BR", "IN"])
COUNTRY_P = np.array([0.35, 0.15, 0.15, 0.1, 0.15, 0.1])
COUNTRY_EFFECT = {"US": -0.4, "GB": -0.2, "DE": -0.3, "FR": 0.0, "BR": 1.0, "IN": 0.6}
DEVICES = np.array(["ios", "android", "web"])
ML_STAGES = {"feature_fetch": "dependency:feature_fetch", "predict": "release:fraud", "queue": "traffic:fraud"}
LLM_STAGES = {"retrieve": "dependency:retrieve", "generate": "dependency:generate", "tool": "dependency:tool"}


@dataclass
class State:
    """What the service runs now (changed by faults, by benign changes and by remediations)."""

    release: int = 1
    config_rev: int = 1
    canary_weight: float = 0.0
    canary_bug: float = 0.0  # error probability of the canary on BR
    replicas: int = 2
    capacity_per_replica: float = 140.0  # requests per minute at full utilisation
    quarantine: dict[str, dict[str, Any]] = field(default_factory=dict)
    prompt_version: int = 3
    index_version: int = 2
    tool_version: int = 1
    backend: str = "primary"
    rss_mb: float = 900.0
    restarts: int = 0
    # faults active in the release / config / alias versions (removed by rolling those back)
    release_faults: dict[int, dict[str, float]] = field(default_factory=dict)
    config_faults: dict[int, dict[str, float]] = field(default_factory=dict)
    prompt_faults: dict[int, float] = field(default_factory=dict)
    index_faults: dict[int, float] = field(default_factory=dict)
    tool_faults: dict[int, float] = field(default_factory=dict)


class World:
    """Args: service: ``"ml"`` or ``"llm"``; rate: requests per minute; start: time of minute 0."""

    def __init__(self, service: str, seed: int, start: datetime, rate: float = 120.0) -> None:
        self.service = service
        self.rng = np.random.default_rng(seed)
        self.start = start
        self.rate = rate
        self.state = State()
        self.rate_factor = 1.0
        #: upstream / provider / world faults not owned by any version: name -> params (set by the scenario)
        self.upstream: dict[str, dict[str, float]] = {}
        self.changes: list[Change] = []
        self.resources: list[tuple[datetime, str, float]] = []
        self.minute = 0
        self._event = 0
        self.deployment = "fraud" if service == "ml" else "support"

    # ----------------------------------------------------------------------------------------------- changes

    def record(self, kind: str, component: str, summary: str, **data: Any) -> Change:
        self._event += 1
        c = Change(self.now, kind, component, summary, f"sim-{self._event}", dict(data))
        self.changes.append(c)
        return c

    @property
    def now(self) -> datetime:
        return self.start + timedelta(minutes=self.minute)

    # ----------------------------------------------------------------------------------------------- one minute

    def step(self) -> pd.DataFrame:
        n = int(self.rng.poisson(self.rate * self.rate_factor))
        ts = self.now + pd.to_timedelta(np.sort(self.rng.uniform(0, 60, n)), unit="s")
        rows = self._ml(n) if self.service == "ml" else self._llm(n)
        rows["ts"] = ts
        self._resources(n)
        self.minute += 1
        return pd.DataFrame(rows)

    def _queue_s(self, n: int) -> tuple[np.ndarray, float]:
        rho = n / (self.state.capacity_per_replica * self.state.replicas)
        wait = 0.004 * rho / max(1.0 - min(rho, 0.97), 0.03)
        return self.rng.exponential(wait + 1e-4, n), rho

    def _ml(self, n: int) -> dict[str, Any]:
        st, r, up = self.state, self.rng, self.upstream
        amount = r.lognormal(3.5, 0.9, n)
        age = np.clip(r.normal(40, 12, n), 18, 90)
        merchant = r.beta(2, 5, n)
        ntx = r.poisson(3, n).astype(float)
        country = r.choice(COUNTRIES, n, p=COUNTRY_P).astype(object)
        device = r.choice(DEVICES, n, p=[0.4, 0.4, 0.2]).astype(object)
        affected = np.zeros(n, bool)
        # the world: the true relationship (concept drift moves it)
        concept = up.get("concept", {})
        drift_w = min(max((self.minute - concept.get("t0", 1e9)) / 20.0, 0.0), 1.0) * concept.get("size", 0.0)
        logit = (
            -2.2
            + 1.1 * (np.log(amount) - 3.5)
            + 4.0 * (merchant - 0.28)
            + 4.0 * drift_w * (amount < 20)
            + 0.7 * (ntx - 3)
            + np.vectorize(COUNTRY_EFFECT.get)(country)
        )
        label = (r.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(int)
        if drift_w > 0:
            affected |= True
        # benign upstream drift on device (no effect on the model)
        if "device_mix" in up:
            flip = r.uniform(size=n) < up["device_mix"]["share"]
            device[flip] = "web"
        # upstream faults on the logged inputs
        seen_merchant, seen_ntx, seen_country = merchant.copy(), ntx.copy(), country.copy()
        if "rescale" in up:
            hit = r.uniform(size=n) < up["rescale"]["share"]
            seen_merchant[hit] *= 100.0
            affected |= hit
        if "nulls" in up:
            hit = r.uniform(size=n) < up["nulls"]["share"]
            seen_ntx[hit] = np.nan
            affected |= hit
        if "stale" in up:
            hit = r.uniform(size=n) < up["stale"]["share"]
            seen_ntx[hit] = 1.0
            affected |= hit
        if "encoding" in up:
            hit = (r.uniform(size=n) < up["encoding"]["share"]) & (country != "US")
            seen_country[hit] = np.char.lower(country[hit].astype(str)).astype(object)
            affected |= hit
        # routing
        variant = np.where(r.uniform(size=n) < st.canary_weight, "canary", "stable").astype(object)
        rel = st.release_faults.get(st.release, {})
        cfg = st.config_faults.get(st.config_rev, {})
        # the model as served: skew = a release that transforms amount differently
        seen_amount = amount * (rel.get("skew", 1.0))
        m_logit = (
            -2.2
            + 1.1 * (np.log(np.maximum(seen_amount, 1e-6)) - 3.5)
            + 4.0 * (np.minimum(seen_merchant, 1e4) - 0.28)
            + 0.7 * (np.nan_to_num(seen_ntx, nan=3.0) - 3)
            + np.array([COUNTRY_EFFECT.get(c, 0.0) for c in seen_country])
        )
        score = 1 / (1 + np.exp(-np.clip(m_logit, -30, 30)))
        pred = (score > 0.5).astype(int)
        if "skew" in rel:
            affected |= True
        status = np.full(n, "ok", dtype=object)
        error = np.full(n, "", dtype=object)
        nan_rows = np.isnan(seen_ntx)
        status[nan_rows] = "error"
        error[nan_rows] = "ValueError: Input contains NaN in column 'n_tx_24h'"
        unseen = ~np.isin(seen_country, COUNTRIES)
        status[unseen] = "error"
        error[unseen] = [
            f"ValueError: Found unknown categories ['{c}'] in column 'country'" for c in seen_country[unseen]
        ]
        # stages
        queue, rho = self._queue_s(n)
        fetch = r.gamma(4, 0.004, n) * up.get("dependency", {}).get("factor", 1.0)
        if "dependency" in up:
            affected |= True
        predict = r.gamma(4, 0.0025, n) * rel.get("slow", 1.0) * (1.0 + max(st.rss_mb - 1200, 0) / 200)
        if "slow" in rel or st.rss_mb > 1200:
            affected |= True
        latency = queue + fetch + predict + r.gamma(2, 0.001, n)
        # canary bug on one segment
        bug = (variant == "canary") & (country == "BR") & (r.uniform(size=n) < st.canary_bug)
        status[bug], error[bug] = "error", "KeyError: 'br_tax_rate'"
        affected |= (variant == "canary") & (country == "BR") & (st.canary_bug > 0)
        # bad config: a timeout far too short
        if "timeout_s" in cfg:
            late = latency > cfg["timeout_s"]
            status[late], error[late] = "error", f"TimeoutError: model call timed out after {cfg['timeout_s']} s"
            latency[late] = cfg["timeout_s"]
            affected |= late
        # overload: shed what the queue cannot hold
        if rho > 1.0:
            shed = r.uniform(size=n) < (rho - 1.0) / rho
            status[shed], error[shed] = "error", "503 queue full: request shed"
            affected |= shed
        # memory pressure: restarts fail requests for a moment
        if st.rss_mb > 2000:
            st.restarts += 1
            st.rss_mb = 900.0
            down = r.uniform(size=n) < 0.3
            status[down], error[down] = "error", "RuntimeError: runtime restarting (out of memory)"
            affected |= down
        # quarantine: rejected rows are 4xx, never reach the model
        rejected = self._quarantined(
            {"merchant_score": seen_merchant, "n_tx_24h": seen_ntx, "country": seen_country}, n
        )
        status[rejected], error[rejected] = "rejected", "input quarantined"
        affected &= ~rejected
        # labels: the label pipeline may be wrong
        observed_label = label.astype(float)
        if "labels" in up:
            hit = r.uniform(size=n) < up["labels"]["share"]
            observed_label[hit] = 1
            affected |= hit
        observed_label[status != "ok"] = np.nan  # no prediction: no feedback to join
        return {
            "variant": variant,
            "status": status,
            "error": error,
            "latency_s": latency,
            "stage.queue_s": queue,
            "stage.feature_fetch_s": fetch,
            "stage.predict_s": predict,
            "in.amount": amount,
            "in.age": age,
            "in.merchant_score": seen_merchant,
            "in.n_tx_24h": seen_ntx,
            "in.country": seen_country,
            "in.device": device,
            "pred": np.where(status == "ok", pred, -1),
            "score": np.where(status == "ok", score, np.nan),
            "label": observed_label,
            "_affected": affected,
        }

    def _quarantined(self, values: dict[str, np.ndarray], n: int) -> np.ndarray:
        out = np.zeros(n, bool)
        for feature, rule in self.state.quarantine.items():
            v = values.get(feature)
            if v is None:
                continue
            if rule.get("nulls"):
                out |= pd.isna(v)
            if "allowed" in rule:
                out |= ~np.isin(v.astype(str), np.asarray(rule["allowed"], dtype=str))
            if "low" in rule or "high" in rule:
                x = v.astype(float)
                out |= (x < rule.get("low", -np.inf)) | (x > rule.get("high", np.inf))
        return out

    def _llm(self, n: int) -> dict[str, Any]:
        st, r, up = self.state, self.rng, self.upstream
        topic = r.choice(np.array(["billing", "orders", "account", "shipping"]), n, p=[0.3, 0.3, 0.2, 0.2]).astype(
            object
        )
        top = np.clip(r.normal(0.72, 0.07, n), 0, 1)
        grounded = np.clip(r.beta(8, 2, n), 0, 1)
        refusal = (r.uniform(size=n) < 0.02).astype(int)
        tool_err = np.zeros(n, int)
        affected = np.zeros(n, bool)
        p_fault = st.prompt_faults.get(st.prompt_version, 0.0)
        if p_fault:
            grounded = np.clip(grounded - p_fault * r.uniform(0.5, 1.5, n), 0, 1)
            refusal |= (r.uniform(size=n) < p_fault / 2).astype(int)
            affected |= True
        i_fault = st.index_faults.get(st.index_version, 0.0)
        if i_fault:
            top = np.clip(top - i_fault, 0, 1)
            grounded = np.clip(grounded - i_fault * 0.8 * r.uniform(0.5, 1.5, n), 0, 1)
            affected |= True
        orders = topic == "orders"
        t_fault = st.tool_faults.get(st.tool_version, 0.0)
        if t_fault:
            hit = orders & (r.uniform(size=n) < t_fault * 2)
            tool_err[hit] = 1
            grounded[hit] = np.clip(grounded[hit] - 0.6, 0, 1)
            affected |= hit
        model = "gpt-x-0613"
        provider = st.backend == "primary"
        if provider and "provider_change" in up:
            model = "gpt-x-1106"
            grounded = np.clip(grounded - up["provider_change"]["size"] * r.uniform(0.5, 1.5, n), 0, 1)
            affected |= True
        if not provider:
            model = "fallback-13b"
        status = np.full(n, "ok", dtype=object)
        error = np.full(n, "", dtype=object)
        if provider and "rate_limit" in up:
            hit = r.uniform(size=n) < up["rate_limit"]["share"]
            status[hit], error[hit] = "error", "upstream 429 Too Many Requests from backend primary"
            affected |= hit
        queue, _ = self._queue_s(n)
        retrieve = r.gamma(4, 0.003, n)
        generate = r.gamma(6, 0.05, n) * (1.3 if not provider else 1.0) * up.get("dependency", {}).get("factor", 1.0)
        tool = np.where(orders, r.gamma(3, 0.01, n), 0.0)
        latency = queue + retrieve + generate + tool
        return {
            "variant": np.full(n, "stable", dtype=object),
            "status": status,
            "error": error,
            "latency_s": latency,
            "stage.queue_s": queue,
            "stage.retrieve_s": retrieve,
            "stage.generate_s": generate,
            "stage.tool_s": tool,
            "in.topic": topic,
            "llm.groundedness": np.where(status == "ok", grounded, np.nan),
            "llm.top_score": top,
            "llm.refusal": refusal,
            "llm.tool_errors": tool_err,
            "llm.prompt": np.full(n, f"support:{st.prompt_version}", dtype=object),
            "llm.index": np.full(n, f"kb:{st.index_version}", dtype=object),
            "llm.tool": np.full(n, f"order_status:{st.tool_version}", dtype=object),
            "llm.llm_model": np.full(n, model, dtype=object),
            "llm.backend": np.full(n, st.backend, dtype=object),
            "llm.cost": np.full(n, 0.002),
            "_affected": affected,
        }

    def _resources(self, n: int) -> None:
        st = self.state
        leak = st.release_faults.get(st.release, {}).get("leak", 0.0)
        st.rss_mb += leak + float(self.rng.normal(0, 3))
        st.rss_mb = max(st.rss_mb, 800.0)
        self.resources.append((self.now, "rss_mb", st.rss_mb))
        self.resources.append((self.now, "restarts", float(st.restarts)))
        self.resources.append((self.now, "replicas", float(st.replicas)))

    def resource_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.resources, columns=["ts", "metric", "value"]).assign(
            ts=lambda d: pd.to_datetime(d["ts"], utc=True)
        )
