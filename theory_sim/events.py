"""Phase events tracked at every step by the kernels, and the phase times read off them.

docs/model.md section 9. Every engine and the ensemble observe the evaluated state at
every step with ``core.events.observe`` (the same function), so ``simulate`` and
``simulate_many`` report the same phase times at step resolution whatever ``record`` is.
This module is the python side: allocation and the rule that turns events into
``T1..T4``, leader and follower (pure numpy, shared by ``ensemble`` and ``analysis``).
"""

from __future__ import annotations

import numpy as np

EVENT_ARRAYS = ("first_v1", "c_v1_at_first", "first_v2", "first_head_back", "peak", "peak_step")
"""The per-run event arrays, in the order of the kernels' ``events`` tuple (``core.events``):
first step with ``|c_j1| >= thr``, ``|c_j1|`` then, first step with ``|c_j2| >= thr``, first
step ``>= first_v2[j]`` with ``|E - I|_F < head_tol`` (T4), running maximum of ``|E_jr|``
and the first step it was reached (``-1``: never)."""


def new_events(m: int) -> tuple:
    """Fresh event arrays of one run, plus ``last_evaluated`` (1,) (``-1``: nothing yet)."""
    return (np.full(m, -1, dtype=np.int64), np.zeros(m), np.full(m, -1, dtype=np.int64),
            np.full(m, -1, dtype=np.int64), np.full((m, m), -1.0), np.full((m, m), -1, dtype=np.int64),
            np.full(1, -1, dtype=np.int64))


def event_params(align_threshold: float, head_tol: float) -> tuple:
    """The kernels' ``(thr, thr2, head_tol)``: ``thr2`` a little below ``thr^2`` screens cheaply."""
    return (float(align_threshold), float(align_threshold) ** 2 * (1.0 - 1e-9), float(head_tol))


def phase_times_from_events(first_v1, c_v1_at_first, first_v2, first_head_back, peak, peak_step,
                            c_final: np.ndarray, status: str, last: int) -> dict:
    """``analysis.phase_times`` from the events of one run (step resolution).

    The event times are steps (int arrays, the discrete engines) or flow times (float
    arrays, the flow engine); the phase times come back in the same unit.
    ``c_final`` (m, L): final ``|c_jl|`` (picks the follower when none learns ``v_2``);
    ``last``: the last evaluated step (T2 is ``None`` when the peak is still rising there
    and the run has not converged).
    """
    none = {"T1": None, "T2": None, "T3": None, "T4": None, "leader": None, "follower": None}
    m, L = c_final.shape
    as_time = float if np.asarray(first_v1).dtype.kind == "f" else int
    hits = [(as_time(first_v1[j]), -float(c_v1_at_first[j]), j) for j in range(m) if first_v1[j] >= 0]
    if not hits:
        return none
    T1, _, leader = min(hits)
    others = [j for j in range(m) if j != leader]
    if not others:
        return none | {"T1": T1, "leader": leader}
    follower, T3 = None, None
    if L >= 2:
        v2 = [(as_time(first_v2[j]), j) for j in others if first_v2[j] >= 0]
        if v2:
            T3, follower = min(v2)
    if follower is None:
        col = c_final[others, 1 if L >= 2 else 0]
        follower = others[int(np.argmax(col))]
    top = float(peak[follower, leader])
    at = as_time(peak_step[follower, leader])
    T2 = None if top <= 0.0 or (at == last and status != "converged") else at
    T4 = None
    if T3 is not None and first_head_back[follower] >= 0:
        T4 = as_time(first_head_back[follower])
    return {"T1": T1, "T2": T2, "T3": T3, "T4": T4, "leader": leader, "follower": follower}


PHASES = ("T1", "T2", "T3", "T4")


def both_units(times: dict, unit: str, eta: float) -> dict:
    """``times`` (``T1..T4`` in ``unit``, ``"steps"`` or ``"flow_time"``) with the phase times
    in steps (``T1..T4``; from flow time: the nominal step ``round(t / eta)``) and in flow
    time (``T1_flow..T4_flow``; from steps: ``eta * step``)."""
    out = dict(times)
    for k in PHASES:
        v = times[k]
        if unit == "flow_time":
            out[k] = None if v is None else int(round(v / eta))
            out[f"{k}_flow"] = None if v is None else float(v)
        else:
            out[f"{k}_flow"] = None if v is None else v * eta
    return out
