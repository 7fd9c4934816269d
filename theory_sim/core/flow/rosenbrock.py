"""Rosenbrock steps for stiff stretches (a vanishing follower, docs/model.md section 10), in
Hairer's transformed form (``tableaux.py``) with a central-difference Jacobian (``rhs._jacobian``:
``2 n`` evaluations, fewer: entries of ``E`` that are not trained are skipped) reused for
``O_JACEVERY`` accepted steps. ``O_STIFFMETHOD`` selects ROS34PW2 (a W-method: it keeps its
order with a stale Jacobian; cubic Hermite dense output on ``(y, f, y_new, f_new)``; 4
evaluations per step, the wrapper's default with a Jacobian every 10 steps) or Rodas4 (6 stages,
order 4(3), its own order-3 dense output; not a W-method, so a fresh Jacobian every step).
docs/model.md section 11 compares them: at d = 1e4 the order-2 ``ode23s`` this replaces needed
10,678 evaluations to 1e4 T1 (seed 0), ROS34PW2 needs 6,286 and Rodas4, whose ~26 evaluations
per step buy no larger steps here, tens of thousands.
"""

from __future__ import annotations

from .._jit import STATUS_RUNNING, njit
from ..population import step_status
from .rhs import _jacobian, _rhs
from .state import F_HSTAB, I_JACAGE, I_NRHS, I_REJECTED, O_JACEVERY
from .stiffness import stability_limit
from .tableaux import ROS_A, ROS_C, ROS_E, ROS_GAMMA, ROS_H, ROS_M, ROS_OWN_DENSE, ROS_S


@njit
def rosenbrock_step(meth, h, prob, opts, sol, wk):
    """One step of size ``h`` of method ``meth`` (``STIFF_*``) from ``sol.y`` with ``sol.f0 = f(y)``.

    Refreshes the Jacobian ``J`` when there is none, when it is ``O_JACEVERY`` accepted steps old,
    or after a rejection unless it is already at this ``y`` (age 0); each fresh one updates the
    explicit stability limit ``fst[F_HSTAB]``. Writes the stages into ``k[:s]``, ``y1`` and
    ``k[6] = f(y1)`` (FSAL), the error estimate into ``errv``. Returns ``(failed, (loss, speed_w,
    speed_e) at y1)``.
    """
    y, f0, J, fst, ist = sol.y, sol.f0, sol.J, sol.fst, sol.ist
    k, Wm, piv, ytmp, fbuf, y1, errv = wk.k, wk.Wm, wk.piv, wk.ytmp, wk.fbuf, wk.y1, wk.errv
    Bb, Eb, ws = wk.Bb, wk.Eb, wk.ws
    n = y.shape[0]
    ns = ROS_S[meth]
    gam = ROS_GAMMA[meth]
    res = (0.0, 0.0, 0.0)
    failed = False
    if (ist[I_JACAGE] < 0 or ist[I_JACAGE] >= opts[O_JACEVERY]
            or (ist[I_REJECTED] == 1 and ist[I_JACAGE] > 0)):
        if _jacobian(prob, sol, wk):
            fst[F_HSTAB] = stability_limit(J)[0]
        else:  # a column left the domain (a zero row): reject, retry smaller
            return True, res
    for i in range(n):
        for c in range(n):
            Wm[i, c] = -J[i, c]
        Wm[i, i] += 1.0 / (h * gam)
    if not _lu_factor(Wm, piv):
        return True, res
    # (I/(h gamma) - J) u_i = f(y + sum_j a_ij u_j) + sum_j c_ij u_j / h
    for st in range(ns):
        if st == 0:
            for i in range(n):
                fbuf[i] = f0[i]
        else:
            for i in range(n):
                acc = y[i]
                for q in range(st):
                    acc += ROS_A[meth, st, q] * k[q, i]
                ytmp[i] = acc
            res = _rhs(ytmp, fbuf, prob, Bb, Eb, ws)
            ist[I_NRHS] += 1
            if step_status(res[0], res[1], res[2]) != STATUS_RUNNING:
                return True, res
        for i in range(n):
            acc = fbuf[i]
            for q in range(st):
                acc += ROS_C[meth, st, q] / h * k[q, i]
            k[st, i] = acc
        _lu_solve(Wm, piv, k[st])
    for i in range(n):
        acc = y[i]
        e = 0.0
        for q in range(ns):
            acc += ROS_M[meth, q] * k[q, i]
            e += ROS_E[meth, q] * k[q, i]
        y1[i] = acc
        errv[i] = e
    res = _rhs(y1, k[6], prob, Bb, Eb, ws)     # FSAL: f(y_new)
    ist[I_NRHS] += 1
    failed = step_status(res[0], res[1], res[2]) != STATUS_RUNNING
    return failed, res


@njit
def rosenbrock_dense(meth, h, y, f0, y1, k, dense):
    """Dense output of an accepted step in the common form of ``events._interp``: the method's
    own (order-3) interpolant ``y0 + th dy + th (1-th) (h1 + th h2)``, or cubic Hermite on
    ``(y, f0, y1, f1 = k[6])``."""
    ns = ROS_S[meth]
    for i in range(y.shape[0]):
        ydiff = y1[i] - y[i]
        dense[0, i] = y[i]
        dense[1, i] = ydiff
        dense[4, i] = 0.0
        if ROS_OWN_DENSE[meth]:
            a = 0.0
            b = 0.0
            for q in range(ns):
                a += ROS_H[meth, 0, q] * k[q, i]
                b += ROS_H[meth, 1, q] * k[q, i]
            dense[2, i] = a
            dense[3, i] = b
        else:
            bspl = h * f0[i] - ydiff
            dense[2, i] = bspl
            dense[3, i] = ydiff - h * k[6, i] - bspl


@njit
def _lu_factor(W, piv):
    n = W.shape[0]
    for k in range(n):
        p = k
        big = abs(W[k, k])
        for i in range(k + 1, n):
            if abs(W[i, k]) > big:
                big, p = abs(W[i, k]), i
        piv[k] = p
        if p != k:
            for c in range(n):
                W[k, c], W[p, c] = W[p, c], W[k, c]
        if W[k, k] == 0.0:
            return False
        for i in range(k + 1, n):
            W[i, k] /= W[k, k]
            f = W[i, k]
            if f != 0.0:
                for c in range(k + 1, n):
                    W[i, c] -= f * W[k, c]
    return True


@njit
def _lu_solve(W, piv, b):
    """Solve in place: ``b <- W^-1 b`` with ``W`` from ``_lu_factor``."""
    n = W.shape[0]
    for k in range(n):
        p = piv[k]
        if p != k:
            b[k], b[p] = b[p], b[k]
    for i in range(n):
        s = b[i]
        for c in range(i):
            s -= W[i, c] * b[c]
        b[i] = s
    for i in range(n - 1, -1, -1):
        s = b[i]
        for c in range(i + 1, n):
            s -= W[i, c] * b[c]
        b[i] = s / W[i, i]
