"""Stiffness detection and method switching, in both directions (in the manner of LSODA).

* Explicit -> Rosenbrock, two tests:

  - Hairer's estimate ``h |lambda|`` from the last two stages (both at ``t + h``) flags an attempt
    (accepted or rejected) as near the stability boundary (``STIFF_HLAMBDA`` = 3.25 on the negative
    axis) when it exceeds ``STIFF_FLAG_HLAMBDA``; ``STIFF_STEPS`` flagged attempts (without
    ``NONSTIFF_RESET`` unflagged accepted ones in between) switch (:func:`_count_stiffness`);
  - the stall check (:func:`stall_check`): every ``STALL_CHECK`` accepted steps, a step that has not
    grown by ``STALL_GROWTH`` is tested against the Jacobian's spectral radius. Hairer's estimate
    reads low once the error norm sits at the controller's fixed point on the stability boundary
    (a leader relaxing at d >= 1e8, docs/flow.md), so it alone cannot see it.

* Rosenbrock -> explicit (:func:`switch_back`): each fresh Jacobian gives the explicit method's
  stability limit ``h_stab = STIFF_HLAMBDA / spectral_radius(J)``; the solver switches back when
  explicit steps would be at least ``SWITCH_BACK_GAIN`` times cheaper per unit time
  (``EXPLICIT_COST / min(h_stab, 2 h)`` against the Rosenbrock cost per step ``/ h``).
"""

from __future__ import annotations

import math

import numpy as np

from .._jit import njit, njit_inline
from .rhs import _jacobian
from .state import (
    F_ERRPREV,
    F_HREF,
    F_HSTAB,
    I_JACAGE,
    I_MODE,
    I_NCHECK,
    I_NNONSTIFF,
    I_NSTIFF,
    I_NSWITCH,
    MODE_EXPLICIT,
    MODE_ROSENBROCK,
    O_JACEVERY,
    O_STIFFMETHOD,
)
from .tableaux import DP5_COST, ROS_S

STIFF_HLAMBDA = 3.25
STIFF_FLAG_HLAMBDA = 2.0
STIFF_STEPS = 15
NONSTIFF_RESET = 6
STALL_CHECK = 25
STALL_GROWTH = 2.0
SWITCH_BACK_GAIN = 2.0
EXPLICIT_COST = DP5_COST


@njit
def _spectral_radius(J):
    ev = np.linalg.eigvals(J.astype(np.complex128))
    rad = 0.0
    for v in ev:
        rad = max(rad, abs(v))
    return rad


@njit
def stability_limit(J):
    """``(explicit stability limit h_stab, spectral radius)`` of the Jacobian ``J``."""
    rad = _spectral_radius(J)
    return (STIFF_HLAMBDA / rad if rad > 0.0 else np.inf), rad


@njit_inline
def hairer_hlambda(h, k, y_new, y_last):
    """Hairer's ``h |lambda|`` from the last two stages of an explicit step, both at ``t + h``:
    ``k[-1] = f(y_new)``, ``k[-2] = f(y_last)``; 0 when the two points coincide."""
    ns = k.shape[0]
    num = 0.0
    den = 0.0
    for i in range(y_new.shape[0]):
        num += (k[ns - 1, i] - k[ns - 2, i]) ** 2
        den += (y_new[i] - y_last[i]) ** 2
    if den > 0.0:
        return h * math.sqrt(num / den)
    return 0.0


@njit_inline
def _to_rosenbrock(ist, fst):
    ist[I_MODE] = MODE_ROSENBROCK
    ist[I_NSWITCH] += 1
    ist[I_NSTIFF] = 0
    fst[F_ERRPREV] = 1.0


@njit
def _count_stiffness(hlamb, accepted, ist, fst):
    """Explicit mode: count stability-limited attempts; switch to Rosenbrock after enough."""
    if hlamb > STIFF_FLAG_HLAMBDA:
        ist[I_NNONSTIFF] = 0
        ist[I_NSTIFF] += 1
        if ist[I_NSTIFF] >= STIFF_STEPS:
            _to_rosenbrock(ist, fst)
            ist[I_JACAGE] = -1
    elif accepted:
        ist[I_NNONSTIFF] += 1
        if ist[I_NNONSTIFF] >= NONSTIFF_RESET:
            ist[I_NSTIFF] = 0


@njit
def stall_check(h, prob, sol, wk):
    """After an accepted explicit step of size ``h`` (at the new ``y``): every ``STALL_CHECK``
    steps, a step that stopped growing is tested against the spectral radius of the Jacobian
    (kept in ``J`` for Rosenbrock mode); beyond ``STIFF_FLAG_HLAMBDA``, switch."""
    fst, ist = sol.fst, sol.ist
    ist[I_NCHECK] += 1
    if ist[I_NCHECK] < STALL_CHECK:
        return
    ist[I_NCHECK] = 0
    if h < STALL_GROWTH * fst[F_HREF]:
        if _jacobian(prob, sol, wk):
            hstab, rad = stability_limit(sol.J)
            fst[F_HSTAB] = hstab
            if h * rad > STIFF_FLAG_HLAMBDA:
                _to_rosenbrock(ist, fst)
        else:
            ist[I_JACAGE] = -1
    fst[F_HREF] = h


@njit
def switch_back(h_next, n, opts, fst, ist):
    """After an accepted Rosenbrock step: back to explicit steps when they are ``SWITCH_BACK_GAIN``
    times cheaper per unit time; returns the next step size (at most ``h_stab`` after a switch)."""
    ros_cost = ROS_S[int(opts[O_STIFFMETHOD])] + 2.0 * n / max(opts[O_JACEVERY], 1.0)
    h_exp = min(fst[F_HSTAB], 2.0 * h_next)
    if EXPLICIT_COST / h_exp * SWITCH_BACK_GAIN <= ros_cost / h_next:
        ist[I_MODE] = MODE_EXPLICIT
        ist[I_NSWITCH] += 1
        ist[I_NSTIFF] = 0
        ist[I_NNONSTIFF] = 0
        fst[F_ERRPREV] = 1.0
        return min(h_next, fst[F_HSTAB])
    return h_next
