"""Fig. 3: the substitution ratio and the acceleration factor between T1 and T3
(docs/model.md section 9)."""

from __future__ import annotations

import numpy as np

from .. import analysis, plotting
from .plan import Plan

NAME = "fig3_substitution_acceleration"
DATA_FORMAT = "npz"


def make(plan: Plan, story: dict):
    """``(figure, data, facts)`` from the trainable-head story run."""
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
