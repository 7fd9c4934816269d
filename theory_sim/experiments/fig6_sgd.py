"""Fig. 6: mini-batch SGD (docs/model.md section 8) at several batch sizes against the
population engine, every run from the same ``W(0)``."""

from __future__ import annotations

import contextlib

import numpy as np

from .. import analysis, plotting
from ..driver import simulate
from ..model import initial_weights
from ..params import ENGINES, ModelParams, TrainParams
from .plan import Plan
from .runs import Progress, no_progress
from .story import flow_phase_times

NAME = "fig6_sgd_vs_population"
DATA_FORMAT = "npz"


@contextlib.contextmanager
def _single_thread():
    """numba on one thread while the SGD runs go (restored afterwards): many short parallel
    kernel calls stall on a busy machine, and the results do not depend on it."""
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)


def sgd_engine() -> str:
    """``sgd-fast`` (the ``sgd`` engine's exact-in-distribution draw, docs/model.md section 8:
    same law, O(N P m^2 + m^2 d) per step) where this version has it, else ``sgd``."""
    return "sgd-fast" if "sgd-fast" in ENGINES else "sgd"


def make(plan: Plan, progress: Progress = no_progress):
    """``(figure, data, facts)`` of fig 6."""
    model = ModelParams(d=plan.sgd_d)
    W0 = initial_weights(model, plan.sgd_w0_seed)
    steps = int(round(plan.sgd_flow / plan.sgd_eta))
    record = 301
    pop = simulate(model, TrainParams(eta=plan.sgd_eta, seed=plan.sgd_w0_seed, steps=steps, record=record),
                   W0=W0)
    progress(1)
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
                progress(batch / 256)
            sgd[batch] = runs
    note = (f"engine {sgd_engine()}; d = {plan.sgd_d}, P = 16, k = 4, alpha = (6, 3), "
            f"eta = {plan.sgd_eta:g}, eta_E = eta/10, "
            f"{steps} steps; every run starts from the same W(0) (seed {plan.sgd_w0_seed}); "
            f"bands: min-max over {len(plan.sgd_seeds)} SGD seeds")
    fig = plotting.sgd_figure(pop, sgd, leader=leader, follower=follower, note=note)
    data = {"population_flow_time": pop.flow_time, "population_alignment": pop.alignment,
            "population_E": pop.E}
    facts = {"population": {"outcome": analysis.outcome(pop), "phase_times_flow": flow_phase_times(pop)},
             "sgd": {}, "engine": sgd_engine()}
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
