"""Fig. 3: the substitution ratio, the acceleration factor ``Acc``, the follower's growth
rates and its absolute speed ratio along ``v_2`` (docs/model.md section 9)."""

from __future__ import annotations

import numpy as np

from .. import analysis, plotting
from .plan import Plan

NAME = "fig3_substitution_acceleration"
DATA_FORMAT = "npz"


def _summary(x: np.ndarray) -> dict:
    return {"median": float(np.median(x)), "min": float(x.min()), "max": float(x.max())}


def make(plan: Plan, story: dict):
    """``(figure, data, facts)`` from the trainable-head story run."""
    run = story["offdiag"]
    sub = analysis.substitution_ratio(run)
    acc = analysis.acceleration_factor(run)
    acc1 = analysis.acceleration_factor(run, feature=0)
    rates = analysis.growth_rates(run)
    rates_I = analysis.growth_rates(run, head="identity")
    ratio = analysis.absolute_speed_ratio(run)
    pred = analysis.absolute_speed_prediction(run)
    pt = analysis.phase_times(run)
    fig = plotting.substitution_acceleration_figure(run, sub, acc, acc1, rates=rates, rates_identity=rates_I,
                                                    abs_ratio=ratio, abs_pred=pred)
    t = run.steps
    between = np.zeros(t.shape, bool)
    if pt.T1 is not None and pt.T3 is not None:
        between = (t > pt.T1) & (t < pt.T3)
    facts = {}
    if between.any():
        facts = {"substitution_ratio_at_T2": float(sub[np.searchsorted(t, pt.T2)]) if pt.T2 else None,
                 "substitution_ratio_median_T1_T3": float(np.median(sub[between])),
                 "acc_v2_T1_T3": _summary(acc[between]),
                 "acc_v1_T1_T3": _summary(acc1[between]),
                 "growth_v1_head_T1_T3": _summary(rates[between, 0]),
                 "growth_v1_identity_T1_T3": _summary(rates_I[between, 0]),
                 "growth_v2_head_T1_T3": _summary(rates[between, 1]),
                 "growth_v2_identity_T1_T3": _summary(rates_I[between, 1]),
                 "absolute_speed_ratio_T1_T3": _summary(ratio[between]),
                 "absolute_speed_prediction_T1_T3": _summary(pred[between]),
                 "fraction_T1_T3_v1_growth_negative_with_head": float(np.mean(rates[between, 0] < 0)),
                 "fraction_T1_T3_v1_growth_positive_at_identity": float(np.mean(rates_I[between, 0] > 0))}
    data = {"flow_time": run.flow_time, "substitution_ratio": sub, "acceleration_factor_v2": acc,
            "acceleration_factor_v1": acc1, "growth_rates": rates, "growth_rates_identity": rates_I,
            "absolute_speed_ratio_v2": ratio, "absolute_speed_prediction_v2": pred}
    return fig, data, facts
