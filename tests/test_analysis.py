"""theory_sim.analysis: observables on hand-built runs with known answers, closed forms
against Monte Carlo and against the full-weight gradient, fits against exact power laws."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import theory_sim as ts
from theory_sim import analysis as an
from theory_sim.driver import config_dict
from theory_sim.results import Run

# ---------------------------------------------------------------- hand-built runs


def make_run(alignment, E=None, *, norms=None, gram=None, steps=None, status="converged",
             model=None, train=None):
    """A Run from its arrays; defaults: unit norms, E = I, steps 0..T-1, orthogonal rows."""
    alignment = np.asarray(alignment, dtype=np.float64)
    T, m, L = alignment.shape
    model = model or ts.ModelParams(d=max(8, m + L), alpha=tuple(6.0 / (l + 1) for l in range(L)),
                                    pi=(1.0 / L,) * L, m=m)
    train = train or ts.TrainParams(eta=0.5)
    E = np.broadcast_to(np.eye(m), (T, m, m)).copy() if E is None else np.asarray(E, float)
    norms = np.ones((T, m)) if norms is None else np.asarray(norms, float)
    gram = np.broadcast_to(np.eye(m), (T, m, m)).copy() if gram is None else np.asarray(gram, float)
    steps = np.arange(T) if steps is None else np.asarray(steps)
    return Run(steps=steps, alignment=alignment, norms=norms, E=E, loss=np.zeros(T), rho=np.zeros((T, m)),
               gram=gram, config=config_dict(model, train), status=status)


def run_from_weights(Ws, Es, model, *, train=None, status="converged"):
    """A Run whose records are computed from full weight matrices (consistent A, norms, gram)."""
    V = ts.feature_vectors(model)
    Ws = np.asarray(Ws, float)
    A = Ws @ V
    gram = Ws @ np.swapaxes(Ws, 1, 2)
    norms = np.sqrt(np.einsum("tjj->tj", gram))
    return make_run(A / norms[:, :, None], Es, norms=norms, gram=gram, model=model, train=train,
                    status=status)


def story(T=12):
    """Two neurons, two features: neuron 1 (index 1) learns v1 at t=3, E_01 peaks at t=6,
    neuron 0 learns v2 at t=8, E back to I (within 0.01) at t=10."""
    c = np.zeros((T, 2, 2))
    c[:, 0, 0] = 0.05
    c[:, 0, 1] = np.minimum(0.02 + 0.1 * np.arange(T) ** 2 / 6, 0.99)
    c[:, 0, 1][8:] = 0.95
    c[:, 0, 1][:8] = np.minimum(c[:, 0, 1][:8], 0.85)
    c[:, 1, 0] = np.r_[[0.1, 0.3, 0.6], np.full(T - 3, 0.97)]
    c[:, 1, 1] = 0.01
    E = np.broadcast_to(np.eye(2), (T, 2, 2)).copy()
    e01 = np.array([0, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.09, 0.05, 0.02, 0.005, 0.001])[:T]
    E[:, 0, 1] = e01
    E[:, 1, 0] = -0.001
    return make_run(c, E, steps=10 * np.arange(T))


# ---------------------------------------------------------------- assignment, roles, phases


def test_feature_assignment_and_counts_on_a_known_story():
    run = story()
    a = an.feature_assignment(run)
    assert a.shape == (12, 2)
    assert list(a[:, 1]) == [-1, -1, -1] + [0] * 9
    assert list(a[:, 0]) == [-1] * 8 + [1] * 4
    assert list(an.n_features_learned(run)) == [0, 0, 0] + [1] * 5 + [2] * 4
    assert an.leader_follower(run) == (1, 0)
    assert an.features_learned(run) == [1, 0]
    assert an.outcome(run) == "diverse"


def test_phase_times_on_a_known_story():
    pt = an.phase_times(story())
    assert (pt.T1, pt.T2, pt.T3, pt.T4) == (30, 60, 80, 100)
    assert (pt.leader, pt.follower) == (1, 0)
    # a looser tolerance: the head counts as back to I as soon as T3
    assert an.phase_times(story(), head_tol=0.06).T4 == 80


def test_threshold_is_a_parameter():
    run = story()
    assert an.phase_times(run, threshold=0.5).T1 == 20
    assert an.feature_assignment(run, threshold=0.5)[2, 1] == 0
    assert an.n_features_learned(run, threshold=0.99)[-1] == 0


def test_events_that_do_not_happen_are_none():
    c = np.full((5, 2, 2), 0.1)
    pt = an.phase_times(make_run(c))
    assert pt == an.PhaseTimes(None, None, None, None, None, None)
    assert an.leader_follower(make_run(c)) == (None, None)
    assert np.all(np.isnan(an.substitution_ratio(make_run(c))))
    # collapse with a frozen head: T1 only; E never leaves I so T2 is None
    c = np.zeros((4, 2, 2))
    c[:, 0, 0] = [0.1, 0.95, 0.99, 0.99]
    c[:, 1, 0] = [0.1, 0.2, 0.95, 0.99]
    run = make_run(c)
    pt = an.phase_times(run)
    assert pt.T1 == 1 and pt.leader == 0 and pt.follower == 1
    assert (pt.T2, pt.T3, pt.T4) == (None, None, None)
    assert an.outcome(run) == "collapsed"
    assert an.n_features_learned(run)[-1] == 1


def test_outcome_incomplete_and_the_cap():
    c = np.zeros((3, 2, 2))
    c[:, 0, 0] = 0.99
    c[:, 1, 1] = [0.1, 0.5, 0.95]
    capped = make_run(c, status="max_steps")  # TrainParams(steps=None): stopped by the flow-time cap
    assert an.hit_cap(capped)
    # a run cut off by the cap has not settled, whatever it shows at the cap (as simulate_many says)
    assert an.outcome(capped) == "incomplete"
    budget = make_run(c, status="max_steps", train=ts.TrainParams(eta=0.5, steps=2))
    assert not an.hit_cap(budget)
    assert an.outcome(budget) == "diverse"  # a fixed horizon is read as it is
    assert an.outcome(make_run(c, status="diverged")) == "incomplete"
    c[:, 1, 1] = 0.5
    assert an.outcome(make_run(c)) == "incomplete"


# ---------------------------------------------------------------- effective rank


def test_effective_rank_known_values():
    assert an.effective_rank(np.eye(3)) == pytest.approx(3.0)
    assert an.effective_rank(np.array([[1.0, 0.0], [1.0, 0.0]])) == pytest.approx(1.0)
    assert an.effective_rank(np.zeros((2, 2))) == 0.0
    # singular values (3, 1): p = (3/4, 1/4)
    h = -(0.75 * np.log(0.75) + 0.25 * np.log(0.25))
    assert an.effective_rank(np.diag([3.0, 1.0])) == pytest.approx(np.exp(h))
    stack = np.stack([np.eye(2), np.array([[1.0, 0], [1.0, 0]])])
    assert an.effective_rank(stack) == pytest.approx([2.0, 1.0])


@given(st.integers(1, 4), st.integers(1, 4), st.integers(0, 2**32 - 1), st.floats(0.1, 10.0))
def test_effective_rank_bounds_and_invariances(m, L, seed, scale):
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((m, L))
    r = an.effective_rank(M)
    assert 1.0 - 1e-9 <= r <= min(m, L) + 1e-9
    assert an.effective_rank(scale * M) == pytest.approx(r)
    Q, _ = np.linalg.qr(rng.standard_normal((m, m)))
    assert an.effective_rank(Q @ M) == pytest.approx(r)


def test_alignment_rank_diverse_vs_collapsed():
    c = np.zeros((1, 2, 2))
    c[0] = np.eye(2)
    assert an.alignment_rank(make_run(c))[0] == pytest.approx(2.0)
    c[0] = [[1.0, 0.0], [1.0, 0.0]]
    assert an.alignment_rank(make_run(c))[0] == pytest.approx(1.0)


# ---------------------------------------------------------------- closed-form moments vs Monte Carlo


def _view1_outputs(batch, W):
    """f_r(X^(1)) = sum over view-1 patches of <w_r, X_p>^3, straight from the materialised batch."""
    u = np.einsum("npd,rd->npr", batch["X"], W)
    return np.einsum("npr,np->nr", u**3, batch["view1"].astype(float))


@pytest.mark.parametrize("split", ["bernoulli", "half"])
def test_view1_second_moments_match_monte_carlo(split, single_thread):
    model = ts.ModelParams(d=6, P=6, k=3, alpha=(1.6, 1.2), pi=(0.6, 0.4), sigma=0.8, m=3, split=split)
    rng = np.random.default_rng(7)
    W = rng.standard_normal((model.m, model.d)) / np.sqrt(model.d)
    W[:, 0] += [0.5, -0.3, 0.1]   # some alignment with v1 so that both terms matter
    feats = []
    for step in range(12):
        *_, batch = ts.sgd_gradient(W, np.eye(model.m), model, batch=4096, seed=11, step=step,
                                    return_batch=True)
        f = _view1_outputs(batch, W)
        feats.append(f[batch["label"] == 0])
    f = np.concatenate(feats)
    prods = f[:, :, None] * f[:, None, :]
    mc = prods.mean(axis=0)
    se = prods.std(axis=0) / np.sqrt(len(f))
    run = run_from_weights(W[None], np.eye(model.m)[None], model)
    S = an.view1_second_moments(run, feature=0)[0]
    assert np.all(np.abs(mc - S) < 5 * se), (mc, S, se)
    # the signal term is a sizeable part of the moment (the test would notice it missing)
    V = ts.feature_vectors(model)
    _, k2, _ = ts.split_moments(model)
    signal = k2 * model.alpha[0] ** 6 * np.outer((W @ V[:, 0]) ** 3, (W @ V[:, 0]) ** 3)
    assert np.abs(signal[0, 0]) > 10 * se[0, 0]


def test_substitution_ratio_matches_monte_carlo(single_thread):
    model = ts.ModelParams(d=6, P=6, k=3, alpha=(2.0, 1.2), pi=(0.5, 0.5), sigma=0.8, m=2)
    rng = np.random.default_rng(3)
    W = 0.5 * rng.standard_normal((2, model.d)) / np.sqrt(model.d)
    W[:, 0] = [0.02, 0.9]        # neuron 1 leads on v1, neuron 0 (the follower) does not
    E = np.array([[1.0, 0.07], [0.0, 1.0]])
    num, den = [], []
    for step in range(10):
        *_, batch = ts.sgd_gradient(W, E, model, batch=4096, seed=5, step=step, return_batch=True)
        f = _view1_outputs(batch, W)[batch["label"] == 0]
        num.append((E[0, 1] * f[:, 1]) ** 2)
        den.append(f[:, 0] ** 2)
    num, den = np.concatenate(num), np.concatenate(den)
    mc = np.sqrt(num.mean() / den.mean())
    # delta-method standard error of the ratio of two means
    cov = np.cov(num, den) / len(num)
    g = np.array([1 / den.mean(), -num.mean() / den.mean() ** 2]) * 0.5 / (mc + 1e-300) * 1.0
    se = np.sqrt(g @ cov @ g)
    run = run_from_weights(W[None], E[None], model)
    ratio = an.substitution_ratio(run, leader=1, follower=0)[0]
    assert abs(ratio - mc) < 5 * se, (ratio, mc, se)
    assert ratio > 10 * se
    # a wrong view moment (kx = E[n1 n2] in place of k2 = E[n1^2]) would be detected
    kx, k2, _ = ts.split_moments(model)
    assert abs(ratio * np.sqrt(kx / k2) - mc) > 8 * se


def test_substitution_ratio_is_linear_in_the_head_entry_and_zero_without_it():
    model = ts.ModelParams(d=8, m=2)
    rng = np.random.default_rng(0)
    W = rng.standard_normal((2, 8)) / np.sqrt(8)
    Es = np.stack([np.eye(2), np.eye(2) + [[0, 0.1], [0, 0]], np.eye(2) + [[0, -0.3], [0, 0]]])
    run = run_from_weights(np.stack([W] * 3), Es, model)
    r = an.substitution_ratio(run, leader=1, follower=0)
    assert r[0] == 0.0
    assert r[2] == pytest.approx(3 * r[1])


# ---------------------------------------------------------------- acceleration factor vs the full gradient


@given(st.integers(0, 2**32 - 1), st.sampled_from(["basis", "random"]), st.integers(0, 2))
def test_feature_gradient_matches_population_grad(seed, features, feature):
    model = ts.ModelParams(d=7, P=6, k=3, alpha=(2.0, 1.5, 1.2), pi=(0.5, 0.3, 0.2), sigma=0.7, m=3,
                           features=features, feature_seed=seed % 5)
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((3, 7)) / np.sqrt(7)
    E = np.eye(3) + 0.2 * rng.standard_normal((3, 3))
    V = ts.feature_vectors(model)
    gW, _ = ts.population_grad(W, E, model)
    A, C = W @ V, model.sigma**2 * W @ W.T
    got = an.feature_gradient(A, C, E, model, feature)
    np.testing.assert_allclose(got, -(gW @ V[:, feature]), rtol=1e-9, atol=1e-12 * np.abs(gW).max())


def test_absolute_speed_ratio_against_population_grad_on_a_simulated_run():
    model = ts.ModelParams(d=16)
    run = ts.simulate(model, ts.TrainParams(eta=0.05, seed=2, steps=1500, record=50))
    pt = an.phase_times(run)
    assert pt.leader is not None and pt.follower is not None
    ratio = an.absolute_speed_ratio(run)
    V = ts.feature_vectors(model)
    f = pt.follower
    g_head = ts.population_grad(run.W, run.E_final, model)[0][f] @ V[:, 1]
    g_eye = ts.population_grad(run.W, np.eye(2), model)[0][f] @ V[:, 1]
    assert ratio[-1] == pytest.approx(g_head / g_eye, rel=1e-9)
    assert ratio[0] == 1.0   # E(0) = I
    ratio1 = an.absolute_speed_ratio(run, feature=0)
    g_head = ts.population_grad(run.W, run.E_final, model)[0][f] @ V[:, 0]
    g_eye = ts.population_grad(run.W, np.eye(2), model)[0][f] @ V[:, 0]
    assert ratio1[-1] == pytest.approx(g_head / g_eye, rel=1e-9)
    # the growth rates are the same gradient per unit of <w_f, v_j>
    rates = an.growth_rates(run)[-1]
    A_f = run.W[f] @ V
    gW = ts.population_grad(run.W, run.E_final, model)[0]
    np.testing.assert_allclose(rates, -(gW[f] @ V) / A_f, rtol=1e-9)


def test_acceleration_and_speed_ratio_are_one_with_a_frozen_head_and_nan_without_a_follower():
    model = ts.ModelParams(d=16)
    run = ts.simulate(model, ts.TrainParams(eta=0.05, seed=2, steps=300, record=20, head="frozen"))
    for fn in (an.acceleration_factor, an.absolute_speed_ratio):
        np.testing.assert_allclose(fn(run, leader=0, follower=1), 1.0)
        assert np.all(np.isnan(fn(make_run(np.full((3, 2, 2), 0.1)))))
        assert np.all(np.isnan(fn(run, leader=0, follower=1, feature=5)))
    np.testing.assert_allclose(an.absolute_speed_prediction(run, leader=0, follower=1), 1.0)


def test_coordinates_use_sigma_squared():
    model = ts.ModelParams(d=8, sigma=0.5)
    W = np.random.default_rng(1).standard_normal((2, 8))
    run = run_from_weights(W[None], np.eye(2)[None], model)
    A, C = an.coordinates(run)
    np.testing.assert_allclose(A[0], W @ ts.feature_vectors(model))
    np.testing.assert_allclose(C[0], 0.25 * W @ W.T)
    assert an.model_of(run) == model


# ---------------------------------------------------------------- power-law fits


@given(st.floats(-3, 3), st.floats(0.01, 100), st.integers(3, 8))
def test_fit_recovers_an_exact_power_law(slope, pref, n):
    x = np.geomspace(1, 1000, n)
    fit = an.fit_power_law(x, pref * x**slope)
    assert fit.slope == pytest.approx(slope, abs=1e-9)
    assert fit.prefactor == pytest.approx(pref, rel=1e-9)
    assert fit.ci[1] - fit.ci[0] < 1e-6


def test_fit_with_groups_removes_offsets_that_bias_a_pooled_fit():
    # three seeds with different prefactors, sampled at different x: pooled slope is biased
    x = np.array([1, 2, 4, 8, 16, 32, 64, 128, 256.0])
    g = np.repeat([0, 1, 2], 3)
    y = np.array([1.0, 10.0, 100.0])[g] * x**2
    assert an.fit_power_law(x, y).slope > 2.5
    fit = an.fit_power_law(x, y, g)
    assert fit.slope == pytest.approx(2.0)
    assert fit.n == 9


def test_fit_interval_covers_the_truth_with_noise():
    rng = np.random.default_rng(4)
    x = np.tile(np.geomspace(1, 100, 6), 5)
    g = np.repeat(np.arange(5), 6)
    covered = 0
    for _ in range(200):
        y = 3 * x**0.5 * np.exp(0.2 * rng.standard_normal(x.size)) * np.exp(rng.standard_normal(5))[g]
        lo, hi = an.fit_power_law(x, y, g).ci
        covered += lo <= 0.5 <= hi
    assert 0.88 <= covered / 200 <= 0.99   # nominal 95 %


def test_fit_drops_bad_points_and_reports_nan_when_underdetermined():
    fit = an.fit_power_law([1, 2, 4, 8], [1, 4, np.nan, 64])
    assert fit.slope == pytest.approx(2.0) and fit.n == 3
    fit = an.fit_power_law([1, 2], [1, 4])      # no residual degree of freedom
    assert np.isnan(fit.slope)
    fit = an.fit_power_law([2, 2, 2], [1, 2, 3])
    assert np.isnan(fit.slope)


@pytest.mark.parametrize(("features", "settled", "want"), [
    ([0, 1], True, "diverse"),
    ([1, 0, 1], True, "diverse"),
    ([0, 0], True, "collapsed"),
    ([0], True, "diverse"),  # one neuron cannot collapse onto another
    ([0, None], True, "incomplete"),
    ([0, 1], False, "incomplete"),
])
def test_outcome_rule(features, settled, want):
    from theory_sim.outcome import outcome_from
    from theory_sim.status import OUTCOMES

    assert outcome_from(features, settled=settled) == want and want in OUTCOMES
