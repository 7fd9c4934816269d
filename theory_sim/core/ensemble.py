"""Many independent population runs in one call: ``prange`` over runs.

Every run advances with the very functions ``population_advance`` uses
(``population_step``, ``step_status``, ``convergence_status``, ``apply_step``), in
the same order, so its arithmetic is that of ``simulate()`` one run at a time.
Instead of a trajectory, each run keeps the events that docs/model.md section 9's
observables need, at step resolution. The kernel's arguments are grouped in tuples of
arrays indexed by run ``i`` (first axis):

* ``coords = (B, E)``: (n, m, r) reduced coordinates and (n, m, m) heads, advanced in place;
* ``consts = (Vr, E_mask, lam, moments, rates)``: ``Vr`` (n, r, L), ``E_mask`` (n, m, m),
  ``lam`` (n, L), ``moments[i] = (kx, k2, mu, sigma2)``, ``rates[i] = (eta, eta_E)``;
* ``limits = (stop_reals, stop_ints, head_tol)``: ``stop_reals[i] = (tol, align_threshold,
  max_norm)``, ``stop_ints[i] = (check_every, max_steps)``, ``head_tol[i]`` (T4's tolerance);
* ``counters[i] = (step, status, last_evaluated_step)``; ``status`` is ``STATUS_RUNNING``
  until the run stops (converged, budget, or a failure code);
* ``events = (first_v1, c_v1_at_first, first_v2, first_head_back, peak, peak_step)``:
  ``first_v1[j]`` / ``first_v2[j]`` the first step with ``|c_j1| >= thr`` / ``|c_j2| >= thr``
  (``-1``: never), ``c_v1_at_first[j]`` the value of ``|c_j1|`` then (it breaks ties between
  neurons that learn ``v_1`` at the same step, as ``analysis.phase_times`` does);
  ``first_head_back[j]`` (T4) the first step ``>= first_v2[j]`` with ``|E - I|_F < head_tol``;
  ``peak[j, r]`` / ``peak_step[j, r]`` the running maximum of ``|E_jr|`` (``j != r``) and the
  first step it was reached;
* ``final = (A_last, gram_diag_last, E_last, loss_last)``: ``A``, ``diag(W W^T)``, ``E`` and
  the loss at the last evaluated step, written once when the run stops
  (``c = A / sqrt(diag)``: the wrapper divides). Not when ``population_step`` fails (NaN,
  zero row): by then the workspace holds the failed state; the wrapper re-runs such a
  run with ``max_steps`` set to its last evaluated step, which ends on exactly that
  state (copying every step instead would cost every run ~10% for the sake of the rare
  failures). The loss is kept at every evaluated step.

A step is *evaluated* (its events are observed) when ``population_step`` succeeds at it,
exactly the points ``simulate()`` records with stride 1, plus the final state at
``max_steps`` (the point ``simulate()`` appends when the budget runs out).

Arrays in, arrays out; the wrapper is ``theory_sim.ensemble``.
"""

from __future__ import annotations

from ._jit import (
    STATUS_CONVERGED,
    STATUS_MAX_STEPS,
    STATUS_RUNAWAY,
    STATUS_RUNNING,
    njit,
    njit_parallel,
    prange,
)
from .events import observe
from .population import (
    apply_step,
    convergence_status,
    make_workspace,
    population_step,
    step_status,
    ws_A,
    ws_gram,
)


@njit
def advance_run(i, coords, consts, limits, counters, events, final, n_steps):
    """Advance run ``i`` by at most ``n_steps`` steps (arguments: the module docstring)."""
    if counters[i, 1] != STATUS_RUNNING:
        return
    B, E = coords
    Vr, E_mask, lam, moments, rates = consts
    stop_reals, stop_ints, head_tol = limits
    first_v1, c_v1_at_first, first_v2, first_head_back, peak, peak_step = events
    A_last, gram_diag_last, E_last, loss_last = final
    Bi, Ei, Vri, Mi = B[i], E[i], Vr[i], E_mask[i]
    m, r = Bi.shape
    L = Vri.shape[1]
    model = (lam[i], moments[i, 0], moments[i, 1], moments[i, 2], moments[i, 3])
    rate = (rates[i, 0], rates[i, 1])
    check_every = stop_ints[i, 0]
    max_steps = stop_ints[i, 1]
    stop = (stop_reals[i, 0], stop_reals[i, 1], stop_reals[i, 2], check_every)
    thr = stop_reals[i, 1]
    thr2 = thr * thr * (1.0 - 1e-9)
    htol = head_tol[i]
    ratio = rate[1] / rate[0]
    ws = make_workspace(m, r, L)
    A, gram = ws_A(ws), ws_gram(ws)
    f1, c1, f2, tt4 = first_v1[i], c_v1_at_first[i], first_v2[i], first_head_back[i]
    pk, pks = peak[i], peak_step[i]
    step = counters[i, 0]
    last = counters[i, 2]
    last_loss = loss_last[i]
    end = step + n_steps
    to_check = (-step) % check_every  # a countdown, as population_advance keeps
    status = STATUS_RUNNING
    while step < end:
        loss, speed_w, speed_e = population_step(Bi, Ei, Vri, Mi, model, rate, ws)
        final_step = step >= max_steps  # simulate() appends the final state whatever its status
        if not final_step:
            status = step_status(loss, speed_w, speed_e)
            if status != STATUS_RUNNING:
                break
        observe(step, A, gram, Ei, thr, thr2, htol, f1, c1, f2, tt4, pk, pks)
        last, last_loss = step, loss
        if final_step:
            status = STATUS_MAX_STEPS
            break
        if to_check == 0:
            to_check = check_every
            if step > 0:
                status = convergence_status(A, gram, speed_w, speed_e, ratio, stop)
                if status != STATUS_RUNNING:
                    break
        apply_step(Bi, Ei, rate, ws)
        step += 1
        to_check -= 1
    counters[i, 0] = step
    counters[i, 1] = status
    counters[i, 2] = last
    loss_last[i] = last_loss
    if status == STATUS_CONVERGED or status == STATUS_MAX_STEPS or status == STATUS_RUNAWAY:
        # stopped right after evaluating ``last``: the workspace and E still hold that state
        for j in range(m):
            gram_diag_last[i, j] = gram[j, j]
            for l in range(L):
                A_last[i, j, l] = A[j, l]
            for q in range(m):
                E_last[i, j, q] = Ei[j, q]


@njit_parallel
def batched_advance(active, coords, consts, limits, counters, events, final, n_steps):
    """Advance the runs listed in ``active`` by at most ``n_steps`` steps each, in parallel.

    Returns the number of runs (of all, not only ``active``) still running. Runs take
    very different times: call it with numba's parallel chunk size at 1 so that they
    are handed to the threads one at a time.
    """
    for k in prange(active.shape[0]):
        advance_run(active[k], coords, consts, limits, counters, events, final, n_steps)
    return _running(counters)


@njit
def batched_advance_serial(active, coords, consts, limits, counters, events, final, n_steps):
    """``batched_advance`` on the calling thread only (for callers that run several
    batches concurrently, e.g. Dask worker threads: the kernel releases the GIL)."""
    for k in range(active.shape[0]):
        advance_run(active[k], coords, consts, limits, counters, events, final, n_steps)
    return _running(counters)


@njit
def _running(counters):
    n = 0
    for i in range(counters.shape[0]):
        if counters[i, 1] == STATUS_RUNNING:
            n += 1
    return n
