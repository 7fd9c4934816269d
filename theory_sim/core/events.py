"""Phase events observed at every evaluated step (docs/model.md section 9).

One function, :func:`observe`, used by every kernel that tracks events (the ensemble,
``population_advance``, ``sgd_advance``), so that they report the same phase times.
A run's ``events`` tuple is ``(first_v1, c_v1_at_first, first_v2, first_head_back, peak,
peak_step, last_evaluated)`` (``theory_sim.events`` allocates it and reads it back), and
its ``event_params`` are ``(thr, thr2, head_tol)``.
"""

from __future__ import annotations

import math

from ._jit import njit_inline


@njit_inline
def _crossed(a, g, thr, thr2):
    """``|a / sqrt(g)| >= thr`` exactly as ``record_point`` computes ``c``; the cheap
    test ``a^2 >= thr2 g`` (``thr2`` a little below ``thr^2``) screens first."""
    if not a * a >= thr2 * g:
        return -1.0
    nrm = math.sqrt(g)
    c = abs(a / nrm) if nrm > 0.0 else 0.0
    return c if c >= thr else -1.0


@njit_inline
def observe(step, A, gram, E, thr, thr2, head_tol, first1, c1_at, first2, t4, peak, peak_step):
    """Update one run's events with the state evaluated at ``step`` (``first1``, ``c1_at``,
    ``first2``, ``t4``: one run's ``first_v1``, ``c_v1_at_first``, ``first_v2``,
    ``first_head_back``; see the module docstring)."""
    m, L = A.shape
    pending = False
    for j in range(m):
        g = gram[j, j]
        if first1[j] < 0:
            c = _crossed(A[j, 0], g, thr, thr2)
            if c >= 0.0:
                first1[j] = step
                c1_at[j] = c
        if L >= 2 and first2[j] < 0:
            if _crossed(A[j, 1], g, thr, thr2) >= 0.0:
                first2[j] = step
        if first2[j] >= 0 and t4[j] < 0:
            pending = True
    if pending:
        s = 0.0
        for j in range(m):
            for q in range(m):
                e = E[j, q] - 1.0 if j == q else E[j, q]
                s += e * e
        if s < head_tol * head_tol * (1.0 + 1e-9) and math.sqrt(s) < head_tol:
            for j in range(m):
                if first2[j] >= 0 and t4[j] < 0:
                    t4[j] = step
    for j in range(m):
        for q in range(m):
            if j != q:
                a = abs(E[j, q])
                if a > peak[j, q]:
                    peak[j, q] = a
                    peak_step[j, q] = step


@njit_inline
def observe_run(step, A, gram, E, events, event_params):
    """:func:`observe` on one run's ``events`` tuple; records ``step`` as the last evaluated."""
    first_v1, c_v1_at_first, first_v2, first_head_back, peak, peak_step, last_evaluated = events
    thr, thr2, head_tol = event_params
    observe(step, A, gram, E, thr, thr2, head_tol, first_v1, c_v1_at_first, first_v2, first_head_back,
            peak, peak_step)
    last_evaluated[0] = step
