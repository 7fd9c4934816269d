"""Settings outside the regime the model is stated for (docs/model.md sections 1-5).

Pure functions: each returns warning strings (one line each, naming the assumption
and the likely consequence) and never refuses anything; ``theory-sim run`` prints
them on stderr and runs anyway. A setting that cannot run at all is a
:class:`~theory_sim.params.ParamError` instead (params.py).
"""

from __future__ import annotations

import numpy as np

from .params import ModelParams, TrainParams

FD_STEP = 1e-6
"""Central-difference step of the Jacobian in :func:`step_curvature` (reduced coordinates,
where the rows of ``W`` have norm ~1: truncation and rounding errors are both ~1e-10)."""

MAX_UNKNOWNS = 600
"""Above this many coordinates (m (L + 2m) > 600, about m > 15) the finite-difference Jacobian is not worth
its cost (2 n gradient evaluations, an n x n eigenproblem) and the step check is skipped."""


def _spectral_radius_of_step(model: ModelParams, W: np.ndarray) -> float:
    """Spectral radius of ``J``, the Jacobian of the stop-gradient field ``dL/dW`` at
    ``(W, E = I)``, in reduced coordinates (docs/model.md section 7)."""
    from . import feature_vectors, population_grad

    m = model.m
    V = feature_vectors(model)
    # reduced coordinates: span(v_1..v_L, rows of W) plus m spare directions, so that
    # noise directions are represented even where W lies in span(V)
    spare = np.random.default_rng(0).standard_normal((model.d, m))
    Q, _ = np.linalg.qr(np.concatenate([V, W.T, spare], axis=1))
    Q = Q[:, : min(Q.shape[1], model.d)]
    B0 = W @ Q
    E = np.eye(m)
    n = B0.size
    if n > MAX_UNKNOWNS:
        return float("nan")

    def field(x):
        return (population_grad(x.reshape(B0.shape) @ Q.T, E, model)[0] @ Q).ravel()

    x0 = B0.ravel()
    J = np.empty((n, n))
    with np.errstate(all="ignore"):
        for i in range(n):
            e = np.zeros(n)
            e[i] = FD_STEP
            J[:, i] = (field(x0 + e) - field(x0 - e)) / (2.0 * FD_STEP)
    if not np.all(np.isfinite(J)):
        return float("nan")
    return float(np.max(np.abs(np.linalg.eigvals(J))))


def step_curvature(model: ModelParams, train: TrainParams) -> float:
    """The largest curvature a gradient step meets: ``max(rho(W(0)), rho(W*))``.

    ``rho(W)`` is the spectral radius of the Jacobian of the gradient field that a
    step of :func:`theory_sim.simulate` follows in ``W`` (the stop-gradient gradient of
    ``theory_sim.population_loss``) at E = I, computed by central finite differences of
    ``theory_sim.population_grad`` in reduced coordinates (docs/model.md sections 6-7).
    The head is left out on purpose: its curvature at the learned state is large
    (``d^2 L / dE_21^2 = 70`` at the defaults, so ``eta_E < 0.03``) and the figures explore
    ``eta_E`` beyond it on purpose (``eta_E / eta`` up to 1 in Fig. 5).
    It is evaluated at the run's own ``W(0)`` (seed ``train.seed``) and at the state
    the paper's story ends in, ``w_j = v_(j mod L)``: the curvature grows as features
    are learned, and at initialisation it depends strongly on the seed.
    """
    from . import feature_vectors, initial_weights

    W0 = initial_weights(model, train.seed)
    V = feature_vectors(model)
    learned = np.ascontiguousarray(V[:, [j % model.L for j in range(model.m)]].T)
    rhos = [_spectral_radius_of_step(model, W) for W in (W0, learned)]
    return float("nan") if np.isnan(rhos).any() else max(rhos)


def small_step_bound(model: ModelParams, train: TrainParams) -> float:
    """The largest ``eta`` of the small-step regime: ``2 / step_curvature``.

    Linearised at a point, a step maps a perturbation ``delta`` to ``(I - eta J) delta``;
    along an eigenvector with eigenvalue ``lambda > 0`` it is damped only while
    ``eta lambda < 2`` (beyond that it flips sign and grows every step: oscillation, then
    divergence), and along an escape direction (``lambda < 0``) one step multiplies it by
    ``1 + eta |lambda|`` instead of ``exp(eta |lambda|)``, so the phase times in flow time
    are those of gradient flow (docs/model.md section 11) only while ``eta |lambda| << 1``.
    ``eta < 2 / max |lambda|`` is therefore necessary for the discrete run to follow the
    flow that the theory describes. Measured: at the defaults (d = 512, seed 1) the bound is
    about 4; at d = 512, seed 3 it is 1.3 and eta = 1 already moves T1 from flow time 70
    to 4.
    """
    rho = step_curvature(model, train)
    if np.isnan(rho):
        return float("nan")
    return float("inf") if rho <= 0 else 2.0 / rho


def regime_warnings(model: ModelParams, train: TrainParams, *, check_step: bool = True) -> list[str]:
    """One-line warnings for settings outside the model's regime (empty when inside it).

    Checked: strengths that do not decrease, a single feature with ``m >= 2``,
    ``m = 1``, ``eta`` beyond :func:`small_step_bound` (skipped with ``check_step=False``).
    ``k = 1`` would be one, but ModelParams refuses ``k < 2`` (the views would share no
    feature).
    """
    out = []
    alpha, m, L = model.alpha, model.m, model.L
    shown = ",".join(f"{a:g}" for a in alpha)
    if L >= 2 and any(b >= a for a, b in zip(alpha, alpha[1:], strict=False)):
        out.append(f"alpha = {shown} does not decrease: the model assumes alpha_1 > alpha_2 > ... "
                   f"(docs/model.md section 1), so the strongest feature is learned first and the "
                   f"phase labels (T1 = v1 learned, T3 = v2 learned) may not apply; "
                   f"list the strengths in decreasing order")
    if L == 1 and m >= 2:
        out.append(f"a single feature (alpha = {shown}) with m = {m} neurons: there is no second "
                   f"feature, so the neurons can only collapse onto v1 and T3 is never reached "
                   f"(the run may go on to the cap); give two strengths, e.g. --alpha 6,3")
    if m == 1:
        out.append("m = 1: a single neuron has no partner, so the head has no off-diagonal entry "
                   "to learn and phases II-IV (T2-T4, docs/model.md section 5) cannot happen; "
                   "use --m 2 (the paper's)")
    if check_step:
        bound = small_step_bound(model, train)
        if train.eta > bound:  # False for nan: too many unknowns or a degenerate point
            out.append(f"eta = {train.eta:g} is beyond the small-step regime (eta < {bound:.3g} = 2 / "
                       f"the largest curvature of the loss at W(0) and at the learned state): steps "
                       f"no longer follow the gradient flow of docs/model.md section 11, so phase "
                       f"times shift and entries may oscillate or blow up; use --eta {bound / 10:.2g} "
                       f"(a tenth of the bound) or smaller")
    return out


# ---------------------------------------------------------------- why a run is incomplete

TAIL_FRACTION = 0.1
"""The last 10 % of the recorded flow time is what "still moving" and "oscillating" look at."""
MOVING = 1e-3
"""A change of some ``|c_jl|`` larger than this over the tail: the run was still moving."""
OSCILLATING = 0.5
"""Fraction of successive differences over the tail that change sign: above this, oscillation."""


def _tail(run) -> slice:
    t = np.asarray(run.steps, dtype=float)
    start = int(np.searchsorted(t, t[-1] - TAIL_FRACTION * (t[-1] - t[0])))
    return slice(min(start, len(t) - 2) if len(t) >= 2 else 0, len(t))


def _sign_flip_fraction(x: np.ndarray) -> float:
    """Largest fraction, over the columns of ``x`` (time first), of successive
    differences that flip sign (columns that do not move are ignored)."""
    dx = np.diff(x.reshape(x.shape[0], -1), axis=0)
    if dx.shape[0] < 8:
        return 0.0
    scale = np.abs(dx).max(axis=0)
    live = scale > 1e-12 * (1.0 + np.abs(x).max())
    if not live.any():
        return 0.0
    s = np.sign(dx[:, live])
    return float((s[1:] * s[:-1] < 0).mean(axis=0).max())


def incomplete_reasons(run, threshold: float = 0.9) -> list[str]:
    """Why a run's outcome is ``incomplete``, in words (empty for other outcomes).

    From the final state and the recorded trajectory (docs/model.md sections 5, 9, 10):
    interrupted or diverged; a neuron still near its initialisation (``max_l |c_jl| <
    4 / sqrt(d)``: the escape from ``O(1/sqrt(d))`` alignment can take longer than any
    cap); a neuron between features; stopped at the cap while still moving (some ``|c|``
    changed by more than :data:`MOVING` over the last 10 % of the flow time) or nearly
    stationary (a saddle); oscillating (more than half the successive changes of the loss,
    the alignments or the head over that tail flip sign); a head entry far above the
    paper's ``Theta(sqrt(eta_E / eta))``.
    """
    from . import analysis

    if analysis.outcome(run, threshold) != "incomplete":
        return []
    out = []
    eta = run.eta
    flow = float(run.flow_time[-1]) if len(run.steps) else 0.0
    if run.status == "vanishing":
        out.append(run.message)
    if run.status == "interrupted":
        out.append(f"interrupted at flow time {flow:.6g} before it settled; continue with --resume")
    if run.status == "diverged":
        out.append(run.message)
    c = np.abs(np.asarray(run.alignment))
    if c.shape[0] == 0:
        return out
    d = int(run.config["model"]["d"])
    near = min(0.5, 4.0 / np.sqrt(d))
    final = c[-1]
    for j in range(final.shape[0]):
        best = int(np.argmax(final[j]))
        if final[j, best] >= threshold:
            continue
        if final[j, best] < near:
            out.append(f"neuron {j + 1} is still close to its initialisation (max |c| = "
                       f"{final[j, best]:.3g} < 4/sqrt(d) = {near:.3g}): its escape from O(1/sqrt(d)) "
                       f"alignment takes longer than this run (docs/model.md section 10); "
                       f"raise --max-flow-time or try another --seed")
        else:
            parts = ", ".join(f"{final[j, l]:.2f} on v{l + 1}" for l in np.argsort(-final[j])[:2])
            out.append(f"neuron {j + 1} is between features (|c| = {parts}), "
                       f"below the threshold {threshold:g}")
    tail = _tail(run)
    if run.status == "max_steps" and c.shape[0] >= 2:
        moved = float(np.abs(c[-1] - c[tail.start]).max())
        where = f"flow time {flow:.6g}" + (" (the cap)" if run.config["train"].get("steps") is None else "")
        if moved > MOVING:
            out.append(f"stopped at {where} while still moving: some |c| changed by {moved:.3g} over the "
                       f"last {TAIL_FRACTION:.0%} of the run; raise --max-flow-time (or --steps)")
        else:
            out.append(f"stopped at {where}, nearly stationary (|c| changed by {moved:.2g} over the last "
                       f"{TAIL_FRACTION:.0%}): a saddle, whose escape can take much longer")
    if run.status != "diverged" and run.stats is None:  # the flow engine takes no steps of size eta
        flips = max(_sign_flip_fraction(np.asarray(run.loss)[tail]), _sign_flip_fraction(c[tail]),
                    _sign_flip_fraction(np.asarray(run.E)[tail]))
        if flips > OSCILLATING:
            out.append(f"oscillating: {flips:.0%} of the successive changes over the last "
                       f"{TAIL_FRACTION:.0%} flip sign; lower --eta (now {eta:g}) or --eta-E")
    E = np.asarray(run.E)[-1]
    off = np.abs(E - np.diag(np.diag(E)))
    eta_E = run.config["train"].get("eta_E")
    if off.size and eta_E is not None and eta > 0:
        expected = np.sqrt(float(eta_E) / eta)
        j, r = np.unravel_index(int(np.argmax(off)), off.shape)
        if off[j, r] > max(10.0 * expected, 2.0):
            out.append(f"the head entry |E[{j + 1},{r + 1}]| = {off[j, r]:.3g} is far above the paper's "
                       f"O(sqrt(eta_E/eta)) = {expected:.2g}: the steps are too large; lower --eta")
    return out
