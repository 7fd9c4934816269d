"""Fig. 4: the scaling laws of docs/model.md section 5, fitted with seed fixed effects:
``T1 ~ d^2`` (gradient flow, reduced initial law, d = 1e2 ... 1e10), ``T1 ~ 1/eta`` (steps,
discrete engine) and ``|E_fl(T2)| ~ (eta_E/eta)^(1/2)`` (gradient flow, every run to convergence).

The reduced law draws ``A = z / sqrt(d)`` with the same ``z`` for a seed at every ``d``
(``initial_law.reduced_coordinates``), so a seed's initial alignments scale exactly as
``d^(-1/2)``: the same coupling as :func:`coupled_weights` gives the discrete engine."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from .. import analysis, plotting
from ..model import initial_weights
from ..params import ModelParams, TrainParams
from .flow_runs import run_flow_many
from .plan import Plan
from .runs import Progress, no_progress, run_many

NAME = "fig4_scaling"
DATA_FORMAT = "json"

THEORY = {"T1_vs_d": 2.0, "T1_vs_eta": -1.0, "E_vs_ratio": 0.5}
BANDS = {"T1_vs_d": (1.999, 2.001), "T1_vs_eta": (-1.1, -0.9), "E_vs_ratio": (0.3, 0.7)}
"""Bands a fitted exponent must fall in (justified in docs/figures.md; tested). ``T1_vs_d``:
on ``d >= 1e6``, ``T1 / T1_pred - 1 <= 1e-5`` (docs/paper.md row 1a) moves the slope by at
most ``1e-5 / ln(10^4) ~ 1e-6``, and the solver's ``rtol = 1e-7`` less: +-1e-3 is a margin of
about 30x the largest deviation measured (3e-5)."""


def coupled_weights(model: ModelParams, seed: int) -> np.ndarray:
    """``W(0)`` with i.i.d. ``N(0, 1/d)`` entries whose feature coordinates ``z / sqrt(d)``
    reuse the same ``z`` (from ``seed``) at every ``d``: common random numbers across ``d``.

    Each ``W(0)`` has exactly the paper's law; only the coupling between different ``d`` is
    chosen, so that a seed's initial alignments scale exactly as ``d^(-1/2)``.
    """
    if model.features != "basis":
        raise ValueError("coupled_weights needs features='basis' (v_l = e_l)")
    W = initial_weights(model, seed)
    z = np.random.default_rng([seed, 0xC0DE]).standard_normal((model.m, model.L))
    W[:, :model.L] = z / math.sqrt(model.d)
    return W


def run_until_T1(models, trains, W0, progress: Progress = no_progress, *, growth=8.0, rounds=4):
    """Run until every run has a T1: the runs stopped by their cap before T1 are rerun with the
    cap multiplied by ``growth``, at most ``rounds`` times in all."""
    n = len(trains)
    res: list = [None] * n
    todo = list(range(n))
    trains = list(trains)
    for _ in range(rounds):
        out = run_many([models[i] for i in todo], [trains[i] for i in todo], [W0[i] for i in todo],
                       progress=progress)
        nxt = []
        for i, r in zip(todo, out, strict=True):
            res[i] = r
            if r["T1"] is None and r["status"] == "max_steps":
                trains[i] = replace(trains[i], max_flow_time=trains[i].max_flow_time * growth)
                nxt.append(i)
        if not nxt:
            break
        todo = nxt
    return res


def substitution_kind(r: dict) -> str:
    """How a run went through phase II (for fig 4's head-entry panel).

    ``phase2``: the sequence the theory describes, ``T1 < T2 < T3`` with a substitution
    phase at least as long as phase I (``T2 >= 2 T1``); then ``|E_fl(T2)|`` is the peak.
    ``stuck``: the leader learned ``v_1`` but the follower never learned ``v_2`` (no ``T3``;
    the run did not settle by its cap); its ``|E_fl|`` is the largest value reached.
    ``other``: anything else (the follower learned ``v_2`` alongside the leader, collapse, no leader).
    """
    T1, T2, T3 = r["T1"], r["T2"], r["T3"]
    if T1 is not None and T2 is not None and T3 is not None and T1 < T2 < T3 and T2 >= 2 * T1:
        return "phase2"
    if T1 is not None and T3 is None and r["outcome"] == "incomplete":
        return "stuck"
    return "other"


def scaling_data(plan: Plan, progress: Progress = no_progress) -> dict:
    """The three scaling experiments: ``{panel: {"x", "y", "seed", ...}}`` (see docs/figures.md)."""
    base = ModelParams()
    # T1 against d: gradient flow from the reduced initial law, each run stopped at its T1
    dims = [d for d in plan.d_values for _ in plan.d_seeds]
    seeds = [s for _ in plan.d_values for s in plan.d_seeds]
    res = run_flow_many(base, [TrainParams(eta=1.0, seed=s) for s in seeds], seeds, "reduced", dims=dims,
                        until="T1", progress=progress)
    xs = dims
    t1_d = [np.nan if r["T1"] is None else r["T1"] for r in res]
    predict = getattr(analysis, "t1_prediction", None)  # docs/model.md section 11 (when present)
    t1_pred = None if predict is None else np.array([predict(base, r["B0"]) for r in res])
    panel_d = {"x": xs, "y": np.array(t1_d), "seed": seeds, "T1_pred": t1_pred}
    # T1 (steps) against eta, d = 512 (the default)
    models, trains, xs, seeds = [], [], [], []
    for eta in plan.eta_values:
        for s in plan.eta_seeds:
            models.append(base)
            trains.append(TrainParams(eta=eta, seed=s, max_flow_time=400.0))
            xs.append(eta)
            seeds.append(s)
    res = run_until_T1(models, trains, [None] * len(trains), progress)
    t1_eta = np.array([np.nan if r["T1"] is None else float(r["T1"]) for r in res])
    panel_eta = {"x": xs, "y": t1_eta, "seed": seeds}
    # peak |E_fl| against eta_E / eta: gradient flow, every run to convergence
    trains, xs, seeds = [], [], []
    for ratio in plan.ratio_values:
        for s in plan.ratio_seeds:
            trains.append(TrainParams(eta=1.0, eta_E=ratio, seed=s))
            xs.append(ratio)
            seeds.append(s)
    res = run_flow_many(base, trains, init="materialised", progress=progress)
    peak, kind = [], []
    for r in res:
        f, l = r["follower"], r["leader"]
        peak.append(np.nan if f is None or l is None else float(np.asarray(r["peak_offdiag"])[f, l]))
        kind.append(substitution_kind(r))
    kind = np.array(kind)
    panel_ratio = {"x": xs, "y": np.array(peak), "seed": seeds, "kind": kind,
                   "censored": kind != "phase2", "alt": kind == "stuck"}
    return {"T1_vs_d": panel_d, "T1_vs_eta": panel_eta, "E_vs_ratio": panel_ratio}


def fit_scaling(data: dict, plan: Plan) -> dict:
    """Power-law fits of fig 4 with seed fixed effects.

    ``T1_vs_d`` is fitted on ``d >= plan.d_fit_min`` (``T1_vs_d_all``: every ``d``);
    ``E_vs_ratio`` on the phase-II runs with ``eta_E/eta >= plan.ratio_fit_min``
    (``E_vs_ratio_all``: every ratio; ``E_vs_ratio_stuck``: the largest ``|E_fl|`` of the runs
    whose follower never learns ``v_2``).
    """
    fits = {}
    for key, p in data.items():
        x = np.asarray(p["x"], float)
        y = np.asarray(p["y"], float)
        g = np.asarray(p["seed"])
        keep = ~np.asarray(p.get("censored", np.zeros(x.shape, bool)), bool)
        if key == "T1_vs_d":
            fits[key + "_all"] = analysis.fit_power_law(x, y, g).as_dict()
            keep &= x >= plan.d_fit_min
        if key == "E_vs_ratio":
            fits[key + "_all"] = analysis.fit_power_law(x[keep], y[keep], g[keep]).as_dict()
            keep &= x >= plan.ratio_fit_min
        fits[key] = analysis.fit_power_law(x[keep], y[keep], g[keep]).as_dict()
        if "alt" in p:
            alt = np.asarray(p["alt"], bool)
            fits[key + "_stuck"] = analysis.fit_power_law(x[alt], y[alt], g[alt]).as_dict()
    return fits


def verdict(key: str, fit: dict) -> str:
    """One sentence on how the fitted slope of panel ``key`` compares with the theory."""
    lo, hi = BANDS[key]
    th = THEORY[key]
    if not np.isfinite(fit["slope"]):
        return "no fit: too few points"
    inside = fit["ci_low"] <= th <= fit["ci_high"]
    band = lo <= fit["slope"] <= hi
    if inside:
        return f"theory {th:g} inside the 95% interval"
    if band:
        return f"theory {th:g} outside the 95% interval,\nslope within the band [{lo:g}, {hi:g}]"
    return f"DISAGREES with theory {th:g}:\nslope outside the band [{lo:g}, {hi:g}]"


def make(plan: Plan, progress: Progress = no_progress):
    """``(figure, JSON-able data, facts)`` of fig 4."""
    data = scaling_data(plan, progress)
    fits = fit_scaling(data, plan)
    kind = data["E_vs_ratio"]["kind"]
    n_phase2, n_stuck = int(np.sum(kind == "phase2")), int(np.sum(kind == "stuck"))
    panels = [
        {**data["T1_vs_d"], "fit": fits["T1_vs_d"], "theory": THEORY["T1_vs_d"],
         "fit_label": f"fit, d >= {plan.d_fit_min:.0e}", "fit_x_min": plan.d_fit_min,
         "extra_fits": [("fit, all d", fits["T1_vs_d_all"], "#7f7f7f")],
         "xlabel": "dimension d", "ylabel": r"$T_1$ (flow time $\eta\cdot$steps)",
         "title": r"$T_1$ against $d$ (gradient flow, reduced $W(0)$)",
         "verdict": verdict("T1_vs_d", fits["T1_vs_d"])},
        {**data["T1_vs_eta"], "fit": fits["T1_vs_eta"], "theory": THEORY["T1_vs_eta"],
         "xlabel": r"learning rate $\eta$", "ylabel": r"$T_1$ (steps)",
         "title": r"$T_1$ against $\eta$ ($d$ = 512)", "verdict_top": True,
         "verdict": verdict("T1_vs_eta", fits["T1_vs_eta"])},
        {**data["E_vs_ratio"], "fit": fits["E_vs_ratio"], "theory": THEORY["E_vs_ratio"],
         "extra_fits": [("fit (stuck)", fits["E_vs_ratio_stuck"], "#ff7f0e"),
                        ("fit, every ratio", fits["E_vs_ratio_all"], "#7f7f7f")],
         "fit_label": f"fit, ratio >= {plan.ratio_fit_min:g}", "fit_x_min": plan.ratio_fit_min,
         "xlabel": r"$\eta_E / \eta$", "ylabel": r"$|E_{fl}(T_2)|$ (peak of the head entry)",
         "title": r"$|E_{fl}(T_2)|$ against $\eta_E/\eta$ (gradient flow, to convergence)",
         "point_label": f"phase II run ($T_1 < T_2 < T_3$), {n_phase2}",
         "alt_label": f"follower never learns $v_2$: largest $|E_{{fl}}|$, {n_stuck}",
         "censored_label": "other runs (not fitted)",
         "verdict": verdict("E_vs_ratio", fits["E_vs_ratio"])},
    ]
    pred = data["T1_vs_d"].get("T1_pred")
    ratio = None
    if pred is not None:  # T1 / T1_pred against d: tends to 1 (docs/model.md section 11)
        ratio = np.asarray(data["T1_vs_d"]["y"], float) / pred
        panels.append({"x": data["T1_vs_d"]["x"], "y": ratio, "seed": data["T1_vs_d"]["seed"], "ratio": True,
                       "xlabel": "dimension d", "ylabel": r"$T_1 / T_{1,\mathrm{pred}}$",
                       "title": r"$T_1$ over the leading-order prediction"})
    fig = plotting.scaling_figure(panels)
    js = {}
    for key, p in data.items():
        entry = {"x": np.asarray(p["x"]).tolist(),
                 "y": [None if not np.isfinite(v) else float(v) for v in p["y"]],
                 "seed": list(p["seed"]), "fit": fits[key], "theory_slope": THEORY[key], "band": BANDS[key]}
        if "kind" in p:
            entry["kind"] = np.asarray(p["kind"]).tolist()
            entry["fit_stuck"] = fits[key + "_stuck"]
            entry["fit_all"] = fits[key + "_all"]
        js[key] = entry
    if pred is not None:
        js["T1_vs_d"]["T1_pred"] = [float(v) for v in pred]
    facts = {key: {**fits[key], "theory": THEORY[key], "band": BANDS[key],
                   "missing": int(np.sum(~np.isfinite(np.asarray(data[key]["y"], float))))} for key in THEORY}
    facts["E_vs_ratio"].update({"phase2_runs": n_phase2, "stuck_runs": n_stuck,
                                "stuck_fit": fits["E_vs_ratio_stuck"], "fit_from_ratio": plan.ratio_fit_min,
                                "all_ratio_fit": fits["E_vs_ratio_all"]})
    facts["T1_vs_d"].update({"fit_from_d": plan.d_fit_min, "all_d_fit": fits["T1_vs_d_all"],
                             "seeds_per_d": len(plan.d_seeds),
                             "d_range": [min(plan.d_values), max(plan.d_values)]})
    if ratio is not None:
        x = np.asarray(data["T1_vs_d"]["x"], float)
        top = ratio[(x == x.max()) & np.isfinite(ratio)]
        facts["T1_vs_d"]["T1_over_pred_at_largest_d"] = {
            "d": float(x.max()), "geometric_mean": float(np.exp(np.mean(np.log(top)))) if top.size else None,
            "min": float(top.min()) if top.size else None, "max": float(top.max()) if top.size else None}
    return fig, js, facts
