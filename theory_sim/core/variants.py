"""Mechanism ablations in reduced coordinates (docs/model.md sections 7 and 12).

A variant is the tuple ``(norm, stopgrad, target, tau)`` of three small integer codes
and the EMA rate:

* ``norm``: ``NORM_BN`` (the paper) or ``NORM_NONE`` (loss ``sum_j DF_j + DG_j - 2 N_j``);
* ``stopgrad``: ``STOPGRAD_ON`` (the paper) or ``STOPGRAD_OFF`` (differentiate through the
  target branch too: its features and its second moments, the population BN statistics);
* ``target``: ``TARGET_ONLINE`` (SimSiam: target weights = online weights) or ``TARGET_EMA``
  (BYOL: target weights ``Bbar``, updated after each step by ``Bbar <- tau Bbar + (1 - tau) B``).

With the stop-gradient off the target branch is differentiated as a function of the
current online weights: ``Bbar = B`` (online) or ``Bbar = tau Bbar_prev + (1 - tau) B``
(EMA; the update that produced the current target), so that
``dL/dB = d_online L + w d_target L`` with ``w = 1`` (online) or ``w = 1 - tau`` (EMA).
``tau = 0`` makes the EMA variant the online one, bit for bit.

The EMA target lives in the span of section 7 (it is a combination of past ``W``), so
``Bbar`` (m x r) shares the basis ``Q`` of ``B``. The variant workspace is the pair
``(ws, extra)``: ``ws`` is ``population.make_workspace``'s tuple (read through its
accessors: after a step ``ws_gB`` holds the *total* gradient), ``extra`` holds the
target-branch buffers.
"""

from __future__ import annotations

import math

import numpy as np

from ._jit import STATUS_RUNNING, STATUS_VANISHED, njit, njit_inline
from .events import observe
from .moments import (
    variant_backward,
    variant_forward,
)
from .population import (
    apply_step,
    bn_loss_grad,
    convergence_status,
    has_zero_neuron,
    make_workspace,
    population_step,
    project,
    record_point,
    speeds,
    step_status,
    weight_gradient,
    ws_A,
    ws_gram,
    ws_rho,
)

NORM_BN = 0
NORM_NONE = 1
STOPGRAD_ON = 0
STOPGRAD_OFF = 1
TARGET_ONLINE = 0
TARGET_EMA = 1

DEFAULT_VARIANT = (NORM_BN, STOPGRAD_ON, TARGET_ONLINE, 0.0)
"""The paper's model; ``population_step_variant`` then runs ``population_step`` itself."""

EXTRA_LAYOUT = ("Ab", "T", "gT", "gAb",  # (m, L)
                "Cb", "gramb",  # (m, m)
                "gCbd",  # (m,)
                "gBb")  # (m, r)
"""The target-branch half of the variant workspace, in order."""


@njit
def make_variant_workspace(m, r, L):
    """``(make_workspace(m, r, L), extra)``: scratch arrays of ``population_step_variant``."""
    e = np.empty
    extra = (e((m, L)), e((m, L)), e((m, L)), e((m, L)), e((m, m)), e((m, m)), e(m), e((m, r)))
    return make_workspace(m, r, L), extra


@njit_inline
def is_default_variant(variant):
    norm, stopgrad, target, _ = variant
    return norm == NORM_BN and stopgrad == STOPGRAD_ON and target == TARGET_ONLINE


@njit_inline
def population_step_variant(B, Bbar, E, Vr, E_mask, model, rates, variant, ws):
    """``population_step`` for any variant: the gradient at ``(B, E)`` with the target branch at
    ``Bbar`` (EMA) or ``B`` (online); fills ``ws`` and returns ``(loss, speed_w, speed_e)``.

    The default variant calls ``population_step`` (same bits). BN with stop-gradient and an EMA
    target uses the same arithmetic with the target at ``Bbar`` (so ``tau = 0`` gives the
    online bits); the other variants use ``moments.variant_forward/variant_backward``.
    ``speed_w`` is -1 when a neuron's online weights are exactly zero (the caller decides
    whether that is degenerate, or ``vanished`` without BN).
    """
    base, extra = ws
    if is_default_variant(variant):
        return population_step(B, E, Vr, E_mask, model, rates, base)
    norm, stopgrad, target, tau = variant
    lam, kx, k2, mu, sigma2 = model
    A, At3, A3, H, gH, gA, C, gram, M, EM, gM, gC, gE, DG, N, DF, rho, gS, gB = base
    Ab, T, gT, gAb, Cb, gramb, gCbd, gBb = extra
    Bt = Bbar if target == TARGET_EMA else B
    m, r = B.shape
    L = Vr.shape[1]
    project(B, Vr, sigma2, A, gram, C)
    project(Bt, Vr, sigma2, Ab, gramb, Cb)
    if has_zero_neuron(gram):
        return math.nan, -1.0, 0.0
    through_target = stopgrad == STOPGRAD_OFF
    if norm == NORM_BN and not through_target:  # the paper's loss, target at Bbar
        loss = bn_loss_grad(A, C, E, Ab, Cb, lam, kx, k2, mu, At3, A3, H, gH, gA, M, EM, gM, gC, gE, DG, N,
                            DF, rho, gS)
        if not math.isfinite(loss):
            return loss, 0.0, 0.0
    else:
        norm_none = norm == NORM_NONE
        loss = variant_forward(A, C, E, Ab, Cb, lam, kx, k2, mu, norm_none, A3, T, H, M, EM, N, DF, DG, rho)
        if not math.isfinite(loss):
            return loss, 0.0, 0.0
        variant_backward(A, C, E, Ab, Cb, lam, kx, k2, mu, norm_none, through_target, A3, T, H, EM, N, DF,
                         DG, rho, gH, gS, gM, gT, gA, gC, gE, gAb, gCbd)
    # dL/dB = gA Vr^T + sigma^2 (gC + gC^T) B  [+ w (gAb Vr^T + 2 sigma^2 diag(gCbd) Bt)]
    weight_gradient(gA, gC, B, Vr, sigma2, gB)
    if through_target:
        w = 1.0 - tau if target == TARGET_EMA else 1.0
        for j in range(m):
            for i in range(r):
                sb = 0.0
                for l in range(L):
                    sb += gAb[j, l] * Vr[i, l]
                sb += 2.0 * sigma2 * gCbd[j] * Bt[j, i]
                gBb[j, i] = sb
                gB[j, i] += w * sb
    speed_w, speed_e = speeds(gB, gram, E_mask, gE)
    return loss, speed_w, speed_e


@njit_inline
def apply_step_variant(B, Bbar, E, rates, variant, ws):
    """``apply_step`` with the gradient in ``ws``, then (EMA target)
    ``Bbar <- tau Bbar + (1 - tau) B`` with the updated ``B``."""
    apply_step(B, E, rates, ws[0])
    if variant[2] == TARGET_EMA:
        tau = variant[3]
        m, r = B.shape
        for j in range(m):
            for i in range(r):
                Bbar[j, i] = tau * Bbar[j, i] + (1.0 - tau) * B[j, i]


@njit
def population_run_variant(B, Bbar, E, Vr, E_mask, model, rates, variant, n_steps, losses):
    """``n_steps`` of gradient descent on a variant, no recording or stop rule (benchmarks and
    tests). ``B, Bbar, E`` are updated in place; ``losses[t]`` gets the loss at step ``t``.
    Returns the number of steps taken: it stops early (before updating) at a non-finite
    loss or an exactly zero neuron."""
    m, r = B.shape
    ws = make_variant_workspace(m, r, Vr.shape[1])
    for t in range(n_steps):
        loss, speed_w, speed_e = population_step_variant(B, Bbar, E, Vr, E_mask, model, rates, variant, ws)
        losses[t] = loss
        if speed_w < 0.0 or not math.isfinite(loss):
            return t
        apply_step_variant(B, Bbar, E, rates, variant, ws)
    return n_steps


@njit_inline
def all_vanished(gram, vanish2):
    """Every ``|w_j|^2 < vanish2[j]`` (``vanish2 = (VANISH_TOL |w_j(0)|)^2``)."""
    for j in range(gram.shape[0]):
        if not gram[j, j] < vanish2[j]:
            return False
    return True


@njit
def population_advance_variant(B, Bbar, E, Vr, E_mask, model, rates, stop, rec, rec_state, n_steps, events,
                               event_params, variant, vanish2):
    """``population_advance`` for any variant (docs/model.md section 12): the step is
    ``population_step_variant`` / ``apply_step_variant`` (the EMA target ``Bbar`` follows ``B``
    after each step), with the same recording, event observation and stop rule, plus, without
    BN, ``STATUS_VANISHED`` when every ``|w_j|^2 < vanish2[j]`` (checked on check steps, before
    the convergence test) or a neuron's weights are exactly zero (``W = 0`` is the fixed point
    the run falls into; with BN that is ``STATUS_DEGENERATE``).
    """
    m, r = B.shape
    L = Vr.shape[1]
    ws = make_variant_workspace(m, r, L)
    base = ws[0]
    A, gram, rho = ws_A(base), ws_gram(base), ws_rho(base)
    ratio = rates[1] / rates[0]
    check_every = stop[3]
    norm_none = variant[0] == NORM_NONE
    first_v1, c_v1_at_first, first_v2, first_head_back, peak, peak_step, last_evaluated = events
    thr, thr2, head_tol = event_params
    step = rec_state[0]
    to_record = (-step) % rec_state[2]
    to_check = (-step) % check_every
    for _ in range(n_steps):
        loss, speed_w, speed_e = population_step_variant(B, Bbar, E, Vr, E_mask, model, rates, variant, ws)
        status = step_status(loss, speed_w, speed_e)
        if status != STATUS_RUNNING:
            rec_state[0] = step
            if norm_none and speed_w < 0.0:
                return STATUS_VANISHED
            return status
        observe(step, A, gram, E, thr, thr2, head_tol, first_v1, c_v1_at_first, first_v2, first_head_back,
                peak, peak_step)
        last_evaluated[0] = step
        if to_record == 0:
            record_point(rec, rec_state, step, A, gram, E, loss, rho)
            to_record = (-step) % rec_state[2]
            if to_record == 0:
                to_record = rec_state[2]
        if to_check == 0:
            to_check = check_every
            if step > 0:
                if norm_none and all_vanished(gram, vanish2):
                    rec_state[0] = step
                    return STATUS_VANISHED
                status = convergence_status(A, gram, speed_w, speed_e, ratio, stop)
                if status != STATUS_RUNNING:
                    rec_state[0] = step
                    return status
        apply_step_variant(B, Bbar, E, rates, variant, ws)
        step += 1
        to_record -= 1
        to_check -= 1
    rec_state[0] = step
    return STATUS_RUNNING
