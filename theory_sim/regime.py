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
