"""Online mini-batch SGD with materialised patches (docs/model.md sections 1-3 and 8).

One step: draw ``N`` fresh samples (feature index, sign, k feature patches,
Gaussian noise patches), split each sample's patches into two views, run both
branches, batch-normalise every output coordinate over the batch (centred, biased
variance), and back-propagate ``L = sum_j (2 - 2 corr_j)`` through the online
branch *including its batch statistics*; the target branch is stop-gradient.

With ``Fh, Gh`` the normalised outputs and ``corr_j = mean_i Fh_ij Gh_ij``::

    dL/dF_ij = -(2 / N) (Gh_ij - corr_j Fh_ij) / std(F_j)

(the ``|Fh|^2`` part of ``|Fh - Gh|^2`` is constant under batch normalisation).
Samples are processed in parallel (``prange``); random numbers come from
counter-based streams so results do not depend on the thread count.
"""

from __future__ import annotations

import math

import numpy as np

from ._jit import (
    STATUS_DEGENERATE,
    STATUS_NONFINITE,
    STATUS_RUNNING,
    STATUS_VANISHED,
    njit,
    njit_inline,
    njit_parallel,
    prange,
)
from .events import observe_run
from .moments import loss_grad, variant_loss_grad
from .population import convergence_status, record_point
from .rng import xo_normal, xo_stream, xo_uniform
from .variants import NORM_BN, NORM_NONE, STOPGRAD_OFF, TARGET_EMA, all_vanished

_REMAINDER_STREAM = 1 << 40
"""Stream indices from here on belong to the fast engine's remainder draw, not to samples."""


@njit
def _shuffle_prefix(state, arr, n):
    """Partial Fisher-Yates: afterwards ``arr[:n]`` is a uniform n-subset of ``arr``."""
    P = arr.shape[0]
    for p in range(n):
        u, state = xo_uniform(state)
        q = p + int(u * (P - p))
        if q >= P:
            q = P - 1
        t = arr[p]
        arr[p] = arr[q]
        arr[q] = t
    return state


@njit
def _draw_sample(state, alpha, pi_cdf, P, k, half_split, perm, view):
    """Feature index, sign and patch roles of one sample.

    Fills ``perm`` (first ``k`` entries are the feature patches) and ``view``
    (1 = view 1, 0 = view 2); returns ``(l, s, state)``.
    """
    u, state = xo_uniform(state)
    L = pi_cdf.shape[0]
    l = L - 1
    for q in range(L):
        if u < pi_cdf[q]:
            l = q
            break
    u, state = xo_uniform(state)
    s = 1.0 if u < 0.5 else -1.0
    for p in range(P):
        perm[p] = p
    state = _shuffle_prefix(state, perm, k)  # the feature patches: a uniform k-subset
    if half_split:  # exactly P // 2 patches in view 1, uniformly chosen
        order = np.arange(P)
        state = _shuffle_prefix(state, order, P // 2)
        for p in range(P):
            view[p] = 0
        for p in range(P // 2):
            view[order[p]] = 1
    else:  # each patch in view 1 with probability 1/2, independently
        for p in range(P):
            u, state = xo_uniform(state)
            view[p] = 1 if u < 0.5 else 0
    return l, s, state


@njit
def _sample_roles(i, seed, step, data, work):
    """Draw sample ``i`` of the batch at ``step``: fills label, sign, feat, view; zeroes f1, f2.

    Returns ``(l, s, state)``: the feature, the sign and the stream state from which
    the sample's noise is drawn next.
    """
    alpha, pi_cdf, P, k, sigma, half_split, keep_all = data
    feat, view, label, sign, f1, f2, perm = work[2], work[3], work[4], work[5], work[6], work[7], work[8]
    state = xo_stream(seed, step, i)
    l, s, state = _draw_sample(state, alpha, pi_cdf, P, k, half_split, perm[i], view[i])
    label[i] = l
    sign[i] = s
    for p in range(P):
        feat[i, p] = 0
    for q in range(k):
        feat[i, perm[i, q]] = 1
    for r in range(f1.shape[1]):
        f1[i, r] = 0.0
        f2[i, r] = 0.0
    return l, s, state


@njit
def batch_norm_backward(f1, f2, E, gE, df1):
    """Batch-normalised loss ``sum_j (2 - 2 corr_j)`` of ``F = f1 E^T`` against ``G = f2``.

    Fills ``gE = dL/dE`` and ``df1 = dL/df1`` (gradient through the online branch's
    batch mean and variance; ``G`` and its statistics are stop-gradient). Returns the
    loss, NaN if a batch variance vanishes.
    """
    N, m = f1.shape
    F = f1 @ E.T
    dF = np.empty((N, m))
    loss = 0.0
    for j in range(m):
        mf = 0.0
        mg = 0.0
        for i in range(N):
            mf += F[i, j]
            mg += f2[i, j]
        mf /= N
        mg /= N
        vf = 0.0
        vg = 0.0
        for i in range(N):
            vf += (F[i, j] - mf) ** 2
            vg += (f2[i, j] - mg) ** 2
        sf = math.sqrt(vf / N)
        sg = math.sqrt(vg / N)
        corr = 0.0
        for i in range(N):
            corr += (F[i, j] - mf) * (f2[i, j] - mg)
        corr /= N * sf * sg
        loss += 2.0 - 2.0 * corr
        for i in range(N):
            fh = (F[i, j] - mf) / sf
            gh = (f2[i, j] - mg) / sg
            dF[i, j] = -(2.0 / N) * (gh - corr * fh) / sf
    for j in range(m):
        for r in range(m):
            acc = 0.0
            for i in range(N):
                acc += dF[i, j] * f1[i, r]
            gE[j, r] = acc
    df1[:, :] = dF @ E
    return loss


@njit_inline
def _feature_patch(i, p, u, value, A, l):
    """Projections of a feature patch ``x_p = s alpha_l v_l``: ``u_r = s alpha_l <w_r, v_l>``."""
    for r in range(u.shape[2]):
        u[i, p, r] = value * A[r, l]


@njit_inline
def _add_to_views(i, p, u, view, f1, f2):
    """Add patch ``p``'s ``u^3`` to the output of the view it belongs to (f1: online, f2: target)."""
    for r in range(u.shape[2]):
        x = u[i, p, r]
        if view[i, p] == 1:
            f1[i, r] += x * x * x
        else:
            f2[i, r] += x * x * x


@njit
def _forward_sample(i, W, A, data, seed, step, work):
    """Draw sample ``i`` and run both branches on it (materialised patches).

    A separate (not inlined) function: numba's parallel analysis of the ``prange``
    loop then sees one call instead of the inlined random-number code.
    """
    alpha, pi_cdf, P, k, sigma, half_split, keep_all = data
    noise, u, feat, view, label, sign, f1, f2, perm, gparts, aparts = work
    m, d = W.shape
    l, s, state = _sample_roles(i, seed, step, data, work)
    for p in range(P):
        if feat[i, p] == 1:
            _feature_patch(i, p, u, s * alpha[l], A, l)
        else:
            # u = W xi; xi is kept only in view 1 (the backward pass needs it there)
            keep = keep_all or view[i, p] == 1
            if m == 2:  # the paper's case, with the accumulators in registers
                u0 = 0.0
                u1 = 0.0
                for c in range(d):
                    z, state = xo_normal(state)
                    z *= sigma
                    if keep:
                        noise[i, p, c] = z
                    u0 += W[0, c] * z
                    u1 += W[1, c] * z
                u[i, p, 0] = u0
                u[i, p, 1] = u1
            else:
                for r in range(m):
                    u[i, p, r] = 0.0
                for c in range(d):
                    z, state = xo_normal(state)
                    z *= sigma
                    if keep:
                        noise[i, p, c] = z
                    for r in range(m):
                        u[i, p, r] += W[r, c] * z
        _add_to_views(i, p, u, view, f1, f2)


@njit
def _reduce_parts(gparts, aparts, V, gW):
    """``gW = sum_t gparts[t] + (sum_t aparts[t]) V^T``: the chunks of the parallel backward pass."""
    T, m, d = gparts.shape
    L = V.shape[1]
    for r in range(m):
        for c in range(d):
            acc = 0.0
            for t in range(T):
                acc += gparts[t, r, c]
            for l in range(L):
                for t in range(T):
                    acc += aparts[t, r, l] * V[c, l]
            gW[r, c] = acc


@njit
def _fast_weight_gradient(gY, S, U, afeat, V, sigma, seed, step, gW):
    """The fast engines' ``gW = gY U^T + S^{1/2} Z (I - U U^T) + afeat V^T`` (docs/model.md
    section 8): ``Z`` (m x d) is ``sigma`` times standard normals from the remainder streams;
    ``S^{1/2}`` by eigendecomposition (``S`` is PSD, possibly singular)."""
    m = S.shape[0]
    d = U.shape[0]
    lam, Q = np.linalg.eigh(S)
    F = np.zeros((m, m))
    for a in range(m):
        root = math.sqrt(lam[a]) if lam[a] > 0.0 else 0.0
        for r in range(m):
            for q in range(m):
                F[r, q] += Q[r, a] * root * Q[q, a]
    Z = np.empty((m, d))
    for r in range(m):
        state = xo_stream(seed, step, _REMAINDER_STREAM + r)
        for c in range(d):
            z, state = xo_normal(state)
            Z[r, c] = sigma * z
    Ut = np.ascontiguousarray(U.T)
    Z -= (Z @ U) @ Ut  # project out span(U)
    gW[:, :] = gY @ Ut + F @ Z + afeat @ np.ascontiguousarray(V.T)


@njit_parallel
def sgd_gradient(W, E, V, data, seed, step, gW, gE, work):
    """One mini-batch gradient at ``(W, E)``; writes ``gW`` (m x d), ``gE`` (m x m).

    ``data = (alpha, pi_cdf, P, k, sigma, half_split, keep_all)``; the batch size is
    ``work[0].shape[0]``. ``work = (noise (N,P,d), u (N,P,m), feat (N,P), view (N,P),
    label (N,), sign (N,), f1 (N,m), f2 (N,m), perm (N,P), gparts (T,m,d), aparts (T,m,L))``
    with ``T`` chunks for the parallel reduction. Noise patches are stored in ``noise``
    only in view 1 (all of them if ``keep_all``). Returns the batch loss (NaN if a
    batch variance vanishes).
    """
    alpha, pi_cdf, P, k, sigma, half_split, keep_all = data
    noise, u, feat, view, label, sign, f1, f2, perm, gparts, aparts = work
    N = noise.shape[0]
    m, d = W.shape
    A = W @ V
    # pass 1: sample and forward, one sample per iteration
    for i in prange(N):
        _forward_sample(i, W, A, data, seed, step, work)
    df1 = np.empty((N, m))
    loss = batch_norm_backward(f1, f2, E, gE, df1)
    # pass 2: dL/dW = sum over view-1 patches of 3 u^2 df1 x_p^T, chunked for prange
    T = gparts.shape[0]
    for t in prange(T):
        gparts[t, :, :] = 0.0
        aparts[t, :, :] = 0.0
        for i in range(t * N // T, (t + 1) * N // T):
            l = label[i]
            for p in range(P):
                if view[i, p] != 1:
                    continue
                for r in range(m):
                    x = u[i, p, r]
                    g = 3.0 * x * x * df1[i, r]
                    if feat[i, p] == 1:
                        aparts[t, r, l] += g * sign[i] * alpha[l]
                    else:
                        for c in range(d):
                            gparts[t, r, c] += g * noise[i, p, c]
    _reduce_parts(gparts, aparts, V, gW)
    return loss


@njit
def sgd_fast_gradient(W, E, V, data, seed, step, gW, gE, work):
    """Exact-in-distribution mini-batch gradient (docs/model.md section 8); same outputs as
    ``sgd_gradient`` but ``work[0]`` is (N, P, m).

    With ``U`` (d x m) an orthonormal basis of a space holding the rows of ``W``
    (``W^T = U R``), a noise patch is ``xi = U y + eta`` with ``y ~ N(0, sigma^2 I_m)``
    and ``eta ~ N(0, sigma^2 (I - U U^T))`` independent. The forward pass needs only
    ``u = W xi = R^T y``; the gradient ``sum_p g_p xi_p^T`` is
    ``(sum_p g_p y_p^T) U^T + sum_p g_p eta_p^T``, and given the ``g_p`` the second term
    is Gaussian with row covariance ``S = sum_p g_p g_p^T``: it is drawn as
    ``S^{1/2} Z (I - U U^T)`` with ``Z`` (m x d) standard normal times ``sigma``.
    Cost O(N P m^2 + m^2 d) instead of O(N P m d) for the same law.
    """
    alpha, pi_cdf, P, k, sigma, half_split, keep_all = data
    ys, u, feat, view, label, sign, f1, f2, perm, gparts, aparts = work
    N = ys.shape[0]
    m, d = W.shape
    A = W @ V
    U, R = np.linalg.qr(np.ascontiguousarray(W.T))  # W = R^T U^T
    U = np.ascontiguousarray(U)  # d x kr, kr = min(m, d) columns
    Rt = np.ascontiguousarray(R.T)  # m x kr
    kr = U.shape[1]
    for i in range(N):  # serial: too little work per sample to pay for threads
        l, s, state = _sample_roles(i, seed, step, data, work)
        for p in range(P):
            if feat[i, p] == 1:
                _feature_patch(i, p, u, s * alpha[l], A, l)
            else:
                for c in range(kr):
                    z, state = xo_normal(state)
                    ys[i, p, c] = sigma * z
                for r in range(m):
                    acc = 0.0
                    for c in range(kr):
                        acc += Rt[r, c] * ys[i, p, c]
                    u[i, p, r] = acc
            _add_to_views(i, p, u, view, f1, f2)
    df1 = np.empty((N, m))
    loss = batch_norm_backward(f1, f2, E, gE, df1)
    # gY = sum_p g_p y_p^T and S = sum_p g_p g_p^T over view-1 noise patches (serial: O(N P m^2))
    gY = np.zeros((m, kr))
    S = np.zeros((m, m))
    aparts[0, :, :] = 0.0
    g = np.empty(m)
    for i in range(N):
        l = label[i]
        for p in range(P):
            if view[i, p] != 1:
                continue
            for r in range(m):
                x = u[i, p, r]
                g[r] = 3.0 * x * x * df1[i, r]
            if feat[i, p] == 1:
                for r in range(m):
                    aparts[0, r, l] += g[r] * sign[i] * alpha[l]
            else:
                for r in range(m):
                    for q in range(kr):
                        gY[r, q] += g[r] * ys[i, p, q]
                    for q in range(m):
                        S[r, q] += g[r] * g[q]
    _fast_weight_gradient(gY, S, U, aparts[0], V, sigma, seed, step, gW)
    return loss


@njit
def _exact_status(gW, gE, E_mask, A, gram, rates, stop):
    """``convergence_status`` from the exact population gradient ``(gW, gE)`` at the full weights."""
    eta, eta_E = rates
    speed_w = 0.0
    for j in range(gW.shape[0]):
        speed_w += (gW[j] @ gW[j]) / gram[j, j]
    speed_e = np.sum((E_mask * gE) ** 2)
    return convergence_status(A, gram, speed_w, speed_e, eta_E / eta, stop)


@njit
def stop_check(W, E, V, E_mask, model, rates, stop, A, gram, step):
    """Exact population loss, ``rho`` and stop status at the full weights ``W``.

    Fills ``A = W V`` and ``gram = W W^T``. The status is ``convergence_status`` of
    ``population_advance`` evaluated with the exact population gradient, on check steps.
    """
    lam, kx, k2, mu, sigma2 = model
    m, d = W.shape
    L = V.shape[1]
    A[:, :] = W @ V
    gram[:, :] = W @ W.T
    C = sigma2 * gram
    gA = np.empty((m, L))
    gC = np.empty((m, m))
    gE = np.empty((m, m))
    rho = np.empty(m)
    loss = loss_grad(A, C, E, A, C, lam, kx, k2, mu, gA, gC, gE, rho)
    if not (step > 0 and step % stop[3] == 0) or not math.isfinite(loss):
        return STATUS_RUNNING, loss, rho
    # dL/dW = gA V^T + sigma^2 (gC + gC^T) W
    gW = gA @ V.T + sigma2 * (gC + gC.T) @ W
    return _exact_status(gW, gE, E_mask, A, gram, rates, stop), loss, rho


@njit
def sgd_advance(W, E, V, E_mask, data, model, rates, stop, rec, rec_state, n_steps, seed, gW, gE, work,
                fast, events, event_params):
    """Advance ``n_steps`` of online SGD; return a status code.

    ``fast`` selects ``sgd_fast_gradient`` (exact in distribution, ``work[0]`` is
    (N, P, m)) instead of the materialised ``sgd_gradient``.

    Recorded points use the exact population loss at the current weights (noise
    free); convergence uses the exact population gradient (``stop_check``).
    """
    return _sgd_loop(W, W, E, V, E_mask, data, model, rates, stop, rec, rec_state, n_steps, seed, gW, gE,
                     work, None, fast, events, event_params, None, None)


@njit
def sgd_observe(W, E, V, step, events, event_params):
    """Observe the events of the state at ``step`` without stepping (the final state of a
    run stopped by its budget)."""
    observe_run(step, W @ V, W @ W.T, E, events, event_params)


# ---------------------------------------------------------------- ablation variants (section 12)


@njit
def _forward_sample_variant(i, W, Wb, A, Ab, data, seed, step, work, extra, same, keep_all):
    """Draw sample ``i`` (the same random numbers as ``_forward_sample``) and run both weight
    sets on both views: ``f1 = f_W(X1)``, ``a2 = f_W(X2)``, ``b1 = f_Wb(X1)``, ``f2 = f_Wb(X2)``,
    with ``u = W x_p``, ``ub = Wb x_p`` for every patch (``same``: ``Wb`` is ``W``, ``ub = u``).
    Noise patches are stored in view 1, or everywhere if ``keep_all``."""
    alpha, pi_cdf, P, k, sigma, half_split, _ = data
    noise, u, feat, view, label, sign, f1, f2, perm, gparts, aparts = work
    ub, a2, b1 = extra[0], extra[1], extra[2]
    m, d = W.shape
    l, s, state = _sample_roles(i, seed, step, data, work)
    for r in range(m):
        a2[i, r] = 0.0
        b1[i, r] = 0.0
    for p in range(P):
        if feat[i, p] == 1:
            value = s * alpha[l]
            for r in range(m):
                u[i, p, r] = value * A[r, l]
                ub[i, p, r] = value * Ab[r, l]
        else:
            keep = keep_all or view[i, p] == 1
            if m == 2:  # the paper's case, with the accumulators in registers
                u0 = 0.0
                u1 = 0.0
                v0 = 0.0
                v1 = 0.0
                for c in range(d):
                    z, state = xo_normal(state)
                    z *= sigma
                    if keep:
                        noise[i, p, c] = z
                    u0 += W[0, c] * z
                    u1 += W[1, c] * z
                    if not same:
                        v0 += Wb[0, c] * z
                        v1 += Wb[1, c] * z
                u[i, p, 0] = u0
                u[i, p, 1] = u1
                ub[i, p, 0] = u0 if same else v0
                ub[i, p, 1] = u1 if same else v1
            else:
                for r in range(m):
                    u[i, p, r] = 0.0
                    ub[i, p, r] = 0.0
                for c in range(d):
                    z, state = xo_normal(state)
                    z *= sigma
                    if keep:
                        noise[i, p, c] = z
                    for r in range(m):
                        u[i, p, r] += W[r, c] * z
                    if not same:
                        for r in range(m):
                            ub[i, p, r] += Wb[r, c] * z
                if same:
                    for r in range(m):
                        ub[i, p, r] = u[i, p, r]
        for r in range(m):
            x = u[i, p, r]
            y = ub[i, p, r]
            if view[i, p] == 1:
                f1[i, r] += x * x * x
                b1[i, r] += y * y * y
            else:
                a2[i, r] += x * x * x
                f2[i, r] += y * y * y


@njit
def pair_loss_grad(F, G, norm_none, scale, dF, dG):
    """``scale`` times the batch loss of online outputs ``F`` against target outputs ``G``
    (both (N, m)); adds ``scale dL/dF`` to ``dF`` and ``scale dL/dG`` to ``dG``.

    BN: ``sum_j (2 - 2 corr_j)`` with gradients through both branches' batch statistics,
    ``dL/dF_ij = -(2/N) (Gh_ij - corr_j Fh_ij) / std(F_j)`` and symmetrically for ``G``.
    None: ``(1/N) sum_i |F_i - G_i|^2``. NaN if a batch variance vanishes (BN).
    """
    N, m = F.shape
    loss = 0.0
    for j in range(m):
        if norm_none:
            for i in range(N):
                diff = F[i, j] - G[i, j]
                loss += diff * diff / N
                dF[i, j] += scale * (2.0 / N) * diff
                dG[i, j] -= scale * (2.0 / N) * diff
            continue
        mf = 0.0
        mg = 0.0
        for i in range(N):
            mf += F[i, j]
            mg += G[i, j]
        mf /= N
        mg /= N
        vf = 0.0
        vg = 0.0
        for i in range(N):
            vf += (F[i, j] - mf) ** 2
            vg += (G[i, j] - mg) ** 2
        sf = math.sqrt(vf / N)
        sg = math.sqrt(vg / N)
        corr = 0.0
        for i in range(N):
            corr += (F[i, j] - mf) * (G[i, j] - mg)
        corr /= N * sf * sg
        loss += 2.0 - 2.0 * corr
        for i in range(N):
            fh = (F[i, j] - mf) / sf
            gh = (G[i, j] - mg) / sg
            dF[i, j] += scale * (-(2.0 / N) * (gh - corr * fh) / sf)
            dG[i, j] += scale * (-(2.0 / N) * (fh - corr * gh) / sg)
    return scale * loss


@njit_parallel
def sgd_gradient_variant(W, Wb, E, V, data, seed, step, variant, symmetric, gW, gE, work, extra):
    """Mini-batch gradient of an ablation variant (docs/model.md section 12) at ``(W, E)`` with
    the target branch at ``Wb`` (pass ``W`` itself for the online target); writes ``gW``, ``gE``.

    ``variant = (norm, stopgrad, target, tau)`` (codes of ``core.variants``). The batch is the
    one ``sgd_gradient`` draws at ``(seed, step)``. ``symmetric``: the loss is the mean of both
    view orders, ``(L(E f_W(X1), f_Wb(X2)) + L(E f_W(X2), f_Wb(X1))) / 2``. With the
    stop-gradient off the target branch (its outputs and, with BN, its batch statistics) is
    differentiated too and ``gW = dL/dW + w dL/dWb``, ``w = 1`` (online) or ``1 - tau`` (EMA).
    ``work`` is ``sgd_gradient``'s layout (noise patches are kept where the backward pass needs
    them: view 1, every view with the stop-gradient off or the symmetrised loss, everywhere if
    ``data``'s keep_all);
    ``extra = (ub (N,P,m), a2 (N,m), b1 (N,m))``. Returns the batch loss.
    """
    norm, stopgrad, target, tau = variant
    norm_none = norm == NORM_NONE
    through_target = stopgrad == STOPGRAD_OFF
    w = 1.0 - tau if target == TARGET_EMA else 1.0
    alpha, pi_cdf, P, k, sigma, half_split, keep_all = data
    noise, u, feat, view, label, sign, f1, f2, perm, gparts, aparts = work
    ub, a2, b1 = extra[0], extra[1], extra[2]
    N = noise.shape[0]
    m, d = W.shape
    A = W @ V
    Ab = Wb @ V
    same = target != TARGET_EMA
    keep_all = data[6] or through_target or symmetric  # the backward pass needs view 2's noise too
    for i in prange(N):
        _forward_sample_variant(i, W, Wb, A, Ab, data, seed, step, work, extra, same, keep_all)
    dF1 = np.zeros((N, m))  # dL/dF on view 1 (and view 2 if symmetric)
    dF2 = np.zeros((N, m))
    dG2 = np.zeros((N, m))  # dL/dG on view 2 (and view 1 if symmetric)
    dG1 = np.zeros((N, m))
    scale = 0.5 if symmetric else 1.0
    loss = pair_loss_grad(f1 @ E.T, f2, norm_none, scale, dF1, dG2)
    if symmetric:
        loss += pair_loss_grad(a2 @ E.T, b1, norm_none, scale, dF2, dG1)
    for j in range(m):
        for r in range(m):
            acc = 0.0
            for i in range(N):
                acc += dF1[i, j] * f1[i, r] + dF2[i, j] * a2[i, r]
            gE[j, r] = acc
    df1 = dF1 @ E  # dL/df_W(X1)
    df2 = dF2 @ E
    T = gparts.shape[0]
    for t in prange(T):
        gparts[t, :, :] = 0.0
        aparts[t, :, :] = 0.0
        for i in range(t * N // T, (t + 1) * N // T):
            l = label[i]
            for p in range(P):
                in1 = view[i, p] == 1
                if not (in1 or through_target or symmetric):  # view 2 enters only the stopped target
                    continue
                for r in range(m):
                    x = u[i, p, r]
                    h = 3.0 * x * x * (df1[i, r] if in1 else df2[i, r])
                    if through_target:
                        y = ub[i, p, r]
                        h += w * 3.0 * y * y * (dG1[i, r] if in1 else dG2[i, r])
                    if h == 0.0:
                        continue
                    if feat[i, p] == 1:
                        aparts[t, r, l] += h * sign[i] * alpha[l]
                    else:
                        for c in range(d):
                            gparts[t, r, c] += h * noise[i, p, c]
    _reduce_parts(gparts, aparts, V, gW)
    return loss


@njit
def sgd_fast_gradient_variant(W, Wb, E, V, data, seed, step, variant, symmetric, gW, gE, work, extra):
    """``sgd_gradient_variant``, exact in distribution at O(N P m^2 + m^2 d) per step (the
    construction of ``sgd_fast_gradient``, docs/model.md section 8).

    ``U`` (d x kr) is an orthonormal basis of the rows of ``W`` and ``Wb`` together (kr <= 2m):
    both branches see a noise patch only through ``y = U^T xi``, so given the ``y`` the rest of
    the gradient ``sum_p h_p eta_p^T`` (``h_p`` the patch's coefficient, online and target
    parts together) is Gaussian with row covariance ``sum_p h_p h_p^T (x) sigma^2 (I - U U^T)``.
    ``work[0]`` is (N, P, 2m); ``extra`` as in ``sgd_gradient_variant``.
    """
    norm, stopgrad, target, tau = variant
    norm_none = norm == NORM_NONE
    through_target = stopgrad == STOPGRAD_OFF
    w = 1.0 - tau if target == TARGET_EMA else 1.0
    alpha, pi_cdf, P, k, sigma, half_split, keep_all = data
    ys, u, feat, view, label, sign, f1, f2, perm, gparts, aparts = work
    ub, a2, b1 = extra[0], extra[1], extra[2]
    N = ys.shape[0]
    m, d = W.shape
    A = W @ V
    Ab = Wb @ V
    same = target != TARGET_EMA
    stacked = np.ascontiguousarray(W.T) if same else np.ascontiguousarray(np.concatenate((W, Wb)).T)
    U, R = np.linalg.qr(stacked)  # [W; Wb]^T = U R
    U = np.ascontiguousarray(U)
    kr = U.shape[1]
    Rt = np.ascontiguousarray(R.T)  # rows: W's coordinates in U, then Wb's
    for i in range(N):
        l, s, state = _sample_roles(i, seed, step, data, work)
        for r in range(m):
            a2[i, r] = 0.0
            b1[i, r] = 0.0
        for p in range(P):
            if feat[i, p] == 1:
                value = s * alpha[l]
                for r in range(m):
                    u[i, p, r] = value * A[r, l]
                    ub[i, p, r] = value * Ab[r, l]
            else:
                for c in range(kr):
                    z, state = xo_normal(state)
                    ys[i, p, c] = sigma * z
                for r in range(m):
                    acc = 0.0
                    accb = 0.0
                    for c in range(kr):
                        acc += Rt[r, c] * ys[i, p, c]
                        if not same:
                            accb += Rt[m + r, c] * ys[i, p, c]
                    u[i, p, r] = acc
                    ub[i, p, r] = acc if same else accb
            for r in range(m):
                x = u[i, p, r]
                y = ub[i, p, r]
                if view[i, p] == 1:
                    f1[i, r] += x * x * x
                    b1[i, r] += y * y * y
                else:
                    a2[i, r] += x * x * x
                    f2[i, r] += y * y * y
    dF1 = np.zeros((N, m))
    dF2 = np.zeros((N, m))
    dG2 = np.zeros((N, m))
    dG1 = np.zeros((N, m))
    scale = 0.5 if symmetric else 1.0
    loss = pair_loss_grad(f1 @ E.T, f2, norm_none, scale, dF1, dG2)
    if symmetric:
        loss += pair_loss_grad(a2 @ E.T, b1, norm_none, scale, dF2, dG1)
    for j in range(m):
        for r in range(m):
            acc = 0.0
            for i in range(N):
                acc += dF1[i, j] * f1[i, r] + dF2[i, j] * a2[i, r]
            gE[j, r] = acc
    df1 = dF1 @ E
    df2 = dF2 @ E
    gY = np.zeros((m, kr))
    S = np.zeros((m, m))
    aparts[0, :, :] = 0.0
    h = np.empty(m)
    for i in range(N):
        l = label[i]
        for p in range(P):
            in1 = view[i, p] == 1
            if not (in1 or through_target or symmetric):
                continue
            for r in range(m):
                x = u[i, p, r]
                h[r] = 3.0 * x * x * (df1[i, r] if in1 else df2[i, r])
                if through_target:
                    y = ub[i, p, r]
                    h[r] += w * 3.0 * y * y * (dG1[i, r] if in1 else dG2[i, r])
            if feat[i, p] == 1:
                for r in range(m):
                    aparts[0, r, l] += h[r] * sign[i] * alpha[l]
            else:
                for r in range(m):
                    for q in range(kr):
                        gY[r, q] += h[r] * ys[i, p, q]
                    for q in range(m):
                        S[r, q] += h[r] * h[q]
    _fast_weight_gradient(gY, S, U, aparts[0], V, sigma, seed, step, gW)
    return loss


@njit
def stop_check_variant(W, Wb, E, V, E_mask, model, rates, stop, A, gram, step, variant, vanish2):
    """``stop_check`` for a variant (docs/model.md section 12): the exact population loss of the
    variant with the target branch at ``Wb`` (``W`` itself for the online target), ``rho``, and
    on check steps the stop status from the exact population gradient of the variant.
    Without BN a neuron at exactly zero, or every ``|w_j|^2 < vanish2[j]`` (check steps,
    before the convergence test), is ``STATUS_VANISHED``; with BN a zero neuron is degenerate."""
    lam, kx, k2, mu, sigma2 = model
    norm, stopgrad, target, tau = variant
    m, d = W.shape
    L = V.shape[1]
    A[:, :] = W @ V
    gram[:, :] = W @ W.T
    Wt = Wb if target == TARGET_EMA else W
    C = sigma2 * gram
    Ab = Wt @ V
    Cb = sigma2 * (Wt @ Wt.T)
    gA = np.empty((m, L))
    gC = np.empty((m, m))
    gE = np.empty((m, m))
    gAb = np.zeros((m, L))
    gCbd = np.zeros(m)
    rho = np.zeros(m)
    for j in range(m):
        if gram[j, j] == 0.0:
            return (STATUS_VANISHED if norm == NORM_NONE else STATUS_DEGENERATE), math.nan, rho
    through = stopgrad == STOPGRAD_OFF
    if norm == NORM_BN and not through:
        loss = loss_grad(A, C, E, Ab, Cb, lam, kx, k2, mu, gA, gC, gE, rho)
    else:
        loss = variant_loss_grad(A, C, E, Ab, Cb, lam, kx, k2, mu, norm == NORM_NONE, through, gA, gC, gE,
                                 gAb, gCbd, rho)
    if not (step > 0 and step % stop[3] == 0) or not math.isfinite(loss):
        return STATUS_RUNNING, loss, rho
    if norm == NORM_NONE and all_vanished(gram, vanish2):
        return STATUS_VANISHED, loss, rho
    gW = gA @ V.T + sigma2 * (gC + gC.T) @ W
    if through:
        w = 1.0 - tau if target == TARGET_EMA else 1.0
        gW += w * (gAb @ V.T + 2.0 * sigma2 * (gCbd.reshape((m, 1)) * Wt))
    return _exact_status(gW, gE, E_mask, A, gram, rates, stop), loss, rho


@njit
def sgd_advance_variant(W, Wb, E, V, E_mask, data, model, rates, stop, rec, rec_state, n_steps, seed, gW, gE,
                        work, extra, fast, events, event_params, variant, vanish2):
    """``sgd_advance`` for any variant (docs/model.md section 12): the gradient of
    ``sgd_gradient_variant`` (``fast``: ``sgd_fast_gradient_variant``, ``work[0]`` (N, P, 2m)),
    the one-sided loss, the target branch at ``Wb`` (EMA: ``Wb <- tau Wb + (1 - tau) W`` after
    each step; online: ``Wb`` is unused). Recording and the stop rule use the closed form of
    the variant at the current ``(W, Wb)`` (``stop_check_variant``)."""
    return _sgd_loop(W, Wb, E, V, E_mask, data, model, rates, stop, rec, rec_state, n_steps, seed, gW, gE,
                     work, extra, fast, events, event_params, variant, vanish2)


@njit
def _sgd_loop(W, Wb, E, V, E_mask, data, model, rates, stop, rec, rec_state, n_steps, seed, gW, gE, work,
              extra, fast, events, event_params, variant, vanish2):
    """The loop of ``sgd_advance`` (``variant`` None: the paper's model, ``Wb``, ``extra`` and
    ``vanish2`` unused) and of ``sgd_advance_variant``. ``variant is None`` is resolved when
    numba compiles (dead-branch pruning on the argument's type): the default loop does not
    contain the variant code."""
    eta, eta_E = rates
    ema = False
    tau = 0.0
    if variant is not None:
        ema = variant[2] == TARGET_EMA
        tau = variant[3]
    m, d = W.shape
    L = V.shape[1]
    A = np.empty((m, L))
    gram = np.empty((m, m))
    check_every = stop[3]
    for _ in range(n_steps):
        step = rec_state[0]
        if step % rec_state[2] == 0 or (step > 0 and step % check_every == 0):
            if variant is None:
                status, loss, rho = stop_check(W, E, V, E_mask, model, rates, stop, A, gram, step)
            else:
                status, loss, rho = stop_check_variant(W, Wb, E, V, E_mask, model, rates, stop, A, gram, step,
                                                       variant, vanish2)
                if status == STATUS_VANISHED or status == STATUS_DEGENERATE:
                    return status
            if not math.isfinite(loss):
                return STATUS_NONFINITE
            observe_run(step, A, gram, E, events, event_params)
            if step % rec_state[2] == 0:
                record_point(rec, rec_state, step, A, gram, E, loss, rho)
            if status != STATUS_RUNNING:
                return status
        else:
            A[:, :] = W @ V  # as stop_check computes them
            gram[:, :] = W @ W.T
            observe_run(step, A, gram, E, events, event_params)
        if variant is None:
            if fast:
                bl = sgd_fast_gradient(W, E, V, data, seed, step, gW, gE, work)
            else:
                bl = sgd_gradient(W, E, V, data, seed, step, gW, gE, work)
        else:
            Wt = Wb if ema else W
            if fast:
                bl = sgd_fast_gradient_variant(W, Wt, E, V, data, seed, step, variant, False, gW, gE, work,
                                               extra)
            else:
                bl = sgd_gradient_variant(W, Wt, E, V, data, seed, step, variant, False, gW, gE, work, extra)
        if not math.isfinite(bl):
            return STATUS_NONFINITE
        for j in range(m):
            for c in range(d):
                W[j, c] -= eta * gW[j, c]
            for q in range(m):
                E[j, q] -= eta_E * E_mask[j, q] * gE[j, q]
        if ema:
            for j in range(m):
                for c in range(d):
                    Wb[j, c] = tau * Wb[j, c] + (1.0 - tau) * W[j, c]
        rec_state[0] = step + 1
    return STATUS_RUNNING
