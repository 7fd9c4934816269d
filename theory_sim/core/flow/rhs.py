"""The right-hand side ``f = dy/dt`` of the flow, its Jacobian, and the exact identities that
keep round-off out of them (docs/flow.md section 2).

``y = (B.ravel(), E.ravel())`` of length ``n = m r + m^2``; ``f = (-dL/dB, -(eta_E/eta) mask * dL/dE)``
from the closed-form gradient of ``population_step`` (docs/model.md section 6).
"""

from __future__ import annotations

import math

from .._jit import njit, njit_inline
from ..population import WS_GA, WS_GB, WS_GC, WS_GE, WS_GRAM, population_step
from .state import I_JACAGE, I_NJAC, I_NRHS

JAC_REL_STEP = 6.0554544523933395e-06
"""Central-difference step of the Jacobian, relative: eps^(1/3)."""


@njit
def _rhs(y, f, prob, Bb, Eb, ws):
    """``f = dy/dt`` at ``y`` (``prob``: the run's ``Problem``); returns ``(loss, speed_w, speed_e)``.

    The one place that calls the closed-form gradient (``population_step``): ``gB`` and the
    already masked ``gE`` are read from its workspace. Not inlined: the solver calls it from
    many places, and one compiled copy keeps the compile time short.
    """
    Vr, E_mask, model, ratio = prob
    m, r = Bb.shape
    k = 0
    for j in range(m):
        for i in range(r):
            Bb[j, i] = y[k]
            k += 1
    for j in range(m):
        for q in range(m):
            Eb[j, q] = y[k]
            k += 1
    loss, speed_w, speed_e = population_step(Bb, Eb, Vr, E_mask, model, (1.0, ratio), ws)
    gB = ws[WS_GB]
    gE = ws[WS_GE]
    k = 0
    for j in range(m):
        for i in range(r):
            f[k] = -gB[j, i]
            k += 1
    for j in range(m):
        for q in range(m):
            f[k] = -ratio * gE[j, q]
            k += 1
    _repair_radial(y, f, E_mask, m, r, ws, model[4], ratio)
    return loss, speed_w, speed_e


@njit_inline
def _rows_invariant(y, E_mask, m, r):
    """True when each row's norm is an invariant: the head never trains and ``E`` is diagonal,
    so the loss is 0-homogeneous in every row of ``W`` (docs/flow.md section 2)."""
    base = m * r
    for j in range(m):
        for q in range(m):
            if E_mask[j, q] != 0.0 or (j != q and y[base + j * m + q] != 0.0):
                return False
    return True


@njit
def _repair_radial(y, f, E_mask, m, r, ws, sigma2, ratio):
    """Replace the parts of ``f = dy/dt`` that round-off swamps by exact identities.

    Why (docs/flow.md section 2): the loss is 0-homogeneous in ``W`` (``L(sW, E) = L(W, E)``), in
    each row when the head is untrained and ``E`` diagonal, and in each row of ``E`` (BN of
    the online output ``F_j = sum_k E_jk f_k``). So, with ``D_j = <dL/dw_j, w_j>`` and
    ``gE = dL/dE`` (unmasked), exactly: ``sum_j D_j = 0``; ``D_j = 3 sum_q E_qj gE_qj`` (the
    scaling of ``w_j`` scales ``f_j`` wherever it enters); ``sum_k E_jk gE_jk = 0``. In
    floating point an aligned neuron's ``D_j``, and the head entry of a row whose output is
    mostly another neuron's (a shrinking follower's ``E_fl``), are differences of O(1) terms:
    round-off of ~1e-16 that does not shrink with the dynamics, so a solver that keeps it is
    held at ``h ~ rtol |y| / 1e-16`` for ever. The repair:

    * row-invariant case: every ``D_j = 0``;
    * otherwise every row keeps its own ``D_j`` except the one whose gradient terms are
      largest (the noisiest), which takes minus the sum of the others;
    * a trained row ``j`` of ``E`` whose output is mostly others' (``sum_{k != j} |E_jk|
      |w_k|^3 > |E_jj| |w_j|^3``) gets its largest such entry from the two identities,
      ``E_jk gE_jk = -(D_j / 3 - sum_{q != j} E_qj gE_qj) - sum_{k' != j, k} E_jk' gE_jk'``.
    """
    rows = _rows_invariant(y, E_mask, m, r)
    gA = ws[WS_GA]
    gC = ws[WS_GC]
    gram = ws[WS_GRAM]  # B B^T at y (population_step): |w_j|^2 on the diagonal
    base = m * r
    worst = 0
    worst_scale = -1.0
    tot = 0.0
    for j in range(m):
        num = 0.0  # <f_j, w_j> = -D_j
        scale = 0.0
        for i in range(r):
            b = y[j * r + i]
            num += b * f[j * r + i]
            if not rows:
                t = 0.0
                for l in range(gA.shape[1]):
                    t += abs(gA[j, l])  # |Vr_il| <= 1: orthonormal columns
                for q in range(m):
                    t += sigma2 * abs(gC[j, q] + gC[q, j]) * abs(y[q * r + i])
                scale += abs(b) * t
        if rows:
            _set_radial(y, f, j, r, -num)
        else:
            tot += num
            if scale > worst_scale:
                worst_scale, worst = scale, j
    if rows:
        return
    # the noisiest row's radial part: minus the others' (their sum is exactly 0)
    _set_radial(y, f, worst, r, -tot)
    if ratio == 0.0:
        return
    for j in range(m):
        own = abs(y[base + j * m + j]) * gram[j, j] ** 1.5
        other = 0.0
        kmax = -1
        big = 0.0
        for k in range(m):
            if k != j:
                c = abs(y[base + j * m + k]) * gram[k, k] ** 1.5
                other += c
                if E_mask[j, k] != 0.0 and c > big:
                    big, kmax = c, k
        if kmax < 0 or other <= own or y[base + j * m + kmax] == 0.0:
            continue
        # D_j as repaired above; E_jj gE_jj from the column identity, then the row identity for
        # gE_j,kmax (gE = -f_E / ratio on trained entries)
        D = 0.0
        for i in range(r):
            D -= y[j * r + i] * f[j * r + i]
        col = 0.0
        for q in range(m):
            if q != j:
                col += y[base + q * m + j] * (-f[base + q * m + j] / ratio)
        acc = -(D / 3.0 - col)
        for k in range(m):
            if k != j and k != kmax:
                acc -= y[base + j * m + k] * (-f[base + j * m + k] / ratio)
        f[base + j * m + kmax] = -ratio * acc / y[base + j * m + kmax]


@njit_inline
def _set_radial(y, f, j, r, delta):
    """``f_j += delta w_j / |w_j|^2``: changes ``<f_j, w_j>`` by ``delta``."""
    den = 0.0
    for i in range(r):
        den += y[j * r + i] * y[j * r + i]
    if den > 0.0 and delta != 0.0:
        c = delta / den
        for i in range(r):
            f[j * r + i] += c * y[j * r + i]


@njit
def _restore_invariants(y, f, E_mask, m, r, inv):
    """Rescale ``B`` onto the conserved norms ``inv`` (per row, or ``inv[m]`` for the whole of
    ``B``), and ``f = dy/dt`` with it: ``dL/dB`` is (-1)-homogeneous where ``L`` is
    0-homogeneous, ``dL/dE`` 0-homogeneous (Hairer, Lubich & Wanner, GNI IV.4, projection)."""
    if _rows_invariant(y, E_mask, m, r):
        for j in range(m):
            s2 = 0.0
            for i in range(r):
                s2 += y[j * r + i] * y[j * r + i]
            if s2 > 0.0 and inv[j] > 0.0:
                sc = inv[j] / math.sqrt(s2)
                for i in range(r):
                    y[j * r + i] *= sc
                    f[j * r + i] /= sc
        return
    s2 = 0.0
    for i in range(m * r):
        s2 += y[i] * y[i]
    if s2 > 0.0 and inv[m] > 0.0:
        sc = inv[m] / math.sqrt(s2)
        for i in range(m * r):
            y[i] *= sc
            f[i] /= sc


@njit
def _jacobian(prob, sol, wk):
    """``sol.J`` by central differences around ``sol.y`` (``sol.f0 = f(y)`` known). Columns of
    coordinates that never move (untrained head entries: their rows of J are zero, so their stage
    components are zero and the column is never used) are set to zero, not evaluated."""
    y, J, ist = sol.y, sol.J, sol.ist
    Bb, Eb, ws, ytmp, fbuf = wk.Bb, wk.Eb, wk.ws, wk.ytmp, wk.fbuf
    E_mask, ratio = prob.E_mask, prob.ratio
    m, r = Bb.shape
    n = y.shape[0]
    base = m * r
    ok = True
    for c in range(n):
        if c >= base:
            jq = c - base
            if E_mask[jq // m, jq % m] == 0.0 or ratio == 0.0:
                for i in range(n):
                    J[i, c] = 0.0
                continue
        # central differences: at d >= 1e8 the stiffness ratio reaches 1e9 (docs/model.md section 11) and
        # the O(sqrt(eps)) error of forward differences swamps the slow eigenvalues
        dy = JAC_REL_STEP * max(abs(y[c]), 1e-6)
        for i in range(n):
            ytmp[i] = y[i]
        ytmp[c] = y[c] + dy
        dyp = ytmp[c] - y[c]
        _rhs(ytmp, fbuf, prob, Bb, Eb, ws)
        for i in range(n):
            J[i, c] = fbuf[i]
        ytmp[c] = y[c] - dy
        dym = y[c] - ytmp[c]
        _rhs(ytmp, fbuf, prob, Bb, Eb, ws)
        ist[I_NRHS] += 2
        for i in range(n):
            J[i, c] = (J[i, c] - fbuf[i]) / (dyp + dym)
            if not math.isfinite(J[i, c]):
                ok = False
    ist[I_NJAC] += 1
    ist[I_JACAGE] = 0 if ok else -1
    return ok


@njit
def _conserved_norms(y, m, r, inv):
    """The norms the exact flow conserves at ``y``: each row's of ``B`` (``inv[:m]``) and the whole
    of ``B``'s (``inv[m]``); ``_restore_invariants`` rescales onto them."""
    tot = 0.0
    for j in range(m):
        s2 = 0.0
        for i in range(r):
            s2 += y[j * r + i] * y[j * r + i]
        inv[j] = math.sqrt(s2)
        tot += s2
    inv[m] = math.sqrt(tot)
