"""Slow, obvious numpy reference implementations of docs/model.md sections 1-7.

Nothing here imports ``theory_sim``: the tests compare the package against these
functions, so they are written from docs/model.md directly, favouring the literal
definition over speed:

* :func:`sample` draws samples of the data model (sections 1-2) with numpy's
  generator (independently of the package's counter-based sampler);
* :func:`split_moments_enumerated` gets ``kx, k2, mu`` by exact enumeration of
  every view assignment (no formula);
* :func:`batch_loss` is the loss of section 3 on a materialised batch, written as
  ``(1/N) sum_i |BN(F)_i - BN(G)_i|^2`` (not via the correlation identity);
* :func:`closed_form` / :func:`closed_form_grad` are section 6's loss and its
  stop-gradient gradient in plain numpy on the full ``W`` (the gradient derived
  on ``W`` directly, not through ``C``);
* :func:`population_gd` is a slow gradient-descent loop on the full ``W`` (m x d);
* :func:`fd_grad` is a fourth-order central finite difference.

The features ``V`` (d x L, orthonormal columns) are passed in as data.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np

# ---------------------------------------------------------------- data model (sections 1-2)


def _uniform_subset_mask(rng, n, P, size):
    """(n, P) boolean, each row a uniformly random ``size``-subset of the P positions."""
    keys = rng.random((n, P))
    ranks = np.argsort(np.argsort(keys, axis=1), axis=1)
    return ranks < size


def sample(rng, V, *, P, k, alpha, pi, sigma, split, n):
    """Draw ``n`` samples: ``(X, view1, label, sign, feat)``.

    ``X`` (n, P, d): patch ``p`` is ``sign * alpha_label * v_label`` if ``feat[p]``
    (``k`` uniformly chosen patches) and ``N(0, sigma^2 I)`` otherwise.
    ``view1`` (n, P): Bernoulli(1/2) per patch, or exactly ``P // 2`` patches ("half").
    """
    d, L = V.shape
    alpha = np.asarray(alpha, dtype=float)
    label = rng.choice(L, size=n, p=np.asarray(pi, dtype=float))
    sign = rng.choice(np.array([-1.0, 1.0]), size=n)
    feat = _uniform_subset_mask(rng, n, P, k)
    signal = (sign * alpha[label])[:, None] * V[:, label].T          # (n, d)
    noise = sigma * rng.standard_normal((n, P, d))
    X = np.where(feat[:, :, None], signal[:, None, :], noise)
    if split == "bernoulli":
        view1 = rng.random((n, P)) < 0.5
    elif split == "half":
        view1 = _uniform_subset_mask(rng, n, P, P // 2)
    else:
        raise ValueError(split)
    return X, view1, label, sign, feat


def branch_outputs(W, X, view1):
    """``(f(X^(1)), f(X^(2)))``, each (n, m): ``f_j = sum_p <w_j, X_p>^3`` over a view's patches."""
    cubes = np.einsum("npd,jd->npj", X, W) ** 3
    v1 = view1[:, :, None]
    return (cubes * v1).sum(axis=1), (cubes * ~v1).sum(axis=1)


# ---------------------------------------------------------------- batch loss (section 3)


def _bn(Z):
    """Batch normalisation without affine parameters, per column (biased variance)."""
    mean = Z.mean(axis=0)
    return (Z - mean) / np.sqrt((Z * Z).mean(axis=0) - mean * mean)


def batch_loss(W, E, X, view1, *, target=None):
    """``(1/N) sum_i |BN(E f(X_i^(1))) - BN(f_target(X_i^(2)))|^2`` on the given batch.

    ``target`` (default ``W``) are the weights of the stop-gradient branch.
    """
    Wt = W if target is None else target
    f1, _ = branch_outputs(W, X, view1)
    _, g2 = branch_outputs(Wt, X, view1)
    diff = _bn(f1 @ E.T) - _bn(g2)
    return float(np.mean(np.sum(diff * diff, axis=1)))


# ---------------------------------------------------------------- split moments by enumeration


@functools.cache
def split_moments_enumerated(P, k, split):
    """``(E[n1 n2], E[n1^2], E[#noise patches in view 1])`` by enumerating every split.

    By exchangeability the feature patches can be taken to be the first ``k``.
    """
    num, acc = 0.0, np.zeros(3)
    for assign in itertools.product((0, 1), repeat=P):  # 1: patch in view 1
        if split == "half" and sum(assign) != P // 2:
            continue
        weight = 1.0 if split == "half" else 0.5**P
        n1 = sum(assign[:k])
        acc += weight * np.array([n1 * (k - n1), n1 * n1, sum(assign[k:])])
        num += weight
    return tuple(acc / num)


# ---------------------------------------------------------------- closed form (section 6)


def cube_moment(C):
    """``M_rq = E[u_r^3 u_q^3]`` for ``u ~ N(0, C)`` (Isserlis / Wick)."""
    c = np.diag(C)
    return 9.0 * np.outer(c, c) * C + 6.0 * C**3


def closed_form(W, E, V, *, P, k, alpha, pi, sigma, split, target=None):
    """Section 6 on the full weights: dict with ``N, DF, DG, rho, loss`` and intermediates."""
    Wt = W if target is None else target
    kx, k2, mu = split_moments_enumerated(P, k, split)
    lam = np.asarray(pi, dtype=float) * np.asarray(alpha, dtype=float) ** 6
    A, At = W @ V, Wt @ V
    C, Ct = sigma**2 * W @ W.T, sigma**2 * Wt @ Wt.T
    A3, T = A**3, At**3
    H = E @ A3
    M = cube_moment(C)
    N = kx * (lam * H * T).sum(axis=1)
    DF = k2 * (lam * H * H).sum(axis=1) + mu * np.einsum("jr,rq,jq->j", E, M, E)
    DG = k2 * (lam * T * T).sum(axis=1) + mu * 15.0 * np.diag(Ct) ** 3
    rho = N / np.sqrt(DF * DG)
    return {"N": N, "DF": DF, "DG": DG, "rho": rho, "loss": float(np.sum(2.0 - 2.0 * rho)),
            "A": A, "A3": A3, "T": T, "H": H, "C": C, "M": M, "lam": lam,
            "kx": kx, "k2": k2, "mu": mu}


def closed_form_grad(W, E, V, *, P, k, alpha, pi, sigma, split, target=None):
    """``(dL/dW, dL/dE)`` of :func:`closed_form` with the target branch held fixed.

    Derived on ``W`` directly: with ``C = sigma^2 W W^T`` and a symmetric weight
    ``G``, ``d/dw_a sum_rq G_rq M_rq = sigma^2 [36 sum_q G_aq C_aq^2 w_q
    + 36 (sum_q G_aq C_qq C_aq) w_a + 18 C_aa sum_q G_aq C_qq w_q]``.
    """
    f = closed_form(W, E, V, P=P, k=k, alpha=alpha, pi=pi, sigma=sigma, split=split, target=target)
    DF, DG, rho, lam = f["DF"], f["DG"], f["rho"], f["lam"]
    kx, k2, mu, A, A3, T, H, C, M = (f[x] for x in ("kx", "k2", "mu", "A", "A3", "T", "H", "C", "M"))
    dN = -2.0 / np.sqrt(DF * DG)              # dL/dN_j
    dDF = rho / DF                            # dL/dDF_j
    gH = dN[:, None] * kx * lam * T + dDF[:, None] * 2.0 * k2 * lam * H
    gE = gH @ A3.T + 2.0 * mu * dDF[:, None] * (E @ M)
    gW = (3.0 * A**2 * (E.T @ gH)) @ V.T
    G = mu * E.T @ (dDF[:, None] * E)        # dL/dM (symmetric)
    c = np.diag(C)
    noise = (36.0 * (G * C**2) @ W + 36.0 * ((G * C) @ c)[:, None] * W
             + 18.0 * c[:, None] * ((G * c[None, :]) @ W))
    return gW + sigma**2 * noise, gE


# ---------------------------------------------------------------- slow population GD (section 4)


def population_gd(W0, E0, V, *, eta, eta_E, mask, steps, **model):
    """Plain gradient descent on the full ``W``: lists of ``W(t)``, ``E(t)``, ``t = 0..steps``.

    Both gradients are taken at the current point (target branch = current ``W``),
    then ``W -= eta gW`` and ``E -= eta_E mask * gE``.
    """
    W, E = np.array(W0, dtype=float), np.array(E0, dtype=float)
    Ws, Es = [W.copy()], [E.copy()]
    for _ in range(steps):
        gW, gE = closed_form_grad(W, E, V, **model)
        W = W - eta * gW
        E = E - eta_E * mask * gE
        Ws.append(W.copy())
        Es.append(E.copy())
    return Ws, Es


# ---------------------------------------------------------------- numerical derivatives


def fd_grad(fun, X, h):
    """Fourth-order central finite differences of the scalar ``fun`` at every entry of ``X``:
    ``(-f(x+2h) + 8 f(x+h) - 8 f(x-h) + f(x-2h)) / (12 h)``, error O(h^4)."""
    g = np.zeros_like(X, dtype=float)
    for idx in np.ndindex(X.shape):
        vals = []
        for t in (2, 1, -1, -2):
            Xt = np.array(X, dtype=float)
            Xt[idx] += t * h
            vals.append(fun(Xt))
        g[idx] = (-vals[0] + 8 * vals[1] - 8 * vals[2] + vals[3]) / (12 * h)
    return g


def model_kwargs(model):
    """The keyword arguments of the functions above, read off a ``ModelParams``-like object."""
    return {"P": model.P, "k": model.k, "alpha": tuple(model.alpha), "pi": tuple(model.pi),
            "sigma": model.sigma, "split": model.split}


# ---------------------------------------------------------------- ablation variants (section 12)


def variant_loss(W, E, V, *, norm, target=None, **model):
    """Section 12's population loss: ``sum_j (2 - 2 rho_j)`` (``norm="bn"``) or
    ``sum_j (DF_j + DG_j - 2 N_j)`` (``norm="none"``), the target branch at ``target``."""
    f = closed_form(W, E, V, target=target, **model)
    if norm == "bn":
        return f["loss"]
    if norm == "none":
        return float(np.sum(f["DF"] + f["DG"] - 2.0 * f["N"]))
    raise ValueError(norm)


def batch_loss_variant(W, E, X, view1, *, norm, target=None, symmetric=False):
    """Section 12's batch loss, written literally: ``(1/N) sum_i |n(E f_W(X_i^a)) - n(f_T(X_i^b))|^2``
    with ``n`` = batch normalisation (``norm="bn"``) or the identity (``"none"``), the target
    weights ``T`` (default ``W``), and ``(a, b) = (1, 2)``, or the mean over both orders if
    ``symmetric``. No stop-gradient here: the caller decides what is held fixed."""
    Wt = W if target is None else target
    f1, f2 = branch_outputs(W, X, view1)
    t1, t2 = branch_outputs(Wt, X, view1)
    n = _bn if norm == "bn" else (lambda Z: Z)

    def one(F, G):
        diff = n(F @ E.T) - n(G)
        return float(np.mean(np.sum(diff * diff, axis=1)))

    if not symmetric:
        return one(f1, t2)
    return 0.5 * (one(f1, t2) + one(f2, t1))
