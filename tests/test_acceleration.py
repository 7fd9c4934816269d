"""Acc(t), growth rates and the absolute speed ratio (docs/model.md section 9), checked against
the exact gradient of ``theory_sim.population_grad`` and against finite differences of a
recorded trajectory."""

from __future__ import annotations

import numpy as np
import pytest

import theory_sim as ts
from theory_sim import analysis as an


@pytest.fixture(scope="module")
def phase2_run():
    """The default model (d=512, seed 1) into phase II: the leader holds v_1, E_fl ~ 0.06."""
    run = ts.simulate(ts.ModelParams(d=512), ts.TrainParams(eta=1e-2, seed=1, steps=150000, record=60))
    pt = an.phase_times(run)
    assert pt.T1 is not None and pt.T3 is None
    return run, pt


def reduced_weights(A, gram):
    """Weights in R^{L+m} with the recorded ``W V = A`` and ``W W^T = gram`` (the loss and
    its gradient components along the features depend on W only through these)."""
    K = np.linalg.cholesky(gram - A @ A.T)
    return np.concatenate([A, K], axis=1)


def A_path_gradient(W, E, model):
    """``dL/dA`` (m, L) recovered from ``population_grad``: its part orthogonal to the features
    is ``sigma^2 (gC + gC^T) W_perp``; solve for that m x m matrix, remove it along V."""
    gW, _ = ts.population_grad(W, E, model)
    L = model.L
    Wp, gp = W[:, L:], gW[:, L:]
    G = np.linalg.solve(Wp.T, gp.T).T        # gp = G Wp, Wp square (m x m) here
    return gW[:, :L] - G @ W[:, :L]


def moments(A, C, E, model, f):
    """Independent numpy DF_f, R_f of docs/model.md section 6."""
    lam = np.array(model.pi) * np.array(model.alpha) ** 6
    k2, mu = model.k * (model.k + 1) / 4, (model.P - model.k) / 2
    dC = np.diag(C)
    M = 9 * np.outer(dC, dC) * C + 6 * C**3
    R = mu * (E @ M @ E.T)[f, f]
    DF = k2 * (lam * (E @ A**3)[f] ** 2).sum() + R
    return DF, R


def test_acc_is_the_ratio_of_per_unit_feature_gradients_on_a_real_run(phase2_run):
    run, pt = phase2_run
    f = pt.follower
    acc = an.acceleration_factor(run)
    acc1 = an.acceleration_factor(run, feature=0)
    model = an.model_of(run)
    red = ts.ModelParams(d=model.L + model.m, P=model.P, k=model.k, alpha=model.alpha, sigma=model.sigma)
    A, C = an.coordinates(run)
    checked = 0
    l = pt.leader
    for t in range(run.n_points // 3, run.n_points, 5):
        W = reduced_weights(A[t], run.gram[t])
        # E_lf = 0: the leader's own correlation then does not depend on w_f, and the A-path
        # gradient of the follower is rho_f's alone (the section 9 bracket)
        E, I = run.E[t].copy(), np.eye(2)
        E[l, f] = 0.0
        gE, gI = A_path_gradient(W, E, red), A_path_gradient(W, I, red)
        DF, R = moments(A[t], C[t], E, model, f)
        DFI, RI = moments(A[t], C[t], I, model, f)
        closed = [an.acceleration_closed_form(A[t], C[t], run.E[t], model, f, j) for j in (1, 0)]
        np.testing.assert_allclose([acc[t], acc1[t]], closed)
        for j in (1, 0):
            want = an.acceleration_closed_form(A[t], C[t], E, model, f, j)
            # per unit of A_fj, with head / at E = I, without the common factor DF^{-3/2} and R
            got = gE[f, j] / gI[f, j] * (DF / DFI) ** 1.5 * RI / R
            assert got == pytest.approx(want, rel=1e-7)
        checked += 1
    assert checked >= 5
    mid = acc[run.n_points // 2:]
    assert np.all(mid > 5)                     # the head raises v_2's relative weight many-fold
    assert acc[0] == 1.0 and acc1[0] == 1.0    # E(0) = I


def test_acc_closed_form_matches_the_section_9_formula_when_s2_is_zero():
    model = ts.ModelParams(d=8)
    A = np.array([[0.05, 0.04], [0.99, 0.0]])     # leader (1) exactly on v_1: s_2 = 0
    C = np.array([[1.0, 0.1], [0.1, 1.5]])
    E = np.array([[1.0, 0.07], [0.0, 1.0]])
    lam = np.array(model.pi) * np.array(model.alpha) ** 6
    k2 = model.k * (model.k + 1) / 4
    DF, R = moments(A, C, E, model, 0)
    a, s1 = A[0] ** 3, 0.07 * 0.99**3
    want = 1 + k2 * lam[0] * s1 * (a[0] + s1) / R
    assert an.acceleration_closed_form(A, C, E, model, 0) == pytest.approx(want, rel=1e-12)
    want1 = 1 - k2 * lam[1] * a[1] ** 2 * s1 / (a[0] * R)
    assert an.acceleration_closed_form(A, C, E, model, 0, feature=0) == pytest.approx(want1, rel=1e-12)


def test_absolute_speed_ratio_is_the_full_gradient_ratio_and_near_its_prediction(phase2_run):
    run, pt = phase2_run
    f = pt.follower
    model = an.model_of(run)
    red = ts.ModelParams(d=model.L + model.m, P=model.P, k=model.k, alpha=model.alpha, sigma=model.sigma)
    ratio = an.absolute_speed_ratio(run)
    t = run.n_points - 1
    W = reduced_weights(run.A[t], run.gram[t])
    g = ts.population_grad(W, run.E[t], red)[0][f, 1]
    g0 = ts.population_grad(W, np.eye(2), red)[0][f, 1]
    assert ratio[t] == pytest.approx(g / g0, rel=1e-9)
    assert 0 < ratio[t] < 1                    # the absolute speed along v_2 falls
    pred = an.absolute_speed_prediction(run)
    acc = an.acceleration_factor(run)
    assert pred[t] < 1 < acc[t]
    rates = an.growth_rates(run)
    rates_I = an.growth_rates(run, head="identity")
    np.testing.assert_allclose(rates[:, 1] / rates_I[:, 1], ratio, rtol=1e-9)


def test_growth_rates_match_finite_differences_of_the_recorded_trajectory():
    """Small eta, every point 10 steps apart: the recorded ln|A_fj| is the flow's to O(eta)."""
    model = ts.ModelParams(d=512)
    eta = 1e-3
    for head in ("offdiag", "frozen"):
        run = ts.simulate(model, ts.TrainParams(eta=eta, seed=1, steps=100000, record=10001, head=head))
        pt = an.phase_times(run)
        f = 1 - pt.leader if pt.leader is not None else 0
        rates = an.growth_rates(run, leader=1 - f, follower=f)
        lnA = np.log(np.abs(run.A[:, f, :]))
        dt = np.diff(run.flow_time)
        fd = (lnA[2:] - lnA[:-2]) / (dt[1:] + dt[:-1])[:, None]
        mid = rates[1:-1]
        idx = slice(100, None, 500)
        scale = np.abs(mid[idx]).max(axis=0)
        np.testing.assert_allclose(fd[idx], mid[idx], rtol=0, atol=2e-3 * scale.max())
        if head == "frozen":
            np.testing.assert_allclose(an.growth_rates(run, leader=1 - f, follower=f, head="identity"), rates,
                                       rtol=1e-12)


def test_growth_rates_and_acc_are_nan_without_a_follower():
    from test_analysis import make_run
    run = make_run(np.full((3, 2, 2), 0.1))
    assert np.all(np.isnan(an.growth_rates(run)))
    assert np.all(np.isnan(an.acceleration_factor(run)))
    assert np.all(np.isnan(an.absolute_speed_ratio(run)))
    with pytest.raises(ValueError, match="head must be"):
        an.growth_rates(run, head="eye")
