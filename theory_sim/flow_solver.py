"""Private wrapper of the gradient-flow kernel (``core.flow``): validate, allocate, call.

Temporary home until the flow engine is wired into ``simulate`` (docs/model.md section 11).
``integrate_flow`` integrates ``dB/dt = -dL/dB``, ``dE/dt = -(eta_E/eta) mask * dL/dE`` in
flow time from reduced coordinates ``(B0, Vr)`` (from :func:`reduced_start`) and returns a
dict of plain arrays. Every solver quantity lives in the ``state`` dict of arrays, so
``new_state`` + repeated ``advance`` calls reproduce one long call bit for bit.
"""

from __future__ import annotations

import math
import time

import numpy as np

from . import initial_law
from .core import _jit
from .core import flow as _flow

# names that the restructure may move: imported here only
from .model import head_mask, model_constants  # noqa: E402
from .params import ModelParams, ParamError, TrainParams
from .status import STATUS_NAMES

DEFAULT_RTOL = 1e-7
"""Relative tolerance (scipy's RK45 at 1e-7 reproduces the discrete engine's phase times
to O(eta), docs/model.md section 11)."""
ATOL_FACTOR = 1e-7
"""Default absolute tolerance: ``ATOL_FACTOR`` times the RMS of the initial ``A = W(0) V``
(``~ 1/sqrt(d)``), the smallest scale the dynamics must resolve (the escape from the
initial alignment, docs/model.md section 10). A fixed tiny ``atol`` would make the solver
track components decaying to zero (stiff, irrelevant) to absolute accuracy: at d = 1e4,
atol = 1e-12 costs four times the evaluations of this rule."""
DEFAULT_HEAD_TOL = 0.01
DEFAULT_VANISH_PERSIST = 10.0
"""Vanishing rule: the follower's decay must hold over this factor of flow time."""
DEFAULT_VANISH_SHRINK = 0.75
"""Vanishing rule: ... and its norm fall by this factor meanwhile."""
DEFAULT_VANISH_HEAD = 1.0
"""Vanishing rule, fast path: a held window fires at once when the follower's rising head
entry ``|E_fq|`` reaches ``max(DEFAULT_VANISH_HEAD, VANISH_HEAD_PER_SQRT_RATIO *
sqrt(eta_E/eta))`` (docs/model.md section 11: at d >= 1e8 the head entries then grow without bound,
like t^(1/4); the converged runs of a 432-run check at d = 512 peak at 0.18, 0.76, 0.06 for
eta_E/eta = 0.1, 1, 0.01, i.e. at most ~0.76 sqrt(eta_E/eta))."""
VANISH_HEAD_PER_SQRT_RATIO = 1.5
DEFAULT_VANISH_ACCEL = 1.5
"""Vanishing rule: ... and the follower's log-log alignment slope has not grown by more than
this factor meanwhile (an escape accelerates)."""
STIFF_METHODS = {"rodas4": _flow.STIFF_RODAS4, "ros34pw2": _flow.STIFF_ROS34PW2}
"""Stiff methods of the kernel (see ``core.flow``); docs/model.md section 11 compares them."""
DEFAULT_STIFF_METHOD = "ros34pw2"
DEFAULT_JAC_EVERY = {"rodas4": 1, "ros34pw2": 10}
"""Accepted steps between Jacobians: Rodas4 is not a W-method and needs a fresh one each step."""
STEPS_PER_CALL = 2000


def reduced_start(model: ModelParams, seed: int, init: str = "materialised"):
    """``(B0, Vr)``: ``W(0)`` of ``seed`` in reduced coordinates (see ``theory_sim.initial_law``).

    ``materialised`` draws the very ``W(0)`` of the other engines (``O(m d)``); ``reduced``
    draws from the same law at ``O(m^2)`` cost for any ``d``.
    """
    if init == "materialised":
        return initial_law.materialised_coordinates(model, seed)
    if init == "reduced":
        return initial_law.reduced_coordinates(model.m, model.L, model.d, seed)
    raise ParamError(f"init must be one of materialised, reduced (got {init!r})")


def _opts(train: TrainParams, rtol, atol, t_max, head_tol, vanish_persist, vanish_shrink, h_max, jac_every,
          vanish_accel, stiff_method=DEFAULT_STIFF_METHOD, vanish_head=DEFAULT_VANISH_HEAD):
    o = np.empty(_flow.N_OPTS)
    o[_flow.O_STIFFMETHOD] = STIFF_METHODS[stiff_method]
    o[_flow.O_VHEAD] = vanish_head
    o[_flow.O_RTOL] = rtol
    o[_flow.O_ATOL] = atol
    o[_flow.O_TMAX] = train.max_flow_time if t_max is None else t_max
    o[_flow.O_TOL] = train.tol
    o[_flow.O_ALIGN] = train.align_threshold
    o[_flow.O_MAXNORM] = train.max_norm
    o[_flow.O_HEADTOL] = head_tol
    o[_flow.O_VPERSIST] = vanish_persist
    o[_flow.O_VSHRINK] = vanish_shrink
    o[_flow.O_HMAX] = h_max
    o[_flow.O_JACEVERY] = jac_every
    o[_flow.O_VACCEL] = vanish_accel
    return o


def new_state(model: ModelParams, train: TrainParams, *, B0, Vr, E0=None, rtol=DEFAULT_RTOL,
              atol=None, t_record=None, t_max=None, head_tol=DEFAULT_HEAD_TOL,
              vanish_persist=DEFAULT_VANISH_PERSIST, vanish_shrink=DEFAULT_VANISH_SHRINK,
              h_max=math.inf, jac_every=None, vanish_accel=DEFAULT_VANISH_ACCEL,
              stiff_method=DEFAULT_STIFF_METHOD, vanish_head=None) -> dict:
    """Validate and allocate every array of a flow run, and evaluate its start."""
    if not isinstance(model, ModelParams) or not isinstance(train, TrainParams):
        raise TypeError("new_state(model, train, ...) takes a ModelParams and a TrainParams")
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
    if vanish_head is None:
        vanish_head = max(DEFAULT_VANISH_HEAD,
                          VANISH_HEAD_PER_SQRT_RATIO * math.sqrt(train.eta_E / train.eta))
    for name, v in (("rtol", rtol), ("head_tol", head_tol), ("vanish_persist", vanish_persist),
                    ("vanish_shrink", vanish_shrink), ("h_max", h_max), ("vanish_accel", vanish_accel),
                    ("vanish_head", vanish_head)):
        if not v > 0:
            raise ParamError(f"{name} must be > 0 (got {v!r})")
    if atol is None:
        atol = ATOL_FACTOR * float(np.sqrt(np.mean((B0 @ Vr) ** 2)))
    if not (atol >= 0 and math.isfinite(atol)):
        raise ParamError(f"atol must be >= 0 and finite (got {atol!r})")
    if stiff_method not in STIFF_METHODS:
        raise ParamError(f"stiff_method must be one of {', '.join(STIFF_METHODS)} (got {stiff_method!r})")
    if jac_every is None:
        jac_every = DEFAULT_JAC_EVERY[stiff_method]
    if not (isinstance(jac_every, int) and jac_every >= 1):
        raise ParamError(f"jac_every must be an integer >= 1 (got {jac_every!r})")
    if t_max is not None and not (t_max > 0 and math.isfinite(t_max)):
        raise ParamError(f"t_max must be > 0 and finite (got {t_max!r})")
    t_rec = np.zeros(0) if t_record is None else np.array(t_record, dtype=np.float64).ravel()
    if t_rec.size and (not np.all(np.isfinite(t_rec)) or np.any(t_rec < 0) or np.any(np.diff(t_rec) <= 0)):
        raise ParamError("t_record must be finite, >= 0 and strictly increasing")
    K = t_rec.size
    ratio = train.eta_E / train.eta
    mask = head_mask(train.head, m)
    st = {
        "y": np.concatenate([B0.ravel(), E0.ravel()]),
        "f0": np.zeros(B0.size + m * m),
        "J": np.zeros((B0.size + m * m,) * 2),
        "Vr": Vr, "mask": mask, "ratio": float(ratio), "shape": B0.shape,
        "opts": _opts(train, rtol, atol, t_max, head_tol, vanish_persist, vanish_shrink, h_max, jac_every,
                      vanish_accel, stiff_method, vanish_head),
        "fst": np.zeros(_flow.N_FST), "ist": np.zeros(_flow.N_IST, np.int64),
        "t1": -np.ones(m), "t2": -np.ones(m), "t4": -np.ones(m),
        "peak": np.zeros((m, m)), "peak_t": -np.ones((m, m)), "vstate": -np.ones((3, m)),
        "t_rec": t_rec, "rec_A": np.zeros((K, m, L)), "rec_gram": np.zeros((K, m, m)),
        "rec_E": np.zeros((K, m, m)), "rec_loss": np.zeros(K), "rec_rho": np.zeros((K, m)),
        "elapsed": 0.0,
    }
    st["model"] = model_constants(model)
    t0 = time.perf_counter()
    _flow.flow_init(st["y"], st["f0"], st["Vr"], st["mask"], st["model"], st["ratio"], st["opts"],
                    st["fst"], st["ist"], st["t1"], st["t2"], st["t4"], st["peak"], st["peak_t"],
                    st["t_rec"], st["rec_A"], st["rec_gram"], st["rec_E"], st["rec_loss"], st["rec_rho"])
    st["elapsed"] += time.perf_counter() - t0
    return st


def advance(st: dict, n_steps: int) -> int:
    """At most ``n_steps`` solver steps; returns the kernel status code."""
    t0 = time.perf_counter()
    code = _flow.flow_advance(st["y"], st["f0"], st["J"], st["Vr"], st["mask"], st["model"], st["ratio"],
                              st["opts"], st["fst"], st["ist"], st["t1"], st["t2"], st["t4"], st["peak"],
                              st["peak_t"], st["vstate"], st["t_rec"], st["rec_A"], st["rec_gram"],
                              st["rec_E"], st["rec_loss"], st["rec_rho"], int(n_steps))
    st["elapsed"] += time.perf_counter() - t0
    return int(code)


def phase_times(t1, t2, t4, peak_t, peak=None) -> dict:
    """T1..T4 (flow time) from the event arrays, with the roles of ``analysis.phase_times``:
    the leader learns ``v_1`` first; the follower is the first other neuron to learn ``v_2``
    (else the other neuron with the latest ``|E_fl|`` peak is not defined: None)."""
    m = len(t1)
    hits = [(t1[j], j) for j in range(m) if t1[j] >= 0]
    out = {"T1": None, "T2": None, "T3": None, "T4": None, "leader": None, "follower": None}
    if not hits:
        return out
    T1, leader = min(hits)
    out.update(T1=float(T1), leader=leader)
    v2 = [(t2[j], j) for j in range(m) if j != leader and t2[j] >= 0]
    if not v2:
        others = [j for j in range(m) if j != leader]
        if len(others) == 1:
            out["follower"] = others[0]
            if peak is None or peak[others[0], leader] > 0:
                out["T2"] = float(peak_t[others[0], leader]) if peak_t[others[0], leader] >= 0 else None
        return out
    T3, follower = min(v2)
    out.update(T3=float(T3), follower=follower)
    out["T2"] = float(peak_t[follower, leader]) if peak_t[follower, leader] >= 0 else None
    out["T4"] = float(t4[follower]) if t4[follower] >= 0 else None
    return out


def result(st: dict) -> dict:
    """The run so far as a dict of plain arrays and numbers."""
    m = st["mask"].shape[0]
    mr = st["shape"][0] * st["shape"][1]
    ist, fst = st["ist"], st["fst"]
    code = int(ist[_flow.I_STATUS])
    n = int(ist[_flow.I_NREC])
    return {
        "B": st["y"][:mr].reshape(st["shape"]).copy(), "E": st["y"][mr:].reshape(m, m).copy(),
        "t": float(fst[_flow.F_T]), "loss": float(fst[_flow.F_LOSS]),
        "status_code": code, "status": STATUS_NAMES.get(code, "interrupted"),
        "events": {k: st[k].copy() for k in ("t1", "t2", "t4", "peak", "peak_t")},
        "phase_times": phase_times(st["t1"], st["t2"], st["t4"], st["peak_t"], st["peak"]),
        "records": {"t": st["t_rec"][:n].copy(), "A": st["rec_A"][:n].copy(),
                    "gram": st["rec_gram"][:n].copy(), "E": st["rec_E"][:n].copy(),
                    "loss": st["rec_loss"][:n].copy(), "rho": st["rec_rho"][:n].copy()},
        "n_rhs": int(ist[_flow.I_NRHS]), "n_steps": int(ist[_flow.I_NSTEPS]),
        "n_rejected": int(ist[_flow.I_NREJECT]), "n_jac": int(ist[_flow.I_NJAC]),
        "n_switches": int(ist[_flow.I_NSWITCH]), "n_stiff_steps": int(ist[_flow.I_NSTIFFSTEPS]),
        "n_output_evals": int(ist[_flow.I_NOUT]), "elapsed": float(st["elapsed"]),
    }


def integrate_flow(model: ModelParams, train: TrainParams, *, B0, Vr, E0=None, rtol=DEFAULT_RTOL,
                   atol=None, t_record=None, t_max=None, head_tol=DEFAULT_HEAD_TOL,
                   vanish_persist=DEFAULT_VANISH_PERSIST, vanish_shrink=DEFAULT_VANISH_SHRINK,
                   h_max=math.inf, jac_every=None, vanish_accel=DEFAULT_VANISH_ACCEL,
                   stiff_method=DEFAULT_STIFF_METHOD, vanish_head=None,
                   steps_per_call=STEPS_PER_CALL) -> dict:
    """Integrate the gradient flow from ``(B0, E0)`` until it stops; see :func:`result`.

    ``t_max`` defaults to ``train.max_flow_time``; ``t_record``: increasing flow times at
    which ``A, gram, E, loss, rho`` are recorded (from the dense interpolant).
    ``vanish_persist=inf`` disables the vanishing-follower stop.
    """
    st = new_state(model, train, B0=B0, Vr=Vr, E0=E0, rtol=rtol, atol=atol, t_record=t_record,
                   t_max=t_max, head_tol=head_tol, vanish_persist=vanish_persist,
                   vanish_shrink=vanish_shrink, h_max=h_max, jac_every=jac_every,
                   vanish_accel=vanish_accel, stiff_method=stiff_method, vanish_head=vanish_head)
    while st["ist"][_flow.I_STATUS] == _jit.STATUS_RUNNING:
        advance(st, steps_per_call)
    return result(st)
