"""Fig. 8: the paper's regime (docs/model.md sections 1, 4, 5): with the polylog gap
``alpha_2 = alpha_1 / ln d`` and a head learning rate in the admissible range, does the
fraction of runs ending diverse with the trainable head, and collapsed with the frozen head,
tend to 1 as ``d`` grows? Gradient flow at convergence, reduced initial law (section 11).

Choices (docs/paper.md, appendix): ``alpha_1 = 2^{log2 log2 d} = log2 d`` (the theorem's
``2^{polyloglog d}`` with the exponent ``log2 log2 d``), so ``alpha_2 = log2 d / ln d = 1/ln 2``
for every ``d``; ``eta_E / eta = 1 / alpha_1^2``, which is both ``eta / alpha_1^{O(1)}``
(the lower end of section 4's range, exponent 2) and ``eta / polylog d`` (the upper end,
``(log2 d)^2``). The other model constants are the defaults (P = 16, k = 4, sigma = 1, m = 2).
"""

from __future__ import annotations

import math

import numpy as np

from .. import plotting
from ..params import ModelParams, TrainParams
from ..stats import wilson_interval
from .flow_runs import FLOW_OUTCOMES, count_outcomes, run_flow_many
from .plan import Plan
from .runs import Progress, no_progress

NAME = "fig8_paper_regime"
DATA_FORMAT = "json"
HEADS = ("trainable", "frozen")


def regime_alpha(d: float) -> tuple[float, float]:
    """``(alpha_1, alpha_2) = (log2 d, log2 d / ln d)``: docs/model.md section 1's
    ``alpha_1 = 2^{polyloglog d}``, ``alpha_2 = alpha_1 / polylog d``."""
    a1 = math.log2(d)
    return a1, a1 / math.log(d)


def regime_ratio(d: float) -> float:
    """``eta_E / eta = 1 / alpha_1^2`` (inside docs/model.md section 4's range)."""
    return 1.0 / regime_alpha(d)[0] ** 2


def frozen_collapse_prediction(alpha1: float, alpha2: float) -> float:
    """Leading-order fraction of frozen-head runs that collapse (docs/paper.md, appendix).

    With ``E = I`` each neuron evolves alone; near initialisation ``d<w_j, v_l>/dt ~
    lam_l <w_j, v_l>^5`` (docs/model.md section 5, phase I), so neuron ``j`` learns ``v_2`` first
    iff ``lam_2 a_2^4 > lam_1 a_1^4``, i.e. ``|a_2 / a_1| > (alpha_1/alpha_2)^{3/2}`` (equal
    ``pi``). ``a_2 / a_1`` is a ratio of independent centred Gaussians (standard Cauchy), so
    ``p = 1 - (2/pi) arctan(r^{3/2})`` and the two neurons end on different features with
    probability ``2 p (1 - p)``. No fitted constant; it does not depend on ``d``.
    """
    p = 1.0 - 2.0 / math.pi * math.atan((alpha1 / alpha2) ** 1.5)
    return 1.0 - 2.0 * p * (1.0 - p)


def regime_runs(plan: Plan, progress: Progress = no_progress) -> dict:
    """``{d: {"trainable" | "frozen": [run dicts]}}`` over ``plan.regime_d_values`` x seeds."""
    models, trains, dims, keys = [], [], [], []
    for d in plan.regime_d_values:
        model = ModelParams(alpha=regime_alpha(d))  # the flow sees d only through W(0)
        for head in HEADS:
            for s in plan.regime_seeds:
                models.append(model)
                trains.append(TrainParams(eta=1.0, eta_E=regime_ratio(d), seed=s,
                                          head="offdiag" if head == "trainable" else "frozen"))
                dims.append(d)
                keys.append((d, head))
    res = run_flow_many(models, trains, dims=dims, init="reduced", progress=progress)
    out: dict = {d: {h: [] for h in HEADS} for d in plan.regime_d_values}
    for (d, head), r in zip(keys, res, strict=True):
        out[d][head].append(r)
    return out


def summarise(runs: dict) -> dict:
    """Counts, the two fractions the theorem predicts tend to 1, their Wilson intervals, and
    what the runs that are not diverse / collapsed did."""
    rows = []
    for d, by_head in runs.items():
        row = {"d": int(d), "alpha": list(regime_alpha(d)), "eta_E_ratio": regime_ratio(d),
               "frozen_collapse_prediction": frozen_collapse_prediction(*regime_alpha(d))}
        for head, rs in by_head.items():
            counts = count_outcomes(rs)
            n = len(rs)
            key = "diverse" if head == "trainable" else "collapsed"
            lo, hi = wilson_interval(counts[key], n)
            fl = [r["t"] for r in rs if r["status"] == "converged"]
            inc = [r for r in rs if r["outcome"] == "incomplete"]
            n_one = sum(1 for r in inc if sum(f is not None for f in r["features"]) == 1)
            settled = n - counts["incomplete"]
            row[head] = {"n": n, "counts": counts, "fraction": counts[key] / n, "wilson95": [lo, hi],
                         # the same fraction among the runs that settled (capped runs left out)
                         "settled": settled,
                         "fraction_of_settled": counts[key] / settled if settled else None,
                         "wilson95_of_settled": list(wilson_interval(counts[key], settled)),
                         "fraction_of": key,
                         "intervals": {oc: list(wilson_interval(c, n)) for oc, c in counts.items()},
                         "statuses": {s: int(sum(r["status"] == s for r in rs))
                                      for s in sorted({r["status"] for r in rs})},
                         "median_flow_time_converged": float(np.median(fl)) if fl else None,
                         # what the unsettled runs were doing at their flow-time cap
                         "incomplete_detail": {"one_neuron_with_a_feature": n_one,
                                               "median_flow_time": float(np.median([r["t"] for r in inc]))
                                               if inc else None}}
        rows.append(row)
    return {"rows": rows}


def first_d_above(rows, head: str, level: float = 0.9):
    """The smallest ``d`` from which the fraction of ``head`` stays >= ``level`` (None if none)."""
    ok = [r[head]["fraction"] >= level for r in rows]
    for i in range(len(rows)):
        if all(ok[i:]):
            return rows[i]["d"]
    return None


def make(plan: Plan, progress: Progress = no_progress):
    """``(figure, JSON-able data, facts)`` of fig 8."""
    runs = regime_runs(plan, progress)
    summary = summarise(runs)
    rows = summary["rows"]
    n = len(plan.regime_seeds)
    note = (rf"gradient flow to convergence, reduced $W(0)$, {n} seeds per $d$ and head; "
            rf"$\alpha_1 = \log_2 d$, $\alpha_2 = \alpha_1/\ln d$, $\eta_E/\eta = 1/\alpha_1^2$; "
            "P = 16, k = 4, sigma = 1, m = 2\n'incomplete': not settled by the flow-time cap "
            "(1e12 x the T1 prediction)")
    fig = plotting.regime_figure(rows, FLOW_OUTCOMES, note=note)
    js = {"choices": {"alpha1": "log2 d", "alpha2": "alpha1 / ln d", "eta_E_ratio": "1 / alpha1^2",
                      "init": "reduced", "engine": "flow", "cap": "1e12 x T1 prediction"},
          "seeds": list(plan.regime_seeds), **summary}
    tr, fr = "trainable", "frozen"
    facts = {"seeds_per_d": n,
             "diverse_with_head": {r["d"]: [r[tr]["fraction"], *r[tr]["wilson95"]] for r in rows},
             "collapsed_frozen": {r["d"]: [r[fr]["fraction"], *r[fr]["wilson95"]] for r in rows},
             "incomplete": {r["d"]: {h: r[h]["counts"]["incomplete"] for h in HEADS} for r in rows},
             "first_d_diverse_ge_0.9": first_d_above(rows, "trainable"),
             "first_d_collapsed_ge_0.9": first_d_above(rows, "frozen"),
             "first_d_collapsed_ge_0.9_among_settled": first_d_above(
                 [{"d": r["d"], fr: {"fraction": r[fr]["fraction_of_settled"] or 0.0}} for r in rows], fr)}
    return fig, js, facts
