"""Explicit Runge-Kutta steps: one generic stepper driven by a tableau (``tableaux.py``).

The tableau's last stage must be evaluated at the new solution (FSAL, ``b`` = the last row of
``a``, as DP5): its derivative is the next step's first stage, and Hairer's stiffness estimate
compares it with the stage before (both at ``t + h``, ``stiffness.hairer_hlambda``).
"""

from __future__ import annotations

from .._jit import STATUS_RUNNING, njit
from ..population import step_status
from .rhs import _rhs
from .state import I_NRHS


@njit
def explicit_step(a, e, h, prob, sol, wk):
    """One step of size ``h`` of the tableau ``(a, e)`` (s stages) from ``sol.y`` with ``sol.f0 = f(y)``.

    Writes (``wk``, a ``Work``) the stage derivatives into ``k[:s]``, the new solution into ``y1``
    (``k[s-1] = f(y1)``), the input of stage ``s-2`` into ``y_last`` and the error estimate
    ``h sum e_i k_i`` into ``errv``. Returns ``(failed, (loss, speed_w, speed_e) at y1)``;
    ``failed``: a stage left the domain (NaN, a zero row). Counts ``s - 1`` evaluations.
    """
    y, f0, ist = sol.y, sol.f0, sol.ist
    k, ytmp, y_last, y1, errv = wk.k, wk.ytmp, wk.y_last, wk.y1, wk.errv
    ns = a.shape[0]
    n = y.shape[0]
    for i in range(n):
        k[0, i] = f0[i]
    res = (0.0, 0.0, 0.0)
    failed = False
    for st in range(1, ns):
        out = y1 if st == ns - 1 else (y_last if st == ns - 2 else ytmp)
        for i in range(n):
            acc = 0.0
            for q in range(st):
                c = a[st, q]
                if c != 0.0:
                    acc += c * k[q, i]
            out[i] = y[i] + h * acc
        res = _rhs(out, k[st], prob, wk.Bb, wk.Eb, wk.ws)
        if step_status(res[0], res[1], res[2]) != STATUS_RUNNING:
            failed = True
            break
    ist[I_NRHS] += ns - 1
    if not failed:
        for i in range(n):
            acc = 0.0
            for q in range(ns):
                c = e[q]
                if c != 0.0:
                    acc += c * k[q, i]
            errv[i] = h * acc
    return failed, res


@njit
def hairer_dense(h, y, y1, k, d, dense):
    """Hairer's order-4 dense output of DP5 (``contd5``; coefficients ``d``), in the common form
    ``r1 + th (r2 + (1-th) (r3 + th (r4 + (1-th) r5)))`` (``events._interp``)."""
    ns = k.shape[0]
    for i in range(y.shape[0]):
        ydiff = y1[i] - y[i]
        bspl = h * k[0, i] - ydiff
        dense[0, i] = y[i]
        dense[1, i] = ydiff
        dense[2, i] = bspl
        dense[3, i] = ydiff - h * k[ns - 1, i] - bspl
        acc = 0.0
        for q in range(ns):
            c = d[q]
            if c != 0.0:
                acc += c * k[q, i]
        dense[4, i] = h * acc
