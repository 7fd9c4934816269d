"""Error control is real (tightening rtol converges, loosening it costs accuracy) and the
discrete population engine converges to the flow as eta -> 0 with order 1
(docs/model.md section 11)."""

from __future__ import annotations

import flow_support as fs
import numpy as np
import pytest

import theory_sim as ts

T_END = 5890.0  # past T3 (~5865) and before convergence (~5912): every run ends here


def _run(rtol):
    model, train = ts.ModelParams(), ts.TrainParams()
    B, Vr = fs.reduced_start(model, 1)
    res = fs.integrate_flow(model, train, B0=B, Vr=Vr, rtol=rtol, atol=rtol * 1e-5, t_max=T_END)
    assert res["status"] == "max_steps"
    pt = res["phase_times"]
    return np.array([pt["T1"], pt["T2"], pt["T3"]]), np.concatenate([res["B"].ravel(), res["E"].ravel()]), res


def test_tightening_rtol_converges_and_looser_is_less_accurate():
    ref_t, ref_y, _ = _run(1e-12)
    errs_t, errs_y, evals = [], [], []
    for rtol in (1e-4, 1e-6, 1e-8, 1e-10):
        t, y, res = _run(rtol)
        errs_t.append(np.max(np.abs(t[[0, 2]] - ref_t[[0, 2]]) / ref_t[[0, 2]]))
        errs_y.append(np.max(np.abs(y - ref_y)) / np.max(np.abs(ref_y)))
        evals.append(res["n_rhs"])
    errs_t, errs_y = np.array(errs_t), np.array(errs_y)
    assert np.all(np.diff(errs_t) < 0), errs_t
    assert np.all(np.diff(errs_y) < 0), errs_y
    assert errs_t[0] > 100 * errs_t[2] and errs_y[0] > 100 * errs_y[2]  # measurably less accurate
    assert errs_t[-1] < 1e-8 and errs_y[-1] < 1e-7
    assert np.all(np.diff(evals) > 0)  # and tighter costs more


ETAS = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3)


def test_discrete_engine_converges_to_the_flow_with_order_one():
    """README's run (alpha=(6,3), d=512, seed 1), eta_E = eta / 10."""
    model = ts.ModelParams()
    # the public path: simulate with engine="flow" (same W(0) as the population engine)
    flow = ts.simulate(model, ts.TrainParams(engine="flow", rtol=1e-10, atol=1e-15))
    pt = ts.analysis.phase_times(flow)
    ft = pt.flow_times() | {"leader": pt.leader, "follower": pt.follower}
    errs = []
    # simulate_many tracks the events at every step (no recording stride)
    runs = ts.simulate_many(model, [ts.TrainParams(eta=eta, eta_E=eta / 10) for eta in ETAS])
    for eta, pt in zip(ETAS, runs, strict=True):
        assert pt["status"] == "converged"
        assert (pt["leader"], pt["follower"]) == (ft["leader"], ft["follower"])
        errs.append([abs(pt["T1"] * eta - ft["T1"]) / ft["T1"], abs(pt["T3"] * eta - ft["T3"]) / ft["T3"]])
    errs = np.array(errs)
    for col, name in ((0, "T1"), (1, "T3")):
        order = np.polyfit(np.log(ETAS), np.log(errs[:, col]), 1)[0]
        assert order == pytest.approx(1.0, abs=0.15), (name, order, errs[:, col])
    assert np.all(errs[-1] < 2e-3)
