"""The reduced initial law (docs/model.md section 11) against the materialised W(0).

Two-sample Kolmogorov-Smirnov tests over many seeds, on entries of ``A = W(0) V``, of
``C = W(0) W(0)^T`` and on the flow's T1 (censored at a cap, the same for both laws), at
d = 16 and 512. Total false-alarm rate 1e-2 over the ``N_TESTS`` tests (Bonferroni:
each at 1e-2 / N_TESTS); the seeds are fixed, so the outcome is deterministic. A power
check: the same test rejects the law with ``K_ii^2 d ~ chi2_d`` instead of ``chi2_{d-L-i+1}``.
"""

from __future__ import annotations

import flow_support as fs
import numpy as np
import pytest
from scipy import stats

from theory_sim.initial_law import materialised_coordinates, reduced_coordinates
from theory_sim.params import ModelParams, TrainParams

FALSE_ALARM = 1e-2
N_TESTS = 2 * 5  # two d's x (A, C11, C12, C22, T1)
LEVEL = FALSE_ALARM / N_TESTS
N_SEEDS = 1500


def _moments(B, Vr):
    A = B @ Vr
    C = B @ B.T
    return A.ravel(), C[0, 0], C[0, 1], C[1, 1]


def _sample(model, law, n, offset=0, **kw):
    A, c11, c12, c22 = [], [], [], []
    for s in range(offset, offset + n):
        if law == "materialised":
            B, Vr = materialised_coordinates(model, s)
        else:
            B, Vr = reduced_coordinates(model.m, model.L, model.d, s, **kw)
        a, x, y, z = _moments(B, Vr)
        A.append(a)
        c11.append(x)
        c12.append(y)
        c22.append(z)
    return np.concatenate(A), np.array(c11), np.array(c12), np.array(c22)


@pytest.mark.parametrize("d", [16, 512])
def test_reduced_law_matches_materialised_moments(d):
    model = ModelParams(d=d)
    mat = _sample(model, "materialised", N_SEEDS)
    red = _sample(model, "reduced", N_SEEDS, offset=10**6)
    for name, x, y in zip(("A", "C11", "C12", "C22"), mat, red, strict=True):
        p = stats.ks_2samp(x, y).pvalue
        assert p > LEVEL, f"d={d}: KS rejects equality of {name} (p={p:.2g})"


def test_wrong_law_is_rejected():
    """Power: chi2_d instead of chi2_{d-L-i+1} on the Bartlett diagonal is detected at d=16."""
    model = ModelParams(d=16)
    mat = _sample(model, "materialised", N_SEEDS)
    bad = _sample(model, "reduced", N_SEEDS, offset=10**6, wrong_dof=True)
    p = min(stats.ks_2samp(mat[1], bad[1]).pvalue, stats.ks_2samp(mat[3], bad[3]).pvalue)
    assert p < LEVEL


@pytest.mark.parametrize("d,cap", [(16, 100.0), (512, 150.0)])
def test_reduced_law_gives_the_same_T1(d, cap):
    model = ModelParams(d=d)
    train = TrainParams(max_flow_time=cap)
    n = 300

    def t1s(law, offset):
        out = []
        for s in range(offset, offset + n):
            B, Vr = (materialised_coordinates(model, s) if law == "materialised"
                     else reduced_coordinates(model.m, model.L, d, s))
            res = fs.integrate_flow(model, train, B0=B, Vr=Vr, rtol=1e-6)
            T1 = res["phase_times"]["T1"]
            out.append(cap if T1 is None else T1)  # censored at the cap, alike for both laws
        return np.array(out)

    x, y = t1s("materialised", 0), t1s("reduced", 10**6)
    assert np.mean(x < cap) > 0.3  # the cap leaves most of the distribution visible
    p = stats.ks_2samp(x, y).pvalue
    assert p > LEVEL, f"d={d}: KS rejects equality of T1 (p={p:.2g})"


def test_reduced_law_costs_nothing_in_d():
    B, Vr = reduced_coordinates(2, 2, 10**12, 0)
    assert B.shape == (2, 4) and Vr.shape == (4, 2)
    assert np.all(np.isfinite(B))
    # |w_j|^2 ~ chi2_d / d -> 1
    assert np.allclose((B**2).sum(1), 1.0, atol=1e-4)


def test_small_d_has_fewer_perp_coordinates():
    B, Vr = reduced_coordinates(3, 2, 3, 5)  # p = d - L = 1 < m
    assert B.shape == (3, 3)
    B, Vr = reduced_coordinates(2, 2, 2, 5)  # no complement
    assert B.shape == (2, 2)
    with pytest.raises(ValueError, match="d must be"):
        reduced_coordinates(2, 2, 1, 0)


def test_reduced_start_dispatch():
    model = ModelParams(d=64)
    B, Vr = fs.reduced_start(model, 3, "materialised")
    from theory_sim.model import initial_weights
    W0 = initial_weights(model, 3)
    assert np.allclose(B @ Vr, W0[:, :2])  # basis features: A = first two columns
    with pytest.raises(ValueError, match="init must be"):
        fs.reduced_start(model, 3, "bogus")
