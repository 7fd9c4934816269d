"""The training objective outside the engines: exact population loss and gradient,
and one SGD mini-batch gradient (docs/model.md sections 3 and 6-8).

Thin wrappers over the ``core`` kernels, for tests, analysis and users; the
engines call the kernels directly.
"""

from __future__ import annotations

import numpy as np

from .core.moments import loss_grad, loss_rho
from .core.sgd import sgd_fast_gradient as _sgd_fast_kernel
from .core.sgd import sgd_gradient as _sgd_gradient_kernel
from .model import check_weights, feature_vectors, model_constants
from .params import ModelParams, TrainParams

SGD_REDUCTION_CHUNKS = 8
"""Fixed number of partial sums in the SGD gradient: results do not depend on the thread count."""


def _coords(W, model):
    V = feature_vectors(model)
    A = np.ascontiguousarray(W @ V)
    C = np.ascontiguousarray(model.sigma**2 * (W @ W.T))
    return V, A, C


# ---------------------------------------------------------------- population loss

def population_loss(W, E, params: ModelParams, *, target=None) -> float:
    """Closed-form population loss ``L = sum_j (2 - 2 rho_j)`` (docs/model.md section 6).

    ``target`` (default ``W``) are the weights of the stop-gradient branch; pass a
    frozen copy to differentiate the online branch alone.
    """
    return population_terms(W, E, params, target=target)[0]


def population_terms(W, E, params: ModelParams, *, target=None) -> tuple[float, np.ndarray]:
    """``(loss, rho)`` with ``rho_j = N_j / sqrt(DF_j DG_j)`` (docs/model.md section 6)."""
    W, E = check_weights(W, E, params)
    Wt = W if target is None else check_weights(target, None, params)[0]
    _, A, C = _coords(W, params)
    _, At, Ct = _coords(Wt, params)
    lam, kx, k2, mu, _ = model_constants(params)
    rho = np.empty(params.m)
    loss = loss_rho(A, C, E, At, Ct, lam, kx, k2, mu, rho)
    return float(loss), rho


def population_grad(W, E, params: ModelParams, *, target=None) -> tuple[np.ndarray, np.ndarray]:
    """Stop-gradient gradient ``(dL/dW, dL/dE)`` of :func:`population_loss` (section 7).

    ``dL/dW = gA V^T + sigma^2 (gC + gC^T) W``; ``dL/dE`` covers every entry
    (unmasked: the trainer masks what the head mode freezes).
    """
    W, E = check_weights(W, E, params)
    Wt = W if target is None else check_weights(target, None, params)[0]
    V, A, C = _coords(W, params)
    _, At, Ct = _coords(Wt, params)
    lam, kx, k2, mu, sigma2 = model_constants(params)
    m, L = A.shape
    gA, gC, gE, rho = np.empty((m, L)), np.empty((m, m)), np.empty((m, m)), np.empty(m)
    loss_grad(A, C, E, At, Ct, lam, kx, k2, mu, gA, gC, gE, rho)
    gW = gA @ V.T + sigma2 * (gC + gC.T) @ W
    return gW, gE


# ---------------------------------------------------------------- SGD gradient

def sgd_data(model: ModelParams, keep_all_noise: bool = False):
    """The data-law tuple the SGD kernels sample from: ``(alpha, pi_cdf, P, k, sigma, half, keep)``."""
    cdf = np.cumsum(np.asarray(model.pi, dtype=np.float64))
    cdf[-1] = 1.0
    return (np.asarray(model.alpha, dtype=np.float64), cdf, model.P, model.k,
            float(model.sigma), model.split == "half", keep_all_noise)


def sgd_work(model: ModelParams, batch: int, fast: bool = False):
    """Scratch arrays of one SGD gradient (``fast``: the ``sgd-fast`` layout, (N, P, m) patches)."""
    N, P, m, d, L = batch, model.P, model.m, model.d, model.L
    T = SGD_REDUCTION_CHUNKS
    return (np.empty((N, P, m if fast else d)), np.empty((N, P, m)), np.empty((N, P), np.int8),
            np.empty((N, P), np.int8), np.empty(N, np.int64), np.empty(N),
            np.empty((N, m)), np.empty((N, m)), np.empty((N, P), np.int64),
            np.empty((T, m, d)), np.empty((T, m, L)))


def sgd_gradient(W, E, params: ModelParams, *, batch: int = 256, seed: int = 0, step: int = 0,
                 return_batch: bool = False, fast: bool = False):
    """One mini-batch gradient ``(dL/dW, dL/dE, batch loss)`` of the ``sgd`` engine.

    The batch is the one the engine would draw at ``step`` of a run with ``seed``
    (docs/model.md sections 3 and 8). Averaged over many batches it approaches
    :func:`population_grad` as the batch grows. With ``return_batch=True`` a fourth
    item holds the materialised batch: ``X`` (N, P, d) patches and ``view1``
    (N, P) booleans (True: the patch is in view 1), for independent re-computation.
    ``fast=True`` uses the ``sgd-fast`` engine's exact-in-distribution draw instead
    (a different sample of the same law; no materialised batch to return).
    """
    W, E = check_weights(W, E, params)
    batch = TrainParams(batch=batch).batch
    seed = TrainParams(seed=seed).seed
    V = np.ascontiguousarray(feature_vectors(params))
    gW, gE = np.empty_like(W), np.empty_like(E)
    if fast:
        if return_batch:
            raise ValueError("return_batch=True needs the materialised engine (fast=False)")
        work = sgd_work(params, batch, fast=True)
        loss = _sgd_fast_kernel(W, E, V, sgd_data(params), seed, int(step), gW, gE, work)
        return gW, gE, float(loss)
    work = sgd_work(params, batch)
    loss = _sgd_gradient_kernel(W, E, V, sgd_data(params, return_batch), seed, int(step), gW, gE, work)
    if not return_batch:
        return gW, gE, float(loss)
    noise, _, feat, view, label, sign = work[:6]
    alpha = np.asarray(params.alpha)
    signal = (sign * alpha[label])[:, None, None] * V.T[label][:, None, :]
    X = np.where(feat[:, :, None] == 1, signal, noise)
    return gW, gE, float(loss), {"X": X, "view1": view == 1, "label": label.copy(),
                                 "sign": sign.copy()}
