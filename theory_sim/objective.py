"""The training objective outside the engines: exact population loss and gradient,
and one SGD mini-batch gradient (docs/model.md sections 3 and 6-8).

Thin wrappers over the ``core`` kernels, for tests, analysis and users; the
engines call the kernels directly.
"""

from __future__ import annotations

import numpy as np

from .core import variants as _v
from .core.moments import loss_grad, loss_rho, variant_loss_grad, variant_loss_rho
from .core.sgd import sgd_fast_gradient as _sgd_fast_kernel
from .core.sgd import sgd_fast_gradient_variant as _sgd_fast_variant_kernel
from .core.sgd import sgd_gradient as _sgd_gradient_kernel
from .core.sgd import sgd_gradient_variant as _sgd_variant_kernel
from .model import check_weights, feature_vectors, model_constants
from .params import ModelParams, TrainParams

SGD_REDUCTION_CHUNKS = 8
"""Fixed number of partial sums in the SGD gradient: results do not depend on the thread count."""


def _coords(W, model):
    V = feature_vectors(model)
    A = np.ascontiguousarray(W @ V)
    C = np.ascontiguousarray(model.sigma**2 * (W @ W.T))
    return V, A, C


# ---------------------------------------------------------------- variants (section 12)

VARIANT_CODES = {
    "norm": {"bn": _v.NORM_BN, "none": _v.NORM_NONE},
    "stopgrad": {"on": _v.STOPGRAD_ON, "off": _v.STOPGRAD_OFF},
    "target": {"online": _v.TARGET_ONLINE, "ema": _v.TARGET_EMA},
}
"""Names of the ablation options (docs/model.md section 12) -> the kernels' integer codes
(``core.variants``). The first name of each is the paper's model, the default."""


def _code(option: str, value) -> int:
    codes = VARIANT_CODES[option]
    if value not in codes:
        raise ValueError(f"{option} must be one of {', '.join(map(repr, codes))} (got {value!r})")
    return codes[value]


def _check_tau(tau) -> float:
    tau = float(tau)
    if not 0.0 <= tau < 1.0:
        raise ValueError(f"tau must be in [0, 1) (got {tau})")
    return tau


def variant_tuple(norm: str = "bn", stopgrad: str = "on", target: str = "online", tau: float = 0.0) -> tuple:
    """The kernels' ``variant = (norm, stopgrad, target, tau)`` for the named options
    (``population_step_variant``, ``sgd_gradient_variant``). ``tau`` must be 0 unless ``target="ema"``."""
    codes = (_code("norm", norm), _code("stopgrad", stopgrad), _code("target", target))
    tau = _check_tau(tau)
    if target == "online" and tau != 0.0:
        raise ValueError("tau applies only to target='ema' (leave it 0 for the online target)")
    return (*codes, tau)


def _ema_weight(stopgrad_code: int, target, tau) -> float:
    """``w`` of ``dL/dW = d_online L + w d_target L``: 1 (online target), ``1 - tau`` (EMA target
    with the stop-gradient off), unused with the stop-gradient on."""
    if target is None:
        if tau is not None:
            raise ValueError("tau applies only with an EMA target: pass target=Wbar as well")
        return 1.0
    if stopgrad_code == _v.STOPGRAD_OFF:
        if tau is None:
            raise ValueError("stopgrad='off' with an EMA target needs tau (it moves with W by 1 - tau)")
        return 1.0 - _check_tau(tau)
    if tau is not None:
        _check_tau(tau)
    return 0.0


# ---------------------------------------------------------------- population loss

def population_loss(W, E, params: ModelParams, *, norm: str = "bn", target=None) -> float:
    """Closed-form population loss (docs/model.md sections 6 and 12).

    ``norm="bn"``: ``L = sum_j (2 - 2 rho_j)``; ``norm="none"``: ``L = sum_j (DF_j + DG_j - 2 N_j)``.
    ``target`` (default ``W``) are the weights of the target branch: an EMA target, or a
    frozen copy to differentiate the online branch alone.
    """
    return population_terms(W, E, params, norm=norm, target=target)[0]


def population_terms(W, E, params: ModelParams, *, norm: str = "bn", target=None) -> tuple[float, np.ndarray]:
    """``(loss, rho)`` with ``rho_j = N_j / sqrt(DF_j DG_j)`` (docs/model.md section 6; ``rho`` is
    reported whatever ``norm`` is)."""
    norm_code = _code("norm", norm)
    W, E = check_weights(W, E, params)
    Wt = W if target is None else check_weights(target, None, params)[0]
    _, A, C = _coords(W, params)
    _, At, Ct = _coords(Wt, params)
    lam, kx, k2, mu, _ = model_constants(params)
    rho = np.empty(params.m)
    if norm_code == _v.NORM_BN:
        loss = loss_rho(A, C, E, At, Ct, lam, kx, k2, mu, rho)
    else:
        loss = variant_loss_rho(A, C, E, At, Ct, lam, kx, k2, mu, True, rho)
    return float(loss), rho


def population_grad(W, E, params: ModelParams, *, norm: str = "bn", stopgrad: str = "on", target=None,
                    tau=None) -> tuple[np.ndarray, np.ndarray]:
    """Gradient ``(dL/dW, dL/dE)`` of :func:`population_loss` for a variant (sections 7 and 12).

    ``stopgrad="on"`` (the paper): the target branch at ``target`` (default ``W``) is held
    fixed. ``stopgrad="off"``: it is differentiated too (its features and its second moments,
    the population BN statistics) as a function of ``W``: with the online target the total
    derivative; with an EMA target ``Wbar = tau Wbar_prev + (1 - tau) W`` (the update that made
    it), so ``dL/dW = d_online L + (1 - tau) d_target L`` and ``tau`` is required.
    ``dL/dW = gA V^T + sigma^2 (gC + gC^T) W [+ w (gAb V^T + 2 sigma^2 diag(gCb) Wbar)]``;
    ``dL/dE`` covers every entry (unmasked: the trainer masks what the head mode freezes).
    """
    norm_code = _code("norm", norm)
    sg_code = _code("stopgrad", stopgrad)
    w = _ema_weight(sg_code, target, tau)
    W, E = check_weights(W, E, params)
    Wt = W if target is None else check_weights(target, None, params)[0]
    V, A, C = _coords(W, params)
    _, At, Ct = _coords(Wt, params)
    lam, kx, k2, mu, sigma2 = model_constants(params)
    m, L = A.shape
    gA, gC, gE, rho = np.empty((m, L)), np.empty((m, m)), np.empty((m, m)), np.empty(m)
    if norm_code == _v.NORM_BN and sg_code == _v.STOPGRAD_ON:  # the paper's gradient, as before
        loss_grad(A, C, E, At, Ct, lam, kx, k2, mu, gA, gC, gE, rho)
        gW = gA @ V.T + sigma2 * (gC + gC.T) @ W
        return gW, gE
    through = sg_code == _v.STOPGRAD_OFF
    gAb, gCbd = np.zeros((m, L)), np.zeros(m)
    variant_loss_grad(A, C, E, At, Ct, lam, kx, k2, mu, norm_code == _v.NORM_NONE, through,
                      gA, gC, gE, gAb, gCbd, rho)
    gW = gA @ V.T + sigma2 * (gC + gC.T) @ W
    if through:
        gW = gW + w * (gAb @ V.T + 2.0 * sigma2 * gCbd[:, None] * Wt)
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
                 return_batch: bool = False, fast: bool = False, norm: str = "bn", stopgrad: str = "on",
                 target=None, tau=None, symmetric: bool = False):
    """One mini-batch gradient ``(dL/dW, dL/dE, batch loss)`` of the ``sgd`` engine.

    The batch is the one the engine would draw at ``step`` of a run with ``seed``
    (docs/model.md sections 3 and 8). Averaged over many batches it approaches
    :func:`population_grad` as the batch grows. With ``return_batch=True`` a fourth
    item holds the materialised batch: ``X`` (N, P, d) patches and ``view1``
    (N, P) booleans (True: the patch is in view 1), for independent re-computation.
    ``fast=True`` uses the ``sgd-fast`` engine's exact-in-distribution draw instead
    (a different sample of the same law; no materialised batch to return).

    Ablations (docs/model.md section 12), as in :func:`population_grad`: ``norm="none"`` (no
    batch normalisation: ``(1/N) sum_i |F_i - G_i|^2``), ``stopgrad="off"`` (gradient through
    the target branch and its batch statistics), ``target=Wbar`` (an EMA target; ``tau`` as in
    :func:`population_grad`), ``symmetric=True`` (the mean of both view orders). Anything
    but the default runs the materialised variant kernel (``fast`` must be False).
    """
    norm_code = _code("norm", norm)
    sg_code = _code("stopgrad", stopgrad)
    _ema_weight(sg_code, target, tau)  # validates tau against the variant
    W, E = check_weights(W, E, params)
    batch = TrainParams(batch=batch).batch
    seed = TrainParams(seed=seed).seed
    if norm_code != _v.NORM_BN or sg_code != _v.STOPGRAD_ON or target is not None or symmetric:
        if fast and return_batch:
            raise ValueError("return_batch=True needs the materialised engine (fast=False)")
        Wt = W if target is None else check_weights(target, None, params)[0]
        ema = target is not None
        variant = (norm_code, sg_code, _v.TARGET_EMA if ema else _v.TARGET_ONLINE,
                   _check_tau(tau) if ema and tau is not None else 0.0)
        return _sgd_variant(W, Wt, E, params, batch, seed, int(step), variant, bool(symmetric), return_batch,
                            fast)
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


def _sgd_variant(W, Wt, E, params, batch, seed, step, variant, symmetric, return_batch, fast):
    V = np.ascontiguousarray(feature_vectors(params))
    gW, gE = np.empty_like(W), np.empty_like(E)
    N, P, m = batch, params.P, params.m
    extra = (np.empty((N, P, m)), np.empty((N, m)), np.empty((N, m)))
    if fast:
        work = sgd_work(params, batch, fast=True)
        work = (np.empty((N, P, 2 * m)),) + work[1:]  # y: coordinates in the basis of [W; Wbar]
        loss = _sgd_fast_variant_kernel(W, Wt, E, V, sgd_data(params), seed, step, variant, symmetric, gW, gE,
                                        work, extra)
        return gW, gE, float(loss)
    work = sgd_work(params, batch)
    loss = _sgd_variant_kernel(W, Wt, E, V, sgd_data(params, return_batch), seed, step, variant, symmetric,
                               gW, gE, work, extra)
    if not return_batch:
        return gW, gE, float(loss)
    return gW, gE, float(loss), _batch_dict(work, V, params)


def _batch_dict(work, V, params):
    noise, _, feat, view, label, sign = work[:6]
    alpha = np.asarray(params.alpha)
    signal = (sign * alpha[label])[:, None, None] * V.T[label][:, None, :]
    X = np.where(feat[:, :, None] == 1, signal, noise)
    return {"X": X, "view1": view == 1, "label": label.copy(), "sign": sign.copy()}
