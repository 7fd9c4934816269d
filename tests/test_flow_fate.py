"""Issue 16: every flow run to its fate, exactly and at O(log T) cost, with no heuristic stop.

What is tested (the flow kernel ``theory_sim.core.flow`` through ``theory_sim.engines.flow``):

* the exact invariants of the flow (docs/flow.md section 2): the loss is 0-homogeneous in
  ``W``, so ``||B||_F`` is conserved, and, with the head frozen (``E = I``), every row's norm;
  checked along whole trajectories, against the initial weights (not the kernel's own copy);
* agreement with scipy's ``solve_ivp`` on long runs, on an independent right-hand side
  (``tests/reference.py: closed_form_grad``, plain numpy on the full weights, in an orthonormal
  basis whose first vectors are the features), events located by scipy's event finder;
* the cost: RHS evaluations to the fate of the frozen seeds of the issue, and per decade of flow
  time on a trainable-head plateau;
* the default: no ``vanishing`` stop; the default flow-time cap;
* the recorded trajectory on the conserved norms (the interpolant is put back on them, as the
  accepted points are; without that it drifted by up to 7e-9).

The runs are in fig. 8's regime: ``alpha = (log2 d, log2 d / ln d)``, ``eta = 1``,
``eta_E = 1 / alpha_1^2``, the reduced (d-free) initial law at the given ``d``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import reference as ref
from hypothesis import example, given, settings
from hypothesis import strategies as hst
from scipy.integrate import solve_ivp

import theory_sim as ts
from theory_sim.analysis import phase_times
from theory_sim.core import _jit
from theory_sim.engines import flow as fe
from theory_sim.initial_law import reduced_coordinates
from theory_sim.model import head_mask, model_constants

M, L = 2, 2
THR = 0.9  # DEFAULT_ALIGN_THRESHOLD, the phase-event threshold on |c_jl|
KERNEL_RTOL = ts.TrainParams().rtol  # 1e-7, the default
SCIPY_RTOL = 1e-9
# Event times against scipy. The kernel runs at rtol 1e-7 (scipy at 1e-9, 100x tighter, so the
# difference is the kernel's error). An event of a cubic-order escape (da/dt ~ a^5 from
# a ~ 1/sqrt(d)) amplifies a relative error in the state about 4-fold in its time, and the global
# error of ~1e3 rtol-controlled steps adds up (with mixed signs) to ~sqrt(1e3) rtol: together
# ~1e-5 relative, i.e. 100 x rtol. Measured: 2e-8 ... 3e-6.
EVENT_RTOL = 100 * KERNEL_RTOL
CONSERVED_RTOL = 1e-12  # the invariants are restored after every step: round-off only


# ---------------------------------------------------------------- driving the kernel


def regime(d):
    """fig. 8: ``alpha = (log2 d, log2 d / ln d)``, ``eta_E / eta = 1 / alpha_1^2``."""
    a1 = math.log2(d)
    return (a1, a1 / math.log(d)), 1.0 / a1**2


class Flow:
    """A flow run through the engine's state (``engines.flow.new_state`` / ``advance``), with the
    vanishing stop off and the given flow-time cap."""

    def __init__(self, d, seed, head, *, t_max=1e300, t_record=None, model=None, train=None):
        """``t_max=None``: the engine's default cap (``engines.flow.horizon``)."""
        alpha, ratio = regime(d)
        self.model = ts.ModelParams(alpha=alpha) if model is None else model
        self.train = (ts.TrainParams(eta=1.0, eta_E=ratio, seed=seed, head=head, engine="flow")
                      if train is None else train)
        self.ratio = self.train.eta_E / self.train.eta
        self.B0, self.Vr = reduced_coordinates(M, L, d, seed)
        self.r = self.B0.shape[1]
        t_rec = np.zeros(0) if t_record is None else np.asarray(t_record, dtype=float)
        cap = {} if t_max is None else {"t_max": t_max}
        self.st = fe.new_state(self.model, self.train, self.B0, self.Vr, t_record=t_rec,
                               vanish_persist=math.inf, **cap)
        self.mask = head_mask(self.train.head, M)
        self.mt = model_constants(self.model)

    def advance(self, n_steps):
        return fe.advance(self.st, n_steps)

    def run(self, chunk=2000):
        while self.running:
            self.advance(chunk)
        return self

    @property
    def running(self):
        return self.st.running

    @property
    def status(self):
        return self.st.status

    @property
    def t(self):
        return self.st.time

    @property
    def n_rhs(self):
        return self.st.stats()["n_rhs"]

    @property
    def B(self):
        return self.st.coordinates()

    @property
    def E(self):
        return self.st.head()

    @property
    def dB(self):
        """The stored derivative ``dB/dt`` at the current point."""
        return self.st.arrays["rhs"][:M * self.r].reshape(M, self.r).copy()

    @property
    def t1(self):
        """(m,) first flow time of ``|c_j1| >= 0.9`` (-1: not yet)."""
        return self.st.t1.copy()

    @property
    def t2(self):
        """(m,) first flow time of ``|c_j2| >= 0.9`` (-1: not yet)."""
        return self.st.t2.copy()

    def records(self):
        """The records so far: ``t``, ``A`` (K, m, L), ``gram`` (K, m, m), ``E`` (K, m, m)."""
        t, A, gram, E, _, _ = self.st.recorded()
        return {"t": t, "A": A, "gram": gram, "E": E}

    def align(self, B=None):
        B = self.B if B is None else B
        return np.abs(B @ self.Vr) / np.linalg.norm(B, axis=1)[:, None]


# ---------------------------------------------------------------- the independent reference


def canonical(B, Vr):
    """``B`` in an orthonormal basis whose first L vectors are the columns of ``Vr``."""
    r, nf = Vr.shape
    U, _, _ = np.linalg.svd(np.eye(r) - Vr @ Vr.T)
    return B @ np.concatenate([Vr, U[:, :r - nf]], axis=1)


def reference_rhs(model, ratio, head, r, *, radial="identities"):
    """``dy/dt`` for ``y = (W, E)`` (W in the canonical basis, features = first L basis
    vectors) from ``reference.closed_form_grad`` (no theory_sim code).

    ``radial``: what to do with the radial parts ``<dw_j/dt, w_j>``, which round-off swamps
    where the exact flow has them 0 or small (docs/flow.md section 2), and which pin a stiff
    integrator's step (LSODA needs 20x-50x the evaluations with them):

    * ``None``: keep the raw ones;
    * ``"total"``: remove the radial part of the whole of ``W`` (``L(sW, E) = L(W, E)``, so
      ``sum_j <dL/dw_j, w_j> = 0``), each row keeps its own;
    * ``"identities"``: each row's from the exact identities of 0-homogeneity, derived here
      from the loss: scaling ``w_j`` by ``s`` scales the output ``f_j`` by ``s^3`` wherever it
      enters, so ``<dL/dw_j, w_j> = 3 sum_q E_qj dL/dE_qj``; and ``L`` is 0-homogeneous in each
      row of ``E`` (BN of ``F_q = sum_k E_qk f_k``), so ``sum_k E_qk dL/dE_qk = 0``, which gives
      the diagonal entries (the round-off-prone ones: an aligned neuron's own output) from the
      off-diagonal ones. With the head frozen (``E = I``) every row's radial part is then 0;
    * ``"follower"`` (m = 2): the same two identities used the other way round, for a plateau
      where the follower (the shorter row, ``f``) shrinks and its output is mostly the leader's
      (``|E_fl| |w_l|^3 > |E_ff| |w_f|^3``): there ``dL/dE_fl`` is the difference of O(1) terms
      and the follower's own radial part ``D_f = <dL/dw_f, w_f>`` is not; so ``D_f`` is kept,
      the leader's is ``-D_f``, ``E_ff dL/dE_ff = D_f / 3 - E_lf dL/dE_lf`` and
      ``E_fl dL/dE_fl = -E_ff dL/dE_ff``.
    """
    V = np.eye(r)[:, :L]
    kw = ref.model_kwargs(model)
    mask = np.zeros((M, M)) if head == "frozen" else 1.0 - np.eye(M)
    off = 1.0 - np.eye(M)

    def f(t, y):
        W, E = y[:M * r].reshape(M, r), y[M * r:].reshape(M, M)
        gW, gE = ref.closed_form_grad(W, E, V, **kw)
        fW = -gW
        if radial == "total":
            fW = fW - (np.sum(fW * W) / np.sum(W * W)) * W
        elif radial == "identities":
            g = off * gE
            g = g - np.diag(np.sum(E * g, axis=1) / np.diag(E))  # sum_k E_qk g_qk = 0
            D = 3.0 * np.sum(E * g, axis=0)                       # <dL/dw_j, w_j>
            fW = fW - ((np.sum(fW * W, axis=1) + D) / np.sum(W * W, axis=1))[:, None] * W
        elif radial == "follower":
            nw = np.linalg.norm(W, axis=1)
            D = np.sum(gW * W, axis=1)
            lead = int(np.argmax(nw))
            fol = 1 - lead
            D[lead] = -D[fol]
            if E[fol, lead] != 0.0 and abs(E[fol, lead]) * nw[lead]**3 > abs(E[fol, fol]) * nw[fol]**3:
                gE = gE.copy()
                gE[fol, lead] = -(D[fol] / 3.0 - E[lead, fol] * gE[lead, fol]) / E[fol, lead]
            fW = fW - ((np.sum(fW * W, axis=1) + D) / nw**2)[:, None] * W
        else:
            assert radial is None
        return np.concatenate([fW.ravel(), -(ratio * mask * gE).ravel()])

    return f


def crossing_events(r):
    """One scipy event per (neuron j, feature l): ``|c_jl|`` rising through THR."""
    evs = []
    for j in range(M):
        for feat in range(L):
            def ev(t, y, j=j, feat=feat):
                w = y[j * r:(j + 1) * r]
                return abs(w[feat]) / np.linalg.norm(w) - THR
            ev.direction = 1
            evs.append(ev)
    return evs


def scipy_run(fl: Flow, t_end, *, method="LSODA", radial="identities", t_eval=None):
    f = reference_rhs(fl.model, fl.ratio, fl.train.head, fl.r, radial=radial)
    y0 = np.concatenate([canonical(fl.B0, fl.Vr).ravel(), np.eye(M).ravel()])
    return solve_ivp(f, (0.0, t_end), y0, method=method, rtol=SCIPY_RTOL, atol=1e-14,
                     events=crossing_events(fl.r), dense_output=True, t_eval=t_eval)


def first_event(sol, j, feat):
    te = sol.t_events[j * L + feat]
    return float(te[0]) if te.size else None


# ---------------------------------------------------------------- 1. invariants along whole runs

CHUNK = 20  # steps between checks


def _check_radial(fl, frozen):
    """The stored derivative has no radial part (frozen: each row's; head: the sum), to round-off:
    at most 1e-12 of ``|w_j| |dw_j/dt|``, or, where the derivative itself is round-off (an aligned
    leader: ``dw/dt ~ 1e-32``, what is left of the raw ~1e-16 radial part after its removal), a
    rate ``<w, dw/dt> / |w|^2`` of 1e-30: that moves a norm by 1e-16 over t = 1e14."""
    B, dB = fl.B, fl.dB
    rad = np.sum(B * dB, axis=1)
    nb = np.linalg.norm(B, axis=1)
    bound = np.maximum(1e-12 * nb * np.linalg.norm(dB, axis=1), 1e-30 * nb**2)
    if frozen:
        assert np.all(np.abs(rad) <= bound), (fl.t, rad, bound)
    else:
        assert abs(rad.sum()) <= bound.sum(), (fl.t, rad, bound)


@settings(max_examples=12, deadline=None, derandomize=True)
@given(seed=hst.integers(0, 10**6), log10_d=hst.floats(2.0, 10.0))
def test_frozen_head_row_norms_conserved_along_the_run(seed, log10_d):
    fl = Flow(10.0**log10_d, seed, "frozen")
    n0 = np.linalg.norm(fl.B0, axis=1)
    c0 = fl.align().max()
    worst = 0.0
    for _ in range(400):  # every frozen run settles within ~1,300 steps (d <= 1e10)
        if not fl.running:
            break
        fl.advance(CHUNK)
        worst = max(worst, float(np.max(np.abs(np.linalg.norm(fl.B, axis=1) / n0 - 1.0))))
        assert worst <= CONSERVED_RTOL, (fl.t, worst)
        assert np.array_equal(fl.E, np.eye(M))
        _check_radial(fl, frozen=True)
    assert fl.status == _jit.STATUS_CONVERGED
    # not a trivial check: the state moved (some neuron went from |c| ~ 1/sqrt(d) to aligned)
    assert fl.align().max() >= THR > c0 + 0.3


@settings(max_examples=12, deadline=None, derandomize=True)
@given(seed=hst.integers(0, 10**6), log10_d=hst.floats(2.0, 10.0))
@example(seed=1, log10_d=5.0)  # the plateau of the cost test below: |w_f| 1 -> 0.01 by the cap
def test_trainable_head_frobenius_norm_conserved_along_the_run(seed, log10_d):
    fl = Flow(10.0**log10_d, seed, "offdiag", t_max=None)  # the whole run: to its fate or the cap
    n0 = np.linalg.norm(fl.B0, axis=1)
    f0 = np.linalg.norm(fl.B0)
    worst, rows_moved = 0.0, 0.0
    for _ in range(1000):  # at most 20,000 steps; most runs end within ~3,000, a d = 1e10 plateau
        if not fl.running:  # takes ~13,000 to the cap (see the cost tests)
            break
        fl.advance(CHUNK)
        B = fl.B
        worst = max(worst, abs(np.linalg.norm(B) / f0 - 1.0))
        assert worst <= CONSERVED_RTOL, (fl.t, worst)
        rows_moved = max(rows_moved, float(np.max(np.abs(np.linalg.norm(B, axis=1) / n0 - 1.0))))
        _check_radial(fl, frozen=False)
    # no numerical failure (whether the run gets to its end in bounded work: the cost tests)
    assert fl.status in (_jit.STATUS_RUNNING, _jit.STATUS_CONVERGED, _jit.STATUS_MAX_FLOW_TIME), fl.status
    # not vacuous: the individual row norms (not invariant with a trained head) do change, far
    # beyond round-off: by 4e-5 ... 0.999 in the runs seen (the least in runs whose follower
    # escapes without shrinking; 0.99 on a plateau such as the explicit example)
    assert rows_moved > 1e4 * CONSERVED_RTOL, rows_moved
    if (seed, log10_d) == (1, 5.0):
        assert rows_moved > 0.9, rows_moved


def test_an_unprojected_integration_drifts_far_beyond_the_tolerance():
    """The 1e-12 above is a real constraint: the same flow (frozen, d = 1e10, seed 3, to 2e10,
    past T1 = 8.6e9) integrated by scipy's RK45 at rtol 1e-9 on the reference RHS *without*
    the projection drifts off the row norms by ~2e-7; and the reference RHS's radial part at
    the kernel's states is O(1) of the whole once the leader is aligned (pure round-off, which
    the kernel's stored derivative does not have)."""
    fl = Flow(1e10, 3, "frozen")
    n0 = np.linalg.norm(fl.B0, axis=1)
    f = reference_rhs(fl.model, 0.0, "frozen", fl.r, radial=None)
    y0 = np.concatenate([canonical(fl.B0, fl.Vr).ravel(), np.eye(M).ravel()])
    sol = solve_ivp(f, (0.0, 2e10), y0, method="RK45", rtol=SCIPY_RTOL, atol=1e-14)
    assert sol.status == 0
    W = sol.y[:M * fl.r].reshape(M, fl.r, -1)
    drift = np.max(np.abs(np.linalg.norm(W, axis=1) / n0[:, None] - 1.0))
    assert drift > 1e4 * CONSERVED_RTOL, drift
    worst_ref = 0.0
    while fl.running and fl.t < 2e10:
        fl.advance(CHUNK)
        B = fl.B
        fr = f(0.0, np.concatenate([canonical(B, fl.Vr).ravel(), np.eye(M).ravel()]))
        fr = fr[:M * fl.r].reshape(M, fl.r)
        Bc = canonical(B, fl.Vr)
        with np.errstate(invalid="ignore"):
            rel = np.abs(np.sum(fr * Bc, axis=1)) / (np.linalg.norm(fr, axis=1) * np.linalg.norm(Bc, axis=1))
        worst_ref = max(worst_ref, float(np.nanmax(rel)))
        _check_radial(fl, frozen=True)
        assert np.max(np.abs(np.linalg.norm(B, axis=1) / n0 - 1.0)) <= CONSERVED_RTOL
    assert worst_ref > 1e-3, worst_ref


# ---------------------------------------------------------------- 2. agreement with scipy


def test_default_run_phase_times_match_scipy():
    """(a) The default run (d = 512, seed 1, materialised start, eta = 1e-3, head offdiag):
    T1 = 71.932 and T3 = 5865.24 (the issue: unchanged, in at most 4,000 evaluations)."""
    model, train = ts.ModelParams(), ts.TrainParams(eta=1e-3, engine="flow")
    run = ts.simulate(model, train)
    assert run.status == "converged"
    assert run.stats["n_rhs"] <= 4000, run.stats
    pt = phase_times(run)
    B0, Vr = fe.reduced_start(model, train.seed)
    assert np.allclose(B0 @ Vr, run.W0[:, :L], rtol=1e-12, atol=1e-15)  # basis features
    r = B0.shape[1]
    f = reference_rhs(model, train.eta_E / train.eta, "offdiag", r, radial="total")
    y0 = np.concatenate([canonical(B0, Vr).ravel(), np.eye(M).ravel()])
    sol = solve_ivp(f, (0.0, run.flow_time[-1]), y0, method="LSODA", rtol=SCIPY_RTOL, atol=1e-14,
                    events=crossing_events(r))
    assert sol.status == 0
    lead, fol = pt.leader, pt.follower
    T1, T3 = first_event(sol, lead, 0), first_event(sol, fol, 1)
    assert T1 == pytest.approx(71.932, abs=5e-4) and T3 == pytest.approx(5865.24, abs=5e-3)
    assert pt.T1_flow == pytest.approx(T1, rel=EVENT_RTOL)
    assert pt.T3_flow == pytest.approx(T3, rel=EVENT_RTOL)
    # neither neuron learned the other feature first
    assert first_event(sol, lead, 1) is None and first_event(sol, fol, 0) is None


def test_frozen_d1e10_collapse_matches_scipy():
    """(b) Frozen head, d = 1e10, seed 3: the leader learns v_1 at T1 ~ 8.6e9 and the other
    neuron collapses onto v_1 at ~3.3e11 (its |c_1| crossing 0.9). LSODA on the reference RHS
    (radial round-off projected out: without it LSODA needs 20x the evaluations) finds both
    times; the states agree along the way and at the end (aligned on the collapse time)."""
    t_rec = np.array([1e8, 8e9, 1e10, 1e11, 3e11])
    fl = Flow(1e10, 3, "frozen", t_record=t_rec).run()
    assert fl.status == _jit.STATUS_CONVERGED
    t1 = fl.t1
    assert np.all(t1 >= 0)
    lead, fol = int(np.argmin(t1)), int(np.argmax(t1))
    sol = scipy_run(fl, fl.t * 1.01)
    assert sol.status == 0
    T1, Tc = first_event(sol, lead, 0), first_event(sol, fol, 0)
    assert 5e9 < T1 < 2e10 and 1e11 < Tc < 1e12
    assert t1[lead] == pytest.approx(T1, rel=EVENT_RTOL)
    assert t1[fol] == pytest.approx(Tc, rel=EVENT_RTOL)
    assert np.all(fl.t2 < 0) and first_event(sol, lead, 1) is None and first_event(sol, fol, 1) is None
    # the records on the way (t < Tc: the slow phases) against scipy's dense output
    rec = fl.records()
    assert np.array_equal(rec["t"], t_rec)
    for k in range(t_rec.size):
        W = sol.sol(t_rec[k])[:M * fl.r].reshape(M, fl.r)
        assert np.allclose(rec["A"][k], W[:, :L], rtol=1e-5, atol=1e-9), (k, rec["A"][k], W)
        assert np.allclose(rec["gram"][k], W @ W.T, rtol=1e-5, atol=1e-9)
    # the end state, compared at the same time after the collapse (the collapse itself is a
    # blow-up: a 1e-6 shift in its time moves |c_f1| by 1e-2 at the kernel's stop)
    W = sol.sol(fl.t - t1[fol] + Tc)[:M * fl.r].reshape(M, fl.r)
    assert np.allclose(canonical(fl.B, fl.Vr)[:, :L], W[:, :L], rtol=1e-4, atol=1e-6)
    assert np.allclose(np.linalg.norm(fl.B, axis=1), np.linalg.norm(W, axis=1), rtol=1e-9)
    assert fl.align()[:, 0].min() >= THR  # collapsed: both on v_1


@pytest.mark.parametrize(("d", "seed", "radial"), [(1e4, 9, "total"), (1e5, 9, "identities")])
def test_head_run_that_escapes_matches_scipy(d, seed, radial):
    """(c) Trainable head, the follower escapes along v_2 long after T1 and the run ends diverse:
    d = 1e4 seed 9 (T1 = 7.8e3, T3 = 9.7e7) and d = 1e5 seed 9 (T1 = 3.6e4, T3 = 1.44e11 =
    4e6 T1). LSODA follows both: at d = 1e4 with only the whole of W's radial round-off removed
    (~6,500 evaluations), at d = 1e5 with every row's radial part from the exact identities
    (~11,000 evaluations, ~10 s; with the whole-W projection only, LSODA needs 527,000, 70 s,
    pinned at h ~ 3e5 on the plateau). T1, T3 and the end state agree."""
    fl = Flow(d, seed, "offdiag").run()
    assert fl.status == _jit.STATUS_CONVERGED
    t1, t2 = fl.t1, fl.t2
    lead = int(np.argmax(t1 >= 0))
    fol = 1 - lead
    assert t1[lead] >= 0 and t1[fol] < 0 and t2[fol] >= 0
    sol = scipy_run(fl, fl.t * 1.001, radial=radial)
    assert sol.status == 0
    T1, T3 = first_event(sol, lead, 0), first_event(sol, fol, 1)
    assert T3 > 1e4 * T1
    assert t1[lead] == pytest.approx(T1, rel=EVENT_RTOL)
    assert t2[fol] == pytest.approx(T3, rel=EVENT_RTOL)
    y = sol.sol(fl.t - t2[fol] + T3)  # the end state, aligned on the escape (a fast event)
    W, E = y[:M * fl.r].reshape(M, fl.r), y[M * fl.r:].reshape(M, M)
    Bk = canonical(fl.B, fl.Vr)
    assert np.allclose(Bk[:, :L], W[:, :L], rtol=1e-5, atol=1e-6)
    # ||B||_F: the kernel's to round-off; LSODA's (a general-purpose integrator of the projected RHS)
    # drifts by its own error, 5e-9 at d = 1e4
    assert np.linalg.norm(Bk) == pytest.approx(np.linalg.norm(fl.B0), rel=CONSERVED_RTOL)
    assert np.linalg.norm(W) == pytest.approx(np.linalg.norm(fl.B0), rel=1e-7)
    assert np.allclose(fl.E, E, rtol=1e-5, atol=1e-9)
    assert abs(E[lead, fol]) > 1e-4  # the head did move: E_lf = -8e-4 (d = 1e4), -2.5e-3 (1e5)
    c = fl.align()
    assert c[lead, 0] >= THR and c[fol, 1] >= THR  # diverse


def test_head_plateau_matches_scipy_d1e5():
    """(d) Trainable head, d = 1e5, seed 1 (the plateau of the cost test below): after T1 = 2.8e4
    the follower shrinks, |w_f| 1 -> 0.003 by t = 1e16, its output more and more the leader's,
    with no escape by then. The records at 9 log-spaced times from 1e5 to 1e16 against LSODA on
    the reference with the follower's head entry from the identities (~10,000 evaluations, 4 s;
    with the "identities" mode LSODA reaches 1e10 in 5 s and not 1e13 in 5 minutes).

    Tolerances: errors accumulate over eleven decades on a shrinking coordinate; measured up to
    5e-6 relative on |w_f| and E, 2e-8 absolute on A: bounds 2e-5 (200 x rtol) and 1e-7."""
    t_rec = np.geomspace(1e5, 1e16, 9)
    fl = Flow(1e5, 1, "offdiag", t_max=1e16, t_record=t_rec).run()
    assert fl.status == _jit.STATUS_MAX_FLOW_TIME and fl.t == 1e16
    rec = fl.records()
    assert np.array_equal(rec["t"], t_rec)
    sol = scipy_run(fl, 1e16, radial="follower", t_eval=t_rec)
    assert sol.status == 0 and all(te.size == 0 for te in sol.t_events[1::2])  # no v_2 event
    for k in range(t_rec.size):
        W, E = sol.y[:M * fl.r, k].reshape(M, fl.r), sol.y[M * fl.r:, k].reshape(M, M)
        assert np.allclose(rec["A"][k], W[:, :L], rtol=0, atol=1e-7), k
        assert np.allclose(rec["E"][k], E, rtol=2e-5, atol=1e-12), k
        assert np.allclose(np.sqrt(np.diag(rec["gram"][k])), np.linalg.norm(W, axis=1), rtol=2e-5), k
    assert np.linalg.norm(W, axis=1).min() < 0.005 and abs(E[1, 0]) > 0.01  # it did shrink; E_lf grew


# ---------------------------------------------------------------- 3. cost O(log T)

FROZEN_CASES = [(1e8, s) for s in (2, 6, 9, 10)] + [(1e10, s) for s in (1, 2, 3, 4)]


@pytest.mark.parametrize(("d", "seed"), FROZEN_CASES)
def test_frozen_runs_settle_within_20000_evaluations(d, seed):
    """Before the change d = 1e10 seed 2 took 14.2 million evaluations (explicit steps pinned
    on the leader's relaxation eigenvalue); the issue's target is 20,000."""
    fl = Flow(d, seed, "frozen")
    while fl.running and fl.n_rhs <= 20_000:
        fl.advance(200)
    assert fl.status == _jit.STATUS_CONVERGED, (fl.status, fl.t, fl.n_rhs)
    assert fl.n_rhs <= 20_000, fl.n_rhs
    assert fl.align()[:, 0].min() >= THR  # collapsed onto v_1 (no Cauchy exception among these)
    assert np.allclose(np.linalg.norm(fl.B, axis=1), np.linalg.norm(fl.B0, axis=1), rtol=1e-9, atol=0)


def test_head_plateau_costs_at_most_5000_evaluations_per_decade():
    """d = 1e5, seed 1: after T1 ~ 2.8e4 the follower shrinks on a plateau for decades (no
    escape by 1e17). Evaluations per decade of flow time from 1e12 to 1e17 (read at the first
    check past each power of ten, every 20 steps: a slack of ~20 x 7 evaluations). Measured:
    1,200 / 900 / 1,500 / 2,100 / 3,600 for the decades from 1e12 to 1e17."""
    fl = Flow(1e5, 1, "offdiag")
    at = {}
    while fl.running and fl.t < 1e17 and fl.n_rhs < 100_000:
        fl.advance(CHUNK)
        for e in range(12, 18):
            if e not in at and fl.t >= 10.0**e:
                at[e] = fl.n_rhs
    assert fl.running, fl.status
    assert sorted(at) == list(range(12, 18)), (fl.t, at)
    per_decade = {e: at[e + 1] - at[e] for e in range(12, 17)}
    assert max(per_decade.values()) <= 5000, per_decade
    assert np.any(fl.t1 >= 0) and np.all(fl.t2 < 0)  # a plateau: T1, no T3 yet
    # ... on which the follower really shrinks (|w_f| 1 -> 1.5e-3), ||B||_F conserved
    assert np.linalg.norm(fl.B, axis=1).min() < 0.01
    assert np.linalg.norm(fl.B) == pytest.approx(np.linalg.norm(fl.B0), rel=CONSERVED_RTOL)


def _evaluations_per_decade(fl, chunk=CHUNK):
    """Run ``fl`` to its end; evaluations in each decade ``[10^e, 10^(e+1)]`` of flow time
    (the last one up to the end), read every ``chunk`` steps."""
    at = {}
    while fl.running:
        fl.advance(chunk)
        e = math.floor(math.log10(fl.t)) if fl.t > 0 else None
        if e is not None and e not in at:
            at[e] = fl.n_rhs
    at["end"] = fl.n_rhs
    keys = sorted(k for k in at if k != "end")
    return {e: (at[keys[i + 1]] if i + 1 < len(keys) else at["end"]) - at[e] for i, e in enumerate(keys)}


@pytest.mark.xfail(strict=True, reason=(
    "cost per decade grows on a long plateau: d = 1e10 seed 0 (T1 = 3.6e11, default cap 3.6e23) "
    "spends ~1,600-2,000 evaluations per decade from 1e12 to 1e19, then 3,240 / 5,640 / 11,860 / "
    "23,900 in the decades from 1e19 to 1e23 and 25,672 from 1e23 to the cap (h/t falls from 1e-2 "
    "to 3e-4: the step is accuracy-limited on the follower's shrinking coordinate, as the issue "
    "describes), so O(T^0.3), not O(log T), and above the issue's 5,000 per decade before the "
    "default cap"))
def test_head_plateau_to_the_default_cap_costs_at_most_5000_per_decade_d1e10():
    """Issue 16: 'A head run must use at most 5,000 evaluations per decade of flow time after T1'
    at every d up to 1e10. fig. 8's regime, d = 1e10, seed 0, head offdiag, to the default cap
    (the follower shrinks on its plateau all the way there: |w_f| 1 -> 9e-5; 92,108 evaluations)."""
    fl = Flow(1e10, 0, "offdiag", t_max=None)
    cap = fe.horizon(fl.model, fl.train, fl.B0, fl.Vr)
    per = _evaluations_per_decade(fl)
    assert fl.status == _jit.STATUS_MAX_FLOW_TIME and fl.t == pytest.approx(cap, rel=1e-12)
    T1 = fl.t1[fl.t1 >= 0].min()
    after = {e: n for e, n in per.items() if 10.0**e >= T1}
    assert len(after) >= 10, per
    assert max(after.values()) <= 5000, after


def _to_the_cap_within_budget(d, seed, per_decade=5000):
    """fig. 8 head run to its default cap, stopped once it exceeds the issue's budget: the
    evaluations to T1 plus ``per_decade`` for every decade from T1 to the cap."""
    fl = Flow(d, seed, "offdiag", t_max=None)
    cap = fe.horizon(fl.model, fl.train, fl.B0, fl.Vr)
    budget = None
    while fl.running and (budget is None or fl.n_rhs <= budget):
        fl.advance(CHUNK)
        if budget is None and np.any(fl.t1 >= 0):
            T1 = fl.t1[fl.t1 >= 0].min()
            budget = fl.n_rhs + per_decade * math.ceil(math.log10(cap / T1))
    return fl, cap, budget


@pytest.mark.parametrize(("d", "seed"), [
    (1e5, 1), (1e7, 5), (1e10, 3),
    pytest.param(1e9, 5, marks=pytest.mark.xfail(strict=True, reason=(
        "d = 1e9 seed 5 (T1 = 6.5e12, default cap 6.5e24): 6.0 million evaluations to the cap, "
        "5.7 million of them in its last decade; from t ~ 1e23 the Rosenbrock step stalls near "
        "2e19 (h/t 2e-5 -> 3e-6) while the follower shrinks below |w_f| = 1e-4, and h scales like "
        "rtol^0.6 there (4.4e19 / 8.1e18 / 2.5e18 at rtol 1e-6 / 1e-7 / 1e-8): accuracy-limited, "
        "the error estimate of the shrinking coordinate (issue 16, 'the plateau'); the budget, "
        "6.3e4, is spent by t = 2.6e22"))),
])
def test_head_run_reaches_the_default_cap_within_5000_per_decade(d, seed):
    """fig. 8 head runs to their fate or the default cap (vanishing off) in at most the issue's
    5,000 evaluations per decade of flow time after T1, counted in total: d = 1e5 seed 1 (to the
    cap on its plateau, 9,040), d = 1e7 seed 5 (escapes at 2.3e18, 24,322), d = 1e10 seed 3 (to the
    cap, 40,000; its last decade alone takes 10,664)."""
    fl, cap, budget = _to_the_cap_within_budget(d, seed)
    assert budget is not None, "no T1"
    assert fl.n_rhs <= budget, (fl.n_rhs, budget, fl.t, cap)
    assert fl.status in (_jit.STATUS_CONVERGED, _jit.STATUS_MAX_FLOW_TIME), (fl.status, fl.t)


@pytest.mark.xfail(strict=True, reason=(
    "the decade of the escape costs more than 5,000 evaluations in 9 of the 18 runs: d = 1e4 "
    "seeds 2, 5, 6: 5,266 / 5,220 / 5,406; d = 1e5 seeds 2, 5, 6: 5,878 / 5,798 / 6,024; d = 1e6 "
    "seeds 2, 5, 6: 6,056 / 5,998 / 6,250 (every other decade after T1: at most ~2,200)"))
def test_issue_head_seeds_cost_at_most_5000_per_decade_after_T1():
    """The issue's head seeds (fig. 8, d = 1e4, 1e5, 1e6, seeds 1-6, vanishing off, default cap):
    each decade of flow time after T1, the escape's included, in at most 5,000 evaluations."""
    worst = {}
    for d in (1e4, 1e5, 1e6):
        for seed in range(1, 7):
            fl = Flow(d, seed, "offdiag", t_max=None)
            per = _evaluations_per_decade(fl)
            assert fl.status in (_jit.STATUS_CONVERGED, _jit.STATUS_MAX_FLOW_TIME), (d, seed, fl.status)
            T1 = fl.t1[fl.t1 >= 0].min()
            worst[d, seed] = max(n for e, n in per.items() if 10.0**e >= T1)
    over = {k: n for k, n in worst.items() if n > 5000}
    assert not over, over


# ---------------------------------------------------------------- 4. no heuristic stop by default


def test_default_runs_are_never_stopped_as_vanishing():
    """At the README defaults the old rule stopped 10 of 32 seeds as ``vanishing``; now a run
    ends converged, at its flow-time cap (``max_steps``), or with a numerical failure."""
    statuses = {}
    for seed in range(32):
        run = ts.simulate(ts.ModelParams(), ts.TrainParams(engine="flow", seed=seed))
        statuses[seed] = run.status
        assert run.status in ("converged", "max_steps", "diverged"), (seed, run.status, run.message)
    assert "vanishing" not in statuses.values()


def _t1_leading_order(model, A, norms, thr=THR):
    """docs/model.md section 11 / the phase-I theory, written out here: near the start
    ``da/dt = c a^5``, ``c = 2 kx lam_1 / (5 mu sigma^6 r^6)``, so ``|c_j1|`` reaches ``thr`` at
    ``(a0^-4 - (thr r)^-4) / (4 c)``; the first neuron to get there (on v_1) sets the time."""
    kx, _, mu = ref.split_moments_enumerated(model.P, model.k, model.split)
    lam1 = model.pi[0] * model.alpha[0] ** 6
    c = 2.0 * kx * lam1 / (5.0 * mu * model.sigma**6 * norms**6)
    a0 = np.abs(A[:, 0])
    return float(np.min((a0**-4.0 - (thr * norms) ** -4.0) / (4.0 * c)))


def test_default_cap_is_1e12_leading_order_T1_and_is_reached_at_log_cost():
    """The default flow-time cap (``max_flow_time=None``) is at least 1e12 x the run's
    leading-order T1 prediction; a fig. 8 head run at d = 1e5 (seed 1) that is still on its
    plateau reaches it (status ``max_steps``, the reason in the message) in bounded work.

    Measured: prediction 218.8 against the actual T1 = 2.83e4 (the leading order holds at
    d >= 1e8, within 4 %, and underestimates T1 by 15x-2,750x at d = 1e3-1e5 in this regime),
    so the cap 2.19e14 is 7.7e9 x the actual T1 here."""
    d = 10**5
    alpha, ratio = regime(d)
    model = ts.ModelParams(d=d, alpha=alpha)
    train = ts.TrainParams(eta=1.0, eta_E=ratio, seed=1, engine="flow", init="reduced", record=50)
    run = ts.simulate(model, train)
    B0, Vr = fe.reduced_start(model, 1, "reduced")
    pred = _t1_leading_order(model, B0 @ Vr, np.linalg.norm(B0, axis=1))
    assert run.status == "max_steps", (run.status, run.message)
    assert "cap" in run.message
    assert run.flow_time[-1] >= 1e12 * pred * (1.0 - 1e-12), (run.flow_time[-1], pred)
    assert run.stats["n_rhs"] <= 20_000, run.stats
    pt = phase_times(run)
    assert pt.T1_flow is not None and pt.T3_flow is None  # on the plateau at the cap


@pytest.mark.parametrize("head", ["frozen", "offdiag"])
def test_recorded_trajectory_conserves_the_norms(head):
    """Issue 16: '||W||_F is conserved to 1e-9 relative in every run, and each row's norm too
    when the head is frozen'. A run is also its records (``Run.norms``, ``Run.gram``)."""
    run = ts.simulate(ts.ModelParams(), ts.TrainParams(engine="flow", seed=1, head=head))
    assert run.status == "converged"
    n0 = np.linalg.norm(run.W0, axis=1)
    fro = np.sqrt(np.sum(run.norms**2, axis=1)) / np.linalg.norm(run.W0) - 1.0
    worst = np.max(np.abs(fro))
    if head == "frozen":
        worst = max(worst, np.max(np.abs(run.norms / n0 - 1.0)))
    assert worst <= 1e-9, worst
