"""docs/model.md section 7: the stop-gradient population gradient.

``population_grad`` against central finite differences of ``population_loss`` with
the target (stop-gradient) branch held fixed, and against the independent numpy
gradient of ``tests/reference.py`` (itself checked against finite differences of
the numpy loss).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import reference as ref

import theory_sim as ts

FD_STEP = 1e-4
"""Step of the fourth-order central difference (absolute; the weights are O(0.1-1)).
Its error is ~ h^4 |L^(5)| / 30 (truncation) plus ~ eps |L| / h ~ 1e-11 (rounding)."""

FD_TOL = 1e-6
"""Allowed |finite difference - gradient|, relative to the largest gradient entry
(O(0.01-10) at these points), plus FD_ABS. The measured errors use at most ~1% of
this bound; a wrong term or factor in the gradient shows up at O(1e-2) or more."""

FD_ABS = 1e-9
"""Absolute floor of that tolerance: the rounding error of the finite difference is
~ eps |L| / h ~ 2e-16 * 6 / 1e-4 ~ 1e-11. It matters only where the loss is flat or
nearly so (sigma = 0 with m = 1 or L = 1: rho_j = +-kx/k2 whatever W, the gradient is 0)."""

EXACT = 1e-12
"""Relative agreement of two exact implementations of the same formula (rounding only)."""


def assert_grad_close(got, want, scale, what):
    err = np.max(np.abs(got - want))
    assert err <= FD_TOL * scale + FD_ABS, f"{what}: max error {err:.3g} vs scale {scale:.3g}"


def population_fd(W, E, model, target):
    gW = ref.fd_grad(lambda X: ts.population_loss(X, E, model, target=target), W, FD_STEP)
    gE = ref.fd_grad(lambda X: ts.population_loss(W, X, model, target=target), E, FD_STEP)
    return gW, gE


CASES = list(itertools.product([1, 2, 3], [1, 2, 3], [0.0, 0.6, 1.0, 1.7], ["basis", "random"]))


@pytest.mark.parametrize("m,L,sigma,features", CASES)
def test_population_grad_matches_finite_differences(m, L, sigma, features, rng):
    alpha = (3.0, 2.0, 1.5)[:L]
    pi = np.full(L, 1.0 / L)
    split = "half" if (m + L) % 2 else "bernoulli"
    model = ts.ModelParams(d=5, P=8, k=3, alpha=alpha, pi=tuple(pi), sigma=sigma, m=m,
                           features=features, feature_seed=m + 10 * L, split=split)
    for _ in range(3):
        W, E = ref_point(rng, model)
        gW, gE = ts.population_grad(W, E, model)
        fW, fE = population_fd(W, E, model, target=W)
        scale = max(np.abs(gW).max(), np.abs(gE).max())
        assert_grad_close(gW, fW, scale, "dL/dW")
        assert_grad_close(gE, fE, scale, "dL/dE")


def ref_point(rng, model):
    """Random ``W`` with sizeable components along the features (so the signal terms
    matter, not only the noise terms) and a non-trivial head ``E``."""
    W = rng.standard_normal((model.m, model.d)) / np.sqrt(model.d)
    W += 0.5 * rng.standard_normal((model.m, model.L)) @ ts.feature_vectors(model).T
    E = np.eye(model.m) + 0.3 * rng.standard_normal((model.m, model.m))
    return W, E


@pytest.mark.parametrize("sigma", [0.0, 0.7, 1.4])
def test_population_grad_with_a_separate_target_branch(sigma, rng):
    """``target=Wt != W``: the gradient of the online branch with the target at Wt."""
    model = ts.ModelParams(d=6, P=10, k=4, alpha=(4.0, 2.0), pi=(0.3, 0.7), sigma=sigma, m=3,
                           features="random")
    for _ in range(3):
        W, E = ref_point(rng, model)
        Wt, _ = ref_point(rng, model)
        gW, gE = ts.population_grad(W, E, model, target=Wt)
        fW, fE = population_fd(W, E, model, target=Wt)
        scale = max(np.abs(gW).max(), np.abs(gE).max())
        assert_grad_close(gW, fW, scale, "dL/dW")
        assert_grad_close(gE, fE, scale, "dL/dE")


def test_stop_gradient_differs_from_the_full_gradient(rng):
    """The target branch is really held fixed: differentiating through it gives another vector."""
    model = ts.ModelParams(d=5, P=8, k=3, alpha=(3.0, 2.0), sigma=1.0, m=2)
    W, E = ref_point(rng, model)
    gW, _ = ts.population_grad(W, E, model)
    full = ref.fd_grad(lambda X: ts.population_loss(X, E, model), W, FD_STEP)
    scale = np.abs(gW).max()
    assert np.max(np.abs(full - gW)) > 100 * FD_TOL * scale


def reference_fd(W, E, V, kw):
    fW = ref.fd_grad(lambda X: ref.closed_form(X, E, V, target=W, **kw)["loss"], W, FD_STEP)
    fE = ref.fd_grad(lambda X: ref.closed_form(W, X, V, target=W, **kw)["loss"], E, FD_STEP)
    return fW, fE


@pytest.mark.parametrize("split", ["bernoulli", "half"])
@pytest.mark.parametrize("m,L", [(1, 1), (2, 2), (3, 2), (2, 3)])
def test_reference_gradient_matches_its_finite_differences(m, L, split, rng):
    """The numpy reference gradient (used by the slow GD loop) is right."""
    model = ts.ModelParams(d=5, P=8, k=3, alpha=(3.0, 2.0, 1.5)[:L], pi=tuple(np.full(L, 1 / L)),
                           sigma=0.8, m=m, features="random", split=split)
    V, kw = ts.feature_vectors(model), ref.model_kwargs(model)
    for _ in range(2):
        W, E = ref_point(rng, model)
        gW, gE = ref.closed_form_grad(W, E, V, **kw)
        fW, fE = reference_fd(W, E, V, kw)
        scale = max(np.abs(gW).max(), np.abs(gE).max())
        assert_grad_close(gW, fW, scale, "reference dL/dW")
        assert_grad_close(gE, fE, scale, "reference dL/dE")


@pytest.mark.parametrize("split", ["bernoulli", "half"])
@pytest.mark.parametrize("m,L,sigma", [(1, 1, 1.0), (2, 2, 0.0), (2, 2, 0.6), (3, 3, 1.7), (4, 2, 1.2)])
def test_population_grad_matches_numpy_reference(m, L, sigma, split, rng):
    model = ts.ModelParams(d=9, P=12, k=5, alpha=(3.0, 2.0, 1.5)[:L], pi=tuple(np.full(L, 1 / L)),
                           sigma=sigma, m=m, features="random", split=split)
    V, kw = ts.feature_vectors(model), ref.model_kwargs(model)
    for _ in range(3):
        W, E = ref_point(rng, model)
        Wt, _ = ref_point(rng, model)
        for target in (None, Wt):
            gW, gE = ts.population_grad(W, E, model, target=target)
            rW, rE = ref.closed_form_grad(W, E, V, target=target, **kw)
            scale = max(np.abs(rW).max(), np.abs(rE).max())
            np.testing.assert_allclose(gW, rW, rtol=0, atol=EXACT * scale)
            np.testing.assert_allclose(gE, rE, rtol=0, atol=EXACT * scale)
            loss = ts.population_loss(W, E, model, target=target)
            assert loss == pytest.approx(ref.closed_form(W, E, V, target=target, **kw)["loss"],
                                         rel=EXACT, abs=EXACT)
