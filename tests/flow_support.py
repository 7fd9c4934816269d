"""The flow kernel for the kernel tests, through ``theory_sim.engines.flow`` (``new_state``,
``advance``, ``integrate``, ``FlowState``'s accessors): start from given reduced coordinates,
override the solver's options, read every counter. The public path is
``simulate(..., TrainParams(engine="flow"))``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from theory_sim.engines import flow as engine
from theory_sim.status import STATUS_NAMES

reduced_start = engine.reduced_start
DEFAULT_VANISH_HEAD = engine.DEFAULT_VANISH_HEAD
VANISH_PERSIST_OPT_IN = engine.VANISH_PERSIST_OPT_IN
DEFAULT_RTOL = 1e-7


def new_state(model, train, *, B0, Vr, E0=None, rtol=DEFAULT_RTOL, atol=None, t_record=None, **opts):
    """``engines.flow.new_state`` with ``rtol``/``atol`` set on ``train`` (flow engine): a ``FlowState``."""
    train = dataclasses.replace(train, engine="flow", rtol=rtol, atol=atol)
    return engine.new_state(model, train, B0, Vr, E0, t_record=np.zeros(0) if t_record is None else t_record,
                            **opts)


def advance(st, n_steps):
    return engine.advance(st, n_steps)


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


def result(st) -> dict:
    """The run so far as a dict of plain arrays and numbers."""
    code, stats = st.status, st.stats()
    t, A, gram, E, loss, rho = st.recorded()
    return {
        "B": st.coordinates(), "E": st.head(), "t": st.time, "loss": st.loss,
        "status_code": code, "status": STATUS_NAMES.get(code, "interrupted"),
        "events": {k: getattr(st, k).copy() for k in ("t1", "t2", "t4", "peak", "peak_t")},
        "phase_times": phase_times(st.t1, st.t2, st.t4, st.peak_t, st.peak),
        "records": {"t": t, "A": A, "gram": gram, "E": E, "loss": loss, "rho": rho},
        "n_rhs": stats["n_rhs"], "n_steps": stats["accepted_steps"], "n_rejected": stats["rejected_steps"],
        "n_jac": stats["jacobians"], "n_switches": stats["switches"], "n_stiff_steps": stats["stiff_steps"],
        "n_output_evals": stats["output_evals"], "elapsed": st.elapsed,
    }


def integrate_flow(model, train, *, B0, Vr, E0=None, steps_per_call=2000, **kw):
    """Integrate until the run stops (``engines.flow.integrate``); see :func:`result`."""
    st = new_state(model, train, B0=B0, Vr=Vr, E0=E0, **kw)
    engine.integrate(st, steps_per_call=steps_per_call)
    return result(st)
