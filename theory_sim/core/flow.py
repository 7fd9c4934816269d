"""Adaptive integration of the population gradient flow in reduced coordinates.

docs/model.md sections 7 and 11: as ``eta -> 0`` the population engine follows the ODE
``dB/dt = -dL/dB``, ``dE/dt = -(eta_E/eta) mask * dL/dE`` in flow time ``t = eta * steps``,
with the closed-form gradient of ``population_step`` (section 6). The state is the flat
vector ``y = (B.ravel(), E.ravel())`` of length ``n = m r + m^2``.

Methods
-------
* Dormand-Prince 5(4) (explicit, FSAL, 6 evaluations per step) with Hairer's 4th-order
  dense output, for the non-stiff phases I-IV.
* A Rosenbrock method for stiff stretches (a vanishing follower, section 10), in Hairer's
  transformed form with a central-difference Jacobian (``2 n`` evaluations, fewer: entries of
  ``E`` that are not trained are skipped) reused for ``O_JACEVERY`` accepted steps:
  ``O_STIFFMETHOD`` selects ROS34PW2 (Rang & Angermann 2005; a 4-stage, L-stable,
  stiffly accurate W-method of order 3 with an embedded order 2: it keeps its order with a
  stale Jacobian; cubic Hermite dense output on ``(y, f, y_new, f_new)``; 4 evaluations per
  step, the wrapper's default with a Jacobian every 10 steps) or Rodas4 (Hairer & Wanner;
  6 stages, order 4(3), L-stable, its own order-3 dense output; not a W-method, so a fresh
  Jacobian every step). docs/model.md section 11 compares them: at d = 1e4 the order-2 ``ode23s`` this
  replaces needed 10,678 evaluations to 1e4 T1 (seed 0), ROS34PW2 needs 6,286 and Rodas4,
  whose ~26 evaluations per step buy no larger steps here, tens of thousands.
* Switching, in the manner of LSODA: in explicit mode Hairer's estimate ``h |lambda|``
  from the last two stages (both at ``t + h``) flags an attempt (accepted or rejected) as
  near the stability boundary (``STIFF_HLAMBDA`` = 3.25 on the negative axis) when it
  exceeds ``STIFF_FLAG_HLAMBDA``; ``STIFF_STEPS`` flagged attempts (without
  ``NONSTIFF_RESET`` unflagged accepted ones in between) switch to Rosenbrock. In Rosenbrock mode,
  each fresh Jacobian gives the explicit method's stability limit
  ``h_stab = STIFF_HLAMBDA / spectral_radius(J)``; the kernel switches back when
  explicit steps would be at least ``SWITCH_BACK_GAIN`` times cheaper per unit time
  (``6 / min(h_stab, 2 h)`` against the Rosenbrock cost per step ``/ h``).
* Error norm: RMS of ``err_i / (atol + rtol max(|y_i|, |y_new_i|))``. PI step-size
  controller (diffrax's ``PIDController`` design): ``factor = SAFETY err_n^(-(p+i)/k)
  err_{n-1}^(p/k)`` with ``p = 0.4``, ``i = 0.3`` and ``k`` the order of the error
  estimate plus one, clipped to ``[FACTOR_MIN, FACTOR_MAX]``, no growth right after a
  rejection. A stage that fails (NaN, a zero row) rejects the step and divides ``h`` by 5.

Events (same semantics as ``core.batched.observe``, in flow time, float64), located on the
dense interpolant of each accepted step: it is sampled at ``N_SAMPLES`` equal sub-steps, the
first sample where an event holds is bracketed and bisected to machine precision in
``theta``; so times are as accurate as the interpolant (the solver tolerance):

* ``t1[j]`` / ``t2[j]``: first time ``|c_j1| >= thr`` / ``|c_j2| >= thr``, ``c = A / |w_j|``;
* ``t4[j]``: first time ``>= t2[j]`` with ``|E - I|_F < head_tol``;
* ``peak[j, q]`` / ``peak_t[j, q]``: running maximum of ``|E_jq|`` (``j != q``) and when it
  is first reached; within a step the sampled maximum is refined by golden-section search;
* ``-1`` means never.

Stop rules
----------
* converged: exactly ``core.population.convergence_status`` (every neuron aligned and the
  flow-time speed below ``tol``), tested at each accepted step's end (runaway likewise);
* max flow time: the last step is clipped to end exactly at ``t_max``;
* a vanishing follower (docs/model.md section 10). From the closed form, once a leader
  ``l`` has learned a feature and ``E_fl != 0``, the follower ``f``'s own output is mostly
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

State
-----
Everything the solver carries between steps lives in the arrays passed in (see
``flow_advance``), so a run split into many calls ends bit-identical to one call, and a
checkpoint is a copy of those arrays.
"""

from __future__ import annotations

import math

import numpy as np

from ._jit import (
    STATUS_MAX_FLOW_TIME,
    STATUS_NONFINITE,
    STATUS_RUNNING,
    STATUS_STEP_UNDERFLOW,
    STATUS_VANISHING,
    njit,
    njit_inline,
)
from .population import (
    WS_A,
    WS_GA,
    WS_GB,
    WS_GC,
    WS_GE,
    WS_GRAM,
    WS_RHO,
    convergence_status,
    make_workspace,
    population_step,
    step_status,
)

# ---------------------------------------------------------------- layout of the state arrays
# fst (float64): solver scalars
F_T = 0          # current flow time
F_H = 1          # next step size to try
F_ERRPREV = 2    # previous accepted error norm (PI memory)
F_LOSS = 3       # loss at the current point
F_SPEEDW = 4     # flow speed of W at the current point (population_step's speed_w)
F_SPEEDE = 5     # |mask * dL/dE|_F^2 at the current point
F_HSTAB = 6      # explicit stability limit from the last Jacobian (Rosenbrock mode)
F_TLO = 7        # Kahan compensation of F_T: steps far below eps * t still add up
F_HREF = 8       # explicit step size at the last stall check
N_FST = 9
# ist (int64): solver counters and flags
I_STATUS = 0     # STATUS_RUNNING until the run stops
I_MODE = 1       # MODE_EXPLICIT or MODE_ROSENBROCK
I_NSTIFF = 2     # stability-limited explicit steps counted towards a switch
I_NNONSTIFF = 3  # consecutive unflagged explicit steps
I_NRHS = 4       # right-hand-side evaluations (Jacobian columns included)
I_NSTEPS = 5     # accepted steps
I_NREJECT = 6    # rejected steps
I_NREC = 7       # records written (index of the next requested time)
I_JACAGE = 8     # accepted steps since the Jacobian was computed (-1: none)
I_NJAC = 9       # Jacobians computed
I_REJECTED = 10  # 1 if the last attempt was rejected
I_LASTFAIL = 11  # status code of the last failed stage (for the underflow diagnosis)
I_NSWITCH = 12   # method switches
I_NSTIFFSTEPS = 13  # accepted Rosenbrock steps
I_NOUT = 14      # evaluations made for output records only (not in I_NRHS)
I_INIT = 15      # 1 once flow_init has run
I_NCHECK = 16    # accepted explicit steps since the last stall check
N_IST = 17
# opts (float64): tolerances and stop rules
O_RTOL = 0
O_ATOL = 1
O_TMAX = 2
O_TOL = 3           # convergence speed (core.population.convergence_status)
O_ALIGN = 4         # alignment threshold
O_MAXNORM = 5       # runaway norm
O_HEADTOL = 6       # |E - I|_F tolerance of T4
O_VPERSIST = 7      # vanishing rule: t >= persist * t0
O_VSHRINK = 8       # vanishing rule: |w_f| <= shrink * |w_f(t0)|
O_HMAX = 9          # largest step (inf: none)
O_JACEVERY = 10     # Rosenbrock: recompute J after this many accepted steps
O_VACCEL = 11       # vanishing rule: largest growth of the log-log alignment slope in the window
O_STIFFMETHOD = 12  # STIFF_RODAS4 or STIFF_ROS34PW2
O_VHEAD = 13        # vanishing rule, fast path: |E_fq| at which a held window fires at once
N_OPTS = 14

MODE_EXPLICIT = 0
MODE_ROSENBROCK = 1

SAFETY = 0.9
FACTOR_MIN = 0.2
FACTOR_MAX = 10.0
PCOEFF = 0.4
ICOEFF = 0.3
STIFF_HLAMBDA = 3.25
STIFF_FLAG_HLAMBDA = 2.0
STIFF_STEPS = 15
NONSTIFF_RESET = 6
STALL_CHECK = 25
"""Explicit mode: every this many accepted steps, a step that has not grown by
``STALL_GROWTH`` since the last check is tested against the Jacobian's spectral radius.
Hairer's estimate reads low once the error norm sits at the controller's fixed point on the
stability boundary (a leader relaxing at d >= 1e8, docs/flow.md), so it alone cannot see it."""
STALL_GROWTH = 2.0
SWITCH_BACK_GAIN = 2.0
N_SAMPLES = 8
KAPPA_FLAT = 0.01
"""Vanishing rule: a log-log alignment slope below this counts as flat (2.3 % per decade)."""
EXPLICIT_COST = 6.0
JAC_REL_STEP = 6.0554544523933395e-06
"""Central-difference step of the Jacobian, relative: eps^(1/3)."""

# Dormand-Prince 5(4)
C2, C3, C4, C5 = 0.2, 0.3, 0.8, 8.0 / 9.0
A21 = 0.2
A31, A32 = 3.0 / 40.0, 9.0 / 40.0
A41, A42, A43 = 44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0
A51, A52, A53, A54 = 19372.0 / 6561.0, -25360.0 / 2187.0, 64448.0 / 6561.0, -212.0 / 729.0
A61, A62, A63, A64, A65 = 9017.0 / 3168.0, -355.0 / 33.0, 46732.0 / 5247.0, 49.0 / 176.0, -5103.0 / 18656.0
A71, A73, A74, A75, A76 = 35.0 / 384.0, 500.0 / 1113.0, 125.0 / 192.0, -2187.0 / 6784.0, 11.0 / 84.0
E1, E3, E4, E5, E6, E7 = (71.0 / 57600.0, -71.0 / 16695.0, 71.0 / 1920.0, -17253.0 / 339200.0,
                          22.0 / 525.0, -1.0 / 40.0)
D1, D3, D4 = -12715105075.0 / 11282082432.0, 87487479700.0 / 32700410799.0, -10690763975.0 / 1880347072.0
D5, D6, D7 = 701980252875.0 / 199316789632.0, -1453857185.0 / 822651844.0, 69997945.0 / 29380423.0
# Rosenbrock methods in Hairer's transformed form (Hairer & Wanner, Solving ODEs II, IV.7):
# (I/(h gamma) - J) u_i = f(y + sum_{j<i} a_ij u_j) + sum_{j<i} c_ij u_j / h,
# y_new = y + sum m_i u_i, error estimate sum e_i u_i.
STIFF_RODAS4 = 0
"""Rodas4 (Hairer & Wanner): 6 stages, order 4 (embedded 3), L-stable, stiffly accurate,
order-3 dense output. Needs the exact Jacobian (it is not a W-method): ``jac_every = 1``."""
STIFF_ROS34PW2 = 1
"""ROS34PW2 (Rang & Angermann 2005): 4 stages, W-method of order 3 (embedded 2), L-stable,
stiffly accurate: keeps its order with a Jacobian reused over several steps."""


def _rodas4():
    a = np.zeros((6, 6))
    c = np.zeros((6, 6))
    a[1, 0] = 1.544
    a[2, :2] = (0.9466785280815826, 0.2557011698983284)
    a[3, :3] = (3.314825187068521, 2.896124015972201, 0.9986419139977817)
    a[4, :4] = (1.221224509226641, 6.019134481288629, 12.53708332932087, -0.6878860361058950)
    a[5, :5] = (*a[4, :4], 1.0)
    c[1, 0] = -5.6688
    c[2, :2] = (-2.430093356833875, -0.2063599157091915)
    c[3, :3] = (-0.1073529058151375, -9.594562251023355, -20.47028614809616)
    c[4, :4] = (7.496443313967647, -10.24680431464352, -33.99990352819905, 11.70890893206160)
    c[5, :5] = (8.083246795921522, -7.981132988064893, -31.52159432874371, 16.31930543123136,
                -6.058818238834054)
    m = np.append(a[5, :5], 1.0)
    e = np.zeros(6)
    e[5] = 1.0
    hd = np.array([[10.12623508344586, -7.487995877610167, -34.80091861555747, -7.992771707568823,
                    1.025137723295662, 0.0],
                   [-0.6762803392801253, 6.087714651680015, 16.43084320892478, 24.76722511418386,
                    -6.594389125716872, 0.0]])
    return 0.25, a, c, m, e, hd


def _ros34pw2():
    """From the published (alpha, Gamma, b, b_hat) form: a = alpha Gamma^-1,
    c = diag(1/gamma) - Gamma^-1, m = b Gamma^-1, e = (b - b_hat) Gamma^-1."""
    gam = 4.3586652150845900e-01
    al = np.zeros((4, 4))
    G = np.eye(4) * gam
    al[1, 0] = 8.7173304301691801e-01
    al[2, :2] = (8.4457060015369423e-01, -1.1299064236484185e-01)
    al[3, 2] = 1.0
    G[1, 0] = -8.7173304301691801e-01
    G[2, :2] = (-9.0338057013044082e-01, 5.4180672388095326e-02)
    G[3, :3] = (2.4212380706095346e-01, -1.2232505839045147e+00, 5.4526025533510214e-01)
    b = np.array([2.4212380706095346e-1, -1.2232505839045147, 1.5452602553351020, gam])
    bh = np.array([3.7810903145819369e-1, -9.6042292212423178e-2, 0.5, 2.1793326075422950e-1])
    Gi = np.linalg.inv(G)
    a, c = np.zeros((6, 6)), np.zeros((6, 6))
    a[:4, :4] = al @ Gi
    c[:4, :4] = np.diag(np.diag(Gi)) - Gi
    m, e = np.zeros(6), np.zeros(6)
    m[:4], e[:4] = b @ Gi, (b - bh) @ Gi
    return gam, a, c, m, e, np.zeros((2, 6))


_TABS = (_rodas4(), _ros34pw2())
ROS_GAMMA = np.array([t[0] for t in _TABS])
ROS_A = np.array([t[1] for t in _TABS])
ROS_C = np.array([t[2] for t in _TABS])
ROS_M = np.array([t[3] for t in _TABS])
ROS_E = np.array([t[4] for t in _TABS])
ROS_H = np.array([t[5] for t in _TABS])
ROS_S = np.array([6, 4], dtype=np.int64)           # stages = evaluations per step (FSAL included)
ROS_KORD = np.array([4.0, 3.0])                     # order of the error estimate + 1
ROS_OWN_DENSE = np.array([True, False])            # else cubic Hermite on (y, f, y_new, f_new)


@njit
def _rhs(y, f, Vr, E_mask, model, ratio, Bb, Eb, ws):
    """``f = dy/dt`` at ``y``; returns ``(loss, speed_w, speed_e)``.

    The one place that calls the closed-form gradient (``population_step``): ``gB`` and the
    already masked ``gE`` are read from its workspace. Not inlined: the solver calls it from
    many places, and one compiled copy keeps the compile time short.
    """
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
    so the loss is 0-homogeneous in every row of ``W`` (docs/model.md section 11)."""
    base = m * r
    for j in range(m):
        for q in range(m):
            if E_mask[j, q] != 0.0 or (j != q and y[base + j * m + q] != 0.0):
                return False
    return True


@njit
def _repair_radial(y, f, E_mask, m, r, ws, sigma2, ratio):
    """Replace the parts of ``f = dy/dt`` that round-off swamps by exact identities.

    Why (docs/flow.md, invariants): the loss is 0-homogeneous in ``W`` (``L(sW, E) = L(W, E)``), in
    each row when the head is untrained and ``E`` diagonal, and in each row of ``E`` (BN of
    the online output ``F_j = sum_k E_jk f_j``). So, with ``D_j = <dL/dw_j, w_j>`` and
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
    base = m * r
    Dr = np.empty(m)   # the raw radial parts <dL/dw_j, w_j> = -<f_j, w_j>
    nrm3 = np.empty(m)
    worst = 0
    worst_scale = -1.0
    tot = 0.0
    for j in range(m):
        num = 0.0
        scale = 0.0
        s2 = 0.0
        for i in range(r):
            b = y[j * r + i]
            num += b * f[j * r + i]
            s2 += b * b
            if not rows:
                t = 0.0
                for l in range(gA.shape[1]):
                    t += abs(gA[j, l])  # |Vr_il| <= 1: orthonormal columns
                for q in range(m):
                    t += sigma2 * abs(gC[j, q] + gC[q, j]) * abs(y[q * r + i])
                scale += abs(b) * t
        Dr[j] = -num
        nrm3[j] = s2 ** 1.5
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
    Dr[worst] = Dr[worst] - tot
    if ratio == 0.0:
        return
    for j in range(m):
        own = abs(y[base + j * m + j]) * nrm3[j]
        other = 0.0
        kmax = -1
        big = 0.0
        for k in range(m):
            if k != j:
                c = abs(y[base + j * m + k]) * nrm3[k]
                other += c
                if E_mask[j, k] != 0.0 and c > big:
                    big, kmax = c, k
        if kmax < 0 or other <= own or y[base + j * m + kmax] == 0.0:
            continue
        # E_jj gE_jj from the column identity, then the row identity for gE_j,kmax
        # (gE = -f_E / ratio on trained entries)
        col = 0.0
        for q in range(m):
            if q != j:
                col += y[base + q * m + j] * (-f[base + q * m + j] / ratio)
        acc = -(Dr[j] / 3.0 - col)
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
def _first_hit(kind, j, l, ta, dense, samples, y1, Vr, m, r, thr, head_tol, A, nrm, tmp):
    """First ``theta`` in ``[ta, 1]`` where the event holds on the interpolant, or -1.

    With ``ta == 0`` the step's start is known not to hold (it was the previous end);
    the pre-computed ``samples`` (at ``k / N_SAMPLES``) are used.
    """
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


@njit
def _observe_step(t0, h, dense, y1, Vr, m, r, opts, t1, t2, t4, peak, peak_t, samples, A, nrm, tmp):
    """Locate this accepted step's events on its interpolant (see the module docstring)."""
    thr = opts[O_ALIGN]
    head_tol = opts[O_HEADTOL]
    L = Vr.shape[1]
    base = m * r
    for k in range(N_SAMPLES + 1):
        if k == N_SAMPLES:
            samples[k, :] = y1
        else:
            _interp(k / N_SAMPLES, dense, samples[k])
    for j in range(m):
        if t1[j] < 0.0:
            th = _first_hit(0, j, 0, 0.0, dense, samples, y1, Vr, m, r, thr, head_tol, A, nrm, tmp)
            if th >= 0.0:
                t1[j] = t0 + th * h
        if L >= 2 and t2[j] < 0.0:
            th = _first_hit(0, j, 1, 0.0, dense, samples, y1, Vr, m, r, thr, head_tol, A, nrm, tmp)
            if th >= 0.0:
                t2[j] = t0 + th * h
    for j in range(m):
        if t2[j] >= 0.0 and t4[j] < 0.0:
            ta = max(0.0, (t2[j] - t0) / h)
            th = _first_hit(1, j, 0, ta, dense, samples, y1, Vr, m, r, thr, head_tol, A, nrm, tmp)
            if th >= 0.0:
                t4[j] = max(t0 + th * h, t2[j])
    invphi = (math.sqrt(5.0) - 1.0) / 2.0
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
                    lo = (best_k - 1) / N_SAMPLES
                    hi = (best_k + 1) / N_SAMPLES
                    x1 = hi - invphi * (hi - lo)
                    x2 = lo + invphi * (hi - lo)
                    f1 = abs(_interp1(x1, dense, idx))
                    f2 = abs(_interp1(x2, dense, idx))
                    while hi - lo > 1e-10:
                        if f1 >= f2:
                            hi, x2, f2 = x2, x1, f1
                            x1 = hi - invphi * (hi - lo)
                            f1 = abs(_interp1(x1, dense, idx))
                        else:
                            lo, x1, f1 = x1, x2, f2
                            x2 = lo + invphi * (hi - lo)
                            f2 = abs(_interp1(x2, dense, idx))
                    if max(f1, f2) > best:
                        if f1 >= f2:
                            best, best_th = f1, x1
                        else:
                            best, best_th = f2, x2
            if best > peak[j, q]:
                peak[j, q] = best
                peak_t[j, q] = t0 + best_th * h


@njit
def _observe_point(t, y, Vr, m, r, opts, t1, t2, t4, peak, peak_t, A, nrm):
    """Events at a single point (the start of the run)."""
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
def _record(k, t, y, Vr, E_mask, model, ratio, Bb, Eb, ws, fbuf, rec_A, rec_gram, rec_E, rec_loss, rec_rho):
    """Write record ``k`` at state ``y`` (an extra gradient evaluation, not counted in n_rhs)."""
    m, r = Bb.shape
    L = Vr.shape[1]
    loss, _, _ = _rhs(y, fbuf, Vr, E_mask, model, ratio, Bb, Eb, ws)
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


@njit
def _jacobian(y, f0, J, Vr, E_mask, model, ratio, Bb, Eb, ws, ytmp, fbuf, m, r, ist):
    """Forward differences around ``y`` (``f0 = f(y)`` known). Columns of coordinates that
    never move (untrained head entries: their rows of J are zero, so their stage
    components are zero and the column is never used) are set to zero, not evaluated."""
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
        _rhs(ytmp, fbuf, Vr, E_mask, model, ratio, Bb, Eb, ws)
        for i in range(n):
            J[i, c] = fbuf[i]
        ytmp[c] = y[c] - dy
        dym = y[c] - ytmp[c]
        _rhs(ytmp, fbuf, Vr, E_mask, model, ratio, Bb, Eb, ws)
        ist[I_NRHS] += 2
        for i in range(n):
            J[i, c] = (J[i, c] - fbuf[i]) / (dyp + dym)
            if not math.isfinite(J[i, c]):
                ok = False
    ist[I_NJAC] += 1
    ist[I_JACAGE] = 0 if ok else -1
    return ok


@njit
def _spectral_radius(J):
    ev = np.linalg.eigvals(J.astype(np.complex128))
    rad = 0.0
    for v in ev:
        rad = max(rad, abs(v))
    return rad


@njit
def _vanishing(t, y, f, Vr, E_mask, m, r, opts, vstate, A, nrm):
    """Update the vanishing-follower test at an accepted step end; True when it fires."""
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


@njit
def _count_stiffness(hlamb, accepted, ist, fst):
    """Explicit mode: count stability-limited attempts; switch to Rosenbrock after enough."""
    if hlamb > STIFF_FLAG_HLAMBDA:
        ist[I_NNONSTIFF] = 0
        ist[I_NSTIFF] += 1
        if ist[I_NSTIFF] >= STIFF_STEPS:
            ist[I_MODE] = MODE_ROSENBROCK
            ist[I_NSWITCH] += 1
            ist[I_NSTIFF] = 0
            ist[I_JACAGE] = -1
            fst[F_ERRPREV] = 1.0
    elif accepted:
        ist[I_NNONSTIFF] += 1
        if ist[I_NNONSTIFF] >= NONSTIFF_RESET:
            ist[I_NSTIFF] = 0


@njit
def _initial_step(y, f0, Vr, E_mask, model, ratio, Bb, Eb, ws, opts, ytmp, f1):
    """Hairer's starting step (one extra evaluation); returns ``(h, ok)``."""
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
    loss, sw, se = _rhs(ytmp, f1, Vr, E_mask, model, ratio, Bb, Eb, ws)
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


@njit
def flow_init(y, f0, Vr, E_mask, model, ratio, opts, fst, ist, t1, t2, t4, peak, peak_t, inv,
              t_rec, rec_A, rec_gram, rec_E, rec_loss, rec_rho):
    """Evaluate the start: derivative (FSAL), events, records at ``t_rec <= t``, first step.

    ``fst[F_T]`` must hold the start time. Returns the status code.
    """
    m = E_mask.shape[0]
    n = y.shape[0]
    r = (n - m * m) // m
    L = Vr.shape[1]
    Bb, Eb = np.empty((m, r)), np.empty((m, m))
    ws = make_workspace(m, r, L)
    A, nrm = np.empty((m, L)), np.empty(m)
    loss, sw, se = _rhs(y, f0, Vr, E_mask, model, ratio, Bb, Eb, ws)
    ist[I_NRHS] += 1
    if ist[I_INIT] == 0:  # the conserved norms: each row's, and the whole of B's
        tot = 0.0
        for j in range(m):
            s2 = 0.0
            for i in range(r):
                s2 += y[j * r + i] * y[j * r + i]
            inv[j] = math.sqrt(s2)
            tot += s2
        inv[m] = math.sqrt(tot)
    ist[I_INIT] = 1
    code = step_status(loss, sw, se)
    if code != STATUS_RUNNING:
        ist[I_STATUS] = code
        return code
    fst[F_LOSS], fst[F_SPEEDW], fst[F_SPEEDE] = loss, sw, se
    t = fst[F_T]
    _observe_point(t, y, Vr, m, r, opts, t1, t2, t4, peak, peak_t, A, nrm)
    fbuf = np.empty(n)
    k = ist[I_NREC]
    while k < t_rec.shape[0] and t_rec[k] <= t:
        _record(k, t, y, Vr, E_mask, model, ratio, Bb, Eb, ws, fbuf,
                rec_A, rec_gram, rec_E, rec_loss, rec_rho)
        ist[I_NOUT] += 1
        k += 1
    ist[I_NREC] = k
    if fst[F_H] <= 0.0:
        h, _ = _initial_step(y, f0, Vr, E_mask, model, ratio, Bb, Eb, ws, opts, np.empty(n), fbuf)
        ist[I_NRHS] += 1
        fst[F_H] = h
    fst[F_ERRPREV] = 1.0
    ist[I_JACAGE] = -1
    if t >= opts[O_TMAX]:
        ist[I_STATUS] = STATUS_MAX_FLOW_TIME
        return STATUS_MAX_FLOW_TIME
    return STATUS_RUNNING


@njit
def flow_advance(y, f0, J, Vr, E_mask, model, ratio, opts, fst, ist, t1, t2, t4, peak, peak_t,
                 vstate, inv, t_rec, rec_A, rec_gram, rec_E, rec_loss, rec_rho, n_steps):
    """Attempt at most ``n_steps`` solver steps; return the status code (``ist[I_STATUS]``).

    Arguments (all arrays are read and updated in place; see the ``F_*``, ``I_*``, ``O_*``
    indices at the top of the module):

    * ``y`` (n,): state ``(B.ravel(), E.ravel())``; ``f0`` (n,): ``dy/dt`` at ``y`` (FSAL);
      ``J`` (n, n): the Jacobian kept by Rosenbrock mode;
    * ``Vr`` (r, L): features in the reduced basis; ``E_mask`` (m, m): trained entries of E;
      ``model = (lam, kx, k2, mu, sigma2)``; ``ratio = eta_E / eta``;
    * ``opts`` (N_OPTS,): tolerances and stop rules; ``fst`` (N_FST,), ``ist`` (N_IST,):
      solver state;
    * events ``t1, t2, t4`` (m,), ``peak, peak_t`` (m, m); ``vstate`` (3, m): the vanishing
      test's ``(t0, |w_f(t0)|, kappa(t0))`` per neuron (``t0 < 0``: not holding);
    * ``t_rec`` (K,): increasing flow times to record at; ``rec_A`` (K, m, L),
      ``rec_gram`` (K, m, m), ``rec_E`` (K, m, m), ``rec_loss`` (K,), ``rec_rho`` (K, m).

    ``flow_init`` must have been called first.
    """
    if ist[I_STATUS] != STATUS_RUNNING:
        return ist[I_STATUS]
    m = E_mask.shape[0]
    n = y.shape[0]
    r = (n - m * m) // m
    L = Vr.shape[1]
    Bb, Eb = np.empty((m, r)), np.empty((m, m))
    ws = make_workspace(m, r, L)
    A, nrm = np.empty((m, L)), np.empty(m)
    k = np.empty((7, n))
    ytmp = np.empty(n)
    ysti = np.empty(n)
    y1 = np.empty(n)
    errv = np.empty(n)
    dense = np.zeros((5, n))
    samples = np.empty((N_SAMPLES + 1, n))
    tmp = np.empty(n)
    fbuf = np.empty(n)
    Wm = np.empty((n, n))
    piv = np.empty(n, np.int64)
    rtol, atol, tmax = opts[O_RTOL], opts[O_ATOL], opts[O_TMAX]
    stop = (opts[O_TOL], opts[O_ALIGN], opts[O_MAXNORM], 1)
    for _ in range(n_steps):
        t = fst[F_T]
        h = min(fst[F_H], opts[O_HMAX])
        last = False
        if t + h >= tmax:
            h = tmax - t
            last = True
        # underflow: after a rejection, a step too small to change any component of y
        # (flow time itself is compensated, so t may be far larger than h: an escape at
        # d = 1e9 lasts O(1e-3) flow time around t ~ 1e13)
        smax = 0.0
        for i in range(n):
            smax = max(smax, abs(f0[i]) / (abs(y[i]) + atol + 1e-300))
        if ist[I_REJECTED] == 1 and h * smax < 16.0 * 2.220446049250313e-16 and not last:
            code = STATUS_NONFINITE if ist[I_LASTFAIL] == STATUS_NONFINITE else STATUS_STEP_UNDERFLOW
            ist[I_STATUS] = code
            return code
        mode = ist[I_MODE]
        failed = False
        res = (0.0, 0.0, 0.0)
        hlamb = 0.0
        if mode == MODE_EXPLICIT:
            kord = 5.0
            for i in range(n):
                k[0, i] = f0[i]
                ytmp[i] = y[i] + h * A21 * k[0, i]
            res = _rhs(ytmp, k[1], Vr, E_mask, model, ratio, Bb, Eb, ws)
            failed = step_status(res[0], res[1], res[2]) != STATUS_RUNNING
            if not failed:
                for i in range(n):
                    ytmp[i] = y[i] + h * (A31 * k[0, i] + A32 * k[1, i])
                res = _rhs(ytmp, k[2], Vr, E_mask, model, ratio, Bb, Eb, ws)
                failed = step_status(res[0], res[1], res[2]) != STATUS_RUNNING
            if not failed:
                for i in range(n):
                    ytmp[i] = y[i] + h * (A41 * k[0, i] + A42 * k[1, i] + A43 * k[2, i])
                res = _rhs(ytmp, k[3], Vr, E_mask, model, ratio, Bb, Eb, ws)
                failed = step_status(res[0], res[1], res[2]) != STATUS_RUNNING
            if not failed:
                for i in range(n):
                    ytmp[i] = y[i] + h * (A51 * k[0, i] + A52 * k[1, i] + A53 * k[2, i] + A54 * k[3, i])
                res = _rhs(ytmp, k[4], Vr, E_mask, model, ratio, Bb, Eb, ws)
                failed = step_status(res[0], res[1], res[2]) != STATUS_RUNNING
            if not failed:
                for i in range(n):
                    ysti[i] = y[i] + h * (A61 * k[0, i] + A62 * k[1, i] + A63 * k[2, i] + A64 * k[3, i]
                                          + A65 * k[4, i])
                res = _rhs(ysti, k[5], Vr, E_mask, model, ratio, Bb, Eb, ws)
                failed = step_status(res[0], res[1], res[2]) != STATUS_RUNNING
            if not failed:
                for i in range(n):
                    y1[i] = y[i] + h * (A71 * k[0, i] + A73 * k[2, i] + A74 * k[3, i] + A75 * k[4, i]
                                        + A76 * k[5, i])
                res = _rhs(y1, k[6], Vr, E_mask, model, ratio, Bb, Eb, ws)
                failed = step_status(res[0], res[1], res[2]) != STATUS_RUNNING
            ist[I_NRHS] += 6
            if not failed:
                for i in range(n):
                    errv[i] = h * (E1 * k[0, i] + E3 * k[2, i] + E4 * k[3, i] + E5 * k[4, i]
                                   + E6 * k[5, i] + E7 * k[6, i])
        else:
            meth = int(opts[O_STIFFMETHOD])
            ns = ROS_S[meth]
            kord = ROS_KORD[meth]
            gam = ROS_GAMMA[meth]
            # a fresh Jacobian when asked, when old, or after a rejection unless it is
            # already at this y (age 0)
            if (ist[I_JACAGE] < 0 or ist[I_JACAGE] >= opts[O_JACEVERY]
                    or (ist[I_REJECTED] == 1 and ist[I_JACAGE] > 0)):
                if _jacobian(y, f0, J, Vr, E_mask, model, ratio, Bb, Eb, ws, ytmp, fbuf, m, r, ist):
                    rad = _spectral_radius(J)
                    fst[F_HSTAB] = STIFF_HLAMBDA / rad if rad > 0.0 else np.inf
                else:  # a column left the domain (a zero row): reject, retry smaller
                    failed = True
            if not failed:
                for i in range(n):
                    for c in range(n):
                        Wm[i, c] = -J[i, c]
                    Wm[i, i] += 1.0 / (h * gam)
                if not _lu_factor(Wm, piv):
                    failed = True
            # stages in Hairer's transformed form (docs: module docstring):
            # (I/(h gamma) - J) u_i = f(y + sum_j a_ij u_j) + sum_j c_ij u_j / h
            for st in range(ns):
                if failed:
                    break
                if st == 0:
                    for i in range(n):
                        fbuf[i] = f0[i]
                else:
                    for i in range(n):
                        acc = y[i]
                        for q in range(st):
                            acc += ROS_A[meth, st, q] * k[q, i]
                        ytmp[i] = acc
                    res = _rhs(ytmp, fbuf, Vr, E_mask, model, ratio, Bb, Eb, ws)
                    ist[I_NRHS] += 1
                    if step_status(res[0], res[1], res[2]) != STATUS_RUNNING:
                        failed = True
                        break
                for i in range(n):
                    acc = fbuf[i]
                    for q in range(st):
                        acc += ROS_C[meth, st, q] / h * k[q, i]
                    k[st, i] = acc
                _lu_solve(Wm, piv, k[st])
            if not failed:
                for i in range(n):
                    acc = y[i]
                    e = 0.0
                    for q in range(ns):
                        acc += ROS_M[meth, q] * k[q, i]
                        e += ROS_E[meth, q] * k[q, i]
                    y1[i] = acc
                    errv[i] = e
                res = _rhs(y1, k[6], Vr, E_mask, model, ratio, Bb, Eb, ws)     # FSAL: f(y_new)
                ist[I_NRHS] += 1
                failed = step_status(res[0], res[1], res[2]) != STATUS_RUNNING
        if failed:
            ist[I_LASTFAIL] = STATUS_NONFINITE
            ist[I_REJECTED] = 1
            ist[I_NREJECT] += 1
            fst[F_H] = h * 0.2
            continue
        err = _err_norm(errv, y, y1, rtol, atol)
        if not math.isfinite(err):
            ist[I_LASTFAIL] = STATUS_NONFINITE
            ist[I_REJECTED] = 1
            ist[I_NREJECT] += 1
            fst[F_H] = h * 0.2
            continue
        if mode == MODE_EXPLICIT:
            # Hairer's stiffness estimate h |lambda| from the two stages at t + h, counted on
            # rejected steps too (a stability-limited run rejects many)
            num = 0.0
            den = 0.0
            for i in range(n):
                num += (k[6, i] - k[5, i]) ** 2
                den += (y1[i] - ysti[i]) ** 2
            if den > 0.0:
                hlamb = h * math.sqrt(num / den)
            _count_stiffness(hlamb, err <= 1.0, ist, fst)
        if err > 1.0:
            ist[I_LASTFAIL] = STATUS_STEP_UNDERFLOW
            ist[I_REJECTED] = 1
            ist[I_NREJECT] += 1
            fst[F_H] = h * max(FACTOR_MIN, SAFETY * err ** (-1.0 / kord))
            continue
        # ---- accepted: the last evaluation was at y1, so ws holds A, gram there
        loss1, sw1, se1 = res
        code = convergence_status(ws[WS_A], ws[WS_GRAM], sw1, se1, ratio, stop)
        errc = max(err, 1e-10)
        fac = SAFETY * errc ** (-(PCOEFF + ICOEFF) / kord) * fst[F_ERRPREV] ** (PCOEFF / kord)
        fac = min(FACTOR_MAX, max(FACTOR_MIN, fac))
        if ist[I_REJECTED] == 1:
            fac = min(fac, 1.0)
        if mode == MODE_EXPLICIT:
            # dense output (Hairer's contd5)
            for i in range(n):
                ydiff = y1[i] - y[i]
                bspl = h * k[0, i] - ydiff
                dense[0, i] = y[i]
                dense[1, i] = ydiff
                dense[2, i] = bspl
                dense[3, i] = ydiff - h * k[6, i] - bspl
                dense[4, i] = h * (D1 * k[0, i] + D3 * k[2, i] + D4 * k[3, i] + D5 * k[4, i]
                                   + D6 * k[5, i] + D7 * k[6, i])
        else:
            meth = int(opts[O_STIFFMETHOD])
            ns = ROS_S[meth]
            for i in range(n):
                ydiff = y1[i] - y[i]
                dense[0, i] = y[i]
                dense[1, i] = ydiff
                dense[4, i] = 0.0
                if ROS_OWN_DENSE[meth]:
                    # the method's own (order-3) interpolant, y0 + th dy + th (1-th) (h1 + th h2)
                    a = 0.0
                    b = 0.0
                    for q in range(ns):
                        a += ROS_H[meth, 0, q] * k[q, i]
                        b += ROS_H[meth, 1, q] * k[q, i]
                    dense[2, i] = a
                    dense[3, i] = b
                else:  # cubic Hermite on (y, f0, y1, f1)
                    bspl = h * f0[i] - ydiff
                    dense[2, i] = bspl
                    dense[3, i] = ydiff - h * k[6, i] - bspl
        if last:
            t_new = tmax
            t_lo = 0.0
        else:  # Kahan summation of the steps
            yk = h - fst[F_TLO]
            t_new = t + yk
            t_lo = (t_new - t) - yk
        _observe_step(t, h, dense, y1, Vr, m, r, opts, t1, t2, t4, peak, peak_t, samples, A, nrm, tmp)
        # vanishing test needs f(y1) = k[6]
        vanish = _vanishing(t_new, y1, k[6], Vr, E_mask, m, r, opts, vstate, A, nrm)
        # records in (t, t_new]
        kr = ist[I_NREC]
        while kr < t_rec.shape[0] and t_rec[kr] <= t_new:
            if t_rec[kr] == t_new:
                ys = y1
            else:
                _interp((t_rec[kr] - t) / h, dense, tmp)
                ys = tmp
            _record(kr, t_rec[kr], ys, Vr, E_mask, model, ratio, Bb, Eb, ws, fbuf,
                    rec_A, rec_gram, rec_E, rec_loss, rec_rho)
            ist[I_NOUT] += 1
            kr += 1
        ist[I_NREC] = kr
        # commit the step
        for i in range(n):
            y[i] = y1[i]
            f0[i] = k[6, i]
        _restore_invariants(y, f0, E_mask, m, r, inv)
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
            ros_cost = ROS_S[int(opts[O_STIFFMETHOD])] + 2.0 * n / max(opts[O_JACEVERY], 1.0)
            h_exp = min(fst[F_HSTAB], 2.0 * h_next)
            if EXPLICIT_COST / h_exp * SWITCH_BACK_GAIN <= ros_cost / h_next:
                ist[I_MODE] = MODE_EXPLICIT
                ist[I_NSWITCH] += 1
                ist[I_NSTIFF] = 0
                ist[I_NNONSTIFF] = 0
                fst[F_ERRPREV] = 1.0
                h_next = min(h_next, fst[F_HSTAB])
        if mode == MODE_EXPLICIT and ist[I_MODE] == MODE_EXPLICIT:
            ist[I_NCHECK] += 1
            if ist[I_NCHECK] >= STALL_CHECK:
                # a step that stopped growing: is it the stability boundary?
                ist[I_NCHECK] = 0
                if h < STALL_GROWTH * fst[F_HREF]:
                    if _jacobian(y, f0, J, Vr, E_mask, model, ratio, Bb, Eb, ws, ytmp, fbuf, m, r, ist):
                        rad = _spectral_radius(J)
                        fst[F_HSTAB] = STIFF_HLAMBDA / rad if rad > 0.0 else np.inf
                        if h * rad > STIFF_FLAG_HLAMBDA:
                            ist[I_MODE] = MODE_ROSENBROCK
                            ist[I_NSWITCH] += 1
                            ist[I_NSTIFF] = 0
                            fst[F_ERRPREV] = 1.0
                    else:
                        ist[I_JACAGE] = -1
                fst[F_HREF] = h
        fst[F_H] = h_next
        if code == STATUS_RUNNING and vanish:
            code = STATUS_VANISHING
        if code == STATUS_RUNNING and last:
            code = STATUS_MAX_FLOW_TIME
        if code != STATUS_RUNNING:
            ist[I_STATUS] = code
            return code
    return STATUS_RUNNING
