"""Observables of a recorded run (docs/model.md section 9): pure numpy on a :class:`Run`."""

from __future__ import annotations

import numpy as np

from .core._jit import VANISH_TOL
from .events import EVENT_ARRAYS, both_units, phase_times_from_events
from .model import model_constants, phase1_times, split_moments
from .outcome import features as _features
from .outcome import is_settled, outcome_from
from .params import DEFAULT_ALIGN_THRESHOLD, DEFAULT_HEAD_TOL
from .results import PhaseTimes, Run
from .stats import PowerLaw, fit_power_law, wilson_interval  # noqa: F401  (the public namespace)


def alignment(run: Run) -> np.ndarray:
    """(T, m, L) ``|c_jl(t)|`` (signs are irrelevant: the activation is odd)."""
    return np.abs(run.alignment)


def learned(run: Run, threshold: float = DEFAULT_ALIGN_THRESHOLD) -> np.ndarray:
    """(T, m, L) boolean: neuron j has learned feature l (``|c_jl| >= threshold``)."""
    return alignment(run) >= threshold


def head_distance(run: Run) -> np.ndarray:
    """(T,) ``|E(t) - I|_F``."""
    eye = np.eye(run.E.shape[1])
    return np.sqrt(((run.E - eye) ** 2).sum(axis=(1, 2)))


def _first(mask: np.ndarray, start: int = 0) -> int | None:
    idx = np.flatnonzero(mask[start:])
    return None if idx.size == 0 else int(idx[0]) + start


def phase_times(run: Run, threshold: float = DEFAULT_ALIGN_THRESHOLD,
                head_tol: float = DEFAULT_HEAD_TOL, *, use_events: bool = True) -> PhaseTimes:
    """The phase times of docs/model.md section 9.

    From the events the engine observed at every step (``run.events``, step resolution,
    the same as ``simulate_many`` reports) when the run carries them for this
    ``threshold`` and ``head_tol`` and ``use_events`` is true; otherwise read off the
    recorded trajectory, at the resolution of the recording stride. The follower is the
    first non-leader neuron to learn ``v_2``; if none does, the non-leader with the
    largest final ``|c_j2|``. T2 is ``None`` when ``|E_{follower,leader}|`` never leaves 0
    or is still rising at the last recorded (evaluated) point.
    """
    c = alignment(run)
    ev = run.events
    if use_events and ev is not None and ev["align_threshold"] == threshold and ev["head_tol"] == head_tol:
        c_final = c[-1] if run.n_points else np.full(c.shape[1:], np.nan)
        unit = ev.get("unit", "steps")
        last = float(ev["last"]) if unit == "flow_time" else int(ev["last"])
        times = phase_times_from_events(*(ev[k] for k in EVENT_ARRAYS), c_final, run.status, last)
        return PhaseTimes(**both_units(times, unit, run.eta))
    return _phase_times_recorded(run, c, threshold, head_tol)


def _phase_times_recorded(run: Run, c: np.ndarray, threshold: float, head_tol: float) -> PhaseTimes:
    """:func:`phase_times` read off the recorded points (the recording's resolution)."""
    steps, flow = run.steps, run.flow_time
    T, m, L = c.shape
    first_v1 = [_first(c[:, j, 0] >= threshold) for j in range(m)]
    hits = [(t, -c[t, j, 0], j) for j, t in enumerate(first_v1) if t is not None]
    if not hits:
        return PhaseTimes(None, None, None, None, None, None)
    i1, _, leader = min(hits)
    others = [j for j in range(m) if j != leader]
    if not others:
        return PhaseTimes(int(steps[i1]), None, None, None, leader, None, T1_flow=float(flow[i1]))
    follower, i3 = None, None
    if L >= 2:
        v2 = [(_first(c[:, j, 1] >= threshold), j) for j in others]
        v2 = [(t, j) for t, j in v2 if t is not None]
        if v2:
            i3, follower = min(v2)
    if follower is None:
        follower = others[int(np.argmax(c[-1, others, 1 if L >= 2 else 0]))]
    e = np.abs(run.E[:, follower, leader])
    i2 = int(np.argmax(e))
    if e[i2] == 0.0 or (i2 == T - 1 and run.status != "converged"):
        i2 = None
    i4 = None
    if i3 is not None:
        i4 = _first(head_distance(run) < head_tol, i3)

    def at(i):
        return None if i is None else int(steps[i])

    def tf(i):
        return None if i is None else float(flow[i])

    return PhaseTimes(at(i1), at(i2), at(i3), at(i4), leader, follower, T1_flow=tf(i1), T2_flow=tf(i2),
                      T3_flow=tf(i3), T4_flow=tf(i4))


def peak_offdiag(run: Run) -> np.ndarray:
    """(m, m) ``max_t |E_jr(t)|`` off the diagonal (0 on it)."""
    peak = np.abs(run.E).max(axis=0)
    np.fill_diagonal(peak, 0.0)
    return peak


def features_learned(run: Run, threshold: float = DEFAULT_ALIGN_THRESHOLD, t: int = -1) -> list:
    """Feature index learned by each neuron at point ``t`` (``None`` if none; ``outcome.features``)."""
    return _features(alignment(run)[t], threshold)


def hit_cap(run: Run) -> bool:
    """True when the run was stopped by the flow-time cap (``steps=None``, status ``max_steps``)."""
    return run.status == "max_steps" and run.config.get("train", {}).get("steps") is None


def is_complete_collapse(run: Run) -> bool:
    """Complete collapse (docs/model.md section 12): the run ``vanished``, or at its last
    recorded point every ``|w_j|`` is below ``VANISH_TOL`` times its first recorded value
    (then every output's second moment, ``>= c sigma^6 |w_j|^6``, is ~0 as well)."""
    if run.status == "vanished":
        return True
    if run.n_points == 0 or run.status == "diverged":
        return False
    start, end = run.norms[0], run.norms[-1]
    return bool(np.all(end < VANISH_TOL * start))


def outcome(run: Run, threshold: float = DEFAULT_ALIGN_THRESHOLD, *, vanishing: bool = False) -> str:
    """``diverse`` (every neuron learned a feature and not all the same one),
    ``collapsed`` (every neuron learned a feature, all the same one) or
    ``incomplete`` (some neuron learned nothing, or the run did not settle: diverged,
    interrupted, or stopped by the flow-time cap: ``outcome.is_settled``), or, first when it
    applies, ``complete_collapse`` (:func:`is_complete_collapse`: every ``|w_j|`` -> 0).
    The same rule as ``simulate_many``'s summaries and the sweep table.

    ``vanishing=True`` names ``vanishing`` the runs with a neuron without a feature that the
    flow engine's opt-in rule stopped as ``vanishing`` or where :func:`is_vanishing` holds (a
    neuron without a feature shrinking away beside one that holds a feature, docs/model.md
    section 10): a description of the state, not a fate.
    """
    if is_complete_collapse(run):
        return outcome_from((), settled=True, complete_collapse=True)
    if run.status == "diverged":
        return outcome_from((), settled=False)  # no features to read off a run that never settled
    features = features_learned(run, threshold)
    settled = is_settled(run.status, fixed_budget=run.config.get("train", {}).get("steps") is not None)
    if vanishing and any(f is None for f in features):
        flagged = run.status == "vanishing" or is_vanishing(run, threshold)
        return outcome_from(features, settled=settled, vanishing=flagged)
    return outcome_from(features, settled=settled)


# ---------------------------------------------------------------- assignment and roles

NO_FEATURE = -1
"""Entry of :func:`feature_assignment` for a neuron that has learned no feature."""


def feature_assignment(run: Run, threshold: float = DEFAULT_ALIGN_THRESHOLD) -> np.ndarray:
    """(T, m) int: the feature each neuron holds at each point, ``NO_FEATURE`` (-1) if none.

    Neuron j holds feature l when ``|c_jl| >= threshold``; with ``threshold > 1/sqrt(2)``
    at most one feature qualifies (the ``c_j.`` are coordinates of a unit vector on an
    orthonormal set); below that the most aligned qualifying feature is taken.
    """
    c = alignment(run)
    best = np.argmax(c, axis=2)
    ok = np.take_along_axis(c, best[:, :, None], axis=2)[:, :, 0] >= threshold
    return np.where(ok, best, NO_FEATURE)


def leader_follower(run: Run, threshold: float = DEFAULT_ALIGN_THRESHOLD) -> tuple:
    """``(leader, follower)`` neuron indices as :func:`phase_times` defines them (``None`` if none)."""
    pt = phase_times(run, threshold)
    return pt.leader, pt.follower


def n_features_learned(run: Run, threshold: float = DEFAULT_ALIGN_THRESHOLD) -> np.ndarray:
    """(T,) number of distinct features held by at least one neuron (collapse: fewer than min(m, L))."""
    a = feature_assignment(run, threshold)
    L = run.alignment.shape[2]
    held = (a[:, :, None] == np.arange(L)[None, None, :]).any(axis=1)
    return held.sum(axis=1)


def effective_rank(matrix: np.ndarray) -> np.ndarray:
    """Entropy effective rank ``exp(-sum_i p_i log p_i)``, ``p = s / sum(s)`` (s: singular values).

    Accepts one matrix or a stack (..., m, L); 1 for a rank-one matrix, ``k`` for ``k``
    equal singular values, 0 for the zero matrix (Roy & Vetterli 2007).
    """
    s = np.linalg.svd(np.asarray(matrix, dtype=np.float64), compute_uv=False)
    total = s.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(total > 0, s / total, 0.0)
        h = -np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(axis=-1)
    return np.where(total[..., 0] > 0, np.exp(h), 0.0)


def alignment_rank(run: Run) -> np.ndarray:
    """(T,) effective rank of the alignment matrix ``|c(t)|`` (m x L): 1 = dimensional collapse."""
    return effective_rank(alignment(run))


# ---------------------------------------------------------------- closed-form observables

def model_of(run: Run):
    """The :class:`~theory_sim.params.ModelParams` stored in ``run.config``."""
    from .params import ModelParams

    return ModelParams(**run.config["model"])


def coordinates(run: Run) -> tuple[np.ndarray, np.ndarray]:
    """``(A, C)`` at every recorded point: ``A = W V`` (T, m, L), ``C = sigma^2 W W^T`` (T, m, m).

    These fix every closed-form quantity of docs/model.md section 6.
    """
    sigma2 = float(run.config["model"]["sigma"]) ** 2
    return run.A, sigma2 * np.asarray(run.gram, dtype=np.float64)


def _noise_moment(C: np.ndarray) -> np.ndarray:
    """``M_rq = E[u_r^3 u_q^3] = 9 C_rr C_qq C_rq + 6 C_rq^3`` for each (..., m, m) stack."""
    d = np.diagonal(C, axis1=-2, axis2=-1)
    return 9.0 * d[..., :, None] * d[..., None, :] * C + 6.0 * C**3


def view1_second_moments(run: Run, feature: int = 0) -> np.ndarray:
    """(T, m, m) ``S_rq = E[f_r(X^(1)) f_q(X^(1)) | the sample carries v_feature]``.

    Given the feature ``l``, ``f_r(X^(1)) = s alpha_l^3 A_rl^3 n1 + sum_{noise p in view 1} u_pr^3``
    with independent zero-mean noise terms (odd moments vanish), so::

        S_rq = k2 alpha_l^6 A_rl^3 A_ql^3 + mu M_rq,   k2 = E[n1^2],   mu = E[#noise patches in view 1]

    (``k2`` and ``mu`` from :func:`theory_sim.model.split_moments`: both view splits).
    """
    model = model_of(run)
    _, k2, mu = split_moments(model)
    A, C = coordinates(run)
    a3 = A[:, :, feature] ** 3
    return k2 * model.alpha[feature] ** 6 * a3[:, :, None] * a3[:, None, :] + mu * _noise_moment(C)


def _roles(run, leader, follower, threshold):
    if leader is None or follower is None:
        pl, pf = leader_follower(run, threshold)
        leader = pl if leader is None else leader
        follower = pf if follower is None else follower
    return leader, follower


def substitution_ratio(run: Run, leader: int | None = None, follower: int | None = None, *,
                       threshold: float = DEFAULT_ALIGN_THRESHOLD) -> np.ndarray:
    """(T,) ``RMS(E_fl f_l(X^(1))) / RMS(f_f(X^(1)))`` over samples that carry ``v_1``.

    ``l`` = leader, ``f`` = follower (default: :func:`leader_follower`); docs/model.md
    section 5, phase II: the head's substituted signal against the follower's own
    output. Closed form from :func:`view1_second_moments`:
    ``|E_fl| sqrt(S_ll / S_ff)``. All NaN when there is no leader/follower pair.
    """
    leader, follower = _roles(run, leader, follower, threshold)
    T = run.n_points
    if leader is None or follower is None:
        return np.full(T, np.nan)
    S = view1_second_moments(run, feature=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.abs(run.E[:, follower, leader]) * np.sqrt(S[:, leader, leader] / S[:, follower, follower])


def _kernel_grad(A: np.ndarray, C: np.ndarray, E: np.ndarray, model) -> tuple:
    """``(gA, gC, gE) = (dL/dA, dL/dC, dL/dE)`` at one state, from the closed-form kernel."""
    from .core.moments import loss_grad
    lam, kx, k2, mu, _ = model_constants(model)
    A = np.ascontiguousarray(A, dtype=np.float64)
    C = np.ascontiguousarray(C, dtype=np.float64)
    E = np.ascontiguousarray(E, dtype=np.float64)
    m, L = A.shape
    gA, gC, gE, rho = np.empty((m, L)), np.empty((m, m)), np.empty((m, m)), np.empty(m)
    loss_grad(A, C, E, A, C, lam, kx, k2, mu, gA, gC, gE, rho)
    return gA, gC, gE


def feature_gradient(A: np.ndarray, C: np.ndarray, E: np.ndarray, model, feature: int) -> np.ndarray:
    """(m,) ``-<dL/dw_j, v_feature>``: each neuron's descent direction along a feature.

    Exact population gradient (stop-gradient target at the same weights) from the
    closed-form kernel in ``(A, C, E)`` coordinates: with ``gA = dL/dA`` and
    ``gC = dL/dC``, ``dL/dW = gA V^T + sigma^2 (gC + gC^T) W`` (docs/model.md section 7), so
    ``<dL/dw_j, v_l> = gA_jl + sigma^2 sum_q (gC + gC^T)_jq A_ql``.
    """
    sigma2 = model_constants(model)[4]
    gA, gC, _ = _kernel_grad(A, C, E, model)
    return -(gA[:, feature] + sigma2 * (gC + gC.T) @ np.asarray(A, dtype=np.float64)[:, feature])


def follower_moments(A: np.ndarray, C: np.ndarray, E: np.ndarray, model, follower: int) -> dict:
    """The follower's closed-form pieces of docs/model.md sections 6 and 9 at stacked states.

    ``A`` (..., m, L), ``C`` (..., m, m), ``E`` (..., m, m). Returns arrays (..., L) ``a``
    (``A_fj^3``, its own response) and ``s`` (``sum_{r != f} E_fr A_rj^3``, the substituted
    signal; ``E_fl A_lj^3`` for ``m = 2``), and (...) ``R = mu (E M E^T)_ff`` (the noise
    part of ``DF_f``), ``DF = k2 sum_j lam_j (a_j + s_j)^2 + R``, ``DG``, and ``R_I``, ``DF_I``:
    the same with ``E`` reset to ``I``.
    """
    lam, _, k2, mu, _ = model_constants(model)
    A3 = np.asarray(A, dtype=np.float64) ** 3
    E = np.asarray(E, dtype=np.float64)
    M = _noise_moment(np.asarray(C, dtype=np.float64))
    a = A3[..., follower, :]
    s = np.einsum("...r,...rj->...j", E[..., follower, :], A3) - E[..., follower, follower, None] * a
    e = E[..., follower, :]
    R = mu * np.einsum("...r,...rq,...q->...", e, M, e)
    R_I = mu * M[..., follower, follower]
    DF = k2 * ((a + s) ** 2 * lam).sum(axis=-1) + R
    DF_I = k2 * (a**2 * lam).sum(axis=-1) + R_I
    return {"a": a, "s": s, "R": R, "DF": DF, "R_I": R_I, "DF_I": DF_I, "DG": DF_I}


def acceleration_closed_form(A, C, E, model, follower: int, feature: int = 1) -> np.ndarray:
    """``Acc_j = bracket_j / (a_j R)`` at stacked states (docs/model.md section 9).

    ``bracket_j = a_j R + k2 sum_i lam_i (a_i + s_i)(a_j s_i - a_i s_j)`` is the follower's
    stop-gradient derivative of ``rho_f`` with respect to ``A_fj`` without its common factor
    ``3 A_fj^2 kx lam_j / (sqrt(DG_f) DF_f^{3/2})``, so ``Acc_j`` is the follower's per-unit
    learning weight of ``v_j`` in units of the one every feature has at ``E = I``. Along
    ``v_2`` with ``s_2 = 0`` it is ``Acc = 1 + k2 lam_1 s_1 (a_1 + s_1) / R``; along ``v_1``
    it is ``1 - k2 lam_2 a_2^2 s_1 / (a_1 R)`` (below 1, negative: pushed off ``v_1``).
    NaN where ``a_j = 0``.
    """
    lam, _, k2, _, _ = model_constants(model)
    p = follower_moments(A, C, E, model, follower)
    a, s, R = p["a"], p["s"], p["R"]
    aj, sj = a[..., feature], s[..., feature]
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(aj != 0, sj / np.where(aj != 0, aj, 1.0), np.nan)
        return 1.0 + k2 * (lam * (a + s) * (s - a * ratio[..., None])).sum(axis=-1) / R


def acceleration_factor(run: Run, leader: int | None = None, follower: int | None = None, *,
                        feature: int = 1, threshold: float = DEFAULT_ALIGN_THRESHOLD) -> np.ndarray:
    """(T,) ``Acc(t)`` of docs/model.md section 9 along the follower, closed form.

    ``Acc = 1 + k2 lam_1 s_1 (a_1 + s_1) / R`` (exactly: :func:`acceleration_closed_form`):
    the factor by which the head multiplies the follower's per-unit learning weight of
    ``v_2`` relative to what every feature gets at ``E = I`` (docs/model.md section 5,
    phase III: the paper's acceleration is this relative one). ``feature=0`` gives the
    same weight along ``v_1``. 1 at ``E = I``; NaN without a follower or that feature.
    ``leader`` is accepted for symmetry with :func:`substitution_ratio` (the substituted
    signal sums over every other neuron).
    """
    leader, follower = _roles(run, leader, follower, threshold)
    T, m, L = run.alignment.shape
    if follower is None or not 0 <= feature < L:
        return np.full(T, np.nan)
    A, C = coordinates(run)
    return acceleration_closed_form(A, C, run.E, model_of(run), follower, feature)


def absolute_speed_prediction(run: Run, leader: int | None = None, follower: int | None = None, *,
                              threshold: float = DEFAULT_ALIGN_THRESHOLD) -> np.ndarray:
    """(T,) ``Acc (DF_f(I) / DF_f)^{3/2}``: the predicted :func:`absolute_speed_ratio` along ``v_2``
    (docs/model.md section 9; it leaves out ``R / R_I`` and the noise path through ``C``)."""
    leader, follower = _roles(run, leader, follower, threshold)
    T = run.n_points
    if follower is None or run.alignment.shape[2] < 2:
        return np.full(T, np.nan)
    A, C = coordinates(run)
    p = follower_moments(A, C, run.E, model_of(run), follower)
    return acceleration_factor(run, leader, follower) * (p["DF_I"] / p["DF"]) ** 1.5


def growth_rates(run: Run, leader: int | None = None, follower: int | None = None, *,
                 head: str = "current", threshold: float = DEFAULT_ALIGN_THRESHOLD) -> np.ndarray:
    """(T, L) the follower's ``d ln|<w_f, v_j>| / dt`` (flow time) at every recorded state.

    ``-<dL/dw_f, v_j> / <w_f, v_j>`` from the exact population gradient (docs/model.md
    section 7) at the recorded ``(A, C)``, with the recorded head (``head="current"``) or
    with ``E`` reset to ``I`` (``head="identity"``). NaN without a follower.
    """
    if head not in ("current", "identity"):
        raise ValueError(f"head must be 'current' or 'identity' (got {head!r})")
    leader, follower = _roles(run, leader, follower, threshold)
    T, m, L = run.alignment.shape
    out = np.full((T, L), np.nan)
    if follower is None:
        return out
    model = model_of(run)
    A, C = coordinates(run)
    eye = np.eye(m)
    for t in range(T):
        E = run.E[t] if head == "current" else eye
        for j in range(L):
            if A[t, follower, j] != 0.0:
                out[t, j] = feature_gradient(A[t], C[t], E, model, j)[follower] / A[t, follower, j]
    return out


def absolute_speed_ratio(run: Run, leader: int | None = None, follower: int | None = None, *,
                         feature: int = 1, threshold: float = DEFAULT_ALIGN_THRESHOLD) -> np.ndarray:
    """(T,) the follower's full population-gradient component along ``v_feature`` with the
    current head, divided by the same with the head reset to ``I`` (same ``W``).

    The absolute speed change of docs/model.md section 9 (below 1: the head slows the
    follower down along ``v_2`` in absolute terms while :func:`acceleration_factor` raises
    its relative weight). Predicted by :func:`absolute_speed_prediction`. 1 when ``E = I``;
    NaN without a follower, without that feature, or where the ``E = I`` component is 0.
    """
    leader, follower = _roles(run, leader, follower, threshold)
    T, m, L = run.alignment.shape
    out = np.full(T, np.nan)
    if follower is None or not 0 <= feature < L:
        return out
    model = model_of(run)
    A, C = coordinates(run)
    eye = np.eye(m)
    for t in range(T):
        with_head = feature_gradient(A[t], C[t], run.E[t], model, feature)[follower]
        without = feature_gradient(A[t], C[t], eye, model, feature)[follower]
        if without != 0.0:
            out[t] = with_head / without
    return out


# ---------------------------------------------------------------- phase I at leading order

def _reduced_alignment(model, W0) -> tuple[np.ndarray, np.ndarray]:
    """``(A, norms)`` of ``W(0)`` given in full (m, d), or in reduced coordinates
    ``B = [A, K]`` (m, L + m; docs/model.md section 11), or as a ``model.ReducedCoordinates``."""
    from .model import ReducedCoordinates, feature_vectors

    if isinstance(W0, ReducedCoordinates):
        B = np.asarray(W0.B, dtype=np.float64)
        return B @ W0.Vr, np.linalg.norm(B, axis=1)
    W0 = np.asarray(W0, dtype=np.float64)
    if W0.ndim != 2 or W0.shape[0] != model.m:
        raise ValueError(f"W0 must have shape (m, d) = ({model.m}, {model.d}) or (m, L + m) "
                         f"= ({model.m}, {model.L + model.m}) (got {W0.shape})")
    if W0.shape[1] == model.d:
        return W0 @ feature_vectors(model), np.linalg.norm(W0, axis=1)
    if W0.shape[1] == model.L + model.m:
        return W0[:, :model.L], np.linalg.norm(W0, axis=1)
    raise ValueError(f"W0 must have shape (m, d) = ({model.m}, {model.d}) or (m, L + m) "
                     f"= ({model.m}, {model.L + model.m}) (got {W0.shape})")


def t1_prediction_per_neuron(model, W0, threshold: float = DEFAULT_ALIGN_THRESHOLD) -> np.ndarray:
    """(m,) flow time at which each neuron would reach ``|c_j1| = threshold`` under the
    leading-order phase-I dynamics (docs/model.md section 11).

    Near initialisation ``E = I``, ``DF_j = DG_j = 15 mu sigma^6 r_j^6`` (noise-dominated;
    ``r_j = ||w_j||``, constant at ``E = I``), and ``da/dt = c_jl a^5`` for ``a = <w_j, v_l>``
    with ``c_jl = 2 kx lam_l / (5 mu sigma^6 r_j^6)``; so
    ``t_jl = (a_jl(0)^-4 - (threshold r_j)^-4) / (4 c_jl)``: a finite-time blow-up with no
    fitted constant, ``~ d^2`` since ``a_jl(0) ~ d^{-1/2}``. A neuron whose blow-up along
    another feature comes first learns that feature instead: ``inf`` for it (and where
    ``a_j1(0) = 0``).
    """
    lam, kx, _, mu, sigma2 = model_constants(model)
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1] (got {threshold!r})")
    if sigma2 == 0 or kx == 0:
        raise ValueError("the phase-I prediction needs sigma > 0 and k >= 2 (noise-dominated start)")
    A, r = _reduced_alignment(model, W0)
    return phase1_times(model, A, r, threshold)


def t1_prediction(model, W0, threshold: float = DEFAULT_ALIGN_THRESHOLD) -> float:
    """``T1_pred``: the flow time at which the first neuron learns ``v_1`` at leading order
    (the minimum of :func:`t1_prediction_per_neuron`; docs/model.md section 11). ``W0``: the
    initial weights (m, d), their reduced coordinates ``[A, K]`` (m, L + m) or a
    ``model.ReducedCoordinates``. In steps: divide by ``eta``."""
    return float(np.min(t1_prediction_per_neuron(model, W0, threshold)))


# ---------------------------------------------------------------- the third outcome

def follower_rates(model, A: np.ndarray, C: np.ndarray, E: np.ndarray, follower: int, leader: int, *,
                   head_rate: float = 0.1, mask: np.ndarray | None = None) -> dict:
    """Instantaneous flow-time rates of one state (docs/model.md section 10): the follower's
    ``growth`` (L,) ``d ln|A_fj|/dt``, ``norm`` ``d ln||w_f||/dt`` and ``head``
    ``d|E_fl|/dt`` (``head_rate = eta_E / eta``; ``mask``: trainable entries of ``E``,
    default off-diagonal)."""
    sigma2 = model_constants(model)[4]
    A = np.asarray(A, dtype=np.float64)
    C = np.asarray(C, dtype=np.float64)
    gA, gC, gE = _kernel_grad(A, C, E, model)
    G = gC + gC.T
    descent = -(gA[follower] + sigma2 * G[follower] @ A)        # -<dL/dw_f, v_j>
    with np.errstate(invalid="ignore", divide="ignore"):
        growth = np.where(A[follower] != 0, descent / np.where(A[follower] != 0, A[follower], 1.0), np.nan)
    # <w_f, dL/dw_f> = sum_j gA_fj A_fj + sum_q G_fq C_qf  (C = sigma^2 W W^T)
    radial = -(gA[follower] @ A[follower] + G[follower] @ C[:, follower])
    norm = radial / C[follower, follower] * sigma2 if C[follower, follower] > 0 else np.nan
    mask = (1.0 - np.eye(A.shape[0])) if mask is None else mask
    e = float(np.asarray(E)[follower, leader])
    head = -head_rate * mask[follower, leader] * gE[follower, leader] * np.sign(e)
    return {"growth": growth, "norm": float(norm), "head": float(head)}


def vanishing_state(model, A, C, E, features, *, head_rate: float = 0.1, mask=None) -> bool:
    """The instantaneous part of the ``vanishing`` criterion (docs/model.md section 10), on a
    final state alone (what a ``RunSummary`` with ``W`` carries).

    True when at least one neuron holds a feature (``features[j]`` not ``None``), at least
    one holds none, and every neuron ``f`` that holds none, paired with the feature holder
    ``l`` of largest ``|E_fl|``, has ``d||w_f||/dt < 0``, ``d ln|<w_f, v_j>|/dt < 0`` along
    every feature and ``d|E_fl|/dt > 0``.
    """
    features = list(features)
    holders = [j for j, f in enumerate(features) if f is not None]
    empty = [j for j, f in enumerate(features) if f is None]
    if not holders or not empty:
        return False
    E = np.asarray(E, dtype=np.float64)
    for f in empty:
        l = max(holders, key=lambda r: abs(E[f, r]))
        if E[f, l] == 0.0:
            return False
        r = follower_rates(model, A, C, E, f, l, head_rate=head_rate, mask=mask)
        if not (r["norm"] < 0 and np.all(r["growth"] < 0) and r["head"] > 0):
            return False
    return True


def is_vanishing(run: Run, threshold: float = DEFAULT_ALIGN_THRESHOLD) -> bool:
    """``vanishing`` (docs/model.md section 10): :func:`vanishing_state` at the final recorded
    state, and over the second half of the recorded flow time every featureless neuron's
    norm fell and its ``|E_fl|`` rose, with the same neurons holding features at both ends."""
    if run.n_points < 2 or run.status == "diverged":
        return False
    model = model_of(run)
    train = run.config.get("train", {})
    eta = float(train.get("eta", 1.0))
    eta_E = train.get("eta_E")
    head_rate = (eta / 10.0 if eta_E is None else float(eta_E)) / eta
    from .model import head_mask
    mask = head_mask(train.get("head", "offdiag"), model.m)
    A, C = coordinates(run)
    features = features_learned(run, threshold)
    i0 = int(np.searchsorted(run.flow_time, run.flow_time[-1] / 2.0))
    if [f is None for f in features_learned(run, threshold, t=i0)] != [f is None for f in features]:
        return False
    if not vanishing_state(model, A[-1], C[-1], run.E[-1], features, head_rate=head_rate, mask=mask):
        return False
    holders = [j for j, f in enumerate(features) if f is not None]
    for f in (j for j, g in enumerate(features) if g is None):
        l = max(holders, key=lambda r: abs(run.E[-1, f, r]))
        if not (run.norms[-1, f] < run.norms[i0, f] and abs(run.E[-1, f, l]) > abs(run.E[i0, f, l])):
            return False
    return True


