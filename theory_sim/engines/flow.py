"""The ``flow`` engine: adaptive integration of the population gradient flow in flow time
(docs/model.md section 11, docs/flow.md; kernel ``core.flow``).

It integrates ``dB/dt = -dL/dB``, ``dE/dt = -(eta_E/eta) mask * dL/dE`` in reduced
coordinates with the closed-form right-hand side of the population engine, so it is the
``eta -> 0`` limit of that engine. What differs from the discrete engines (the contract's
continuous-time parts, ``engines/__init__.py``):

* time is flow time ``t``: ``advance(n)`` makes ``n`` solver steps (accepted or rejected
  attempts); ``rec_state[0]`` counts the accepted ones; ``Run.flow_time`` holds the
  recorded times and ``Run.steps`` their *nominal* step indices ``round(t / eta)`` (the
  step of a discrete run at this ``eta``; no step is taken);
* records at requested flow times from the dense interpolant (``record`` points, spaced
  ``record_spacing`` over ``[0, t_end]``, ``t_end = steps * eta`` or ``max_flow_time``), plus
  the final state;
* phase events located on the dense output in flow time (``Run.events["unit"] ==
  "flow_time"``);
* stop rules (their precedence: ``core.flow.termination``): convergence (``tol``),
  ``max_flow_time`` (or ``steps * eta``: a fixed horizon, no early stop), the opt-in vanishing
  follower (status ``vanishing``), step-size underflow;
* solver statistics (``stats()``): right-hand-side evaluations, accepted / rejected / stiff
  steps, method switches, Jacobians.

Every solver quantity lives in the engine's state arrays, so a checkpointed run resumes
bit-identically. :class:`FlowState` binds those arrays to the run's constants and reads them by
name; :func:`integrate` is the one loop that drives the kernel (``core.flow``) to a stop, and the
only code outside the kernel that knows its array layout is here.
"""

from __future__ import annotations

import math
import numbers
import time

import numpy as np

from .. import initial_law
from ..core import _jit
from ..core import flow as _flow
from ..core.population import make_workspace
from ..events import EVENT_ARRAYS, phase_times_from_events
from ..model import (
    check_weights,
    head_mask,
    initial_weights,
    model_constants,
    phase1_times,
    reduced_coordinates,
)
from ..outcome import alignment
from ..params import ATOL_FACTOR, DEFAULT_HEAD_TOL, ModelParams, ParamError, TrainParams
from ..status import STATUS_NAMES
from .base import Engine

DEFAULT_VANISH_PERSIST = math.inf
"""Vanishing rule (an opt-in early stop, off by default: it guesses a fate, and most runs it
stopped later escaped, docs/flow.md): the follower's decay must hold over this factor of flow
time. ``new_state(..., vanish_persist=VANISH_PERSIST_OPT_IN)`` turns it on."""
VANISH_PERSIST_OPT_IN = 10.0
CAP_PER_T1_PREDICTION = 1e12
"""Default flow-time cap: this many times the run's leading-order ``T1`` prediction (the fates
that exist, docs/flow.md, lie within it; the cost grows like log T, so it is affordable)."""
DEFAULT_VANISH_SHRINK = 0.75
"""Vanishing rule: ... and its norm fall by this factor meanwhile."""
DEFAULT_VANISH_ACCEL = 1.5
"""Vanishing rule: ... and the follower's log-log alignment slope has not grown by more than
this factor meanwhile (an escape accelerates)."""
DEFAULT_VANISH_HEAD = 1.0
"""Vanishing rule, fast path: a held window fires at once when the follower's rising head
entry ``|E_fq|`` reaches ``max(DEFAULT_VANISH_HEAD, VANISH_HEAD_PER_SQRT_RATIO *
sqrt(eta_E/eta))`` (docs/flow.md section 4: at d >= 1e8 the head entries then grow without
bound, like t^(1/4); converged runs of a 432-run check at d = 512 peaked at most at about
0.76 sqrt(eta_E/eta))."""
VANISH_HEAD_PER_SQRT_RATIO = 1.5
STIFF_METHODS = {"rodas4": _flow.STIFF_RODAS4, "ros34pw2": _flow.STIFF_ROS34PW2}
"""Stiff methods of the kernel (``core.flow``); docs/flow.md section 1 describes them."""
DEFAULT_STIFF_METHOD = "ros34pw2"
DEFAULT_JAC_EVERY = {"rodas4": 1, "ros34pw2": 10}
"""Accepted steps between Jacobians: Rodas4 is not a W-method and needs a fresh one each step."""
LOG_RECORD_START = 1e-2
"""First positive recorded time of ``record_spacing="log"`` (flow time; the grid is t = 0,
then geometric from here to the end)."""

_SOLVER_ARRAYS = _flow.ARRAY_KEYS
INTEGRATE_CHUNK = 1000
"""Solver steps per kernel call in :func:`integrate` (between calls Ctrl-C is honoured; a run split
into calls ends bit-identical to one call)."""


def reduced_start(model: ModelParams, seed: int, init: str = "materialised"):
    """``(B0, Vr)``: ``W(0)`` of ``seed`` in reduced coordinates (``theory_sim.initial_law``)."""
    if init == "materialised":
        return initial_law.materialised_coordinates(model, seed)
    if init == "reduced":
        return initial_law.reduced_coordinates(model.m, model.L, model.d, seed)
    raise ParamError(f"init must be one of materialised, reduced (got {init!r})")


def horizon(model: ModelParams, train: TrainParams, B0=None, Vr=None) -> float:
    """Where the run stops at the latest: ``steps * eta`` (a fixed horizon), ``max_flow_time``,
    or by default the larger of ``train.flow_max_time(d)`` and ``CAP_PER_T1_PREDICTION`` times
    the leading-order ``T1`` of ``W(0) = (B0, Vr)`` (``model.phase1_times``)."""
    if train.steps is not None:
        return train.steps * train.eta
    cap = train.flow_max_time(model.d)
    if train.max_flow_time is None and B0 is not None:
        t1 = float(np.min(phase1_times(model, B0 @ Vr, np.linalg.norm(B0, axis=1), train.align_threshold)))
        if math.isfinite(t1):
            cap = max(cap, CAP_PER_T1_PREDICTION * t1)
    return cap


def record_times(model: ModelParams, train: TrainParams, B0=None, Vr=None) -> np.ndarray:
    """The flow times of the ``record`` requested points (the final state is added after)."""
    K = train.record
    t_end = horizon(model, train, B0, Vr)
    if t_end <= 0.0:
        return np.zeros(1)
    if train.record_spacing == "linear":
        return np.linspace(0.0, t_end, K)
    lo = min(LOG_RECORD_START, t_end / K)
    return np.concatenate([[0.0], np.geomspace(lo, t_end, K - 1)])


def make_opts(model: ModelParams, train: TrainParams, atol: float, *, B0=None, Vr=None, t_max=None,
              head_tol=DEFAULT_HEAD_TOL,
              vanish_persist=DEFAULT_VANISH_PERSIST, vanish_shrink=DEFAULT_VANISH_SHRINK, h_max=math.inf,
              jac_every=None, vanish_accel=DEFAULT_VANISH_ACCEL, stiff_method=DEFAULT_STIFF_METHOD,
              vanish_head=None) -> np.ndarray:
    """The kernel's ``opts`` vector (``core.flow.O_*``); ``None`` options take their defaults."""
    o = np.empty(_flow.N_OPTS)
    if jac_every is None:
        jac_every = DEFAULT_JAC_EVERY[stiff_method]
    if vanish_head is None:
        ratio = train.eta_E / train.eta
        vanish_head = max(DEFAULT_VANISH_HEAD, VANISH_HEAD_PER_SQRT_RATIO * math.sqrt(ratio))
    o[_flow.O_STIFFMETHOD] = STIFF_METHODS[stiff_method]
    o[_flow.O_VHEAD] = vanish_head
    if t_max is None:
        t_max = horizon(model, train, B0, Vr)
    o[_flow.O_RTOL] = train.rtol
    o[_flow.O_ATOL] = atol
    o[_flow.O_TMAX] = t_max
    o[_flow.O_TOL] = train.tol if train.steps is None else -1.0  # a fixed horizon: no early stop
    o[_flow.O_ALIGN] = train.align_threshold
    o[_flow.O_MAXNORM] = train.max_norm
    o[_flow.O_HEADTOL] = head_tol
    o[_flow.O_VPERSIST] = vanish_persist if train.steps is None else math.inf
    o[_flow.O_VSHRINK] = vanish_shrink
    o[_flow.O_HMAX] = h_max
    o[_flow.O_JACEVERY] = jac_every
    o[_flow.O_VACCEL] = vanish_accel
    return o


def default_atol(B0: np.ndarray, Vr: np.ndarray) -> float:
    """``ATOL_FACTOR`` times the RMS of ``A(0) = B0 Vr`` (``params.ATOL_FACTOR``)."""
    return ATOL_FACTOR * float(np.sqrt(np.mean((B0 @ Vr) ** 2)))


def new_state(model: ModelParams, train: TrainParams, B0, Vr, E0=None, *, t_record=None,
              **opts) -> FlowState:
    """Validate and allocate every array of a flow run, and evaluate its start (``flow_init``).

    ``opts``: keyword overrides of :func:`make_opts` (``t_max``, ``head_tol``, the vanishing
    rule, ``h_max``, ``jac_every``) for tests and studies; ``t_record`` overrides
    :func:`record_times`.
    """
    m, L = model.m, model.L
    B0 = np.array(B0, dtype=np.float64, order="C", copy=True)
    Vr = np.array(Vr, dtype=np.float64, order="C", copy=True)
    if B0.ndim != 2 or B0.shape[0] != m:
        raise ParamError(f"B0 must have shape (m, r) with m = {m} (got {B0.shape})")
    if Vr.shape != (B0.shape[1], L):
        raise ParamError(f"Vr must have shape (r, L) = ({B0.shape[1]}, {L}) (got {Vr.shape})")
    E0 = np.eye(m) if E0 is None else np.array(E0, dtype=np.float64)
    if E0.shape != (m, m):
        raise ParamError(f"E0 must have shape (m, m) = ({m}, {m}) (got {E0.shape})")
    if not (np.all(np.isfinite(B0)) and np.all(np.isfinite(E0)) and np.all(np.isfinite(Vr))):
        raise ParamError("B0, Vr and E0 must be finite")
    for name in ("head_tol", "vanish_persist", "vanish_shrink", "h_max", "vanish_accel", "vanish_head"):
        if opts.get(name) is not None and not opts[name] > 0:
            raise ParamError(f"{name} must be > 0 (got {opts[name]!r})")
    stiff_method = opts.get("stiff_method", DEFAULT_STIFF_METHOD)
    if stiff_method not in STIFF_METHODS:
        raise ParamError(f"stiff_method must be one of {', '.join(STIFF_METHODS)} (got {stiff_method!r})")
    jac_every = opts.get("jac_every")
    jac_every = DEFAULT_JAC_EVERY[stiff_method] if jac_every is None else jac_every
    if not (isinstance(jac_every, int) and jac_every >= 1):
        raise ParamError(f"jac_every must be an integer >= 1 (got {jac_every!r})")
    t_max = opts.get("t_max")
    if t_max is not None and not (t_max > 0 and math.isfinite(t_max)):
        raise ParamError(f"t_max must be > 0 and finite (got {t_max!r})")
    atol = default_atol(B0, Vr) if train.atol is None else train.atol
    t_rec = (record_times(model, train, B0, Vr) if t_record is None
             else np.array(t_record, dtype=np.float64).ravel())
    if t_rec.size and (not np.all(np.isfinite(t_rec)) or np.any(t_rec < 0) or np.any(np.diff(t_rec) <= 0)):
        raise ParamError("t_record must be finite, >= 0 and strictly increasing")
    K, n = t_rec.size, B0.size + m * m
    arrays = {
        "coords": np.concatenate([B0.ravel(), E0.ravel()]), "rhs": np.zeros(n), "jacobian": np.zeros((n, n)),
        "features_r": Vr, "opts": make_opts(model, train, atol, B0=B0, Vr=Vr, **opts),
        "fst": np.zeros(_flow.N_FST), "ist": np.zeros(_flow.N_IST, np.int64),
        "t1": -np.ones(m), "t2": -np.ones(m), "t4": -np.ones(m),
        "peak": np.zeros((m, m)), "peak_t": -np.ones((m, m)), "vstate": -np.ones((3, m)),
        "invariants": np.zeros(m + 1),
        "t_rec": t_rec, "rec_A": np.zeros((K, m, L)), "rec_gram": np.zeros((K, m, m)),
        "rec_E": np.zeros((K, m, m)), "rec_loss": np.zeros(K), "rec_rho": np.zeros((K, m)),
    }
    st = FlowState.of_run(arrays, model, train)
    t0 = time.perf_counter()
    _flow.flow_init(*st.groups())
    st.elapsed += time.perf_counter() - t0
    return st


def _ratio(train: TrainParams) -> float:
    return float(train.eta_E / train.eta)


class _Slot:
    """A ``FlowState`` attribute that is one entry of a solver array (``fst``, ``ist``, ``opts``)."""

    def __init__(self, array: str, index: int, kind, doc: str):
        self.array, self.index, self.kind, self.__doc__ = array, index, kind, doc

    def __get__(self, st, owner=None):
        return self if st is None else self.kind(st.arrays[self.array][self.index])


class _StateArray:
    """A ``FlowState`` attribute that is one of its arrays, by name (a view: kernels update it)."""

    def __set_name__(self, owner, name):
        self.key = name

    def __get__(self, st, owner=None):
        return self if st is None else st.arrays[self.key]


class FlowState:
    """A flow run: its arrays (``arrays``, what a checkpoint holds, keys ``core.flow.ARRAY_KEYS``
    and ``basis``) bound to its constants, read by name. ``elapsed``: kernel time so far."""

    def __init__(self, arrays: dict, mask: np.ndarray, model_t: tuple, ratio: float):
        self.arrays = arrays
        self.mask = np.ascontiguousarray(mask, dtype=np.float64)
        self.model_t = tuple(model_t)
        self.ratio = float(ratio)
        self.elapsed = 0.0
        self._groups = _flow.pack(arrays, self.mask, self.model_t, self.ratio)

    @classmethod
    def of_run(cls, arrays: dict, model: ModelParams, train: TrainParams) -> FlowState:
        return cls(arrays, head_mask(train.head, model.m), model_constants(model), _ratio(train))

    def groups(self) -> tuple:
        """The kernels' ``(problem, opts, solver, events, records)`` (``core.flow.pack``: views of
        ``arrays``, which the kernels update in place and nothing replaces)."""
        return self._groups

    @property
    def m(self) -> int:
        return self.mask.shape[0]

    time = _Slot("fst", _flow.F_T, float, "The flow time reached.")
    status = _Slot("ist", _flow.I_STATUS, int,
                   "The kernel's status code (``core._jit.STATUS_*``; ``STATUS_RUNNING`` until it stops).")
    cap = _Slot("opts", _flow.O_TMAX, float, "The flow-time cap (``horizon``, or the ``t_max`` override).")
    loss = _Slot("fst", _flow.F_LOSS, float, "The loss at the current point.")

    @property
    def running(self) -> bool:
        return self.status == _jit.STATUS_RUNNING

    @property
    def speed(self) -> float:
        """The convergence measure of ``core.population.convergence_status`` at the current point."""
        fst = self.arrays["fst"]
        return (math.sqrt(max(fst[_flow.F_SPEEDW], 0.0))
                + self.ratio * math.sqrt(max(fst[_flow.F_SPEEDE], 0.0)))

    # arrays by name: Vr (r, L); events (-1: never) t1, t2, t4 (m,), the first time |c_j1|, |c_j2|
    # reach the threshold and the head is back at I; peak, peak_t (m, m), the running max of |E_jq|
    features_r = _StateArray()
    t1, t2, t4, peak, peak_t = (_StateArray() for _ in range(5))

    def coordinates(self) -> np.ndarray:
        """``B`` (m, r), a new array."""
        m = self.m
        return self.arrays["coords"][:-m * m].reshape(m, -1).copy()

    def head(self) -> np.ndarray:
        """``E`` (m, m), a new array."""
        m = self.m
        return self.arrays["coords"][-m * m:].reshape(m, m).copy()

    def alignment(self) -> np.ndarray:
        """``|c_jl| = |A_jl| / |w_j|`` (m, L) now (0 for a zero row)."""
        B = self.coordinates()
        return alignment(B @ self.features_r, np.sqrt(np.einsum("ij,ij->i", B, B)))

    def finite(self) -> bool:
        return bool(np.all(np.isfinite(self.arrays["coords"])))

    def stats(self) -> dict:
        """The solver statistics (``Run.stats``, ``summary.json``)."""
        ist = self.arrays["ist"]
        return {"n_rhs": int(ist[_flow.I_NRHS]), "accepted_steps": int(ist[_flow.I_NSTEPS]),
                "rejected_steps": int(ist[_flow.I_NREJECT]), "stiff_steps": int(ist[_flow.I_NSTIFFSTEPS]),
                "switches": int(ist[_flow.I_NSWITCH]), "jacobians": int(ist[_flow.I_NJAC]),
                "output_evals": int(ist[_flow.I_NOUT])}

    def events(self) -> dict:
        """The phase events in flow time, keyed as ``events.EVENT_ARRAYS`` (``-1``: never)."""
        a = self.arrays
        return {"first_v1": a["t1"].copy(), "c_v1_at_first": np.zeros(self.m), "first_v2": a["t2"].copy(),
                "first_head_back": a["t4"].copy(), "peak": a["peak"].copy(), "peak_step": a["peak_t"].copy()}

    def phase_times(self, status: str | None = None) -> dict:
        """``T1..T4``, ``leader``, ``follower`` in flow time (``events.phase_times_from_events``)."""
        ev = self.events()
        status = STATUS_NAMES[self.status] if status is None else status
        return phase_times_from_events(*(ev[k] for k in EVENT_ARRAYS), self.alignment(), status, self.time)

    def recorded(self) -> tuple:
        """``(t, A, gram, E, loss, rho)`` of the points recorded so far (copies)."""
        a = self.arrays
        k = int(a["ist"][_flow.I_NREC])
        return tuple(a[name][:k].copy() for name in _flow.RECORD_KEYS)

    def final_point(self) -> tuple:
        """``(t, A, gram, E, loss, rho)`` at the current state (one extra evaluation)."""
        y, Vr = self.arrays["coords"], self.features_r
        m = self.m
        r, L = Vr.shape
        out = _flow.Records(np.zeros(1), np.zeros((1, m, L)), np.zeros((1, m, m)), np.zeros((1, m, m)),
                            np.zeros(1), np.zeros((1, m)))
        prob = self.groups()[0]
        _flow._record(0, y, prob, np.empty((m, r)), np.empty((m, m)), make_workspace(m, r, L),
                      np.empty(y.size), out)
        return (self.time,) + tuple(a[0] for a in out[1:])


def advance(st: FlowState, n_steps: int, *, t_stop: float = math.inf, stop_at_t1: bool = False) -> int:
    """One kernel call: at most ``n_steps`` solver steps, fewer once the flow time reaches ``t_stop``
    or (``stop_at_t1``) a first ``T1`` is located; the status code."""
    t0 = time.perf_counter()
    code = int(_flow.flow_advance(*st.groups(), int(n_steps), float(t_stop), bool(stop_at_t1)))
    st.elapsed += time.perf_counter() - t0
    return code


def integrate(st: FlowState, until="converged", *, steps_per_call: int = INTEGRATE_CHUNK) -> int:
    """Integrate ``st`` in place; return its status code (``STATUS_RUNNING`` if stopped by ``until``).

    ``until``: ``"converged"``, to the run's stop (converged, the flow-time cap, a failure or the
    opt-in vanishing rule: ``core.flow.termination``); ``"T1"``, also at the accepted step that
    locates the first ``T1``; a flow time, also at the first accepted step ending at or after it.
    """
    t_stop, at_t1 = math.inf, False
    if until == "T1":
        at_t1 = True
    elif isinstance(until, numbers.Real) and not isinstance(until, bool):
        t_stop = float(until)
    elif until != "converged":
        raise ParamError(f"until must be 'converged', 'T1' or a flow time (got {until!r})")
    while st.running:
        if st.time >= t_stop or (at_t1 and np.any(st.t1 >= 0)):
            break
        advance(st, steps_per_call, t_stop=t_stop, stop_at_t1=at_t1)
    return st.status


def initial_state(model: ModelParams, train: TrainParams, V, W0=None, E0=None, **opts) -> tuple:
    """``(W0, state)`` of a fresh run: ``W0`` materialised from ``train.seed`` (or given) and
    projected, or ``None`` with ``init="reduced"`` (the reduced law drawn directly);
    ``state`` the :class:`FlowState` of :func:`new_state` (``opts``: its overrides), with
    ``arrays["basis"]`` = ``Q`` (d, r) when ``W0`` is materialised."""
    if train.init == "reduced":
        if W0 is not None:
            raise ParamError("init='reduced' draws W(0) itself: pass no W0 (or use init='materialised')")
        B0, Vr = reduced_start(model, train.seed, "reduced")
        return None, new_state(model, train, B0, Vr, E0, **opts)
    W0 = initial_weights(model, train.seed) if W0 is None else W0
    W0, E0 = check_weights(W0, E0, model)
    Q, B, Vr = reduced_coordinates(V, W0)
    state = new_state(model, train, B, Vr, E0, **opts)
    state.arrays["basis"] = Q
    return W0, state


class FlowEngine(Engine):
    name = "flow"
    help = "adaptive gradient flow (eta -> 0 limit of population), in flow time; --init reduced for any d"
    options = ("rtol", "atol", "init", "record_spacing")
    continuous = True
    first_chunk = 256
    state_arrays = _SOLVER_ARRAYS
    optional_arrays = ("basis",)  # Q (d, r), materialised init only (W = B Q^T)

    @classmethod
    def check_memory(cls, model, train):
        n = model.m * (model.m + model.L) + model.m ** 2
        if n > 4000:
            raise ParamError(f"the flow engine's state has {n} coordinates (its Jacobian n^2); "
                             "use --m below 40 or --engine population")

    @classmethod
    def start(cls, model, train, inputs, W0, E0):
        W0, st = initial_state(model, train, inputs.V, W0, E0)
        return W0, st.arrays

    def __init__(self, model, train, inputs, state):
        super().__init__(model, train, inputs, state)
        self.flow = FlowState(state, inputs.E_mask, inputs.model, _ratio(train))
        # zero steps: compiles the kernel here, so the first compile stays out of Run.elapsed
        advance(self.flow, 0)

    @property
    def time(self) -> float:
        return self.flow.time

    @property
    def status(self) -> int:
        return self.flow.status

    def head(self) -> np.ndarray:
        return self.flow.head()

    def advance(self, E, rec, rec_state, events, n):
        code = advance(self.flow, n)
        rec_state[0] = self.flow.stats()["accepted_steps"]
        E[:] = self.head()
        return code

    def observe_final(self, E, step, events):
        pass  # the kernel observes every accepted step's end, the budget's end included

    def coordinates(self) -> np.ndarray:
        return self.flow.coordinates()

    def weights(self):
        if "basis" not in self.state:
            return None  # reduced init: W is never materialised
        return self.coordinates() @ self.state["basis"].T

    def records(self, include_final: bool = True):
        """``(t, A, gram, E, loss, rho)`` of the recorded points, the final state appended."""
        out = list(self.flow.recorded())
        t = self.time
        if include_final and (out[0].size == 0 or out[0][-1] != t) and self.flow.finite():
            out = [np.concatenate([a, np.asarray(p, dtype=a.dtype)[None]])
                   for a, p in zip(out, self.flow.final_point(), strict=True)]
        return out

    def events_record(self) -> dict:
        return self.flow.events() | {"last": self.time, "unit": "flow_time"}

    def stats(self) -> dict:
        return self.flow.stats()

    def progress_info(self) -> dict:
        f = self.flow
        return {"loss": f.loss, "alignment": f.alignment(), "E": self.head(), "speed": f.speed,
                "flow_time": self.time, "m": self.model.m, "cap": f.cap}


__all__ = ["FlowEngine", "FlowState", "record_times", "reduced_start", "new_state", "advance", "integrate"]
