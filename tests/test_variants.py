"""docs/model.md section 12: the mechanism ablations (normalisation, stop-gradient, EMA target).

* the closed-form loss of every variant against the numpy reference;
* ``population_grad`` against central finite differences of ``population_loss`` with whatever
  the variant stops the gradient through held fixed (nothing, with the stop-gradient off);
* ``population_step_variant`` (reduced coordinates) against ``population_grad`` (full weights);
* the default variant is today's code, bit for bit; ``tau = 0`` EMA is the online model, bit for bit;
* the SGD variant kernel against finite differences of the numpy batch loss, and its average
  over many batches against the population gradient (one-sided and symmetrised loss).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import reference as ref
from hypothesis import given
from hypothesis import strategies as st

import theory_sim as ts
from theory_sim import objective as ob
from theory_sim.core import variants as cv
from theory_sim.core.population import make_workspace, population_step, ws_gB, ws_gE
from theory_sim.model import head_mask, model_constants, reduced_coordinates

FD_STEP = 1e-4
"""Fourth-order central difference step (as tests/test_gradients.py): truncation ~ h^4 |L^(5)|,
rounding ~ eps |L| / h."""

FD_TOL = 1e-6
"""Allowed |finite difference - gradient| relative to the largest gradient entry (plus FD_ABS
times the loss scale). A wrong term or factor shows up at O(1e-2) or more."""

FD_ABS = 1e-9

EXACT = 1e-12
"""Relative agreement of two exact implementations of the same formula (rounding only)."""

Z_MAX = 5.0
"""Bound on |z| = |batch-mean gradient - population gradient| / standard error, per entry.
About 9 x 16 z-scores are tested; under the null each exceeds 5 with probability 6e-7."""

VARIANTS = list(itertools.product(["bn", "none"], ["on", "off"], ["online", "ema"]))
TAU = 0.3


def small_model(m=2, L=2, sigma=1.0, d=5, split="bernoulli"):
    return ts.ModelParams(d=d, P=8, k=3, alpha=(3.0, 2.0, 1.5)[:L], pi=tuple(np.full(L, 1.0 / L)),
                          sigma=sigma, m=m, features="random", feature_seed=7, split=split)


def ref_point(rng, model, scale=0.5):
    """Random ``W`` with sizeable feature components and a non-trivial head ``E``."""
    W = rng.standard_normal((model.m, model.d)) / np.sqrt(model.d)
    W += scale * rng.standard_normal((model.m, model.L)) @ ts.feature_vectors(model).T
    E = np.eye(model.m) + 0.3 * rng.standard_normal((model.m, model.m))
    return W, E


def target_of(W, Wbar, stopgrad, target):
    """The target weights as a function of the online ``X``, as the variant differentiates them:
    fixed (stop-gradient on), ``X`` itself (online, off), or the EMA update that produced
    ``Wbar`` (EMA, off: ``Wbar + (1 - tau)(X - W)``)."""
    fixed = W if target == "online" else Wbar
    if stopgrad == "on":
        return lambda X: fixed
    if target == "online":
        return lambda X: X
    return lambda X: Wbar + (1.0 - TAU) * (X - W)


def variant_kwargs(Wbar, stopgrad, target):
    if target == "online":
        return {}
    return {"target": Wbar, "tau": TAU} if stopgrad == "off" else {"target": Wbar}


def assert_close(got, want, scale, what, tol=FD_TOL):
    err = np.max(np.abs(got - want))
    assert err <= tol * scale + FD_ABS, f"{what}: max error {err:.3g} vs scale {scale:.3g}"


# ---------------------------------------------------------------- closed form


@pytest.mark.parametrize("norm", ["bn", "none"])
@pytest.mark.parametrize("m,L,sigma", [(1, 1, 1.0), (2, 2, 0.7), (3, 2, 1.3)])
def test_population_loss_matches_reference(norm, m, L, sigma, rng):
    model = small_model(m, L, sigma, d=7)
    V, kw = ts.feature_vectors(model), ref.model_kwargs(model)
    for _ in range(3):
        W, E = ref_point(rng, model)
        Wbar, _ = ref_point(rng, model)
        for target in (None, Wbar):
            got = ob.population_loss(W, E, model, norm=norm, target=target)
            want = ref.variant_loss(W, E, V, norm=norm, target=target, **kw)
            assert got == pytest.approx(want, rel=EXACT, abs=EXACT)


def population_fd(W, E, Wbar, model, norm, stopgrad, target):
    T = target_of(W, Wbar, stopgrad, target)
    fW = ref.fd_grad(lambda X: ob.population_loss(X, E, model, norm=norm, target=T(X)), W, FD_STEP)
    fE = ref.fd_grad(lambda X: ob.population_loss(W, X, model, norm=norm, target=T(W)), E, FD_STEP)
    return fW, fE


def pop_grad(W, E, model, norm, stopgrad, target, Wbar):
    kw = variant_kwargs(Wbar, stopgrad, target)
    return ob.population_grad(W, E, model, norm=norm, stopgrad=stopgrad, **kw)


@pytest.mark.parametrize("norm,stopgrad,target", VARIANTS)
@pytest.mark.parametrize("m,L,sigma", [(2, 2, 1.0), (3, 2, 0.6), (2, 3, 1.4), (1, 2, 0.8)])
def test_population_grad_matches_finite_differences(norm, stopgrad, target, m, L, sigma, rng):
    model = small_model(m, L, sigma, split="half" if m == 3 else "bernoulli")
    for _ in range(2):
        W, E = ref_point(rng, model)
        Wbar = W + 0.2 * ref_point(rng, model)[0]
        gW, gE = ob.population_grad(W, E, model, norm=norm, stopgrad=stopgrad,
                                    **variant_kwargs(Wbar, stopgrad, target))
        fW, fE = population_fd(W, E, Wbar, model, norm, stopgrad, target)
        scale = max(np.abs(gW).max(), np.abs(gE).max())
        assert_close(gW, fW, scale, f"{norm}/{stopgrad}/{target} dL/dW")
        assert_close(gE, fE, scale, f"{norm}/{stopgrad}/{target} dL/dE")


@pytest.mark.parametrize("norm", ["bn", "none"])
def test_stopgrad_off_differs_from_on(norm, rng):
    """The two stop-gradient settings really give different vectors (the FD test above could
    otherwise pass for a kernel that ignored the flag at points where both agree)."""
    model = small_model()
    W, E = ref_point(rng, model)
    on = ob.population_grad(W, E, model, norm=norm, stopgrad="on")[0]
    off = ob.population_grad(W, E, model, norm=norm, stopgrad="off")[0]
    assert np.max(np.abs(on - off)) > 1e-2 * np.abs(on).max()


def test_tau_one_limit_is_stopgrad_on(rng):
    """As tau -> 1 the EMA target stops depending on W: stop-gradient off tends to on."""
    model = small_model()
    W, E = ref_point(rng, model)
    Wbar = W + 0.1 * ref_point(rng, model)[0]
    on = ob.population_grad(W, E, model, stopgrad="on", target=Wbar)[0]
    off = ob.population_grad(W, E, model, stopgrad="off", target=Wbar, tau=1.0 - 1e-9)[0]
    assert_close(off, on, np.abs(on).max(), "tau -> 1", tol=1e-6)


# ---------------------------------------------------------------- reduced coordinates


def reduced_setup(model, W, Wbar):
    V = ts.feature_vectors(model)
    Q, B, Vr = reduced_coordinates(V, np.concatenate([W, Wbar]))  # one joint basis
    return Q, np.ascontiguousarray(W @ Q), np.ascontiguousarray(Wbar @ Q), Vr


@pytest.mark.parametrize("norm,stopgrad,target", VARIANTS)
@pytest.mark.parametrize("m,L", [(2, 2), (3, 2)])
def test_population_step_variant_matches_population_grad(norm, stopgrad, target, m, L, rng):
    model = small_model(m, L, 0.9, d=9)
    W, E = ref_point(rng, model)
    Wbar = W + 0.2 * ref_point(rng, model)[0]
    Q, B, Bbar, Vr = reduced_setup(model, W, Wbar)
    variant = ob.variant_tuple(norm, stopgrad, target, TAU if target == "ema" else 0.0)
    mask = head_mask("full", m)
    ws = cv.make_variant_workspace(m, B.shape[1], L)
    loss, speed_w, speed_e = cv.population_step_variant(B, Bbar, E, Vr, mask, model_constants(model),
                                                        (1e-2, 1e-3), variant, ws)
    gW, gE = pop_grad(W, E, model, norm, stopgrad, target, Wbar)
    scale = max(np.abs(gW).max(), np.abs(gE).max())
    np.testing.assert_allclose(ws_gB(ws[0]) @ Q.T, gW, rtol=0, atol=1e-11 * scale)
    np.testing.assert_allclose(ws_gE(ws[0]), gE, rtol=0, atol=1e-11 * scale)
    want_loss = ob.population_loss(W, E, model, norm=norm, target=None if target == "online" else Wbar)
    assert loss == pytest.approx(want_loss, rel=1e-11)
    assert speed_w == pytest.approx(sum(gW[j] @ gW[j] / (W[j] @ W[j]) for j in range(m)), rel=1e-9)
    assert speed_e == pytest.approx(np.sum(gE**2), rel=1e-9)


@given(m=st.integers(1, 3), L=st.integers(1, 3), seed=st.integers(0, 2**31 - 1),
       sigma=st.sampled_from([0.0, 0.5, 1.0, 1.7]))
def test_default_variant_is_population_step_bit_for_bit(m, L, seed, sigma):
    """The default variant runs today's kernel: same loss, speeds and gradient bits."""
    model = small_model(m, L, sigma, d=6)
    rng = np.random.default_rng(seed)
    W, E = ref_point(rng, model)
    _, B, _, Vr = reduced_setup(model, W, W)
    mask = head_mask("offdiag", m)
    consts = model_constants(model)
    ws0 = make_workspace(m, B.shape[1], L)
    ws1 = cv.make_variant_workspace(m, B.shape[1], L)
    want = population_step(B, E, Vr, mask, consts, (0.1, 0.01), ws0)
    got = cv.population_step_variant(B, B.copy(), E, Vr, mask, consts, (0.1, 0.01), cv.DEFAULT_VARIANT, ws1)
    assert np.array_equal(np.array(got), np.array(want), equal_nan=True)
    assert np.array_equal(ws_gB(ws1[0]), ws_gB(ws0))
    assert np.array_equal(ws_gE(ws1[0]), ws_gE(ws0))
    # the objective wrappers with the defaults spelled out equal the kernels they always called
    gW, gE = ob.population_grad(W, E, model, norm="bn", stopgrad="on", target=None)
    V, A, C = ob._coords(W, model)
    lam, kx, k2, mu, sigma2 = consts
    gA, gC, gE0, rho = np.empty((m, L)), np.empty((m, m)), np.empty((m, m)), np.empty(m)
    loss = ob.loss_grad(A, C, E, A, C, lam, kx, k2, mu, gA, gC, gE0, rho)
    assert np.array_equal(gW, gA @ V.T + sigma2 * (gC + gC.T) @ W)
    assert np.array_equal(gE, gE0)
    assert ob.population_loss(W, E, model, norm="bn") == loss


@pytest.mark.parametrize("norm,stopgrad", list(itertools.product(["bn", "none"], ["on", "off"])))
@pytest.mark.parametrize("m,L", [(2, 2), (3, 2)])
def test_ema_with_tau_zero_is_the_online_trajectory_bit_for_bit(norm, stopgrad, m, L, rng):
    model = small_model(m, L, 1.0, d=8)
    W, E = ref_point(rng, model, scale=0.3)
    _, B, _, Vr = reduced_setup(model, W, W)
    mask = head_mask("offdiag", m)
    consts = model_constants(model)
    rates = (1e-4 if norm == "none" else 1e-2, 1e-3)  # no BN: gradients O(100) at these weights
    runs = []
    for variant in (ob.variant_tuple(norm, stopgrad, "online"), ob.variant_tuple(norm, stopgrad, "ema", 0.0)):
        Bv, Bbar, Ev, losses = B.copy(), B.copy(), E.copy(), np.zeros(300)
        n = cv.population_run_variant(Bv, Bbar, Ev, Vr, mask, consts, rates, variant, 300, losses)
        runs.append((n, Bv, Ev, losses))
    (n0, B0, E0, l0), (n1, B1, E1, l1) = runs
    assert n0 == n1 == 300
    assert np.array_equal(B0, B1) and np.array_equal(E0, E1) and np.array_equal(l0, l1)
    assert not np.array_equal(B0, B)  # the run moved
    # and the objective-level gradients
    kw = {"tau": 0.0} if stopgrad == "off" else {}
    for a, b in zip(ob.population_grad(W, E, model, norm=norm, stopgrad=stopgrad),
                    ob.population_grad(W, E, model, norm=norm, stopgrad=stopgrad, target=W.copy(), **kw),
                    strict=True):
        assert np.array_equal(a, b)


def test_ema_target_follows_the_online_weights(rng):
    """``Bbar <- tau Bbar + (1 - tau) B`` after each step, with the updated ``B``."""
    model = small_model()
    W, E = ref_point(rng, model)
    Wbar = W + 0.3 * ref_point(rng, model)[0]
    _, B, Bbar, Vr = reduced_setup(model, W, Wbar)
    variant = ob.variant_tuple("bn", "on", "ema", TAU)
    B1, Bbar1, E1 = B.copy(), Bbar.copy(), E.copy()
    cv.population_run_variant(B1, Bbar1, E1, Vr, head_mask("offdiag", 2), model_constants(model), (0.05, 0.0),
                              variant, 1, np.zeros(1))
    np.testing.assert_allclose(Bbar1, TAU * Bbar + (1 - TAU) * B1, rtol=1e-15, atol=1e-15)
    assert not np.allclose(B1, B)


# ---------------------------------------------------------------- SGD


def sgd_call(W, E, model, norm, stopgrad, target, Wbar, **kw):
    kw.update(variant_kwargs(Wbar, stopgrad, target))
    return ob.sgd_gradient(W, E, model, norm=norm, stopgrad=stopgrad, **kw)


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("norm,stopgrad,target", VARIANTS)
def test_sgd_variant_gradient_matches_fd_of_the_numpy_batch_loss(norm, stopgrad, target, symmetric, rng):
    """On one materialised batch, the kernel's gradient is the derivative of the literal batch
    loss (tests/reference.py), with the target branch differentiated as the variant says."""
    model = small_model(2, 2, 1.0, d=4)
    W, E = ref_point(rng, model)
    Wbar = W + 0.2 * ref_point(rng, model)[0]
    gW, gE, loss, b = sgd_call(W, E, model, norm, stopgrad, target, Wbar, batch=48, seed=3, step=5,
                               return_batch=True, symmetric=symmetric)
    T = target_of(W, Wbar, stopgrad, target)
    X, v1 = b["X"], b["view1"]

    def lossfn(Wx, Ex, Tx):
        return ref.batch_loss_variant(Wx, Ex, X, v1, norm=norm, target=Tx, symmetric=symmetric)

    assert loss == pytest.approx(lossfn(W, E, T(W)), rel=1e-10)
    fW = ref.fd_grad(lambda Y: lossfn(Y, E, T(Y)), W, FD_STEP)
    fE = ref.fd_grad(lambda Y: lossfn(W, Y, T(W)), E, FD_STEP)
    scale = max(np.abs(gW).max(), np.abs(gE).max())
    assert_close(gW, fW, scale, "batch dL/dW", tol=1e-5)
    assert_close(gE, fE, scale, "batch dL/dE", tol=1e-5)


SGD_BATCH = 4096
SGD_REPEATS = 48


def sgd_mean_and_se(W, E, model, norm, stopgrad, target, Wbar, symmetric=False, fast=False):
    draws = [np.concatenate([g.ravel() for g in sgd_call(W, E, model, norm, stopgrad, target, Wbar,
                                                          batch=SGD_BATCH, seed=11, step=t,
                                                          symmetric=symmetric, fast=fast)[:2]])
             for t in range(SGD_REPEATS)]
    draws = np.array(draws)
    return draws.mean(axis=0), draws.std(axis=0, ddof=1) / np.sqrt(len(draws))


@pytest.mark.parametrize("symmetric,fast", [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("norm,stopgrad,target", VARIANTS)
def test_sgd_average_approaches_the_population_gradient(norm, stopgrad, target, symmetric, fast):
    """Mean of 48 independent batch gradients (4096 samples each) against the closed form, per
    entry in units of its standard error (from the 48 batch means). The BN batch estimator is
    biased by O(1/N) ~ 2e-4 of the gradient, far below the standard error here (~1e-2 of it).
    The symmetrised loss (both view orders) is tested against the *one-sided* population
    gradient: the split is exchangeable (docs/model.md section 12). ``fast``: the sgd-fast
    variant kernel (exact in distribution), whose batches cannot be checked by finite
    differences, so this is its test."""
    model = small_model(2, 2, 1.0, d=4)
    W, E = ref_point(np.random.default_rng(5), model)
    Wbar = W + 0.2 * ref_point(np.random.default_rng(6), model)[0]
    gW, gE = pop_grad(W, E, model, norm, stopgrad, target, Wbar)
    pop = np.concatenate([gW.ravel(), gE.ravel()])
    mean, se = sgd_mean_and_se(W, E, model, norm, stopgrad, target, Wbar, symmetric, fast)
    z = (mean - pop) / se
    print(f"{norm}/{stopgrad}/{target}/sym={symmetric}/fast={fast}: max|z| = {np.max(np.abs(z)):.2f}")
    assert np.max(np.abs(z)) < Z_MAX, f"z = {np.round(z, 2)}"
    # power: the other stop-gradient setting is more than 2 Z_MAX standard errors away, so a
    # kernel that computed it instead would put some |z| above Z_MAX
    other = "off" if stopgrad == "on" else "on"
    oW, oE = pop_grad(W, E, model, norm, other, target, Wbar)
    assert np.max(np.abs(np.concatenate([oW.ravel(), oE.ravel()]) - pop) / se) > 2 * Z_MAX


LAW_DRAWS = 300
LAW_ALPHA = 1e-3
"""Family-wise false-alarm probability of the law comparison (Bonferroni over its statistics)."""


def remainder_statistics(model, norm, stopgrad, target, symmetric, fast, batch):
    """Per batch: the sizes of the gradient's components along two fixed unit directions orthogonal
    to the features and to the rows of ``W`` and ``Wbar`` (only the noise patches' remainder, the
    part sgd-fast draws in one Gaussian, reaches them; their sign is symmetric, so the size is
    what carries the law), and ``gE[0, 1]``."""
    W, E = ref_point(np.random.default_rng(21), model)
    Wbar = W + 0.2 * ref_point(np.random.default_rng(22), model)[0]
    basis = np.linalg.qr(np.concatenate([ts.feature_vectors(model), W.T, Wbar.T], axis=1), mode="complete")[0]
    dirs = basis[:, 2 + 2 * model.m:2 + 2 * model.m + 2]  # (d, 2), orthogonal to V, W, Wbar
    out = []
    for t in range(LAW_DRAWS):
        gW, gE, _ = sgd_call(W, E, model, norm, stopgrad, target, Wbar, batch=batch, seed=5, step=t,
                             symmetric=symmetric, fast=fast)
        out.append(np.concatenate([np.abs(gW @ dirs).ravel(), [gE[0, 1]]]))
    return np.array(out)


LAW_CASES = [("bn", "off", "online", False), ("bn", "on", "ema", False), ("bn", "off", "ema", True),
             ("none", "off", "ema", False), ("none", "on", "online", True)]


def ks_pvalues(a, b):
    from scipy import stats

    return [stats.ks_2samp(a[:, i], b[:, i]).pvalue for i in range(a.shape[1])]


@pytest.mark.parametrize("norm,stopgrad,target,symmetric", LAW_CASES)
def test_sgd_fast_variant_has_the_law_of_the_materialised_one(norm, stopgrad, target, symmetric):
    """Two-sample Kolmogorov-Smirnov tests, 300 batches each, on statistics that only the
    remainder draw of sgd-fast produces (Bonferroni level LAW_ALPHA / 5)."""
    model = small_model(2, 2, 1.0, d=10)
    slow = remainder_statistics(model, norm, stopgrad, target, symmetric, False, 32)
    fast = remainder_statistics(model, norm, stopgrad, target, symmetric, True, 32)
    p_same = ks_pvalues(slow, fast)
    assert min(p_same) > LAW_ALPHA / len(p_same), p_same


def test_the_law_comparison_has_power():
    """The comparison above rejects the materialised kernel at a quarter of the batch (about
    twice the gradient's standard deviation) in a BN case. Its power is limited: at 300 draws a
    1.4x change is not reliably rejected (KS distance ~0.16 against a critical ~0.175), and
    without BN the heavier tails of the raw gradient make even 2x unreliable; so it bounds
    gross errors of the remainder's covariance, not subtle ones (the mean test above covers
    the rest of the fast kernel)."""
    model = small_model(2, 2, 1.0, d=10)
    case = ("bn", "off", "ema", True)
    slow = remainder_statistics(model, *case, False, 32)
    quarter = remainder_statistics(model, *case, False, 8)
    p_diff = ks_pvalues(slow, quarter)
    assert min(p_diff[:4]) < LAW_ALPHA / len(p_diff), p_diff


@pytest.mark.parametrize("target", ["online", "ema"])
def test_unnormalised_batch_loss_is_unbiased_for_the_closed_form(target):
    """Without BN the batch loss is a plain sample mean of ``|F - G|^2``: its average is
    ``sum_j DF_j + DG_j - 2 N_j`` (a check of the new closed form by Monte Carlo)."""
    model = small_model(2, 2, 1.0, d=4)
    W, E = ref_point(np.random.default_rng(8), model)
    Wbar = W + 0.2 * ref_point(np.random.default_rng(9), model)[0]
    tgt = None if target == "online" else Wbar
    losses = np.array([ob.sgd_gradient(W, E, model, norm="none", target=tgt, batch=SGD_BATCH, seed=2,
                                       step=t)[2] for t in range(SGD_REPEATS)])
    want = ob.population_loss(W, E, model, norm="none", target=tgt)
    z = (losses.mean() - want) / (losses.std(ddof=1) / np.sqrt(len(losses)))
    assert abs(z) < Z_MAX


@pytest.mark.parametrize("norm,stopgrad", list(itertools.product(["bn", "none"], ["on", "off"])))
def test_sgd_ema_with_tau_zero_is_online(norm, stopgrad, rng):
    model = small_model(2, 2, 1.0, d=5)
    W, E = ref_point(rng, model)
    online = ob.sgd_gradient(W, E, model, norm=norm, stopgrad=stopgrad, batch=64, seed=1, step=2)
    kw = {"tau": 0.0} if stopgrad == "off" else {}
    ema = ob.sgd_gradient(W, E, model, norm=norm, stopgrad=stopgrad, target=W.copy(), batch=64, seed=1,
                          step=2, **kw)
    if (norm, stopgrad) == ("bn", "on"):  # the online default runs the original kernel: rounding only
        for a, b in zip(online[:2], ema[:2], strict=True):
            np.testing.assert_allclose(b, a, rtol=0, atol=1e-12 * np.abs(a).max())
    else:
        for a, b in zip(online, ema, strict=True):
            assert np.array_equal(a, b)


@given(seed=st.integers(0, 2**31 - 1), step=st.integers(0, 1000), batch=st.integers(2, 40))
def test_sgd_default_keywords_are_todays_gradient_bit_for_bit(seed, step, batch):
    model = small_model(2, 2, 1.0, d=5)
    W, E = ref_point(np.random.default_rng(seed), model)
    a = ob.sgd_gradient(W, E, model, batch=batch, seed=seed, step=step)
    b = ob.sgd_gradient(W, E, model, batch=batch, seed=seed, step=step, norm="bn", stopgrad="on", target=None,
                        symmetric=False)
    V = np.ascontiguousarray(ts.feature_vectors(model))
    gW, gE = np.empty_like(W), np.empty_like(E)
    loss = ob._sgd_gradient_kernel(W, E, V, ob.sgd_data(model), seed, step, gW, gE, ob.sgd_work(model, batch))
    for x in (a, b):
        assert np.array_equal(x[0], gW) and np.array_equal(x[1], gE)
        assert np.array_equal(x[2], loss, equal_nan=True)


def test_variant_sgd_draws_the_engine_batch(rng):
    """The variant kernel samples the batch ``sgd_gradient`` draws at the same (seed, step)."""
    model = small_model(2, 2, 1.0, d=5)
    W, E = ref_point(rng, model)
    a = ob.sgd_gradient(W, E, model, batch=16, seed=4, step=9, return_batch=True)[3]
    b = ob.sgd_gradient(W, E, model, batch=16, seed=4, step=9, return_batch=True, norm="none")[3]
    for key in ("label", "sign", "view1"):
        assert np.array_equal(a[key], b[key])
    assert np.array_equal(a["X"], b["X"])


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("kw,msg", [
    ({"norm": "layer"}, "norm must be one of"),
    ({"stopgrad": "yes"}, "stopgrad must be one of"),
    ({"tau": 0.5}, "tau applies only with an EMA target"),
    ({"stopgrad": "off", "target": "W"}, "needs tau"),
    ({"target": "W", "tau": 1.0}, "tau must be in"),
])
def test_bad_variant_options_are_one_line_errors(kw, msg, rng):
    model = small_model()
    W, E = ref_point(rng, model)
    kw = {k: (W if v == "W" else v) for k, v in kw.items()}
    with pytest.raises(ValueError, match=msg):
        ob.population_grad(W, E, model, **kw)


def test_fast_sgd_variant_has_no_batch_to_return(rng):
    model = small_model()
    W, E = ref_point(rng, model)
    with pytest.raises(ValueError, match="materialised"):
        ob.sgd_gradient(W, E, model, fast=True, norm="none", return_batch=True)


def test_variant_tuple_codes():
    assert ob.variant_tuple() == cv.DEFAULT_VARIANT
    assert ob.variant_tuple("none", "off", "ema", 0.9) == (cv.NORM_NONE, cv.STOPGRAD_OFF, cv.TARGET_EMA, 0.9)
    with pytest.raises(ValueError, match="tau applies only to target='ema'"):
        ob.variant_tuple(tau=0.5)


# ---------------------------------------------------------------- symmetries (where they apply)


@given(seed=st.integers(0, 2**31 - 1), c=st.floats(0.1, 10.0), m=st.integers(1, 3), L=st.integers(1, 3),
       sigma=st.sampled_from([0.0, 0.7, 1.3]))
def test_homogeneity_and_euler_identities(seed, c, m, L, sigma):
    """With BN the loss is 0-homogeneous in the weights; without it every moment is a sextic
    form, so ``L(cW) = c^6 L(W)``. Euler's theorem then fixes ``<dL/dW, W>``: 0 (bn, either
    stop-gradient), ``6 L`` (none, off), and ``6 sum_j (DF_j - N_j)`` (none, on: DF is sextic in
    W, N cubic in W with the target held fixed). The scale invariance that the engine
    invariants test (tests/test_invariants.py) therefore holds only with BN."""
    model = small_model(m, L, sigma, d=6)
    rng = np.random.default_rng(seed)
    W, E = ref_point(rng, model)
    V, kw = ts.feature_vectors(model), ref.model_kwargs(model)
    for norm in ("bn", "none"):
        base = ob.population_loss(W, E, model, norm=norm)
        power = 0 if norm == "bn" else 6
        assert ob.population_loss(c * W, E, model, norm=norm) == pytest.approx(c**power * base, rel=1e-11,
                                                                                abs=1e-12)
        for stopgrad in ("on", "off"):
            gW, _ = ob.population_grad(W, E, model, norm=norm, stopgrad=stopgrad)
            euler = np.sum(gW * W)
            if norm == "bn":
                want = 0.0
            elif stopgrad == "off":
                want = 6.0 * base
            else:
                f = ref.closed_form(W, E, V, **kw)
                want = 6.0 * np.sum(f["DF"] - f["N"])
            size = max(np.linalg.norm(gW) * np.linalg.norm(W), abs(want), 1.0)
            assert abs(euler - want) <= 1e-11 * size, (norm, stopgrad, euler, want)


@given(seed=st.integers(0, 2**31 - 1), j=st.integers(0, 2))
def test_flipping_a_neuron_flips_its_gradient_in_every_variant(seed, j):
    """``w_j -> -w_j`` (online and target) with row and column j of E flipped keeps every
    variant's loss and flips the gradient the same way (the cubic is odd)."""
    model = small_model(3, 2, 1.0, d=6)
    rng = np.random.default_rng(seed)
    W, E = ref_point(rng, model)
    Wbar = W + 0.2 * ref_point(rng, model)[0]
    S = np.ones(3)
    S[j] = -1.0
    for norm, stopgrad, target in VARIANTS:
        kw = variant_kwargs(Wbar, stopgrad, target)
        kw2 = {**kw, "target": S[:, None] * Wbar} if "target" in kw else kw
        gW, gE = ob.population_grad(W, E, model, norm=norm, stopgrad=stopgrad, **kw)
        hW, hE = ob.population_grad(S[:, None] * W, S[:, None] * E * S, model, norm=norm, stopgrad=stopgrad,
                                    **kw2)
        np.testing.assert_allclose(hW, S[:, None] * gW, rtol=1e-12, atol=1e-12 * np.abs(gW).max())
        np.testing.assert_allclose(hE, S[:, None] * gE * S, rtol=1e-12, atol=1e-12 * np.abs(gE).max())
