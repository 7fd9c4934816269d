"""Fig. 5: the phase diagram at convergence: outcome counts over ``alpha_1/alpha_2`` x
``eta_E/eta`` (trainable head), the frozen-head row, and the default parameters over many
seeds, every run integrated by the gradient flow until it settles (docs/model.md section 11).

The outcomes are those of :data:`~.flow_runs.FLOW_OUTCOMES`: ``vanishing`` (the flow's stop
rule, docs/model.md section 10) is its own outcome; ``incomplete`` is left for the runs that
do not settle within the step budget (counted and explained in docs/paper.md, appendix).
"""

from __future__ import annotations

import numpy as np

from .. import plotting
from ..params import ModelParams, TrainParams
from ..stats import wilson_interval
from .flow_runs import FLOW_OUTCOMES, run_flow_many
from .plan import Plan
from .runs import Progress, no_progress

NAME = "fig5_phase_diagram"
DATA_FORMAT = "json"


def grid_outcomes(plan: Plan, progress: Progress = no_progress) -> dict:
    """Outcome counts over ``alpha_1/alpha_2`` x ``eta_E/eta`` (trainable head), the frozen
    row, and the default parameters over ``plan.default_seeds`` (one :func:`run_flow_many` call):
    ``{"counts": {outcome: (n_eta, n_alpha)}, "frozen": {outcome: (n_alpha,)},
    "default": {"trainable" | "frozen": {outcome: n}}, "statuses": {status: n}}``."""
    models, trains, keys = [], [], []

    def add(model, key, **kw):
        models.append(model)
        trains.append(TrainParams(eta=1.0, **kw))  # flow time: only eta_E / eta matters
        keys.append(key)

    for ka, ra in enumerate(plan.alpha_ratios):
        model = ModelParams(alpha=(plan.alpha1, plan.alpha1 / ra))
        for ke, re_ in enumerate(plan.eta_ratios):
            for s in plan.grid_seeds:
                add(model, ("grid", ke, ka), eta_E=re_, seed=s)
        for s in plan.grid_seeds:
            add(model, ("frozen", 0, ka), head="frozen", seed=s)
    default_ratio = TrainParams().eta_E / TrainParams().eta
    for head in ("trainable", "frozen"):
        for s in plan.default_seeds:
            add(ModelParams(), ("default", head, 0), seed=s, eta_E=default_ratio,
                head="offdiag" if head == "trainable" else "frozen")
    res = run_flow_many(models, trains, init="materialised", progress=progress)
    ne, na = len(plan.eta_ratios), len(plan.alpha_ratios)
    counts = {oc: np.zeros((ne, na), int) for oc in FLOW_OUTCOMES}
    frozen = {oc: np.zeros(na, int) for oc in FLOW_OUTCOMES}
    default = {"trainable": dict.fromkeys(FLOW_OUTCOMES, 0), "frozen": dict.fromkeys(FLOW_OUTCOMES, 0)}
    statuses: dict = {}
    incomplete = []
    for (kind, a, b), r in zip(keys, res, strict=True):
        oc = r["outcome"]
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        if oc == "incomplete":
            incomplete.append({"where": [kind, a, b], "seed": r["seed"], "status": r["status"],
                               "t": r["t"], "features": r["features"]})
        if kind == "grid":
            counts[oc][a, b] += 1
        elif kind == "frozen":
            frozen[oc][b] += 1
        else:
            default[a][oc] += 1
    return {"counts": counts, "frozen": frozen, "default": default, "statuses": statuses,
            "incomplete_runs": incomplete}


def make(plan: Plan, progress: Progress = no_progress):
    """``(figure, JSON-able data, facts)`` of fig 5."""
    g = grid_outcomes(plan, progress)
    n = len(plan.grid_seeds)
    note = (f"gradient flow to convergence, d = 512, P = 16, k = 4, {n} seeds per cell; "
            f"'incomplete': not settled by the flow-time cap (1e12 x the T1 prediction)")
    fig = plotting.phase_diagram_figure(plan.alpha_ratios, plan.eta_ratios, g["counts"], g["frozen"], n,
                                        default_counts=g["default"], note=note, alpha1=plan.alpha1,
                                        outcomes=FLOW_OUTCOMES)
    nd = len(plan.default_seeds)
    heads = ("trainable", "frozen")
    js = {"engine": "flow", "init": "materialised", "alpha1": plan.alpha1,
          "alpha_ratios": list(plan.alpha_ratios), "eta_ratios": list(plan.eta_ratios),
          "seeds_per_cell": n,
          "outcomes": list(FLOW_OUTCOMES),
          "counts": {oc: v.tolist() for oc, v in g["counts"].items()},
          "wilson95": {oc: [a.tolist() for a in wilson_interval(v, n)] for oc, v in g["counts"].items()},
          "frozen_counts": {oc: v.tolist() for oc, v in g["frozen"].items()},
          "frozen_wilson95": {oc: [a.tolist() for a in wilson_interval(v, n)]
                              for oc, v in g["frozen"].items()},
          "default_parameters": {"seeds": nd, **g["default"],
                                 "wilson95": {h: {oc: list(wilson_interval(c, nd))
                                                  for oc, c in g["default"][h].items()}
                                              for h in heads}},
          "statuses": g["statuses"], "incomplete_runs": g["incomplete_runs"]}
    facts = {"default_diverse_fraction": {h: g["default"][h]["diverse"] / nd for h in heads},
             "default_collapsed_fraction": {h: g["default"][h]["collapsed"] / nd for h in heads},
             "default_counts": g["default"], "seeds": nd, "engine": "flow",
             "grid_totals": {oc: int(v.sum()) for oc, v in g["counts"].items()},
             "frozen_totals": {oc: int(v.sum()) for oc, v in g["frozen"].items()},
             "statuses": g["statuses"], "incomplete": len(g["incomplete_runs"])}
    return fig, js, facts
