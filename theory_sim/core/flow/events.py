"""Events and records of the flow (same semantics as ``core.batched.observe``, in flow time,
float64), located on the dense interpolant of each accepted step: it is sampled at ``N_SAMPLES``
equal sub-steps, the first sample where an event holds is bracketed and bisected to machine
precision in ``theta``; so times are as accurate as the interpolant (the solver tolerance):

* ``t1[j]`` / ``t2[j]``: first time ``|c_j1| >= thr`` / ``|c_j2| >= thr``, ``c = A / |w_j|``;
* ``t4[j]``: first time ``>= t2[j]`` with ``|E - I|_F < head_tol``;
* ``peak[j, q]`` / ``peak_t[j, q]``: running maximum of ``|E_jq|`` (``j != q``) and when it
  is first reached; within a step the sampled maximum is refined by golden-section search;
* ``-1`` means never.

Records: the state at requested flow times, from the same interpolant (an extra evaluation each).
"""

from __future__ import annotations

import math

from .._jit import njit, njit_inline
from ..population import WS_A, WS_GRAM, WS_RHO
from .rhs import _restore_invariants, _rhs
from .state import I_NOUT, I_NREC, O_ALIGN, O_HEADTOL

N_SAMPLES = 8
GOLDEN_TOL = 1e-10
"""Width in ``theta`` at which the golden-section search of a peak stops."""


@njit_inline
def _interp(theta, dense, out):
    """Dense output ``r1 + th (r2 + (1-th) (r3 + th (r4 + (1-th) r5)))`` (both methods)."""
    th1 = 1.0 - theta
    for i in range(out.shape[0]):
        out[i] = dense[0, i] + theta * (dense[1, i] + th1 * (dense[2, i] + theta * (
            dense[3, i] + th1 * dense[4, i])))


@njit_inline
def _interp1(theta, dense, i):
    """One component of ``_interp``."""
    th1 = 1.0 - theta
    return dense[0, i] + theta * (dense[1, i] + th1 * (dense[2, i] + theta * (
        dense[3, i] + th1 * dense[4, i])))


@njit_inline
def _coords(y, Vr, m, r, A, nrm):
    """``A = B Vr`` and row norms of ``B`` at the flat state ``y``."""
    L = Vr.shape[1]
    for j in range(m):
        s2 = 0.0
        for i in range(r):
            b = y[j * r + i]
            s2 += b * b
        nrm[j] = math.sqrt(s2)
        for l in range(L):
            s = 0.0
            for i in range(r):
                s += y[j * r + i] * Vr[i, l]
            A[j, l] = s


@njit_inline
def _head_dist(y, m, r):
    s = 0.0
    base = m * r
    for j in range(m):
        for q in range(m):
            e = y[base + j * m + q]
            if j == q:
                e -= 1.0
            s += e * e
    return math.sqrt(s)


@njit
def _event_value(kind, j, l, y, Vr, m, r, thr, head_tol, A, nrm):
    """>= 0 where the event holds: kind 0 ``|c_jl| - thr``, kind 1 ``head_tol - |E - I|_F``."""
    if kind == 0:
        _coords(y, Vr, m, r, A, nrm)
        c = abs(A[j, l] / nrm[j]) if nrm[j] > 0.0 else 0.0
        return c - thr
    d = _head_dist(y, m, r)
    if d < head_tol:
        return 1.0
    return head_tol - d - 1e-300  # strictly negative at d == head_tol (the rule is strict)


@njit
def _first_hit(kind, j, l, ta, Vr, thr, head_tol, wk):
    """First ``theta`` in ``[ta, 1]`` where the event holds on the step's interpolant (``wk.dense``,
    ending at ``wk.y1``), or -1.

    With ``ta == 0`` the step's start is known not to hold (it was the previous end);
    the pre-computed ``wk.samples`` (at ``k / N_SAMPLES``) are used.
    """
    dense, samples, y1, A, nrm, tmp = wk.dense, wk.samples, wk.y1, wk.A, wk.nrm, wk.tmp
    m = A.shape[0]
    r = Vr.shape[0]
    if ta > 0.0:
        _interp(ta, dense, tmp)
        if _event_value(kind, j, l, tmp, Vr, m, r, thr, head_tol, A, nrm) >= 0.0:
            return ta
    prev = ta
    hit = -1.0
    for k in range(1, N_SAMPLES + 1):
        if ta == 0.0:
            th = k / N_SAMPLES
            ys = samples[k]
        else:
            th = ta + (1.0 - ta) * k / N_SAMPLES
            if k == N_SAMPLES:
                th = 1.0
                ys = y1
            else:
                _interp(th, dense, tmp)
                ys = tmp
        if _event_value(kind, j, l, ys, Vr, m, r, thr, head_tol, A, nrm) >= 0.0:
            hit = th
            break
        prev = th
    if hit < 0.0:
        return -1.0
    lo, hi = prev, hit
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if mid <= lo or mid >= hi:
            break
        _interp(mid, dense, tmp)
        if _event_value(kind, j, l, tmp, Vr, m, r, thr, head_tol, A, nrm) >= 0.0:
            hi = mid
        else:
            lo = mid
    return hi


@njit_inline
def _golden_peak(lo, hi, dense, idx):
    """``(theta, |y_idx|)`` of the largest ``|y_idx(theta)|`` on ``[lo, hi]`` of the interpolant,
    by golden-section search (one maximum assumed)."""
    invphi = (math.sqrt(5.0) - 1.0) / 2.0
    x1 = hi - invphi * (hi - lo)
    x2 = lo + invphi * (hi - lo)
    f1 = abs(_interp1(x1, dense, idx))
    f2 = abs(_interp1(x2, dense, idx))
    while hi - lo > GOLDEN_TOL:
        if f1 >= f2:
            hi, x2, f2 = x2, x1, f1
            x1 = hi - invphi * (hi - lo)
            f1 = abs(_interp1(x1, dense, idx))
        else:
            lo, x1, f1 = x1, x2, f2
            x2 = lo + invphi * (hi - lo)
            f2 = abs(_interp1(x2, dense, idx))
    if f1 >= f2:
        return x1, f1
    return x2, f2


@njit
def _observe_step(t0, h, Vr, opts, ev, wk):
    """Locate this accepted step's events (``ev``: the run's ``Events``) on its interpolant
    (``wk.dense``, ending at ``wk.y1``)."""
    dense, y1, samples = wk.dense, wk.y1, wk.samples
    t1, t2, t4, peak, peak_t = ev.t1, ev.t2, ev.t4, ev.peak, ev.peak_t
    thr = opts[O_ALIGN]
    head_tol = opts[O_HEADTOL]
    m = t1.shape[0]
    r, L = Vr.shape
    base = m * r
    for k in range(N_SAMPLES + 1):
        if k == N_SAMPLES:
            samples[k, :] = y1
        else:
            _interp(k / N_SAMPLES, dense, samples[k])
    for j in range(m):
        if t1[j] < 0.0:
            th = _first_hit(0, j, 0, 0.0, Vr, thr, head_tol, wk)
            if th >= 0.0:
                t1[j] = t0 + th * h
        if L >= 2 and t2[j] < 0.0:
            th = _first_hit(0, j, 1, 0.0, Vr, thr, head_tol, wk)
            if th >= 0.0:
                t2[j] = t0 + th * h
    for j in range(m):
        if t2[j] >= 0.0 and t4[j] < 0.0:
            ta = max(0.0, (t2[j] - t0) / h)
            th = _first_hit(1, j, 0, ta, Vr, thr, head_tol, wk)
            if th >= 0.0:
                t4[j] = max(t0 + th * h, t2[j])
    for j in range(m):
        for q in range(m):
            if j == q:
                continue
            idx = base + j * m + q
            best_k = 0
            best = abs(samples[0, idx])
            for k in range(1, N_SAMPLES + 1):
                v = abs(samples[k, idx])
                if v > best:
                    best, best_k = v, k
            best_th = best_k / N_SAMPLES
            # golden-section search around an interior best sample, unless it cannot beat the
            # running peak (the interpolant's excess over the samples is below their spread)
            if 0 < best_k < N_SAMPLES:
                spread = (abs(abs(samples[best_k - 1, idx]) - best)
                          + abs(abs(samples[best_k + 1, idx]) - best))
                if best + spread >= peak[j, q]:
                    th, v = _golden_peak((best_k - 1) / N_SAMPLES, (best_k + 1) / N_SAMPLES, dense, idx)
                    if v > best:
                        best, best_th = v, th
            if best > peak[j, q]:
                peak[j, q] = best
                peak_t[j, q] = t0 + best_th * h


@njit
def _observe_point(t, y, Vr, opts, ev, A, nrm):
    """Events at a single point (the start of the run)."""
    t1, t2, t4, peak, peak_t = ev.t1, ev.t2, ev.t4, ev.peak, ev.peak_t
    m = t1.shape[0]
    r = Vr.shape[0]
    thr = opts[O_ALIGN]
    L = Vr.shape[1]
    _coords(y, Vr, m, r, A, nrm)
    for j in range(m):
        c1 = abs(A[j, 0] / nrm[j]) if nrm[j] > 0.0 else 0.0
        if t1[j] < 0.0 and c1 >= thr:
            t1[j] = t
        if L >= 2 and t2[j] < 0.0:
            c2 = abs(A[j, 1] / nrm[j]) if nrm[j] > 0.0 else 0.0
            if c2 >= thr:
                t2[j] = t
    d = _head_dist(y, m, r)
    for j in range(m):
        if t2[j] >= 0.0 and t4[j] < 0.0 and d < opts[O_HEADTOL]:
            t4[j] = t
    base = m * r
    for j in range(m):
        for q in range(m):
            if j != q:
                a = abs(y[base + j * m + q])
                if a > peak[j, q]:
                    peak[j, q] = a
                    peak_t[j, q] = t


@njit
def _record(k, y, prob, Bb, Eb, ws, fbuf, rec):
    """Write record ``k`` of ``rec`` (``Records``) at state ``y`` (an extra gradient evaluation,
    not counted in n_rhs)."""
    rec_A, rec_gram, rec_E, rec_loss, rec_rho = rec.A, rec.gram, rec.E, rec.loss, rec.rho
    m = Bb.shape[0]
    L = prob.Vr.shape[1]
    loss, _, _ = _rhs(y, fbuf, prob, Bb, Eb, ws)
    A, gram, rho = ws[WS_A], ws[WS_GRAM], ws[WS_RHO]
    for j in range(m):
        for l in range(L):
            rec_A[k, j, l] = A[j, l]
        for q in range(m):
            rec_gram[k, j, q] = gram[j, q]
            rec_E[k, j, q] = Eb[j, q]
        rec_rho[k, j] = rho[j]
    rec_loss[k] = loss


@njit
def _record_step(t0, h, t_new, prob, rec, ist, wk, inv):
    """Records at the requested times in ``(t0, t_new]`` of an accepted step, from its interpolant,
    put back on the conserved norms ``inv`` as the accepted points are (docs/flow.md section 2)."""
    dense, y1, tmp = wk.dense, wk.y1, wk.tmp
    t_rec = rec.t
    kr = ist[I_NREC]
    while kr < t_rec.shape[0] and t_rec[kr] <= t_new:
        if t_rec[kr] == t_new:
            for i in range(tmp.shape[0]):
                tmp[i] = y1[i]
        else:
            _interp((t_rec[kr] - t0) / h, dense, tmp)
        _restore_invariants(tmp, wk.fbuf, prob.E_mask, wk.Bb.shape[0], wk.Bb.shape[1], inv)
        _record(kr, tmp, prob, wk.Bb, wk.Eb, wk.ws, wk.fbuf, rec)
        ist[I_NOUT] += 1
        kr += 1
    ist[I_NREC] = kr
