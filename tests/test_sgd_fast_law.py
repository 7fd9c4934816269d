"""The exact-in-distribution engine (``sgd-fast``) runs the same random process as
the materialised ``sgd`` engine (docs/model.md section 8).

From one fixed start, ``N_SEEDS`` independent runs of each engine give samples of
``<w_j, v_l>`` and ``|w_j|`` after ``STEPS`` steps; two-sample Kolmogorov-Smirnov tests
compare them. With ``n_stats`` statistics tested at level ``ALPHA / n_stats``
(Bonferroni), the probability of a false alarm is at most ``ALPHA = 1e-3``; the
seeds are fixed, so the outcome is reproducible. The same test must reject a
different process (batch 24 instead of 32: 15% more gradient noise), which shows it has power.
"""

import numpy as np
import pytest
from scipy import stats

import theory_sim as ts

ALPHA = 1e-3
N_SEEDS = 300
STEPS = 25
MODEL = ts.ModelParams(d=12, P=6, k=2, alpha=(3.0, 2.0))


def _final_stats(engine: str, batch: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    W0 = rng.standard_normal((MODEL.m, MODEL.d))
    W0 /= np.linalg.norm(W0, axis=1, keepdims=True)
    W0[:, :2] += 0.4  # some signal, so the feature coordinates move
    out = []
    for seed in range(N_SEEDS):
        train = ts.TrainParams(eta=0.05, steps=STEPS, engine=engine, batch=batch, seed=seed, record=2)
        run = ts.simulate(MODEL, train, W0=W0)
        A = run.W @ ts.feature_vectors(MODEL)
        out.append(np.concatenate([A.ravel(), np.linalg.norm(run.W, axis=1), run.E_final[[0, 1], [1, 0]]]))
    return np.array(out)


@pytest.fixture(scope="module")
def materialised():
    return _final_stats("sgd", 32)


def _min_p(a, b):
    return min(stats.ks_2samp(a[:, i], b[:, i]).pvalue for i in range(a.shape[1]))


def test_sgd_fast_has_the_law_of_the_materialised_engine(materialised):
    fast = _final_stats("sgd-fast", 32)
    n_stats = fast.shape[1]
    assert _min_p(materialised, fast) > ALPHA / n_stats


def test_the_comparison_detects_a_different_process(materialised):
    noisier = _final_stats("sgd-fast", 24)  # 15% more gradient noise: p ~ 1e-30 measured
    assert _min_p(materialised, noisier) < ALPHA / noisier.shape[1]


def test_mean_gradients_agree_at_a_fixed_point():
    """Averages of many one-step gradients from both engines agree within a z bound."""
    rng = np.random.default_rng(3)
    W = rng.standard_normal((MODEL.m, MODEL.d))
    W[:, :2] += 1.0
    E = np.eye(2) + 0.1 * rng.standard_normal((2, 2))
    n = 400
    mat = np.array([np.concatenate([g.ravel(), e.ravel()]) for g, e, _ in
                    (ts.sgd_gradient(W, E, MODEL, batch=64, seed=s) for s in range(n))])
    fast = np.array([np.concatenate([g.ravel(), e.ravel()]) for g, e, _ in
                     (ts.sgd_gradient(W, E, MODEL, batch=64, seed=s, fast=True) for s in range(n))])
    se = np.sqrt(mat.var(axis=0, ddof=1) / n + fast.var(axis=0, ddof=1) / n)
    z = (mat.mean(axis=0) - fast.mean(axis=0)) / np.where(se > 0, se, 1.0)
    assert np.all(np.abs(z) < 5.0), np.abs(z).max()  # 5 sigma: false alarm ~1e-5 over 28 entries
