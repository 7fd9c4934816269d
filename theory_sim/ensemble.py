"""Many population runs at once: validate, group by shape, allocate, call the batched kernel.

:func:`simulate_many` gives, for every ``(ModelParams, TrainParams)`` pair, what
``simulate()`` followed by ``analysis.phase_times`` / ``peak_offdiag`` / ``outcome``
would give for that run, but without a trajectory and at step resolution (the
events are tracked in the kernel at every step, see ``theory_sim.core.ensemble``).
The per-step arithmetic is the same function as ``simulate()``'s, so the final state
is the same to the last bit.

Runs are grouped by the shape of their reduced coordinates ``(m, L, r)``
(``r = min(d, m + L)``: runs with different ``d`` share a batch, docs/model.md section 7)
and each group is advanced in chunks of steps, so that ``progress`` is called a few
times a second and Ctrl-C stops cleanly (unfinished runs come back ``interrupted``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numba
import numpy as np

from .core import _jit
from .core.ensemble import batched_advance, batched_advance_serial
from .engines import flow as flow_engine
from .engines import step_inputs, stop_rule
from .events import both_units, phase_times_from_events
from .model import (
    check_weights,
    feature_vectors,
    head_mask,
    initial_weights,
    model_constants,
    reduced_coordinates,
)
from .outcome import alignment, features, is_settled, outcome_from
from .params import DEFAULT_HEAD_TOL, ModelParams, ParamError, TrainParams
from .results import RunSummary
from .status import OUTCOMES, STATUS_NAMES

__all__ = ["BATCHED_ENGINES", "OUTCOMES", "STATUS_NAMES", "RunSummary", "simulate_many"]
_STEP_FAILURES = (_jit.STATUS_NONFINITE, _jit.STATUS_DEGENERATE)
"""Failures found by ``population_step`` itself (after the last evaluated step)."""
TARGET_CALL_SECONDS = 0.25
"""Aim of one kernel call: responsive progress and Ctrl-C, negligible call overhead."""

ProgressFn = Callable[[int, int], None]
BATCHED_ENGINES = ("population", "flow")
"""The engines (names in ``engines.ENGINES``) that :func:`simulate_many` runs, and so the
sweeps: population (the batched kernel) and flow (``engines.flow.integrate`` per run: milliseconds)."""


def _as_list(x, cls, name):
    if isinstance(x, cls):
        return [x]
    try:
        out = list(x)
    except TypeError:
        raise TypeError(f"{name} must be a {cls.__name__} or a sequence of them") from None
    for i, item in enumerate(out):
        if not isinstance(item, cls):
            raise TypeError(f"{name}[{i}] must be a {cls.__name__} (got {type(item).__name__})")
    return out


def _broadcast(models, trains, head_tol):
    models = _as_list(models, ModelParams, "models")
    trains = _as_list(trains, TrainParams, "trains")
    n = max(len(models), len(trains))
    if len(models) == 1:
        models = models * n
    if len(trains) == 1:
        trains = trains * n
    if len(models) != len(trains):
        raise ParamError(f"models and trains must have the same length or length 1 "
                         f"(got {len(models)} and {len(trains)})")
    tols = np.broadcast_to(np.asarray(head_tol, dtype=np.float64), (n,)) if n else np.empty(0)
    if not np.all(np.isfinite(tols)) or np.any(tols <= 0):
        raise ParamError(f"head_tol must be > 0 and finite (got {head_tol!r})")
    for i, t in enumerate(trains):
        if t.engine not in BATCHED_ENGINES:
            engines = " and ".join(f"the {e} engine" for e in BATCHED_ENGINES)
            raise ParamError(f"simulate_many runs {engines} only "
                             f"(run {i} has engine={t.engine!r}); use simulate for the others")
        if (t.norm, t.stopgrad, t.target) != ("bn", "on", "online"):  # docs/model.md section 12
            raise ParamError(f"simulate_many runs the paper's model only (run {i} has norm={t.norm}, "
                             f"stopgrad={t.stopgrad}, target={t.target}); run ablations with simulate()")
    return models, trains, tols


class _Group:
    """The stacked arrays of the runs of one shape (the kernel's arguments)."""

    def __init__(self, idx, prepared, trains, tols, max_steps=None):
        n = len(idx)
        m, r = prepared[0]["B"].shape
        L = prepared[0]["Vr"].shape[1]
        self.idx = idx
        self.Q = [p["Q"] for p in prepared]
        self.prepared = prepared
        self.B = np.ascontiguousarray(np.stack([p["B"] for p in prepared]))
        self.E = np.ascontiguousarray(np.stack([np.eye(m) for _ in prepared]))
        self.Vr = np.ascontiguousarray(np.stack([p["Vr"] for p in prepared]))
        self.E_mask = np.ascontiguousarray(np.stack([head_mask(trains[i].head, m) for i in idx]))
        self.lam = np.ascontiguousarray(np.stack([p["model"][0] for p in prepared]))
        self.moments = np.array([p["model"][1:] for p in prepared], dtype=np.float64).reshape(n, 4)
        self.rates = np.array([(trains[i].eta, trains[i].eta_E) for i in idx], dtype=np.float64)
        stop_reals, stop_ints = [], []
        for i in idx:
            tol, align_threshold, max_norm, check_every = stop_rule(trains[i])
            stop_reals.append((tol, align_threshold, max_norm))
            stop_ints.append((check_every, trains[i].max_steps))
        self.stop_reals = np.array(stop_reals, dtype=np.float64).reshape(n, 3)
        self.stop_ints = np.array(stop_ints, dtype=np.int64).reshape(n, 2)
        if max_steps is not None:
            self.stop_ints[:, 1] = max_steps
        self.head_tol = np.ascontiguousarray(tols[idx])
        self.counters = np.zeros((n, 3), dtype=np.int64)
        self.counters[:, 1] = _jit.STATUS_RUNNING
        self.counters[:, 2] = -1
        self.first_v1 = np.full((n, m), -1, dtype=np.int64)
        self.c_v1_at_first = np.zeros((n, m))
        self.first_v2 = np.full((n, m), -1, dtype=np.int64)
        self.first_head_back = np.full((n, m), -1, dtype=np.int64)
        self.peak = np.full((n, m, m), -1.0)
        self.peak_step = np.full((n, m, m), -1, dtype=np.int64)
        self.A_last = np.full((n, m, L), np.nan)
        self.gram_diag_last = np.full((n, m), np.nan)
        self.E_last = np.full((n, m, m), np.nan)
        self.loss_last = np.full(n, np.nan)

    def args(self, active, n_steps):
        """The kernel's arguments (``core.ensemble``'s docstring names each group)."""
        return (active, (self.B, self.E), (self.Vr, self.E_mask, self.lam, self.moments, self.rates),
                (self.stop_reals, self.stop_ints, self.head_tol), self.counters,
                (self.first_v1, self.c_v1_at_first, self.first_v2, self.first_head_back, self.peak,
                 self.peak_step),
                (self.A_last, self.gram_diag_last, self.E_last, self.loss_last), int(n_steps))

    def running(self):
        return np.flatnonzero(self.counters[:, 1] == _jit.STATUS_RUNNING).astype(np.int64)

    def advance(self, kernel, progress=None):
        """Call the kernel until every run has stopped; ``progress(n_stopped)`` between calls."""
        n_steps = 4096
        while True:
            active = self.running()
            if active.size == 0:
                return
            t0 = time.perf_counter()
            with numba.parallel_chunksize(1):  # runs differ in length: one at a time
                kernel(*self.args(active, n_steps))
            dt = time.perf_counter() - t0
            n_steps = int(min(max(n_steps * TARGET_CALL_SECONDS / max(dt, 1e-6), 256),
                              n_steps * 8, 10**9))
            if progress is not None:
                progress(int(len(self.idx) - self.running().size))

    def recover_failed(self, kernel, trains, tols):
        """The state at the last evaluated step of runs that failed at the next one.

        The kernel cannot keep it without copying at every step; re-running such a run
        with its budget set to that step ends on exactly that state (same arithmetic).
        """
        bad = [k for k in range(len(self.idx)) if self.counters[k, 1] in _STEP_FAILURES
               and self.counters[k, 2] >= 0]
        if not bad:
            return
        for k in bad:
            sub = _Group(self.idx[[k]], [self.prepared[k]], trains, tols,
                         max_steps=int(self.counters[k, 2]))
            sub.advance(kernel)
            assert sub.counters[0, 2] == self.counters[k, 2] and sub.counters[0, 1] == _jit.STATUS_MAX_STEPS
            self.A_last[k], self.E_last[k] = sub.A_last[0], sub.E_last[0]
            self.gram_diag_last[k] = sub.gram_diag_last[0]


def _prepare(model, train, W0, cache):
    """Reduced coordinates of one run, built exactly as ``simulate()`` builds them."""
    model.check_materialised()
    W0 = initial_weights(model, train.seed) if W0 is None else W0
    W0, _ = check_weights(W0, None, model)
    if model not in cache:
        cache[model] = (np.ascontiguousarray(feature_vectors(model)), model_constants(model))
    V, model_t = cache[model]
    Q, B, Vr = reduced_coordinates(V, W0)
    return {"Q": Q, "B": B, "Vr": Vr, "model": model_t}


def simulate_many(models, trains, *, head_tol=DEFAULT_HEAD_TOL, W0=None, parallel: bool = True,
                  weights: bool = False, progress: ProgressFn | None = None) -> list[RunSummary]:
    """Run every ``(models[i], trains[i])`` (engine population or flow); one :class:`RunSummary` each.

    ``models`` / ``trains``: a ``ModelParams`` / ``TrainParams`` or sequences of them (a
    single one is broadcast). ``head_tol`` (scalar or per run): T4's tolerance on
    ``|E - I|_F``. ``W0``: optional per-run initial weights (default: seeded from
    ``trains[i].seed`` as in ``simulate()``). ``parallel``: spread the runs over numba's
    threads (``False``: this thread only, for callers that are themselves parallel).
    ``weights``: also return the final weights ``W`` (m x d). ``progress(done, total)`` is
    called between kernel calls with the number of finished runs. Flow runs (``engine="flow"``)
    are integrated one after the other (milliseconds each), with their phase times in flow
    time (``T1_flow..``) located on the dense output, ``steps`` the nominal ``round(t / eta)``,
    and the solver statistics in ``stats``.

    Each summary (also readable as a mapping, as the earlier dicts) holds ``status``
    (``converged``, ``max_steps``, ``diverged``, ``interrupted`` or, flow only, ``vanishing``), ``steps`` and
    ``flow_time`` at the stop, the phase times ``T1..T4``
    (steps, ``None`` when not reached) and ``T1_flow..T4_flow`` (flow time), ``leader`` /
    ``follower`` (0-based neuron indices),
    ``alignment`` (m x L final ``|c_jl|``), ``features`` (the feature each neuron has
    learned, or ``None``), ``peak_offdiag`` (m x m ``max_t |E_jr|``, 0 on the diagonal),
    ``E`` (final head), ``head_distance`` (final ``|E - I|_F``), ``loss`` and ``outcome``.
    Definitions: ``analysis.phase_times`` / ``peak_offdiag`` / ``outcome`` with the run's
    ``align_threshold``, at every step rather than at recorded points, except that a
    run stopped by the flow-time cap (``steps=None`` and status ``max_steps``) is
    ``incomplete``: it had not settled. A flow run the engine stopped as ``vanishing``
    (a featureless follower shrinking beside a leader, docs/model.md section 10) has
    outcome ``vanishing`` (``analysis.outcome(run, vanishing=run.status == "vanishing")``);
    the discrete engines have no such stop, and their outcomes never name it here.
    """
    models, trains, tols = _broadcast(models, trains, head_tol)
    n = len(models)
    if W0 is None:
        W0 = [None] * n
    elif len(W0) != n:
        raise ParamError(f"W0 must hold one matrix per run ({n}), got {len(W0)}")
    out: list = [None] * n
    flow_idx = [i for i in range(n) if trains[i].engine == "flow"]
    pop_idx = [i for i in range(n) if trains[i].engine != "flow"]
    cache: dict = {}
    prepared = {i: _prepare(models[i], trains[i], W0[i], cache) for i in pop_idx}
    shapes: dict = {}
    for i, p in prepared.items():
        shapes.setdefault((p["B"].shape, p["Vr"].shape[1]), []).append(i)
    groups = [_Group(np.array(idx, dtype=np.int64), [prepared[i] for i in idx], trains, tols)
              for idx in shapes.values()]
    kernel = batched_advance if parallel else batched_advance_serial
    done_before = 0
    try:
        for i in flow_idx:
            out[i] = _flow_run(models[i], trains[i], W0[i], float(tols[i]), weights)
            done_before += 1
            if progress is not None:
                progress(done_before, n)
        for g in groups:

            def report(k, base=done_before):
                if progress is not None:
                    progress(base + k, n)

            g.advance(kernel, report)
            g.recover_failed(kernel, trains, tols)
            done_before += len(g.idx)
    except KeyboardInterrupt:
        # unfinished runs keep status RUNNING: reported as interrupted
        for g in groups:  # a failed run not yet recovered counts as unfinished
            for k in range(len(g.idx)):
                failed, evaluated = g.counters[k, 1] in _STEP_FAILURES, g.counters[k, 2] >= 0
                if failed and evaluated and np.isnan(g.gram_diag_last[k, 0]):
                    g.counters[k, 1] = _jit.STATUS_RUNNING
        for i in flow_idx:
            if out[i] is None:
                out[i] = _flow_run(models[i], trains[i], W0[i], float(tols[i]), weights, run=False)
    for g in groups:
        for k, i in enumerate(g.idx):
            out[i] = _result(g, k, trains[i], weights)
    return out


def _flow_run(model: ModelParams, train: TrainParams, W0, head_tol: float, weights: bool, *,
              run: bool = True) -> RunSummary:
    """One flow run to its stop (``engines.flow.integrate``; ``run=False``: not run, reported
    ``interrupted``)."""
    inputs = step_inputs(model, train)
    W0, st = flow_engine.initial_state(model, train, inputs.V, W0, None, t_record=np.zeros(0),
                                       head_tol=head_tol)
    if run:
        flow_engine.integrate(st)
    status = STATUS_NAMES[st.status]
    m = model.m
    E, c, t = st.head(), st.alignment(), st.time
    times = st.phase_times(status)
    feats = features(c, train.align_threshold)
    settled = is_settled(status, fixed_budget=train.steps is not None)
    peak = st.peak.copy()
    np.fill_diagonal(peak, 0.0)
    Wf = None
    if weights and "basis" in st.arrays:
        Wf = st.coordinates() @ st.arrays["basis"].T
    return RunSummary(status=status, steps=int(round(t / train.eta)), flow_time=t,
                      **both_units(times, "flow_time", train.eta), alignment=c, features=feats,
                      peak_offdiag=peak, E=E, head_distance=float(np.sqrt(((E - np.eye(m)) ** 2).sum())),
                      loss=st.loss,
                      outcome=outcome_from(feats, settled=settled, vanishing=status == "vanishing"),
                      W=Wf, stats=st.stats())


def _result(g: _Group, k: int, train: TrainParams, weights: bool) -> RunSummary:
    step, code, last = (int(x) for x in g.counters[k])
    status = STATUS_NAMES[code]
    m, L = g.A_last.shape[1:]
    A, gram = g.A_last[k], g.gram_diag_last[k]
    c = alignment(A, np.sqrt(gram))  # record_point's c = A / |w_j| (0 for a zero row)
    if last < 0:  # no step was evaluated (the run failed at its first step)
        c = np.full((m, L), np.nan)
    times = _phase_times(g, k, status, last, c)
    feats = features(c, train.align_threshold)
    outcome = outcome_from(feats, settled=is_settled(status, fixed_budget=train.steps is not None))
    peak = g.peak[k].copy()
    peak[peak < 0] = np.nan  # nothing evaluated
    np.fill_diagonal(peak, 0.0)
    E = g.E_last[k].copy()
    return RunSummary(status=status, steps=step, flow_time=step * train.eta,
                      **both_units(times, "steps", train.eta),
                      alignment=c, features=feats, peak_offdiag=peak, E=E,
                      head_distance=float(np.sqrt(((E - np.eye(m)) ** 2).sum())),
                      loss=float(g.loss_last[k]), outcome=outcome,
                      W=g.B[k] @ g.Q[k].T if weights else None)


def _phase_times(g: _Group, k: int, status: str, last: int, c: np.ndarray) -> dict:
    """``analysis.phase_times`` from the events tracked in the kernel (step resolution)."""
    return phase_times_from_events(g.first_v1[k], g.c_v1_at_first[k], g.first_v2[k], g.first_head_back[k],
                                   g.peak[k], g.peak_step[k], c, status, last)
