"""Many gradient-flow runs (docs/model.md section 11): the one call site of the flow engine
behind figs 4, 5 and 8, and the Wilson interval their data files carry.

:func:`run_flow_many` drives the flow engine through the module-level functions of
``theory_sim.engines.flow`` (``new_state``, ``advance_state``, ``event_arrays``), not through
``simulate_many(engine="flow")``, because the figures need what that path does not offer: a
solver-step budget per run, a stop at the first ``T1`` (fig 4), the vanishing rule switched
off for a rescue (``make_opts``' ``vanish_persist``), and ``d`` beyond ``ModelParams``' range
(the flow sees ``d`` only through ``W(0)``). No trajectory is recorded: only the final state
and the phase events. Runs go to a pool of threads (the flow kernel releases the GIL).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..core import _jit
from ..core.flow import F_T, I_NSTEPS, I_STATUS
from ..engines import flow as flow_engine
from ..events import EVENT_ARRAYS, phase_times_from_events
from ..initial_law import reduced_coordinates
from ..model import head_mask, model_constants
from ..status import BN_OUTCOMES, STATUS_NAMES, outcome_from
from .runs import Progress

FLOW_OUTCOMES = BN_OUTCOMES
"""The outcomes of a flow run (``status.BN_OUTCOMES``): ``vanishing`` (the flow engine's stop
rule, docs/model.md section 10) beside ``diverse``, ``collapsed`` and ``incomplete``."""
NO_CAP = 1e300
"""Flow-time cap meaning none: a run ends converged, vanishing, diverged or at its step budget."""
DEFAULT_MAX_STEPS = 20_000
"""Solver steps a run may take (the default run takes ~500; a stalled follower at d >= 1e8
takes ~20 us a step without settling, docs/paper.md, appendix)."""
STEP_CHUNK = 500
T1_CHUNK = 20
"""Steps between checks for a first T1 (``until="T1"``): a run stops at most this many steps after it."""
FLOW_RUN_UNITS = 0.05
"""Progress units (``plan.cost``: one short discrete population run) of one flow run."""


def wilson_interval(k, n, z: float = 1.959963984540054):
    """95 % Wilson score interval ``(low, high)`` of a proportion ``k / n`` (arrays allowed;
    ``n = 0`` gives ``(0, 1)``)."""
    k = np.asarray(k, float)
    n = np.asarray(n, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(n > 0, k / np.maximum(n, 1), 0.5)
        den = 1.0 + z * z / np.maximum(n, 1)
        centre = (p + z * z / (2 * np.maximum(n, 1))) / den
        half = z * np.sqrt(p * (1 - p) / np.maximum(n, 1) + z * z / (4 * np.maximum(n, 1) ** 2)) / den
    lo = np.where((n > 0) & (k > 0), np.clip(centre - half, 0.0, 1.0), 0.0)  # exact ends at k = 0, n
    hi = np.where((n > 0) & (k < n), np.clip(centre + half, 0.0, 1.0), 1.0)
    return (float(lo), float(hi)) if lo.ndim == 0 else (lo, hi)


def _features(B, Vr, threshold):
    A = B @ Vr
    nrm = np.sqrt((B ** 2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.abs(np.where(nrm[:, None] > 0, A / nrm[:, None], 0.0))
    feats = [int(np.argmax(c[j])) if c[j].max() >= threshold else None for j in range(c.shape[0])]
    return feats, c, nrm


def _integrate(model, train, B0, Vr, t_max, max_steps, until, vanish_persist):
    """One flow run from ``(B0, Vr)`` until it stops, at most ``max_steps`` solver steps."""
    t0 = time.perf_counter()
    train = dataclasses.replace(train, engine="flow", steps=None)
    st = flow_engine.new_state(model, train, B0, Vr, t_record=np.zeros(0), t_max=t_max,
                               vanish_persist=vanish_persist)
    mask, model_t, ratio = head_mask(train.head, model.m), model_constants(model), train.eta_E / train.eta
    chunk = STEP_CHUNK if until == "converged" else T1_CHUNK
    steps = 0
    while st["ist"][I_STATUS] == _jit.STATUS_RUNNING and steps < max_steps:
        n = min(chunk, max_steps - steps)
        flow_engine.advance_state(st, mask, model_t, ratio, n)
        steps += n
        if until == "T1" and np.any(st["t1"] >= 0):
            break
    m = model.m
    code = int(st["ist"][I_STATUS])
    return {"B": st["coords"][:-m * m].reshape(m, -1).copy(), "E": st["coords"][-m * m:].reshape(m, m).copy(),
            "t": float(st["fst"][F_T]), "status": STATUS_NAMES.get(code, "interrupted"),
            "events": flow_engine.event_arrays(st), "n_steps": int(st["ist"][I_NSTEPS]),
            "elapsed": time.perf_counter() - t0}


def _one(model, train, seed, d, init, t_max, max_steps, until, rescue_steps):
    if init == "reduced":
        B0, Vr = reduced_coordinates(model.m, model.L, d, seed)
    else:
        B0, Vr = flow_engine.reduced_start(model, seed, init)
    r = _integrate(model, train, B0, Vr, t_max, max_steps, until, flow_engine.DEFAULT_VANISH_PERSIST)
    flagged = r["status"] == "vanishing"
    flagged_t = r["t"] if flagged else None
    escaped = False
    if flagged and rescue_steps > 0:
        # the vanishing rule can fire on a follower that escapes along v_2 much later
        # (docs/paper.md, vanishing rule): run on with the rule off, within a step budget
        r2 = _integrate(model, train, B0, Vr, t_max, rescue_steps, until, math.inf)
        if r2["status"] == "converged":
            r, escaped = r2, True
        else:
            r = {**r2, "status": "vanishing"}
    feats, c, nrm = _features(r["B"], Vr, train.align_threshold)
    status = r["status"]
    if status == "converged":
        outcome = outcome_from(feats, settled=True)
    elif status == "vanishing":
        # the kernel's verdict, not overturned by the rescue (if any) within its budget: the
        # definition of docs/paper.md appendix [A1] (the rescued state may show other features)
        outcome = "vanishing"
    else:
        outcome = "incomplete"
    ev = r["events"]
    pt = phase_times_from_events(*(ev[k] for k in EVENT_ARRAYS), c, status, r["t"])
    peak = np.asarray(ev["peak"], float).copy()
    np.fill_diagonal(peak, 0.0)
    lead, fol = pt["leader"], pt["follower"]
    return {"status": status, "outcome": outcome, "d": d, "seed": seed, "t": r["t"],
            "T1": pt["T1"], "T2": pt["T2"], "T3": pt["T3"], "T4": pt["T4"], "leader": lead, "follower": fol,
            "features": feats, "alignment": c, "norms": nrm, "E": r["E"], "peak_offdiag": peak,
            "n_steps": r["n_steps"], "elapsed": r["elapsed"], "flagged_vanishing_at": flagged_t, "B0": B0,
            "escaped_after_vanishing": escaped}


def run_flow_many(models, trains, seeds=None, init: str = "reduced", *, dims=None, t_max: float = NO_CAP,
                  max_steps: int = DEFAULT_MAX_STEPS, until: str = "converged", rescue_steps: int = 0,
                  progress: Progress | None = None, threads: int | None = None) -> list[dict]:
    """Gradient-flow runs ``(models[i], trains[i])`` from ``W(0)`` of ``seeds[i]`` -> one dict each.

    ``models``: one :class:`ModelParams` or one per run; ``seeds``: ``None`` takes
    ``trains[i].seed``; ``init``: ``reduced`` (the d-free law, any ``d``) or ``materialised``;
    ``dims``: the ``d`` of each run's initial law when it exceeds what ``ModelParams`` accepts
    (the flow sees ``d`` only through ``W(0)``, docs/model.md section 11; needs ``reduced``).
    Only ``eta_E / eta``, ``head``, ``tol`` and ``align_threshold`` of a train matter: times are flow times.
    ``until="T1"`` stops each run at its first ``T1`` (fig 4). ``rescue_steps > 0``: a run the
    kernel stops as ``vanishing`` is run again with that rule off for at most this many steps;
    if it then converges its outcome is what it learned (``escaped_after_vanishing``).

    Each dict: ``status`` (converged / vanishing / max_steps / diverged / interrupted: the
    step budget), ``outcome`` (one of :data:`FLOW_OUTCOMES`), ``t`` (flow time at the stop),
    ``T1..T4``, ``leader``, ``follower``, ``features``, ``alignment`` (m x L ``|c_jl|``),
    ``norms``, ``E``, ``peak_offdiag``, ``n_steps``, ``elapsed``, the vanishing flags and ``B0``
    (the reduced initial coordinates ``[A, K]``, docs/model.md section 11).
    """
    n = len(trains)
    models = list(models) if isinstance(models, (list, tuple)) else [models] * n
    seeds = [t.seed for t in trains] if seeds is None else list(seeds)
    dims = [mo.d for mo in models] if dims is None else [int(x) for x in dims]
    if not (len(models) == len(seeds) == len(dims) == n):
        raise ValueError("run_flow_many: models, trains, seeds and dims must have one entry per run")
    if init not in ("reduced", "materialised"):
        raise ValueError(f"init must be one of reduced, materialised (got {init!r})")
    if until not in ("converged", "T1"):
        raise ValueError(f"until must be one of converged, T1 (got {until!r})")
    if init == "materialised" and any(d != mo.d for d, mo in zip(dims, models, strict=True)):
        raise ValueError("dims other than model.d need init='reduced'")
    threads = threads or max(1, min(os.cpu_count() or 1, 4))

    def job(i):
        return _one(models[i], trains[i], seeds[i], dims[i], init, t_max, max_steps, until, rescue_steps)

    out: list = [None] * n
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for i, res in zip(range(n), pool.map(job, range(n)), strict=True):
            out[i] = res
            if progress is not None:
                progress(FLOW_RUN_UNITS)
    return out


def count_outcomes(results, outcomes=FLOW_OUTCOMES) -> dict:
    """``{outcome: count}`` over ``results`` (every outcome present, 0 when absent)."""
    counts = dict.fromkeys(outcomes, 0)
    for r in results:
        counts[r["outcome"]] += 1
    return counts
