"""Closed-form population loss of the two-view model and its stop-gradient gradient.

Everything here works in the d-free coordinates of docs/model.md section 6:

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

import numpy as np

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


@njit_inline
def loss_grad_2x2_target(A, C, E, Ab, Cb, lam, kx, k2, mu, gA, gC, gE, rho):
    """``target_terms + forward + backward`` for m = L = 2 with the target branch at ``(Ab, Cb)``
    (an EMA target; ``loss_grad_2x2`` passes the online ``A, C``). Stop-gradient on the target
    branch, BN (docs/model.md section 6). Outputs and return value as ``loss_grad_2x2``."""
    l0 = lam[0]
    l1 = lam[1]
    a00 = A[0, 0]
    a01 = A[0, 1]
    a10 = A[1, 0]
    a11 = A[1, 1]
    c00 = C[0, 0]
    c01 = C[0, 1]
    c11 = C[1, 1]
    b00 = Ab[0, 0]
    b01 = Ab[0, 1]
    b10 = Ab[1, 0]
    b11 = Ab[1, 1]
    cb00 = Cb[0, 0]
    cb11 = Cb[1, 1]
    e00 = E[0, 0]
    e01 = E[0, 1]
    e10 = E[1, 0]
    e11 = E[1, 1]
    t00 = a00 * a00 * a00  # A3 (online)
    t01 = a01 * a01 * a01
    t10 = a10 * a10 * a10
    t11 = a11 * a11 * a11
    s00 = b00 * b00 * b00  # At3 (target)
    s01 = b01 * b01 * b01
    s10 = b10 * b10 * b10
    s11 = b11 * b11 * b11
    DG0 = k2 * (l0 * s00 * s00 + l1 * s01 * s01) + mu * 15.0 * cb00 * cb00 * cb00
    DG1 = k2 * (l0 * s10 * s10 + l1 * s11 * s11) + mu * 15.0 * cb11 * cb11 * cb11
    M00 = 9.0 * c00 * c00 * c00 + 6.0 * c00 * c00 * c00
    M11 = 9.0 * c11 * c11 * c11 + 6.0 * c11 * c11 * c11
    M01 = 9.0 * c00 * c11 * c01 + 6.0 * c01 * c01 * c01
    H00 = e00 * t00 + e01 * t10  # H = E A3
    H01 = e00 * t01 + e01 * t11
    H10 = e10 * t00 + e11 * t10
    H11 = e10 * t01 + e11 * t11
    EM00 = e00 * M00 + e01 * M01  # EM = E M
    EM01 = e00 * M01 + e01 * M11
    EM10 = e10 * M00 + e11 * M01
    EM11 = e10 * M01 + e11 * M11
    N0 = kx * (l0 * H00 * s00 + l1 * H01 * s01)
    N1 = kx * (l0 * H10 * s10 + l1 * H11 * s11)
    DF0 = k2 * (l0 * H00 * H00 + l1 * H01 * H01) + mu * (EM00 * e00 + EM01 * e01)
    DF1 = k2 * (l0 * H10 * H10 + l1 * H11 * H11) + mu * (EM10 * e10 + EM11 * e11)
    rho0 = N0 / math.sqrt(DF0 * DG0)
    rho1 = N1 / math.sqrt(DF1 * DG1)
    rho[0] = rho0
    rho[1] = rho1
    loss = (2.0 - 2.0 * rho0) + (2.0 - 2.0 * rho1)
    q0 = 1.0 / math.sqrt(DF0 * DG0)
    q1 = 1.0 / math.sqrt(DF1 * DG1)
    b0 = -rho0 / (2.0 * DF0)
    b1 = -rho1 / (2.0 * DF1)
    gH00 = -2.0 * l0 * (q0 * kx * s00 + 2.0 * b0 * k2 * H00)
    gH01 = -2.0 * l1 * (q0 * kx * s01 + 2.0 * b0 * k2 * H01)
    gH10 = -2.0 * l0 * (q1 * kx * s10 + 2.0 * b1 * k2 * H10)
    gH11 = -2.0 * l1 * (q1 * kx * s11 + 2.0 * b1 * k2 * H11)
    gS0 = -2.0 * b0 * mu
    gS1 = -2.0 * b1 * mu
    gE[0, 0] = (gH00 * t00 + gH01 * t01) + 2.0 * gS0 * EM00  # gE = gH A3^T + 2 diag(gS) E M
    gE[0, 1] = (gH00 * t10 + gH01 * t11) + 2.0 * gS0 * EM01
    gE[1, 0] = (gH10 * t00 + gH11 * t01) + 2.0 * gS1 * EM10
    gE[1, 1] = (gH10 * t10 + gH11 * t11) + 2.0 * gS1 * EM11
    gA[0, 0] = 3.0 * a00 * a00 * (e00 * gH00 + e10 * gH10)  # gA = 3 A^2 (E^T gH)
    gA[0, 1] = 3.0 * a01 * a01 * (e00 * gH01 + e10 * gH11)
    gA[1, 0] = 3.0 * a10 * a10 * (e01 * gH00 + e11 * gH10)
    gA[1, 1] = 3.0 * a11 * a11 * (e01 * gH01 + e11 * gH11)
    gM00 = gS0 * e00 * e00 + gS1 * e10 * e10  # gM = E^T diag(gS) E
    gM01 = gS0 * e00 * e01 + gS1 * e10 * e11
    gM11 = gS0 * e01 * e01 + gS1 * e11 * e11
    gC01 = gM01 * (9.0 * c00 * c11 + 18.0 * c01 * c01)
    gC[0, 1] = gC01
    gC[1, 0] = gC01
    gC[0, 0] = gM00 * (9.0 * c00 * c00 + 18.0 * c00 * c00) + 18.0 * (gM00 * c00 * c00 + gM01 * c11 * c01)
    gC[1, 1] = gM11 * (9.0 * c11 * c11 + 18.0 * c11 * c11) + 18.0 * (gM01 * c00 * c01 + gM11 * c11 * c11)
    return loss


@njit_inline
def loss_grad_2x2(A, C, E, lam, kx, k2, mu, gA, gC, gE, rho):
    """``target_terms + forward + backward`` for m = 2 neurons and L = 2 features
    (the paper's setting) with the target branch at the online weights.

    The same formulas as the general functions above, unrolled into scalars: the
    general loops over m = L = 2 spend most of their time on loop and index
    overhead (about 5x slower). Fills ``gA``, ``gC``, ``gE``, ``rho`` (the outputs in
    :func:`loss_grad`'s order); returns the loss. ``loss_grad_2x2_target`` at the online
    weights (both inlined, so the target cubes are the online ones: the same bits).
    """
    return loss_grad_2x2_target(A, C, E, A, C, lam, kx, k2, mu, gA, gC, gE, rho)


# ---------------------------------------------------------------- ablation variants (section 12)
#
# The variants of docs/model.md section 12 share section 6's three moments, with the
# target branch at ``(Ab, Cb)`` (the online weights, or the EMA target's):
#
#     bn:    L = sum_j (2 - 2 N_j / sqrt(DF_j DG_j))
#     none:  L = sum_j (DF_j + DG_j - 2 N_j)
#
# ``dL/dN_j, dL/dDF_j, dL/dDG_j`` are ``-2 / sqrt(DF_j DG_j), rho_j / DF_j, rho_j / DG_j``
# (bn) or ``-2, 1, 1`` (none). The online partials follow ``backward``; with the
# stop-gradient off the target partials are added:
#
#     dL/dT_jl  = lam_l (dL/dN_j kx H_jl + dL/dDG_j 2 k2 T_jl)       (T = Ab^3)
#     gAb       = 3 Ab^2 dL/dT
#     gCbd_j    = dL/dCb_jj = dL/dDG_j mu 45 Cb_jj^2                  (DG sees only diag Cb)


@njit_inline
def variant_forward(A, C, E, Ab, Cb, lam, kx, k2, mu, norm_none, A3, T, H, M, EM, N, DF, DG, rho):
    """Loss of the variant (``norm_none``: no batch normalisation) with the target branch at
    ``(Ab, Cb)``; fills ``T = Ab^3, DG`` and ``forward``'s buffers. ``rho`` is filled in both
    cases (an observable; NaN without BN when a branch's second moment is 0)."""
    target_terms(Ab, Cb, lam, k2, mu, T, DG)
    loss = forward(A, C, E, T, DG, lam, kx, k2, mu, A3, H, M, EM, N, DF, rho)
    if not norm_none:
        return loss
    loss = 0.0
    for j in range(A.shape[0]):
        loss += DF[j] + DG[j] - 2.0 * N[j]
    return loss


@njit_inline
def variant_backward(A, C, E, Ab, Cb, lam, kx, k2, mu, norm_none, through_target, A3, T, H, EM, N, DF, DG,
                     rho, gH, gS, gM, gT, gA, gC, gE, gAb, gCbd):
    """Gradient of the loss ``variant_forward`` evaluated: the online partials ``gA, gC, gE``
    and, if ``through_target``, the target partials ``gAb`` (m x L) and ``gCbd`` (m, the
    diagonal of dL/dCb; its off-diagonal is 0). Work buffers ``gH, gT`` (m x L), ``gS`` (m),
    ``gM`` (m x m)."""
    m, L = A.shape
    for j in range(m):
        if norm_none:
            dN = -2.0
            dF = 1.0
            dG = 1.0
        else:
            dN = -2.0 / math.sqrt(DF[j] * DG[j])
            dF = rho[j] / DF[j]
            dG = rho[j] / DG[j]
        for l in range(L):
            gH[j, l] = lam[l] * (dN * kx * T[j, l] + dF * 2.0 * k2 * H[j, l])
        gS[j] = dF * mu
        if through_target:
            for l in range(L):
                gT[j, l] = lam[l] * (dN * kx * H[j, l] + dG * 2.0 * k2 * T[j, l])
                a = Ab[j, l]
                gAb[j, l] = 3.0 * a * a * gT[j, l]
            c = Cb[j, j]
            gCbd[j] = dG * mu * 45.0 * c * c
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
def variant_loss_grad(A, C, E, Ab, Cb, lam, kx, k2, mu, norm_none, through_target, gA, gC, gE, gAb, gCbd,
                      rho):
    """Loss and gradients of a variant (see ``variant_backward``). Allocates (not for hot loops)."""
    m, L = A.shape
    A3, T, H = np.empty((m, L)), np.empty((m, L)), np.empty((m, L))
    M, EM = np.empty((m, m)), np.empty((m, m))
    N, DF, DG = np.empty(m), np.empty(m), np.empty(m)
    loss = variant_forward(A, C, E, Ab, Cb, lam, kx, k2, mu, norm_none, A3, T, H, M, EM, N, DF, DG, rho)
    variant_backward(A, C, E, Ab, Cb, lam, kx, k2, mu, norm_none, through_target, A3, T, H, EM, N, DF, DG,
                     rho, np.empty((m, L)), np.empty(m), np.empty((m, m)), np.empty((m, L)), gA, gC, gE,
                     gAb, gCbd)
    return loss


@njit
def variant_loss_rho(A, C, E, Ab, Cb, lam, kx, k2, mu, norm_none, rho):
    """Loss of a variant with the target branch at ``(Ab, Cb)``; fills ``rho``. Allocates."""
    m, L = A.shape
    return variant_forward(A, C, E, Ab, Cb, lam, kx, k2, mu, norm_none, np.empty((m, L)), np.empty((m, L)),
                           np.empty((m, L)), np.empty((m, m)), np.empty((m, m)), np.empty(m), np.empty(m),
                           np.empty(m), rho)
