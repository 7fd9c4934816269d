"""The runs behind figs 1-3: one run at the default parameters (seed 1), with the head
trainable and frozen at ``I`` (docs/model.md section 5 tells the story they show)."""

from __future__ import annotations

import numpy as np

from .. import analysis
from ..driver import simulate
from ..params import ModelParams, TrainParams
from .plan import Plan
from .runs import Progress, no_progress

HEADS = ("offdiag", "frozen")


def story_runs(plan: Plan, progress: Progress = no_progress) -> dict:
    """``{"offdiag": Run, "frozen": Run}`` at the default model parameters."""
    model = ModelParams()
    out = {}
    for head in HEADS:
        train = TrainParams(eta=plan.story_eta, head=head, seed=1, max_flow_time=plan.story_cap,
                            record=plan.story_record)
        out[head] = simulate(model, train)
        progress(2)
    return out


def phase_times_array(run) -> np.ndarray:
    """``(T1, T2, T3, T4)`` in steps, NaN where a phase did not happen."""
    pt = analysis.phase_times(run)
    return np.array([np.nan if v is None else v for v in (pt.T1, pt.T2, pt.T3, pt.T4)], float)


def flow_phase_times(run) -> dict:
    """``{"T1": flow time or None, ...}`` of ``run``."""
    pt = analysis.phase_times(run)
    return {k: (None if v is None else v * run.eta) for k, v in pt.as_dict().items() if k.startswith("T")}
