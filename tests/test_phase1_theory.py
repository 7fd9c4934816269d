"""The leading-order phase-I prediction T1_pred (docs/model.md section 11) against the
discrete population engine, and the vanishing outcome (section 10) on runs in its regime."""

from __future__ import annotations

import numpy as np
import pytest

import theory_sim as ts
from theory_sim import analysis as an
from theory_sim.model import feature_vectors, reduced_coordinates


def test_t1_prediction_is_the_blow_up_of_the_leading_order_ode():
    """Independent check of the constant: integrate da/dt = 2 kx lam_1 a^5 / (5 mu sigma^6 r^6)
    with scipy from a(0) to threshold * r."""
    from scipy.integrate import solve_ivp

    model = ts.ModelParams(d=64, sigma=0.8, k=3, P=10, alpha=(5.0, 1.0))
    W0 = ts.initial_weights(model, 3)
    per = an.t1_prediction_per_neuron(model, W0, threshold=0.9)
    lam1 = 0.5 * 5.0**6
    kx, mu = 3 * 2 / 4, (10 - 3) / 2
    for j in range(2):
        r = np.linalg.norm(W0[j])
        a0 = abs(W0[j, 0])
        c = 2 * kx * lam1 / (5 * mu * 0.8**6 * r**6)
        def hit(t, y, r=r):
            return y[0] - 0.9 * r
        hit.terminal = True
        sol = solve_ivp(lambda t, y, c=c: c * y**5, (0, 1e9), [a0], events=hit, rtol=1e-10, atol=1e-14)
        assert per[j] == pytest.approx(sol.t_events[0][0], rel=1e-6)
    assert an.t1_prediction(model, W0) == per.min()


def test_t1_prediction_accepts_reduced_coordinates_and_scales_as_d_squared():
    model = ts.ModelParams(d=300)
    W0 = ts.initial_weights(model, 5)
    want = an.t1_prediction(model, W0)
    red = reduced_coordinates(feature_vectors(model), W0)
    assert an.t1_prediction(model, red) == pytest.approx(want, rel=1e-12)
    K = np.linalg.cholesky(W0 @ W0.T - (W0[:, :2] @ W0[:, :2].T))
    B = np.concatenate([W0 @ feature_vectors(model), K], 1)
    assert an.t1_prediction(model, B) == pytest.approx(want, rel=1e-12)
    # coupled weights: same feature coordinates z / sqrt(d), unit norms -> exactly d^2
    z = np.array([[0.7, -0.2], [-0.3, 1.1]])
    preds = []
    for d in (100, 1000, 10000):
        m = ts.ModelParams(d=d)
        Bd = np.concatenate([z / np.sqrt(d), np.diag(np.sqrt(1 - (z**2).sum(1) / d))], 1)
        preds.append(an.t1_prediction(m, Bd, threshold=1.0))
    assert preds[1] / preds[0] == pytest.approx(100, rel=1e-3)
    assert preds[2] / preds[1] == pytest.approx(100, rel=1e-4)
    with pytest.raises(ValueError, match="shape"):
        an.t1_prediction(model, np.zeros((2, 7)))


def test_a_neuron_whose_v2_blow_up_comes_first_is_not_the_predicted_leader():
    model = ts.ModelParams(d=1000)
    B = np.array([[1e-4, 0.2, 1.0, 0.0], [0.03, 0.001, 0.0, 1.0]])
    per = an.t1_prediction_per_neuron(model, B)
    assert np.isinf(per[0]) and np.isfinite(per[1])


@pytest.mark.slow
def test_t1_over_t1_pred_tends_to_one_as_d_grows():
    """The discrete population engine (eta = 0.5, frozen head: phase I is the same) against the
    prediction from W(0) alone; seeds with T1_pred <= 1.5e5 (chosen from W(0), before running)."""
    eta = 0.5
    ratios = {}
    for d in (512, 2048, 8192, 32768):
        model = ts.ModelParams(d=d)
        all_preds = {s: an.t1_prediction(model, ts.initial_weights(model, s)) for s in range(1, 40)}
        seeds = [s for s, p in all_preds.items() if p <= 1.5e5][:6]
        preds = np.array([all_preds[s] for s in seeds])
        trains = [ts.TrainParams(eta=eta, seed=s, head="frozen", steps=int((p + 500) / eta))
                  for s, p in zip(seeds, preds, strict=True)]
        T1 = np.array([o.T1 * eta for o in ts.simulate_many(model, trains)])
        ratios[d] = T1 / preds
        assert np.all(T1 - preds > -1.0)          # the neglected terms only slow the climb
        assert np.all(T1 - preds < 200.0)         # ... by a d-independent O(1) flow time
    med = {d: float(np.median(r - 1)) for d, r in ratios.items()}
    assert med[512] > 0.5                          # at d = 512 the O(1) part dominates
    assert med[32768] < 0.01
    assert med[32768] < med[8192] < med[2048] < med[512]


# ---------------------------------------------------------------- the third outcome: vanishing

VANISH_MODEL = ts.ModelParams(d=512, alpha=(6.0, 3.0))


def vanish_train(seed, head="offdiag", **kw):
    return ts.TrainParams(eta=0.3, eta_E=0.03, seed=seed, head=head, max_flow_time=1e6, **kw)


def summary_vanishing(summary, train):
    """The final-state criterion computed from a RunSummary that carries W."""
    W = summary.W
    A, C = W @ ts.feature_vectors(VANISH_MODEL), W @ W.T
    from theory_sim.model import head_mask
    return an.vanishing_state(VANISH_MODEL, A, C, summary.E, summary.features,
                              head_rate=train.eta_E / train.eta, mask=head_mask(train.head, 2))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [5003, 5026])
def test_followers_that_shrink_away_are_vanishing(seed):
    run = ts.simulate(VANISH_MODEL, vanish_train(seed, record=200))
    assert run.status == "max_steps"
    assert an.outcome(run, vanishing=True) == "vanishing"  # a description of the state at the cap
    assert an.outcome(run) == "incomplete"            # cut off by the cap: no fate, as simulate_many says
    # what the criterion reads, checked on the raw trajectory
    feats = an.features_learned(run)
    f = feats.index(None)
    l = 1 - f
    i0 = int(np.searchsorted(run.flow_time, 2.5e5))
    assert run.norms[-1, f] < 0.8 * run.norms[i0, f]
    assert abs(run.E[-1, f, l]) > abs(run.E[i0, f, l])
    rates = an.growth_rates(run, leader=l, follower=f)[-1]
    assert np.all(rates < 0)
    # one more flow-time unit of the finite differences agrees with the sign of the rates
    lnA = np.log(np.abs(run.A[-2:, f, :]))
    assert np.all(np.diff(lnA, axis=0) < 0)


@pytest.mark.slow
def test_diverse_collapsed_and_frozen_stuck_runs_are_not_vanishing():
    trains = [vanish_train(5003), vanish_train(5026), vanish_train(5001), vanish_train(5003, head="frozen")]
    out = ts.simulate_many(VANISH_MODEL, trains, weights=True)
    flags = [summary_vanishing(s, t) for s, t in zip(out, trains, strict=True)]
    assert flags == [True, True, False, False]
    assert out[2].outcome == "diverse"
    assert out[3].outcome in ("collapsed", "diverse")
    diverse = ts.simulate(VANISH_MODEL, vanish_train(5001, record=100))
    assert an.outcome(diverse, vanishing=True) == "diverse"
    frozen = ts.simulate(VANISH_MODEL, vanish_train(5003, head="frozen", record=100))
    assert an.outcome(frozen, vanishing=True) in ("collapsed", "diverse")


def test_a_featureless_neuron_at_the_identity_head_is_never_vanishing():
    """At E = I the loss is scale-invariant in every w_j: no shrinking (docs/model.md section 10)."""
    model = ts.ModelParams(d=64)
    rng = np.random.default_rng(0)
    W = rng.standard_normal((2, 64)) / 8
    W[1, 0] = 3.0                               # neuron 2 holds v_1
    A, C = W @ ts.feature_vectors(model), W @ W.T
    r = an.follower_rates(model, A, C, np.eye(2), 0, 1)
    assert abs(r["norm"]) < 1e-10 * np.abs(r["growth"]).max()
    assert r["head"] == 0.0
    assert not an.vanishing_state(model, A, C, np.eye(2), [None, 0])
    assert not an.vanishing_state(model, A, C, np.eye(2), [0, 0])


def test_outcome_from_names_vanishing_only_beside_a_learned_feature():
    from theory_sim.outcome import outcome_from
    from theory_sim.status import OUTCOMES
    assert "vanishing" in OUTCOMES
    assert outcome_from([None, 0], settled=False, vanishing=True) == "vanishing"
    assert outcome_from([None, 0], settled=True) == "incomplete"
    assert outcome_from([None, None], settled=True, vanishing=True) == "incomplete"
    assert outcome_from([1, 0], settled=True, vanishing=True) == "diverse"
