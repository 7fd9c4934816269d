"""Step-size control: the error norm, the PI controller, and Hairer's starting step.

Error norm: RMS of ``err_i / (atol + rtol max(|y_i|, |y_new_i|))``. PI controller (diffrax's
``PIDController`` design): ``factor = SAFETY err_n^(-(p+i)/k) err_{n-1}^(p/k)`` with ``p = PCOEFF``,
``i = ICOEFF`` and ``k`` the order of the error estimate plus one, clipped to
``[FACTOR_MIN, FACTOR_MAX]``, no growth right after a rejection. A rejected step shrinks by
``SAFETY err^(-1/k)`` (at least ``FACTOR_MIN``); a failed stage (NaN, a zero row) by ``FAIL_FACTOR``.
"""

from __future__ import annotations

import math

from .._jit import STATUS_RUNNING, njit, njit_inline
from ..population import step_status
from .rhs import _rhs
from .state import O_ATOL, O_HMAX, O_RTOL

SAFETY = 0.9
FACTOR_MIN = 0.2
FACTOR_MAX = 10.0
PCOEFF = 0.4
ICOEFF = 0.3
FAIL_FACTOR = 0.2
ERR_FLOOR = 1e-10
"""Smallest error norm the controller sees (a zero error would ask for an infinite step)."""


@njit_inline
def _err_norm(err, y0, y1, rtol, atol):
    s = 0.0
    n = err.shape[0]
    for i in range(n):
        sc = atol + rtol * max(abs(y0[i]), abs(y1[i]))
        e = err[i] / sc
        s += e * e
    return math.sqrt(s / n)


@njit_inline
def accept_factor(err, err_prev, kord, after_reject):
    """``(factor, err_floored)`` of an accepted step: the next ``h`` is ``factor * h`` and
    ``err_floored`` is the controller's memory for the next step."""
    errc = max(err, ERR_FLOOR)
    fac = SAFETY * errc ** (-(PCOEFF + ICOEFF) / kord) * err_prev ** (PCOEFF / kord)
    fac = min(FACTOR_MAX, max(FACTOR_MIN, fac))
    if after_reject:
        fac = min(fac, 1.0)
    return fac, errc


@njit_inline
def reject_factor(err, kord):
    """Factor of ``h`` after a step rejected for its error ``err > 1``."""
    return max(FACTOR_MIN, SAFETY * err ** (-1.0 / kord))


@njit
def _initial_step(prob, opts, sol, wk):
    """Hairer's starting step from ``sol.y`` (one extra evaluation); returns ``(h, ok)``."""
    y, f0, ytmp, f1 = sol.y, sol.f0, wk.ytmp, wk.fbuf
    rtol, atol = opts[O_RTOL], opts[O_ATOL]
    n = y.shape[0]
    d0 = 0.0
    d1 = 0.0
    for i in range(n):
        sc = atol + rtol * abs(y[i])
        d0 += (y[i] / sc) ** 2
        d1 += (f0[i] / sc) ** 2
    d0 = math.sqrt(d0 / n)
    d1 = math.sqrt(d1 / n)
    h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
    for i in range(n):
        ytmp[i] = y[i] + h0 * f0[i]
    loss, sw, se = _rhs(ytmp, f1, prob, wk.Bb, wk.Eb, wk.ws)
    if step_status(loss, sw, se) != STATUS_RUNNING:
        return h0 * 1e-3, True
    d2 = 0.0
    for i in range(n):
        sc = atol + rtol * abs(y[i])
        d2 += ((f1[i] - f0[i]) / sc) ** 2
    d2 = math.sqrt(d2 / n) / h0
    dm = max(d1, d2)
    h1 = max(1e-6, h0 * 1e-3) if dm <= 1e-15 else (0.01 / dm) ** 0.2
    return min(100.0 * h0, h1, opts[O_HMAX]), True
