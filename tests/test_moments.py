"""docs/model.md section 6: the closed-form moments against Monte Carlo and exact enumeration.

The closed form (``N_j``, ``DF_j``, ``DG_j``, ``M``) is read out of the package's own
kernels (``theory_sim.core.moments``) and compared with sample averages over
samples drawn (a) by the independent numpy sampler of ``tests/reference.py`` and
(b) by the sgd engine's sampler (``sgd_gradient(..., return_batch=True)``).
"""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref

import theory_sim as ts
from theory_sim.core.moments import forward, target_terms

Z_MC = 5.0
"""Bound on |z| = |sample mean - closed form| / (sample std / sqrt(n)). About 30 z-scores
are tested, all with fixed seeds; under the CLT a |z| > 5 has probability ~6e-7 each, so
a failure means a real discrepancy. The samples are heavy tailed (products of cubes of
Gaussians), hence 5 rather than 3-4, and n large enough for the CLT to hold."""

Z_POWER = 20.0
"""The same Monte-Carlo estimates must reject the *other* split mode's closed form by
far more than Z_MC: this shows the comparison above is sharp enough to catch a wrong
``(kx, k2, mu)`` (the two modes differ by 10-20% here)."""

N_MC = 400_000
"""Samples per Monte-Carlo comparison: relative standard errors of 0.3-1.5% (~2 s)."""

EXACT = 1e-12
"""Relative tolerance for quantities that are equal up to floating-point rounding."""


def mc_model(split):
    # P = 6, k = 3: the split modes differ by 20% in kx and 10% in k2; random features
    return ts.ModelParams(d=6, P=6, k=3, alpha=(2.0, 1.5), pi=(0.6, 0.4), sigma=0.8, m=2,
                          features="random", feature_seed=3, split=split)


def mc_point(model):
    """Weights with sizeable signal and noise terms for every neuron, and a mixing head."""
    V = ts.feature_vectors(model)
    coef = np.array([[0.8, 0.2, -0.4, 0.2, 0.1, -0.3],
                     [0.3, 0.7, 0.5, 0.3, -0.2, 0.4]])
    # an orthonormal basis whose first L columns are the features: A = coef[:, :L]
    U, _ = np.linalg.qr(np.concatenate([V, np.random.default_rng(0).standard_normal((6, 4))], 1))
    U[:, :2] = V
    W = coef @ U.T
    E = np.array([[1.0, 0.3], [0.25, 1.0]])
    return W, E


def package_moments(W, E, model, target=None):
    """``N, DF, DG, M, rho, loss`` from the package's kernels (``forward``'s buffers)."""
    Wt = W if target is None else target
    V = ts.feature_vectors(model)
    s2 = model.sigma**2
    A, C = W @ V, s2 * W @ W.T
    At, Ct = Wt @ V, s2 * Wt @ Wt.T
    lam = np.asarray(model.pi) * np.asarray(model.alpha) ** 6
    kx, k2, mu = ts.split_moments(model)
    m, L = A.shape
    At3, DG = np.empty((m, L)), np.empty(m)
    target_terms(At, Ct, lam, k2, mu, At3, DG)
    A3, H, M, EM = np.empty((m, L)), np.empty((m, L)), np.empty((m, m)), np.empty((m, m))
    N, DF, rho = np.empty(m), np.empty(m), np.empty(m)
    loss = forward(A, np.ascontiguousarray(C), E, At3, DG, lam, kx, k2, mu, A3, H, M, EM, N, DF, rho)
    return {"N": N, "DF": DF, "DG": DG, "M": M, "rho": rho, "loss": loss}


def per_sample_products(W, E, X, view1):
    """(n, 3m) per-sample ``F_j G_j, F_j^2, G_j^2`` whose means are ``N_j, DF_j, DG_j``."""
    f1, f2 = ref.branch_outputs(W, X, view1)
    F = f1 @ E.T
    return np.concatenate([F * f2, F * F, f2 * f2], axis=1)


def z_scores(samples, expected):
    n = samples.shape[0]
    se = samples.std(axis=0, ddof=1) / np.sqrt(n)
    return (samples.mean(axis=0) - expected) / se


def closed(model, W, E):
    mom = package_moments(W, E, model)
    return np.concatenate([mom["N"], mom["DF"], mom["DG"]])


def own_samples(model, W, E, seed, n=N_MC, chunk=50_000):
    rng = np.random.default_rng(seed)
    V = ts.feature_vectors(model)
    out = []
    for _ in range(n // chunk):
        X, view1, *_ = ref.sample(rng, V, n=chunk, **ref.model_kwargs(model))
        out.append(per_sample_products(W, E, X, view1))
    return np.concatenate(out)


def engine_samples(model, W, E, seed, n=N_MC, chunk=50_000):
    out = []
    for step in range(n // chunk):
        *_, batch = ts.sgd_gradient(W, E, model, batch=chunk, seed=seed, step=step, return_batch=True)
        out.append(per_sample_products(W, E, batch["X"], batch["view1"]))
    return np.concatenate(out)


# ---------------------------------------------------------------- split moments


@pytest.mark.parametrize("split", ["bernoulli", "half"])
@pytest.mark.parametrize("P,k", [(2, 2), (4, 2), (4, 3), (6, 3), (8, 4), (8, 8), (10, 3), (16, 4)])
def test_split_moments_match_exact_enumeration(split, P, k):
    model = ts.ModelParams(d=4, P=P, k=k, split=split)
    np.testing.assert_allclose(ts.split_moments(model), ref.split_moments_enumerated(P, k, split),
                               rtol=EXACT, atol=EXACT)


# ---------------------------------------------------------------- closed form vs Monte Carlo


@pytest.mark.parametrize("split", ["bernoulli", "half"])
def test_moments_match_monte_carlo_of_independent_sampler(split):
    model = mc_model(split)
    W, E = mc_point(model)
    z = z_scores(own_samples(model, W, E, seed=101), closed(model, W, E))
    assert np.all(np.abs(z) < Z_MC), f"z-scores of (N_1, N_2, DF_1, DF_2, DG_1, DG_2): {z}"


@pytest.mark.parametrize("split", ["bernoulli", "half"])
def test_moments_match_monte_carlo_of_engine_sampler(split):
    model = mc_model(split)
    W, E = mc_point(model)
    z = z_scores(engine_samples(model, W, E, seed=202), closed(model, W, E))
    assert np.all(np.abs(z) < Z_MC), f"z-scores of (N_1, N_2, DF_1, DF_2, DG_1, DG_2): {z}"


def test_monte_carlo_resolves_the_two_split_modes():
    """Power check: the samples of one split mode reject the other mode's closed form."""
    for split, other in (("bernoulli", "half"), ("half", "bernoulli")):
        model = mc_model(split)
        W, E = mc_point(model)
        z = z_scores(own_samples(model, W, E, seed=303, n=200_000), closed(mc_model(other), W, E))
        assert np.max(np.abs(z)) > Z_POWER, z


def test_rho_matches_monte_carlo_ratio():
    """``rho_j`` from population_terms vs N/sqrt(DF DG) of sample means (batch-means SE)."""
    model = mc_model("bernoulli")
    W, E = mc_point(model)
    prods = own_samples(model, W, E, seed=404)
    groups = prods.reshape(40, -1, prods.shape[1]).mean(axis=1)     # 40 groups of 10^4
    m = model.m
    rho_g = groups[:, :m] / np.sqrt(groups[:, m:2 * m] * groups[:, 2 * m:])
    _, rho = ts.population_terms(W, E, model)
    z = (rho_g.mean(axis=0) - rho) / (rho_g.std(axis=0, ddof=1) / np.sqrt(len(rho_g)))
    assert np.all(np.abs(z) < Z_MC), z


def test_rho_is_the_normalised_cross_moment(rng):
    """population_terms' rho and loss equal N/sqrt(DF DG) and sum(2 - 2 rho) of the kernels,
    and the independent numpy closed form (several points, a target branch apart)."""
    for split in ("bernoulli", "half"):
        model = ts.ModelParams(d=7, P=8, k=3, alpha=(3.0, 2.0, 1.5), pi=(0.5, 0.3, 0.2),
                               sigma=1.3, m=3, features="random", split=split)
        V = ts.feature_vectors(model)
        for _ in range(5):
            W = rng.standard_normal((3, 7)) / np.sqrt(7)
            Wt = rng.standard_normal((3, 7)) / np.sqrt(7)
            E = np.eye(3) + 0.3 * rng.standard_normal((3, 3))
            mom = package_moments(W, E, model, target=Wt)
            loss, rho = ts.population_terms(W, E, model, target=Wt)
            np.testing.assert_allclose(rho, mom["N"] / np.sqrt(mom["DF"] * mom["DG"]), rtol=EXACT)
            np.testing.assert_allclose(loss, np.sum(2 - 2 * rho), rtol=EXACT)
            want = ref.closed_form(W, E, V, target=Wt, **ref.model_kwargs(model))
            for key in ("N", "DF", "DG", "M"):
                np.testing.assert_allclose(mom[key], want[key], rtol=EXACT,
                                           atol=EXACT * np.abs(want[key]).max(), err_msg=key)
            np.testing.assert_allclose(rho, want["rho"], rtol=EXACT, atol=EXACT)


def test_cube_moment_identity_by_monte_carlo():
    """``E[u_r^3 u_q^3] = 9 C_rr C_qq C_rq + 6 C_rq^3`` for jointly Gaussian u (and the kernel's M)."""
    rng = np.random.default_rng(505)
    C = np.array([[1.0, 0.7, -0.4], [0.7, 1.5, 0.2], [-0.4, 0.2, 0.6]])
    n = 1_000_000
    u = rng.standard_normal((n, 3)) @ np.linalg.cholesky(C).T
    u3 = u**3
    prods = np.stack([u3[:, r] * u3[:, q] for r in range(3) for q in range(3)], axis=1)
    formula = (9 * np.outer(np.diag(C), np.diag(C)) * C + 6 * C**3).ravel()
    z = z_scores(prods, formula)
    assert np.all(np.abs(z) < Z_MC), z.reshape(3, 3)
    # the kernel's M for W with sigma^2 W W^T = C
    model = ts.ModelParams(d=3, P=4, k=2, alpha=(1.0,), pi=(1.0,), sigma=0.5, m=3)
    W = np.linalg.cholesky(C) / model.sigma
    M = package_moments(W, np.eye(3), model)["M"]
    np.testing.assert_allclose(M.ravel(), formula, rtol=EXACT)


# ---------------------------------------------------------------- the engine's sampler


@pytest.mark.parametrize("split", ["bernoulli", "half"])
def test_engine_sampler_structure(split):
    """Each sample of the sgd engine: exactly k patches equal to s alpha_l v_l, the rest
    N(0, sigma^2 I); labels ~ pi, signs fair, feature patches and view 1 uniformly placed."""
    model = ts.ModelParams(d=5, P=8, k=3, alpha=(2.0, 1.5, 1.0), pi=(0.5, 0.3, 0.2), sigma=0.7,
                           m=2, features="random", split=split)
    V = ts.feature_vectors(model)
    W = np.ones((2, 5))
    n = 40_000
    *_, b = ts.sgd_gradient(W, None, model, batch=n, seed=7, step=3, return_batch=True)
    X, view1, label, sign = b["X"], b["view1"], b["label"], b["sign"]
    assert X.shape == (n, 8, 5) and view1.shape == (n, 8) and view1.dtype == bool
    assert set(np.unique(sign)) == {-1.0, 1.0} and set(np.unique(label)) <= {0, 1, 2}
    signal = (sign * np.asarray(model.alpha)[label])[:, None] * V[:, label].T
    feat = np.all(X == signal[:, None, :], axis=2)
    np.testing.assert_array_equal(feat.sum(axis=1), model.k)
    if split == "half":
        np.testing.assert_array_equal(view1.sum(axis=1), model.P // 2)

    def z_prop(x, p):  # z-score of a sample proportion
        return (np.mean(x) - p) / np.sqrt(p * (1 - p) / np.size(x))

    for l, p in enumerate(model.pi):
        assert abs(z_prop(label == l, p)) < Z_MC
    assert abs(z_prop(sign > 0, 0.5)) < Z_MC
    for p in range(model.P):
        assert abs(z_prop(feat[:, p], model.k / model.P)) < Z_MC
        assert abs(z_prop(view1[:, p], 0.5)) < Z_MC
    # noise coordinates: mean 0, variance sigma^2, uncorrelated, Gaussian fourth moment
    xi = X[~feat]
    assert xi.shape == (n * (model.P - model.k), model.d)
    s2 = model.sigma**2
    assert np.all(np.abs(z_scores(xi, 0.0)) < Z_MC)
    assert np.all(np.abs(z_scores(xi**2, s2)) < Z_MC)
    assert np.all(np.abs(z_scores(xi**4, 3 * s2**2)) < Z_MC)
    cross = np.stack([xi[:, a] * xi[:, c] for a in range(5) for c in range(a + 1, 5)], axis=1)
    assert np.all(np.abs(z_scores(cross, 0.0)) < Z_MC)
