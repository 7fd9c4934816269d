"""Closed-form population loss of the two-view model and its stop-gradient gradient.

Everything here works in the d-free coordinates of MODEL.md section 6:

* ``A[j, l] = <w_j, v_l>`` (m x L), ``C = sigma^2 W W^T`` (m x m, noise covariance of ``u = W xi``),
* ``E`` the prediction head (m x m),
* the data constants ``lam[l] = pi_l alpha_l^6``, ``kx = E[n1 n2]``, ``k2 = E[n1^2]``,
  ``mu = E[#noise patches in a view]``.

With ``A3 = A**3`` and ``H = E A3`` (section 6)::

    N_j  = kx * sum_l lam_l H_jl At3_jl                          (cross-view moment)
    DF_j = k2 * sum_l lam_l H_jl^2 + mu * (E M E^T)_jj             (online second moment)
    DG_j = k2 * sum_l lam_l At3_jl^2 + mu * 15 Ct_jj^3             (target second moment)
    M_rq = 9 C_rr C_qq C_rq + 6 C_rq^3                             (E[u_r^3 u_q^3], Isserlis)
    rho_j = N_j / sqrt(DF_j DG_j),    L = sum_j (2 - 2 rho_j)

``At3`` and ``DG`` belong to the target branch and are held fixed when
differentiating (stop-gradient, section 3). In training they are evaluated at the
current weights; the finite-difference tests evaluate them at a frozen copy.

The gradient is returned in the same coordinates (``gA = dL/dA``, ``gC = dL/dC``
with every entry of C treated as independent, ``gE = dL/dE`` unmasked); section 7
maps it to weights: ``dL/dW = gA V^T + sigma^2 (gC + gC^T) W``.

All functions write into caller-provided buffers so that the engines' inner loop
allocates nothing.
"""

from __future__ import annotations

import math

from ._jit import njit, njit_inline


@njit_inline
def target_terms(At, Ct, lam, k2, mu, At3, DG):
    """Fill the stop-gradient factors ``At3 = At**3`` and ``DG`` (section 6)."""
    m, L = At.shape
    for j in range(m):
        s = 0.0
        for l in range(L):
            a = At[j, l]
            a3 = a * a * a
            At3[j, l] = a3
            s += lam[l] * a3 * a3
        c = Ct[j, j]
        DG[j] = k2 * s + mu * 15.0 * c * c * c


@njit_inline
def forward(A, C, E, At3, DG, lam, kx, k2, mu, A3, H, M, EM, N, DF, rho):
    """Population loss ``L = sum_j (2 - 2 rho_j)``; fills the intermediate buffers.

    Buffers: ``A3, H`` (m x L), ``M, EM`` (m x m, ``EM = E M``), ``N, DF, rho`` (m).
    """
    m, L = A.shape
    for r in range(m):
        for l in range(L):
            a = A[r, l]
            A3[r, l] = a * a * a
    for r in range(m):
        for q in range(m):
            c = C[r, q]
            M[r, q] = 9.0 * C[r, r] * C[q, q] * c + 6.0 * c * c * c
    for j in range(m):
        for l in range(L):
            s = 0.0
            for r in range(m):
                s += E[j, r] * A3[r, l]
            H[j, l] = s
        for q in range(m):
            s = 0.0
            for r in range(m):
                s += E[j, r] * M[r, q]
            EM[j, q] = s
    loss = 0.0
    for j in range(m):
        n = 0.0
        f = 0.0
        for l in range(L):
            h = H[j, l]
            n += lam[l] * h * At3[j, l]
            f += lam[l] * h * h
        s = 0.0
        for q in range(m):
            s += EM[j, q] * E[j, q]
        N[j] = kx * n
        DF[j] = k2 * f + mu * s
        rho[j] = N[j] / math.sqrt(DF[j] * DG[j])
        loss += 2.0 - 2.0 * rho[j]
    return loss


@njit_inline
def backward(A, C, E, At3, lam, kx, k2, mu, A3, H, EM, N, DF, DG, rho, gH, gS, gM, gA, gC, gE):
    """Gradient of the loss whose forward pass filled ``A3, H, EM, N, DF, rho``.

    Chain rule, with ``a_j = 1 / sqrt(DF_j DG_j)`` and ``b_j = -rho_j / (2 DF_j)``::

        dL/dH_jl = -2 (a_j kx lam_l At3_jl + b_j 2 k2 lam_l H_jl)
        dL/dS_j  = -2 b_j mu                       (S_j = (E M E^T)_jj)
        gE  = (dL/dH) A3^T + 2 diag(dL/dS) E M
        gA  = 3 A^2 * (E^T dL/dH)
        gM  = E^T diag(dL/dS) E
        gC_rq = gM_rq (9 C_rr C_qq + 18 C_rq^2) + [r == q] 18 sum_p gM_rp C_pp C_rp

    Work buffers: ``gH`` (m x L), ``gS`` (m), ``gM`` (m x m).
    """
    m, L = A.shape
    for j in range(m):
        a = 1.0 / math.sqrt(DF[j] * DG[j])
        b = -rho[j] / (2.0 * DF[j])
        for l in range(L):
            gH[j, l] = -2.0 * lam[l] * (a * kx * At3[j, l] + 2.0 * b * k2 * H[j, l])
        gS[j] = -2.0 * b * mu
    for j in range(m):
        for r in range(m):
            s = 0.0
            for l in range(L):
                s += gH[j, l] * A3[r, l]
            gE[j, r] = s + 2.0 * gS[j] * EM[j, r]
    for r in range(m):
        for l in range(L):
            s = 0.0
            for j in range(m):
                s += E[j, r] * gH[j, l]
            a = A[r, l]
            gA[r, l] = 3.0 * a * a * s
    for r in range(m):
        for q in range(m):
            s = 0.0
            for j in range(m):
                s += gS[j] * E[j, r] * E[j, q]
            gM[r, q] = s
    for r in range(m):
        for q in range(m):
            c = C[r, q]
            gC[r, q] = gM[r, q] * (9.0 * C[r, r] * C[q, q] + 18.0 * c * c)
    for r in range(m):
        s = 0.0
        for p in range(m):
            s += gM[r, p] * C[p, p] * C[r, p]
        gC[r, r] += 18.0 * s


@njit
def loss_rho(A, C, E, At, Ct, lam, kx, k2, mu, rho):
    """Loss with the target branch at ``(At, Ct)``; fills ``rho``. Allocates (not for hot loops)."""
    m, L = A.shape
    At3 = A.copy()
    DG = rho.copy()
    target_terms(At, Ct, lam, k2, mu, At3, DG)
    return forward(A, C, E, At3, DG, lam, kx, k2, mu, A.copy(), A.copy(), C.copy(), C.copy(),
                   rho.copy(), rho.copy(), rho)


@njit
def loss_grad(A, C, E, At, Ct, lam, kx, k2, mu, gA, gC, gE, rho):
    """Loss and ``(gA, gC, gE)`` with the target branch at ``(At, Ct)``. Allocates."""
    At3 = A.copy()
    DG = rho.copy()
    target_terms(At, Ct, lam, k2, mu, At3, DG)
    A3 = A.copy()
    H = A.copy()
    M = C.copy()
    EM = C.copy()
    N = rho.copy()
    DF = rho.copy()
    loss = forward(A, C, E, At3, DG, lam, kx, k2, mu, A3, H, M, EM, N, DF, rho)
    backward(A, C, E, At3, lam, kx, k2, mu, A3, H, EM, N, DF, DG, rho,
             A.copy(), rho.copy(), C.copy(), gA, gC, gE)
    return loss
