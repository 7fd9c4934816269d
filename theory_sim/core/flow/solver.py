"""The flow solver's two entry kernels: :func:`flow_init` (the start) and :func:`flow_advance`
(the step loop), composed of the parts of this package (see its docstring)."""

from __future__ import annotations

import math

import numpy as np

from .._jit import STATUS_NONFINITE, STATUS_RUNNING, STATUS_STEP_UNDERFLOW, njit, njit_inline
from ..population import WS_A, WS_GRAM, convergence_status, make_workspace, step_status
from .controller import FAIL_FACTOR, _err_norm, _initial_step, accept_factor, reject_factor
from .events import N_SAMPLES, _observe_point, _observe_step, _record, _record_step
from .explicit import explicit_step, hairer_dense
from .rhs import _conserved_norms, _restore_invariants, _rhs
from .rosenbrock import rosenbrock_dense, rosenbrock_step
from .state import (
    F_ERRPREV,
    F_H,
    F_LOSS,
    F_SPEEDE,
    F_SPEEDW,
    F_T,
    F_TLO,
    I_INIT,
    I_JACAGE,
    I_LASTFAIL,
    I_MODE,
    I_NOUT,
    I_NREC,
    I_NREJECT,
    I_NRHS,
    I_NSTEPS,
    I_NSTIFFSTEPS,
    I_REJECTED,
    I_STATUS,
    MODE_EXPLICIT,
    MODE_ROSENBROCK,
    O_ALIGN,
    O_ATOL,
    O_HMAX,
    O_MAXNORM,
    O_RTOL,
    O_STIFFMETHOD,
    O_TMAX,
    O_TOL,
    Work,
)
from .stiffness import _count_stiffness, hairer_hlambda, stall_check, switch_back
from .tableaux import DP5_A, DP5_D, DP5_E, DP5_KORD, ROS_KORD
from .termination import _vanishing, stop_code

K_NEW = 6
"""Row of the stage array holding ``f(y_new)`` after either method (FSAL)."""
UNDERFLOW_REL = 16.0 * 2.220446049250313e-16
"""A step changes no component of ``y`` when ``h max_i |f_i| / (|y_i| + atol)`` is below this."""


@njit
def _scratch(prob, n):
    """The ``Work`` group of a kernel call, for a state of length ``n``."""
    m = prob.E_mask.shape[0]
    r = (n - m * m) // m
    L = prob.Vr.shape[1]
    return Work(np.empty((m, r)), np.empty((m, m)), make_workspace(m, r, L), np.empty((m, L)), np.empty(m),
                np.empty(n), np.empty(n), np.empty(n), np.empty(n), np.empty(n), np.empty(n),
                np.empty((7, n)), np.zeros((5, n)), np.empty((N_SAMPLES + 1, n)), np.empty((n, n)),
                np.empty(n, np.int64))


@njit
def flow_init(prob, opts, sol, ev, rec):
    """Evaluate the start: derivative (FSAL), events, records at ``t_rec <= t``, first step.

    Groups of ``state.py``: ``prob`` (``Problem``), ``opts`` (``O_*``), ``sol`` (``Solver``; ``fst[F_T]``
    must hold the start time), ``ev`` (``Events``), ``rec`` (``Records``). Returns the status code.
    """
    y, f0, _, fst, ist, inv = sol
    wk = _scratch(prob, y.shape[0])
    m, r = wk.Bb.shape
    loss, sw, se = _rhs(y, f0, prob, wk.Bb, wk.Eb, wk.ws)
    ist[I_NRHS] += 1
    if ist[I_INIT] == 0:
        _conserved_norms(y, m, r, inv)
    ist[I_INIT] = 1
    code = stop_code(step_status(loss, sw, se), False, STATUS_RUNNING, False, False)
    if code != STATUS_RUNNING:
        ist[I_STATUS] = code
        return code
    fst[F_LOSS], fst[F_SPEEDW], fst[F_SPEEDE] = loss, sw, se
    t = fst[F_T]
    _observe_point(t, y, prob.Vr, opts, ev, wk.A, wk.nrm)
    k = ist[I_NREC]
    while k < rec.t.shape[0] and rec.t[k] <= t:
        _record(k, y, prob, wk.Bb, wk.Eb, wk.ws, wk.fbuf, rec)
        ist[I_NOUT] += 1
        k += 1
    ist[I_NREC] = k
    if fst[F_H] <= 0.0:
        h, _ = _initial_step(prob, opts, sol, wk)
        ist[I_NRHS] += 1
        fst[F_H] = h
    fst[F_ERRPREV] = 1.0
    ist[I_JACAGE] = -1
    code = stop_code(STATUS_RUNNING, False, STATUS_RUNNING, False, t >= opts[O_TMAX])
    if code != STATUS_RUNNING:
        ist[I_STATUS] = code
    return code


@njit_inline
def _reject(ist, fst, why, h_next):
    ist[I_LASTFAIL] = why
    ist[I_REJECTED] = 1
    ist[I_NREJECT] += 1
    fst[F_H] = h_next


@njit_inline
def _max_rate(y, f0, atol):
    smax = 0.0
    for i in range(y.shape[0]):
        smax = max(smax, abs(f0[i]) / (abs(y[i]) + atol + 1e-300))
    return smax


@njit_inline
def _any_set(times):
    for i in range(times.shape[0]):
        if times[i] >= 0.0:
            return True
    return False


@njit
def flow_advance(prob, opts, sol, ev, rec, n_steps, t_stop, stop_at_t1):
    """Attempt at most ``n_steps`` solver steps; return the status code (``ist[I_STATUS]``).

    The groups as for :func:`flow_init` (updated in place), which must have been called first.
    Returns ``STATUS_RUNNING`` early, between steps, once the flow time reaches ``t_stop`` or, with
    ``stop_at_t1``, once some ``t1`` is located: the run continues bit-identically from there.
    """
    y, f0, _, fst, ist, inv = sol
    if ist[I_STATUS] != STATUS_RUNNING:
        return ist[I_STATUS]
    wk = _scratch(prob, y.shape[0])
    n = y.shape[0]
    k, y1 = wk.k, wk.y1
    rtol, atol, tmax = opts[O_RTOL], opts[O_ATOL], opts[O_TMAX]
    stop = (opts[O_TOL], opts[O_ALIGN], opts[O_MAXNORM], 1)
    meth = int(opts[O_STIFFMETHOD])
    for _ in range(n_steps):
        t = fst[F_T]
        if t >= t_stop or (stop_at_t1 and _any_set(ev.t1)):
            return STATUS_RUNNING
        h = min(fst[F_H], opts[O_HMAX])
        last = False
        if t + h >= tmax:
            h = tmax - t
            last = True
        # underflow: flow time itself is compensated, so t may be far larger than h (an escape at
        # d = 1e9 lasts O(1e-3) flow time around t ~ 1e13)
        if ist[I_REJECTED] == 1 and not last and h * _max_rate(y, f0, atol) < UNDERFLOW_REL:
            fail = STATUS_NONFINITE if ist[I_LASTFAIL] == STATUS_NONFINITE else STATUS_RUNNING
            code = stop_code(fail, True, STATUS_RUNNING, False, False)
            ist[I_STATUS] = code
            return code
        mode = ist[I_MODE]
        if mode == MODE_EXPLICIT:
            kord = DP5_KORD
            failed, res = explicit_step(DP5_A, DP5_E, h, prob, sol, wk)
        else:
            kord = ROS_KORD[meth]
            failed, res = rosenbrock_step(meth, h, prob, opts, sol, wk)
        err = math.inf if failed else _err_norm(wk.errv, y, y1, rtol, atol)
        if not math.isfinite(err):
            _reject(ist, fst, STATUS_NONFINITE, h * FAIL_FACTOR)
            continue
        if mode == MODE_EXPLICIT:  # counted on rejected steps too: a stability-limited run rejects many
            _count_stiffness(hairer_hlambda(h, k, y1, wk.y_last), err <= 1.0, ist, fst)
        if err > 1.0:
            _reject(ist, fst, STATUS_STEP_UNDERFLOW, h * reject_factor(err, kord))
            continue
        # ---- accepted: the last evaluation was at y1, so ws holds A, gram there
        loss1, sw1, se1 = res
        conv = convergence_status(wk.ws[WS_A], wk.ws[WS_GRAM], sw1, se1, prob.ratio, stop)
        fac, errc = accept_factor(err, fst[F_ERRPREV], kord, ist[I_REJECTED] == 1)
        if mode == MODE_EXPLICIT:
            hairer_dense(h, y, y1, k, DP5_D, wk.dense)
        else:
            rosenbrock_dense(meth, h, y, f0, y1, k, wk.dense)
        if last:
            t_new = tmax
            t_lo = 0.0
        else:  # Kahan summation of the steps
            yk = h - fst[F_TLO]
            t_new = t + yk
            t_lo = (t_new - t) - yk
        _observe_step(t, h, prob.Vr, opts, ev, wk)
        vanish = _vanishing(t_new, y1, k[K_NEW], prob, opts, ev.vstate, wk.A, wk.nrm)
        _record_step(t, h, t_new, prob, rec, ist, wk, inv)
        # commit the step
        for i in range(n):
            y[i] = y1[i]
            f0[i] = k[K_NEW, i]
        _restore_invariants(y, f0, prob.E_mask, wk.Bb.shape[0], wk.Bb.shape[1], inv)
        fst[F_T] = t_new
        fst[F_TLO] = t_lo
        fst[F_LOSS], fst[F_SPEEDW], fst[F_SPEEDE] = loss1, sw1, se1
        fst[F_ERRPREV] = errc
        ist[I_NSTEPS] += 1
        ist[I_REJECTED] = 0
        h_next = h * fac
        if mode == MODE_ROSENBROCK:
            ist[I_NSTIFFSTEPS] += 1
            ist[I_JACAGE] += 1
            h_next = switch_back(h_next, n, opts, fst, ist)
        elif ist[I_MODE] == MODE_EXPLICIT:
            stall_check(h, prob, sol, wk)
        fst[F_H] = h_next
        code = stop_code(STATUS_RUNNING, False, conv, vanish, last)
        if code != STATUS_RUNNING:
            ist[I_STATUS] = code
            return code
    return STATUS_RUNNING
