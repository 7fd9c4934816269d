"""Fig. 5: the phase diagram: outcome counts over ``alpha_1/alpha_2`` x ``eta_E/eta``
(trainable head), the frozen-head row, and the default parameters over many seeds."""

from __future__ import annotations

import numpy as np

from .. import plotting
from ..params import ModelParams, TrainParams
from ..status import OUTCOMES
from .plan import Plan
from .runs import Progress, no_progress, run_many

NAME = "fig5_phase_diagram"
DATA_FORMAT = "json"


def grid_outcomes(plan: Plan, progress: Progress = no_progress) -> dict:
    """Outcome counts over ``alpha_1/alpha_2`` x ``eta_E/eta`` (trainable head), the frozen
    row, and the default parameters over ``plan.default_seeds`` (one :func:`run_many` call):
    ``{"counts": {outcome: (n_eta, n_alpha)}, "frozen": {outcome: (n_alpha,)},
    "default": {"trainable" | "frozen": {outcome: n}}}``."""
    models, trains, keys = [], [], []

    def add(model, key, **kw):
        models.append(model)
        trains.append(TrainParams(eta=plan.grid_eta, max_flow_time=plan.grid_cap, **kw))
        keys.append(key)

    for ka, ra in enumerate(plan.alpha_ratios):
        model = ModelParams(alpha=(plan.alpha1, plan.alpha1 / ra))
        for ke, re_ in enumerate(plan.eta_ratios):
            for s in plan.grid_seeds:
                add(model, ("grid", ke, ka), eta_E=re_ * plan.grid_eta, seed=s)
        for s in plan.grid_seeds:
            add(model, ("frozen", 0, ka), head="frozen", seed=s)
    for head in ("trainable", "frozen"):
        for s in plan.default_seeds:
            add(ModelParams(), ("default", head, 0), seed=s,
                head="offdiag" if head == "trainable" else "frozen")
    res = run_many(models, trains, progress=progress)
    ne, na = len(plan.eta_ratios), len(plan.alpha_ratios)
    counts = {oc: np.zeros((ne, na), int) for oc in OUTCOMES}
    frozen = {oc: np.zeros(na, int) for oc in OUTCOMES}
    default = {"trainable": dict.fromkeys(OUTCOMES, 0), "frozen": dict.fromkeys(OUTCOMES, 0)}
    for (kind, a, b), r in zip(keys, res, strict=True):
        oc = r["outcome"]
        if kind == "grid":
            counts[oc][a, b] += 1
        elif kind == "frozen":
            frozen[oc][b] += 1
        else:
            default[a][oc] += 1
    return {"counts": counts, "frozen": frozen, "default": default}


def make(plan: Plan, progress: Progress = no_progress):
    """``(figure, JSON-able data, facts)`` of fig 5."""
    g = grid_outcomes(plan, progress)
    n = len(plan.grid_seeds)
    note = (f"population engine, d = 512, P = 16, k = 4, eta = {plan.grid_eta:g}, {n} seeds per cell; "
            f"runs not settled by flow time {plan.grid_cap:g} are 'incomplete'")
    fig = plotting.phase_diagram_figure(plan.alpha_ratios, plan.eta_ratios, g["counts"], g["frozen"], n,
                                        default_counts=g["default"], note=note, alpha1=plan.alpha1)
    js = {"alpha1": plan.alpha1, "alpha_ratios": list(plan.alpha_ratios), "eta_ratios": list(plan.eta_ratios),
          "seeds_per_cell": n, "eta": plan.grid_eta, "flow_time_cap": plan.grid_cap,
          "counts": {oc: v.tolist() for oc, v in g["counts"].items()},
          "frozen_counts": {oc: v.tolist() for oc, v in g["frozen"].items()},
          "default_parameters": {"seeds": len(plan.default_seeds), **g["default"]}}
    nd = len(plan.default_seeds)
    facts = {"default_diverse_fraction": {h: g["default"][h]["diverse"] / nd
                                          for h in ("trainable", "frozen")},
             "default_counts": g["default"], "seeds": nd, "eta": plan.grid_eta, "cap": plan.grid_cap}
    return fig, js, facts
