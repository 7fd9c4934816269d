"""Exact gradient descent on the closed-form population loss, in reduced coordinates.

docs/model.md section 7: every update is a combination of ``v_1..v_L`` and the rows of
``W``, so ``W(t) = B(t) Q^T`` with a fixed orthonormal basis ``Q`` (d x r) of
``span{rows of W(0), v_1..v_L}``. With ``Vr = Q^T V`` (r x L)::

    A = B Vr,   C = sigma^2 B B^T,   dL/dB = gA Vr^T + sigma^2 (gC + gC^T) B

so a step costs O(m^2 (m + L)) whatever ``d`` is.
"""

from __future__ import annotations

import math

import numpy as np

from ._jit import (
    STATUS_CONVERGED,
    STATUS_DEGENERATE,
    STATUS_NONFINITE,
    STATUS_RUNAWAY,
    STATUS_RUNNING,
    njit,
    njit_inline,
)
from .events import observe, observe_run
from .moments import backward, forward, loss_grad_2x2, loss_grad_2x2_target, target_terms


@njit
def record_point(rec, rec_state, step, A, gram, E, loss, rho):
    """Append one trajectory point; halve the buffer (keep every other point) when full.

    ``rec = (steps, alignment, norms, E, loss, rho, gram)`` with capacity ``len(steps)``;
    ``rec_state = [step, count, stride]``. Points sit at multiples of ``stride``.
    """
    r_step, r_align, r_norm, r_E, r_loss, r_rho, r_gram = rec
    cap = r_step.shape[0]
    n = rec_state[1]
    if n == cap:
        half = (n + 1) // 2
        for i in range(half):
            src = 2 * i
            r_step[i] = r_step[src]
            r_align[i] = r_align[src]
            r_norm[i] = r_norm[src]
            r_E[i] = r_E[src]
            r_loss[i] = r_loss[src]
            r_rho[i] = r_rho[src]
            r_gram[i] = r_gram[src]
        n = half
        rec_state[2] *= 2
        if step % rec_state[2] != 0:
            rec_state[1] = n
            return
    m, L = A.shape
    r_step[n] = step
    for j in range(m):
        nrm = math.sqrt(gram[j, j])
        r_norm[n, j] = nrm
        for l in range(L):
            r_align[n, j, l] = A[j, l] / nrm if nrm > 0.0 else 0.0
        for q in range(m):
            r_E[n, j, q] = E[j, q]
            r_gram[n, j, q] = gram[j, q]
        r_rho[n, j] = rho[j]
    r_loss[n] = loss
    rec_state[1] = n + 1


@njit
def convergence_status(A, gram, speed_w, speed_e, ratio, stop):
    """Stop rule shared by the engines (see ``population_advance``)."""
    tol, align_thr, max_norm, _ = stop
    m, L = A.shape
    aligned = True
    for j in range(m):
        nrm = math.sqrt(gram[j, j])
        if nrm > max_norm:
            return STATUS_RUNAWAY
        best = 0.0
        for l in range(L):
            best = max(best, abs(A[j, l]) / nrm)
        if best < align_thr:
            aligned = False
    if aligned and math.sqrt(speed_w) + ratio * math.sqrt(speed_e) < tol:
        return STATUS_CONVERGED
    return STATUS_RUNNING


WORKSPACE_LAYOUT = ("A", "At3", "A3", "H", "gH", "gA",  # (m, L)
                    "C", "gram", "M", "EM", "gM", "gC", "gE",  # (m, m)
                    "DG", "N", "DF", "rho", "gS",  # (m,)
                    "gB")  # (m, r)
"""The workspace tuple, in order (``make_workspace`` allocates it, ``population_step``
unpacks it). Other kernels read it through the accessors below, never by position."""
WS_A = WORKSPACE_LAYOUT.index("A")
WS_GRAM = WORKSPACE_LAYOUT.index("gram")
WS_RHO = WORKSPACE_LAYOUT.index("rho")
WS_GB = WORKSPACE_LAYOUT.index("gB")
WS_GE = WORKSPACE_LAYOUT.index("gE")
WS_GA = WORKSPACE_LAYOUT.index("gA")
WS_GC = WORKSPACE_LAYOUT.index("gC")


@njit
def make_workspace(m, r, L):
    """Scratch arrays for ``population_step`` (allocated once per run, not per step)."""
    e = np.empty
    return (e((m, L)), e((m, L)), e((m, L)), e((m, L)), e((m, L)), e((m, L)),
            e((m, m)), e((m, m)), e((m, m)), e((m, m)), e((m, m)), e((m, m)), e((m, m)),
            e(m), e(m), e(m), e(m), e(m), e((m, r)))


@njit_inline
def ws_A(ws):
    """(m, L) ``A = B Vr`` at the last ``population_step``."""
    return ws[WS_A]


@njit_inline
def ws_gram(ws):
    """(m, m) ``W W^T = B B^T`` at the last ``population_step``."""
    return ws[WS_GRAM]


@njit_inline
def ws_rho(ws):
    """(m,) the correlations ``rho_j`` at the last ``population_step``."""
    return ws[WS_RHO]


@njit_inline
def ws_gB(ws):
    """(m, r) ``dL/dB`` from the last ``population_step``."""
    return ws[WS_GB]


@njit_inline
def ws_gE(ws):
    """(m, m) the masked ``dL/dE`` from the last ``population_step``."""
    return ws[WS_GE]


@njit_inline
def project(B, Vr, sigma2, A, gram, C):
    """``A = B Vr``, ``gram = B B^T``, ``C = sigma^2 gram`` (docs/model.md section 7)."""
    m, r = B.shape
    L = Vr.shape[1]
    for j in range(m):
        for l in range(L):
            s = 0.0
            for i in range(r):
                s += B[j, i] * Vr[i, l]
            A[j, l] = s
        for q in range(j + 1):
            s = 0.0
            for i in range(r):
                s += B[j, i] * B[q, i]
            gram[j, q] = s
            gram[q, j] = s
            C[j, q] = sigma2 * s
            C[q, j] = sigma2 * s


@njit_inline
def has_zero_neuron(gram):
    """Some neuron's weights are exactly zero (``gram[j, j] == 0``)."""
    for j in range(gram.shape[0]):
        if gram[j, j] == 0.0:
            return True
    return False


@njit_inline
def weight_gradient(gA, gC, B, Vr, sigma2, gB):
    """``gB = dL/dB = gA Vr^T + sigma^2 (gC + gC^T) B`` from the partials in ``A`` and ``C``."""
    m, r = B.shape
    L = Vr.shape[1]
    for j in range(m):
        for i in range(r):
            s = 0.0
            for l in range(L):
                s += gA[j, l] * Vr[i, l]
            for q in range(m):
                s += sigma2 * (gC[j, q] + gC[q, j]) * B[q, i]
            gB[j, i] = s


@njit_inline
def speeds(gB, gram, E_mask, gE):
    """Masks ``gE`` in place; returns ``(speed_w, speed_e)``: ``sum_j |dL/dw_j|^2 / |w_j|^2`` and
    ``|mask * dL/dE|_F^2`` (the stop rule's flow-time speeds)."""
    m, r = gB.shape
    speed_w = 0.0
    for j in range(m):
        nrm2 = 0.0
        for i in range(r):
            nrm2 += gB[j, i] * gB[j, i]
        speed_w += nrm2 / gram[j, j]
    speed_e = 0.0
    for j in range(m):
        for q in range(m):
            g = E_mask[j, q] * gE[j, q]
            gE[j, q] = g
            speed_e += g * g
    return speed_w, speed_e


@njit_inline
def bn_loss_grad(A, C, E, At, Ct, lam, kx, k2, mu, At3, A3, H, gH, gA, M, EM, gM, gC, gE, DG, N, DF, rho, gS):
    """The paper's loss (BN, stop-gradient; docs/model.md section 6) with the target branch at
    ``(At, Ct)`` (``A, C`` themselves for the online target); fills ``gA, gC, gE, rho`` (the
    rest are work buffers of the workspace) and returns the loss (NaN/inf on failure, the
    gradient then unspecified). The buffers are passed one by one, not as the workspace
    tuple: unpacking the tuple again at every step costs reference counting."""
    m, L = A.shape
    if m == 2 and L == 2:  # the paper's case: the same formulas unrolled (moments.loss_grad_2x2)
        return loss_grad_2x2_target(A, C, E, At, Ct, lam, kx, k2, mu, gA, gC, gE, rho)
    target_terms(At, Ct, lam, k2, mu, At3, DG)
    loss = forward(A, C, E, At3, DG, lam, kx, k2, mu, A3, H, M, EM, N, DF, rho)
    if math.isfinite(loss):
        backward(A, C, E, At3, lam, kx, k2, mu, A3, H, EM, N, DF, DG, rho, gH, gS, gM, gA, gC, gE)
    return loss


@njit_inline
def population_step(B, E, Vr, E_mask, model, rates, ws):
    """Gradient at ``(B, E)``; fills the workspace and returns ``(loss, speed_w, speed_e)``.

    Does not update: ``apply_step`` does, so that the caller can record and test
    for convergence at the current point first. ``loss`` is NaN/inf on failure and
    ``speed_w`` is -1 when a neuron's weights are exactly zero.
    """
    # The helpers above written out (fused loops): calling them costs ~10 % of the default
    # step (measured with benchmarks/run.py --only ts-pop-512); population_step_variant uses them.
    lam, kx, k2, mu, sigma2 = model
    A, At3, A3, H, gH, gA, C, gram, M, EM, gM, gC, gE, DG, N, DF, rho, gS, gB = ws
    m, r = B.shape
    L = Vr.shape[1]
    for j in range(m):
        for l in range(L):
            s = 0.0
            for i in range(r):
                s += B[j, i] * Vr[i, l]
            A[j, l] = s
        for q in range(j + 1):
            s = 0.0
            for i in range(r):
                s += B[j, i] * B[q, i]
            gram[j, q] = s
            gram[q, j] = s
            C[j, q] = sigma2 * s
            C[q, j] = sigma2 * s
    for j in range(m):
        if gram[j, j] == 0.0:
            return math.nan, -1.0, 0.0
    if m == 2 and L == 2:  # the paper's case: the same formulas unrolled (moments.loss_grad_2x2)
        loss = loss_grad_2x2(A, C, E, lam, kx, k2, mu, gA, gC, gE, rho)
        if not math.isfinite(loss):
            return loss, 0.0, 0.0
    else:
        target_terms(A, C, lam, k2, mu, At3, DG)
        loss = forward(A, C, E, At3, DG, lam, kx, k2, mu, A3, H, M, EM, N, DF, rho)
        if not math.isfinite(loss):
            return loss, 0.0, 0.0
        backward(A, C, E, At3, lam, kx, k2, mu, A3, H, EM, N, DF, DG, rho, gH, gS, gM, gA, gC, gE)
    # dL/dB = gA Vr^T + sigma^2 (gC + gC^T) B
    speed_w = 0.0
    for j in range(m):
        nrm2 = 0.0
        for i in range(r):
            s = 0.0
            for l in range(L):
                s += gA[j, l] * Vr[i, l]
            for q in range(m):
                s += sigma2 * (gC[j, q] + gC[q, j]) * B[q, i]
            gB[j, i] = s
            nrm2 += s * s
        speed_w += nrm2 / gram[j, j]
    speed_e = 0.0
    for j in range(m):
        for q in range(m):
            g = E_mask[j, q] * gE[j, q]
            gE[j, q] = g
            speed_e += g * g
    return loss, speed_w, speed_e


@njit_inline
def apply_step(B, E, rates, ws):
    """``B -= eta dL/dB``, ``E -= eta_E mask * dL/dE`` with the gradient in ``ws``."""
    eta, eta_E = rates
    gB = ws_gB(ws)
    gE = ws_gE(ws)
    m, r = B.shape
    for j in range(m):
        for i in range(r):
            B[j, i] -= eta * gB[j, i]
        for q in range(m):
            E[j, q] -= eta_E * gE[j, q]


@njit_inline
def step_status(loss, speed_w, speed_e):
    """Failure code of ``population_step``'s result, or STATUS_RUNNING."""
    if speed_w < 0.0:
        return STATUS_DEGENERATE
    if not (math.isfinite(loss) and math.isfinite(speed_w) and math.isfinite(speed_e)):
        return STATUS_NONFINITE
    return STATUS_RUNNING


@njit
def population_advance(B, E, Vr, E_mask, model, rates, stop, rec, rec_state, n_steps, events, event_params):
    """Advance ``n_steps`` of gradient descent; return a status code.

    B (m x r), E (m x m) are updated in place; ``rec_state = [step, count, stride]``.
    ``model = (lam, kx, k2, mu, sigma2)``, ``rates = (eta, eta_E)``,
    ``stop = (tol, align_threshold, max_norm, check_every)``.
    Every evaluated step updates the phase ``events`` (``core.events.observe_run``).
    Convergence (checked every ``check_every`` steps): every neuron has
    ``max_l |c_jl| >= align_threshold`` and the flow-time speed
    ``sqrt(sum_j |dL/dw_j|^2 / |w_j|^2) + (eta_E/eta) |mask * dL/dE|_F`` is below ``tol``.
    """
    m, r = B.shape
    L = Vr.shape[1]
    ws = make_workspace(m, r, L)
    A, gram, rho = ws_A(ws), ws_gram(ws), ws_rho(ws)
    ratio = rates[1] / rates[0]
    check_every = stop[3]
    # unpacked once: unpacking a tuple of arrays at every step costs reference counting
    first_v1, c_v1_at_first, first_v2, first_head_back, peak, peak_step, last_evaluated = events
    thr, thr2, head_tol = event_params
    step = rec_state[0]
    # countdowns instead of two integer divisions per step
    to_record = (-step) % rec_state[2]
    to_check = (-step) % check_every
    for _ in range(n_steps):
        loss, speed_w, speed_e = population_step(B, E, Vr, E_mask, model, rates, ws)
        status = step_status(loss, speed_w, speed_e)
        if status != STATUS_RUNNING:
            rec_state[0] = step
            return status
        observe(step, A, gram, E, thr, thr2, head_tol, first_v1, c_v1_at_first, first_v2, first_head_back,
                peak, peak_step)
        last_evaluated[0] = step
        if to_record == 0:
            record_point(rec, rec_state, step, A, gram, E, loss, rho)
            to_record = (-step) % rec_state[2]  # the stride may have doubled
            if to_record == 0:
                to_record = rec_state[2]
        if to_check == 0:
            to_check = check_every
            if step > 0:
                status = convergence_status(A, gram, speed_w, speed_e, ratio, stop)
                if status != STATUS_RUNNING:
                    rec_state[0] = step
                    return status
        apply_step(B, E, rates, ws)
        step += 1
        to_record -= 1
        to_check -= 1
    rec_state[0] = step
    return STATUS_RUNNING


@njit
def population_observe(B, E, Vr, E_mask, model, rates, step, events, event_params):
    """Evaluate the state at ``step`` and observe its events without stepping (the final
    state of a run stopped by its budget, as the ensemble observes it)."""
    m, r = B.shape
    ws = make_workspace(m, r, Vr.shape[1])
    population_step(B, E, Vr, E_mask, model, rates, ws)
    observe_run(step, ws_A(ws), ws_gram(ws), E, events, event_params)
