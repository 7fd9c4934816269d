"""Reduced coordinates of ``W(0)``, materialised or drawn directly (docs/model.md section 11).

The population dynamics sees ``W`` only through its reduced coordinates ``B`` in an
orthonormal basis ``Q`` of ``span{v_1..v_L, rows of W(0)}`` and the features there,
``Vr = Q^T V`` (section 7). Two ways to get them:

* ``materialised_coordinates``: draw ``W(0)`` (m x d) from ``seed`` exactly as the other
  engines do (``initial_weights``) and project: ``O(m d)`` time and memory. The same seed
  gives the same ``W(0)`` as the population and SGD engines.
* ``reduced_coordinates``: the same law at ``O(m^2)`` cost for any ``d``. With ``W(0)``
  rows i.i.d. ``N(0, I/d)`` and orthonormal ``V``: ``A = W(0) V`` has i.i.d. ``N(0, 1/d)``
  entries; ``W_perp = W(0) (I - V V^T)`` is independent of ``A`` and, written
  ``W_perp = K U^T`` with ``U`` orthonormal in the complement (dimension ``p = d - L``),
  ``K`` (m x min(m, p)) is lower trapezoidal with (Bartlett) ``K_ii = sqrt(chi2_{p-i+1} / d)``
  and ``K_ij ~ N(0, 1/d)`` for ``j < i``; when ``p < m`` the rows below ``p`` are all
  Gaussian. So ``B = [A, K]`` in the basis ``[V, U]`` and ``Vr = [I_L; 0]``.
  Stream: ``numpy.random.default_rng([seed, REDUCED_STREAM])`` draws ``A`` (row-major),
  then the strictly lower entries of ``K`` (row-major), then the chi-square variates for
  ``i = 1..min(m, p)``. The same seed does *not* give the materialised ``W(0)``, only a
  draw from the same law.
"""

from __future__ import annotations

import math

import numpy as np

from .model import feature_vectors, initial_weights
from .params import ModelParams

REDUCED_STREAM = 0x0F10
"""Second word of the reduced law's seed, so that it never shares a stream with ``W(0)``."""


def reduced_coordinates(m: int, L: int, d: int | float, seed: int, *, wrong_dof: bool = False):
    """``(B, Vr)`` drawn from the law of ``W(0)``'s reduced coordinates (module docstring).

    ``d`` may be any integer ``>= L`` (``1e12`` costs what ``512`` costs). ``wrong_dof``
    draws ``K_ii^2 d ~ chi2_d`` instead of ``chi2_{d-L-i+1}``: a deliberately wrong law
    that the tests use to check that their two-sample test has power.
    """
    m, L = int(m), int(L)
    d = int(d)
    if m < 1 or L < 1:
        raise ValueError(f"m and L must be >= 1 (got m={m}, L={L})")
    if d < L:
        raise ValueError(f"d must be >= the number of features L = {L} (got d={d})")
    p = d - L
    q = min(m, p)
    rng = np.random.default_rng([int(seed), REDUCED_STREAM])
    scale = 1.0 / math.sqrt(d)
    A = rng.standard_normal((m, L)) * scale
    K = np.zeros((m, q))
    for i in range(m):
        for j in range(min(i, q)):
            K[i, j] = rng.standard_normal() * scale
    for i in range(q):
        dof = float(d) if wrong_dof else float(p - i)
        K[i, i] = math.sqrt(rng.chisquare(dof) / d)
    B = np.ascontiguousarray(np.concatenate([A, K], axis=1))
    Vr = np.zeros((L + q, L))
    Vr[:L, :L] = np.eye(L)
    return B, Vr


def materialised_coordinates(model: ModelParams, seed: int):
    """``(B, Vr)`` of the seeded ``W(0)`` in the population engine's basis (QR of ``[V, W0^T]``)."""
    V = feature_vectors(model)
    W0 = initial_weights(model, seed)
    Q, _ = np.linalg.qr(np.concatenate([V, W0.T], axis=1))
    return np.ascontiguousarray(W0 @ Q), np.ascontiguousarray(Q.T @ V)
