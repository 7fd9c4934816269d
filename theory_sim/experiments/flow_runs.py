"""Many gradient-flow runs (docs/model.md section 11): the one call site of the flow engine
behind figs 4, 5 and 8.

:func:`run_flow_many` drives the flow engine through the module-level functions of
``theory_sim.engines.flow`` (``new_state``, ``integrate``, ``FlowState``), not through
``simulate_many(engine="flow")``, because the figures need what that path does not offer: a
stop at the first ``T1`` (fig 4) and ``d`` beyond ``ModelParams``' range (the flow sees ``d``
only through ``W(0)``). Every run goes to its fate: converged, or the flow-time cap. No
trajectory is recorded: only the final state and the phase events. Runs go to a pool of threads
(the flow kernel releases the GIL).
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..engines import flow as flow_engine
from ..initial_law import reduced_coordinates
from ..outcome import classify
from ..status import BN_OUTCOMES, STATUS_NAMES
from .runs import Progress

FLOW_OUTCOMES = tuple(oc for oc in BN_OUTCOMES if oc != "vanishing")
"""The outcomes of a flow run here: every run ends converged (``diverse`` / ``collapsed``), or at
its flow-time cap or a numerical failure (``incomplete``). No stop rule guesses a fate (the
opt-in ``vanishing`` rule is not used), and no step budget stands in for one."""
FLOW_RUN_UNITS = 0.05
"""Progress units (``plan.cost``: one short discrete population run) of one flow run."""


def _one(model, train, seed, d, init, t_max, until):
    """One flow run from ``W(0)`` of ``seed`` until it stops (``t_max``: None, the engine's default cap)."""
    if init == "reduced":
        B0, Vr = reduced_coordinates(model.m, model.L, d, seed)
    else:
        B0, Vr = flow_engine.reduced_start(model, seed, init)
    train = dataclasses.replace(train, engine="flow", steps=None, max_flow_time=None)  # the flow default cap
    st = flow_engine.new_state(model, train, B0, Vr, t_record=np.zeros(0), t_max=t_max)
    flow_engine.integrate(st, until=until)
    status = STATUS_NAMES[st.status]
    B = st.coordinates()
    nrm = np.linalg.norm(B, axis=1)
    c, feats, outcome = classify(B @ Vr, nrm, status, train.align_threshold)
    pt = st.phase_times(status)
    peak = st.peak.copy()
    np.fill_diagonal(peak, 0.0)
    stats = st.stats()
    return {"status": status, "outcome": outcome, "d": d, "seed": seed, "t": st.time,
            "T1": pt["T1"], "T2": pt["T2"], "T3": pt["T3"], "T4": pt["T4"], "leader": pt["leader"],
            "follower": pt["follower"], "features": feats, "alignment": c, "norms": nrm, "E": st.head(),
            "peak_offdiag": peak, "n_steps": stats["accepted_steps"], "n_rhs": stats["n_rhs"],
            "elapsed": st.elapsed, "B0": B0}


def run_flow_many(models, trains, seeds=None, init: str = "reduced", *, dims=None, t_max: float | None = None,
                  until: str = "converged", progress: Progress | None = None,
                  threads: int | None = None) -> list[dict]:
    """Gradient-flow runs ``(models[i], trains[i])`` from ``W(0)`` of ``seeds[i]`` -> one dict each.

    ``models``: one :class:`ModelParams` or one per run; ``seeds``: ``None`` takes
    ``trains[i].seed``; ``init``: ``reduced`` (the d-free law, any ``d``) or ``materialised``;
    ``dims``: the ``d`` of each run's initial law when it exceeds what ``ModelParams`` accepts
    (the flow sees ``d`` only through ``W(0)``, docs/model.md section 11; needs ``reduced``).
    Only ``eta_E / eta``, ``head``, ``tol`` and ``align_threshold`` of a train matter: times are flow times.
    ``until="T1"`` stops each run at its first ``T1`` (fig 4). ``t_max``: the flow-time cap of
    every run (None: the engine's default, ``engines.flow.horizon``).

    Each dict: ``status`` (converged, max_steps: the flow-time cap, diverged, or interrupted:
    stopped at T1), ``outcome`` (one of :data:`FLOW_OUTCOMES`), ``t`` (flow time at the stop),
    ``T1..T4``, ``leader``, ``follower``, ``features``, ``alignment`` (m x L ``|c_jl|``),
    ``norms``, ``E``, ``peak_offdiag``, ``n_steps``, ``n_rhs``, ``elapsed`` and ``B0``
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
        return _one(models[i], trains[i], seeds[i], dims[i], init, t_max, until)

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
