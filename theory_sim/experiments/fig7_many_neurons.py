"""Fig. 7: ``m = 8`` neurons and four features: which neurons learn which feature, with the
head trainable and frozen, and the head's deviation from ``I`` at a few times."""

from __future__ import annotations

import numpy as np

from .. import analysis, plotting
from ..driver import simulate
from ..params import ModelParams, TrainParams
from .plan import Plan
from .runs import Progress, no_progress

NAME = "fig7_many_neurons"
DATA_FORMAT = "npz"


def make(plan: Plan, progress: Progress = no_progress):
    """``(figure, data, facts)`` of fig 7."""
    L = len(plan.many_alpha)
    model = ModelParams(alpha=plan.many_alpha, pi=(1.0 / L,) * L, m=plan.many_m)
    runs = []
    for head in ("offdiag", "frozen"):
        train = TrainParams(eta=plan.many_eta, head=head, seed=plan.many_seed, max_flow_time=plan.many_cap,
                            record=4000)
        runs.append(simulate(model, train))
        progress(4)
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
    for name, run in zip(("trainable", "frozen"), runs, strict=True):
        a = analysis.feature_assignment(run)[-1]
        facts[name] = {"features_learned": int(analysis.n_features_learned(run)[-1]),
                       "neurons_per_feature": [int((a == l).sum()) for l in range(L)],
                       "neurons_without_feature": int((a == analysis.NO_FEATURE).sum()),
                       "alignment_rank": float(analysis.alignment_rank(run)[-1]),
                       "status": run.status, "flow_time": float(run.flow_time[-1])}
    facts["peak_head_distance"] = float(analysis.head_distance(head_run).max())
    facts["final_head_distance"] = float(analysis.head_distance(head_run)[-1])
    return fig, data, facts
