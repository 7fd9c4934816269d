"""The flow kernel against scipy's solve_ivp on an independently computed right-hand side.

The reference RHS uses the public ``theory_sim.population_grad`` on the reduced coordinates
rotated so that the features are the first basis vectors (a model of dimension ``r``),
not the kernel; events are located on scipy's dense output with ``brentq`` and a bounded
scalar maximisation.
"""

from __future__ import annotations

import flow_support as fs
import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.optimize import brentq, minimize_scalar

from theory_sim import population_grad
from theory_sim.params import ModelParams, TrainParams


def canonical(B, Vr):
    """``B`` in an orthonormal basis whose first L vectors are the columns of ``Vr``."""
    r, L = Vr.shape
    U, _, _ = np.linalg.svd(np.eye(r) - Vr @ Vr.T)
    return B @ np.concatenate([Vr, U[:, :r - L]], axis=1)


def reference(model, train, B, t_end, method="LSODA", rtol=1e-10):
    m, r = B.shape
    M = ModelParams(d=r, P=model.P, k=model.k, alpha=model.alpha, pi=model.pi, sigma=model.sigma, m=m)
    ratio = train.eta_E / train.eta
    mask = 1.0 - np.eye(m)

    def f(t, y):
        W, E = y[:m * r].reshape(m, r), y[m * r:].reshape(m, m)
        gW, gE = population_grad(W, E, M)
        return np.concatenate([-gW.ravel(), -(ratio * mask * gE).ravel()])

    y0 = np.concatenate([B.ravel(), np.eye(m).ravel()])
    return solve_ivp(f, (0.0, t_end), y0, method=method, rtol=rtol, atol=1e-14, dense_output=True)


def _crossing(sol, g, thr=0.9):
    ts = sol.t
    vals = np.array([g(sol.sol(t)) - thr for t in ts])
    i = int(np.argmax(vals >= 0))
    assert vals[i] >= 0
    return brentq(lambda t: g(sol.sol(t)) - thr, ts[i - 1], ts[i], xtol=1e-13, rtol=1e-15)


def _peak(sol, idx):
    ts = sol.t
    vals = np.abs(sol.y[idx])
    i = int(np.argmax(vals))
    bounds = (ts[max(i - 1, 0)], ts[min(i + 1, len(ts) - 1)])
    res = minimize_scalar(lambda t: -abs(sol.sol(t)[idx]), bounds=bounds,
                          method="bounded", options={"xatol": 1e-10})
    return res.x, -res.fun


def test_default_run_matches_scipy():
    model, train = ModelParams(), TrainParams()
    B0, Vr = fs.reduced_start(model, 1)
    ours = fs.integrate_flow(model, train, B0=B0, Vr=Vr, rtol=1e-10, atol=1e-14)
    assert ours["status"] == "converged"
    t_end = ours["t"]
    B = canonical(B0, Vr)
    sol = reference(model, train, B, t_end)
    m, r = B.shape
    ref_B, ref_E = sol.y[:m * r, -1].reshape(m, r), sol.y[m * r:, -1].reshape(m, m)
    assert np.allclose(canonical(ours["B"], Vr), ref_B, rtol=1e-6, atol=1e-9)
    assert np.allclose(ours["E"], ref_E, rtol=1e-6, atol=1e-9)
    pt = ours["phase_times"]
    lead, fol = pt["leader"], pt["follower"]

    def c(y, j, l):
        w = y[j * r:(j + 1) * r]
        return abs(w[l]) / np.linalg.norm(w)

    T1 = _crossing(sol, lambda y: c(y, lead, 0))
    T3 = _crossing(sol, lambda y: c(y, fol, 1))
    T2, peak = _peak(sol, m * r + fol * m + lead)
    assert pt["T1"] == pytest.approx(T1, rel=1e-7)
    assert pt["T3"] == pytest.approx(T3, rel=1e-7)
    assert ours["events"]["peak"][fol, lead] == pytest.approx(peak, rel=1e-7)
    assert pt["T2"] == pytest.approx(T2, rel=1e-4)  # a flat maximum: time known to sqrt(tol)
    # T4: first time after T3 with |E - I|_F < 0.01
    m2 = m * m

    def dist(t):
        E = sol.sol(t)[m * r:].reshape(m, m)
        return np.linalg.norm(E - np.eye(m)) - 0.01

    if dist(T3) < 0:
        assert pt["T4"] == pytest.approx(T3, rel=1e-7)
    else:
        ts = sol.t[sol.t > T3]
        i = int(np.argmax([dist(t) < 0 for t in ts]))
        T4 = brentq(dist, T3 if i == 0 else ts[i - 1], ts[i], xtol=1e-12)
        assert pt["T4"] == pytest.approx(T4, rel=1e-7)
    assert m2 == 4


def test_three_neurons_three_features_match_radau():
    """The general (not unrolled 2x2) gradient path, against Radau."""
    model = ModelParams(d=64, alpha=(6.0, 4.0, 3.0), pi=(0.4, 0.3, 0.3), m=3)
    train = TrainParams()
    B0, Vr = fs.reduced_start(model, 2)
    ours = fs.integrate_flow(model, train, B0=B0, Vr=Vr, rtol=1e-10, atol=1e-14, t_max=150.0)
    assert ours["t"] == 150.0
    B = canonical(B0, Vr)
    sol = reference(model, train, B, 150.0, method="Radau")
    m, r = B.shape
    assert np.allclose(canonical(ours["B"], Vr), sol.y[:m * r, -1].reshape(m, r), rtol=1e-6, atol=1e-9)
    assert np.allclose(ours["E"], sol.y[m * r:, -1].reshape(m, m), rtol=1e-6, atol=1e-9)
    t1 = ours["events"]["t1"]
    for j in range(m):
        if t1[j] >= 0:
            ref = _crossing(sol, lambda y, j=j: abs(y[j * r]) / np.linalg.norm(y[j * r:(j + 1) * r]))
            assert t1[j] == pytest.approx(ref, rel=1e-7)


def test_records_are_the_interpolated_state():
    model, train = ModelParams(), TrainParams()
    B0, Vr = fs.reduced_start(model, 1)
    t_rec = np.geomspace(1.0, 5000.0, 25)
    res = fs.integrate_flow(model, train, B0=B0, Vr=Vr, rtol=1e-10, atol=1e-14, t_record=t_rec)
    sol = reference(model, train, canonical(B0, Vr), 5000.0)
    rec = res["records"]
    assert np.array_equal(rec["t"], t_rec)
    m, r = B0.shape
    for k, t in enumerate(t_rec):
        y = sol.sol(t)
        W = y[:m * r].reshape(m, r)
        assert np.allclose(rec["A"][k], W[:, :2], rtol=1e-6, atol=1e-9)
        assert np.allclose(rec["gram"][k], W @ W.T, rtol=1e-6, atol=1e-9)
        assert np.allclose(rec["E"][k], y[m * r:].reshape(m, m), rtol=1e-6, atol=1e-9)


def test_stiff_stretch_matches_radau():
    """The Rosenbrock path: a vanishing follower (docs/model.md section 10) through its switch
    to the stiff method, against Radau."""
    model = ModelParams(d=10_000, alpha=(6.0, 0.651))
    train = TrainParams(eta=1e-3, eta_E=1.09e-4)
    B0, Vr = fs.reduced_start(model, 1, "reduced")
    t_end = 1.0e6
    ours = fs.integrate_flow(model, train, B0=B0, Vr=Vr, rtol=1e-9, t_max=t_end, vanish_persist=np.inf)
    assert ours["n_stiff_steps"] > 50 and ours["n_switches"] >= 1  # the stiff method did the work
    sol = reference(model, train, canonical(B0, Vr), t_end, method="Radau")
    m, r = B0.shape
    ref_B = sol.y[:m * r, -1].reshape(m, r)
    assert np.allclose(canonical(ours["B"], Vr), ref_B, rtol=1e-5, atol=1e-8)
    assert np.allclose(ours["E"], sol.y[m * r:, -1].reshape(m, m), rtol=1e-5, atol=1e-8)
