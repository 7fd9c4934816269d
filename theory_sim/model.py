"""The data model as arrays: features, initial weights, split moments, head mask.

docs/model.md sections 1-7. Every engine and the ensemble build their inputs here,
so that a run set up by ``simulate`` and one set up by ``simulate_many`` start from
the same bits.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .params import ModelParams, ParamError


def feature_vectors(model: ModelParams) -> np.ndarray:
    """The features ``v_1..v_L`` as columns of a (d, L) matrix (docs/model.md section 1)."""
    d, L = model.d, model.L
    if model.features == "basis":
        return np.eye(d, L)
    rng = np.random.default_rng([model.feature_seed, 0x7EA7])
    q, r = np.linalg.qr(rng.standard_normal((d, L)))
    return q * np.sign(np.diag(r))  # Haar-distributed orthonormal columns


def initial_weights(model: ModelParams, seed: int) -> np.ndarray:
    """``W(0)_{ij} ~ N(0, 1/d)`` i.i.d. (docs/model.md section 4), from ``seed``."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((model.m, model.d)) / math.sqrt(model.d)


def split_moments(model: ModelParams) -> tuple[float, float, float]:
    """``(kx, k2, mu) = (E[n1 n2], E[n1^2], E[#noise patches in view 1])`` (section 6).

    ``n1, n2`` count the feature patches in view 1 and view 2. Bernoulli(1/2) split:
    ``n1 ~ Bin(k, 1/2)``. Exact half split: ``n1`` is hypergeometric (k marked among
    P, P/2 drawn) with variance ``k (P - k) / (4 (P - 1))``.
    """
    k, P = model.k, model.P
    mu = (P - k) / 2.0
    if model.split == "bernoulli":
        return k * (k - 1) / 4.0, k * (k + 1) / 4.0, mu
    var = k * (P - k) / (4.0 * (P - 1))
    return k * k / 4.0 - var, k * k / 4.0 + var, mu


def model_constants(model: ModelParams) -> tuple:
    """The data constants the kernels take: ``(lam, kx, k2, mu, sigma2)``.

    ``lam_l = pi_l alpha_l^6`` (L,) and the split moments (section 6); this tuple is
    the ``model`` argument of every ``core`` kernel.
    """
    lam = np.asarray(model.pi, dtype=np.float64) * np.asarray(model.alpha, dtype=np.float64) ** 6
    kx, k2, mu = split_moments(model)
    return (lam, float(kx), float(k2), float(mu), float(model.sigma) ** 2)


def head_mask(head: str, m: int) -> np.ndarray:
    """1 where an entry of ``E`` is trained: off-diagonal, none (frozen) or all (full)."""
    if head == "offdiag":
        return 1.0 - np.eye(m)
    if head == "frozen":
        return np.zeros((m, m))
    return np.ones((m, m))


def check_weights(W, E, model: ModelParams) -> tuple[np.ndarray, np.ndarray]:
    """``(W, E)`` as C-contiguous float64 of shapes (m, d) and (m, m); ``E=None`` is ``I``."""
    W = np.asarray(W, dtype=np.float64)
    if W.shape != (model.m, model.d):
        raise ParamError(f"W must have shape (m, d) = ({model.m}, {model.d}) (got {W.shape})")
    if E is None:
        E = np.eye(model.m)
    E = np.asarray(E, dtype=np.float64)
    if E.shape != (model.m, model.m):
        raise ParamError(f"E must have shape (m, m) = ({model.m}, {model.m}) (got {E.shape})")
    if not (np.all(np.isfinite(W)) and np.all(np.isfinite(E))):
        raise ParamError("W and E must be finite")
    return np.ascontiguousarray(W), np.ascontiguousarray(E)


class ReducedCoordinates(NamedTuple):
    """``W(t) = B(t) Q^T`` (docs/model.md section 7): ``Q`` (d, r) an orthonormal basis of
    ``span{v_1..v_L, rows of W(0)}``, ``B`` (m, r) the coordinates of ``W(0)``, ``Vr = Q^T V``
    (r, L)."""

    Q: np.ndarray
    B: np.ndarray
    Vr: np.ndarray


def reduced_coordinates(V: np.ndarray, W0: np.ndarray) -> ReducedCoordinates:
    """The one reduced-coordinate setup (QR of ``[V, W0^T]``), shared by every caller."""
    Q, _ = np.linalg.qr(np.concatenate([V, W0.T], axis=1))
    Q = np.ascontiguousarray(Q)
    return ReducedCoordinates(Q, np.ascontiguousarray(W0 @ Q), np.ascontiguousarray(Q.T @ V))


def phase1_times(model, A: np.ndarray, norms: np.ndarray, threshold: float) -> np.ndarray:
    """(m,) leading-order flow time at which each neuron reaches ``|c_j1| = threshold``
    (docs/model.md, phase-I theory; ``inf`` for a neuron whose blow-up along another feature
    comes first, or where ``A_j1 = 0``). ``A`` (m, L) ``= W(0) V``, ``norms`` (m,) ``|w_j(0)|``.

    Near initialisation ``DF_j = DG_j = 15 mu sigma^6 r_j^6`` and ``da/dt = c_jl a^5`` with
    ``c_jl = 2 kx lam_l / (5 mu sigma^6 r_j^6)``, so ``t_jl = (a^-4 - (threshold r_j)^-4) / (4 c_jl)``.
    """
    lam, kx, _, mu, sigma2 = model_constants(model)
    a0 = np.abs(np.asarray(A, dtype=np.float64))
    r = np.asarray(norms, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        c = 2.0 * kx * lam[None, :] / (5.0 * mu * sigma2**3 * r[:, None] ** 6)
        t = np.maximum((a0**-4.0 - (threshold * r[:, None]) ** -4.0) / (4.0 * c), 0.0)
    t = np.where(np.isnan(t), np.inf, t)
    first = np.argmin(t, axis=1)
    return np.where(first == 0, t[:, 0], np.inf)
