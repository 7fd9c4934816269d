"""Fig. 2: the head's off-diagonal entries rise, then fall back to ``I`` (docs/model.md section 5)."""

from __future__ import annotations

import numpy as np

from .. import analysis, plotting
from .plan import Plan

NAME = "fig2_head"
DATA_FORMAT = "npz"


def make(plan: Plan, story: dict):
    """``(figure, data, facts)`` from the trainable-head story run."""
    run = story["offdiag"]
    fig = plotting.head_figure(run)
    pt = analysis.phase_times(run)
    hd = analysis.head_distance(run)
    facts = {"peak_E_follower_leader": float(np.abs(run.E[:, pt.follower, pt.leader]).max()),
             "peak_offdiag": analysis.peak_offdiag(run).tolist(),
             "final_head_distance": float(hd[-1])}
    data = {"flow_time": run.flow_time, "E": run.E, "head_distance": hd}
    return fig, data, facts
