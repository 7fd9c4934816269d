"""``theory-sim figures``: regenerate every theoretical figure from scratch, simulations included.

Each figure ``figN_*.png`` comes with the small data file it was drawn from
(``figN_*.npz`` or ``.json``), and ``figures.json`` records the parameters, the
measured numbers quoted in ``docs/figures.md`` and the wall time. Every file is
written atomically; the simulations use fixed seeds, so a rerun gives the same
numbers. ``--quick`` uses smaller grids and fewer seeds through the same code.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .. import analysis, plotting
from ..driver import simulate
from ..io import atomic_write, write_json
from ..model import initial_weights
from ..params import ModelParams, TrainParams
from . import EXIT_INTERRUPTED, UsageError
from .progress import ProgressBar
from .signals import GracefulStop

OUTCOMES = ("diverse", "collapsed", "incomplete")
FIGURES = {
    1: "fig1_alignment",
    2: "fig2_head",
    3: "fig3_substitution_acceleration",
    4: "fig4_scaling",
    5: "fig5_phase_diagram",
    6: "fig6_sgd_vs_population",
    7: "fig7_many_neurons",
}


@dataclass(frozen=True)
class Plan:
    """Everything the figures simulate. ``FULL`` and ``QUICK`` differ only in sizes."""

    name: str
    # figs 1-3: one run at the default parameters (seed 1), head trainable and frozen
    story_eta: float = 1e-2
    story_cap: float = 3e4
    story_record: int = 10000
    # fig 4 (population engine, flow-time caps doubled until T1 is reached)
    d_values: tuple = (1024, 2048, 4096, 8192, 16384, 32768)
    d_seeds: tuple = tuple(range(1, 9))
    d_eta: float = 0.1
    d_fit_min: int = 8192
    """T1 = a d^2 + b: the exponent is fitted where a d^2 >> b (b ~ 70, see docs/figures.md)."""
    eta_values: tuple = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)
    eta_seeds: tuple = tuple(range(1, 9))
    ratio_values: tuple = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
    ratio_seeds: tuple = tuple(range(1, 17))
    ratio_eta: float = 0.1
    ratio_cap: float = 3e4
    # fig 5
    alpha1: float = 6.0
    alpha_ratios: tuple = (1.25, 1.5, 1.75, 2.0, 2.5, 3.0)
    eta_ratios: tuple = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
    grid_seeds: tuple = tuple(range(1, 17))
    default_seeds: tuple = tuple(range(1, 65))
    grid_eta: float = 0.1
    grid_cap: float = 3e4
    # fig 6 (sgd engine: small d so that the whole story fits in a short flow time)
    sgd_d: int = 32
    sgd_w0_seed: int = 2
    sgd_batches: tuple = (256, 1024, 4096)
    sgd_seeds: tuple = (101, 102, 103)
    sgd_eta: float = 0.04
    sgd_flow: float = 120.0
    # fig 7
    many_alpha: tuple = (6.0, 4.5, 3.5, 3.0)
    many_m: int = 8
    many_seed: int = 1
    many_eta: float = 0.05
    many_cap: float = 2e4


FULL = Plan(name="full")
QUICK = Plan(
    name="quick",
    story_record=3000,
    d_values=(1024, 4096, 16384), d_seeds=(4, 5, 8), d_fit_min=4096,
    eta_values=(3e-3, 3e-2, 3e-1), eta_seeds=(1, 2, 3),
    ratio_values=(0.01, 0.1, 0.5), ratio_seeds=(1, 5), ratio_cap=1e4,
    alpha_ratios=(1.5, 2.0, 3.0), eta_ratios=(0.01, 0.1, 1.0), grid_seeds=(1, 2, 3, 4),
    default_seeds=tuple(range(1, 9)), grid_cap=1e4,
    sgd_batches=(128, 512), sgd_seeds=(101, 102), sgd_flow=100.0,
    many_cap=4e3,
)
THEORY = {"T1_vs_d": 2.0, "T1_vs_eta": -1.0, "E_vs_ratio": 0.5}
BANDS = {"T1_vs_d": (1.6, 2.2), "T1_vs_eta": (-1.1, -0.9), "E_vs_ratio": (0.3, 0.7)}
"""Bands a fitted exponent must fall in (justified in docs/figures.md; tested)."""


def add_parser(sub) -> None:
    p = sub.add_parser("figures", help="regenerate every figure (simulations included)",
                       description=__doc__.splitlines()[0])
    p.add_argument("--out", default="figures", help="output directory (default figures/)")
    p.add_argument("--quick", action="store_true",
                   help="smaller grids and fewer seeds, same code paths (about a minute)")
    p.add_argument("--only", default=None,
                   help="comma-separated figure numbers to make, e.g. 1,4 (default: all)")
    p.add_argument("--jobs", type=int, default=None,
                   help="worker processes when theory_sim.batched is unavailable (default: CPU count)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_figures)


def parse_only(text: str | None) -> list[int]:
    if text is None:
        return sorted(FIGURES)
    try:
        nums = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise UsageError(f"--only takes figure numbers 1-7 separated by commas (got {text!r})") from None
    bad = [n for n in nums if n not in FIGURES]
    if bad or not nums:
        raise UsageError(f"--only takes figure numbers 1-7 separated by commas (got {text!r})")
    return nums


# ---------------------------------------------------------------- progress

class Progress:
    """One bar over the whole command: ``units`` of work, advanced by each simulation.

    Also carries ``jobs``, the worker processes of :func:`run_many`'s fallback.
    """

    def __init__(self, total: float, enabled: bool, jobs: int | None = None):
        self.bar = ProgressBar("figures", enabled=enabled)
        self.jobs = jobs
        self.total = total
        self.done = 0.0
        self.text = ""

    def stage(self, text: str):
        self.text = text
        self.bar(int(self.done), int(self.total), text)

    def add(self, units: float):
        self.done += units
        self.bar(int(self.done), int(self.total), self.text)

    def finish(self):
        self.bar(int(self.total), int(self.total), "done", final=True)


# ---------------------------------------------------------------- many population runs

def _summary_of(run, train: TrainParams) -> dict:
    """What ``batched.simulate_many`` reports for one run, from a recorded :class:`Run`."""
    pt = analysis.phase_times(run, train.align_threshold)
    return {**pt.as_dict(), "status": run.status, "steps": int(run.steps[-1]),
            "flow_time": float(run.steps[-1] * train.eta),
            "peak_offdiag": analysis.peak_offdiag(run),
            "alignment": np.abs(run.alignment[-1]),
            "outcome": analysis.outcome(run, train.align_threshold, cap_incomplete=True)}


def _simulate_summary(job) -> dict:
    model, train, W0 = job
    return _summary_of(simulate(model, replace(train, record=20000), W0=W0), train)


def run_many(models, trains, W0=None, *, progress=None, jobs: int | None = None) -> list[dict]:
    """Population runs ``(models[i], trains[i])`` -> one summary dict each (outcome, phase times
    in steps, leader/follower, peak ``|E_jr|``); the one function behind figs 4 and 5.

    Uses ``theory_sim.batched.simulate_many`` (all runs in one numba call, events at every
    step) when it is importable; otherwise a loop over :func:`simulate` on ``jobs`` worker
    processes (events at recorded points, 20000 per run). Either way a run stopped by
    its flow-time cap is ``incomplete``. ``progress(n)`` is called with newly finished runs.
    """
    n = len(trains)
    models = list(models) if isinstance(models, (list, tuple)) else [models] * n
    W0 = [None] * n if W0 is None else list(W0)
    try:
        from ..batched import simulate_many
    except ImportError:
        simulate_many = None
    if simulate_many is not None:
        seen = [0]

        def cb(done, total):
            if progress is not None and done > seen[0]:
                progress(done - seen[0])
                seen[0] = done

        out = simulate_many(models, trains, W0=W0 if any(w is not None for w in W0) else None, progress=cb)
        if progress is not None and n > seen[0]:
            progress(n - seen[0])
        return out
    job_list = list(zip(models, trains, W0, strict=False))
    jobs = jobs or os.cpu_count() or 1
    if jobs <= 1 or n <= 1:
        out = []
        for job in job_list:
            out.append(_simulate_summary(job))
            if progress is not None:
                progress(1)
        return out
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # never fork a process that holds OpenMP threads
    out = []
    with ctx.Pool(min(jobs, n)) as pool:
        for res in pool.imap(_simulate_summary, job_list, chunksize=max(1, n // (8 * jobs))):
            out.append(res)
            if progress is not None:
                progress(1)
    return out


# ---------------------------------------------------------------- figs 1-3: the story

def story_runs(plan: Plan, progress) -> dict:
    model = ModelParams()
    out = {}
    for head in ("offdiag", "frozen"):
        train = TrainParams(eta=plan.story_eta, head=head, seed=1, max_flow_time=plan.story_cap,
                            record=plan.story_record)
        out[head] = simulate(model, train)
        progress.add(2)
    return out


def _story_arrays(run, prefix: str) -> dict:
    pt = analysis.phase_times(run)
    times = np.array([np.nan if v is None else v for v in (pt.T1, pt.T2, pt.T3, pt.T4)], float)
    return {f"{prefix}_flow_time": run.flow_time, f"{prefix}_alignment": run.alignment,
            f"{prefix}_E": run.E, f"{prefix}_phase_times_steps": times}


def fig1(story, plan):
    runs = [story["offdiag"], story["frozen"]]
    fig = plotting.alignment_figure(runs, ["trainable head (off-diagonal)", "frozen head E = I"])
    data = {**_story_arrays(runs[0], "trainable"), **_story_arrays(runs[1], "frozen"),
            "eta": plan.story_eta}
    facts = {}
    for key, run in zip(("trainable", "frozen"), runs, strict=False):
        pt = analysis.phase_times(run)
        facts[key] = {"outcome": analysis.outcome(run), "status": run.status,
                      "phase_times_flow": {k: (None if v is None else v * run.eta)
                                           for k, v in pt.as_dict().items() if k.startswith("T")},
                      "leader": pt.leader, "follower": pt.follower,
                      "final_alignment": np.abs(run.alignment[-1]).tolist()}
    return fig, data, facts


def fig2(story, plan):
    run = story["offdiag"]
    fig = plotting.head_figure(run)
    pt = analysis.phase_times(run)
    hd = analysis.head_distance(run)
    facts = {"peak_E_follower_leader": float(np.abs(run.E[:, pt.follower, pt.leader]).max()),
             "peak_offdiag": analysis.peak_offdiag(run).tolist(),
             "final_head_distance": float(hd[-1])}
    data = {"flow_time": run.flow_time, "E": run.E, "head_distance": hd}
    return fig, data, facts


def fig3(story, plan):
    run = story["offdiag"]
    sub = analysis.substitution_ratio(run)
    acc = analysis.acceleration_factor(run)
    acc1 = analysis.acceleration_factor(run, feature=0)
    pt = analysis.phase_times(run)
    fig = plotting.substitution_acceleration_figure(run, sub, acc, acc1)
    t = run.steps
    between = np.zeros(t.shape, bool)
    if pt.T1 is not None and pt.T3 is not None:
        between = (t > pt.T1) & (t < pt.T3)
    facts = {}
    if between.any():
        facts = {"substitution_ratio_at_T2": float(sub[np.searchsorted(t, pt.T2)]) if pt.T2 else None,
                 "substitution_ratio_median_T1_T3": float(np.median(sub[between])),
                 "acceleration_v2_median_T1_T3": float(np.median(acc[between])),
                 "acceleration_v2_range_T1_T3": [float(acc[between].min()), float(acc[between].max())],
                 "acceleration_v1_median_T1_T3": float(np.median(acc1[between]))}
    data = {"flow_time": run.flow_time, "substitution_ratio": sub, "acceleration_factor_v2": acc,
            "acceleration_factor_v1": acc1}
    return fig, data, facts


# ---------------------------------------------------------------- fig 4: scaling

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


def _until_T1(models, trains, W0, progress, *, growth=8.0, rounds=4):
    """Run until every run has a T1 (caps multiplied by ``growth``, at most ``rounds`` times)."""
    n = len(trains)
    res: list = [None] * n
    todo = list(range(n))
    trains = list(trains)
    for _ in range(rounds):
        out = run_many([models[i] for i in todo], [trains[i] for i in todo], [W0[i] for i in todo],
                       progress=progress.add, jobs=progress.jobs)
        nxt = []
        for i, r in zip(todo, out, strict=False):
            res[i] = r
            if r["T1"] is None and r["status"] == "max_steps":
                trains[i] = replace(trains[i], max_flow_time=trains[i].max_flow_time * growth)
                nxt.append(i)
        if not nxt:
            break
        todo = nxt
    return res


def scaling_data(plan: Plan, progress) -> dict:
    """The three scaling experiments of fig 4 (see docs/figures.md)."""
    base = ModelParams()
    # T1 against d (coupled initialisation), one d after the other: T1(d) = a d^2 + b grows
    # at most like d^2, so the cap for the next d is (d'/d)^2 T1(d) (plus margin), which
    # keeps the runs from going on long after T1
    xs, seeds, t1_d = [], [], []
    prev = {}
    for d in sorted(plan.d_values):
        model = replace(base, d=d)
        trains, W0 = [], []
        for s in plan.d_seeds:
            cap = 200 + 300 * (d / 1024) ** 2
            if s in prev:
                cap = 1.1 * (d / prev[s][0]) ** 2 * prev[s][1] + 50
            trains.append(TrainParams(eta=plan.d_eta, seed=s, max_flow_time=cap))
            W0.append(coupled_weights(model, s))
        res = _until_T1([model] * len(trains), trains, W0, progress)
        for s, r in zip(plan.d_seeds, res, strict=True):
            t1 = np.nan if r["T1"] is None else r["T1"] * plan.d_eta
            if np.isfinite(t1):
                prev[s] = (d, t1)
            xs.append(d)
            seeds.append(s)
            t1_d.append(t1)
    panel_d = {"x": xs, "y": np.array(t1_d), "seed": seeds}
    # T1 (steps) against eta, d = 512 (the default)
    models, trains, xs, seeds = [], [], [], []
    for eta in plan.eta_values:
        for s in plan.eta_seeds:
            models.append(base)
            trains.append(TrainParams(eta=eta, seed=s, max_flow_time=400.0))
            xs.append(eta)
            seeds.append(s)
    res = _until_T1(models, trains, [None] * len(trains), progress)
    t1_eta = np.array([np.nan if r["T1"] is None else float(r["T1"]) for r in res])
    panel_eta = {"x": xs, "y": t1_eta, "seed": seeds}
    # peak |E_fl| against eta_E / eta
    trains, xs, seeds = [], [], []
    for ratio in plan.ratio_values:
        for s in plan.ratio_seeds:
            trains.append(TrainParams(eta=plan.ratio_eta, eta_E=ratio * plan.ratio_eta, seed=s,
                                      max_flow_time=plan.ratio_cap))
            xs.append(ratio)
            seeds.append(s)
    res = run_many(base, trains, progress=progress.add, jobs=progress.jobs)
    peak, kind = [], []
    for r in res:
        f, l = r["follower"], r["leader"]
        peak.append(np.nan if f is None or l is None else float(np.asarray(r["peak_offdiag"])[f, l]))
        kind.append(substitution_kind(r))
    kind = np.array(kind)
    panel_ratio = {"x": xs, "y": np.array(peak), "seed": seeds, "kind": kind,
                   "censored": kind != "phase2", "alt": kind == "stuck"}
    return {"T1_vs_d": panel_d, "T1_vs_eta": panel_eta, "E_vs_ratio": panel_ratio}


def substitution_kind(r: dict) -> str:
    """How a run went through phase II (for fig 4's head-entry panel).

    ``phase2``: the sequence the theory describes, ``T1 < T2 < T3`` with a substitution
    phase at least as long as phase I (``T2 >= 2 T1``); then ``|E_fl(T2)|`` is the peak.
    ``stuck``: the leader learned ``v_1`` but the follower had not learned ``v_2`` by the
    cap (no ``T3``); its ``|E_fl|`` is the value reached by the cap. ``other``: anything
    else (the follower learned ``v_2`` alongside the leader, collapse, no leader).
    """
    T1, T2, T3 = r["T1"], r["T2"], r["T3"]
    if T1 is not None and T2 is not None and T3 is not None and T1 < T2 < T3 and T2 >= 2 * T1:
        return "phase2"
    if T1 is not None and T3 is None and r["outcome"] == "incomplete":
        return "stuck"
    return "other"


def fit_scaling(data: dict, plan: Plan) -> dict:
    """Power-law fits of fig 4 with seed fixed effects.

    ``T1_vs_d`` is fitted on ``d >= plan.d_fit_min`` (``T1_vs_d_all``: every ``d``);
    ``E_vs_ratio`` on the phase-II runs (``E_vs_ratio_stuck``: the stuck runs' values at the cap).
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
        fits[key] = analysis.fit_power_law(x[keep], y[keep], g[keep]).as_dict()
        if "alt" in p:
            alt = np.asarray(p["alt"], bool)
            fits[key + "_stuck"] = analysis.fit_power_law(x[alt], y[alt], g[alt]).as_dict()
    return fits


def _verdict(key, fit) -> str:
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


def fig4(plan, progress):
    data = scaling_data(plan, progress)
    fits = fit_scaling(data, plan)
    kind = data["E_vs_ratio"]["kind"]
    n_phase2, n_stuck = int(np.sum(kind == "phase2")), int(np.sum(kind == "stuck"))
    panels = [
        {**data["T1_vs_d"], "fit": fits["T1_vs_d"], "theory": THEORY["T1_vs_d"],
         "fit_label": f"fit, d >= {plan.d_fit_min}", "fit_x_min": plan.d_fit_min,
         "extra_fits": [("fit, all d", fits["T1_vs_d_all"], "#7f7f7f")],
         "xlabel": "dimension d", "ylabel": r"$T_1$ (flow time $\eta\cdot$steps)",
         "title": rf"$T_1$ against $d$ ($\eta$ = {plan.d_eta:g}, coupled $W(0)$)",
         "verdict": _verdict("T1_vs_d", fits["T1_vs_d"])},
        {**data["T1_vs_eta"], "fit": fits["T1_vs_eta"], "theory": THEORY["T1_vs_eta"],
         "xlabel": r"learning rate $\eta$", "ylabel": r"$T_1$ (steps)",
         "title": r"$T_1$ against $\eta$ ($d$ = 512)", "verdict_top": True,
         "verdict": _verdict("T1_vs_eta", fits["T1_vs_eta"])},
        {**data["E_vs_ratio"], "fit": fits["E_vs_ratio"], "theory": THEORY["E_vs_ratio"],
         "extra_fits": [("fit (stuck)", fits["E_vs_ratio_stuck"], "#ff7f0e")],
         "xlabel": r"$\eta_E / \eta$", "ylabel": r"$|E_{fl}(T_2)|$ (peak of the head entry)",
         "title": rf"$|E_{{fl}}(T_2)|$ against $\eta_E/\eta$ ($\eta$ = {plan.ratio_eta:g})",
         "point_label": f"phase II run ($T_1 < T_2 < T_3$), {n_phase2}",
         "alt_label": f"follower stuck: $|E_{{fl}}|$ at the cap, {n_stuck}",
         "censored_label": "other runs (not fitted)",
         "verdict": _verdict("E_vs_ratio", fits["E_vs_ratio"])},
    ]
    fig = plotting.scaling_figure(panels)
    js = {}
    for key, p in data.items():
        entry = {"x": np.asarray(p["x"]).tolist(),
                 "y": [None if not np.isfinite(v) else float(v) for v in p["y"]],
                 "seed": list(p["seed"]), "fit": fits[key], "theory_slope": THEORY[key], "band": BANDS[key]}
        if "kind" in p:
            entry["kind"] = np.asarray(p["kind"]).tolist()
            entry["fit_stuck"] = fits[key + "_stuck"]
        js[key] = entry
    facts = {key: {**fits[key], "theory": THEORY[key], "band": BANDS[key],
                   "missing": int(np.sum(~np.isfinite(np.asarray(data[key]["y"], float))))} for key in THEORY}
    facts["E_vs_ratio"].update({"phase2_runs": n_phase2, "stuck_runs": n_stuck,
                                "stuck_fit": fits["E_vs_ratio_stuck"]})
    facts["T1_vs_d"].update({"fit_from_d": plan.d_fit_min, "all_d_fit": fits["T1_vs_d_all"]})
    return fig, js, facts


# ---------------------------------------------------------------- fig 5: phase diagram

def grid_outcomes(plan: Plan, progress) -> dict:
    """Outcome counts over ``alpha_1/alpha_2`` x ``eta_E/eta`` (trainable head), the frozen
    row, and the default parameters over ``plan.default_seeds`` (one :func:`run_many` call)."""
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
    res = run_many(models, trains, progress=progress.add, jobs=progress.jobs)
    ne, na = len(plan.eta_ratios), len(plan.alpha_ratios)
    counts = {oc: np.zeros((ne, na), int) for oc in OUTCOMES}
    frozen = {oc: np.zeros(na, int) for oc in OUTCOMES}
    default = {"trainable": dict.fromkeys(OUTCOMES, 0), "frozen": dict.fromkeys(OUTCOMES, 0)}
    for (kind, a, b), r in zip(keys, res, strict=False):
        oc = r["outcome"]
        if kind == "grid":
            counts[oc][a, b] += 1
        elif kind == "frozen":
            frozen[oc][b] += 1
        else:
            default[a][oc] += 1
    return {"counts": counts, "frozen": frozen, "default": default}


def fig5(plan, progress):
    g = grid_outcomes(plan, progress)
    n = len(plan.grid_seeds)
    note = (f"population engine, d = 512, P = 16, k = 4, eta = {plan.grid_eta:g}, {n} seeds per cell; "
            f"runs not settled by flow time {plan.grid_cap:g} are 'incomplete'")
    fig = plotting.phase_diagram_figure(plan.alpha_ratios, plan.eta_ratios, g["counts"], g["frozen"], n,
                                        default_counts=g["default"], note=note)
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


# ---------------------------------------------------------------- fig 6: SGD against population

def _single_thread():
    """numba on one thread while the SGD runs of fig 6 go (restored afterwards): many short
    parallel kernel calls stall on a busy machine, and the results do not depend on it."""
    import contextlib

    import numba

    @contextlib.contextmanager
    def ctx():
        before = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            yield
        finally:
            numba.set_num_threads(before)

    return ctx()


def sgd_engine() -> str:
    """``sgd-fast`` (the ``sgd`` engine's exact-in-distribution draw, MODEL.md section 8: same
    law, O(N P m^2 + m^2 d) per step) where this version has it, else ``sgd``."""
    from ..params import ENGINES

    return "sgd-fast" if "sgd-fast" in ENGINES else "sgd"


def fig6(plan, progress):
    model = ModelParams(d=plan.sgd_d)
    W0 = initial_weights(model, plan.sgd_w0_seed)
    steps = int(round(plan.sgd_flow / plan.sgd_eta))
    record = 301
    pop = simulate(model, TrainParams(eta=plan.sgd_eta, seed=plan.sgd_w0_seed, steps=steps, record=record),
                   W0=W0)
    progress.add(1)
    pt = analysis.phase_times(pop)
    leader, follower = (pt.leader, pt.follower) if pt.leader is not None else (0, 1)
    sgd = {}
    with _single_thread():
        for batch in plan.sgd_batches:
            runs = []
            for s in plan.sgd_seeds:
                train = TrainParams(eta=plan.sgd_eta, engine=sgd_engine(), batch=batch, seed=s, steps=steps,
                                    record=record)
                runs.append(simulate(model, train, W0=W0))
                progress.add(batch / 256)
            sgd[batch] = runs
    note = (f"engine {sgd_engine()}; d = {plan.sgd_d}, P = 16, k = 4, alpha = (6, 3), "
            f"eta = {plan.sgd_eta:g}, eta_E = eta/10, "
            f"{steps} steps; every run starts from the same W(0) (seed {plan.sgd_w0_seed}); "
            f"bands: min-max over {len(plan.sgd_seeds)} SGD seeds")
    fig = plotting.sgd_figure(pop, sgd, leader=leader, follower=follower, note=note)
    data = {"population_flow_time": pop.flow_time, "population_alignment": pop.alignment,
            "population_E": pop.E}
    pop_times = {k: (None if v is None else v * plan.sgd_eta) for k, v in pt.as_dict().items() if k[0] == "T"}
    facts = {"population": {"outcome": analysis.outcome(pop), "phase_times_flow": pop_times}, "sgd": {},
             "engine": sgd_engine()}
    for batch, runs in sgd.items():
        n = min(r.n_points for r in runs + [pop])
        data[f"sgd{batch}_flow_time"] = runs[0].flow_time[:n]
        data[f"sgd{batch}_alignment"] = np.stack([r.alignment[:n] for r in runs])
        data[f"sgd{batch}_E"] = np.stack([r.E[:n] for r in runs])
        times = [analysis.phase_times(r).as_dict() for r in runs]
        c_pop = np.abs(pop.alignment[:n])
        dev = [float(np.abs(np.abs(r.alignment[:n]) - c_pop).max()) for r in runs]
        entry = {"max_alignment_deviation": dev,
                 "max_head_deviation": [float(np.abs(r.E[:n] - pop.E[:n]).max()) for r in runs],
                 "outcomes": [analysis.outcome(r) for r in runs]}
        for k in ("T1", "T3"):
            entry[f"{k}_flow"] = [None if t[k] is None else t[k] * plan.sgd_eta for t in times]
        facts["sgd"][str(batch)] = entry
    return fig, data, facts


# ---------------------------------------------------------------- fig 7: many neurons

def fig7(plan, progress):
    L = len(plan.many_alpha)
    model = ModelParams(alpha=plan.many_alpha, pi=(1.0 / L,) * L, m=plan.many_m)
    runs = []
    for head in ("offdiag", "frozen"):
        train = TrainParams(eta=plan.many_eta, head=head, seed=plan.many_seed, max_flow_time=plan.many_cap,
                            record=4000)
        runs.append(simulate(model, train))
        progress.add(4)
    head_run = runs[0]
    t = head_run.flow_time
    first = t[np.argmax(analysis.n_features_learned(head_run) >= 1)]
    snaps = sorted({int(np.clip(np.searchsorted(t, x), 0, len(t) - 1))
                    for x in np.geomspace(max(first, t[1]), t[-1], 4)})
    fig = plotting.many_neurons_figure(runs, ["trainable head", "frozen head E = I"], head_run, snaps)
    f32 = np.float32  # what was drawn, at plotting precision: keeps the file small
    data = {"flow_time_trainable": head_run.flow_time, "alignment_trainable": head_run.alignment.astype(f32),
            "head_distance_trainable": analysis.head_distance(head_run).astype(f32),
            "E_snapshots": head_run.E[snaps], "snapshot_index": np.array(snaps),
            "flow_time_frozen": runs[1].flow_time, "alignment_frozen": runs[1].alignment.astype(f32)}
    facts = {}
    for name, run in zip(("trainable", "frozen"), runs, strict=False):
        a = analysis.feature_assignment(run)[-1]
        facts[name] = {"features_learned": int(analysis.n_features_learned(run)[-1]),
                       "neurons_per_feature": [int((a == l).sum()) for l in range(L)],
                       "neurons_without_feature": int((a == analysis.NO_FEATURE).sum()),
                       "alignment_rank": float(analysis.alignment_rank(run)[-1]),
                       "status": run.status, "flow_time": float(run.flow_time[-1])}
    facts["peak_head_distance"] = float(analysis.head_distance(head_run).max())
    facts["final_head_distance"] = float(analysis.head_distance(head_run)[-1])
    return fig, data, facts


# ---------------------------------------------------------------- writing

def save_png(fig, path: Path) -> None:
    with atomic_write(path) as fh:
        fig.savefig(fh, format="png", dpi=plotting.STYLE["savefig.dpi"])


def save_npz(data: dict, path: Path) -> None:
    with atomic_write(path) as fh:
        np.savez_compressed(fh, **{k: np.asarray(v) for k, v in data.items()})


def _units(plan: Plan, nums) -> dict:
    """Rough cost of each figure in progress units (a unit ~ one short population run)."""
    n5 = (len(plan.alpha_ratios) * (len(plan.eta_ratios) + 1) * len(plan.grid_seeds)
          + 2 * len(plan.default_seeds))
    n4 = (len(plan.d_values) * len(plan.d_seeds) + len(plan.eta_values) * len(plan.eta_seeds)
          + len(plan.ratio_values) * len(plan.ratio_seeds))
    n6 = 1 + sum(b / 256 for b in plan.sgd_batches) * len(plan.sgd_seeds)
    units = {1: 4, 2: 0, 3: 0, 4: n4, 5: n5, 6: n6, 7: 8}
    return {k: units[k] for k in nums}


def make_figures(out: Path, plan: Plan, nums, progress: Progress, should_stop=None) -> tuple[dict, list]:
    """Simulate, draw and write the figures ``nums``; return the facts (also in
    figures.json) and the figures made: all of ``nums`` unless ``should_stop()``
    turned true, which is checked between figures."""
    out.mkdir(parents=True, exist_ok=True)
    facts: dict = {"plan": dataclasses.asdict(plan), "figures": {}, "seconds": {}}
    story = None
    done = []
    for num in nums:
        if should_stop is not None and should_stop():
            break
        t0 = time.perf_counter()
        name = FIGURES[num]
        progress.stage(name)
        if num in (1, 2, 3):
            if story is None:
                story = story_runs(plan, progress)
            fig, data, f = {1: fig1, 2: fig2, 3: fig3}[num](story, plan)
        else:
            fig, data, f = {4: fig4, 5: fig5, 6: fig6, 7: fig7}[num](plan, progress)
        save_png(fig, out / f"{name}.png")
        if num in (4, 5):
            write_json(out / f"{name}.json", data)
        else:
            save_npz(data, out / f"{name}.npz")
        facts["figures"][name] = f
        facts["seconds"][name] = round(time.perf_counter() - t0, 2)
        done.append(num)
    return facts, done


def merge_facts(path: Path, facts: dict, nums, wall: float, *, quick: bool,
                interrupted: bool = False) -> dict:
    """The new facts; with ``--only`` merged into the facts file already there, so that
    regenerating one figure keeps the others' numbers (``wall_seconds`` is that of the
    last run that made every figure; a partial run is recorded as ``last_partial_run``)."""
    facts = {**facts, "quick": quick}
    if len(nums) == len(FIGURES) and not interrupted:
        return {**facts, "wall_seconds": wall}
    import json

    old: dict = {}
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = {}
    if old.get("plan") != json.loads(json.dumps(facts["plan"])):  # tuples are lists in JSON
        old = {}
    merged = {**old, **{k: v for k, v in facts.items() if k not in ("figures", "seconds")}}
    merged["figures"] = {**old.get("figures", {}), **facts["figures"]}
    merged["seconds"] = {**old.get("seconds", {}), **facts["seconds"]}
    merged["last_partial_run"] = {"figures": [FIGURES[n] for n in nums], "wall_seconds": wall,
                                  "interrupted": interrupted}
    return merged


def cmd_figures(args) -> int:
    nums = parse_only(args.only)
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs must be an integer >= 1 (got {args.jobs})")
    plan = QUICK if args.quick else FULL
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out} is not writable ({exc.strerror or exc})") from None
    units = _units(plan, nums)
    progress = Progress(sum(units.values()), enabled=not args.quiet, jobs=args.jobs)
    t0 = time.perf_counter()
    with GracefulStop() as stop:  # Ctrl-C / SIGTERM: finish the current figure, then stop
        facts, done = make_figures(out, plan, nums, progress, should_stop=stop)
        wall = round(time.perf_counter() - t0, 2)
        interrupted = len(done) < len(nums)
        facts_path = out / ("figures-quick.json" if args.quick else "figures.json")
        write_json(facts_path, merge_facts(facts_path, facts, done, wall, quick=bool(args.quick),
                                           interrupted=interrupted))
    progress.finish()
    names = ", ".join(f"{FIGURES[n]}.png" for n in done) or "nothing"
    print(f"theory-sim figures: wrote {names} (+ data files) to {out}/ in {wall:.1f} s")
    sys.stdout.flush()
    if interrupted:
        print(f"theory-sim: interrupted ({stop.requested}) after {len(done)} of {len(nums)} figures; "
              f"{facts_path.name} marks the run as partial", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0
