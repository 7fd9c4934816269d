"""The flow kernel's stiff methods and the large-d stop (docs/model.md sections 10 and 11).

The Rosenbrock tableaux are checked by an independent numpy stepper (Hairer's transformed
form, written here) on a small nonlinear ODE against scipy's DOP853: the fitted orders must
be the published ones. The large-d run (d = 1e9, reduced law) must end as ``vanishing`` in
bounded work, in the state docs/model.md section 11 describes.
"""

from __future__ import annotations

import math

import flow_support as fs
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import theory_sim as ts
from theory_sim import analysis
from theory_sim.core import flow as kf
from theory_sim.initial_law import reduced_coordinates


def _f(y):
    return np.array([y[1], (1 - y[0] ** 2) * y[1] - y[0] - 0.2 * y[2] ** 3, -y[2] + np.sin(y[0])])


def _jac(y):
    return np.array([[0.0, 1.0, 0.0],
                     [-2 * y[0] * y[1] - 1.0, 1 - y[0] ** 2, -0.6 * y[2] ** 2],
                     [np.cos(y[0]), 0.0, -1.0]])


def _step(meth, y, h, J):
    s = int(kf.ROS_S[meth])
    gam = kf.ROS_GAMMA[meth]
    W = np.eye(y.size) / (h * gam) - J
    U = np.zeros((s, y.size))
    for i in range(s):
        U[i] = np.linalg.solve(W, _f(y + kf.ROS_A[meth, i, :i] @ U[:i]) + kf.ROS_C[meth, i, :i] @ U[:i] / h)
    return y + kf.ROS_M[meth, :s] @ U, kf.ROS_E[meth, :s] @ U, U


Y0 = np.array([2.0, 0.0, 1.0])


def _order(errs):
    return float(np.polyfit(np.log([10, 20, 40, 80]), -np.log(errs), 1)[0])


@pytest.mark.parametrize("meth, order, stale_order", [(kf.STIFF_RODAS4, 4, None), (kf.STIFF_ROS34PW2, 3, 3)])
def test_rosenbrock_tableaux_have_their_order(meth, order, stale_order):
    ref = solve_ivp(lambda t, y: _f(y), (0, 1.0), Y0, method="DOP853", rtol=1e-13, atol=1e-14).y[:, -1]
    for stale in (False, True):
        if stale and stale_order is None:
            continue
        errs = []
        for N in (10, 20, 40, 80):
            y = Y0.copy()
            for _ in range(N):
                y, _, _ = _step(meth, y, 1.0 / N, _jac(Y0) if stale else _jac(y))
            errs.append(np.abs(y - ref).max())
        assert _order(errs) == pytest.approx(stale_order if stale else order, abs=0.3), (stale, errs)
    # the embedded estimate is of one order less: local error ~ h^order
    est = [np.abs(_step(meth, Y0, h, _jac(Y0))[1]).max() for h in (0.04, 0.02, 0.01)]
    local = np.log2(np.array(est[:-1]) / est[1:])
    assert np.all(np.abs(local - order) < 0.4), local


def test_rodas4_dense_output_is_order_three():
    meth = kf.STIFF_RODAS4
    errs = []
    for h in (0.04, 0.02, 0.01):
        y1, _, U = _step(meth, Y0, h, _jac(Y0))
        th = 0.4
        yd = (1 - th) * Y0 + th * (y1 + (1 - th) * (kf.ROS_H[meth, 0] @ U + th * (kf.ROS_H[meth, 1] @ U)))
        ref = solve_ivp(lambda t, y: _f(y), (0, th * h), Y0, method="DOP853", rtol=1e-13, atol=1e-15).y[:, -1]
        errs.append(np.abs(yd - ref).max())
    # an order-3 interpolant: error ~ h^4 within the step (h^3 would be order 2)
    assert np.all(np.log2(np.array(errs[:-1]) / errs[1:]) > 3.6), errs


@pytest.mark.parametrize("method", ["rodas4", "ros34pw2"])
def test_both_stiff_methods_agree_with_radau_on_the_stiff_stretch(method):
    from test_flow_reference import canonical, reference

    model = ts.ModelParams(d=10_000, alpha=(6.0, 0.651))
    train = ts.TrainParams(eta=1e-3, eta_E=1.09e-4)
    B0, Vr = fs.reduced_start(model, 1, "reduced")
    t_end = 1.0e6
    ours = fs.integrate_flow(model, train, B0=B0, Vr=Vr, rtol=1e-9, t_max=t_end, vanish_persist=np.inf,
                             stiff_method=method)
    assert ours["n_stiff_steps"] > 10 and ours["n_switches"] >= 1
    sol = reference(model, train, canonical(B0, Vr), t_end, method="Radau")
    m, r = B0.shape
    assert np.allclose(canonical(ours["B"], Vr), sol.y[:m * r, -1].reshape(m, r), rtol=1e-5, atol=1e-8)
    assert np.allclose(ours["E"], sol.y[m * r:, -1].reshape(m, m), rtol=1e-5, atol=1e-8)


def test_stiff_method_is_validated():
    model, train = ts.ModelParams(), ts.TrainParams()
    B0, Vr = fs.reduced_start(model, 1)
    with pytest.raises(ts.ParamError, match="stiff_method must be one of rodas4, ros34pw2"):
        fs.integrate_flow(model, train, B0=B0, Vr=Vr, stiff_method="ode23s")


def test_large_d_run_ends_vanishing_in_bounded_work_when_asked():
    """d = 1e9 (reduced law, seed 1): after T1 the follower shrinks while E_fl and E_lf grow
    with opposite signs; the opt-in vanishing rule's fast path stops it (docs/flow.md)."""
    model, train = ts.ModelParams(), ts.TrainParams()
    B, Vr = reduced_coordinates(model.m, model.L, 10**9, 1)
    res = fs.integrate_flow(model, train, B0=B, Vr=Vr, t_max=1e30, vanish_persist=fs.VANISH_PERSIST_OPT_IN)
    assert res["status"] == "vanishing"
    assert res["n_rhs"] < 100_000
    pt = res["phase_times"]
    lead, fol = pt["leader"], pt["follower"]
    # T1 against the leading-order prediction: its relative error is O(d^-1/2) corrections
    # (3e-7 median at d = 1e10, docs/paper.md), far below 1e-4 at d = 1e9
    assert pt["T1"] == pytest.approx(analysis.t1_prediction(model, B), rel=1e-4) and pt["T3"] is None
    A = res["B"] @ Vr
    norms = np.linalg.norm(res["B"], axis=1)
    assert abs(A[lead, 0]) / norms[lead] > 0.99
    assert np.max(np.abs(A[fol]) / norms[fol]) < train.align_threshold
    E = res["E"]
    assert abs(E[fol, lead]) >= fs.DEFAULT_VANISH_HEAD and E[fol, lead] * E[lead, fol] < 0
    assert res["t"] - pt["T1"] < 1e-2 * pt["T1"]
    # without the fast path the same run is still going after many more steps
    st = fs.new_state(model, train, B0=B, Vr=Vr, t_max=1e30, vanish_persist=fs.VANISH_PERSIST_OPT_IN,
                      vanish_head=math.inf)
    fs.advance(st, res["n_steps"] + res["n_rejected"] + 5000)
    assert fs.result(st)["status"] == "interrupted"


def test_large_d_run_after_T1_matches_radau():
    """d = 1e9 from the kernel's own state at T1: the follower's shrinkage and the head's
    antisymmetric growth (docs/model.md section 11) are the flow's, not the kernel's."""
    from test_flow_reference import canonical

    model, train = ts.ModelParams(), ts.TrainParams()
    B, Vr = reduced_coordinates(model.m, model.L, 10**9, 1)
    st = fs.new_state(model, train, B0=B, Vr=Vr, t_max=1e30, vanish_persist=math.inf, rtol=1e-10)
    while fs.result(st)["phase_times"]["T1"] is None:
        fs.advance(st, 1)
    at_t1 = fs.result(st)
    s_end = 1.0e7
    ours = fs.integrate_flow(model, train, B0=at_t1["B"], Vr=Vr, E0=at_t1["E"], t_max=s_end,
                             vanish_persist=math.inf, rtol=1e-10)
    m, r = at_t1["B"].shape
    # test_flow_reference.reference starts from E = I; here E starts at the kernel's E(T1)
    from theory_sim import population_grad

    M = ts.ModelParams(d=r, P=model.P, k=model.k, alpha=model.alpha, pi=model.pi, sigma=model.sigma, m=m)
    ratio, mask = train.eta_E / train.eta, 1.0 - np.eye(m)

    def f(t, y):
        gW, gE = population_grad(y[:m * r].reshape(m, r), y[m * r:].reshape(m, m), M)
        return np.concatenate([-gW.ravel(), -(ratio * mask * gE).ravel()])

    y0 = np.concatenate([canonical(at_t1["B"], Vr).ravel(), at_t1["E"].ravel()])
    ref = solve_ivp(f, (0.0, s_end), y0, method="Radau", rtol=1e-8, atol=1e-14)
    W, E = ref.y[:m * r, -1].reshape(m, r), ref.y[m * r:, -1].reshape(m, m)
    lead = at_t1["phase_times"]["leader"]
    fol = 1 - lead
    assert np.linalg.norm(W[fol]) < 0.15 and abs(E[fol, lead]) > 0.2 and E[fol, lead] * E[lead, fol] < 0
    assert np.allclose(canonical(ours["B"], Vr), W, rtol=1e-5, atol=1e-9)
    assert np.allclose(ours["E"], E, rtol=1e-5, atol=1e-9)
