"""Fig. 1: the alignments ``|c_jl(t)|`` with the head trainable and frozen (docs/model.md section 5)."""

from __future__ import annotations

import numpy as np

from .. import analysis, plotting
from .plan import Plan
from .story import flow_phase_times, phase_times_array

NAME = "fig1_alignment"
DATA_FORMAT = "npz"


def _arrays(run, prefix: str) -> dict:
    return {f"{prefix}_flow_time": run.flow_time, f"{prefix}_alignment": run.alignment,
            f"{prefix}_E": run.E, f"{prefix}_phase_times_steps": phase_times_array(run)}


def make(plan: Plan, story: dict):
    """``(figure, data, facts)`` from the story runs (:func:`story.story_runs`)."""
    runs = [story["offdiag"], story["frozen"]]
    fig = plotting.alignment_figure(runs, ["trainable head (off-diagonal)", "frozen head E = I"])
    data = {**_arrays(runs[0], "trainable"), **_arrays(runs[1], "frozen"), "eta": plan.story_eta}
    facts = {}
    for key, run in zip(("trainable", "frozen"), runs, strict=True):
        pt = analysis.phase_times(run)
        facts[key] = {"outcome": analysis.outcome(run), "status": run.status,
                      "phase_times_flow": flow_phase_times(run),
                      "leader": pt.leader, "follower": pt.follower,
                      "final_alignment": np.abs(run.alignment[-1]).tolist()}
    return fig, data, facts
