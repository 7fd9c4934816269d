"""Why a flow run stops: one function, :func:`stop_code`, with an explicit precedence, and the
opt-in vanishing-follower test it consumes.

Precedence (the first that holds gives the status, a code of ``core._jit`` named by
``theory_sim.status``):

1. a failed evaluation that cannot be retried (``STATUS_NONFINITE`` / ``STATUS_DEGENERATE``: the
   start is not in the domain, or the step shrank to nothing after a failed stage);
2. step-size underflow (``STATUS_STEP_UNDERFLOW``): after a rejection, a step too small to change
   any component of ``y``;
3. runaway (``STATUS_RUNAWAY``: some ``|w_j| > max_norm``), tested at each accepted step's end;
4. converged (``STATUS_CONVERGED``): exactly ``core.population.convergence_status`` (every
   neuron aligned and the flow-time speed below ``tol``), at each accepted step's end;
5. vanishing (``STATUS_VANISHING``), only when the rule is on (``O_VPERSIST < inf``);
6. the flow-time cap (``STATUS_MAX_FLOW_TIME``): the last step is clipped to end exactly there.

The vanishing follower (docs/model.md section 10), an opt-in early stop. From the closed
form, once a leader ``l`` has learned a feature and ``E_fl != 0``, the follower ``f``'s own output is mostly
noise and shrinking ``w_f`` raises ``rho_f``: ``|w_f|`` decays, algebraically in ``t``,
with both feature growth rates negative while ``|E_fl|`` keeps rising. The kernel
flags neuron ``f`` as *vanishing* at an accepted step end when, at every accepted step
end since some time ``t0``: (a) ``f`` is not aligned (``max_l |c_fl| < thr``) and some
other neuron is; (b) ``d|w_f|/dt < 0``; (c) ``d|A_fl|/dt < 0`` for every feature ``l``;
(d) ``d|E_fq|/dt > 0`` for some aligned ``q != f`` with ``mask[f, q] != 0``; and now
(g) the follower's alignment growth is not accelerating: with the log-log slope
``kappa = t max_l d ln|c_fl|/dt`` (exact, from the RHS), the window restarts (``t0 = t``)
whenever ``kappa > vanish_accel * max(kappa(t0), KAPPA_FLAT)`` (default 1.5). The escape
of a cubic unit is a blow-up, whose ``kappa`` keeps growing; a vanishing follower's
alignments drift algebraically (``kappa`` steady or falling). And now (e)
``t >= vanish_persist * t0`` (a decade at the default 10: the decay is slow, so one needs
a range of scales, not a time span) and (f) ``|w_f(t)| <= vanish_shrink |w_f(t0)|``
(default 0.75); or, the fast path, (h) (a)-(d) and (g) have held over at least two accepted
steps and the rising head entry ``|E_fq|`` is at least ``vanish_head`` (default 1: the
follower's online output is then more the leader's than its own). At d >= 1e8 (reduced
law, defaults) the follower shrinks after T1 while ``E_fl`` and ``E_lf`` grow in opposite
signs like ``(t - t_c)^(1/4)`` without bound; the decay is measured from ``t_c ~ T1 ~
1e13``, so (e) would need ~1e14 flow time at steps of ~5e6 (docs/model.md section 11).
``vanish_persist = inf`` disables the rule (both paths).

What it means: at the defaults (alpha = (6, 3), eta_E/eta = 0.1) some followers shrink
for 1e4-1e6 flow time with ``|c_f2|`` almost flat and then escape along ``v_2`` after
all (seeds 6, 8, 10, 15 converge diverse at 1.8e5, 1.6e6, 2.4e5, 9.8e6); others were
still shrinking at 1e7 (seeds 0, 4, 9). The closed form alone does not say which will
never escape. Condition (g) keeps the rule off the late escapers whose ``|c_f2|`` slope
grows during the window (seeds 6 and 10 converge unflagged); seeds 8 and 15, whose
acceleration starts only after ~1e5, are flagged at ~1.2e4: beyond the default cap
(2e5) they are incomplete either way, but the rule is a heuristic, not a proof, and
``vanishing`` should be read as "shrinking steadily, not escaping on the current
time scale". At d = 1e4, alpha = (6, 0.651), eta_E/eta = 0.109 all six seeds with a
T1 among 0..7 are flagged (at 20-600 T1).
"""

from __future__ import annotations

import numpy as np

from .._jit import (
    STATUS_CONVERGED,
    STATUS_MAX_FLOW_TIME,
    STATUS_RUNAWAY,
    STATUS_RUNNING,
    STATUS_STEP_UNDERFLOW,
    STATUS_VANISHING,
    njit,
    njit_inline,
)
from .events import _coords
from .state import O_ALIGN, O_VACCEL, O_VHEAD, O_VPERSIST, O_VSHRINK

KAPPA_FLAT = 0.01
"""Vanishing rule: a log-log alignment slope below this counts as flat (2.3 % per decade)."""


@njit_inline
def stop_code(fail, underflow, conv, vanish, at_cap):
    """The run's status code after an attempt, by the module's precedence.

    ``fail``: the code of a failed evaluation that ends the run (``STATUS_RUNNING``: none);
    ``underflow``: the step can no longer shrink; ``conv``: ``convergence_status`` at the accepted
    step's end (``STATUS_RUNNING`` before a step); ``vanish``: the vanishing test fired;
    ``at_cap``: the step ended at the flow-time cap. ``STATUS_RUNNING`` when the run goes on.
    """
    if fail != STATUS_RUNNING:
        return fail
    if underflow:
        return STATUS_STEP_UNDERFLOW
    if conv == STATUS_RUNAWAY:
        return STATUS_RUNAWAY
    if conv == STATUS_CONVERGED:
        return STATUS_CONVERGED
    if vanish:
        return STATUS_VANISHING
    if at_cap:
        return STATUS_MAX_FLOW_TIME
    return STATUS_RUNNING


@njit
def _vanishing(t, y, f, prob, opts, vstate, A, nrm):
    """Update the vanishing-follower test (``vstate``) at an accepted step end ``(t, y, f = f(y))``;
    True when it fires."""
    Vr, E_mask = prob.Vr, prob.E_mask
    m = E_mask.shape[0]
    r = Vr.shape[0]
    thr = opts[O_ALIGN]
    L = Vr.shape[1]
    _coords(y, Vr, m, r, A, nrm)
    base = m * r
    fired = False
    for fo in range(m):
        ok = True
        aligned_f = False
        for l in range(L):
            if nrm[fo] > 0.0 and abs(A[fo, l]) / nrm[fo] >= thr:
                aligned_f = True
        if aligned_f or nrm[fo] == 0.0:
            ok = False
        if ok:  # (b) the norm shrinks
            s = 0.0
            for i in range(r):
                s += y[fo * r + i] * f[fo * r + i]
            ok = s < 0.0
        kappa = 0.0
        if ok:  # (c) every feature coefficient shrinks; (g) the log-log alignment slope
            dlog_norm = s / (nrm[fo] * nrm[fo])
            rate = 0.0
            for l in range(L):
                dA = 0.0
                for i in range(r):
                    dA += f[fo * r + i] * Vr[i, l]
                if not A[fo, l] * dA < 0.0:
                    ok = False
                rate = max(rate, dA / A[fo, l] - dlog_norm)  # d ln|c_fl| / dt
            kappa = t * rate  # log-log slope d ln|c_fl| / d ln t
        head = 0.0
        if ok:  # (a) + (d): some aligned neuron q, and |E_fq| rising
            rising = False
            for q in range(m):
                if q == fo or E_mask[fo, q] == 0.0 or nrm[q] == 0.0:
                    continue
                best = 0.0
                for l in range(L):
                    best = max(best, abs(A[q, l]) / nrm[q])
                if best >= thr:
                    e = y[base + fo * m + q]
                    if e * f[base + fo * m + q] > 0.0:
                        rising = True
                        head = max(head, abs(e))
            ok = rising
        if not ok:
            vstate[0, fo] = -1.0
            continue
        if vstate[0, fo] < 0.0 or kappa > opts[O_VACCEL] * max(vstate[2, fo], KAPPA_FLAT):
            # (re)start the window: first hold, or the alignment growth is accelerating
            vstate[0, fo] = t
            vstate[1, fo] = nrm[fo]
            vstate[2, fo] = kappa
        elif t >= opts[O_VPERSIST] * vstate[0, fo] and nrm[fo] <= opts[O_VSHRINK] * vstate[1, fo]:
            fired = True
        elif head >= opts[O_VHEAD] and opts[O_VPERSIST] < np.inf:
            # (h) the window held over two accepted steps with the rising head entry past
            # O_VHEAD: the follower's online output is the leader's (docs/model.md section 11)
            fired = True
    return fired
